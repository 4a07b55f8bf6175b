//! The `ferry` binary and child processes bound to the test's lifetime.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Path of the `ferry` binary built by `cargo test` (the `ferry` package
/// has integration tests, so cargo builds its binary into the same target
/// directory as this test executable).
pub fn ferry_bin() -> PathBuf {
    if let Ok(p) = std::env::var("FERRY_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/ferry
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile> directory");
    let bin = profile_dir.join("ferry");
    assert!(
        bin.exists(),
        "ferry binary not found at {} (run the tests with `cargo test --workspace`, which builds it)",
        bin.display()
    );
    bin
}

/// Runs `ferry ARGS` in `dir` to completion.
pub fn ferry(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(ferry_bin())
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run ferry")
}

/// A port free for both UDP (the broker's QUIC) and TCP (its admin API).
pub fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port");
    let port = s.local_addr().expect("local address").port();
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => port,
        Err(_) => free_port(),
    }
}

/// Resident memory of process `pid`, KiB (0 if it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time process `pid` has used so far, user and system.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) follow ')'.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime, fields 14 and 15 of the line, are 11 and 12 here.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&n| fields.get(n).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / per_sec)
}

/// A child process killed (SIGKILL) when dropped, with its stdout and
/// stderr collected line by line.
pub struct Proc {
    pub name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts `cmd` with piped output.
    pub fn spawn(name: &str, mut cmd: Command) -> Self {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        cmd.env(
            "RUST_LOG",
            std::env::var("FERRY_TEST_LOG").unwrap_or_else(|_| "info".into()),
        );
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        for out in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            let tag = name.to_string();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if std::env::var("FERRY_TEST_ECHO").is_ok() {
                        eprintln!("[{tag}] {line}");
                    }
                    lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
            });
        }
        Self {
            name: name.to_string(),
            child,
            lines,
        }
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }

    /// Waits until a line containing `needle` appears.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.output().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- output of {} ----\n{}\n----", self.name, self.output());
        }
    }
}

/// Runs `ferry run` on `job` (written to `dir/job.yaml`, run in `dir`) with
/// `args` after the file; (success, stdout, stderr).
pub fn ferry_run_job(dir: &std::path::Path, job: &str, args: &[&str]) -> (bool, String, String) {
    let path = dir.join("job.yaml");
    std::fs::write(&path, job).expect("writing the job file");
    let out = std::process::Command::new(ferry_bin())
        .current_dir(dir)
        .arg("run")
        .arg(&path)
        .args(args)
        .output()
        .expect("running ferry");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
