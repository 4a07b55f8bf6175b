//! A MySQL / MariaDB change stream: the binary log read as a replica reads it
//! (`mysql_async`'s binlog stream: COM_REGISTER_SLAVE, COM_BINLOG_DUMP), its row events
//! decoded ([`super::binlog`]) into change batches of the tables asked for, with each
//! transaction's commit position (binlog file and the offset after its commit event).
//!
//! The server keeps no position for a reader of its binlog: the stream's position is the
//! one the target committed with the changes (the job's checkpoint), and the stream
//! resumes after it. So that a quiet table's position still moves while other tables
//! change (and a restart does not read the binlog from far back, nor from a purged file),
//! the stream commits the position of skipped transactions and heartbeats at most once a
//! second, as a transaction without changes.
//!
//! DDL arrives as statements. TRUNCATE, DROP or RENAME of a streamed table stops the
//! stream before it; after any other statement touching one, the table's next table map
//! event must show the columns it had (the binlog's own description: the catalog may be
//! newer) with new ones at the end only, which are taken (ADD COLUMN), or the stream stops
//! there, before the first change of the new shape. Errors name the statement.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use futures::StreamExt;
use mysql_async::binlog::events::{Event, EventData, QueryEvent, TableMapEvent};
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, OptsBuilder, SslOpts};

use super::binlog::{BinlogDecoder, BinlogTable, Done};
use super::gtid::GtidSet;
use super::meta::{pick_columns, primary_key, table_columns};
use super::{split_table, MySqlSource};
use crate::error::ConnectorError;
use crate::spec::{KeyValue, Position, ReadSpec};
use crate::stream::{ChangeEvent, ChangeSpec, ChangeStream, SourceEnd};

/// How often the server sends a heartbeat while it has nothing to send.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// The least time between two commits of a position without changes.
const IDLE_COMMIT: Duration = Duration::from_secs(1);
/// MariaDB's GTID event: it begins a transaction (or, flagged standalone, a DDL statement).
const MARIADB_GTID_EVENT: u8 = 162;
/// The GTID event's flag for a statement outside any transaction.
const MARIADB_FL_STANDALONE: u8 = 1;
/// The most of a DDL statement an error quotes.
const STATEMENT_SHOWN: usize = 300;

/// A binlog connection's error: with the server's code when the server refused (so that
/// only a lost connection reads as one that may pass).
fn binlog_error(what: &str, e: mysql_async::Error) -> ConnectorError {
    // ER_MASTER_FATAL_ERROR_READING_BINLOG: the position is not in the server's binlog
    // (purged, or never written). Its message names positions, files and GTIDs only.
    if let mysql_async::Error::Server(s) = &e {
        if s.code == 1236 {
            let shown: String = s.message.chars().take(STATEMENT_SHOWN).collect();
            return ConnectorError::config(
                "position",
                format!(
                    "the server cannot stream from the position given ({shown}): if its \
                     binlog was purged, the tables need a new snapshot"
                ),
            );
        }
    }
    let code = match &e {
        mysql_async::Error::Server(s) => Some(crate::error::DbCode::MySql {
            number: s.code,
            sqlstate: Some(s.state.clone()),
        }),
        _ => None,
    };
    ConnectorError::Connect {
        what: what.to_string(),
        message: e.to_string(),
        code,
    }
}

/// A binlog file name: what `SHOW BINARY LOGS` lists, never a path.
fn check_file(name: &str) -> Result<(), ConnectorError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        let shown: String = name.chars().take(64).collect();
        Err(ConnectorError::config(
            "position",
            format!("{shown:?} is not a binlog file name (letters, digits, `.`, `_`, `-`)"),
        ))
    }
}

/// A stream's position: the binlog file and the offset after a commit.
pub fn position_of(file: &str, pos: u64) -> Result<Position, ConnectorError> {
    Position::new(vec![
        KeyValue::Text(file.to_string()),
        KeyValue::Int(i128::from(pos)),
    ])
    .map_err(|e| ConnectorError::config("position", e.to_string()))
}

/// The binlog file and offset of a position a stream gave (or the target recorded);
/// anything else is refused.
pub fn binlog_of(position: &Position) -> Result<(String, u64), ConnectorError> {
    match position.values() {
        [KeyValue::Text(file), KeyValue::Int(pos)] => {
            check_file(file)?;
            let pos = u64::try_from(*pos).map_err(|_| {
                ConnectorError::config("position", format!("{pos} is not a binlog offset"))
            })?;
            Ok((file.clone(), pos))
        }
        _ => Err(ConnectorError::config(
            "position",
            "a MySQL change stream starts from a binlog file and offset, or a GTID set",
        )),
    }
}

/// Where a stream starts: after a binlog file and offset (what the target commits), or
/// after a GTID set given in the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    File(String, u64),
    Gtid(GtidSet),
}

