//! The writer: prepare (create table, preSql), multi-row INSERT / REPLACE / upsert with
//! bound parameters, dirty-record checks against the target columns.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Decimal128Type, Decimal256Type, DurationMicrosecondType,
    DurationMillisecondType, DurationNanosecondType, DurationSecondType, Float32Type, Float64Type,
    Int16Type, Int32Type, Int64Type, Int8Type, Time32MillisecondType, Time32SecondType,
    Time64MicrosecondType, Time64NanosecondType, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, SchemaRef, TimeUnit};
use async_trait::async_trait;
use sqlx::mysql::MySqlArguments;
use sqlx::pool::PoolConnection;
use sqlx::{Arguments, Connection, Executor, MySql, MySqlConnection, Row};

use super::meta::{pick_columns, table_columns, ColMeta};
use super::value::{format_date, format_datetime, format_decimal, format_time, integer_digits};
use super::{quote_ident, quote_table, split_table, MySqlSink};
use crate::error::ConnectorError;
use crate::existing::{self, Step};
use crate::spec::{Position, WriteMode, WriteSpec};
use crate::traits::{Checkpoint, CheckpointSql, DirtyRecord, Sink, SinkWriter, WriteOutcome};

/// Most placeholders one statement may carry.
pub(super) const MAX_PLACEHOLDERS: usize = 65_535;

/// The MySQL column type for `f`, without nullability.
pub(crate) fn mysql_base_type(f: &Field) -> Result<String, ConnectorError> {
    let md = f.metadata();
    let ferry_type = md.get("ferry.type").map(String::as_str);
    let members = |key: &str| -> String {
        md.get(key)
            .map(|v| {
                v.split(',')
                    .map(|m| format!("'{}'", m.replace('\\', "\\\\").replace('\'', "''")))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    let t = match f.data_type() {
        DataType::Int8 if ferry_type == Some("tinyint(1)") => "TINYINT(1)".to_string(),
        DataType::Int8 => "TINYINT".into(),
        DataType::UInt8 => "TINYINT UNSIGNED".into(),
        DataType::Int16 if ferry_type == Some("year") => "YEAR".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::UInt16 => "SMALLINT UNSIGNED".into(),
        DataType::Int32 => "INT".into(),
        DataType::UInt32 => "INT UNSIGNED".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt64 if ferry_type == Some("bit") => {
            let w: u32 = md
                .get("ferry.bit_width")
                .and_then(|w| w.parse().ok())
                .filter(|w| (1..=64).contains(w))
                .unwrap_or(64);
            format!("BIT({w})")
        }
        DataType::UInt64 => "BIGINT UNSIGNED".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
            if *p > 65 || *s < 0 || *s > 30 || (*s as u8) > *p {
                return Err(ConnectorError::Schema(format!(
                    "column `{}`: DECIMAL({p},{s}) does not fit MySQL (precision <= 65, 0 <= scale <= 30)",
                    f.name()
                )));
            }
            format!("DECIMAL({p},{s})")
        }
        DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => match ferry_type {
            Some("json") => "JSON".into(),
            Some("enum") => format!("ENUM({})", members("ferry.enum_values")),
            Some("set") => format!("SET({})", members("ferry.set_values")),
            _ => match md
                .get("ferry.max_length")
                .and_then(|n| n.parse::<u64>().ok())
            {
                Some(n) if n <= 16_383 => format!("VARCHAR({n})"),
                _ => "LONGTEXT".into(),
            },
        },
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => {
            if ferry_type == Some("geometry") {
                "GEOMETRY".into()
            } else {
                "LONGBLOB".into()
            }
        }
        DataType::Boolean => "TINYINT(1)".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Timestamp(_, None) => "DATETIME(6)".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP(6)".into(),
        DataType::Time32(_) | DataType::Time64(_) | DataType::Duration(_) => "TIME(6)".into(),
        other => {
            return Err(ConnectorError::UnsupportedType {
                column: f.name().clone(),
                type_name: format!("Arrow {other}"),
            })
        }
    };
    Ok(t)
}

/// The MySQL column definition `create_table` uses for `f`: type and nullability (a
/// TIMESTAMP with an explicit default, so the server adds no `ON UPDATE` of its own).
pub(crate) fn mysql_type(f: &Field) -> Result<String, ConnectorError> {
    let t = mysql_base_type(f)?;
    Ok(match (t.as_str(), f.is_nullable()) {
        ("TIMESTAMP(6)", true) => "TIMESTAMP(6) NULL DEFAULT NULL".into(),
        ("TIMESTAMP(6)", false) => "TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)".into(),
        (_, true) => format!("{t} NULL"),
        (_, false) => format!("{t} NOT NULL"),
    })
}

async fn table_exists(conn: &mut MySqlConnection, table: &str) -> Result<bool, ConnectorError> {
    let (db, t) = split_table(table);
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
    )
    .bind(db)
    .bind(t)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| ConnectorError::query(format!("looking up `{table}`"), e))?;
    Ok(n > 0)
}

async fn run_sql(conn: &mut MySqlConnection, statements: &[String]) -> Result<(), ConnectorError> {
    for s in statements.iter().filter(|s| !s.trim().is_empty()) {
        (&mut *conn)
            .execute(s.as_str())
            .await
            .map_err(|e| ConnectorError::query(s.clone(), e))?;
    }
    Ok(())
}

pub(super) async fn acquire(
    pool: &sqlx::MySqlPool,
) -> Result<PoolConnection<MySql>, ConnectorError> {
    pool.acquire()
        .await
        .map_err(|e| ConnectorError::query("acquiring a connection", e))
}

