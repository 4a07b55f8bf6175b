//! File readers and writers: CSV, JSON lines, Parquet and text logs, on any
//! opendal backend (local disk, S3-compatible stores, HTTP for reading).
//!
//! Why this shape: a file location is to Ferry what a table is to a
//! database connector, so files plug into the same [`Source`]/[`Sink`]
//! contract. A source plans one split per file ([`SplitBounds::File`]); a
//! sink gives every task its own part file, which becomes visible only when
//! the task's writer closes. The formats themselves are arrow-rs's own
//! readers and writers (`arrow-csv`, `arrow-json`, `parquet`); the text form
//! of values that a text format has no type for is defined once, in
//! [`value`].
//!
//! Options (DataX names; the engine moves them out of `parameter`):
//!
//! | option | formats | default | meaning |
//! |---|---|---|---|
//! | `format` | all | from the extension | `csv`, `jsonl` (`json`), `parquet`, `text` (`log`) |
//! | `fieldDelimiter` | csv | `,` | one byte (`\t` for TSV) |
//! | `header` | csv | `true` | first line holds the column names; written by the writer |
//! | `nullFormat` | csv | `\N` (DataX's) | the field text that means NULL; `""` makes empty fields NULL |
//! | `column` | csv, jsonl, text | — | list of `{name, type}` (csv also `index`, 0-based); parquet: names |
//! | `pattern` | text | one column `line` | regex with named groups, or a preset: `nginx`, `user_log` |
//! | `timeFormat` | text | ISO 8601 | strftime format (chrono) of `timestamp` columns |
//! | `onMismatch` | jsonl, text | `error` (text: `skip`) | a bad line: fail naming file and line, or skip it (counted, logged at the end of the file); CSV always fails |
//! | `compress` | parquet writer | `zstd` | `zstd`, `snappy`, `none` |
//! | `writeMode` | writers | `append` | `append`, `truncate`, `nonConflict` (see [`template`]) |
//! | `endpoint`, `region`, `accessKey`, `secretKey` | s3 | see [`location`] | |
//!
//! Column types (`type`): `string`; `int`/`bigint`/`long` (Int64), `tinyint`,
//! `smallint`, `int32`, `uint8`…`uint64`; `float`, `double`; `boolean`;
//! `decimal(p,s)` (p ≤ 38: Decimal128, else Decimal256); `date`; `timestamp`
//! (no zone; with a `%z` in `timeFormat`: UTC); `timestamptz` (UTC);
//! `time`; `duration`; `binary` (hex). Without `column`, CSV columns are
//! all strings named by the header (or `c0`, `c1`, … without one): no type
//! inference, so a value is never reinterpreted (`007` stays `007`). JSON
//! lines without `column` infer types from the first 1,000 lines.

pub mod csv;
pub mod jsonl;
pub mod location;
pub mod parquet;
pub mod template;
pub mod text;
pub mod value;

mod lines;
mod sink;

use std::str::FromStr;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, OnceCell};

use crate::error::ConnectorError;
use crate::spec::{ReadSpec, Split, SplitBounds};
use crate::traits::Source;

pub use location::{Location, Scheme, StorageOptions};
pub use sink::FileSink;

/// A file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Csv,
    Jsonl,
    Parquet,
    Text,
}

impl FileFormat {
    /// The names `format` accepts, for messages.
    pub const KNOWN: &'static str = "csv, jsonl, parquet, text";

    /// From a file name's extension (`.csv`, `.tsv`, `.json`, `.jsonl`,
    /// `.ndjson`, `.parquet`, `.log`, `.txt`).
    pub fn from_path(path: &str) -> Option<Self> {
        let name = path.trim_end_matches('/').rsplit('/').next()?;
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "csv" | "tsv" => Some(Self::Csv),
            "json" | "jsonl" | "ndjson" => Some(Self::Jsonl),
            "parquet" | "parq" => Some(Self::Parquet),
            "log" | "txt" => Some(Self::Text),
            _ => None,
        }
    }

    /// The extension of written parts.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Jsonl => "jsonl",
            Self::Parquet => "parquet",
            Self::Text => "log",
        }
    }
}

impl FromStr for FileFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" | "tsv" => Ok(Self::Csv),
            "jsonl" | "json" | "ndjson" | "jsonlines" => Ok(Self::Jsonl),
            "parquet" => Ok(Self::Parquet),
            "text" | "txt" | "log" => Ok(Self::Text),
            other => Err(format!(
                "unknown format \"{other}\"; known: {}",
                Self::KNOWN
            )),
        }
    }
}