/// Where a stream that was given `position` starts: a binlog file and offset, or a GTID
/// set (`[Text(set)]`); anything else is refused.
pub fn start_of(position: &Position) -> Result<Start, ConnectorError> {
    match position.values() {
        [KeyValue::Text(set)] => Ok(Start::Gtid(GtidSet::parse(set)?)),
        _ => binlog_of(position).map(|(file, pos)| Start::File(file, pos)),
    }
}

/// The binlog connection's options: the source URL's parts (`ssl-mode` as sqlx reads it).
fn binlog_opts(url: &str) -> Result<OptsBuilder, ConnectorError> {
    let u = url::Url::parse(url)
        .map_err(|_| ConnectorError::config("url", "the source URL is not a valid mysql:// URL"))?;
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let param = |name: &str| {
        u.query_pairs()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.into_owned())
    };
    let ssl = match param("ssl-mode").map(|m| m.to_ascii_lowercase()).as_deref() {
        None | Some("disabled") | Some("preferred") => None,
        Some("required") => Some(
            SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        ),
        Some(mode @ ("verify_ca" | "verify_identity")) => {
            let mut o = SslOpts::default();
            if let Some(ca) = param("ssl-ca") {
                o = o.with_root_certs(vec![std::path::PathBuf::from(ca).into()]);
            }
            Some(o.with_danger_skip_domain_validation(mode == "verify_ca"))
        }
        Some(other) => {
            return Err(ConnectorError::config(
                "url",
                format!("ssl-mode `{other}` is not one a change stream takes"),
            ))
        }
    };
    let user = decode(u.username());
    Ok(OptsBuilder::default()
        .ip_or_hostname(u.host_str().unwrap_or("localhost"))
        .tcp_port(u.port().unwrap_or(3306))
        .user(Some(if user.is_empty() { "root".into() } else { user }))
        .pass(u.password().map(decode))
        .prefer_socket(false)
        .ssl_opts(ssl))
}