#[async_trait]
impl Sink for MySqlSink {
    async fn prepare(&self, spec: &WriteSpec, schema: &SchemaRef) -> Result<(), ConnectorError> {
        let mut conn = acquire(&self.pool).await?;
        let names: Vec<String> = spec
            .target_names(schema)?
            .into_iter()
            .map(|c| c.trim_matches('`').to_string())
            .collect();
        let table = quote_table(&spec.table);
        let mut exists = table_exists(&mut conn, &spec.table).await?;
        let step = existing::step(spec, exists)?;
        if exists && step != Step::Recreate {
            let all = table_columns(&mut conn, &spec.table).await?;
            pick_columns(&spec.table, all, &names)?;
        }
        if step == Step::RefuseIfNotEmpty {
            let sql = format!("SELECT 1 FROM {table} LIMIT 1");
            let row = sqlx::query(&sql)
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| ConnectorError::query("looking for rows in the target", e))?;
            if row.is_some() {
                return Err(existing::not_empty(&spec.table));
            }
        }
        exists &= step != Step::Recreate;
        if let Some(sql) = existing::statement(step, &table, "TRUNCATE TABLE") {
            tracing::info!(%sql, "existing target table");
            (&mut *conn).execute(sql.as_str()).await.map_err(|e| {
                ConnectorError::query("emptying or dropping the target (`existing`)", e)
            })?;
        }
        if !exists {
            if !existing::creates(spec) {
                return Err(ConnectorError::NoSuchTable(spec.table.clone()));
            }
            let statements = match self.table_ddl(spec, schema)? {
                Some(ddl) => {
                    for n in &ddl.notes {
                        tracing::warn!(table = %spec.table, "{n}");
                    }
                    ddl.create.into_iter().map(|s| s.sql).collect()
                }
                None => {
                    let cols = schema
                        .fields()
                        .iter()
                        .zip(&names)
                        .map(|(f, n)| Ok(format!("{} {}", quote_ident(n), mysql_type(f)?)))
                        .collect::<Result<Vec<_>, ConnectorError>>()?;
                    vec![format!(
                        "CREATE TABLE {} ({}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
                        quote_table(&spec.table),
                        cols.join(", ")
                    )]
                }
            };
            for sql in statements {
                tracing::info!(%sql, "creating target table");
                (&mut *conn).execute(sql.as_str()).await.map_err(|e| {
                    ConnectorError::query(format!("creating `{}`: `{sql}`", spec.table), e)
                })?;
            }
        }
        ensure_checkpoints(&mut conn, spec).await?;
        run_sql(&mut conn, &spec.pre_sql).await
    }

    async fn writer(
        &self,
        spec: &WriteSpec,
        schema: &SchemaRef,
    ) -> Result<Box<dyn SinkWriter>, ConnectorError> {
        Ok(Box::new(self.open_writer(spec, schema).await?))
    }

    async fn task_writer(
        &self,
        spec: &WriteSpec,
        schema: &SchemaRef,
        job: &str,
        split: u32,
    ) -> Result<Box<dyn SinkWriter>, ConnectorError> {
        let mut w = self.open_writer(spec, schema).await?;
        w.checkpoint = Some(checkpoint_sql(spec, job, split));
        Ok(Box::new(w))
    }

    fn records_checkpoints(&self, _spec: &WriteSpec) -> bool {
        true
    }

    async fn change_target(
        &self,
        tables: &[(WriteSpec, ferry_change::Layout)],
        job: &str,
        split: u32,
    ) -> Result<Box<dyn crate::stream::ChangeTarget>, ConnectorError> {
        Ok(Box::new(self.open_change_target(tables, job, split).await?))
    }

    async fn checkpoint(
        &self,
        spec: &WriteSpec,
        job: &str,
        split: u32,
    ) -> Result<Option<Checkpoint>, ConnectorError> {
        let table = spec.checkpoint_table();
        let mut conn = acquire(&self.pool).await?;
        let row = sqlx::query(&format!(
            "SELECT seq, rows_read, rows_written, CAST(last_key AS CHAR) FROM {} WHERE job = ? AND split = ?",
            quote_table(&table)
        ))
        .bind(job)
        .bind(split)
        .fetch_optional(&mut *conn)
        .await;
        let row = match row {
            // No checkpoint table yet (a stream looks before it prepares): nothing recorded.
            Err(sqlx::Error::Database(e))
                if e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                    .is_some_and(|m| m.number() == 1146) =>
            {
                return Ok(None)
            }
            r => r.map_err(|e| {
                ConnectorError::query(format!("reading checkpoint table {table}"), e)
            })?,
        };
        let Some(r) = row else { return Ok(None) };
        let bad = |e| ConnectorError::query(format!("reading checkpoint table {table}"), e);
        Checkpoint::from_stored(
            &table,
            r.try_get(0).map_err(bad)?,
            r.try_get(1).map_err(bad)?,
            r.try_get(2).map_err(bad)?,
            r.try_get(3).map_err(bad)?,
        )
        .map(Some)
    }

    async fn table_exists(&self, spec: &WriteSpec) -> Result<Option<bool>, ConnectorError> {
        let mut conn = acquire(&self.pool).await?;
        table_exists(&mut conn, &spec.table).await.map(Some)
    }

    async fn suspend_foreign_keys(
        &self,
        specs: &[WriteSpec],
    ) -> Result<Vec<(usize, Vec<crate::ddl::DdlStep>)>, ConnectorError> {
        let names: Vec<(Option<&str>, &str)> =
            specs.iter().map(|s| split_table(&s.table)).collect();
        let mut out = Vec::new();
        let mut conn = acquire(&self.pool).await?;
        for (i, spec) in specs.iter().enumerate() {
            if !table_exists(&mut conn, &spec.table).await? {
                continue;
            }
            let (db, _) = split_table(&spec.table);
            let table = quote_table(&spec.table);
            let desc = super::describe::table_schema(&mut conn, &spec.table, &[]).await?;
            let mut steps = Vec::new();
            for f in desc.foreign_keys {
                let target_db = f.references.schema.as_deref().or(db);
                if !names.contains(&(target_db, f.references.name.as_str())) {
                    continue;
                }
                let name = quote_ident(&f.name);
                let drop = format!("ALTER TABLE {table} DROP FOREIGN KEY {name}");
                tracing::info!(sql = %drop, "foreign key suspended while loading");
                (&mut *conn)
                    .execute(drop.as_str())
                    .await
                    .map_err(|e| ConnectorError::query(format!("`{drop}`"), e))?;
                let references = match target_db {
                    Some(d) => format!("{}.{}", quote_ident(d), quote_ident(&f.references.name)),
                    None => quote_ident(&f.references.name),
                };
                steps.push(crate::ddl::DdlStep {
                    sql: format!(
                        "ALTER TABLE {table} ADD CONSTRAINT {name} {}",
                        crate::ddl::foreign_key(&f, &references, quote_ident)
                    ),
                    creates: Some(crate::ddl::Object::ForeignKey(f.name.clone())),
                });
            }
            if !steps.is_empty() {
                out.push((i, steps));
            }
        }
        Ok(out)
    }

    async fn clear_tables(&self, specs: &[WriteSpec], drop: bool) -> Result<(), ConnectorError> {
        let mut conn = acquire(&self.pool).await?;
        // InnoDB empties a table another refers to only with the checks off; on this
        // connection only, and only for these statements.
        (&mut *conn)
            .execute("SET SESSION FOREIGN_KEY_CHECKS = 0")
            .await
            .map_err(|e| ConnectorError::query("SET FOREIGN_KEY_CHECKS", e))?;
        let mut result = Ok(());
        for spec in specs {
            match table_exists(&mut conn, &spec.table).await {
                Ok(false) => continue,
                Ok(true) => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            let sql = format!(
                "{} {}",
                if drop { "DROP TABLE" } else { "TRUNCATE TABLE" },
                quote_table(&spec.table)
            );
            tracing::info!(%sql, "existing target table");
            if let Err(e) = (&mut *conn).execute(sql.as_str()).await {
                result = Err(ConnectorError::query(format!("`existing`: `{sql}`"), e));
                break;
            }
        }
        if (&mut *conn)
            .execute("SET SESSION FOREIGN_KEY_CHECKS = 1")
            .await
            .is_err()
        {
            conn.close_on_drop();
        }
        result
    }

    async fn delete_keys(
        &self,
        spec: &WriteSpec,
        columns: &[String],
        keys: &[Vec<String>],
    ) -> Result<u64, ConnectorError> {
        let table = quote_table(&spec.table);
        let mut conn = acquire(&self.pool).await?;
        let mut deleted = 0;
        for chunk in keys.chunks(crate::repair::KEYS_PER_STATEMENT) {
            // Compared byte for byte, whatever the column's collation.
            let sql = crate::repair::delete_sql(
                &table,
                columns,
                chunk.len(),
                |c| {
                    format!(
                        "CAST({} AS CHAR CHARACTER SET utf8mb4) COLLATE utf8mb4_bin",
                        quote_ident(c)
                    )
                },
                |_| "?".into(),
            );
            let mut q = sqlx::query(&sql);
            for v in chunk.iter().flatten() {
                q = q.bind(v);
            }
            deleted += q
                .execute(&mut *conn)
                .await
                .map_err(|e| ConnectorError::query(format!("deleting rows by key in {table}"), e))?
                .rows_affected();
        }
        Ok(deleted)
    }

    async fn forget(&self, spec: &WriteSpec, job: &str) -> Result<(), ConnectorError> {
        let table = spec.checkpoint_table();
        let mut conn = acquire(&self.pool).await?;
        sqlx::query(&format!(
            "DELETE FROM {} WHERE job = ?",
            quote_table(&table)
        ))
        .bind(job)
        .execute(&mut *conn)
        .await
        .map_err(|e| ConnectorError::query(format!("clearing checkpoints in {table}"), e))?;
        Ok(())
    }

    fn table_ddl(
        &self,
        spec: &WriteSpec,
        schema: &SchemaRef,
    ) -> Result<Option<crate::ddl::TableDdl>, ConnectorError> {
        let Some(desc) = spec.described.as_ref() else {
            return Ok(None);
        };
        let names: Vec<String> = spec
            .target_names(schema)?
            .into_iter()
            .map(|c| c.trim_matches('`').to_string())
            .collect();
        super::ddl::table_ddl(spec, schema, &names, desc).map(Some)
    }

    async fn apply_ddl(
        &self,
        spec: &WriteSpec,
        steps: &[crate::ddl::DdlStep],
    ) -> Result<(), ConnectorError> {
        use crate::ddl::Object;
        let mut conn = acquire(&self.pool).await?;
        let (db, t) = split_table(&spec.table);
        for step in steps {
            let lookup = match &step.creates {
                None => None,
                Some(Object::Index(name)) => Some((
                    "SELECT 1 FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) \
                     AND TABLE_NAME = ? AND INDEX_NAME = ? LIMIT 1",
                    name,
                )),
                Some(Object::ForeignKey(name)) => Some((
                    "SELECT 1 FROM information_schema.TABLE_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = COALESCE(?, DATABASE()) \
                     AND TABLE_NAME = ? AND CONSTRAINT_NAME = ? AND CONSTRAINT_TYPE = 'FOREIGN KEY' LIMIT 1",
                    name,
                )),
            };
            if let Some((sql, name)) = lookup {
                let found = sqlx::query(sql)
                    .bind(db)
                    .bind(t)
                    .bind(name)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(|e| ConnectorError::query("looking up an index or foreign key", e))?;
                if found.is_some() {
                    continue;
                }
            }
            tracing::info!(sql = %step.sql, "target table DDL");
            (&mut *conn)
                .execute(step.sql.as_str())
                .await
                .map_err(|e| ConnectorError::query(format!("`{}`", step.sql), e))?;
        }
        Ok(())
    }

    async fn finish(&self, spec: &WriteSpec) -> Result<(), ConnectorError> {
        let mut conn = acquire(&self.pool).await?;
        run_sql(&mut conn, &spec.post_sql).await
    }
}

