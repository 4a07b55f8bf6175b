//! PostgreSQL `COPY ... (FORMAT text)` decoding into Arrow record batches.
//!
//! The same bytes are MariaDB/MySQL `LOAD DATA` / `SELECT ... INTO OUTFILE` default format
//! (`FIELDS TERMINATED BY '\t' ESCAPED BY '\\' LINES TERMINATED BY '\n'`).
//!
//! # Format
//! * One record per line, ended by `\n`. A raw `\r` is data, never part of the line end.
//! * Fields separated by `\t`; every line must have exactly one field per schema column.
//! * A field that is exactly `\N` is NULL; an empty field is an empty string (and an error
//!   for non-string types).
//! * Backslash escapes: `\\ \t \n \r \b \f \v`, `\NNN` (1-3 octal digits), `\xHH` (1-2 hex
//!   digits), and `\c` = `c` for any other byte, so a backslash followed by a real tab or
//!   line feed is field data (MariaDB writes embedded newlines that way).
//! * A line holding only `\.` ends the data (PostgreSQL's end-of-copy marker, as in
//!   `pg_dump` output); everything after it is ignored.
//! * Unlike PostgreSQL, a last line without its `\n` is an error (it is what a truncated
//!   file looks like).
//!
//! Fields without a backslash (nearly all of them) are parsed straight from the input
//! buffer; only escaped fields are unescaped into a reusable scratch buffer.
//!
//! # Types
//! | Arrow type | accepted text |
//! |---|---|
//! | `Int8/16/32/64`, `UInt8/16/32/64` | `[-+]digits`; out of range is an error |
//! | `Float32/64` | Rust `str::parse` syntax, incl. `NaN`, `Infinity`, `-Infinity` |
//! | `Decimal128(p, s)` | `[-+]digits[.digits]`, exact; more than `s` fractional digits only if the extra ones are `0` (never rounds); at most `p - s` integer digits |
//! | `Utf8`, `LargeUtf8` | any text that is valid UTF-8 after unescaping |
//! | `Binary`, `LargeBinary` | bytea hex form: `\x` + hex pairs (in the file: `\\x0a0b`) |
//! | `Boolean` | `t f true false 1 0 y n yes no on off`, any case |
//! | `Date32` | `YYYY-MM-DD` (4 to 6 year digits, no BC) |
//! | `Timestamp(Microsecond, None)` | `YYYY-MM-DD HH:MM:SS[.ffffff]` or with `T`; wall clock, no offset allowed |
//! | `Timestamp(Microsecond, Some(tz))` | the same, optionally followed by `Z`, `±HH`, `±HHMM`, `±HH:MM` or `±HH:MM:SS`; no offset = UTC; stored as UTC |
//! | `Time64(Microsecond)` | `HH:MM:SS[.ffffff]` (00:00:00 to 23:59:59.999999) |
//!
//! # Errors
//! Every error names the physical line (1-based) and, for a field, the column, the
//! offending raw text (cut to about 60 characters) and what was expected. An error stops the
//! decoder: the rows of the failing line are not usable, so later calls to
//! [`CopyTextDecoder::decode`] and [`CopyTextDecoder::finish`] return
//! [`CopyTextError::Poisoned`]. Batches completed before the failing line can still be taken
//! with [`CopyTextDecoder::next_batch`].

mod scan;
mod values;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{ArrayBuilder, GenericByteBuilder};
use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, GenericBinaryBuilder, GenericStringBuilder, Int16Builder, Int32Builder,
    Int64Builder, Int8Builder, LargeBinaryBuilder, LargeStringBuilder, PrimitiveBuilder,
    StringBuilder, Time64MicrosecondBuilder, TimestampMicrosecondBuilder, UInt16Builder,
    UInt32Builder, UInt64Builder, UInt8Builder,
};
use arrow_array::types::{ArrowPrimitiveType, ByteArrayType};
use arrow_array::{ArrayRef, GenericByteArray, OffsetSizeTrait, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};

use scan::{scan_record, unescape, Span};
use values::{Expected, IntError};

/// How many characters of an offending text an error message quotes.
const SNIPPET_CHARS: usize = 60;

/// Builders never pre-allocate room for more rows than this, whatever `batch_rows` says.
const MAX_PREALLOCATED_ROWS: usize = 8192;

/// [`read_file`] reads this much at a time.
const READ_CHUNK_BYTES: usize = 1 << 20;

