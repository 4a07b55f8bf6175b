//! The state store against real databases: SQLite files in a temporary
//! directory, and PostgreSQL (a database of its own per test, dropped at the
//! end). Both backends run the same test body.
//!
//! PostgreSQL is reached through `FERRY_TEST_PG_URL` (an admin URL, default
//! `postgres://postgres@127.0.0.1:5432/test`). When it cannot be reached the
//! PostgreSQL tests fail if `CI` is set, and are skipped with a note if not.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ferry_state::{Backend, JobRecord, NewJob, SplitRecord, SplitState, StateError, StateStore};
use sqlx::Connection as _;

const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/test";

fn new_job(source: &str) -> NewJob {
    NewJob {
        spec: format!("reader:\n  datasource: {source}\nwriter:\n  url: file:///tmp/out\n"),
        vars_json: r#"{"day":"2024-01-01"}"#.to_owned(),
        compression: "zstd".to_owned(),
        source: source.to_owned(),
        target: "file".to_owned(),
        submitted_ms: 1_700_000_000_000,
        job_key: format!("key-{source}"),
    }
}

/// Runs `sql` on the store's database, behind the store's back.
async fn raw(url: &str, sql: &str) {
    let mut conn = sqlx::AnyConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    sqlx::query(sql)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    conn.close().await.unwrap();
}

fn assert_corrupt(result: Result<Vec<SplitRecord>, StateError>, column: &str, value: &str) {
    match result {
        Err(StateError::Corrupt { what, message }) => {
            assert!(what.contains(column), "{what}: {message}");
            assert!(message.contains(value), "{what}: {message}");
        }
        other => panic!("expected a corrupt {column}, got {other:?}"),
    }
}