/// The statement recording split `split` of `job` in `spec`'s checkpoint table.
pub(super) fn checkpoint_sql(spec: &WriteSpec, job: &str, split: u32) -> CheckpointSql {
    CheckpointSql {
        upsert: format!(
            "INSERT INTO {} (job, split, seq, rows_read, rows_written, last_key, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, CURRENT_TIMESTAMP(6)) ON DUPLICATE KEY UPDATE \
             seq = VALUES(seq), rows_read = VALUES(rows_read), rows_written = VALUES(rows_written), \
             last_key = VALUES(last_key), updated_at = VALUES(updated_at)",
            quote_table(&spec.checkpoint_table())
        ),
        job: job.to_string(),
        split,
    }
}

/// Creates the checkpoint table unless it exists (InnoDB: it commits with
/// the rows; a target table in a non-transactional engine cannot).
pub(super) async fn ensure_checkpoints(
    conn: &mut MySqlConnection,
    spec: &WriteSpec,
) -> Result<(), ConnectorError> {
    let name = spec.checkpoint_table();
    let ddl = format!(
        "CREATE TABLE IF NOT EXISTS {} (job VARCHAR(64) NOT NULL, split INT UNSIGNED NOT NULL, \
         seq BIGINT NOT NULL, rows_read BIGINT NOT NULL, rows_written BIGINT NOT NULL, \
         last_key MEDIUMTEXT NULL, updated_at DATETIME(6) NOT NULL, PRIMARY KEY (job, split)) \
         ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        quote_table(&name)
    );
    (&mut *conn).execute(ddl.as_str()).await.map_err(|e| {
        ConnectorError::query(
            format!(
                "creating checkpoint table {name} (the writer's user needs CREATE there, \
                 or name another with `checkpointTable`)"
            ),
            e,
        )
    })?;
    // Tables made before positions were more than one integer hold them in VARCHAR(40).
    let show = format!("SHOW COLUMNS FROM {} LIKE 'last_key'", quote_table(&name));
    let row = sqlx::query(&show)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| ConnectorError::query(show.clone(), e))?;
    let narrow = row
        .and_then(|r| {
            r.try_get::<String, _>(1).ok().or_else(|| {
                r.try_get::<Vec<u8>, _>(1)
                    .ok()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            })
        })
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("varchar"));
    if narrow {
        let alter = format!(
            "ALTER TABLE {} MODIFY last_key MEDIUMTEXT NULL",
            quote_table(&name)
        );
        (&mut *conn)
            .execute(alter.as_str())
            .await
            .map_err(|e| ConnectorError::query(alter.clone(), e))?;
    }
    Ok(())
}