/// [`read_file`] refuses a single line longer than this.
const MAX_LINE_BYTES: usize = 1 << 30;

/// Errors of COPY text decoding.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CopyTextError {
    /// The schema has a column of a type this decoder cannot produce.
    #[error(
        "column `{column}` has Arrow type {data_type}, which COPY text decoding does not \
         support{hint}"
    )]
    UnsupportedType {
        /// Column name.
        column: String,
        /// Its Arrow type.
        data_type: DataType,
        /// Why, when there is more to say than the type.
        hint: &'static str,
    },
    /// The schema has no columns.
    #[error("the schema has no columns; COPY text decoding needs at least one")]
    EmptySchema,
    /// `batch_rows` was 0.
    #[error("batch_rows must be at least 1")]
    ZeroBatchRows,
    /// A line has more or fewer tab-separated fields than the schema has columns.
    #[error("line {line}: expected {expected} tab-separated fields, found {found}: \"{text}\"")]
    FieldCount {
        /// 1-based line number.
        line: u64,
        /// Number of schema columns.
        expected: usize,
        /// Number of fields on the line.
        found: usize,
        /// The start of the line.
        text: String,
    },
    /// `\N` in a column whose field is not nullable.
    #[error("line {line}, column `{column}`: NULL (\\N) in a non-nullable column")]
    NullInNonNullable {
        /// 1-based line number.
        line: u64,
        /// Column name.
        column: String,
    },
    /// A field's text is not a valid value of its column's type.
    #[error("line {line}, column `{column}`: invalid value \"{text}\": expected {expected}")]
    InvalidValue {
        /// 1-based line number.
        line: u64,
        /// Column name.
        column: String,
        /// The raw field text (as in the input, escapes included), cut to about 60 characters.
        text: String,
        /// What the text should have looked like.
        expected: String,
    },
    /// The input ended inside a line (no terminating `\n`).
    #[error(
        "line {line}: input ends inside a line ({bytes} bytes without a terminating newline; \
         truncated input?): \"{text}\""
    )]
    IncompleteLine {
        /// 1-based line number of the incomplete line.
        line: u64,
        /// Its length so far.
        bytes: usize,
        /// Its start.
        text: String,
    },
    /// A single line is longer than [`read_file`] is willing to buffer.
    #[error("line {line}: longer than {limit} bytes")]
    LineTooLong {
        /// 1-based line number.
        line: u64,
        /// The limit, in bytes.
        limit: usize,
    },
    /// An earlier call returned an error; the decoder cannot go on.
    #[error("the decoder stopped at an earlier error (line {line}); start a new one")]
    Poisoned {
        /// The line of the earlier error.
        line: u64,
    },
    /// `decode` was called after `finish`.
    #[error("decode() called after finish()")]
    Finished,
    /// Reading the input failed.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Arrow refused to assemble a batch (a bug: builders match the schema).
    #[error("assembling a record batch: {0}")]
    Arrow(#[from] ArrowError),
}

/// Decodes COPY text into record batches of a fixed schema, incrementally.
///
/// ```no_run
/// # use ferry_connectors::copy_text::{bench_orders_schema, CopyTextDecoder, CopyTextError};
/// # fn chunks() -> Vec<Vec<u8>> { Vec::new() }
/// # fn main() -> Result<(), CopyTextError> {
/// let mut decoder = CopyTextDecoder::new(bench_orders_schema(), 8192)?;
/// let mut pending = Vec::new();
/// for chunk in chunks() {
///     pending.extend_from_slice(&chunk);
///     let used = decoder.decode(&pending)?;
///     pending.drain(..used);
///     while let Some(batch) = decoder.next_batch()? {
///         // ... send `batch`
///     }
/// }
/// while let Some(batch) = decoder.finish()? {
///     // ... the rest
/// }
/// # Ok(()) }
/// ```
pub struct CopyTextDecoder {
    schema: SchemaRef,
    batch_rows: usize,
    columns: Vec<Column>,
    /// Rows in the builders.
    rows: usize,
    /// Batches of exactly `batch_rows` rows, waiting for `next_batch`.
    ready: VecDeque<RecordBatch>,
    /// Line number of the next record.
    line: u64,
    /// Reused: field spans of the current record.
    spans: Vec<Span>,
    /// Reused: unescaped text of the current field.
    scratch: Vec<u8>,
    /// Reused: decoded bytes of a bytea field.
    bytes: Vec<u8>,
    /// What the last `decode` call left unconsumed: (bytes, start of it).
    partial: Option<(usize, String)>,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Decoding,
    /// Saw the `\.` end-of-data line.
    EndMarker,
    Finished,
    Poisoned {
        line: u64,
    },
}