/// One row of a query that returns a few text columns.
async fn first_row(conn: &mut Conn, sql: &str) -> Result<Option<Vec<String>>, ConnectorError> {
    let row: Option<mysql_async::Row> = conn
        .query_first(sql)
        .await
        .map_err(|e| binlog_error("reading the binlog settings", e))?;
    Ok(row.map(|r| {
        (0..r.len())
            .map(|i| match r.as_ref(i) {
                Some(mysql_async::Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(mysql_async::Value::Int(v)) => v.to_string(),
                Some(mysql_async::Value::UInt(v)) => v.to_string(),
                _ => String::new(),
            })
            .collect()
    }))
}

/// Checks the server writes a binlog a change stream can read: ROW format, FULL images,
/// not compressed.
async fn check_server(conn: &mut Conn) -> Result<(), ConnectorError> {
    let s = first_row(
        conn,
        "SELECT @@log_bin, @@binlog_format, @@binlog_row_image",
    )
    .await?
    .unwrap_or_default();
    let get = |i: usize| s.get(i).map(String::as_str).unwrap_or("");
    let refuse = |what: String| Err(ConnectorError::config("changes", what));
    if get(0) != "1" {
        return refuse("the server writes no binary log (log_bin is off)".into());
    }
    if !get(1).eq_ignore_ascii_case("ROW") {
        return refuse(format!(
            "binlog_format is {}: a change stream reads ROW events",
            get(1)
        ));
    }
    if !get(2).eq_ignore_ascii_case("FULL") {
        return refuse(format!(
            "binlog_row_image is {}: a change stream needs FULL row images",
            get(2)
        ));
    }
    // MariaDB only; MySQL has no such variable.
    if let Ok(Some(c)) = first_row(conn, "SELECT @@log_bin_compress").await {
        if c.first().map(String::as_str) == Some("1") {
            return refuse("log_bin_compress is on: compressed row events are not read".into());
        }
    }
    Ok(())
}

/// The server's current binlog position.
async fn current_position(conn: &mut Conn) -> Result<(String, u64), ConnectorError> {
    let row = match first_row(conn, "SHOW MASTER STATUS").await {
        Ok(r) => r,
        // MySQL 8.4 renamed it.
        Err(_) => first_row(conn, "SHOW BINARY LOG STATUS").await?,
    };
    let row = row.ok_or_else(|| {
        ConnectorError::config("changes", "the server reports no binlog position")
    })?;
    let file = row.first().cloned().unwrap_or_default();
    let pos = row.get(1).and_then(|p| p.parse().ok()).unwrap_or(4);
    check_file(&file)?;
    Ok((file, pos))
}

/// Checks `file`:`pos` is within the server's binlog: a position past it (or of a file
/// the server does not have) is none of this server's, and starting there would skip
/// changes or fail later.
async fn check_position(
    conn: &mut Conn,
    file: &str,
    pos: u64,
    tables: &str,
) -> Result<(), ConnectorError> {
    let logs: Vec<(String, u64)> = conn
        .query("SHOW BINARY LOGS")
        .await
        .map_err(|e| binlog_error("listing the binary logs", e))?
        .into_iter()
        .map(|r: mysql_async::Row| {
            let name = match r.as_ref(0) {
                Some(mysql_async::Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
                _ => String::new(),
            };
            let size = match r.as_ref(1) {
                Some(mysql_async::Value::Int(v)) => u64::try_from(*v).unwrap_or(0),
                Some(mysql_async::Value::UInt(v)) => *v,
                Some(mysql_async::Value::Bytes(b)) => {
                    String::from_utf8_lossy(b).parse().unwrap_or(0)
                }
                _ => 0,
            };
            (name, size)
        })
        .collect();
    // The oldest file goes first when the server expires binlogs: a stopped stream whose
    // position is in it may find it gone when it starts next.
    if logs.len() > 1 && logs.first().is_some_and(|(n, _)| n == file) {
        tracing::warn!(
            file,
            "the stream's position is in the oldest binlog file the server keeps: if the \
             stream stops, the server may expire it (binlog_expire_logs_seconds) and the \
             tables would need a new snapshot"
        );
    }
    match logs.iter().find(|(n, _)| n == file) {
        None => Err(ConnectorError::config(
            "position",
            format!(
                "binlog file {file} is not on the server (it has {}): it was purged, or the \
                 position is another server's; {tables} need a new snapshot",
                match (logs.first(), logs.last()) {
                    (Some(a), Some(b)) => format!("{} .. {}", a.0, b.0),
                    _ => "none".into(),
                }
            ),
        )),
        Some((_, size)) if pos > *size => Err(ConnectorError::config(
            "position",
            format!("offset {pos} is past the end of binlog file {file} ({size} bytes)"),
        )),
        Some(_) => Ok(()),
    }
}

/// Prepares `conn` to read the binlog after GTID set `set`: the set must be of the server's
/// form (MariaDB's or MySQL's, with GTIDs on), and MariaDB takes it as session variables
/// before the dump (MySQL in the dump command itself).
async fn gtid_start(conn: &mut Conn, set: &GtidSet, tables: &str) -> Result<(), ConnectorError> {
    let version = first_row(conn, "SELECT @@version")
        .await?
        .and_then(|r| r.into_iter().next())
        .unwrap_or_default();
    let server = if version.contains("MariaDB") {
        "MariaDB"
    } else {
        "MySQL"
    };
    if set.flavor() != server {
        return Err(ConnectorError::config(
            "position",
            format!(
                "a {} GTID set was given, but the server is {server} ({version})",
                set.flavor()
            ),
        ));
    }
    match set.connect_state() {
        Some(state) => {
            // Not found in any binlog the server keeps: the dump fails with the server's
            // own message (error 1236), which names the purged state.
            tracing::info!(%state, %tables, "starting after a MariaDB GTID position");
            conn.query_drop(format!(
                "SET @mariadb_slave_capability = 4, @slave_connect_state = '{state}', \
                 @slave_gtid_strict_mode = 0, @slave_gtid_ignore_duplicates = 0"
            ))
            .await
            .map_err(|e| binlog_error("giving the server the GTID position", e))
        }
        None => {
            let mode = first_row(conn, "SELECT @@global.gtid_mode")
                .await?
                .and_then(|r| r.into_iter().next())
                .unwrap_or_default();
            if !mode.eq_ignore_ascii_case("ON") {
                return Err(ConnectorError::config(
                    "position",
                    format!("the server's gtid_mode is {mode:?}: a GTID start needs it ON"),
                ));
            }
            Ok(())
        }
    }
}

/// What a DDL statement does to a streamed table.
#[derive(Debug, PartialEq, Eq)]
enum Ddl {
    /// Its rows go or move (TRUNCATE, DROP, RENAME): never applied.
    Gone,
    /// It may change the columns: checked against the catalog.
    Maybe,
}

/// The tables `sql` (run with default database `db`) names, each with what it may do.
fn ddl_tables(db: &str, sql: &str) -> Vec<((String, String), Ddl)> {
    use sqlparser::ast::{ObjectName, ObjectNamePart, ObjectType, Statement};
    let name_of = |n: &ObjectName| -> (String, String) {
        let parts: Vec<String> =
            n.0.iter()
                .map(|p| match p {
                    ObjectNamePart::Identifier(i) => i.value.to_ascii_lowercase(),
                    other => other.to_string().to_ascii_lowercase(),
                })
                .collect();
        match parts.as_slice() {
            [d, t] => (d.clone(), t.clone()),
            [.., t] => (db.to_ascii_lowercase(), t.clone()),
            [] => (String::new(), String::new()),
        }
    };
    let dialect = sqlparser::dialect::MySqlDialect {};
    let Ok(statements) = sqlparser::parser::Parser::parse_sql(&dialect, sql) else {
        // Not understood: every word of it that may be a table is checked.
        return sql
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
            .filter(|w| !w.is_empty())
            .map(|w| {
                (
                    (db.to_ascii_lowercase(), w.to_ascii_lowercase()),
                    Ddl::Maybe,
                )
            })
            .collect();
    };
    let mut out = Vec::new();
    for s in &statements {
        match s {
            Statement::Truncate(t) => {
                out.extend(t.table_names.iter().map(|n| (name_of(&n.name), Ddl::Gone)))
            }
            Statement::Drop {
                object_type: ObjectType::Table,
                names,
                ..
            } => out.extend(names.iter().map(|n| (name_of(n), Ddl::Gone))),
            Statement::RenameTable(r) => {
                out.extend(r.iter().map(|r| (name_of(&r.old_name), Ddl::Gone)))
            }
            Statement::AlterTable(a) => out.push((name_of(&a.name), Ddl::Maybe)),
            other => {
                let _ = sqlparser::ast::visit_relations(other, |n| {
                    out.push((name_of(n), Ddl::Maybe));
                    std::ops::ControlFlow::<()>::Continue(())
                });
            }
        }
    }
    out
}

/// A table map event's columns as the binlog describes them: type, type metadata (lengths,
/// precision) and, with `binlog_row_metadata = FULL`, name.
fn shape_of(tme: &TableMapEvent<'_>) -> Vec<String> {
    use mysql_async::binlog::events::OptionalMetadataField;
    let mut names: Vec<String> = Vec::new();
    for field in tme.iter_optional_meta().flatten() {
        if let OptionalMetadataField::ColumnName(n) = field {
            names = n
                .iter_names()
                .flatten()
                .map(|c| c.name().to_ascii_lowercase())
                .collect();
        }
    }
    (0..tme.columns_count() as usize)
        .map(|i| {
            format!(
                "{:?} {:?} {}",
                tme.get_column_type(i).ok().flatten(),
                tme.get_column_metadata(i).unwrap_or_default(),
                names.get(i).map(String::as_str).unwrap_or("")
            )
        })
        .collect()
}

/// A savepoint statement, which a transaction's binlog may hold.
fn is_savepoint(q: &str) -> bool {
    let u = q.to_ascii_uppercase();
    u.starts_with("SAVEPOINT") || u.starts_with("ROLLBACK TO") || u.starts_with("RELEASE")
}

/// A running change stream.
pub struct MySqlChangeStream {
    binlog: BinlogStream,
    pool: sqlx::MySqlPool,
    specs: Vec<ReadSpec>,
    /// The tables asked for, by (database, table) in lower case: their index in `specs`.
    wanted: HashMap<(String, String), usize>,
    /// Each table's shape in the last table map event bound (see [`shape_of`]).
    shape: Vec<Option<Vec<String>>>,
    /// A DDL statement that touched the table (shown as errors show it, and the offset
    /// after it): its next table map event must keep the columns it had, adding only at the
    /// end.
    ddl_pending: Vec<Option<(String, u64)>>,
    /// A table's description fetched for the event being handled: (table index, table).
    described: Option<(usize, BinlogTable)>,
    decoder: BinlogDecoder,
    pending: VecDeque<ChangeEvent>,
    /// An event taken from the server and not fully handled yet (see [`ChangeStream::next`]).
    current: Option<Event>,
    /// The binlog file being read (empty until the server names it, after a GTID start).
    file: String,
    /// Events carry a checksum (`binlog_checksum` is not NONE).
    checksummed: bool,
    /// The server described its events (a format description event came).
    formatted: bool,
    /// The offset after the last transaction (or heartbeat) seen.
    pos: u64,
    /// The last position committed (with changes or without), and when.
    committed: (String, u64),
    committed_at: Instant,
    /// Inside a transaction (its changes are not committed yet).
    in_tx: bool,
}

impl MySqlChangeStream {
    /// The next event; `None` once the server ended the stream. Cancel-safe: it waits only
    /// for the server, and an event received is kept until it is handled.
    pub async fn next_event(&mut self) -> Result<Option<ChangeEvent>, ConnectorError> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(Some(e));
            }
            if self.current.is_none() {
                match self.binlog.next().await {
                    Some(Ok(event)) => self.current = Some(event),
                    Some(Err(e)) => return Err(binlog_error("reading the binary log", e)),
                    None => return Ok(None),
                }
            }
            // The one await of handling an event (a table's description) comes before it
            // changes any state and while the event is kept: a cancelled handling is done
            // again from the start.
            if let Some(index) = self.current.as_ref().and_then(|e| self.to_describe(e)) {
                if self.described.as_ref().is_none_or(|(i, _)| *i != index) {
                    let table = describe(&self.pool, &self.specs[index]).await?;
                    self.described = Some((index, table));
                }
            }
            let Some(event) = self.current.take() else {
                continue;
            };
            self.handle(&event)?;
        }
    }

    /// The stream table a table map event binds anew (which needs its description).
    fn to_describe(&self, event: &Event) -> Option<usize> {
        if event.header().event_type_raw() != mysql_async::binlog::EventType::TABLE_MAP_EVENT as u8
        {
            return None;
        }
        let Ok(Some(EventData::TableMapEvent(tme))) = event.read_data() else {
            return None;
        };
        let key = (
            tme.database_name().to_ascii_lowercase(),
            tme.table_name().to_ascii_lowercase(),
        );
        let index = *self.wanted.get(&key)?;
        let width = tme.columns_count() as usize;
        (!self.decoder.is_bound(tme.table_id(), index, width)).then_some(index)
    }

    fn handle(&mut self, event: &Event) -> Result<(), ConnectorError> {
        let header = event.header();
        let end = u64::from(header.log_pos());
        let when = i64::from(header.timestamp()) * 1_000_000;
        if header.event_type_raw() == MARIADB_GTID_EVENT {
            // Server id and sequence number come first in the header and body; the flags
            // byte follows the 8-byte sequence number and 4-byte domain id.
            let flags = event.data().get(12).copied().unwrap_or(0);
            self.in_tx = flags & MARIADB_FL_STANDALONE == 0;
            return Ok(());
        }
        let data = match event.read_data() {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(()),
            Err(e) => {
                return Err(ConnectorError::Schema(format!(
                    "a binlog event of type {} does not decode: {e}",
                    header.event_type_raw()
                )))
            }
        };
        match data {
            EventData::RotateEvent(r) => {
                // The server's first (fake) rotate event comes before it described its
                // events, so its checksum is still read as part of the name: it names the
                // file asked for, which the stream knows.
                // A fake rotate (no position of its own) names the file the server reads
                // from now on: the one asked for, the server's choice after a GTID start,
                // or the next file after a server restart ended the last one without a
                // rotate. The server's first one comes before it described its events, so
                // its checksum is still read as part of the name.
                let mut name = r.name_raw().to_vec();
                if header.log_pos() == 0 && !self.formatted && self.checksummed {
                    name.truncate(name.len().saturating_sub(4));
                }
                let name = String::from_utf8_lossy(&name).into_owned();
                if name != self.file {
                    check_file(&name)?;
                    tracing::debug!(file = %name, pos = r.position(), "the server reads this binlog file");
                    self.file = name;
                }
                self.pos = r.position();
            }
            EventData::QueryEvent(q) => match q.query().trim() {
                "BEGIN" => self.in_tx = true,
                "COMMIT" | "ROLLBACK" => self.commit(end, when)?,
                // MariaDB's stand-ins for events an old replica cannot take (its own
                // ANNOTATE_ROWS, GTID_LIST, …), and savepoints inside a transaction:
                // neither ends one.
                q if q.starts_with('#') || is_savepoint(q) => {}
                // DDL: a statement of its own, which commits.
                _ => {
                    self.ddl(&q, end)?;
                    self.commit(end, when)?;
                }
            },
            EventData::XidEvent(_) => self.commit(end, when)?,
            EventData::FormatDescriptionEvent(_) => self.formatted = true,
            EventData::TableMapEvent(tme) => self.table_map(&tme)?,
            EventData::RowsEvent(rows) if self.decoder.index_of(rows.table_id()).is_some() => {
                let tme = self.binlog.get_tme(rows.table_id()).ok_or_else(|| {
                    ConnectorError::Schema("a row event without its table map event".into())
                })?;
                let done = self.decoder.rows(&rows, tme)?;
                self.push(done);
            }
            EventData::HeartbeatEvent if !self.in_tx && end > 0 => {
                self.pos = end;
                self.idle_commit();
            }
            _ => {}
        }
        Ok(())
    }

    fn push(&mut self, done: Vec<Done>) {
        for (table, layout, batch) in done {
            self.pending.push_back(ChangeEvent::Changes {
                table,
                layout,
                batch,
            });
        }
    }

    /// A transaction (or a statement outside one) committed; `end` is the offset after it.
    fn commit(&mut self, end: u64, when: i64) -> Result<(), ConnectorError> {
        self.in_tx = false;
        if end > 0 {
            self.pos = end;
        }
        let done = self.decoder.flush()?;
        if done.is_empty() {
            self.idle_commit();
            return Ok(());
        }
        self.push(done);
        self.commit_here(when);
        Ok(())
    }

    fn commit_here(&mut self, when: i64) {
        if self.file.is_empty() {
            return;
        }
        let Ok(position) = position_of(&self.file, self.pos) else {
            return;
        };
        self.pending.push_back(ChangeEvent::Commit {
            position,
            commit_time_us: when,
        });
        self.committed = (self.file.clone(), self.pos);
        self.committed_at = Instant::now();
    }

    /// The position moved without changes of the streamed tables: committed, at most once
    /// a second.
    fn idle_commit(&mut self) {
        let moved = self.committed.0 != self.file || self.committed.1 != self.pos;
        if moved && self.committed_at.elapsed() >= IDLE_COMMIT {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64);
            self.commit_here(now);
        }
    }

    /// A table map event: binds a streamed table's id to its description as of this event
    /// (fetched before, see [`Self::next_event`]). After DDL touched the table, its columns
    /// must be the ones before with columns added at the end: the binlog's own description
    /// decides, since the catalog may already be newer than the event.
    fn table_map(&mut self, tme: &TableMapEvent<'_>) -> Result<(), ConnectorError> {
        let key = (
            tme.database_name().to_ascii_lowercase(),
            tme.table_name().to_ascii_lowercase(),
        );
        let Some(&index) = self.wanted.get(&key) else {
            return Ok(());
        };
        let width = tme.columns_count() as usize;
        if self.decoder.is_bound(tme.table_id(), index, width) {
            return Ok(());
        }
        let shape = shape_of(tme);
        if let (Some((statement, end)), Some(before)) =
            (self.ddl_pending[index].take(), self.shape[index].as_ref())
        {
            let kept = shape.len() >= before.len() && shape[..before.len()] == before[..];
            if !kept {
                return Err(ConnectorError::Schema(format!(
                    "`{statement}` changes the columns of {}: only ADD COLUMN (at the end) is \
                     applied to a change stream's target, so the stream stops after it, before \
                     the first change of the new shape (binlog {}:{end}); change the target to \
                     match and resume the job, or copy the table anew",
                    self.specs[index].table.as_deref().unwrap_or("?"),
                    self.file
                )));
            }
        }
        let table = match self.described.take() {
            Some((i, t)) if i == index => t,
            _ => {
                return Err(ConnectorError::Schema(
                    "a table map event without its table's description".into(),
                ))
            }
        };
        let table = table.as_of(width);
        tracing::debug!(table = %table.name, id = tme.table_id(), width, "binlog table bound");
        let done = self.decoder.bind(tme.table_id(), index, table, tme)?;
        self.shape[index] = Some(shape);
        self.push(done);
        Ok(())
    }

    /// A DDL statement (its offset after it: `end`): TRUNCATE, DROP or RENAME of a streamed
    /// table stops the stream; any other statement touching one has the table's next table
    /// map event checked (see [`Self::table_map`]).
    fn ddl(&mut self, q: &QueryEvent<'_>, end: u64) -> Result<(), ConnectorError> {
        let sql = q.query();
        let touched: Vec<(usize, Ddl)> = ddl_tables(&q.schema(), &sql)
            .into_iter()
            .filter_map(|(name, what)| self.wanted.get(&name).map(|&i| (i, what)))
            .collect();
        tracing::debug!(statement = %sql, touched = touched.len(), "binlog DDL");
        if touched.is_empty() {
            return Ok(());
        }
        let shown: String = sql.chars().take(STATEMENT_SHOWN).collect();
        if let Some((index, _)) = touched.iter().find(|(_, what)| *what == Ddl::Gone) {
            return Err(ConnectorError::Schema(format!(
                "`{shown}` truncates, drops or renames {}: a change stream does not apply \
                 that, so it stops before it (binlog {}:{end}); copy the table anew",
                self.specs[*index].table.as_deref().unwrap_or("?"),
                self.file
            )));
        }
        for (index, _) in touched {
            // The next table map event describes the table again, checked then.
            self.ddl_pending[index] = Some((shown.clone(), end));
            let done = self.decoder.unbind(index)?;
            self.push(done);
        }
        Ok(())
    }
}

