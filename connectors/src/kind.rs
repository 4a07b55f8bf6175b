//! The connectors Ferry has, by kind: the one place that knows their names
//! (in agent configs, on the wire, and DataX-style in job files), the
//! options each takes from a job's `parameter`, its SQL dialect, and which
//! take a password beside their URL. The engine, the agent and the broker
//! ask [`Kind`] instead of matching on strings of their own.

use std::fmt;

use ferry_screen::Dialect;

/// A connector kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// PostgreSQL (`postgres://`).
    Postgres,
    /// MySQL and MariaDB (`mysql://`).
    MySql,
    /// SQLite (a file path or `sqlite://`).
    Sqlite,
    /// Files on local disk, S3-compatible stores or HTTP: CSV, JSON lines,
    /// Parquet, text logs.
    File,
}

/// A job file's connector name that no kind answers to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown connector `{name}` ({base}); known: mysql, postgres, sqlite, file (txtfile, csv, json, parquet, log, s3, oss)")]
pub struct UnknownConnector {
    /// The name as written.
    pub name: String,
    /// The name without `reader`/`writer`, lower-cased.
    pub base: String,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 4] = [Kind::Postgres, Kind::MySql, Kind::Sqlite, Kind::File];

    /// The kind's name, as agent configs and the wire say it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Postgres => "postgres",
            Kind::MySql => "mysql",
            Kind::Sqlite => "sqlite",
            Kind::File => "file",
        }
    }

    /// The kind called exactly `name` (an agent config's `kind`, a
    /// `SourceInfo`'s).
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// A job file's connector name, DataX-style (`mysqlreader`,
    /// `postgresqlwriter`, `csvreader`, `s3writer`, …): its kind and, for
    /// files, the format the name implies (`csv`, `jsonl`, `parquet`,
    /// `text`; none for `file`, `s3`, `oss`, whose format comes from
    /// `format` or the path's extension).
    pub fn from_job_name(name: &str) -> Result<(Kind, Option<&'static str>), UnknownConnector> {
        let base = name
            .strip_suffix("reader")
            .or_else(|| name.strip_suffix("writer"))
            .unwrap_or(name)
            .to_ascii_lowercase();
        Ok(match base.as_str() {
            "mysql" | "mariadb" => (Kind::MySql, None),
            "postgresql" | "postgres" | "pg" => (Kind::Postgres, None),
            "sqlite" | "sqlite3" => (Kind::Sqlite, None),
            "file" | "s3" | "oss" => (Kind::File, None),
            "txtfile" | "csv" => (Kind::File, Some("csv")),
            "json" | "jsonl" => (Kind::File, Some("jsonl")),
            "parquet" => (Kind::File, Some("parquet")),
            "log" | "text" => (Kind::File, Some("text")),
            _ => {
                return Err(UnknownConnector {
                    name: name.to_string(),
                    base,
                })
            }
        })
    }

    /// The keys of a job's `parameter` that are this connector's own
    /// options (moved out of the read or write spec into its options).
    pub fn job_options(self) -> &'static [&'static str] {
        match self {
            Kind::MySql => crate::mysql::OPTIONS,
            Kind::File => crate::file::JOB_OPTIONS,
            Kind::Postgres | Kind::Sqlite => &[],
        }
    }

    /// The SQL dialect `where` and `querySql` are written in, for the
    /// kinds that take SQL.
    pub fn dialect(self) -> Option<Dialect> {
        match self {
            Kind::Postgres => Some(Dialect::Postgres),
            Kind::MySql => Some(Dialect::MySql),
            Kind::Sqlite => Some(Dialect::Sqlite),
            Kind::File => None,
        }
    }

    /// Whether a source of this kind takes a `password` beside its URL
    /// (put into the URL's user info).
    pub fn takes_password(self) -> bool {
        matches!(self, Kind::Postgres | Kind::MySql)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_name(k.name()), Some(k));
        }
        assert_eq!(Kind::from_name("MySQL"), None, "exact names only");
    }

    #[test]
    fn datax_names() {
        for (name, kind, format) in [
            ("mysqlreader", Kind::MySql, None),
            ("mariadbwriter", Kind::MySql, None),
            ("postgresqlwriter", Kind::Postgres, None),
            ("pg", Kind::Postgres, None),
            ("sqlite3reader", Kind::Sqlite, None),
            ("s3writer", Kind::File, None),
            ("txtfilereader", Kind::File, Some("csv")),
            ("jsonlwriter", Kind::File, Some("jsonl")),
            ("parquetreader", Kind::File, Some("parquet")),
            ("logreader", Kind::File, Some("text")),
        ] {
            assert_eq!(Kind::from_job_name(name), Ok((kind, format)), "{name}");
        }
        let e = Kind::from_job_name("oraclereader").unwrap_err();
        assert!(e.to_string().contains("`oraclereader` (oracle)"), "{e}");
    }
}