impl MySqlSink {
    async fn open_writer(
        &self,
        spec: &WriteSpec,
        schema: &SchemaRef,
    ) -> Result<MySqlWriter, ConnectorError> {
        let mut conn = acquire(&self.pool).await?;
        let names: Vec<String> = spec
            .target_names(schema)?
            .into_iter()
            .map(|c| c.trim_matches('`').to_string())
            .collect();
        let all = table_columns(&mut conn, &spec.table).await?;
        let metas = pick_columns(&spec.table, all, &names)?;
        let max_packet: i64 = sqlx::query_scalar("SELECT CAST(@@max_allowed_packet AS SIGNED)")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| ConnectorError::query("reading max_allowed_packet", e))?;
        let keys: Vec<String> = if spec.keys.is_empty() {
            let (db, t) = split_table(&spec.table);
            let rows = sqlx::query(
                "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? AND COLUMN_KEY = 'PRI'",
            )
            .bind(db)
            .bind(t)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| ConnectorError::query("reading the primary key", e))?;
            rows.iter()
                .filter_map(|r| r.try_get_unchecked::<String, _>(0).ok())
                .collect()
        } else {
            spec.keys
                .iter()
                .map(|k| k.trim_matches('`').to_string())
                .collect()
        };
        let cols: Vec<String> = metas.iter().map(|m| quote_ident(&m.name)).collect();
        let verb = match spec.write_mode {
            WriteMode::Replace => "REPLACE",
            _ => "INSERT",
        };
        let head = format!(
            "{verb} INTO {} ({}) VALUES ",
            quote_table(&spec.table),
            cols.join(", ")
        );
        let tail = if spec.write_mode == WriteMode::Update {
            let upd: Vec<String> = metas
                .iter()
                .filter(|m| !keys.iter().any(|k| k.eq_ignore_ascii_case(&m.name)))
                .map(|m| {
                    let c = quote_ident(&m.name);
                    format!("{c} = VALUES({c})")
                })
                .collect();
            let upd = if upd.is_empty() {
                format!("{0} = {0}", cols[0])
            } else {
                upd.join(", ")
            };
            format!(" ON DUPLICATE KEY UPDATE {upd}")
        } else {
            String::new()
        };
        let max_bytes = ((max_packet.max(64 * 1024) as usize) / 2).min(64 << 20);
        Ok(MySqlWriter {
            conn,
            metas,
            head,
            tail,
            max_bytes,
            max_rows: if spec.batch_size > 0 {
                spec.batch_size
            } else {
                usize::MAX
            },
            checkpoint: None,
            collisions_fail: spec.collisions_fail,
        })
    }
}

