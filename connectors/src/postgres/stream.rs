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

use ferry_change::Layout;

use super::changes::{ChangeDecoder, ChangeTable};
use super::pgoutput::{self, Lsn, Message};
use super::PostgresSource;
use crate::error::ConnectorError;
use crate::spec::{KeyValue, Position, ReadSpec};
use crate::stream::{ChangeEvent, ChangeSpec, ChangeStream, SourceEnd};

/// What a change stream yields.
#[derive(Debug, Clone)]
pub enum StreamEvent {
    /// Changes of `table` (as it was named in the stream's specs; `index` among them), laid
    /// out by `layout`, in commit order.
    Changes {
        table: String,
        index: usize,
        layout: Layout,
        batch: RecordBatch,
    },
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

/// `schema.table` of a spec's table, as pgoutput's relation messages name it.
fn qualified_name(spec: &ReadSpec) -> Result<String, ConnectorError> {
    let name = spec
        .table
        .clone()
        .ok_or_else(|| ConnectorError::config("table", "a change stream reads tables"))?;
    Ok(if name.contains('.') {
        name
    } else {
        format!("public.{name}")
    })
}

/// How often an acknowledged position is reported to the server, at most.
const STATUS_INTERVAL: Duration = Duration::from_millis(500);
/// How often a running stream looks at its slot's WAL retention.
const RETENTION_CHECK: Duration = Duration::from_secs(60);

/// Whether `slot` still has the WAL its position needs: an error once the server removed
/// it (`wal_status = lost`: the changes since the position are gone), a warning in the
/// agent's log while the slot holds more than `max_slot_wal_keep_size` allows
/// (`unreserved`, or `extended` past `max_wal_size`).
async fn check_retention(
    pool: &sqlx::PgPool,
    slot: &str,
    tables: &[ReadSpec],
) -> Result<(), ConnectorError> {
    let row: Option<(Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT wal_status::text, safe_wal_size FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(pool)
    .await
    .map_err(super::q("read the slot's WAL retention"))?;
    let Some((status, safe)) = row else {
        return Ok(());
    };
    let names = || {
        tables
            .iter()
            .filter_map(|t| t.table.as_deref())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match status.as_deref() {
        Some("lost") => Err(ConnectorError::config(
            "slot",
            format!(
                "slot `{slot}` lost WAL it needed (the server removed it past \
                 max_slot_wal_keep_size): changes of {} are gone; those tables need a new \
                 snapshot (and the slot a new start)",
                names()
            ),
        )),
        Some("unreserved") => {
            tracing::warn!(
                slot,
                tables = %names(),
                "the slot holds more WAL than max_slot_wal_keep_size allows: the server \
                 may remove WAL it still needs at its next checkpoint, and the tables \
                 would need a new snapshot"
            );
            Ok(())
        }
        Some("extended") => {
            tracing::warn!(
                slot,
                safe_wal_size = ?safe,
                "the slot holds WAL past max_wal_size (within max_slot_wal_keep_size): the \
                 stream is behind"
            );
            Ok(())
        }
        _ => Ok(()),
    }
}

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
    /// The tables asked for, by `schema.table`: their index in `specs`.
    wanted: HashMap<String, usize>,
    specs: Vec<ReadSpec>,
    /// Bound relations: their index in `specs`.
    names: HashMap<u32, usize>,
    decoder: ChangeDecoder,
    pending: VecDeque<StreamEvent>,
    /// An event taken from the server and not fully handled yet: `next` is cancelled only
    /// while it waits, so an event is never lost (see [`ChangeStream::next`]).
    current: Option<ReplicationEvent>,
    slot: String,
    /// When the slot's WAL retention was last looked at.
    retention_checked: tokio::time::Instant,
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
        for (i, spec) in tables.iter().enumerate() {
            wanted.insert(qualified_name(spec)?, i);
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
            specs: tables,
            names: HashMap::new(),
            decoder: ChangeDecoder::new(batch_rows),
            pending: VecDeque::new(),
            current: None,
            slot: slot.to_string(),
            retention_checked: tokio::time::Instant::now(),
        })
    }

