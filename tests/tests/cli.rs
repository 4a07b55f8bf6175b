//! The README's first steps, as a new user runs them: create certificates
//! with `ferry certs`, start `ferry broker run` and `ferry agent run` as
//! separate processes on loopback, and see the agent in `ferry broker agents`.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use ferry_tests::proc::{ferry, ferry_bin, free_port, Proc};

#[test]
fn readme_flow_certs_broker_agent_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ok = |o: std::process::Output| {
        assert!(
            o.status.success(),
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    ok(ferry(dir, &["certs", "init"]));
    // A second init must not overwrite the CA.
    let again = ferry(dir, &["certs", "init"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"),
        "{again:?}"
    );

    ok(ferry(
        dir,
        &["certs", "server", "--san", "127.0.0.1,localhost"],
    ));
    let out = ok(ferry(
        dir,
        &["certs", "agent", "--id", "sh-01", "--group", "idc-sh"],
    ));
    assert!(!out.contains("PRIVATE KEY"), "keys are never printed");
    for key in ["pki/ca.key", "pki/broker.key", "pki/agents/sh-01.key"] {
        let mode = std::fs::metadata(dir.join(key))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }

    let (port, admin) = (free_port(), free_port());
    std::fs::write(
        dir.join("broker.toml"),
        format!("listen = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n[tls]\nca = \"pki/ca.pem\"\ncert = \"pki/broker.pem\"\nkey = \"pki/broker.key\"\ncrl = \"pki/crl.pem\"\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("agent.toml"),
        format!("broker = \"127.0.0.1:{port}\"\n[tls]\nca = \"pki/ca.pem\"\ncert = \"pki/agents/sh-01.pem\"\nkey = \"pki/agents/sh-01.key\"\n"),
    )
    .unwrap();

    let mut cmd = Command::new(ferry_bin());
    cmd.current_dir(dir)
        .args(["broker", "run", "--config", "broker.toml"]);
    let mut broker = Proc::spawn("broker", cmd);
    assert!(broker.wait_for("broker listening", Duration::from_secs(10)));
    let mut cmd = Command::new(ferry_bin());
    cmd.current_dir(dir)
        .args(["agent", "run", "-c", "agent.toml"]);
    let mut agent = Proc::spawn("agent", cmd);
    assert!(
        agent.wait_for("tunnel up", Duration::from_secs(10)),
        "{}",
        agent.output()
    );

    let admin_addr = format!("127.0.0.1:{admin}");
    let start = Instant::now();
    let listing = loop {
        let out = ok(ferry(dir, &["broker", "agents", "--admin", &admin_addr]));
        if out.contains("sh-01") || start.elapsed() > Duration::from_secs(5) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let header = listing.lines().next().unwrap();
    for col in ["AGENT", "GROUP", "ADDRESS", "CONNECTED SINCE", "PROTOCOL"] {
        assert!(header.contains(col), "{listing}");
    }
    assert!(
        listing.contains("sh-01") && listing.contains("idc-sh") && listing.contains("127.0.0.1:"),
        "{listing}"
    );

    // Revoke the agent: the running broker drops it without a restart, and
    // the agent reports why.
    ok(ferry(dir, &["certs", "revoke", "--agent", "sh-01"]));
    assert!(
        broker.wait_for(
            "certificate revoked; session closed",
            Duration::from_secs(10)
        ),
        "{}",
        broker.output()
    );
    assert!(
        agent.wait_for("certificate revoked", Duration::from_secs(10)),
        "{}",
        agent.output()
    );

    // Both stop cleanly on SIGTERM.
    assert!(
        agent
            .terminate(Duration::from_secs(5))
            .map(|s| s.success())
            .unwrap_or(false),
        "{}",
        agent.output()
    );
    assert!(
        broker
            .terminate(Duration::from_secs(5))
            .map(|s| s.success())
            .unwrap_or(false),
        "{}",
        broker.output()
    );
}

/// `ferry certs agent` does not silently reissue an agent id that has a
/// live certificate (it would overwrite the key): it refuses unless told
/// `--replace`, and then says what it replaced.
#[test]
fn certs_agent_refuses_to_reissue_a_live_id_without_replace() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let run = |args: &[&str]| {
        let o = ferry(dir, args);
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert!(run(&["certs", "init"]).0);
    let (ok, first, _) = run(&["certs", "agent", "--id", "sh-01", "--group", "idc-sh"]);
    assert!(ok, "{first}");
    let serial = |text: &str| {
        text.split("(serial ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .expect("serial printed")
            .to_string()
    };
    let first_serial = serial(&first);
    let key = dir.join("pki/agents/sh-01.key");
    let key_before = std::fs::read(&key).unwrap();

    // Same id, same group or another: refused, key untouched.
    for group in ["idc-sh", "evil"] {
        let (ok, out, err) = run(&["certs", "agent", "--id", "sh-01", "--group", group]);
        assert!(!ok, "reissued without --replace: {out}");
        assert!(
            err.contains("agent id `sh-01` already has a certificate")
                && err.contains(&first_serial)
                && err.contains("--replace"),
            "{err}"
        );
        assert_eq!(std::fs::read(&key).unwrap(), key_before, "key overwritten");
    }
    let (_, list, _) = run(&["certs", "list"]);
    assert_eq!(
        list.matches("\"sh-01\"").count(),
        2,
        "one cert issued: {list}"
    );

    // --replace reissues and names what it replaced.
    let (ok, out, err) = run(&[
        "certs",
        "agent",
        "--id",
        "sh-01",
        "--group",
        "idc-sh",
        "--replace",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("replaced: serial {first_serial}")) && out.contains("revoke"),
        "{out}"
    );
    assert_ne!(serial(&out), first_serial);
    assert_ne!(std::fs::read(&key).unwrap(), key_before);

    // Once revoked, the id may be issued again without --replace.
    assert!(run(&["certs", "revoke", "--agent", "sh-01"]).0);
    let (ok, out, err) = run(&["certs", "agent", "--id", "sh-01", "--group", "idc-sh"]);
    assert!(ok, "{err}");
    assert!(!out.contains("replaced:"), "{out}");

    // --help documents the flag.
    let (_, help, _) = run(&["certs", "agent", "--help"]);
    assert!(help.contains("--replace"), "{help}");
}

#[test]
fn config_errors_are_specific() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("agent.toml"),
        "broker = \"b:1\"\n[tls]\ncert = \"c\"\nkey = \"k\"\n",
    )
    .unwrap();
    let out = ferry(dir, &["agent", "run", "-c", "agent.toml"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("agent.toml") && err.contains("missing field `ca`"),
        "{err}"
    );

    std::fs::write(dir.join("broker.toml"), "listen = \"127.0.0.1:0\"\n[tls]\nca = \"nope/ca.pem\"\ncert = \"c\"\nkey = \"k\"\ncrl = \"x\"\n").unwrap();
    let out = ferry(dir, &["broker", "run", "-c", "broker.toml"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope/ca.pem"), "names the missing file: {err}");

    let out = ferry(dir, &["broker", "agents", "--admin", "127.0.0.1:9"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the broker's admin API"));
}

/// `ferry job submit` against `ferry broker run` and `ferry agent run`
/// processes: the job's reader names the agent's data source, the summary
/// shows the bytes that crossed the tunnel, a failing job exits non-zero.
#[test]
fn job_submit_through_broker_and_agent_processes() {
    use ferry_tests::db::{pg_url, PgSchema};
    let Some(src) = PgSchema::new("ferry_cli_src") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_cli_dst") else {
        return;
    };
    src.sql(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 5000) g;",
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for args in [
        &["certs", "init"][..],
        &["certs", "server", "--san", "127.0.0.1"],
        &["certs", "agent", "--id", "cli-01", "--group", "idc-cli"],
    ] {
        assert!(ferry(dir, args).status.success());
    }
    let (port, admin) = (free_port(), free_port());
    // The admin API wants a bearer token from this file.
    std::fs::write(dir.join("admin.token"), "s3cr3t-operator-token-0123\n").unwrap();
    std::fs::write(
        dir.join("broker.toml"),
        format!("listen = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin}\"\nadmin_token_file = \"admin.token\"\n[tls]\nca = \"pki/ca.pem\"\ncert = \"pki/broker.pem\"\nkey = \"pki/broker.key\"\ncrl = \"pki/crl.pem\"\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("agent.toml"),
        format!("broker = \"127.0.0.1:{port}\"\n[tls]\nca = \"pki/ca.pem\"\ncert = \"pki/agents/cli-01.pem\"\nkey = \"pki/agents/cli-01.key\"\n\
                 [sources.shop]\nkind = \"postgres\"\nurl = \"{}\"\n", pg_url()),
    )
    .unwrap();
    let job = |table: &str| {
        format!(
            "reader:\n  name: postgresqlreader\n  parameter:\n    datasource: idc-cli/shop\n    table: {s}.{table}\n    splitPk: id\n\
             writer:\n  name: postgresqlwriter\n  parameter:\n    url: {url}\n    table: {d}.t\n    createTable: true\n\
             setting:\n  speed: {{channel: 2}}\n",
            s = src.name,
            d = dst.name,
            url = pg_url()
        )
    };
    std::fs::write(dir.join("good.yaml"), job("t")).unwrap();
    std::fs::write(dir.join("bad.yaml"), job("missing")).unwrap();

    let mut cmd = Command::new(ferry_bin());
    cmd.current_dir(dir)
        .args(["broker", "run", "-c", "broker.toml"]);
    let broker = Proc::spawn("broker", cmd);
    assert!(broker.wait_for("broker listening", Duration::from_secs(10)));
    let mut cmd = Command::new(ferry_bin());
    cmd.current_dir(dir)
        .args(["agent", "run", "-c", "agent.toml"]);
    let agent = Proc::spawn("agent", cmd);
    let admin = format!("127.0.0.1:{admin}");
    let start = Instant::now();
    loop {
        let out = ferry(
            dir,
            &[
                "broker",
                "agents",
                "--admin",
                &admin,
                "--token-file",
                "admin.token",
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("cli-01") && text.contains("shop") {
            assert!(text.lines().next().unwrap().contains("SOURCES"), "{text}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{text}\n{}",
            agent.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let out = ferry(
        dir,
        &[
            "job",
            "--admin",
            &admin,
            "--token-file",
            "admin.token",
            "submit",
            "good.yaml",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Records written       : 5000"), "{stdout}");
    assert!(
        stdout.contains("Bytes on the wire     : 0.")
            || stdout.contains("Bytes on the wire     : 1"),
        "{stdout}"
    );
    assert!(!stdout.contains("standalone"), "{stdout}");
    assert_eq!(
        dst.sql("SELECT count(*), sum(id) FROM t").trim(),
        "5000|12502500"
    );

    let out = ferry(
        dir,
        &[
            "job",
            "--admin",
            &admin,
            "--token-file",
            "admin.token",
            "submit",
            "bad.yaml",
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("job job-2 failed") && stderr.contains("missing"),
        "{stderr}"
    );

    let out = ferry(
        dir,
        &[
            "job",
            "--admin",
            &admin,
            "--token-file",
            "admin.token",
            "list",
        ],
    );
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.contains("job-1") && list.contains("succeeded"),
        "{list}"
    );
    assert!(list.contains("job-2") && list.contains("failed"), "{list}");
    let out = ferry(
        dir,
        &[
            "job",
            "--admin",
            &admin,
            "--token-file",
            "admin.token",
            "status",
            "job-3",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no job `job-3`"));

    // An operator without the token, or with a wrong one, is refused.
    let out = ferry(dir, &["job", "--admin", &admin, "list"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("401") && stderr.contains("Authorization: Bearer"),
        "{stderr}"
    );
    std::fs::write(dir.join("wrong.token"), "not-the-operator-token").unwrap();
    let out = ferry(
        dir,
        &[
            "job",
            "--admin",
            &admin,
            "--token-file",
            "wrong.token",
            "submit",
            "good.yaml",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wrong admin token"),
        "{out:?}"
    );
    // The token also comes from the environment.
    let out = Command::new(ferry_bin())
        .current_dir(dir)
        .args(["job", "--admin", &admin, "list"])
        .env("FERRY_ADMIN_TOKEN", "s3cr3t-operator-token-0123")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}