impl std::fmt::Debug for CopyTextDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyTextDecoder")
            .field("columns", &self.columns.len())
            .field("batch_rows", &self.batch_rows)
            .field("buffered_rows", &self.rows)
            .field("ready_batches", &self.ready.len())
            .field("line", &self.line)
            .field("state", &self.state)
            .finish()
    }
}

impl CopyTextDecoder {
    /// A decoder producing batches of `schema` with `batch_rows` rows each (the last one may
    /// be shorter). Fails if the schema is empty, has a type listed nowhere in the
    /// [module docs](self), or `batch_rows` is 0.
    pub fn new(schema: SchemaRef, batch_rows: usize) -> Result<Self, CopyTextError> {
        if batch_rows == 0 {
            return Err(CopyTextError::ZeroBatchRows);
        }
        if schema.fields().is_empty() {
            return Err(CopyTextError::EmptySchema);
        }
        let capacity = batch_rows.min(MAX_PREALLOCATED_ROWS);
        let columns = schema
            .fields()
            .iter()
            .map(|field| Column::new(field, capacity))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            spans: Vec::with_capacity(columns.len() + 1),
            schema,
            batch_rows,
            columns,
            rows: 0,
            ready: VecDeque::new(),
            line: 1,
            scratch: Vec::new(),
            bytes: Vec::new(),
            partial: None,
            state: State::Decoding,
        })
    }

    /// The schema of the batches.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Decodes every complete line of `input`, which may end in the middle of a line, and
    /// returns how many bytes it consumed (up to and including the last complete line's
    /// `\n`). Pass the unconsumed rest again, with more input after it, in the next call.
    ///
    /// Rows go to internal builders; each time `batch_rows` of them are complete they become
    /// a batch for [`next_batch`](Self::next_batch). After an end-of-data line (`\.`), all
    /// input is consumed and ignored.
    pub fn decode(&mut self, input: &[u8]) -> Result<usize, CopyTextError> {
        match self.state {
            State::Decoding => {}
            State::EndMarker => return Ok(input.len()),
            State::Finished => return Err(CopyTextError::Finished),
            State::Poisoned { line } => return Err(CopyTextError::Poisoned { line }),
        }
        let mut pos = 0;
        while let Some(record) = scan_record(input, pos, &mut self.spans) {
            let line = self.line;
            if let Err(err) = self.append_record(input, line) {
                self.state = State::Poisoned { line };
                return Err(err);
            }
            pos = record.next;
            self.line += 1 + record.escaped_newlines;
            if self.state == State::EndMarker {
                self.partial = None;
                return Ok(input.len());
            }
            if self.rows >= self.batch_rows {
                if let Err(err) = self.flush() {
                    self.state = State::Poisoned { line };
                    return Err(err);
                }
            }
        }
        let rest = input.get(pos..).unwrap_or_default();
        self.partial = (!rest.is_empty()).then(|| (rest.len(), snippet(rest)));
        Ok(pos)
    }

    /// The next batch of exactly `batch_rows` rows, if one is complete.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>, CopyTextError> {
        Ok(self.ready.pop_front())
    }

    /// Ends the input: returns the batches not yet taken, one per call, ending with the
    /// remaining rows (fewer than `batch_rows`), then `None`. Call it until it returns
    /// `None`. Fails if the last [`decode`](Self::decode) call left part of a line
    /// unconsumed.
    pub fn finish(&mut self) -> Result<Option<RecordBatch>, CopyTextError> {
        match self.state {
            State::Decoding => {
                if let Some((bytes, text)) = self.partial.take() {
                    self.state = State::Poisoned { line: self.line };
                    return Err(CopyTextError::IncompleteLine {
                        line: self.line,
                        bytes,
                        text,
                    });
                }
                self.end()?;
            }
            State::EndMarker => self.end()?,
            State::Finished => {}
            State::Poisoned { line } => return Err(CopyTextError::Poisoned { line }),
        }
        Ok(self.ready.pop_front())
    }

    fn end(&mut self) -> Result<(), CopyTextError> {
        if self.rows > 0 {
            self.flush()?;
        }
        self.state = State::Finished;
        Ok(())
    }

    /// Moves the buffered rows into a batch on the ready queue.
    fn flush(&mut self) -> Result<(), CopyTextError> {
        let arrays = self.columns.iter_mut().map(Column::finish).collect();
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), arrays)?;
        self.rows = 0;
        self.ready.push_back(batch);
        Ok(())
    }

    /// Appends the record whose fields are in `self.spans`.
    fn append_record(&mut self, input: &[u8], line: u64) -> Result<(), CopyTextError> {
        if let [only] = self.spans.as_slice() {
            if input.get(only.start..only.end) == Some(b"\\.") {
                self.state = State::EndMarker;
                return Ok(());
            }
        }
        if self.spans.len() != self.columns.len() {
            let start = self.spans.first().map_or(0, |s| s.start);
            let end = self.spans.last().map_or(start, |s| s.end);
            return Err(CopyTextError::FieldCount {
                line,
                expected: self.columns.len(),
                found: self.spans.len(),
                text: snippet(input.get(start..end).unwrap_or_default()),
            });
        }
        for (column, span) in self.columns.iter_mut().zip(&self.spans) {
            let raw = input.get(span.start..span.end).unwrap_or_default();
            if raw == b"\\N" {
                if !column.nullable {
                    return Err(CopyTextError::NullInNonNullable {
                        line,
                        column: column.name.clone(),
                    });
                }
                column.builder.append_null();
                continue;
            }
            let text = if span.escaped {
                unescape(raw, &mut self.scratch);
                self.scratch.as_slice()
            } else {
                raw
            };
            if let Err(expected) = column.builder.append(text, &mut self.bytes) {
                return Err(CopyTextError::InvalidValue {
                    line,
                    column: column.name.clone(),
                    text: snippet(raw),
                    expected: expected.into_owned(),
                });
            }
        }
        self.rows += 1;
        Ok(())
    }
}