/// The server's binlog end, read on the source's pool.
struct BinlogEnd(sqlx::MySqlPool);

#[async_trait::async_trait]
impl SourceEnd for BinlogEnd {
    async fn behind(&self, applied: &Position) -> Result<Option<u64>, ConnectorError> {
        use sqlx::Row;
        let (file, pos) = binlog_of(applied)?;
        let logs: Vec<(String, u64)> = sqlx::query("SHOW BINARY LOGS")
            .fetch_all(&self.0)
            .await
            .map_err(|e| ConnectorError::query("listing the binary logs", e))?
            .iter()
            .map(|r| {
                let name: String = r.try_get(0).unwrap_or_default();
                let size = r
                    .try_get::<u64, _>(1)
                    .or_else(|_| r.try_get::<i64, _>(1).map(|v| v.max(0) as u64))
                    .unwrap_or(0);
                (name, size)
            })
            .collect();
        Ok(binlog_distance(&logs, &file, pos))
    }
}

/// Bytes of binlog after `file`:`pos`, given the server's files and their sizes in order;
/// `None` when the server no longer lists `file`.
fn binlog_distance(logs: &[(String, u64)], file: &str, pos: u64) -> Option<u64> {
    let at = logs.iter().position(|(n, _)| n == file)?;
    let rest: u64 = logs[at + 1..].iter().map(|(_, s)| *s).sum();
    Some(logs[at].1.saturating_sub(pos).saturating_add(rest))
}