/// A typed column of a text format.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub data_type: DataType,
    /// 0-based field position (CSV); `None`: the column's own position.
    pub index: Option<usize>,
}

/// What to do with a line that does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMismatch {
    Error,
    Skip,
}

/// Parquet compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compress {
    Zstd,
    Snappy,
    None,
}

/// How a writer treats files already at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileWriteMode {
    /// New parts never overwrite: a taken part number is skipped.
    Append,
    /// `prepare` deletes the parts (names of this sink's pattern) first.
    Truncate,
    /// `prepare` fails if the target directory holds any file.
    NonConflict,
}

/// Parsed file options (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct FileOptions {
    pub format: FileFormat,
    pub field_delimiter: u8,
    pub header: bool,
    pub null_format: String,
    pub columns: Vec<ColumnDef>,
    pub pattern: Option<String>,
    pub time_format: Option<String>,
    pub on_mismatch: OnMismatch,
    pub compress: Compress,
    pub write_mode: FileWriteMode,
    pub storage: StorageOptions,
}

fn opt_str(map: &Map<String, Value>, key: &str) -> Result<Option<String>, ConnectorError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(ConnectorError::config(
            key,
            format!("expected a string, got {other}"),
        )),
    }
}

/// The keys of a job's `parameter` that are file options (`column` too,
/// when it is a list of `{name, type}` objects; plain names stay the read's
/// column selection, which the job parser decides).
pub const JOB_OPTIONS: &[&str] = &[
    "format",
    "fieldDelimiter",
    "header",
    "nullFormat",
    "pattern",
    "timeFormat",
    "compress",
    "endpoint",
    "region",
    "accessKey",
    "secretKey",
    "onMismatch",
    "writeMode",
];

impl FileOptions {
    /// Parses `options` for the file at `path` (its extension decides the
    /// format when `format` is absent).
    pub fn from_map(path: &str, map: &Map<String, Value>) -> Result<Self, ConnectorError> {
        let known = |k: &str| k == "column" || JOB_OPTIONS.contains(&k);
        if let Some(k) = map.keys().find(|k| !known(k)) {
            return Err(ConnectorError::config(
                k,
                format!(
                    "unknown file option; known: column, {}",
                    JOB_OPTIONS.join(", ")
                ),
            ));
        }
        let format = match opt_str(map, "format")? {
            Some(f) => f
                .parse::<FileFormat>()
                .map_err(|e| ConnectorError::config("format", e))?,
            None => FileFormat::from_path(path).ok_or_else(|| {
                ConnectorError::config(
                    "format",
                    format!(
                        "missing, and `{path}` has no known extension; known: {}",
                        FileFormat::KNOWN
                    ),
                )
            })?,
        };
        let field_delimiter = match opt_str(map, "fieldDelimiter")?.as_deref() {
            None => b',',
            Some("\\t") | Some("\t") => b'\t',
            Some(d) if d.len() == 1 => d.as_bytes()[0],
            Some(d) => {
                return Err(ConnectorError::config(
                    "fieldDelimiter",
                    format!("`{d}`: must be one byte (or \\t)"),
                ))
            }
        };
        let header = match map.get("header") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
            Some(other) => {
                return Err(ConnectorError::config(
                    "header",
                    format!("expected true or false, got {other}"),
                ))
            }
        };
        let time_format = opt_str(map, "timeFormat")?;
        let columns = match map.get("column") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => parse_columns(items, time_format.as_deref())?,
            Some(other) => {
                return Err(ConnectorError::config(
                    "column",
                    format!("expected a list of {{name, type}}, got {other}"),
                ))
            }
        };
        let on_mismatch = match opt_str(map, "onMismatch")?.as_deref() {
            None if format == FileFormat::Text => OnMismatch::Skip,
            None | Some("error") => OnMismatch::Error,
            Some("skip") => OnMismatch::Skip,
            Some(o) => {
                return Err(ConnectorError::config(
                    "onMismatch",
                    format!("`{o}`: expected error or skip"),
                ))
            }
        };
        let compress = match opt_str(map, "compress")?
            .map(|s| s.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("zstd") => Compress::Zstd,
            Some("snappy") => Compress::Snappy,
            Some("none") | Some("uncompressed") => Compress::None,
            Some(o) => {
                return Err(ConnectorError::config(
                    "compress",
                    format!("`{o}`: expected zstd, snappy or none"),
                ))
            }
        };
        let write_mode = match opt_str(map, "writeMode")?.as_deref() {
            None | Some("append") => FileWriteMode::Append,
            Some("truncate") => FileWriteMode::Truncate,
            Some("nonConflict") | Some("nonconflict") => FileWriteMode::NonConflict,
            Some(o) => {
                return Err(ConnectorError::config(
                    "writeMode",
                    format!("`{o}`: expected append, truncate or nonConflict"),
                ))
            }
        };
        Ok(Self {
            format,
            field_delimiter,
            header,
            null_format: opt_str(map, "nullFormat")?.unwrap_or_else(|| "\\N".to_string()),
            columns,
            pattern: opt_str(map, "pattern")?,
            time_format,
            on_mismatch,
            compress,
            write_mode,
            storage: StorageOptions {
                endpoint: opt_str(map, "endpoint")?,
                region: opt_str(map, "region")?,
                access_key: opt_str(map, "accessKey")?,
                secret_key: opt_str(map, "secretKey")?,
            },
        })
    }
}

