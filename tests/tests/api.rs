//! The broker's admin API against its OpenAPI description, its metrics, and
//! what crosses the tunnel from an agent (never a URL or a password).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::{Rig, RigSource};
use ferry_tests::db::{pg_url, PgSchema};
use serde_json::Value;

const SECRET: &str = "Tunnel-Never-Sees-Th1s";

/// Checks `v` against `schema` (the subset of JSON Schema the description
/// uses): types, enums, required properties, and no property the schema
/// does not name.
fn check(doc: &Value, schema: &Value, v: &Value, at: &str) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap();
        return check(doc, &doc["components"]["schemas"][name], v, at);
    }
    if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
        let ok = options.iter().any(|o| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(doc, o, v, at))).is_ok()
        });
        assert!(ok, "{at}: {v} matches none of {schema}");
        return;
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let actual = match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    assert!(
        types.is_empty()
            || types.contains(&actual)
            || (actual == "integer" && types.contains(&"number")),
        "{at}: {actual} where the description says {types:?}"
    );
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        assert!(e.contains(v), "{at}: {v} not in {e:?}");
    }
    match v {
        Value::Object(map) if schema.get("properties").is_some() => {
            let props = schema["properties"].as_object().unwrap();
            for r in schema["required"].as_array().into_iter().flatten() {
                let r = r.as_str().unwrap();
                assert!(
                    map.contains_key(r),
                    "{at}: `{r}` is required but missing in {v}"
                );
            }
            for (k, val) in map {
                let p = props
                    .get(k)
                    .unwrap_or_else(|| panic!("{at}: `{k}` is not in the description"));
                check(doc, p, val, &format!("{at}.{k}"));
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(doc, s, item, &format!("{at}[{i}]"));
                }
            }
        }
        _ => {}
    }
}

async fn get_json(http: &reqwest::Client, url: String) -> Value {
    let resp = http.get(&url).send().await.expect("GET");
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    resp.json().await.expect("a JSON answer")
}

