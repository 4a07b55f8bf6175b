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
fn quickstart_syncs_through_the_tunnel_into_lake_and_warehouse() {
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
        text.contains("agent `quickstart-01` (group `local`) dialled out")
            && text.contains("offers: logs (file), shop (sqlite)"),
        "{text}"
    );
    for job in [
        "ods_user_info_d (",
        "ods_user_info_d_lake (",
        "ods_raw_log_d (",
        "ods_raw_log_d_raw (",
    ] {
        assert!(text.contains(job), "{job} missing:\n{text}");
    }
    assert_eq!(
        text.matches("Result                : succeeded").count(),
        4,
        "{text}"
    );
    assert_eq!(
        text.matches("Records written       : 200000").count(),
        2,
        "{text}"
    );
    assert_eq!(
        text.matches("Records written       : 20000\n").count(),
        2,
        "{text}"
    );
    assert!(text.contains("Bytes on the wire     : "), "{text}");
    assert!(!text.contains("standalone, no tunnel"), "{text}");
    // The lake has yesterday's partition, and the job file to read it back works.
    let vars = ferry_engine::config::default_vars()["bizdate"].clone();
    for table in ["ods_raw_log_d", "ods_user_info_d"] {
        let part = dir
            .path()
            .join(format!("lake/{table}/dt={vars}/part-00000.parquet"));
        assert!(part.exists(), "{}", part.display());
    }
    let back = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", "--quiet"])
        .arg(dir.path().join("jobs/lake_to_csv.yaml"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let back_text = String::from_utf8_lossy(&back.stdout);
    assert!(
        back.status.success(),
        "{back_text}{}",
        String::from_utf8_lossy(&back.stderr)
    );
    assert!(
        back_text.contains("Records written       : 200000"),
        "{back_text}"
    );
    assert!(dir.path().join("broker.toml").exists() && dir.path().join("pki/ca.key").exists());
}
