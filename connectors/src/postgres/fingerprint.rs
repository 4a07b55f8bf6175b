//! `ferry verify` inside PostgreSQL: the buckets pass of the PostgreSQL scheme
//! ([`Scheme::Postgres`]) as one aggregate per split, so only bucket sums leave the server
//! instead of every row.
//!
//! Each column goes through the server's own seeded hash function for its type (see
//! [`PgHash`] for which, and how the other side matches it); the SQL is built from the
//! catalog's column names and types, the seeds and the bucket count, all numbers or quoted
//! identifiers: nothing of an ask's text becomes SQL.

use ferry_model::{PgHash, Scheme, VerifyAsk, VerifyPass};
use sqlx::Row;

use super::{q, quote_ident, PgCol, PgKind, PostgresSource};
use crate::error::ConnectorError;
use crate::spec::{ReadSpec, Split};

/// The hash kind of a column, when the server can compute it so that the other side can
/// match it. `interval`s need `extract` to return an exact numeric (PostgreSQL 14); `char(n)`
/// is left out (its text cast drops the padding its read keeps).
fn kind(col: &PgCol, version: i32) -> Option<PgHash> {
    Some(match &col.kind {
        PgKind::Int2 | PgKind::Int4 | PgKind::Int8 => PgHash::Int,
        PgKind::Numeric(_) => PgHash::Numeric,
        PgKind::Float4 | PgKind::Float8 => PgHash::Float,
        PgKind::Text { .. } => {
            let t = col.type_name.as_str();
            if t == "character" || t.starts_with("character(") || t == "bpchar" {
                return None;
            }
            PgHash::Text
        }
        PgKind::Uuid => PgHash::Text,
        PgKind::Json | PgKind::Jsonb => PgHash::Json,
        PgKind::Bytea => PgHash::Bytes,
        PgKind::Bool => PgHash::Bool,
        PgKind::Date => PgHash::Date,
        PgKind::Time => PgHash::Time,
        PgKind::Timestamp | PgKind::Timestamptz => PgHash::Timestamp,
        PgKind::Interval if version >= 140_000 => PgHash::Interval,
        PgKind::Interval => return None,
    })
}

/// The SQL of column `c`'s hash under `seed` (NULL: its own constant).
fn expression(col: &PgCol, seed: u64) -> String {
    let c = quote_ident(&col.name);
    let s = seed as i64;
    let h = match &col.kind {
        PgKind::Int2 | PgKind::Int4 | PgKind::Int8 => format!("hashint8extended({c}::int8, {s})"),
        // The server's numeric hash leaves the sign out; the scheme's has it.
        PgKind::Numeric(_) => {
            format!("(hash_numeric_extended({c}, {s}) # ({c} < 0)::int4::int8)")
        }
        PgKind::Float4 | PgKind::Float8 => format!("hashfloat8extended({c}::float8, {s})"),
        // "C": the bytes, whatever the column's collation.
        PgKind::Text { .. } | PgKind::Uuid => {
            format!("hashtextextended({c}::text COLLATE \"C\", {s})")
        }
        PgKind::Json | PgKind::Jsonb => {
            format!("hashtextextended({c}::jsonb::text COLLATE \"C\", {s})")
        }
        PgKind::Bytea => format!("hashtextextended(encode({c}, 'hex') COLLATE \"C\", {s})"),
        PgKind::Bool => format!("hashint4extended({c}::int4, {s})"),
        PgKind::Date => format!("hashint4extended({c} - DATE '2000-01-01', {s})"),
        PgKind::Time => format!("time_hash_extended({c}, {s})"),
        PgKind::Timestamp => format!("timestamp_hash_extended({c}, {s})"),
        PgKind::Timestamptz => format!("timestamp_hash_extended({c} AT TIME ZONE 'UTC', {s})"),
        PgKind::Interval => {
            format!("hashint8extended((extract(epoch FROM {c}) * 1000000)::int8, {s})")
        }
    };
    format!("COALESCE({h}, ({}))", PgHash::null_hash(seed) as i64)
}

/// The XOR of `terms` (one term: itself).
fn xor(terms: Vec<String>) -> String {
    format!("({})", terms.join(" # "))
}

