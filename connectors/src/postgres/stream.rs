//! A PostgreSQL change stream: a logical slot read over the streaming replication protocol
//! (`pgwire-replication`), its `pgoutput` messages decoded ([`super::pgoutput`]) into change
//! batches ([`ChangeDecoder`]) of the tables asked for, with each transaction's commit
//! position.
//!
//! The slot advances only when the caller says a position is safe ([`PgChangeStream::ack`]):
//! a stream that stops, or a process that dies, resumes from the last acknowledged commit,
//! and the server keeps the WAL from there. Changes of tables not asked for are not decoded
//! (their relations are never bound).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use arrow_array::RecordBatch;
use pgwire_replication::{ReplicationClient, ReplicationConfig, ReplicationEvent, TlsConfig};

use super::changes::{ChangeDecoder, ChangeTable};
use super::pgoutput::{self, Lsn, Message};
use super::PostgresSource;
use crate::error::ConnectorError;
use crate::spec::ReadSpec;

/// What a change stream yields.
#[derive(Debug, Clone)]
pub enum StreamEvent {
    /// Changes of `table` (as it was named in the stream's specs), in commit order.
    Changes { table: String, batch: RecordBatch },
    /// The transaction whose changes came before committed; `end_lsn` is the position to
    /// acknowledge once they are applied.
    Commit {
        lsn: Lsn,
        end_lsn: Lsn,
        /// Microseconds since 2000-01-01 00:00 UTC.
        commit_time: i64,
    },
    /// The server's WAL is at `wal_end` and nothing is pending: a quiet database's position
    /// still moves.
    Idle { wal_end: Lsn },
}

/// How often an acknowledged position is reported to the server, at most.
const STATUS_INTERVAL: Duration = Duration::from_millis(500);

/// A slot or publication name Ferry creates or is configured with: it reaches replication
/// commands unquoted, so it is a plain lowercase identifier.
pub fn check_name(what: &str, name: &str) -> Result<(), ConnectorError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ConnectorError::config(
            what,
            format!("`{name}`: lowercase letters, digits and _ only, at most 63"),
        ))
    }
}

fn repl(what: &str, e: pgwire_replication::PgWireError) -> ConnectorError {
    ConnectorError::Connect {
        what: what.to_string(),
        message: e.to_string(),
        code: None,
    }
}

/// The stream's connection: the source URL's parts.
fn replication_config(
    url: &str,
    slot: &str,
    publication: &str,
    start: Lsn,
) -> Result<ReplicationConfig, ConnectorError> {
    let u = url::Url::parse(url).map_err(|e| ConnectorError::config("url", e.to_string()))?;
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let host = u.host_str().unwrap_or("localhost").to_string();
    let database = u.path().trim_start_matches('/');
    let user = decode(u.username());
    let password = u.password().map(decode).unwrap_or_default();
    let sslmode = u
        .query_pairs()
        .find(|(k, _)| k == "sslmode")
        .map(|(_, v)| v.into_owned());
    let tls = match sslmode.as_deref() {
        None | Some("disable") | Some("prefer") | Some("allow") => TlsConfig::disabled(),
        Some("require") => TlsConfig::require(),
        Some("verify-ca") => TlsConfig::verify_ca(None),
        Some("verify-full") => TlsConfig::verify_full(None),
        Some(other) => {
            return Err(ConnectorError::config(
                "url",
                format!("sslmode `{other}` is not one a change stream takes"),
            ))
        }
    };
    Ok(ReplicationConfig::new(
        host,
        if user.is_empty() {
            "postgres".into()
        } else {
            user
        },
        password,
        if database.is_empty() {
            "postgres"
        } else {
            database
        },
        slot,
        publication,
    )
    .with_port(u.port().unwrap_or(5432))
    .with_tls(tls)
    .with_start_lsn(pgwire_replication::Lsn(start))
    .with_binary(true)
    .with_status_interval(STATUS_INTERVAL)
    // Observed only so the client tracks acknowledgements not yet reported (`stop` waits
    // for them).
    .with_feedback_observer(pgwire_replication::FeedbackObserver::new(|_| {}))
    .with_application_name("ferry-agent"))
}

/// A running change stream.
pub struct PgChangeStream {
    client: ReplicationClient,
    source: PostgresSource,
    /// The tables asked for, by `schema.table`, with their read specs.
    wanted: HashMap<String, ReadSpec>,
    /// Bound relations: their name in `wanted`.
    names: HashMap<u32, String>,
    decoder: ChangeDecoder,
    pending: VecDeque<StreamEvent>,
}

