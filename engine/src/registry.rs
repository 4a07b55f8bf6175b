//! Opening the connector of a job's reader or writer, by its [`Kind`].

use std::sync::Arc;

use ferry_connectors::{ConnectorError, Kind, Sink, Source};

use serde_json::{Map, Value};

use crate::config::{Location, ReaderConfig, WriterConfig};

/// A connector that cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the {which} names data source `{group}/{name}`, which only an agent can resolve: submit the job to a broker (`ferry job submit`) or give a `url`")]
    NeedsBroker {
        which: &'static str,
        group: String,
        name: String,
    },
    #[error("{which}: {source}")]
    Connector {
        which: &'static str,
        source: ConnectorError,
    },
}

fn url<'a>(which: &'static str, loc: &'a Location) -> Result<&'a str, OpenError> {
    match loc {
        Location::Url(u) => Ok(u),
        Location::DataSource { group, name } => Err(OpenError::NeedsBroker {
            which,
            group: group.clone(),
            name: name.clone(),
        }),
    }
}

/// Opens the reader's data source (a URL; a `group/name` data source is
/// resolved by an agent, which calls [`open_source_at`]).
pub async fn open_source(cfg: &ReaderConfig) -> Result<Arc<dyn Source>, OpenError> {
    open_source_at(cfg.kind, url("reader", &cfg.location)?, &cfg.options).await
}

/// Opens a source of connector `kind` at `url` with connector `options`.
pub async fn open_source_at(
    kind: Kind,
    url: &str,
    options: &Map<String, Value>,
) -> Result<Arc<dyn Source>, OpenError> {
    let which = "reader";
    let wrap = |source| OpenError::Connector { which, source };
    Ok(match kind {
        Kind::Postgres => Arc::new(
            ferry_connectors::postgres::PostgresSource::connect(url)
                .await
                .map_err(wrap)?,
        ),
        Kind::Sqlite => Arc::new(
            ferry_connectors::sqlite::SqliteSource::connect(url)
                .await
                .map_err(wrap)?,
        ),
        Kind::File => {
            Arc::new(ferry_connectors::file::FileSource::open(url, options).map_err(wrap)?)
        }
        Kind::MySql => {
            let my_options =
                ferry_connectors::mysql::MySqlReadOptions::from_options(options).map_err(wrap)?;
            Arc::new(
                ferry_connectors::mysql::MySqlSource::connect_with(url, my_options)
                    .await
                    .map_err(wrap)?,
            )
        }
    })
}

/// Opens the writer's target.
pub async fn open_sink(cfg: &WriterConfig) -> Result<Arc<dyn Sink>, OpenError> {
    let which = "writer";
    let url = url(which, &cfg.location)?;
    let wrap = |source| OpenError::Connector { which, source };
    Ok(match cfg.kind {
        Kind::Postgres => Arc::new(
            ferry_connectors::postgres::PostgresSink::connect(url)
                .await
                .map_err(wrap)?,
        ),
        Kind::Sqlite => Arc::new(
            ferry_connectors::sqlite::SqliteSink::connect(url)
                .await
                .map_err(wrap)?,
        ),
        Kind::File => {
            Arc::new(ferry_connectors::file::FileSink::open(url, &cfg.options).map_err(wrap)?)
        }
        Kind::MySql => Arc::new(
            ferry_connectors::mysql::MySqlSink::connect(url)
                .await
                .map_err(wrap)?,
        ),
    })
}
