//! Argument handling of the `ferry` binary. (Having an integration test
//! here also makes `cargo test --workspace` build the binary that the
//! end-to-end tests in `tests/` run.)

use std::process::Command;

fn ferry(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn help_lists_the_subcommands() {
    let out = ferry(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in ["certs", "broker", "agent"] {
        assert!(text.contains(sub), "{text}");
    }
}

#[test]
fn revoke_needs_exactly_one_selector() {
    let dir = tempfile::tempdir().unwrap();
    let init = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["certs", "--dir"])
        .arg(dir.path().join("pki"))
        .arg("init")
        .output()
        .unwrap();
    assert!(init.status.success());
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["certs", "--dir"])
        .arg(dir.path().join("pki"))
        .arg("revoke")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exactly one of --serial, --agent, --cert")
    );
}

#[test]
fn a_bad_san_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["certs", "--dir"])
            .arg(&pki)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(run(&["init"]).status.success());
    let out = run(&["server", "--san", "bad name!"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad name!"),
        "{out:?}"
    );
}

#[test]
fn quickstart_runs_the_tunnel_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["quickstart", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("agent `quickstart-01` (group `local`) connected"),
        "{text}"
    );
    assert!(
        text.contains("broker received and acknowledged 200000 rows"),
        "{text}"
    );
    // The configs it leaves behind point at the kept certificates.
    assert!(dir.path().join("broker.toml").exists() && dir.path().join("pki/ca.key").exists());
}
