//! The end-of-job summary, in the spirit of DataX's.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What a job did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
    pub records_read: u64,
    pub records_written: u64,
    /// In-memory Arrow size of what was read.
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Bytes that crossed a tunnel (0 standalone).
    pub wire_bytes: u64,
    pub dirty_records: u64,
    pub dirty_file: Option<PathBuf>,
    pub splits: usize,
    pub failed: Option<String>,
    /// Values Ferry changed on purpose (zero dates read as NULL), per column.
    #[serde(default)]
    pub changes: ferry_connectors::spec::Changes,
    /// A whole-database job's tables, one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<TableLine>,
    /// What a whole-database job did not migrate (views, routines).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_migrated: Vec<String>,
}

/// One table of a whole-database job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableLine {
    pub source: String,
    pub target: String,
    /// The table's own summary (its `tables` empty).
    pub summary: Box<Summary>,
    /// Why the table failed (its load, or a foreign key added after it).
    pub failed: Option<String>,
    /// Loaded by an earlier run of the job (a resume did not load it again).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub earlier: bool,
}

impl TableLine {
    pub fn of(source: String, target: String, summary: Summary) -> Self {
        Self {
            failed: summary.failed.clone(),
            earlier: false,
            source,
            target,
            summary: Box::new(summary),
        }
    }
}

impl Summary {
    /// The totals of a many-table job's `lines`, each changed column named with its table
    /// (its `tables` left empty).
    pub fn of_tables(start: OffsetDateTime, lines: &[TableLine]) -> Self {
        let mut total = Self::sum(start, lines.iter().map(|l| l.summary.as_ref()));
        total.changes = Default::default();
        for l in lines {
            for (column, what, n) in l.summary.changes.entries() {
                total
                    .changes
                    .add(&format!("{}.{column}", l.source), what, n);
            }
        }
        total
    }

    /// A job that failed before it read anything.
    pub fn failed_at(start: OffsetDateTime, error: String) -> Self {
        Self {
            start,
            end: OffsetDateTime::now_utc(),
            records_read: 0,
            records_written: 0,
            bytes_read: 0,
            bytes_written: 0,
            wire_bytes: 0,
            dirty_records: 0,
            dirty_file: None,
            splits: 0,
            failed: Some(error),
            changes: Default::default(),
            tables: Vec::new(),
            not_migrated: Vec::new(),
        }
    }

    /// The totals of several jobs (a whole-database job's tables), from `start` to now.
    pub fn sum<'a>(start: OffsetDateTime, parts: impl Iterator<Item = &'a Summary>) -> Self {
        let mut total = Self::failed_at(start, String::new());
        total.failed = None;
        for p in parts {
            total.records_read += p.records_read;
            total.records_written += p.records_written;
            total.bytes_read += p.bytes_read;
            total.bytes_written += p.bytes_written;
            total.wire_bytes += p.wire_bytes;
            total.dirty_records += p.dirty_records;
            total.splits += p.splits;
            total.changes.merge(&p.changes);
            if p.dirty_file.is_some() && total.dirty_file.is_none() {
                total.dirty_file = p.dirty_file.clone();
            }
        }
        total.end = OffsetDateTime::now_utc();
        total
    }

    pub fn elapsed_secs(&self) -> f64 {
        ((self.end - self.start).as_seconds_f64()).max(1e-9)
    }

    pub fn succeeded(&self) -> bool {
        self.failed.is_none()
    }

    /// A whole-database job's tables that failed.
    pub fn failed_tables(&self) -> Vec<&str> {
        self.tables
            .iter()
            .filter(|t| t.failed.is_some())
            .map(|t| t.source.as_str())
            .collect()
    }
}

fn ts(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.format(&f).unwrap_or_default()
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.tables.is_empty() {
            let width = self
                .tables
                .iter()
                .map(|t| t.source.len())
                .max()
                .unwrap_or(5)
                .max(5);
            writeln!(
                f,
                "{:<width$}  {:>12}  {:>8}  {:>6}  status",
                "table", "rows", "seconds", "dirty"
            )?;
            for t in &self.tables {
                let s = &t.summary;
                let status = match &t.failed {
                    None if t.earlier => "ok (loaded by an earlier run)".to_string(),
                    None => "ok".to_string(),
                    Some(e) => format!("FAILED: {e}"),
                };
                writeln!(
                    f,
                    "{:<width$}  {:>12}  {:>8.2}  {:>6}  {status}",
                    t.source,
                    s.records_written,
                    s.elapsed_secs(),
                    s.dirty_records
                )?;
            }
            for n in &self.not_migrated {
                writeln!(f, "not migrated          : {n}")?;
            }
            writeln!(f, "Tables                : {}", self.tables.len())?;
        }
        let secs = self.elapsed_secs();
        writeln!(f, "Job start time        : {}", ts(self.start))?;
        writeln!(f, "Job end time          : {}", ts(self.end))?;
        writeln!(f, "Total elapsed         : {secs:.2} s")?;
        writeln!(f, "Splits                : {}", self.splits)?;
        writeln!(f, "Records read          : {}", self.records_read)?;
        writeln!(f, "Records written       : {}", self.records_written)?;
        writeln!(
            f,
            "Bytes read            : {:.1} MB",
            self.bytes_read as f64 / 1e6
        )?;
        writeln!(
            f,
            "Bytes written         : {:.1} MB",
            self.bytes_written as f64 / 1e6
        )?;
        if self.wire_bytes == 0 {
            writeln!(f, "Bytes on the wire     : - (standalone, no tunnel)")?;
        } else {
            // Against the data as read (Arrow in memory): what compression saved.
            writeln!(
                f,
                "Bytes on the wire     : {:.1} MB ({:.1}x smaller than read)",
                self.wire_bytes as f64 / 1e6,
                self.bytes_read as f64 / self.wire_bytes as f64
            )?;
        }
        writeln!(
            f,
            "Average throughput    : {:.1} MB/s",
            self.bytes_read as f64 / 1e6 / secs
        )?;
        writeln!(
            f,
            "Record write speed    : {:.0} rec/s",
            self.records_written as f64 / secs
        )?;
        match &self.dirty_file {
            Some(p) if self.dirty_records > 0 => writeln!(
                f,
                "Dirty records         : {} (see {})",
                self.dirty_records,
                p.display()
            )?,
            _ => writeln!(f, "Dirty records         : {}", self.dirty_records)?,
        }
        if !self.changes.is_empty() {
            writeln!(f, "Changed values        : {}", self.changes.total())?;
            for (column, what, n) in self.changes.entries() {
                writeln!(f, "  {column}: {n} {what}")?;
            }
        }
        match &self.failed {
            None => write!(f, "Result                : succeeded"),
            Some(e) => write!(f, "Result                : FAILED: {e}"),
        }
    }
}