fn parse_columns(
    items: &[Value],
    time_format: Option<&str>,
) -> Result<Vec<ColumnDef>, ConnectorError> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = format!("column[{i}]");
        let Value::Object(m) = item else {
            return Err(ConnectorError::config(
                &field,
                "expected {name, type} (plain names go in the reader's `column`)",
            ));
        };
        let index = match m.get("index") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                ConnectorError::config(&field, "`index` must be a non-negative integer")
            })? as usize),
        };
        let name = match m.get("name") {
            Some(Value::String(s)) => s.clone(),
            None if index.is_some() => format!("c{}", index.unwrap_or(i)),
            _ => return Err(ConnectorError::config(&field, "`name` missing")),
        };
        let ty = match m.get("type") {
            Some(Value::String(s)) => s.clone(),
            None => "string".into(),
            Some(other) => {
                return Err(ConnectorError::config(
                    &field,
                    format!("`type` must be a string, got {other}"),
                ))
            }
        };
        let data_type =
            parse_type(&ty, time_format).map_err(|e| ConnectorError::config(&field, e))?;
        if let Some(k) = m
            .keys()
            .find(|k| !["name", "type", "index"].contains(&k.as_str()))
        {
            return Err(ConnectorError::config(
                &field,
                format!("unknown key `{k}` (expected name, type, index)"),
            ));
        }
        out.push(ColumnDef {
            name,
            data_type,
            index,
        });
    }
    Ok(out)
}

/// A column `type` name → Arrow type (see the module docs).
pub fn parse_type(ty: &str, time_format: Option<&str>) -> Result<DataType, String> {
    let t = ty.trim().to_ascii_lowercase();
    let utc = || Some(Arc::<str>::from("+00:00"));
    if let Some(args) = t
        .strip_prefix("decimal(")
        .or_else(|| t.strip_prefix("numeric("))
        .and_then(|r| r.strip_suffix(')'))
    {
        let (p, s) = args.split_once(',').unwrap_or((args, "0"));
        let p: u8 = p
            .trim()
            .parse()
            .map_err(|_| format!("bad precision in `{ty}`"))?;
        let s: i8 = s
            .trim()
            .parse()
            .map_err(|_| format!("bad scale in `{ty}`"))?;
        if p == 0 || p > 76 || s < 0 || s as u8 > p {
            return Err(format!("`{ty}`: need 1 ≤ p ≤ 76 and 0 ≤ s ≤ p"));
        }
        return Ok(if p <= 38 {
            DataType::Decimal128(p, s)
        } else {
            DataType::Decimal256(p, s)
        });
    }
    Ok(match t.as_str() {
        "string" | "varchar" | "text" | "char" | "utf8" => DataType::Utf8,
        "int" | "bigint" | "long" | "int64" | "integer" => DataType::Int64,
        "tinyint" | "int8" => DataType::Int8,
        "smallint" | "int16" => DataType::Int16,
        "int32" => DataType::Int32,
        "uint8" => DataType::UInt8,
        "uint16" => DataType::UInt16,
        "uint32" => DataType::UInt32,
        "uint64" | "ubigint" => DataType::UInt64,
        "float" | "float32" | "real" => DataType::Float32,
        "double" | "float64" => DataType::Float64,
        "boolean" | "bool" => DataType::Boolean,
        "date" => DataType::Date32,
        "timestamp" | "datetime" => {
            if time_format.is_some_and(|f| f.contains("%z") || f.contains("%:z")) {
                DataType::Timestamp(TimeUnit::Microsecond, utc())
            } else {
                DataType::Timestamp(TimeUnit::Microsecond, None)
            }
        }
        "timestamptz" => DataType::Timestamp(TimeUnit::Microsecond, utc()),
        "time" => DataType::Time64(TimeUnit::Microsecond),
        "duration" | "interval" => DataType::Duration(TimeUnit::Microsecond),
        "binary" | "bytes" | "varbinary" => DataType::Binary,
        _ => {
            return Err(format!(
                "unknown type `{ty}`; known: string, int/bigint/long, tinyint, smallint, int32, uint8..uint64, float, double, boolean, decimal(p,s), date, timestamp, timestamptz, time, duration, binary"
            ))
        }
    })
}