impl PgChangeStream {
    /// Starts streaming `slot` (which exists, made for `pgoutput`) through `publication` from
    /// `start` (0: the slot's confirmed position), decoding the changes of `tables`. `url`
    /// is the source's, whose login needs the REPLICATION attribute.
    pub async fn start(
        source: &PostgresSource,
        url: &str,
        slot: &str,
        publication: &str,
        start: Lsn,
        tables: Vec<ReadSpec>,
        batch_rows: usize,
    ) -> Result<Self, ConnectorError> {
        check_name("slot", slot)?;
        check_name("publication", publication)?;
        let mut wanted = HashMap::new();
        for spec in tables {
            let name = spec
                .table
                .clone()
                .ok_or_else(|| ConnectorError::config("table", "a change stream reads tables"))?;
            let qualified = if name.contains('.') {
                name
            } else {
                format!("public.{name}")
            };
            wanted.insert(qualified, spec);
        }
        let cfg = replication_config(url, slot, publication, start)?;
        let mut client = ReplicationClient::connect(cfg)
            .await
            .map_err(|e| repl("replication connection", e))?;
        client
            .wait_started()
            .await
            .map_err(|e| repl("starting replication", e))?;
        Ok(Self {
            client,
            source: source.clone(),
            wanted,
            names: HashMap::new(),
            decoder: ChangeDecoder::new(batch_rows),
            pending: VecDeque::new(),
        })
    }

    /// The next event; `None` once the stream was stopped.
    pub async fn next(&mut self) -> Result<Option<StreamEvent>, ConnectorError> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(Some(e));
            }
            let Some(event) = self
                .client
                .recv()
                .await
                .map_err(|e| repl("replication stream", e))?
            else {
                return Ok(None);
            };
            match event {
                ReplicationEvent::XLogData { data, .. } => self.take(&data).await?,
                ReplicationEvent::Commit {
                    lsn,
                    end_lsn,
                    commit_time_micros,
                } => {
                    let done = self.decoder.flush()?;
                    self.push_batches(done);
                    self.pending.push_back(StreamEvent::Commit {
                        lsn: lsn.0,
                        end_lsn: end_lsn.0,
                        commit_time: commit_time_micros,
                    });
                }
                ReplicationEvent::KeepAlive { wal_end, .. } => {
                    return Ok(Some(StreamEvent::Idle { wal_end: wal_end.0 }))
                }
                ReplicationEvent::Begin { .. } | ReplicationEvent::Message { .. } => {}
                ReplicationEvent::StoppedAt { .. } => return Ok(None),
            }
        }
    }

    /// Everything up to `lsn` (a commit's `end_lsn`) is applied: the slot may move past it.
    pub fn ack(&self, lsn: Lsn) {
        self.client.update_applied_lsn(pgwire_replication::Lsn(lsn));
    }

    /// Stops the stream, once the server knows the last acknowledged position (or after
    /// a few status intervals: what it was not told is replayed next time, not lost).
    pub async fn stop(mut self) -> Result<(), ConnectorError> {
        let deadline = tokio::time::Instant::now() + 4 * STATUS_INTERVAL;
        while self.client.feedback_pending_since().is_some()
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.client
            .shutdown()
            .await
            .map_err(|e| repl("stopping replication", e))
    }

    fn push_batches(&mut self, batches: Vec<(u32, RecordBatch)>) {
        for (oid, batch) in batches {
            if let Some(table) = self.names.get(&oid) {
                self.pending.push_back(StreamEvent::Changes {
                    table: self.wanted[table].table.clone().unwrap_or_default(),
                    batch,
                });
            }
        }
    }

    async fn take(&mut self, data: &[u8]) -> Result<(), ConnectorError> {
        let m = pgoutput::decode(data)
            .map_err(|e| ConnectorError::Schema(format!("replication stream: {e}")))?;
        match &m {
            Message::Relation(r) => {
                let name = format!("{}.{}", r.namespace, r.name);
                if let Some(spec) = self.wanted.get(&name) {
                    let table: ChangeTable = self.source.change_table(spec).await?;
                    let done = self.decoder.bind(r, table)?;
                    self.names.insert(r.oid, name);
                    self.push_batches(done.into_iter().collect());
                }
            }
            Message::Truncate { relations, .. } => {
                if let Some(name) = relations.iter().find_map(|o| self.names.get(o)) {
                    return Err(ConnectorError::Schema(format!(
                        "{name} was truncated: the stream stops here (truncate is not applied)"
                    )));
                }
            }
            _ => {
                let done = self.decoder.change(&m)?;
                self.push_batches(done);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_reaching_replication_commands_are_plain() {
        assert!(check_name("slot", "ferry_job_7").is_ok());
        for bad in ["", "Ferry", "a b", "x'; DROP", &"a".repeat(64)] {
            assert!(check_name("slot", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_url_gives_the_connection() {
        let c = replication_config(
            "postgres://rep%40x:p%2Fw@db.example:6543/shop?sslmode=require",
            "s",
            "p",
            0,
        )
        .unwrap();
        let shown = c.display_connection();
        assert!(
            shown.contains("db.example") && shown.contains("6543"),
            "{shown}"
        );
        assert!(!shown.contains("p/w"), "{shown}");
        assert!(replication_config("postgres://h/db?sslmode=weird", "s", "p", 0).is_err());
    }
}