/// A stream's replica id: `base` plus a number of its owner and tables (FNV-1a of the
/// owner and the sorted `database.table` names), so that streams of one server for other
/// jobs or tables do not displace each other (a server keeps one replica per id: the
/// second is refused with error 4052 or the first dropped) and a stream keeps its id
/// across restarts (the new connection displaces a lingering old one).
fn replica_id<'a>(
    base: u32,
    owner: &str,
    tables: impl Iterator<Item = &'a (String, String)>,
) -> u32 {
    let mut sorted: Vec<String> = tables.map(|(d, t)| format!("{d}.{t}")).collect();
    sorted.sort();
    sorted.insert(0, owner.to_string());
    let mut h: u32 = 0x811c_9dc5;
    for b in sorted.iter().flat_map(|t| t.bytes().chain([0])) {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    base.saturating_add(h % 65_536)
}

/// `spec`'s table as a change stream reads it.
async fn describe(pool: &sqlx::MySqlPool, spec: &ReadSpec) -> Result<BinlogTable, ConnectorError> {
    let name = spec
        .table
        .clone()
        .ok_or_else(|| ConnectorError::config("table", "a change stream reads tables"))?;
    let mut conn = pool
        .acquire()
        .await
        .map_err(|e| ConnectorError::query("acquiring a connection", e))?;
    let (db, table) = split_table(&name);
    let db: String = match db {
        Some(d) => d.to_string(),
        None => sqlx::query_scalar::<_, Option<String>>("SELECT DATABASE()")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| ConnectorError::query("reading the current database", e))?
            .unwrap_or_default(),
    };
    let all = table_columns(&mut conn, &name).await?;
    let pk: Vec<String> = primary_key(&mut conn, &name, &all)
        .await?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let read = pick_columns(&name, all.clone(), &spec.columns)?;
    BinlogTable::new(&name, &db, table, &all, read, &pk)
}