impl PostgresSource {
    /// The read's columns and each one's hash kind, when every column has one (a table read
    /// on PostgreSQL 11 or later: the seeded hash functions came then), looked up in `tx`.
    async fn covered_on(
        tx: &mut sqlx::PgConnection,
        spec: &ReadSpec,
    ) -> Result<Option<(Vec<PgCol>, Vec<PgHash>)>, ConnectorError> {
        if Self::query_sql(spec).is_some() || spec.table.is_none() {
            return Ok(None);
        }
        let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int4")
            .fetch_one(&mut *tx)
            .await
            .map_err(q("server version"))?;
        if version < 110_000 {
            return Ok(None);
        }
        let cols = Self::columns_on(tx, spec).await?;
        let kinds: Option<Vec<PgHash>> = cols.iter().map(|c| kind(c, version)).collect();
        Ok(kinds.map(|k| (cols, k)))
    }

    /// Each read column's hash kind, when every column has one.
    pub(super) async fn hash_kinds_of(
        &self,
        spec: &ReadSpec,
    ) -> Result<Option<Vec<PgHash>>, ConnectorError> {
        let mut tx = self.begin_read().await?;
        let covered = Self::covered_on(&mut tx, spec).await?;
        tx.rollback().await.map_err(q("rollback"))?;
        Ok(covered.map(|(_, kinds)| kinds))
    }

    /// The buckets pass of `ask` over `split`, computed by the server: every non-empty
    /// bucket's rows and hash sum. `None` when the ask is not that pass under the PostgreSQL
    /// scheme with this read's own kinds. One read-only transaction: the catalog, then the
    /// aggregate.
    pub(super) async fn bucket_sums_of(
        &self,
        spec: &ReadSpec,
        split: &Split,
        ask: &VerifyAsk,
    ) -> Result<Option<Vec<(u32, u64, u64)>>, ConnectorError> {
        let Scheme::Postgres(kinds) = &ask.scheme else {
            return Ok(None);
        };
        if ask.pass != VerifyPass::Buckets {
            return Ok(None);
        }
        ask.check()
            .map_err(|e| ConnectorError::config("verification", e))?;
        let mut tx = self.begin_read().await?;
        let cols = match Self::covered_on(&mut tx, spec).await? {
            Some((cols, own)) if own == *kinds => cols,
            _ => {
                tx.rollback().await.map_err(q("rollback"))?;
                return Ok(None);
            }
        };
        let row = xor(cols
            .iter()
            .enumerate()
            .map(|(i, c)| expression(c, PgHash::column_seed(i)))
            .collect());
        let key = ask
            .key
            .iter()
            .enumerate()
            .map(|(j, name)| {
                cols.iter()
                    .find(|c| c.name == *name)
                    .map(|c| expression(c, PgHash::key_seed(j)))
                    .ok_or_else(|| {
                        ConnectorError::config(
                            "verification",
                            format!("no column `{name}` is read"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Keyless: a row is its own key.
        let by = if key.is_empty() { "h" } else { "k" };
        let key = if key.is_empty() {
            "NULL::int8".to_string()
        } else {
            xor(key)
        };
        let mask = i64::from(ask.buckets - 1);
        // The row hashes are summed exactly (numeric) and reduced modulo 2^64 here.
        let sql = format!(
            "SELECT ({by} & {mask})::int4 AS b, count(*) AS n, sum(h)::text AS s \
             FROM (SELECT {key} AS k, {row} AS h FROM {}{}) s GROUP BY 1",
            Self::from_item(spec)?,
            Self::where_sql(spec, Some(split)),
        );
        tracing::debug!(%sql, split = split.index, "fingerprinting split in the database");
        // The splits are the parallelism: a split's scan that starts parallel workers and
        // compiles its expressions (the planner's choice on a table not analysed yet, just
        // after a copy) only takes CPU from the other splits.
        for set in [
            "SET LOCAL jit = off",
            "SET LOCAL max_parallel_workers_per_gather = 0",
        ] {
            sqlx::query(set)
                .execute(&mut *tx)
                .await
                .map_err(q("fingerprint settings"))?;
        }
        let rows = sqlx::query(&sql)
            .fetch_all(&mut *tx)
            .await
            .map_err(q("fingerprinting a split"))?;
        tx.rollback().await.map_err(q("rollback"))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let b: i32 = r.try_get(0).map_err(q("a bucket"))?;
            let n: i64 = r.try_get(1).map_err(q("a bucket's rows"))?;
            let s: String = r.try_get(2).map_err(q("a bucket's sum"))?;
            let sum: i128 = s.parse().map_err(|_| {
                ConnectorError::Schema(format!("a bucket's sum `{s}` is not an integer"))
            })?;
            out.push((b as u32, n as u64, sum as u64));
        }
        Ok(Some(out))
    }
}