/// Reads a whole COPY text file into batches of `batch_rows` rows (the last may be shorter).
///
/// The file is read in 1 MiB chunks through one reused buffer, which grows only to hold a
/// line longer than that (up to 1 GiB); the batches themselves are of course all kept.
pub fn read_file(
    path: &Path,
    schema: SchemaRef,
    batch_rows: usize,
) -> Result<Vec<RecordBatch>, CopyTextError> {
    let io_error = |source| CopyTextError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_error)?;
    let mut decoder = CopyTextDecoder::new(schema, batch_rows)?;
    let mut batches = Vec::new();
    decode_reader(
        file,
        &mut decoder,
        READ_CHUNK_BYTES,
        MAX_LINE_BYTES,
        &mut |batch| batches.push(batch),
    )
    .map_err(|err| match err {
        ReadError::Io(source) => io_error(source),
        ReadError::Decode(err) => err,
    })?;
    Ok(batches)
}

enum ReadError {
    Io(std::io::Error),
    Decode(CopyTextError),
}

impl From<CopyTextError> for ReadError {
    fn from(err: CopyTextError) -> Self {
        Self::Decode(err)
    }
}

/// Feeds `reader` through `decoder` in `chunk`-byte reads, handing every batch to `sink`.
fn decode_reader(
    mut reader: impl Read,
    decoder: &mut CopyTextDecoder,
    chunk: usize,
    max_line: usize,
    sink: &mut dyn FnMut(RecordBatch),
) -> Result<(), ReadError> {
    let mut buf = vec![0u8; chunk.clamp(1, max_line.max(1))];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            // The buffer holds one incomplete line: make room for more of it.
            if buf.len() >= max_line {
                return Err(ReadError::Decode(CopyTextError::LineTooLong {
                    line: decoder.line,
                    limit: max_line,
                }));
            }
            buf.resize(buf.len().saturating_mul(2).min(max_line), 0);
        }
        let read = match reader.read(buf.get_mut(filled..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(err) => return Err(ReadError::Io(err)),
        };
        filled += read;
        let used = decoder.decode(buf.get(..filled).unwrap_or_default())?;
        buf.copy_within(used..filled, 0);
        filled -= used;
        while let Some(batch) = decoder.next_batch()? {
            sink(batch);
        }
    }
    while let Some(batch) = decoder.finish()? {
        sink(batch);
    }
    Ok(())
}