struct MySqlWriter {
    conn: PoolConnection<MySql>,
    metas: Vec<ColMeta>,
    head: String,
    tail: String,
    /// Bytes of values one statement may carry.
    max_bytes: usize,
    max_rows: usize,
    checkpoint: Option<CheckpointSql>,
    /// See [`WriteSpec::collisions_fail`].
    collisions_fail: bool,
}

/// One value taken from an Arrow array, with its meaning.
#[derive(Debug, Clone)]
pub(super) enum Val {
    Null,
    Int(i128),
    F32(f32),
    F64(f64),
    /// Decimal text (`-12.3400`).
    Dec(String),
    Str(String),
    Bytes(Vec<u8>),
    Date(i64),
    /// Microseconds since the epoch (wall clock or UTC instant).
    DateTime(i64),
    /// Signed microseconds.
    Time(i64),
}

impl Val {
    pub(super) fn size(&self) -> usize {
        match self {
            Val::Str(s) | Val::Dec(s) => s.len() + 9,
            Val::Bytes(b) => b.len() + 9,
            _ => 12,
        }
    }

    fn json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Val::Null => J::Null,
            Val::Int(v) => i64::try_from(*v)
                .map(J::from)
                .or_else(|_| u64::try_from(*v).map(J::from))
                .unwrap_or_else(|_| J::String(v.to_string())),
            Val::F32(v) => serde_json::Number::from_f64(*v as f64)
                .map(J::Number)
                .unwrap_or_else(|| J::String(v.to_string())),
            Val::F64(v) => serde_json::Number::from_f64(*v)
                .map(J::Number)
                .unwrap_or_else(|| J::String(v.to_string())),
            Val::Dec(s) | Val::Str(s) => J::String(s.clone()),
            Val::Bytes(b) => J::String(format!(
                "0x{}",
                b.iter().map(|x| format!("{x:02x}")).collect::<String>()
            )),
            Val::Date(d) => J::String(format_date(*d)),
            Val::DateTime(us) => J::String(format_datetime(*us)),
            Val::Time(us) => J::String(format_time(*us)),
        }
    }

    pub(super) fn bind(
        &self,
        args: &mut MySqlArguments,
        meta: &ColMeta,
    ) -> Result<(), ConnectorError> {
        let r = match self {
            Val::Null => args.add(None::<String>),
            Val::Int(v) => match i64::try_from(*v) {
                Ok(x) if meta.base != "bit" => args.add(x),
                _ => match u64::try_from(*v) {
                    Ok(x) => args.add(x),
                    Err(_) => args.add(v.to_string()),
                },
            },
            Val::F32(v) => args.add(*v),
            Val::F64(v) => args.add(*v),
            Val::Dec(s) | Val::Str(s) => args.add(s.clone()),
            Val::Bytes(b) => args.add(b.clone()),
            Val::Date(d) => args.add(format_date(*d)),
            Val::DateTime(us) => args.add(format_datetime(*us)),
            Val::Time(us) => args.add(format_time(*us)),
        };
        r.map_err(|e| ConnectorError::Value {
            column: meta.name.clone(),
            message: format!("cannot bind: {e}"),
        })
    }
}

fn unit_to_micros(v: i64, unit: &TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => v.saturating_mul(1_000_000),
        TimeUnit::Millisecond => v.saturating_mul(1_000),
        TimeUnit::Microsecond => v,
        TimeUnit::Nanosecond => v.div_euclid(1_000),
    }
}

