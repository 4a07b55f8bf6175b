//! Throwaway PostgreSQL schemas and MariaDB databases for tests, through
//! the `psql` and `mariadb` clients. Each is uniquely named and dropped when
//! its guard drops (also when the test fails).

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// PostgreSQL server URL used by the tests.
pub fn pg_url() -> String {
    std::env::var("FERRY_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// MariaDB server URL used by the tests (without a database).
pub fn mysql_server_url() -> String {
    std::env::var("FERRY_TEST_MYSQL_SERVER")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

fn run(mut cmd: Command, what: &str) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A PostgreSQL schema in database `test` (or on a server of the test's own), dropped on
/// drop.
pub struct PgSchema {
    pub name: String,
    /// The server's database URL.
    server: String,
}

impl PgSchema {
    /// `None` means "skip" (server unreachable, not under CI).
    pub fn new(prefix: &str) -> Option<Self> {
        Self::new_on(&pg_url(), prefix)
    }

    /// A schema in the database at `url`.
    pub fn new_on(url: &str, prefix: &str) -> Option<Self> {
        let s = Self {
            name: unique(prefix),
            server: url.to_string(),
        };
        if let Err(e) = s.try_sql(&format!("CREATE SCHEMA {}", s.name)) {
            crate::missing(&format!("PostgreSQL at {} ({e})", pg_url()));
            return None;
        }
        Some(s)
    }

    fn try_sql(&self, sql: &str) -> Result<String, String> {
        psql_on(&self.server, sql, Some(&self.name))
    }

    /// The URL of the schema's database.
    pub fn url(&self) -> &str {
        &self.server
    }

    /// Runs SQL with this schema first on the search path; returns the
    /// unaligned, tuples-only output.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql)
            .unwrap_or_else(|e| panic!("{e}\nSQL: {sql}"))
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = self.try_sql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
    }
}

/// A PostgreSQL database of its own (for a broker's state store), dropped
/// on drop.
pub struct PgDatabase {
    pub name: String,
}

impl PgDatabase {
    /// `None` means "skip" (server unreachable, not under CI).
    pub fn new(prefix: &str) -> Option<Self> {
        let d = Self {
            name: unique(prefix),
        };
        if let Err(e) = pg_admin(&format!("CREATE DATABASE {}", d.name)) {
            crate::missing(&format!("PostgreSQL at {} ({e})", pg_url()));
            return None;
        }
        Some(d)
    }

    /// Its URL: the server of [`pg_url`], this database.
    pub fn url(&self) -> String {
        let base = pg_url();
        let server = base.rsplit_once('/').map_or(base.as_str(), |(s, _)| s);
        format!("{server}/{}", self.name)
    }
}

fn pg_admin(sql: &str) -> Result<String, String> {
    psql(sql, None)
}

/// Runs `sql` with `psql` on [`pg_url`], with `schema` first on the search
/// path when given; unaligned, tuples-only output.
pub fn psql(sql: &str, schema: Option<&str>) -> Result<String, String> {
    psql_on(&pg_url(), sql, schema)
}

/// [`psql`] on the database at `url`.
pub fn psql_on(url: &str, sql: &str, schema: Option<&str>) -> Result<String, String> {
    let mut c = Command::new("psql");
    c.args([
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        url,
        "-c",
        sql,
    ]);
    if let Some(schema) = schema {
        c.env(
            "PGOPTIONS",
            format!("-c search_path={schema},public -c TimeZone=UTC"),
        );
    }
    run(c, "psql")
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = pg_admin(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// The `mariadb` client on the test server (batch output without column names), in
/// database `db`.
pub fn mariadb_cli(db: Option<&str>) -> Command {
    let mut c = Command::new("mariadb");
    c.args([
        "-h127.0.0.1",
        "-P3306",
        "-uroot",
        "--default-character-set=utf8mb4",
        "-N",
        "-B",
    ]);
    if let Some(db) = db {
        c.arg(db);
    }
    c
}

/// A MariaDB database, dropped on drop.
pub struct MyDb {
    pub name: String,
}

impl MyDb {
    /// `None` means "skip" (server unreachable, not under CI).
    pub fn new(prefix: &str) -> Option<Self> {
        let d = Self {
            name: unique(prefix),
        };
        if let Err(e) = d.try_sql(
            None,
            &format!("CREATE DATABASE {} CHARACTER SET utf8mb4", d.name),
        ) {
            crate::missing(&format!("MariaDB at {} ({e})", mysql_server_url()));
            return None;
        }
        Some(d)
    }

    fn try_sql(&self, db: Option<&str>, sql: &str) -> Result<String, String> {
        let mut c = mariadb_cli(db);
        c.args(["-e", sql]);
        run(c, "mariadb")
    }

    /// Runs SQL in this database.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(Some(&self.name), sql)
            .unwrap_or_else(|e| panic!("{e}\nSQL: {sql}"))
    }

    /// URL of this database.
    pub fn url(&self) -> String {
        format!("{}/{}", mysql_server_url(), self.name)
    }
}

impl Drop for MyDb {
    fn drop(&mut self) {
        let _ = self.try_sql(None, &format!("DROP DATABASE IF EXISTS {}", self.name));
    }
}
