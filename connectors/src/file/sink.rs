//! Writing files: one part per task (named by [`super::template`]), in CSV,
//! JSON lines or Parquet.
//!
//! Visibility: a part appears under its final name only when its writer's
//! `close` succeeds. On the local disk it is written as
//! `.<name>.inprogress-<random>` in the target directory and renamed into
//! place on close (readers skip names starting with `.`). On S3 the final
//! key is written directly: opendal uploads it as a multipart upload that is
//! completed only by `close`, so the object does not exist before (an
//! aborted or failed writer aborts the upload). A writer whose `write`
//! failed, or that is dropped without `close`, removes its in-progress file
//! and leaves no part.
//!
//! Resumed jobs: a task of a job ([`Sink::task_writer`]) first reserves its
//! part's name with an empty marker, `.<part>.ferry-<job>-<split>`, before
//! anything is written. Written again (a retry, a broker restart), the
//! split takes the same name, deletes in-progress files its earlier
//! attempts left, and its rename replaces the part if an earlier attempt
//! had committed it — so a resumed job leaves neither a half-written nor a
//! duplicate part. Markers also keep other splits off reserved names; they
//! are deleted when the job succeeds ([`Sink::forget`]).
//!
//! Value conversions per format (also in `docs/type-mapping.md`):
//! * CSV: a header row (option `header`), every value in the text form of
//!   [`super::value`] (binary as hex, durations `H:MM:SS.ffffff`), NULL as
//!   `nullFormat` (default `\N`). With `nullFormat: ""`, NULL and the empty
//!   string cannot be told apart when read back, and a string whose text is
//!   the `nullFormat` reads back as NULL (as in DataX).
//! * JSON lines: arrow-json with explicit `null`s; integers, floats and
//!   booleans as JSON numbers/booleans, everything else as strings in the
//!   text form (decimals as strings, so no digit is lost). JSON has no NaN
//!   or ±Infinity: a row holding one is a dirty record.
//! * Parquet: arrow-rs's `ArrowWriter` (zstd by default), which embeds the
//!   Arrow schema, so every type Ferry carries (UInt64, Decimal256,
//!   Duration, zoned timestamps, …) reads back as itself.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type};
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::{Map, Value};

use super::jsonl::{json_native, wire_schema};
use super::location::{storage_error, Location, Scheme};
use super::template::{in_progress, PartNames};
use super::value::{text_can_carry, to_text};
use super::{Compress, FileFormat, FileOptions, FileWriteMode};
use crate::error::ConnectorError;
use crate::spec::WriteSpec;
use crate::traits::{DirtyRecord, Sink, SinkWriter, WriteOutcome};

/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Bytes buffered before they are handed to the storage writer.
const FLUSH_BYTES: usize = 8 << 20;

/// Writes parts of one target path.
pub struct FileSink {
    loc: Location,
    opts: FileOptions,
    names: PartNames,
    next: AtomicU32,
}

impl FileSink {
    /// Opens `url` (a path, `file://`, `s3://`) with file `options`.
    pub fn open(url: &str, options: &Map<String, Value>) -> Result<Self, ConnectorError> {
        let opts = FileOptions::from_map(url, options)?;
        let loc = Location::open(url, &opts.storage)?;
        if loc.scheme == Scheme::Http {
            return Err(ConnectorError::config(
                "path",
                format!(
                    "`{url}`: http(s) locations are read only; write to a path, file:// or s3://"
                ),
            ));
        }
        if opts.format == FileFormat::Text {
            return Err(ConnectorError::config(
                "format",
                "text logs can be read, not written; write csv, jsonl or parquet",
            ));
        }
        let names = PartNames::new(&loc.path, opts.format.extension());
        Ok(Self {
            loc,
            opts,
            names,
            next: AtomicU32::new(0),
        })
    }

    /// The naming rule of this sink's parts.
    pub fn part_names(&self) -> &PartNames {
        &self.names
    }