/// The value at `row` of `a`.
pub(super) fn value(a: &ArrayRef, row: usize, field: &Field) -> Result<Val, ConnectorError> {
    if a.is_null(row) {
        return Ok(Val::Null);
    }
    Ok(match a.data_type() {
        DataType::Boolean => Val::Int(a.as_boolean().value(row) as i128),
        DataType::Int8 => Val::Int(a.as_primitive::<Int8Type>().value(row) as i128),
        DataType::Int16 => Val::Int(a.as_primitive::<Int16Type>().value(row) as i128),
        DataType::Int32 => Val::Int(a.as_primitive::<Int32Type>().value(row) as i128),
        DataType::Int64 => Val::Int(a.as_primitive::<Int64Type>().value(row) as i128),
        DataType::UInt8 => Val::Int(a.as_primitive::<UInt8Type>().value(row) as i128),
        DataType::UInt16 => Val::Int(a.as_primitive::<UInt16Type>().value(row) as i128),
        DataType::UInt32 => Val::Int(a.as_primitive::<UInt32Type>().value(row) as i128),
        DataType::UInt64 => Val::Int(a.as_primitive::<UInt64Type>().value(row) as i128),
        DataType::Float32 => Val::F32(a.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => Val::F64(a.as_primitive::<Float64Type>().value(row)),
        DataType::Decimal128(_, s) => Val::Dec(format_decimal(
            &a.as_primitive::<Decimal128Type>().value(row).to_string(),
            *s,
        )),
        DataType::Decimal256(_, s) => Val::Dec(format_decimal(
            &a.as_primitive::<Decimal256Type>().value(row).to_string(),
            *s,
        )),
        DataType::Utf8 => Val::Str(a.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Val::Str(a.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => Val::Str(a.as_string_view().value(row).to_string()),
        DataType::Binary => Val::Bytes(a.as_binary::<i32>().value(row).to_vec()),
        DataType::LargeBinary => Val::Bytes(a.as_binary::<i64>().value(row).to_vec()),
        DataType::BinaryView => Val::Bytes(a.as_binary_view().value(row).to_vec()),
        DataType::FixedSizeBinary(_) => Val::Bytes(a.as_fixed_size_binary().value(row).to_vec()),
        DataType::Date32 => Val::Date(a.as_primitive::<Date32Type>().value(row) as i64),
        DataType::Date64 => Val::Date(
            a.as_primitive::<Date64Type>()
                .value(row)
                .div_euclid(86_400_000),
        ),
        DataType::Timestamp(unit, _) => {
            let v = match unit {
                TimeUnit::Second => a.as_primitive::<TimestampSecondType>().value(row),
                TimeUnit::Millisecond => a.as_primitive::<TimestampMillisecondType>().value(row),
                TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().value(row),
                TimeUnit::Nanosecond => a.as_primitive::<TimestampNanosecondType>().value(row),
            };
            Val::DateTime(unit_to_micros(v, unit))
        }
        DataType::Time32(TimeUnit::Second) => {
            Val::Time(a.as_primitive::<Time32SecondType>().value(row) as i64 * 1_000_000)
        }
        DataType::Time32(_) => {
            Val::Time(a.as_primitive::<Time32MillisecondType>().value(row) as i64 * 1_000)
        }
        DataType::Time64(TimeUnit::Nanosecond) => {
            Val::Time(a.as_primitive::<Time64NanosecondType>().value(row) / 1_000)
        }
        DataType::Time64(_) => Val::Time(a.as_primitive::<Time64MicrosecondType>().value(row)),
        DataType::Duration(unit) => {
            let v = match unit {
                TimeUnit::Second => a.as_primitive::<DurationSecondType>().value(row),
                TimeUnit::Millisecond => a.as_primitive::<DurationMillisecondType>().value(row),
                TimeUnit::Microsecond => a.as_primitive::<DurationMicrosecondType>().value(row),
                TimeUnit::Nanosecond => a.as_primitive::<DurationNanosecondType>().value(row),
            };
            Val::Time(unit_to_micros(v, unit))
        }
        other => {
            return Err(ConnectorError::UnsupportedType {
                column: field.name().clone(),
                type_name: format!("Arrow {other}"),
            })
        }
    })
}

const DAY_US: i64 = 86_400_000_000;

/// Why the target column `m` cannot hold `v`, if it cannot.
pub(super) fn check(v: &Val, m: &ColMeta) -> Option<String> {
    let base = m.base.as_str();
    match v {
        Val::Null if !m.nullable => return Some("NULL into a NOT NULL column".into()),
        Val::Null => return None,
        Val::F32(f) if !f.is_finite() => return Some(format!("{f} cannot be stored by MySQL")),
        Val::F64(f) if !f.is_finite() => return Some(format!("{f} cannot be stored by MySQL")),
        _ => {}
    }
    if let (Val::Int(i), Some((lo, hi))) = (v, m.int_range()) {
        let ok = if base == "year" {
            *i == 0 || (1901..=2155).contains(i)
        } else {
            (lo..=hi).contains(i)
        };
        if !ok {
            return Some(format!(
                "{i} is out of range for {base}{}",
                if m.unsigned { " unsigned" } else { "" }
            ));
        }
    }
    if matches!(base, "decimal" | "numeric") {
        let a = m.num_args();
        let (p, s) = (
            a.first().copied().unwrap_or(10),
            a.get(1).copied().unwrap_or(0),
        );
        let max_int = p.saturating_sub(s) as usize;
        let digits = match v {
            Val::Int(i) => Some(i.unsigned_abs().to_string().trim_start_matches('0').len()),
            Val::Dec(d) => Some(integer_digits(d)),
            Val::F32(f) => Some(integer_digits(&format!("{:.0}", (*f as f64).abs().trunc()))),
            Val::F64(f) => Some(integer_digits(&format!("{:.0}", f.abs().trunc()))),
            _ => None,
        };
        if let Some(d) = digits.filter(|d| *d > max_int) {
            return Some(format!("{d} integer digits overflow DECIMAL({p},{s})"));
        }
    }
    if let Val::Str(s) = v {
        let limit_chars = match base {
            "char" | "varchar" => m.num_args().first().copied(),
            _ => None,
        };
        if let Some(n) = limit_chars {
            let c = s.chars().count() as u64;
            if c > n {
                return Some(format!("{c} characters are longer than {base}({n})"));
            }
        }
        let limit_bytes = match base {
            "tinytext" => Some(255u64),
            "text" => Some(65_535),
            "mediumtext" => Some(16_777_215),
            _ => None,
        };
        if let Some(n) = limit_bytes.filter(|n| s.len() as u64 > *n) {
            return Some(format!(
                "{} bytes are longer than {base} ({n} bytes)",
                s.len()
            ));
        }
        let mb3 = matches!(m.charset.as_deref(), Some("utf8mb3") | Some("utf8"));
        if mb3 && s.chars().any(|c| c as u32 > 0xFFFF) {
            return Some("4-byte UTF-8 character (e.g. emoji) into a utf8mb3 column".into());
        }
        if m.json {
            if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(s) {
                return Some(format!("invalid JSON: {e}"));
            }
        }
    }
    if let Val::Bytes(b) = v {
        let limit = match base {
            "binary" | "varbinary" => m.num_args().first().copied(),
            "tinyblob" => Some(255),
            "blob" => Some(65_535),
            "mediumblob" => Some(16_777_215),
            _ => None,
        };
        if let Some(n) = limit.filter(|n| b.len() as u64 > *n) {
            return Some(format!("{} bytes are longer than {base}({n})", b.len()));
        }
    }
    let us = match v {
        Val::Date(d) => Some(d.saturating_mul(DAY_US)),
        Val::DateTime(us) => Some(*us),
        _ => None,
    };
    if let Some(us) = us {
        const MIN_DT: i64 = -30_610_224_000_000_000; // 1000-01-01
        const END_DT: i64 = 253_402_300_800_000_000; // 10000-01-01
        const MIN_TS: i64 = 1_000_000; // 1970-01-01 00:00:01
        const END_TS: i64 = 2_147_483_648_000_000; // 2038-01-19 03:14:08
        let (lo, hi, what) = match base {
            "date" | "datetime" => (MIN_DT, END_DT, "1000-01-01 .. 9999-12-31"),
            "timestamp" => (
                MIN_TS,
                END_TS,
                "1970-01-01 00:00:01 .. 2038-01-19 03:14:07 UTC",
            ),
            _ => (i64::MIN, i64::MAX, ""),
        };
        if us < lo || us >= hi {
            return Some(format!(
                "{} is outside the {base} range {what}",
                format_datetime(us)
            ));
        }
    }
    if let (Val::Time(us), "time") = (v, base) {
        if us.unsigned_abs() > 3_020_399_000_000 {
            return Some(format!(
                "{} is outside the TIME range ±838:59:59",
                format_time(*us)
            ));
        }
    }
    None
}

/// `column 'x'` in a server message.
fn column_in_message(msg: &str) -> Option<String> {
    let i = msg.find("column '").or_else(|| msg.find("column `"))?;
    let rest = &msg[i + 8..];
    let end = rest.find(['\'', '`'])?;
    Some(rest[..end].to_string())
}

/// Cuts rows of `sizes` bytes into contiguous chunks of at most `max_bytes` (a single larger
/// row gets a chunk of its own) and at most `max_rows` rows.
pub(super) fn plan_chunks(
    sizes: &[usize],
    max_bytes: usize,
    max_rows: usize,
) -> Vec<std::ops::Range<usize>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut bytes = 0usize;
    for (i, sz) in sizes.iter().enumerate() {
        if i > start && (bytes + sz > max_bytes || i - start >= max_rows) {
            chunks.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += sz;
    }
    if start < sizes.len() {
        chunks.push(start..sizes.len());
    }
    chunks
}

pub(super) fn build_sql(head: &str, tail: &str, ncols: usize, rows: usize) -> String {
    let one = format!("({})", vec!["?"; ncols].join(","));
    let mut s = String::with_capacity(head.len() + rows * (one.len() + 1) + tail.len());
    s.push_str(head);
    for i in 0..rows {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&one);
    }
    s.push_str(tail);
    s
}

pub(super) fn build_args(
    metas: &[ColMeta],
    rows: &[&Vec<Val>],
) -> Result<MySqlArguments, ConnectorError> {
    let mut args = MySqlArguments::default();
    for r in rows {
        for (v, m) in r.iter().zip(metas) {
            v.bind(&mut args, m)?;
        }
    }
    Ok(args)
}

fn record(metas: &[ColMeta], vals: &[Val]) -> serde_json::Value {
    serde_json::Value::Object(
        metas
            .iter()
            .zip(vals)
            .map(|(m, v)| (m.name.clone(), v.json()))
            .collect(),
    )
}

#[async_trait]
impl SinkWriter for MySqlWriter {
    async fn write(&mut self, batch: &RecordBatch) -> Result<WriteOutcome, ConnectorError> {
        self.write_with(batch, None).await
    }

    async fn write_at(
        &mut self,
        batch: &RecordBatch,
        checkpoint: &Checkpoint,
    ) -> Result<WriteOutcome, ConnectorError> {
        self.write_with(batch, Some(checkpoint)).await
    }

    async fn close(self: Box<Self>) -> Result<(), ConnectorError> {
        drop(self.conn);
        Ok(())
    }
}

impl MySqlWriter {
    /// One transaction: the rows of `batch` and, if given, the checkpoint.
    async fn write_with(
        &mut self,
        batch: &RecordBatch,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<WriteOutcome, ConnectorError> {
        if batch.num_columns() != self.metas.len() {
            return Err(ConnectorError::Schema(format!(
                "batch has {} columns, the target {}",
                batch.num_columns(),
                self.metas.len()
            )));
        }
        let schema = batch.schema();
        let mut outcome = WriteOutcome::default();
        // Rows to write, with their batch index; dirty rows left out.
        let mut good: Vec<(usize, Vec<Val>)> = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let vals = batch
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(a, f)| value(a, row, f))
                .collect::<Result<Vec<_>, _>>()?;
            let bad = vals
                .iter()
                .zip(&self.metas)
                .find_map(|(v, m)| check(v, m).map(|r| (m.name.clone(), r)));
            match bad {
                Some((column, reason)) => outcome.dirty.push(DirtyRecord {
                    row,
                    reason: format!("column `{column}`: {reason}"),
                    column: Some(column),
                    record: record(&self.metas, &vals),
                }),
                None => good.push((row, vals)),
            }
        }
        // Chunks under max_allowed_packet and the placeholder limit.
        let ncols = self.metas.len().max(1);
        let rows_cap = (MAX_PLACEHOLDERS / ncols).clamp(1, self.max_rows.max(1));
        let sizes: Vec<usize> = good
            .iter()
            .map(|(_, vals)| vals.iter().map(Val::size).sum::<usize>() + 2 * ncols + 3)
            .collect();
        let chunks = plan_chunks(&sizes, self.max_bytes, rows_cap);
        let MySqlWriter {
            conn,
            metas,
            head,
            tail,
            checkpoint: cp_sql,
            collisions_fail,
            ..
        } = self;
        let mut tx = conn
            .begin()
            .await
            .map_err(|e| ConnectorError::query("BEGIN", e))?;
        for chunk in chunks {
            let rows: Vec<&Vec<Val>> = good[chunk.clone()].iter().map(|(_, v)| v).collect();
            let sql = build_sql(head, tail, metas.len(), rows.len());
            let args = build_args(metas, &rows)?;
            match sqlx::query_with(&sql, args)
                .persistent(false)
                .execute(&mut *tx)
                .await
            {
                Ok(_) => outcome.written += rows.len() as u64,
                Err(sqlx::Error::Database(e)) => {
                    tracing::debug!(error = %e, rows = rows.len(), "chunk refused; retrying row by row");
                    let one = build_sql(head, tail, metas.len(), 1);
                    for (row, vals) in &good[chunk] {
                        let args = build_args(metas, &[vals])?;
                        match sqlx::query_with(&one, args)
                            .persistent(false)
                            .execute(&mut *tx)
                            .await
                        {
                            Ok(_) => outcome.written += 1,
                            Err(sqlx::Error::Database(e))
                                if *collisions_fail
                                    && e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                                        .is_some_and(|m| m.number() == 1062) =>
                            {
                                return Err(ConnectorError::query(
                                    "INSERT",
                                    sqlx::Error::Database(e),
                                ));
                            }
                            Err(sqlx::Error::Database(e)) => {
                                let msg = e.message().to_string();
                                outcome.dirty.push(DirtyRecord {
                                    row: *row,
                                    column: column_in_message(&msg),
                                    reason: format!("refused by the server: {msg}"),
                                    record: record(metas, vals),
                                })
                            }
                            Err(e) => return Err(ConnectorError::query("INSERT", e)),
                        }
                    }
                }
                Err(e) => return Err(ConnectorError::query("INSERT", e)),
            }
        }
        if let Some((sql, cp)) = cp_sql.as_ref().zip(checkpoint) {
            sqlx::query(&sql.upsert)
                .bind(&sql.job)
                .bind(sql.split)
                .bind(cp.seq as i64)
                .bind(cp.rows as i64)
                .bind((cp.written + outcome.written) as i64)
                .bind(cp.position.as_ref().map(Position::to_stored))
                .execute(&mut *tx)
                .await
                .map_err(|e| ConnectorError::query("recording the checkpoint", e))?;
        }
        tx.commit()
            .await
            .map_err(|e| ConnectorError::query("COMMIT", e))?;
        outcome.dirty.sort_by_key(|d| d.row);
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn create_types() {
        let f = Field::new("b", DataType::Int8, true)
            .with_metadata(HashMap::from([("ferry.type".into(), "tinyint(1)".into())]));
        assert_eq!(mysql_type(&f).unwrap(), "TINYINT(1) NULL");
        let f = Field::new("d", DataType::Decimal256(66, 2), false);
        assert!(mysql_type(&f).is_err());
        let f = Field::new(
            "t",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        );
        assert_eq!(mysql_type(&f).unwrap(), "TIMESTAMP(6) NULL DEFAULT NULL");
    }

    #[test]
    fn chunks_respect_bytes_and_rows() {
        assert_eq!(
            plan_chunks(&[4, 4, 4, 4, 4], 8, 100),
            vec![0..2, 2..4, 4..5]
        );
        assert_eq!(plan_chunks(&[20, 1, 1], 8, 100), vec![0..1, 1..3]);
        assert_eq!(plan_chunks(&[1; 5], 100, 2), vec![0..2, 2..4, 4..5]);
        assert!(plan_chunks(&[], 8, 2).is_empty());
        // 65535 placeholders: 3 columns -> at most 21845 rows per statement.
        let c = plan_chunks(&vec![1; 50_000], usize::MAX, MAX_PLACEHOLDERS / 3);
        assert!(c.iter().all(|r| r.len() <= 21_845) && c.len() == 3);
    }

    #[test]
    fn checks() {
        let m = ColMeta::from_column_type("v", "varchar(5)", true);
        assert!(check(&Val::Str("123456".into()), &m).is_some());
        assert!(check(&Val::Str("12345".into()), &m).is_none());
        let m = ColMeta::from_column_type("d", "decimal(5,2)", true);
        assert!(check(&Val::Dec("1000.00".into()), &m).is_some());
        assert!(check(&Val::Dec("-999.99".into()), &m).is_none());
        let m = ColMeta::from_column_type("u", "int(10) unsigned", true);
        assert!(check(&Val::Int(-1), &m).is_some());
        assert_eq!(
            column_in_message("Data too long for column 'v' at row 1").as_deref(),
            Some("v")
        );
    }
}
