//! CSV: arrow-csv's push decoder fed from the file's byte stream (quoted
//! fields, embedded delimiters and newlines handled by arrow-csv), every
//! field decoded as text and then converted by [`super::value`].
//!
//! Why text first: the same value rules hold for CSV, JSON and logs, and
//! without a `column` list nothing is ever reinterpreted (no inference).
//! NULL is the field text `nullFormat` (default `\N`, DataX's); an empty
//! field of a string column is the empty string, of any other column NULL.
//! Line numbers in errors count records (they equal file lines unless a
//! quoted field holds a newline).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures::StreamExt;

use super::lines::byte_stream;
use super::location::{storage_error, Location};
use super::value::from_text;
use super::{schema_of, FileOptions, ReadCtx};
use crate::error::ConnectorError;

/// The field names of the first record (header) and their count.
async fn first_record(
    loc: &Location,
    opts: &FileOptions,
    path: &str,
) -> Result<Vec<String>, ConnectorError> {
    // The first MiB holds the header (the whole file when it is smaller).
    let size = loc
        .op
        .stat(path)
        .await
        .map_err(|e| storage_error(path, e))?
        .content_length();
    let head = if size == 0 {
        bytes::Bytes::new()
    } else {
        loc.op
            .read_with(path)
            .range(0..size.min(1 << 20))
            .await
            .map_err(|e| storage_error(path, e))?
            .to_bytes()
    };
    let fmt = arrow_csv::reader::Format::default()
        .with_header(true)
        .with_delimiter(opts.field_delimiter);
    let (schema, _) = fmt
        .infer_schema(std::io::Cursor::new(head.as_ref()), Some(1))
        .map_err(|e| ConnectorError::file(path, Some(1), e.to_string()))?;
    Ok(schema.fields().iter().map(|f| f.name().clone()).collect())
}

/// The file's schema: the `column` list, or every field as a string named
/// by the header (`c0`, `c1`, … without a header).
pub async fn schema(
    loc: &Location,
    opts: &FileOptions,
    path: &str,
) -> Result<SchemaRef, ConnectorError> {
    if !opts.columns.is_empty() {
        return Ok(schema_of(&opts.columns));
    }
    let names = first_record(loc, opts, path).await?;
    let fields: Vec<Field> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let name = if opts.header {
                n.clone()
            } else {
                format!("c{i}")
            };
            Field::new(name, DataType::Utf8, true)
        })
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}

pub(crate) async fn read(ctx: &ReadCtx<'_>) -> Result<u64, ConnectorError> {
    let opts = ctx.opts;
    // Field positions of the output columns and the width of a record.
    let width = first_record(ctx.loc, opts, ctx.path).await?.len();
    let positions: Vec<usize> = if opts.columns.is_empty() {
        (0..ctx.full.fields().len()).collect()
    } else {
        opts.columns
            .iter()
            .enumerate()
            .map(|(i, c)| c.index.unwrap_or(i))
            .collect()
    };
    if let Some(p) = positions.iter().find(|&&p| p >= width) {
        return Err(ctx.err(
            Some(1),
            format!("has {width} fields, but column index {p} is asked for"),
        ));
    }
    let wire = Arc::new(Schema::new(
        (0..width)
            .map(|i| Field::new(format!("f{i}"), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let null_re = regex::Regex::new(&format!("^{}$", regex::escape(&opts.null_format)))
        .map_err(|e| ConnectorError::config("nullFormat", e.to_string()))?;
    let mut decoder = arrow_csv::ReaderBuilder::new(wire)
        .with_header(opts.header)
        .with_delimiter(opts.field_delimiter)
        .with_null_regex(null_re)
        .with_batch_size(ctx.fetch)
        .build_decoder();
    let mut stream = byte_stream(ctx.loc, ctx.path).await?;
    let mut sent = 0u64;
    // Records decoded so far (for line numbers).
    let mut records = 0u64;
    let header_lines = u64::from(opts.header);
    let csv_err = |e: arrow_schema::ArrowError| ctx.err(None, e.to_string());
    loop {
        let chunk = match stream.next().await {
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => {
                return Err(ConnectorError::Storage {
                    what: ctx.path.to_string(),
                    message: e.to_string(),
                })
            }
            None => None,
        };
        let mut buf: &[u8] = chunk.as_deref().unwrap_or(&[]);
        let at_end = chunk.is_none();
        loop {
            let n = decoder.decode(buf).map_err(csv_err)?;
            buf = &buf[n..];
            if n == 0 || decoder.capacity() == 0 || at_end {
                match decoder.flush().map_err(csv_err)? {
                    Some(b) => {
                        let first_line = header_lines + records + 1;
                        records += b.num_rows() as u64;
                        let out = convert(ctx, &b, &positions, first_line)?;
                        sent += ctx.send(out).await?;
                    }
                    None if at_end => return Ok(sent),
                    None => {}
                }
            }
            if buf.is_empty() && !at_end {
                break;
            }
        }
    }
}

/// Converts decoded text fields to the file's typed columns.
fn convert(
    ctx: &ReadCtx<'_>,
    b: &RecordBatch,
    positions: &[usize],
    first_line: u64,
) -> Result<RecordBatch, ConnectorError> {
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(positions.len());
    for (field, &p) in ctx.full.fields().iter().zip(positions) {
        let text = b.column(p).as_string::<i32>();
        match from_text(text, field.data_type()) {
            Ok(a) => cols.push(a),
            Err(bad) => {
                return Err(ctx.err(
                    Some(first_line + bad.row as u64),
                    format!("column `{}`: {}", field.name(), bad.message),
                ));
            }
        }
    }
    RecordBatch::try_new(ctx.full.clone(), cols).map_err(|e| ctx.err(None, e.to_string()))
}