    /// Names (without the directory) of every file in the target directory.
    async fn dir_names(&self) -> Result<Vec<String>, ConnectorError> {
        let dir = &self.names.dir;
        let entries = match self.loc.op.list(dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(storage_error(dir, e)),
        };
        Ok(entries
            .into_iter()
            .filter(|e| e.metadata().mode().is_file())
            .filter_map(|e| e.path().rsplit('/').next().map(str::to_string))
            .filter(|n| !n.is_empty())
            .collect())
    }

    async fn delete(&self, name: &str) -> Result<(), ConnectorError> {
        let p = format!("{}{name}", self.names.dir);
        self.loc
            .op
            .delete(&p)
            .await
            .map_err(|e| storage_error(&p, e))
    }

    /// The next part path no file and no other split's marker claims.
    async fn free_part(&self, names: &[String]) -> Result<String, ConnectorError> {
        let reserved: std::collections::HashSet<&str> = names
            .iter()
            .filter_map(|n| marked_part(n))
            .chain(names.iter().map(String::as_str))
            .collect();
        loop {
            let n = self.next.fetch_add(1, Ordering::SeqCst);
            let p = self.names.path(n);
            let name = p.rsplit('/').next().unwrap_or("");
            if reserved.contains(name) {
                continue;
            }
            // Listed a moment ago; another writer may have made it since.
            let exists = self
                .loc
                .op
                .exists(&p)
                .await
                .map_err(|e| storage_error(&p, e))?;
            if !exists {
                return Ok(p);
            }
        }
    }

    /// Opens a writer of the part `final_path`.
    async fn open_part(
        &self,
        final_path: String,
        schema: &SchemaRef,
    ) -> Result<Box<dyn SinkWriter>, ConnectorError> {
        let write_path = match self.loc.scheme {
            Scheme::Fs => {
                let name = final_path.rsplit('/').next().unwrap_or("");
                in_progress(&self.names.dir, name, token())
            }
            _ => final_path.clone(),
        };
        let writer = self
            .loc
            .op
            .writer_with(&write_path)
            .chunk(FLUSH_BYTES)
            .await
            .map_err(|e| storage_error(&write_path, e))?;
        let encoder = match self.opts.format {
            FileFormat::Parquet => {
                let compression = match self.opts.compress {
                    Compress::Zstd => Compression::ZSTD(ZstdLevel::default()),
                    Compress::Snappy => Compression::SNAPPY,
                    Compress::None => Compression::UNCOMPRESSED,
                };
                let props = WriterProperties::builder()
                    .set_compression(compression)
                    .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                    .build();
                let w = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))
                    .map_err(|e| ConnectorError::file(&final_path, None, e.to_string()))?;
                Encoder::Parquet(Box::new(w))
            }
            FileFormat::Csv => Encoder::Csv { header_done: false },
            _ => Encoder::Json,
        };
        Ok(Box::new(FileWriter {
            op: self.loc.op.clone(),
            opts: self.opts.clone(),
            schema: schema.clone(),
            final_path,
            write_path,
            writer: Some(writer),
            encoder,
            buf: Vec::new(),
            failed: false,
        }))
    }
}

/// The suffix of a part's marker for split `split` of job `job`.
fn marker_suffix(job: &str, split: u32) -> String {
    format!(".ferry-{job}-{split:05}")
}

/// The part a marker (`.<part>.ferry-<job>-<split>`) reserves.
fn marked_part(name: &str) -> Option<&str> {
    let rest = name.strip_prefix('.')?;
    let at = rest.rfind(".ferry-")?;
    let tail = &rest[at + ".ferry-".len()..];
    let (_, split) = tail.rsplit_once('-')?;
    (!split.is_empty() && split.bytes().all(|b| b.is_ascii_digit())).then_some(&rest[..at])
}

impl FileSink {
    fn check_types(&self, schema: &Schema) -> Result<(), ConnectorError> {
        for f in schema.fields() {
            let ok = match self.opts.format {
                FileFormat::Csv => text_can_carry(f.data_type()),
                FileFormat::Jsonl => json_native(f.data_type()) || text_can_carry(f.data_type()),
                FileFormat::Parquet => parquet::arrow::ArrowSchemaConverter::new()
                    .convert(&Schema::new(vec![f.as_ref().clone()]))
                    .is_ok(),
                FileFormat::Text => false,
            };
            if !ok {
                return Err(ConnectorError::UnsupportedType {
                    column: f.name().clone(),
                    type_name: format!("{} (in {:?} files)", f.data_type(), self.opts.format),
                });
            }
        }
        Ok(())
    }
}