/// The shared body: `url` opens the store, `raw_url` reaches the same
/// database directly with sqlx.
async fn exercise(url: &str, raw_url: &str, backend: Backend) {
    let store = StateStore::open(url).await.expect("first open");
    assert_eq!(store.backend(), backend);
    assert_eq!(store.close_stale_sessions().await.unwrap(), 0);
    assert!(store.jobs(10).await.unwrap().is_empty());

    // Jobs.
    let first = store.insert_job(&new_job("lan/pg")).await.unwrap();
    let second = store.insert_job(&new_job("lan/files")).await.unwrap();
    assert!(second > first, "{second} after {first}");
    let job = store.job(first).await.unwrap().expect("the first job");
    let submitted = new_job("lan/pg");
    assert_eq!(
        job,
        JobRecord {
            number: first,
            spec: submitted.spec,
            vars_json: submitted.vars_json,
            compression: submitted.compression,
            source: submitted.source,
            target: submitted.target,
            state: "running".to_owned(),
            submitted_ms: submitted.submitted_ms,
            ended_ms: None,
            schema_json: None,
            estimated_rows: None,
            summary_json: None,
            error: None,
            resumes: 0,
            job_key: Some(submitted.job_key),
        }
    );
    assert_eq!(store.job(second + 1000).await.unwrap(), None);

    // Planning.
    let schema = r#"{"fields":[{"name":"id","data_type":"Int64"}]}"#;
    let planned: Vec<String> = (0..3)
        .map(|i| format!(r#"{{"table":"t","part":{i}}}"#))
        .collect();
    store
        .job_planned(first, schema, Some(1000), &planned)
        .await
        .unwrap();
    let job = store.job(first).await.unwrap().unwrap();
    assert_eq!(job.schema_json.as_deref(), Some(schema));
    assert_eq!(job.estimated_rows, Some(1000));
    let splits = store.splits(first).await.unwrap();
    assert_eq!(splits.len(), 3);
    for (i, split) in splits.iter().enumerate() {
        assert_eq!(split.index as usize, i);
        assert_eq!(split.split_json, planned[i]);
        assert_eq!(split.state, SplitState::Pending);
        assert_eq!(
            (split.attempts, split.rows_committed, split.last_seq),
            (0, 0, None)
        );
        assert_eq!((&split.agent, &split.error), (&None, &None));
    }
    match store.job_planned(first, schema, None, &planned).await {
        Err(StateError::Corrupt { what, message }) => {
            assert_eq!(what, format!("job {first}"));
            assert!(message.contains("already planned"), "{message}");
        }
        other => panic!("planning twice: {other:?}"),
    }
    assert!(matches!(
        store
            .job_planned(second + 1000, schema, None, &planned)
            .await,
        Err(StateError::NotFound { .. })
    ));
    store.job_planned(second, schema, None, &[]).await.unwrap();
    assert!(store.splits(second).await.unwrap().is_empty());

    // Split transitions.
    store
        .split_started(first, 0, Some("agent-a"))
        .await
        .unwrap();
    store.checkpoint(first, 0, 1, 10, Some("-7")).await.unwrap();
    store
        .checkpoint(first, 0, 2, 25, Some("18446744073709551616"))
        .await
        .unwrap();
    let split = &store.splits(first).await.unwrap()[0];
    assert_eq!(split.state, SplitState::Running);
    assert_eq!(split.agent.as_deref(), Some("agent-a"));
    assert_eq!(
        (split.attempts, split.last_seq, split.rows_committed),
        (1, Some(2), 25)
    );
    assert_eq!(split.last_key.as_deref(), Some("18446744073709551616"));
    store.split_done(first, 0, 30).await.unwrap();
    let split = &store.splits(first).await.unwrap()[0];
    assert_eq!(
        (split.state, split.rows_committed, split.last_seq),
        (SplitState::Done, 30, Some(2))
    );

    store.split_started(first, 1, None).await.unwrap();
    store.split_failed(first, 1, "boom").await.unwrap();
    let split = &store.splits(first).await.unwrap()[1];
    assert_eq!(split.state, SplitState::Failed);
    assert_eq!(split.error.as_deref(), Some("boom"));
    store.split_pending(first, 1).await.unwrap();
    let split = &store.splits(first).await.unwrap()[1];
    assert_eq!(split.state, SplitState::Pending);
    assert_eq!(split.error.as_deref(), Some("boom"), "kept until restarted");
    store
        .split_started(first, 1, Some("agent-b"))
        .await
        .unwrap();
    let split = &store.splits(first).await.unwrap()[1];
    assert_eq!(split.state, SplitState::Running);
    assert_eq!((split.attempts, split.error.as_deref()), (2, None));
    assert_eq!(split.agent.as_deref(), Some("agent-b"));
    assert!(matches!(
        store.checkpoint(first, 7, 1, 1, None).await,
        Err(StateError::NotFound { what }) if what == format!("split 7 of job {first}")
    ));
    assert!(matches!(
        store.checkpoint(first, 0, u64::MAX, 1, None).await,
        Err(StateError::Invalid(_))
    ));

    // Finishing and reopening.
    let numbers = |jobs: Vec<JobRecord>| jobs.iter().map(|j| j.number).collect::<Vec<_>>();
    assert_eq!(
        numbers(store.unfinished_jobs().await.unwrap()),
        [first, second]
    );
    store
        .finish_job(second, "succeeded", Some(r#"{"rows":0}"#), None)
        .await
        .unwrap();
    assert_eq!(numbers(store.unfinished_jobs().await.unwrap()), [first]);
    let done = store.job(second).await.unwrap().unwrap();
    assert_eq!(done.state, "succeeded");
    assert_eq!(done.summary_json.as_deref(), Some(r#"{"rows":0}"#));
    assert!(done.ended_ms.is_some());
    assert!(matches!(
        store.finish_job(second, "bogus", None, None).await,
        Err(StateError::Invalid(_))
    ));
    assert!(matches!(
        store.finish_job(second + 1000, "failed", None, None).await,
        Err(StateError::NotFound { .. })
    ));
    store
        .finish_job(first, "failed", None, Some("agent lost"))
        .await
        .unwrap();
    let failed = store.job(first).await.unwrap().unwrap();
    assert_eq!(
        (failed.state.as_str(), failed.error.as_deref()),
        ("failed", Some("agent lost"))
    );
    assert!(store.unfinished_jobs().await.unwrap().is_empty());
    store.reopen_job(first).await.unwrap();
    let reopened = store.job(first).await.unwrap().unwrap();
    assert_eq!(reopened.state, "running");
    assert_eq!(
        (reopened.ended_ms, reopened.error, reopened.resumes),
        (None, None, 1)
    );
    assert_eq!(
        numbers(store.jobs(10).await.unwrap()),
        [first, second],
        "oldest first"
    );
    assert_eq!(
        numbers(store.jobs(1).await.unwrap()),
        [second],
        "the newest"
    );

    // Agent sessions.
    let gone = store
        .agent_connected("agent-a", "lan", "10.0.0.1:4000", r#"["pg"]"#)
        .await
        .unwrap();
    let live = store
        .agent_connected("agent-b", "lan", "10.0.0.2:4000", "[]")
        .await
        .unwrap();
    assert!(live > gone);
    store.agent_disconnected(gone, "closed").await.unwrap();
    assert!(matches!(
        store.agent_disconnected(live + 1000, "closed").await,
        Err(StateError::NotFound { .. })
    ));
    let sessions = store.agent_sessions(10).await.unwrap();
    assert_eq!(
        sessions.iter().map(|s| s.id).collect::<Vec<_>>(),
        [live, gone],
        "newest first"
    );
    assert_eq!(
        (sessions[1].agent_id.as_str(), sessions[1].group.as_str()),
        ("agent-a", "lan")
    );
    assert_eq!(
        (
            sessions[1].remote.as_str(),
            sessions[1].sources_json.as_str()
        ),
        ("10.0.0.1:4000", r#"["pg"]"#)
    );
    assert_eq!(sessions[1].reason.as_deref(), Some("closed"));
    assert!(sessions[1].disconnected_ms.is_some());
    assert_eq!(
        (sessions[0].disconnected_ms, &sessions[0].reason),
        (None, &None)
    );
    assert_eq!(store.agent_sessions(1).await.unwrap().len(), 1);

    // Logs.
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            store
                .append_log(first, "info", &format!("line {i}"))
                .await
                .unwrap(),
        );
    }
    let other = store.append_log(second, "warn", "elsewhere").await.unwrap();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let all = store.logs(first, 0, 100).await.unwrap();
    assert_eq!(all.iter().map(|l| l.id).collect::<Vec<_>>(), ids);
    assert_eq!(all[3].message, "line 3");
    assert_eq!(all[3].level, "info");
    let page = store.logs(first, ids[1], 2).await.unwrap();
    assert_eq!(
        page.iter().map(|l| l.id).collect::<Vec<_>>(),
        [ids[2], ids[3]]
    );
    assert!(store.logs(first, ids[4], 10).await.unwrap().is_empty());
    let elsewhere = store.logs(second, 0, 10).await.unwrap();
    assert_eq!(
        (
            elsewhere.len(),
            elsewhere[0].id,
            elsewhere[0].level.as_str()
        ),
        (1, other, "warn")
    );

    // A broker restart: a second open of the same location (migrations
    // again), while the first one is still open, then the first closed.
    let splits_before = store.splits(first).await.unwrap();
    let jobs_before = store.jobs(10).await.unwrap();
    let again = StateStore::open(url).await.expect("second open");
    drop(store);
    let store = again;
    assert_eq!(store.jobs(10).await.unwrap(), jobs_before);
    assert_eq!(store.splits(first).await.unwrap(), splits_before);
    assert_eq!(store.logs(first, 0, 100).await.unwrap(), all);
    assert_eq!(numbers(store.unfinished_jobs().await.unwrap()), [first]);
    let third = store.insert_job(&new_job("lan/pg")).await.unwrap();
    assert!(third > second, "{third} after {second}");
    assert_eq!(store.close_stale_sessions().await.unwrap(), 1);
    let sessions = store.agent_sessions(10).await.unwrap();
    assert_eq!(sessions[0].id, live);
    assert_eq!(sessions[0].reason.as_deref(), Some("broker restarted"));
    assert!(sessions[0].disconnected_ms.is_some());
    assert_eq!(sessions[1].reason.as_deref(), Some("closed"), "left alone");
    assert_eq!(store.close_stale_sessions().await.unwrap(), 0);

    // Rows the store did not write are reported, naming the column.
    raw(
        raw_url,
        &format!("UPDATE splits SET state = 'bogus' WHERE job = {first} AND split_index = 2"),
    )
    .await;
    assert_corrupt(store.splits(first).await, "splits.state", "bogus");
    raw(
        raw_url,
        &format!(
            "UPDATE splits SET state = 'pending', rows_committed = -5 \
             WHERE job = {first} AND split_index = 2"
        ),
    )
    .await;
    assert_corrupt(store.splits(first).await, "splits.rows_committed", "-5");
    raw(
        raw_url,
        &format!("UPDATE jobs SET estimated_rows = -1 WHERE number = {first}"),
    )
    .await;
    match store.job(first).await {
        Err(StateError::Corrupt { what, .. }) => assert!(what.contains("jobs.estimated_rows")),
        other => panic!("expected a corrupt estimated_rows, got {other:?}"),
    }
}

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    // The parent directories do not exist yet: open creates them.
    let path = dir.path().join("broker/state/state.db");
    let url = format!("sqlite://{}", path.display());
    exercise(&url, &url, Backend::Sqlite).await;
    assert!(path.is_file());
    let store = StateStore::open(&url).await.unwrap();
    assert_eq!(store.location(), path.display().to_string());
    store.insert_job(&new_job("lan/pg")).await.unwrap();
    let wal = path.with_file_name("state.db-wal");
    assert!(wal.exists(), "WAL journal at {}", wal.display());
}

#[tokio::test]
async fn sqlite_bare_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let path = path.to_str().unwrap();
    let store = StateStore::open(path).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    let n = store.insert_job(&new_job("lan/pg")).await.unwrap();
    drop(store);
    let store = StateStore::open(&format!("sqlite://{path}")).await.unwrap();
    assert_eq!(store.job(n).await.unwrap().unwrap().number, n);
}

#[tokio::test]
async fn unknown_schemes_are_refused() {
    for url in [
        "mysql://ferry:hunter2@db/ferry",
        "http://x/y",
        "sqlite::memory:",
    ] {
        let err = StateStore::open(url).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StateError::Open { .. }), "{url}: {err:?}");
        assert!(
            text.contains("sqlite:///") && text.contains("postgres://"),
            "{url}: {text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
    }
}

/// A database of its own on the test PostgreSQL server, dropped with the
/// guard (also when the test fails).
struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    /// `None` (with a note) when PostgreSQL is unreachable and `CI` is unset.
    async fn create() -> Option<PgDatabase> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let admin_url =
            std::env::var("FERRY_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG.to_owned());
        sqlx::any::install_default_drivers();
        let connect = sqlx::AnyConnection::connect(&admin_url);
        let mut admin = match tokio::time::timeout(Duration::from_secs(10), connect).await {
            Ok(Ok(conn)) => conn,
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_owned(),
                };
                if std::env::var_os("CI").is_some() {
                    panic!("PostgreSQL at {admin_url} is needed for these tests: {why}");
                }
                eprintln!("note: skipping, no PostgreSQL at {admin_url}: {why}");
                return None;
            }
        };
        let name = format!(
            "ferry_state_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        for sql in [
            format!("DROP DATABASE IF EXISTS {name}"),
            format!("CREATE DATABASE {name}"),
        ] {
            sqlx::query(&sql)
                .execute(&mut admin)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        admin.close().await.unwrap();
        let url = with_database(&admin_url, &name);
        Some(PgDatabase {
            admin_url,
            name,
            url,
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // A runtime of its own on a thread of its own: this may run inside
        // the test's runtime, which cannot be blocked on.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut conn = sqlx::AnyConnection::connect(&admin_url)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::query(&sql)
                    .execute(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                conn.close().await.map_err(|e| e.to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("dropping test database {}: {e}", self.name),
            Err(_) => eprintln!("dropping test database {}: panicked", self.name),
        }
    }
}

/// `url` naming database `name` instead of its own.
fn with_database(url: &str, name: &str) -> String {
    let (url, query) = match url.split_once('?') {
        Some((url, query)) => (url, Some(query)),
        None => (url, None),
    };
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let base = match url[after_scheme..].find('/') {
        Some(slash) => &url[..after_scheme + slash],
        None => url,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// `url` with a password for its user if it has none (trust authentication
/// ignores it), to check that the store's location hides it.
fn with_password(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |i| after_scheme + i);
    match url[after_scheme..authority_end].rfind('@') {
        Some(at) if !url[after_scheme..after_scheme + at].contains(':') => format!(
            "{}:ferry-test-secret{}",
            &url[..after_scheme + at],
            &url[after_scheme + at..]
        ),
        _ => url.to_owned(),
    }
}

#[tokio::test]
async fn postgres() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let url = with_password(&db.url);
    exercise(&url, &db.url, Backend::Postgres).await;
    let store = StateStore::open(&url).await.unwrap();
    if url.contains('@') {
        assert!(store.location().contains(":***@"), "{}", store.location());
    }
    assert!(!store.location().contains("ferry-test-secret"));
    assert!(store.location().ends_with(&db.name), "{}", store.location());
}

#[tokio::test]
async fn postgresql_scheme() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let url = db.url.replacen("postgres://", "postgresql://", 1);
    let store = StateStore::open(&url).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    let n = store.insert_job(&new_job("lan/pg")).await.unwrap();
    assert_eq!(store.job(n).await.unwrap().unwrap().source, "lan/pg");
}