impl MySqlSource {
    /// Opens a change stream of `spec`'s tables, from `spec.start` (a position the target
    /// committed) or from the server's current position.
    pub(crate) async fn open_change_stream(
        &self,
        spec: &ChangeSpec,
    ) -> Result<MySqlChangeStream, ConnectorError> {
        let url = self.url().ok_or_else(|| {
            ConnectorError::config("url", "this source was not opened from a URL")
        })?;
        let mut conn = Conn::new(binlog_opts(url)?)
            .await
            .map_err(|e| binlog_error("connecting to read the binary log", e))?;
        check_server(&mut conn).await?;
        let tables: Vec<&str> = spec
            .tables
            .iter()
            .filter_map(|t| t.table.as_deref())
            .collect();
        let tables = tables.join(", ");
        let mut gtid = None;
        let (file, pos) = match spec.start.as_ref().map(start_of).transpose()? {
            Some(Start::File(file, pos)) => {
                check_position(&mut conn, &file, pos, &tables).await?;
                (file, pos)
            }
            Some(Start::Gtid(set)) => {
                gtid_start(&mut conn, &set, &tables).await?;
                gtid = Some(set);
                // The server names the file in its first (fake) rotate event.
                (String::new(), 4)
            }
            None => current_position(&mut conn).await?,
        };
        // Before the server describes its events, its first rotate event's name is read
        // with the checksum after it.
        let checksummed = first_row(&mut conn, "SELECT @@global.binlog_checksum")
            .await?
            .and_then(|r| r.into_iter().next())
            .is_some_and(|c| !c.eq_ignore_ascii_case("NONE"));
        let mut wanted = HashMap::new();
        for (i, t) in spec.tables.iter().enumerate() {
            let table = describe(self.pool(), t).await?;
            wanted.insert(
                (
                    table.db.to_ascii_lowercase(),
                    table.table.to_ascii_lowercase(),
                ),
                i,
            );
        }
        let server_id = replica_id(spec.server_id, &spec.owner, wanted.keys());
        conn.query_drop(format!(
            "SET @master_heartbeat_period = {}",
            HEARTBEAT.as_nanos()
        ))
        .await
        .map_err(|e| binlog_error("setting the heartbeat", e))?;
        let mut request = BinlogStreamRequest::new(server_id)
            .with_filename(file.as_bytes())
            .with_pos(pos);
        if let Some(sids) = gtid.as_ref().and_then(GtidSet::sids) {
            request = request.with_gtid().with_gtid_set(sids);
        }
        let binlog = conn
            .get_binlog_stream(request)
            .await
            .map_err(|e| binlog_error("starting to read the binary log", e))?;
        let mut stream = MySqlChangeStream {
            binlog,
            pool: self.pool().clone(),
            specs: spec.tables.clone(),
            wanted,
            shape: vec![None; spec.tables.len()],
            ddl_pending: vec![None; spec.tables.len()],
            described: None,
            decoder: BinlogDecoder::new(
                spec.tables.len(),
                spec.batch_rows,
                self.options().zero_date,
            ),
            pending: VecDeque::new(),
            current: None,
            file: file.clone(),
            checksummed,
            formatted: false,
            pos,
            committed: (file, pos),
            committed_at: Instant::now(),
            in_tx: false,
        };
        // The target records where a stream began (a GTID start's file is known only
        // once the server names it): a new stream's restart before its first change
        // resumes there, not at the server's position of that later moment, and a
        // consumer knows the stream runs.
        stream.commit_here(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64),
        );
        Ok(stream)
    }
}