/// The schema of typed columns.
pub(crate) fn schema_of(columns: &[ColumnDef]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, c.data_type.clone(), true))
            .collect::<Vec<_>>(),
    ))
}

/// Selects `wanted`'s columns (by name) from `batch`.
pub(crate) fn project(
    path: &str,
    batch: &RecordBatch,
    wanted: &SchemaRef,
) -> Result<RecordBatch, ConnectorError> {
    let mut cols = Vec::with_capacity(wanted.fields().len());
    for f in wanted.fields() {
        let (i, _) = batch.schema().column_with_name(f.name()).ok_or_else(|| {
            ConnectorError::file(path, None, format!("has no column `{}`", f.name()))
        })?;
        cols.push(batch.column(i).clone());
    }
    RecordBatch::try_new(wanted.clone(), cols).map_err(|e| {
        ConnectorError::file(
            path,
            None,
            format!("does not fit the schema of the first file: {e}"),
        )
    })
}

/// Reads files (see the module docs).
pub struct FileSource {
    loc: Location,
    opts: FileOptions,
    /// The whole schema of the files (of the first file), before `column` selects.
    full: OnceCell<SchemaRef>,
}

impl FileSource {
    /// Opens `url` (a path, `file://`, `s3://`, `http(s)://`) with file `options`.
    pub fn open(url: &str, options: &Map<String, Value>) -> Result<Self, ConnectorError> {
        let opts = FileOptions::from_map(url, options)?;
        let loc = Location::open(url, &opts.storage)?;
        Ok(Self {
            loc,
            opts,
            full: OnceCell::new(),
        })
    }

    /// [`FileSource::open`], confined to the directory `root`: no file
    /// whose real path (symlinks followed) leaves it is listed or read (see
    /// [`Location::confine`]).
    pub fn open_confined(
        url: &str,
        options: &Map<String, Value>,
        root: &str,
    ) -> Result<Self, ConnectorError> {
        let mut source = Self::open(url, options)?;
        source.loc.confine(root)?;
        Ok(source)
    }

    pub fn options(&self) -> &FileOptions {
        &self.opts
    }

    /// The directory the files are listed from (see [`Location::base_dir`]).
    pub fn base_dir(&self) -> String {
        self.loc.base_dir()
    }

    async fn first_file(&self) -> Result<String, ConnectorError> {
        self.loc
            .files()
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ConnectorError::file(&self.loc.display, None, "no files match"))
    }

    async fn full_schema(&self) -> Result<SchemaRef, ConnectorError> {
        self.full
            .get_or_try_init(|| async {
                let first = self.first_file().await?;
                match self.opts.format {
                    FileFormat::Csv => csv::schema(&self.loc, &self.opts, &first).await,
                    FileFormat::Jsonl => jsonl::schema(&self.loc, &self.opts, &first).await,
                    FileFormat::Parquet => parquet::schema(&self.loc, &first).await,
                    FileFormat::Text => text::schema(&self.opts),
                }
            })
            .await
            .cloned()
    }
}