fn response_schema<'a>(doc: &'a Value, path: &str, method: &str, status: u16) -> &'a Value {
    let r = &doc["paths"][path][method]["responses"][status.to_string()];
    assert!(
        !r.is_null(),
        "{method} {path}: status {status} is not described"
    );
    &r["content"]["application/json"]["schema"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_matches_its_description_and_the_tunnel_carries_no_secret() {
    let Some(src) = PgSchema::new("ferry_api_src") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_api_dst") else {
        return;
    };
    src.sql(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 3000) g;",
    );
    // The source's password comes from the agent's environment (trust
    // auth ignores it, but it rides in the URL the agent connects with).
    let base = pg_url();
    let (scheme, rest) = base.split_once("://").unwrap();
    let user_host = rest.split_once('/').map_or(rest, |(h, _)| h);
    let db = rest.rsplit_once('/').map_or("test", |(_, d)| d);
    let user = user_host.split_once('@').map_or("postgres", |(u, _)| u);
    let host = user_host.split_once('@').map_or(user_host, |(_, h)| h);
    let url = format!("{scheme}://{user}@{host}/{db}");
    let env = BTreeMap::from([("FERRY_API_TEST_PW".to_string(), SECRET.to_string())]);
    let frames: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let seen = frames.clone();
    let rig = Rig::start_with(
        &[RigSource {
            name: "shop",
            kind: "postgres",
            url: &url,
            extra: "password = { env = \"FERRY_API_TEST_PW\" }",
        }],
        &env,
        Some(Arc::new(move |f: &[u8]| {
            seen.lock().unwrap().push(f.to_vec())
        })),
    )
    .await;
    let job = format!(
        "reader:\n  name: postgresqlreader\n  parameter:\n    datasource: {}\n    table: {}.t\n    splitPk: id\n\
         writer:\n  name: postgresqlwriter\n  parameter:\n    url: {}\n    table: {}.t\n    createTable: true\n\
         setting:\n  speed: {{channel: 2}}\n",
        rig.datasource("shop"),
        src.name,
        pg_url(),
        dst.name
    );
    // Submitted through the API, as an operator's tool would.
    let http = reqwest::Client::new();
    let base = format!("http://{}", rig.broker.admin_addr());
    let resp = http
        .post(format!("{base}/v1/jobs"))
        .json(&serde_json::json!({"job": job, "compression": "zstd:3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let status = rig.wait(&id, std::time::Duration::from_secs(120)).await;
    assert_eq!(
        status.state,
        ferry_broker::jobs::JobState::Succeeded,
        "{status:?}"
    );

    // What crossed the tunnel from the agent: its catalog, plan replies,
    // heartbeats; never the source's URL, host, user or password.
    let frames = frames.lock().unwrap().clone();
    assert!(frames.len() >= 2, "catalog and plan reply were seen");
    let all = frames
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        all.contains("\"shop\""),
        "the catalog names the source: {all}"
    );
    for secret in [SECRET, url.as_str(), host, "5432"] {
        assert!(
            !all.contains(secret),
            "`{secret}` crossed the tunnel: {all}"
        );
    }

    // Every documented route answers as described.
    let doc: Value = get_json(&http, format!("{base}/v1/openapi.json")).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(
        doc,
        serde_json::from_str::<Value>(ferry_broker::admin::OPENAPI).unwrap()
    );
    let mut gets = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path.replace("{id}", &id);
            let resp = match method.as_str() {
                "get" => http.get(format!("{base}{concrete}")).send().await.unwrap(),
                "post" if path == "/v1/jobs" || path == "/v1/verify" => http
                    .post(format!("{base}{concrete}"))
                    .json(&serde_json::json!({"job": "reader: {}"}))
                    .send()
                    .await
                    .unwrap(),
                "post" => http.post(format!("{base}{concrete}")).send().await.unwrap(),
                m => panic!("undocumented method {m}"),
            };
            let code = resp.status().as_u16();
            // `{id}` is a real job: a 404 means the route is missing.
            assert_ne!(code, 404, "{method} {path}: route missing");
            assert_ne!(code, 405, "{method} {path}: method not routed");
            let schema = response_schema(&doc, path, method, code).clone();
            if schema.is_null() {
                continue;
            }
            let body: Value = resp.json().await.unwrap();
            check(&doc, &schema, &body, &format!("{method} {path} → {code}"));
            gets += 1;
        }
    }
    assert!(gets >= 7, "{gets} JSON answers checked");

    // The job as the API shows it: every task done, on the rig's agent.
    let job: Value = get_json(&http, format!("{base}/v1/jobs/{id}")).await;
    let tasks = job["tasks"].as_array().unwrap();
    assert!(!tasks.is_empty());
    assert!(tasks
        .iter()
        .all(|t| t["state"] == "done" && t["agent"] == rig.agent_id.as_str()));
    let logs: Value = get_json(&http, format!("{base}/v1/jobs/{id}/logs?after=0&limit=2")).await;
    assert_eq!(logs["entries"].as_array().unwrap().len(), 2, "{logs}");
    assert_eq!(logs["next"], logs["entries"][1]["id"]);

    // Metrics count what the job moved.
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
    };
    assert_eq!(value("ferry_rows_written_total"), 3000.0);
    assert_eq!(value("ferry_rows_read_total"), 3000.0);
    assert!(value("ferry_wire_bytes_total") > 0.0);
    assert!(value("ferry_compression_ratio") > 1.0);
    assert_eq!(value("ferry_agents_connected"), 1.0);
    assert_eq!(value("ferry_tasks_active"), 0.0);
    assert_eq!(
        value("ferry_task_duration_seconds_count"),
        tasks.len() as f64
    );
    assert!(value("ferry_commit_duration_seconds_count") >= 1.0);
    assert!(metrics.contains("ferry_jobs_ended_total{state=\"succeeded\"} 1"));
    assert_eq!(dst.sql("SELECT count(*) FROM t").trim(), "3000");
    rig.stop().await;
}