#[async_trait::async_trait]
impl ChangeStream for MySqlChangeStream {
    async fn next(&mut self) -> Result<Option<ChangeEvent>, ConnectorError> {
        self.next_event().await
    }

    /// The server keeps no reader's position: the target's checkpoint is the stream's.
    fn ack(&mut self, position: &Position) -> Result<(), ConnectorError> {
        binlog_of(position).map(|_| ())
    }

    fn source_end(&self) -> Option<std::sync::Arc<dyn SourceEnd>> {
        Some(std::sync::Arc::new(BinlogEnd(self.pool.clone())))
    }

    async fn stop(self: Box<Self>) -> Result<(), ConnectorError> {
        if self.decoder.zero_dates > 0 {
            tracing::warn!(
                count = self.decoder.zero_dates,
                "zero dates (0000-00-00) read as NULL"
            );
        }
        self.binlog
            .close()
            .await
            .map_err(|e| binlog_error("closing the binlog stream", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_name_binlog_files_only() {
        let p = position_of("mariadb-bin.000012", 4567).unwrap();
        assert_eq!(binlog_of(&p).unwrap(), ("mariadb-bin.000012".into(), 4567));
        for bad in ["../etc/passwd", "/var/lib/mysql/x", "", ".hidden", "a b"] {
            let p = Position::new(vec![KeyValue::Text(bad.into()), KeyValue::Int(4)]).unwrap();
            assert!(binlog_of(&p).is_err(), "{bad}");
        }
        assert!(binlog_of(&Position::int(5)).is_err());
        let neg = Position::new(vec![KeyValue::Text("b.1".into()), KeyValue::Int(-1)]).unwrap();
        assert!(binlog_of(&neg).is_err());
    }

    #[test]
    fn ddl_names_its_tables() {
        let t = |db: &str, sql: &str| ddl_tables(db, sql);
        assert_eq!(
            t("shop", "ALTER TABLE acc ADD COLUMN note TEXT"),
            vec![(("shop".into(), "acc".into()), Ddl::Maybe)]
        );
        assert_eq!(
            t("shop", "TRUNCATE TABLE other.acc"),
            vec![(("other".into(), "acc".into()), Ddl::Gone)]
        );
        assert_eq!(
            t(
                "shop",
                "DROP TABLE IF EXISTS `acc` /* generated by server */"
            ),
            vec![(("shop".into(), "acc".into()), Ddl::Gone)]
        );
        assert_eq!(
            t("shop", "RENAME TABLE acc TO acc_old"),
            vec![(("shop".into(), "acc".into()), Ddl::Gone)]
        );
        // Not understood: every word may be a table.
        assert!(t("shop", "ALTER ONLINE TABLE acc FORCE ?!")
            .iter()
            .any(|(n, _)| n == &("shop".to_string(), "acc".to_string())));
    }

    #[test]
    fn the_distance_to_the_binlog_end_spans_files() {
        let logs = vec![
            ("b.1".to_string(), 1000),
            ("b.2".into(), 500),
            ("b.3".into(), 40),
        ];
        assert_eq!(binlog_distance(&logs, "b.3", 40), Some(0));
        assert_eq!(binlog_distance(&logs, "b.2", 100), Some(440));
        assert_eq!(binlog_distance(&logs, "b.1", 4), Some(996 + 540));
        assert_eq!(binlog_distance(&logs, "b.0", 4), None);
        // A position past what the listing says (the file grew since): nothing behind.
        assert_eq!(binlog_distance(&logs, "b.3", 90), Some(0));
    }

    #[test]
    fn the_url_gives_the_connection() {
        assert!(binlog_opts("mysql://rep:p%2Fw@db.example:3307/shop?ssl-mode=REQUIRED").is_ok());
        assert!(binlog_opts("mysql://h/db?ssl-mode=weird").is_err());
    }
}