/// The schema of the benchmark table `bench_orders` (`shared/bench`), as Arrow types.
pub fn bench_orders_schema() -> SchemaRef {
    let money = DataType::Decimal128(18, 4);
    let micros = |tz: Option<&str>| DataType::Timestamp(TimeUnit::Microsecond, tz.map(Arc::from));
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int32, false),
        Field::new("status_code", DataType::Int32, true),
        Field::new("customer_name", DataType::Utf8, true),
        Field::new("note", DataType::Utf8, true),
        Field::new("amount", money.clone(), false),
        Field::new("discount", money, true),
        Field::new("weight", DataType::Float64, true),
        Field::new("created_at", micros(None), true),
        Field::new("updated_at", micros(Some("UTC")), true),
        Field::new("ship_date", DataType::Date32, true),
        Field::new("is_paid", DataType::Boolean, true),
        Field::new("attrs", DataType::Utf8, true),
    ]))
}

/// Up to [`SNIPPET_CHARS`] characters of `raw` for an error message: invalid UTF-8 shown as
/// U+FFFD, control characters escaped, `…` if cut.
fn snippet(raw: &[u8]) -> String {
    // Four bytes per character at most: never convert more than needed.
    let head = raw.get(..SNIPPET_CHARS * 4).unwrap_or(raw);
    let text = String::from_utf8_lossy(head);
    let mut out = String::with_capacity(SNIPPET_CHARS + 8);
    let mut chars = text.chars();
    for c in chars.by_ref().take(SNIPPET_CHARS) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if chars.next().is_some() || head.len() < raw.len() {
        out.push('…');
    }
    out
}

struct Column {
    name: String,
    nullable: bool,
    builder: ColumnBuilder,
}

impl Column {
    fn new(field: &Field, capacity: usize) -> Result<Self, CopyTextError> {
        Ok(Self {
            name: field.name().clone(),
            nullable: field.is_nullable(),
            builder: ColumnBuilder::new(field, capacity)?,
        })
    }

    fn finish(&mut self) -> ArrayRef {
        self.builder.finish()
    }
}