#[async_trait]
impl Source for FileSource {
    async fn schema(&self, spec: &ReadSpec) -> Result<SchemaRef, ConnectorError> {
        let full = self.full_schema().await?;
        if spec.columns.is_empty() || spec.columns == ["*"] {
            return Ok(full);
        }
        let mut fields = Vec::with_capacity(spec.columns.len());
        for c in &spec.columns {
            let f = full.field_with_name(c.trim()).map_err(|_| {
                ConnectorError::config(
                    "column",
                    format!(
                        "no column `{c}` in {}; columns: {}",
                        self.loc.display,
                        full.fields()
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
            fields.push(f.clone());
        }
        Ok(Arc::new(Schema::new_with_metadata(
            fields,
            full.metadata().clone(),
        )))
    }

    async fn plan(
        &self,
        _spec: &ReadSpec,
        _max_splits: usize,
    ) -> Result<Vec<Split>, ConnectorError> {
        let files = self.loc.files().await?;
        if files.is_empty() {
            return Err(ConnectorError::file(
                &self.loc.display,
                None,
                "no files match",
            ));
        }
        let total = files.len() as u32;
        Ok(files
            .into_iter()
            .enumerate()
            .map(|(i, path)| Split {
                index: i as u32,
                total,
                ..Split::whole(SplitBounds::File { path })
            })
            .collect())
    }

    async fn read(
        &self,
        spec: &ReadSpec,
        schema: SchemaRef,
        split: &Split,
        out: mpsc::Sender<RecordBatch>,
    ) -> Result<u64, ConnectorError> {
        let files = match &split.bounds {
            SplitBounds::File { path } => {
                self.loc.check_inside(path)?;
                vec![path.clone()]
            }
            _ => self.loc.files().await?,
        };
        let full = self.full_schema().await?;
        let fetch = spec.fetch_size.max(1);
        let mut rows = 0;
        for path in files {
            let ctx = ReadCtx {
                loc: &self.loc,
                opts: &self.opts,
                path: &path,
                full: &full,
                wanted: &schema,
                fetch,
                out: &out,
            };
            rows += match self.opts.format {
                FileFormat::Csv => csv::read(&ctx).await?,
                FileFormat::Jsonl => jsonl::read(&ctx).await?,
                FileFormat::Parquet => parquet::read(&ctx).await?,
                FileFormat::Text => text::read(&ctx).await?,
            };
        }
        Ok(rows)
    }
}

/// What a format's reader needs for one file.
pub(crate) struct ReadCtx<'a> {
    pub loc: &'a Location,
    pub opts: &'a FileOptions,
    pub path: &'a str,
    /// The file's whole schema.
    pub full: &'a SchemaRef,
    /// What to send (a selection of `full`).
    pub wanted: &'a SchemaRef,
    pub fetch: usize,
    pub out: &'a mpsc::Sender<RecordBatch>,
}

impl ReadCtx<'_> {
    /// Projects a batch of `full` to `wanted` and sends it (awaiting room).
    pub async fn send(&self, batch: RecordBatch) -> Result<u64, ConnectorError> {
        let n = batch.num_rows() as u64;
        if n == 0 {
            return Ok(0);
        }
        let b = project(self.path, &batch, self.wanted)?;
        self.out
            .send(b)
            .await
            .map_err(|_| ConnectorError::Cancelled)?;
        Ok(n)
    }

    pub fn err(&self, line: Option<u64>, message: impl Into<String>) -> ConnectorError {
        ConnectorError::file(self.path, line, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_errors_name_the_field() {
        let m: Map<String, Value> = serde_json::from_str(
            r#"{"fieldDelimiter":"\t","header":false,"column":[{"name":"a","type":"decimal(65,30)"},{"index":3,"type":"long"}]}"#,
        )
        .unwrap();
        let o = FileOptions::from_map("x.csv", &m).unwrap();
        assert_eq!(o.format, FileFormat::Csv);
        assert_eq!(o.field_delimiter, b'\t');
        assert_eq!(o.columns[0].data_type, DataType::Decimal256(65, 30));
        assert_eq!(o.columns[1].name, "c3");
        assert_eq!(o.null_format, "\\N");
        let m: Map<String, Value> = serde_json::from_str(r#"{"format":"xml"}"#).unwrap();
        let e = FileOptions::from_map("x", &m).unwrap_err().to_string();
        assert!(
            e.contains("`format`") && e.contains("unknown format \"xml\""),
            "{e}"
        );
        let m: Map<String, Value> =
            serde_json::from_str(r#"{"column":[{"name":"a","type":"blob2"}]}"#).unwrap();
        let e = FileOptions::from_map("x.csv", &m).unwrap_err().to_string();
        assert!(e.contains("column[0]"), "{e}");
        assert_eq!(
            FileOptions::from_map("a.log", &Map::new())
                .unwrap()
                .on_mismatch,
            OnMismatch::Skip
        );
    }
}
