//! Errors of readers and writers.

/// A failure of a connector.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// A parameter is missing or wrong.
    #[error("invalid parameter `{field}`: {reason}")]
    Config { field: String, reason: String },
    /// The data source could not be reached.
    #[error("cannot connect to {what}: {message}")]
    Connect { what: String, message: String },
    /// A statement failed.
    #[error("{what} failed: {message}")]
    Query { what: String, message: String },
    /// A column type has no mapping.
    #[error("column `{column}` has type {type_name}, which Ferry cannot carry yet")]
    UnsupportedType { column: String, type_name: String },
    /// A value that cannot be read (the whole read fails: a source is never silently lossy).
    #[error("column `{column}`: {message}")]
    Value { column: String, message: String },
    /// The table does not exist (and was not to be created).
    #[error("table `{0}` does not exist")]
    NoSuchTable(String),
    /// Source and target schemas do not fit together.
    #[error("schema mismatch: {0}")]
    Schema(String),
    /// Bad input in a file (a malformed line, a value that does not parse,
    /// an unreadable Parquet footer); `line` is 1-based where known.
    #[error("file {path}{}: {message}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    File {
        path: String,
        line: Option<u64>,
        message: String,
    },
    /// The storage service (local disk, S3, HTTP) failed.
    #[error("storage {what}: {message}")]
    Storage { what: String, message: String },
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The consumer of the batches went away (the job was cancelled).
    #[error("the batch consumer stopped")]
    Cancelled,
}

impl ConnectorError {
    pub fn config(field: &str, reason: impl Into<String>) -> Self {
        ConnectorError::Config {
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    pub fn file(path: impl Into<String>, line: Option<u64>, message: impl Into<String>) -> Self {
        ConnectorError::File {
            path: path.into(),
            line,
            message: message.into(),
        }
    }

    pub fn query(what: impl Into<String>, e: impl std::fmt::Display) -> Self {
        ConnectorError::Query {
            what: what.into(),
            message: e.to_string(),
        }
    }
}