    /// The next event; `None` once the stream was stopped. Cancel-safe: it waits only for
    /// the server, and an event received is kept until it is handled.
    pub async fn next(&mut self) -> Result<Option<StreamEvent>, ConnectorError> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(Some(e));
            }
            if self.current.is_none() {
                match self
                    .client
                    .recv()
                    .await
                    .map_err(|e| repl("replication stream", e))?
                {
                    Some(event) => self.current = Some(event),
                    None => return Ok(None),
                }
            }
            let Some(event) = &self.current else {
                continue;
            };
            // Handling awaits only before it changes any state (a relation's description),
            // so a cancelled handling is redone from the start.
            let idle = match event {
                ReplicationEvent::XLogData { data, .. } => {
                    let data = data.clone();
                    self.take(&data).await?;
                    None
                }
                ReplicationEvent::Commit {
                    lsn,
                    end_lsn,
                    commit_time_micros,
                } => {
                    let commit = StreamEvent::Commit {
                        lsn: lsn.0,
                        end_lsn: end_lsn.0,
                        commit_time: *commit_time_micros,
                    };
                    let done = self.decoder.flush()?;
                    self.push_batches(done, None);
                    self.pending.push_back(commit);
                    None
                }
                ReplicationEvent::KeepAlive { wal_end, .. } => {
                    let wal_end = wal_end.0;
                    // Awaited before anything changed: a cancelled check is done again.
                    if self.retention_checked.elapsed() >= RETENTION_CHECK {
                        check_retention(self.source.pool(), &self.slot, &self.specs).await?;
                        self.retention_checked = tokio::time::Instant::now();
                    }
                    Some(StreamEvent::Idle { wal_end })
                }
                ReplicationEvent::Begin { .. } | ReplicationEvent::Message { .. } => None,
                ReplicationEvent::StoppedAt { .. } => {
                    self.current = None;
                    return Ok(None);
                }
            };
            self.current = None;
            if let Some(idle) = idle {
                return Ok(Some(idle));
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

    /// Queues `batches` of bound relations, laid out by `layout` or by their relation's
    /// current layout.
    fn push_batches(&mut self, batches: Vec<(u32, RecordBatch)>, layout: Option<&Layout>) {
        for (oid, batch) in batches {
            let Some(&index) = self.names.get(&oid) else {
                continue;
            };
            let Some(layout) = layout.or_else(|| self.decoder.layout(oid)).cloned() else {
                continue;
            };
            self.pending.push_back(StreamEvent::Changes {
                table: self.specs[index].table.clone().unwrap_or_default(),
                index,
                layout,
                batch,
            });
        }
    }

    async fn take(&mut self, data: &[u8]) -> Result<(), ConnectorError> {
        let m = pgoutput::decode(data)
            .map_err(|e| ConnectorError::Schema(format!("replication stream: {e}")))?;
        match &m {
            Message::Relation(r) => {
                let name = format!("{}.{}", r.namespace, r.name);
                tracing::debug!(relation = %name, oid = r.oid, streamed = self.wanted.contains_key(&name), "pgoutput relation");
                if let Some(&index) = self.wanted.get(&name) {
                    let spec = &self.specs[index];
                    let mut table: ChangeTable = self.source.change_table(spec).await?;
                    if spec.columns.is_empty() {
                        table = table.as_of(r);
                    }
                    // Rows of the relation's previous shape keep their layout.
                    let before = self.decoder.layout(r.oid).cloned();
                    let done = self.decoder.bind(r, table)?;
                    self.names.insert(r.oid, index);
                    self.push_batches(done.into_iter().collect(), before.as_ref());
                }
            }
            Message::Truncate { relations, .. } => {
                if let Some(name) = relations
                    .iter()
                    .find_map(|o| self.names.get(o))
                    .and_then(|&i| self.specs[i].table.as_ref())
                {
                    return Err(ConnectorError::Schema(format!(
                        "{name} was truncated: the stream stops here (truncate is not applied)"
                    )));
                }
            }
            _ => {
                let done = self.decoder.change(&m)?;
                self.push_batches(done, None);
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ChangeStream for PgChangeStream {
    async fn next(&mut self) -> Result<Option<ChangeEvent>, ConnectorError> {
        Ok(PgChangeStream::next(self).await?.map(|e| match e {
            StreamEvent::Changes {
                index,
                layout,
                batch,
                ..
            } => ChangeEvent::Changes {
                table: index,
                layout,
                batch,
            },
            StreamEvent::Commit {
                end_lsn,
                commit_time,
                ..
            } => ChangeEvent::Commit {
                position: position_of(end_lsn),
                commit_time_us: commit_time.saturating_add(PG_EPOCH_US),
            },
            StreamEvent::Idle { wal_end } => ChangeEvent::Idle {
                position: position_of(wal_end),
            },
        }))
    }

    fn ack(&mut self, position: &Position) -> Result<(), ConnectorError> {
        PgChangeStream::ack(self, lsn_of(position)?);
        Ok(())
    }

    fn source_end(&self) -> Option<std::sync::Arc<dyn SourceEnd>> {
        Some(std::sync::Arc::new(WalEnd(self.source.pool().clone())))
    }

    async fn stop(self: Box<Self>) -> Result<(), ConnectorError> {
        PgChangeStream::stop(*self).await
    }
}

/// The server's WAL end, read on the source's pool.
struct WalEnd(sqlx::PgPool);

#[async_trait::async_trait]
impl SourceEnd for WalEnd {
    async fn behind(&self, applied: &Position) -> Result<Option<u64>, ConnectorError> {
        let applied = lsn_of(applied)?;
        let end: i64 = sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0')::int8")
            .fetch_one(&self.0)
            .await
            .map_err(super::q("read the server's WAL position"))?;
        Ok(u64::try_from(end).ok().map(|e| e.saturating_sub(applied)))
    }
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// A stream's position: the LSN after a commit.
pub fn position_of(lsn: Lsn) -> Position {
    Position::int(i128::from(lsn))
}

/// The LSN of a position a stream gave (or the target recorded); anything else is refused.
pub fn lsn_of(position: &Position) -> Result<Lsn, ConnectorError> {
    match position.values() {
        [KeyValue::Int(v)] => u64::try_from(*v).map_err(|_| {
            ConnectorError::config("position", format!("{v} is not a PostgreSQL LSN"))
        }),
        _ => Err(ConnectorError::config(
            "position",
            "a PostgreSQL change stream resumes from an LSN",
        )),
    }
}

impl PostgresSource {
    /// Opens a change stream of `spec`'s tables: makes the publication (or adds the tables
    /// to it) and the slot where they do not exist, then streams from `spec.start` (or the
    /// slot's confirmed position).
    pub(crate) async fn open_change_stream(
        &self,
        spec: &ChangeSpec,
    ) -> Result<PgChangeStream, ConnectorError> {
        let url = self.url().ok_or_else(|| {
            ConnectorError::config("url", "this source was not opened from a URL")
        })?;
        check_name("slot", &spec.slot)?;
        check_name("publication", &spec.publication)?;
        let start = match &spec.start {
            Some(p) => lsn_of(p)?,
            None => 0,
        };
        if start > 0 {
            // A position past the server's WAL is none of this source's: starting there
            // would skip every change up to it.
            let end: i64 = sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0')::int8")
                .fetch_one(self.pool())
                .await
                .map_err(super::q("read the server's WAL position"))?;
            if i128::from(start) > i128::from(end) {
                return Err(ConnectorError::config(
                    "position",
                    format!("LSN {start} is past the server's WAL ({end})"),
                ));
            }
        }
        self.ensure_replication(url, spec).await?;
        check_retention(self.pool(), &spec.slot, &spec.tables).await?;
        let mut stream = PgChangeStream::start(
            self,
            url,
            &spec.slot,
            &spec.publication,
            start,
            spec.tables.clone(),
            spec.batch_rows,
        )
        .await?;
        // A stream's first event commits where it starts: a new stream's is where the slot
        // stands (a snapshot read after the target holds it misses nothing the stream then
        // sends), a resumed one's the position it was given. Either way the consumer knows
        // the publication holds the stream's tables from then on.
        let at: Option<i64> = if start == 0 {
            sqlx::query_scalar(
                "SELECT (confirmed_flush_lsn - '0/0')::int8 FROM pg_replication_slots \
                 WHERE slot_name = $1",
            )
            .bind(&spec.slot)
            .fetch_optional(self.pool())
            .await
            .map_err(super::q("read the slot's position"))?
            .flatten()
        } else {
            i64::try_from(start).ok()
        };
        if let Some(at) = at.and_then(|a| Lsn::try_from(a).ok()).filter(|a| *a > 0) {
            let now = chrono::Utc::now().timestamp_micros();
            stream.pending.push_back(StreamEvent::Commit {
                lsn: at,
                end_lsn: at,
                commit_time: now.saturating_sub(PG_EPOCH_US),
            });
        }
        Ok(stream)
    }

    /// The publication of `spec`'s tables, then the slot: a slot made first would not
    /// stream the changes committed before the publication existed.
    async fn ensure_replication(&self, url: &str, spec: &ChangeSpec) -> Result<(), ConnectorError> {
        use sqlx::{Connection, Row};
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .map_err(super::q("connect to make the slot and publication"))?;
        let published: Vec<(String, String)> = sqlx::query(
            "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
        )
        .bind(&spec.publication)
        .fetch_all(&mut conn)
        .await
        .map_err(super::q("read the publication"))?
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
        .collect();
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)")
                .bind(&spec.publication)
                .fetch_one(&mut conn)
                .await
                .map_err(super::q("read the publication"))?;
        let mut missing = Vec::new();
        for t in &spec.tables {
            let name = qualified_name(t)?;
            let (schema, table) = name.split_once('.').unwrap_or(("public", &name));
            if !published.iter().any(|(s, n)| s == schema && n == table) {
                missing.push(super::quote_qualified(&name)?);
            }
        }
        if !exists {
            sqlx::query(&format!(
                "CREATE PUBLICATION {} FOR TABLE {}",
                spec.publication,
                missing.join(", ")
            ))
            .execute(&mut conn)
            .await
            .map_err(super::q("create the publication"))?;
        } else if !missing.is_empty() {
            sqlx::query(&format!(
                "ALTER PUBLICATION {} ADD TABLE {}",
                spec.publication,
                missing.join(", ")
            ))
            .execute(&mut conn)
            .await
            .map_err(super::q("add the tables to the publication"))?;
        }
        let plugin: Option<String> = sqlx::query_scalar(
            "SELECT plugin::text FROM pg_replication_slots \
             WHERE slot_name = $1 AND database = current_database()",
        )
        .bind(&spec.slot)
        .fetch_optional(&mut conn)
        .await
        .map_err(super::q("read the slot"))?;
        match plugin.as_deref() {
            Some("pgoutput") => {}
            Some(other) => {
                return Err(ConnectorError::config(
                    "slot",
                    format!("slot `{}` decodes with `{other}`, not pgoutput", spec.slot),
                ))
            }
            None => {
                sqlx::query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')")
                    .bind(&spec.slot)
                    .execute(&mut conn)
                    .await
                    .map_err(super::q("create the slot"))?;
            }
        }
        conn.close().await.map_err(super::q("close"))?;
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