/// One Arrow builder per supported type, with what parsing needs to know about the type.
enum ColumnBuilder {
    Int8(Int8Builder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    UInt8(UInt8Builder),
    UInt16(UInt16Builder),
    UInt32(UInt32Builder),
    UInt64(UInt64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal128 {
        builder: Decimal128Builder,
        precision: u8,
        scale: i8,
    },
    Utf8(StringBuilder),
    LargeUtf8(LargeStringBuilder),
    Binary(BinaryBuilder),
    LargeBinary(LargeBinaryBuilder),
    Boolean(BooleanBuilder),
    Date32(Date32Builder),
    Timestamp {
        builder: TimestampMicrosecondBuilder,
        with_zone: bool,
    },
    Time64(Time64MicrosecondBuilder),
}

/// A primitive builder of exactly `data_type` (time zone, precision and scale included).
fn primitive<T: ArrowPrimitiveType>(data_type: &DataType, capacity: usize) -> PrimitiveBuilder<T> {
    PrimitiveBuilder::<T>::with_capacity(capacity).with_data_type(data_type.clone())
}

impl ColumnBuilder {
    fn new(field: &Field, capacity: usize) -> Result<Self, CopyTextError> {
        let data_type = field.data_type();
        let unsupported = |hint| CopyTextError::UnsupportedType {
            column: field.name().clone(),
            data_type: data_type.clone(),
            hint,
        };
        let text_bytes = capacity.saturating_mul(32);
        Ok(match data_type {
            DataType::Int8 => Self::Int8(primitive(data_type, capacity)),
            DataType::Int16 => Self::Int16(primitive(data_type, capacity)),
            DataType::Int32 => Self::Int32(primitive(data_type, capacity)),
            DataType::Int64 => Self::Int64(primitive(data_type, capacity)),
            DataType::UInt8 => Self::UInt8(primitive(data_type, capacity)),
            DataType::UInt16 => Self::UInt16(primitive(data_type, capacity)),
            DataType::UInt32 => Self::UInt32(primitive(data_type, capacity)),
            DataType::UInt64 => Self::UInt64(primitive(data_type, capacity)),
            DataType::Float32 => Self::Float32(primitive(data_type, capacity)),
            DataType::Float64 => Self::Float64(primitive(data_type, capacity)),
            &DataType::Decimal128(precision, scale) => {
                if !(1..=38).contains(&precision) || scale < 0 || scale as u8 > precision {
                    return Err(unsupported(
                        " (Decimal128 needs 1 <= precision <= 38 and 0 <= scale <= precision)",
                    ));
                }
                Self::Decimal128 {
                    builder: primitive(data_type, capacity),
                    precision,
                    scale,
                }
            }
            DataType::Utf8 => Self::Utf8(StringBuilder::with_capacity(capacity, text_bytes)),
            DataType::LargeUtf8 => {
                Self::LargeUtf8(LargeStringBuilder::with_capacity(capacity, text_bytes))
            }
            DataType::Binary => Self::Binary(BinaryBuilder::with_capacity(capacity, text_bytes)),
            DataType::LargeBinary => {
                Self::LargeBinary(LargeBinaryBuilder::with_capacity(capacity, text_bytes))
            }
            DataType::Boolean => Self::Boolean(BooleanBuilder::with_capacity(capacity)),
            DataType::Date32 => Self::Date32(primitive(data_type, capacity)),
            DataType::Timestamp(TimeUnit::Microsecond, zone) => Self::Timestamp {
                builder: primitive(data_type, capacity),
                with_zone: zone.is_some(),
            },
            DataType::Timestamp(..) => {
                return Err(unsupported(" (only Timestamp(Microsecond, _) is)"));
            }
            DataType::Time64(TimeUnit::Microsecond) => Self::Time64(primitive(data_type, capacity)),
            DataType::Time64(_) => return Err(unsupported(" (only Time64(Microsecond) is)")),
            _ => return Err(unsupported("")),
        })
    }

    fn append_null(&mut self) {
        match self {
            Self::Int8(b) => b.append_null(),
            Self::Int16(b) => b.append_null(),
            Self::Int32(b) => b.append_null(),
            Self::Int64(b) => b.append_null(),
            Self::UInt8(b) => b.append_null(),
            Self::UInt16(b) => b.append_null(),
            Self::UInt32(b) => b.append_null(),
            Self::UInt64(b) => b.append_null(),
            Self::Float32(b) => b.append_null(),
            Self::Float64(b) => b.append_null(),
            Self::Decimal128 { builder, .. } => builder.append_null(),
            Self::Utf8(b) => b.append_null(),
            Self::LargeUtf8(b) => b.append_null(),
            Self::Binary(b) => b.append_null(),
            Self::LargeBinary(b) => b.append_null(),
            Self::Boolean(b) => b.append_null(),
            Self::Date32(b) => b.append_null(),
            Self::Timestamp { builder, .. } => builder.append_null(),
            Self::Time64(b) => b.append_null(),
        }
    }

    /// Parses one unescaped field and appends it; `bytes` is scratch space for bytea.
    #[inline]
    fn append(&mut self, text: &[u8], bytes: &mut Vec<u8>) -> Result<(), Expected> {
        match self {
            Self::Int8(b) => b.append_value(narrow(values::parse_i64(text), "Int8")?),
            Self::Int16(b) => b.append_value(narrow(values::parse_i64(text), "Int16")?),
            Self::Int32(b) => b.append_value(narrow(values::parse_i64(text), "Int32")?),
            Self::Int64(b) => b.append_value(narrow(values::parse_i64(text), "Int64")?),
            Self::UInt8(b) => b.append_value(narrow(values::parse_u64(text), "UInt8")?),
            Self::UInt16(b) => b.append_value(narrow(values::parse_u64(text), "UInt16")?),
            Self::UInt32(b) => b.append_value(narrow(values::parse_u64(text), "UInt32")?),
            Self::UInt64(b) => b.append_value(narrow(values::parse_u64(text), "UInt64")?),
            Self::Float32(b) => b.append_value(values::parse_float(text)?),
            Self::Float64(b) => b.append_value(values::parse_float(text)?),
            Self::Decimal128 {
                builder,
                precision,
                scale,
            } => builder.append_value(values::parse_decimal(text, *precision, *scale)?),
            Self::Utf8(b) => append_str(b, text)?,
            Self::LargeUtf8(b) => append_str(b, text)?,
            Self::Binary(b) => {
                values::parse_bytea_hex(text, bytes)?;
                append_bytes(b, bytes)?;
            }
            Self::LargeBinary(b) => {
                values::parse_bytea_hex(text, bytes)?;
                append_bytes(b, bytes)?;
            }
            Self::Boolean(b) => b.append_value(values::parse_bool(text)?),
            Self::Date32(b) => b.append_value(values::parse_date32(text)?),
            Self::Timestamp { builder, with_zone } => {
                builder.append_value(values::parse_timestamp_micros(text, *with_zone)?)
            }
            Self::Time64(b) => b.append_value(values::parse_time64_micros(text)?),
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Int8(b) => Arc::new(b.finish()),
            Self::Int16(b) => Arc::new(b.finish()),
            Self::Int32(b) => Arc::new(b.finish()),
            Self::Int64(b) => Arc::new(b.finish()),
            Self::UInt8(b) => Arc::new(b.finish()),
            Self::UInt16(b) => Arc::new(b.finish()),
            Self::UInt32(b) => Arc::new(b.finish()),
            Self::UInt64(b) => Arc::new(b.finish()),
            Self::Float32(b) => Arc::new(b.finish()),
            Self::Float64(b) => Arc::new(b.finish()),
            Self::Decimal128 { builder, .. } => Arc::new(builder.finish()),
            Self::Utf8(b) => Arc::new(finish_bytes(b)),
            Self::LargeUtf8(b) => Arc::new(finish_bytes(b)),
            Self::Binary(b) => Arc::new(finish_bytes(b)),
            Self::LargeBinary(b) => Arc::new(finish_bytes(b)),
            Self::Boolean(b) => Arc::new(b.finish()),
            Self::Date32(b) => Arc::new(b.finish()),
            Self::Timestamp { builder, .. } => Arc::new(builder.finish()),
            Self::Time64(b) => Arc::new(b.finish()),
        }
    }
}

/// Finishes a string or binary builder, leaving a new one sized like the batch just built,
/// so that the next batch's values are not copied over and over as the buffer doubles.
fn finish_bytes<T: ByteArrayType>(builder: &mut GenericByteBuilder<T>) -> GenericByteArray<T> {
    let bytes = builder.values_slice().len();
    let fresh = GenericByteBuilder::with_capacity(builder.len(), bytes.saturating_add(bytes / 8));
    std::mem::replace(builder, fresh).finish()
}

/// Converts a parsed integer to the column's type, wording the error.
#[inline]
fn narrow<W, T: TryFrom<W>>(parsed: Result<W, IntError>, type_name: &str) -> Result<T, Expected> {
    match parsed {
        Ok(wide) => T::try_from(wide)
            .map_err(|_| Expected::Owned(format!("an integer within the {type_name} range"))),
        Err(IntError::Range) => Err(Expected::Owned(format!(
            "an integer within the {type_name} range"
        ))),
        Err(IntError::Syntax) => Err(Expected::Owned(format!(
            "an integer ([-+]digits) for {type_name}"
        ))),
    }
}

/// Largest value data one batch of a 32-bit-offset column can hold.
fn offset_limit<O: OffsetSizeTrait>() -> usize {
    if O::IS_LARGE {
        usize::MAX
    } else {
        i32::MAX as usize
    }
}

const OFFSET_OVERFLOW: &str = "a batch's data in this column to stay under 2 GiB \
     (use LargeUtf8/LargeBinary or a smaller batch_rows)";

#[inline]
fn append_str<O: OffsetSizeTrait>(
    builder: &mut GenericStringBuilder<O>,
    text: &[u8],
) -> Result<(), Expected> {
    let text = std::str::from_utf8(text)
        .map_err(|err| Expected::Owned(format!("valid UTF-8 text ({err})")))?;
    if builder.values_slice().len().saturating_add(text.len()) > offset_limit::<O>() {
        return Err(Expected::Borrowed(OFFSET_OVERFLOW));
    }
    builder.append_value(text);
    Ok(())
}

#[inline]
fn append_bytes<O: OffsetSizeTrait>(
    builder: &mut GenericBinaryBuilder<O>,
    bytes: &[u8],
) -> Result<(), Expected> {
    if builder.values_slice().len().saturating_add(bytes.len()) > offset_limit::<O>() {
        return Err(Expected::Borrowed(OFFSET_OVERFLOW));
    }
    builder.append_value(bytes);
    Ok(())
}

#[cfg(test)]
mod tests;
