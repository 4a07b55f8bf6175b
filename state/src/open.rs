//! Opening the store: which backend a URL names, the pool, and the
//! migrations of that backend.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::any::AnyPoolOptions;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::Executor as _;

use crate::{Backend, StateError, StateStore};

/// The forms [`StateStore::open`] accepts, for error messages.
const ACCEPTED: &str = "expected sqlite:///absolute/path.db, sqlite://relative/path.db, \
                        a file path (SQLite), or postgres://user@host/database";

/// Migrations, embedded in the binary. Each file of `migrations/<backend>/`
/// is listed here (a test checks that none is forgotten); versions are the
/// files' number prefixes, as `sqlx migrate` would read them.
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "checkpoint keys",
        include_str!("../migrations/sqlite/0002_checkpoint_keys.sql"),
    ),
    (
        3,
        "job tables",
        include_str!("../migrations/sqlite/0003_job_tables.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "checkpoint keys",
        include_str!("../migrations/postgres/0002_checkpoint_keys.sql"),
    ),
    (
        3,
        "job tables",
        include_str!("../migrations/postgres/0003_job_tables.sql"),
    ),
];

/// What a URL given to [`StateStore::open`] names.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// An SQLite file (absolute).
    Sqlite(PathBuf),
    /// A PostgreSQL URL, as given.
    Postgres(String),
}

/// Reads `url` as one of the accepted forms.
fn parse_target(url: &str) -> Result<Target, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Target::Postgres(url.to_owned()));
    }
    let path = if let Some(rest) = url.strip_prefix("sqlite:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.contains('?') {
            return Err(format!(
                "query parameters are not supported in an SQLite state URL; {ACCEPTED}"
            ));
        }
        path
    } else if url.contains("://") {
        return Err(format!("unsupported state URL scheme; {ACCEPTED}"));
    } else {
        url
    };
    if path.is_empty() || path == ":memory:" {
        return Err(format!(
            "the state needs a file, not {:?}; {ACCEPTED}",
            if path.is_empty() { "nothing" } else { path }
        ));
    }
    let path = std::path::absolute(path).map_err(|e| format!("{path}: {e}"))?;
    Ok(Target::Sqlite(path))
}

/// `url` with any password removed: the one after `user:` and any
/// `password=` query parameter.
pub(crate) fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let after = scheme_end + 3;
    let authority_end = url[after..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| after + i);
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..after]);
    let authority = &url[after..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let rest = &url[authority_end..];
    match rest.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, Some(f)),
                None => (query, None),
            };
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            out.push_str(&pairs.join("&"));
            if let Some(fragment) = fragment {
                out.push('#');
                out.push_str(fragment);
            }
        }
        None => out.push_str(rest),
    }
    out
}

/// The `sqlite://` URL sqlx reads for `path`: percent-encoded (sqlx decodes
/// it), created if missing.
fn sqlite_url(path: &Path) -> Result<String, String> {
    let text = path
        .to_str()
        .ok_or_else(|| format!("{} is not valid UTF-8", path.display()))?;
    let mut url = String::from("sqlite://");
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"/._-~".contains(&byte) {
            url.push(char::from(byte));
        } else {
            url.push_str(&format!("%{byte:02X}"));
        }
    }
    url.push_str("?mode=rwc");
    Ok(url)
}

