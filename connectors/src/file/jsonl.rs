//! JSON lines: one JSON object per line, decoded by arrow-json.
//!
//! Why lines are cut here and not by arrow-json: an error must name the
//! line, and `onMismatch: skip` must be able to drop one line. Lines are
//! collected into chunks of `fetch_size`, decoded together, and only a chunk
//! that fails is decoded line by line to find (or skip) the bad lines.
//!
//! JSON has numbers, booleans and strings; every other type (decimals,
//! dates, timestamps, times, durations, binary) is a JSON string in the text
//! form of [`super::value`] (decimals as strings keep every digit; arrow-json
//! would write them as numbers, which most JSON consumers read as doubles).
//! A JSON number where a string-typed column is expected is accepted as its
//! text. Without `column`, the schema is inferred from the first 1,000 lines
//! of the first file (`arrow_json::reader::infer_json_schema`, which orders
//! the columns by name).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use super::lines::Lines;
use super::location::Location;
use super::value::from_text;
use super::{schema_of, FileOptions, OnMismatch, ReadCtx};
use crate::error::ConnectorError;

/// Lines used to infer a schema.
const INFER_LINES: usize = 1000;

/// Whether JSON holds `dt` natively (otherwise: a string in the text form).
pub fn json_native(dt: &DataType) -> bool {
    dt.is_integer()
        || matches!(
            dt,
            DataType::Float32
                | DataType::Float64
                | DataType::Boolean
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Null
                | DataType::List(_)
                | DataType::LargeList(_)
                | DataType::Struct(_)
        )
}

/// `schema` with every non-native type as Utf8 (what arrow-json decodes/encodes).
pub fn wire_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                if json_native(f.data_type()) {
                    f.as_ref().clone()
                } else {
                    Field::new(f.name(), DataType::Utf8, true)
                }
            })
            .collect::<Vec<_>>(),
    ))
}

pub async fn schema(
    loc: &Location,
    opts: &FileOptions,
    path: &str,
) -> Result<SchemaRef, ConnectorError> {
    if !opts.columns.is_empty() {
        return Ok(schema_of(&opts.columns));
    }
    let mut lines = Lines::open(loc, path).await?;
    let mut sample = Vec::new();
    let mut n = 0;
    while n < INFER_LINES {
        match lines.next_line().await? {
            None => break,
            Some((_, l)) if l.iter().all(u8::is_ascii_whitespace) => {}
            Some((_, l)) => {
                sample.extend_from_slice(l);
                sample.push(b'\n');
                n += 1;
            }
        }
    }
    let (schema, _) = arrow_json::reader::infer_json_schema(std::io::Cursor::new(sample), None)
        .map_err(|e| ConnectorError::file(path, None, format!("cannot infer a schema: {e}")))?;
    // Inferred Null columns (always null in the sample) are read as strings.
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Null => Field::new(f.name(), DataType::Utf8, true),
            _ => f.as_ref().clone(),
        })
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}

fn decode(wire: &SchemaRef, lines: &[u8], n: usize) -> Result<Option<RecordBatch>, String> {
    let mut d = arrow_json::ReaderBuilder::new(wire.clone())
        .with_batch_size(n.max(1))
        .with_coerce_primitive(true)
        .build_decoder()
        .map_err(|e| e.to_string())?;
    let used = d.decode(lines).map_err(|e| e.to_string())?;
    if used != lines.len() {
        return Err("more values than lines".into());
    }
    let b = d.flush().map_err(|e| e.to_string())?;
    if b.as_ref().map_or(0, |b| b.num_rows()) != n {
        return Err("not one JSON object per line".into());
    }
    Ok(b)
}

pub(crate) async fn read(ctx: &ReadCtx<'_>) -> Result<u64, ConnectorError> {
    let wire = wire_schema(ctx.full);
    let mut lines = Lines::open(ctx.loc, ctx.path).await?;
    let mut chunk: Vec<u8> = Vec::new();
    let mut starts: Vec<(usize, u64)> = Vec::new(); // (offset in chunk, line number)
    let mut sent = 0u64;
    let mut skipped = 0u64;
    loop {
        let line = lines.next_line().await?;
        let end = line.is_none();
        if let Some((no, l)) = line {
            if !l.iter().all(u8::is_ascii_whitespace) {
                starts.push((chunk.len(), no));
                chunk.extend_from_slice(l);
                chunk.push(b'\n');
            }
        }
        if starts.len() >= ctx.fetch || (end && !starts.is_empty()) {
            let batch = match decode(&wire, &chunk, starts.len()) {
                Ok(b) => b,
                Err(_) => {
                    // Find the bad lines one by one.
                    let mut good = Vec::new();
                    let mut good_starts = Vec::new();
                    for (i, &(off, line_no)) in starts.iter().enumerate() {
                        let stop = starts.get(i + 1).map_or(chunk.len(), |s| s.0);
                        let l = &chunk[off..stop];
                        match decode(&wire, l, 1) {
                            Ok(Some(b)) if b.num_rows() == 1 => {
                                good_starts.push((good.len(), line_no));
                                good.extend_from_slice(l);
                            }
                            other => {
                                let why = match other {
                                    Err(e) => e,
                                    _ => "not one JSON object".into(),
                                };
                                if ctx.opts.on_mismatch == OnMismatch::Error {
                                    return Err(ctx.err(Some(line_no), why));
                                }
                                skipped += 1;
                            }
                        }
                    }
                    starts = good_starts;
                    decode(&wire, &good, starts.len()).map_err(|e| ctx.err(None, e))?
                }
            };
            if let Some(b) = batch {
                let out = convert(ctx, &b, &starts)?;
                sent += ctx.send(out).await?;
            }
            chunk.clear();
            starts.clear();
        }
        if end {
            break;
        }
    }
    if skipped > 0 {
        tracing::warn!(
            file = ctx.path,
            skipped,
            "skipped JSON lines that do not parse"
        );
    }
    Ok(sent)
}

fn convert(
    ctx: &ReadCtx<'_>,
    b: &RecordBatch,
    starts: &[(usize, u64)],
) -> Result<RecordBatch, ConnectorError> {
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(b.num_columns());
    for (i, f) in ctx.full.fields().iter().enumerate() {
        let c = b.column(i);
        if c.data_type() == f.data_type() {
            cols.push(c.clone());
            continue;
        }
        let text = c.as_string::<i32>();
        let a = from_text(text, f.data_type()).map_err(|bad| {
            ctx.err(
                starts.get(bad.row).map(|s| s.1),
                format!("column `{}`: {}", f.name(), bad.message),
            )
        })?;
        cols.push(a);
    }
    RecordBatch::try_new(ctx.full.clone(), cols).map_err(|e| ctx.err(None, e.to_string()))
}
