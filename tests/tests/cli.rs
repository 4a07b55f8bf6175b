//! The README's first steps, as a new user runs them: create certificates
//! with `ferry certs`, start `ferry broker run` and `ferry agent run` as
//! separate processes on loopback, and see the agent in `ferry broker agents`.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use ferry_tests::proc::{ferry_bin, Proc};

fn ferry(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(ferry_bin())
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run ferry")
}

fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let t = std::net::TcpListener::bind(("127.0.0.1", s.local_addr().unwrap().port()));
    match t {
        Ok(_) => s.local_addr().unwrap().port(),
        Err(_) => free_port(),
    }
}

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