impl StateStore {
    /// Opens the state store at `url` and brings its schema up to date.
    ///
    /// `url` is `sqlite:///abs/path/state.db`, `sqlite://rel/path.db` (from
    /// the current directory), a bare file path (SQLite), or
    /// `postgres://…` / `postgresql://…`.
    ///
    /// SQLite: the file and its parent directory are created if missing; WAL
    /// journal, `synchronous=NORMAL`, 5 s busy timeout. PostgreSQL: a pool of
    /// at most 4 connections. Anything else is [`StateError::Open`] naming
    /// the accepted forms.
    pub async fn open(url: &str) -> Result<Self, StateError> {
        sqlx::any::install_default_drivers();
        let open_error = |source: BoxDynError| StateError::Open {
            url: redact(url),
            source,
        };
        let target = parse_target(url).map_err(|m| open_error(m.into()))?;
        let (backend, location, pool) = match target {
            Target::Sqlite(path) => {
                if let Some(parent) = path.parent() {
                    tokio::fs::create_dir_all(parent).await.map_err(|e| {
                        open_error(format!("creating {}: {e}", parent.display()).into())
                    })?;
                }
                let connect_url = sqlite_url(&path).map_err(|m| open_error(m.into()))?;
                let pool = AnyPoolOptions::new()
                    .max_connections(4)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; \
                                 PRAGMA synchronous = NORMAL; \
                                 PRAGMA busy_timeout = 5000; \
                                 PRAGMA foreign_keys = ON;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(&connect_url)
                    .await
                    .map_err(|e| open_error(e.into()))?;
                (Backend::Sqlite, path.display().to_string(), pool)
            }
            Target::Postgres(url) => {
                let pool = AnyPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(&url)
                    .await
                    .map_err(|e| open_error(e.into()))?;
                (Backend::Postgres, redact(&url), pool)
            }
        };
        let migrations = match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        };
        let migrate_error = |source| StateError::Migrate {
            location: location.clone(),
            source,
        };
        let migrator = Migrator::new(Embedded(migrations))
            .await
            .map_err(migrate_error)?;
        migrator.run(&pool).await.map_err(migrate_error)?;
        Ok(StateStore {
            pool,
            backend,
            location: location.into(),
        })
    }
}

/// A backend's embedded migrations, as a source for [`Migrator`].
#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        let migrations = self
            .0
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    false,
                )
            })
            .collect();
        Box::pin(async move { Ok(migrations) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            parse_target("sqlite:///var/lib/ferry/state.db"),
            Ok(Target::Sqlite("/var/lib/ferry/state.db".into()))
        );
        assert_eq!(
            parse_target("sqlite://rel/state.db"),
            Ok(Target::Sqlite(cwd.join("rel/state.db")))
        );
        assert_eq!(
            parse_target("sqlite:state.db"),
            Ok(Target::Sqlite(cwd.join("state.db")))
        );
        assert_eq!(
            parse_target("/tmp/x/state.db"),
            Ok(Target::Sqlite("/tmp/x/state.db".into()))
        );
        assert_eq!(
            parse_target("state.db"),
            Ok(Target::Sqlite(cwd.join("state.db")))
        );
        for pg in ["postgres://u:p@h/db", "postgresql://h/db?sslmode=disable"] {
            assert_eq!(parse_target(pg), Ok(Target::Postgres(pg.to_owned())));
        }
        for bad in [
            "mysql://h/db",
            "http://x",
            "sqlite://a.db?mode=ro",
            "sqlite::memory:",
            "",
        ] {
            let err = parse_target(bad).unwrap_err();
            assert!(err.contains("postgres://"), "{bad}: {err}");
        }
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://ferry:s3cr:et@db.example:5432/ferry?sslmode=require"),
            "postgres://ferry:***@db.example:5432/ferry?sslmode=require"
        );
        assert_eq!(
            redact("postgres://ferry@db/x?password=hunter2&sslmode=disable"),
            "postgres://ferry@db/x?password=***&sslmode=disable"
        );
        assert_eq!(redact("postgres://db/x"), "postgres://db/x");
        assert_eq!(redact("state.db"), "state.db");
        assert_eq!(redact("postgres://u:p@h"), "postgres://u:***@h");
    }

    #[test]
    fn sqlite_urls_are_encoded() {
        assert_eq!(
            sqlite_url(Path::new("/a b/c#?.db")).unwrap(),
            "sqlite:///a%20b/c%23%3F.db?mode=rwc"
        );
    }

    /// Every migration file is embedded, with the version of its name.
    #[test]
    fn all_migrations_are_embedded() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        for (dir, embedded) in [
            ("sqlite", SQLITE_MIGRATIONS),
            ("postgres", POSTGRES_MIGRATIONS),
        ] {
            let mut files: Vec<(i64, String)> = std::fs::read_dir(root.join(dir))
                .unwrap()
                .map(|entry| {
                    let name = entry.unwrap().file_name().into_string().unwrap();
                    let (version, _) = name.split_once('_').unwrap();
                    let sql = std::fs::read_to_string(root.join(dir).join(&name)).unwrap();
                    (version.parse().unwrap(), sql)
                })
                .collect();
            files.sort();
            let embedded: Vec<(i64, String)> = embedded
                .iter()
                .map(|&(version, _, sql)| (version, sql.to_owned()))
                .collect();
            assert_eq!(files, embedded, "migrations/{dir}");
        }
    }
}