fn token() -> u64 {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let x = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ SEQ
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // splitmix64 finaliser, so consecutive tokens look unrelated.
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[async_trait]
impl Sink for FileSink {
    async fn reattach(&self, _spec: &WriteSpec, schema: &SchemaRef) -> Result<(), ConnectorError> {
        // `truncate` and `nonConflict` acted on the first start; the parts
        // since written are the job's own.
        self.check_types(schema)
    }

    /// A task's part is renamed into place only when its writer closes; a
    /// dropped writer leaves nothing behind.
    fn replay_safe(&self, _spec: &WriteSpec) -> bool {
        true
    }

    async fn prepare(&self, _spec: &WriteSpec, schema: &SchemaRef) -> Result<(), ConnectorError> {
        self.check_types(schema)?;
        let dir = &self.names.dir;
        match self.opts.write_mode {
            FileWriteMode::Append => {}
            FileWriteMode::NonConflict => {
                let existing = self.loc.list(dir, false).await?;
                if let Some(f) = existing.first() {
                    return Err(ConnectorError::config(
                        "writeMode",
                        format!(
                            "nonConflict: `{}` already holds {} file(s), e.g. {f}",
                            if dir.is_empty() { "/" } else { dir },
                            existing.len()
                        ),
                    ));
                }
            }
            FileWriteMode::Truncate => {
                let entries = match self.loc.op.list(dir).await {
                    Ok(e) => e,
                    Err(e) if e.kind() == opendal::ErrorKind::NotFound => Vec::new(),
                    Err(e) => return Err(storage_error(dir, e)),
                };
                for e in entries {
                    let name = e.path().rsplit('/').next().unwrap_or("");
                    // Parts, in-progress files and markers of earlier jobs.
                    let ours = self.names.matches(name)
                        || marked_part(name).is_some_and(|p| self.names.matches(p));
                    if e.metadata().mode().is_file() && ours {
                        let p = e.path().trim_start_matches('/').to_string();
                        tracing::info!(path = %p, "writeMode truncate: deleting");
                        self.loc
                            .op
                            .delete(&p)
                            .await
                            .map_err(|e| storage_error(&p, e))?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn writer(
        &self,
        _spec: &WriteSpec,
        schema: &SchemaRef,
    ) -> Result<Box<dyn SinkWriter>, ConnectorError> {
        let final_path = self.free_part(&[]).await?;
        self.open_part(final_path, schema).await
    }

    async fn task_writer(
        &self,
        _spec: &WriteSpec,
        schema: &SchemaRef,
        job: &str,
        split: u32,
    ) -> Result<Box<dyn SinkWriter>, ConnectorError> {
        let names = self.dir_names().await?;
        let suffix = marker_suffix(job, split);
        let mine = names
            .iter()
            .find(|n| n.ends_with(&suffix))
            .and_then(|n| marked_part(n));
        let final_path = match mine {
            Some(part) => {
                // Written before: its earlier attempts' in-progress files go.
                let stale = format!(".{part}.inprogress-");
                for n in names.iter().filter(|n| n.starts_with(&stale)) {
                    tracing::info!(file = %n, split, "deleting an interrupted attempt's file");
                    self.delete(n).await?;
                }
                format!("{}{part}", self.names.dir)
            }
            None => {
                let p = self.free_part(&names).await?;
                let part = p.rsplit('/').next().unwrap_or("");
                let marker = format!("{}.{part}{suffix}", self.names.dir);
                self.loc
                    .op
                    .write(&marker, Vec::<u8>::new())
                    .await
                    .map_err(|e| storage_error(&marker, e))?;
                p
            }
        };
        self.open_part(final_path, schema).await
    }

    async fn forget(&self, _spec: &WriteSpec, job: &str) -> Result<(), ConnectorError> {
        let mine = format!(".ferry-{job}-");
        for n in self.dir_names().await? {
            if n.contains(&mine) && marked_part(&n).is_some() {
                self.delete(&n).await?;
            }
        }
        Ok(())
    }

    async fn finish(&self, _spec: &WriteSpec) -> Result<(), ConnectorError> {
        Ok(())
    }
}

enum Encoder {
    Csv { header_done: bool },
    Json,
    Parquet(Box<ArrowWriter<Vec<u8>>>),
}

struct FileWriter {
    op: opendal::Operator,
    opts: FileOptions,
    schema: SchemaRef,
    final_path: String,
    write_path: String,
    writer: Option<opendal::Writer>,
    encoder: Encoder,
    buf: Vec<u8>,
    failed: bool,
}

fn text_batch(
    batch: &RecordBatch,
    keep_native: impl Fn(&DataType) -> bool,
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if keep_native(f.data_type()) {
            fields.push(f.as_ref().clone());
            cols.push(c.clone());
        } else {
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            cols.push(Arc::new(to_text(c.as_ref())?));
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
}

/// Rows holding NaN or ±Infinity (which JSON cannot hold).
fn non_finite_rows(batch: &RecordBatch) -> Vec<(usize, String)> {
    let mut bad = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        let check = |i: usize, finite: bool, bad: &mut Vec<(usize, String)>| {
            if c.is_valid(i) && !finite && !bad.iter().any(|(r, _)| *r == i) {
                bad.push((i, f.name().clone()));
            }
        };
        match c.data_type() {
            DataType::Float32 => {
                let a = c.as_primitive::<Float32Type>();
                for i in 0..a.len() {
                    check(i, a.value(i).is_finite(), &mut bad);
                }
            }
            DataType::Float64 => {
                let a = c.as_primitive::<Float64Type>();
                for i in 0..a.len() {
                    check(i, a.value(i).is_finite(), &mut bad);
                }
            }
            _ => {}
        }
    }
    bad.sort();
    bad
}

fn row_json(batch: &RecordBatch, row: usize) -> Value {
    let mut m = Map::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        let v = to_text(c.slice(row, 1).as_ref())
            .ok()
            .filter(|t| t.is_valid(0))
            .map(|t| Value::String(t.value(0).to_string()))
            .unwrap_or(Value::Null);
        m.insert(f.name().clone(), v);
    }
    Value::Object(m)
}

impl FileWriter {
    fn encode(&mut self, batch: &RecordBatch) -> Result<Vec<DirtyRecord>, ConnectorError> {
        let path = self.final_path.clone();
        let ferr = |e: &dyn std::fmt::Display| ConnectorError::file(&path, None, e.to_string());
        match &mut self.encoder {
            Encoder::Csv { header_done } => {
                let t = text_batch(batch, |_| false).map_err(|e| ferr(&e))?;
                let mut w = arrow_csv::WriterBuilder::new()
                    .with_header(self.opts.header && !*header_done)
                    .with_delimiter(self.opts.field_delimiter)
                    .with_null(self.opts.null_format.clone())
                    .build(&mut self.buf);
                w.write(&t).map_err(|e| ferr(&e))?;
                *header_done = true;
                Ok(Vec::new())
            }
            Encoder::Json => {
                let bad = non_finite_rows(batch);
                let mut dirty = Vec::new();
                let batch = if bad.is_empty() {
                    batch.clone()
                } else {
                    let keep: BooleanArray = (0..batch.num_rows())
                        .map(|i| Some(!bad.iter().any(|(r, _)| *r == i)))
                        .collect();
                    for (row, column) in &bad {
                        dirty.push(DirtyRecord {
                            row: *row,
                            column: Some(column.clone()),
                            reason: "JSON has no NaN or Infinity".into(),
                            record: row_json(batch, *row),
                        });
                    }
                    arrow_select::filter::filter_record_batch(batch, &keep).map_err(|e| ferr(&e))?
                };
                let t = text_batch(&batch, json_native).map_err(|e| ferr(&e))?;
                debug_assert_eq!(
                    t.schema().fields().len(),
                    wire_schema(&self.schema).fields().len()
                );
                let mut w = arrow_json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, arrow_json::writer::LineDelimited>(&mut self.buf);
                w.write(&t).map_err(|e| ferr(&e))?;
                w.finish().map_err(|e| ferr(&e))?;
                Ok(dirty)
            }
            Encoder::Parquet(w) => {
                w.write(batch).map_err(|e| ferr(&e))?;
                // Hand over what the writer has finished (whole row groups).
                self.buf.append(w.inner_mut());
                Ok(Vec::new())
            }
        }
    }

    async fn flush(&mut self, force: bool) -> Result<(), ConnectorError> {
        if self.buf.is_empty() || (!force && self.buf.len() < FLUSH_BYTES) {
            return Ok(());
        }
        let bytes = bytes::Bytes::from(std::mem::take(&mut self.buf));
        let w = self.writer.as_mut().ok_or(ConnectorError::Cancelled)?;
        w.write(bytes)
            .await
            .map_err(|e| storage_error(&self.write_path, e))
    }

    async fn abort(&mut self) {
        self.failed = true;
        if let Some(mut w) = self.writer.take() {
            let _ = w.abort().await;
        }
        if self.write_path != self.final_path {
            let _ = self.op.delete(&self.write_path).await;
        }
    }

    async fn commit(&mut self) -> Result<(), ConnectorError> {
        let header_missing = matches!(self.encoder, Encoder::Csv { header_done: false });
        if header_missing && self.opts.header {
            let empty = RecordBatch::new_empty(self.schema.clone());
            self.encode(&empty)?;
        }
        if let Encoder::Parquet(w) = &mut self.encoder {
            w.finish()
                .map_err(|e| ConnectorError::file(&self.final_path, None, e.to_string()))?;
            self.buf.append(w.inner_mut());
        }
        self.flush(true).await?;
        let mut w = self.writer.take().ok_or(ConnectorError::Cancelled)?;
        w.close()
            .await
            .map_err(|e| storage_error(&self.write_path, e))?;
        if self.write_path != self.final_path {
            self.op
                .rename(&self.write_path, &self.final_path)
                .await
                .map_err(|e| storage_error(&self.final_path, e))?;
        }
        Ok(())
    }
}

#[async_trait]
impl SinkWriter for FileWriter {
    async fn write(&mut self, batch: &RecordBatch) -> Result<WriteOutcome, ConnectorError> {
        if self.failed {
            return Err(ConnectorError::file(
                &self.final_path,
                None,
                "the writer failed earlier",
            ));
        }
        let r = async {
            let dirty = self.encode(batch)?;
            self.flush(false).await?;
            Ok::<_, ConnectorError>(dirty)
        }
        .await;
        match r {
            Ok(dirty) => Ok(WriteOutcome {
                written: (batch.num_rows() - dirty.len()) as u64,
                dirty,
            }),
            Err(e) => {
                self.abort().await;
                Err(e)
            }
        }
    }

    async fn close(mut self: Box<Self>) -> Result<(), ConnectorError> {
        if self.failed {
            self.abort().await;
            return Err(ConnectorError::file(
                &self.final_path,
                None,
                "not written: the writer failed",
            ));
        }
        match self.commit().await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.abort().await;
                Err(e)
            }
        }
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        // Dropped without close (a cancelled task): no part may appear.
        let Some(mut w) = self.writer.take() else {
            return;
        };
        let op = self.op.clone();
        let tmp = (self.write_path != self.final_path).then(|| self.write_path.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = w.abort().await;
                if let Some(tmp) = tmp {
                    let _ = op.delete(&tmp).await;
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_name_their_part() {
        let m = format!(".part-00003.parquet{}", marker_suffix("0a1b-2c", 7));
        assert_eq!(m, ".part-00003.parquet.ferry-0a1b-2c-00007");
        assert_eq!(marked_part(&m), Some("part-00003.parquet"));
        assert_eq!(marked_part(".part-00003.parquet.inprogress-00ff"), None);
        assert_eq!(marked_part("part-00003.parquet"), None);
        assert_eq!(marked_part(".x.ferry-job-"), None);
    }
}
