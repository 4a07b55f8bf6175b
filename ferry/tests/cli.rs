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

/// The run command of the README's "The two commands", as written there.
fn readme_run_command() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md beside the workspace");
    let section = readme
        .split("## The two commands")
        .nth(1)
        .expect("README has a section `## The two commands`");
    let block = section
        .split("```sh")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a ```sh block in that section");
    block
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .expect("a command in the block")
        .to_string()
}

/// The README's run command works as written on a fresh clone: cargo finds
/// the one binary to run (the workspace has three) and it has the
/// subcommand. Run in the debug profile (already built by `cargo test`),
/// with `--help` so it does not start the whole quickstart; the quickstart
/// itself runs in the test below.
#[test]
fn the_readmes_run_command_starts() {
    let cmd = readme_run_command();
    let words: Vec<&str> = cmd.split_whitespace().collect();
    assert_eq!(
        words.first().zip(words.get(1)),
        Some((&"cargo", &"run")),
        "README run command: {cmd}"
    );
    let args: Vec<&str> = words[2..]
        .iter()
        .copied()
        .filter(|w| *w != "--release")
        .chain(["--help"])
        .collect();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut run = Command::new(cargo);
    // As from a user's shell: without the variables cargo sets for this test. Build scripts
    // (ring's, through cc) watch some of them, and a changed one reruns the script and
    // rebuilds everything above it (70 s in CI) instead of reusing what `cargo test` built.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_by_cargo = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_BIN_",
            "CARGO_CRATE_",
        ]
        .iter()
        .any(|p| name.starts_with(p))
            || [
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&name.as_ref());
        if set_by_cargo {
            run.env_remove(name.as_ref());
        }
    }
    let out = run
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .arg("run")
        .args(&args)
        .output()
        .expect("cargo runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "`{cmd}` (debug, with --help) failed:\n{stderr}"
    );
    assert!(stdout.contains("--dir"), "quickstart's help: {stdout}");
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

/// `ferry … | head`: output to a pipe whose reader has gone ends quietly
/// (no panic, no message), and the command still does its work.
#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let certs = |args: &[&str], stdout: std::process::Stdio| {
        Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["certs", "--dir"])
            .arg(&pki)
            .args(args)
            .stdout(stdout)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap()
    };
    let closed = || {
        // The reader is gone before the command starts: its first write
        // fails with EPIPE, every time.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        std::process::Stdio::from(writer)
    };
    assert!(certs(&["init"], std::process::Stdio::null())
        .status
        .success());
    for id in ["a-01", "a-02"] {
        let out = certs(&["agent", "--id", id, "--group", "g"], closed());
        assert!(out.status.success(), "{out:?}");
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = certs(&["list"], closed());
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The certificates were issued although nothing could be printed.
    let listed = certs(&["list"], std::process::Stdio::piped());
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains("a-01") && text.contains("a-02"), "{text}");
}
