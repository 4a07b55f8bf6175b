//! A PostgreSQL server of a test's own (`initdb` in a temporary directory, run as the
//! `postgres` user on a free port, `wal_level = logical`): a test may restart it or stop it
//! without disturbing the shared server other tests use. Stopped and removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A private PostgreSQL server.
pub struct PgCluster {
    dir: tempfile::TempDir,
    port: u16,
}

/// `/usr/lib/postgresql/<newest>/bin/<tool>`.
fn tool(name: &str) -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    versions.sort();
    versions
        .into_iter()
        .rev()
        .map(|v| v.join("bin").join(name))
        .find(|p| p.exists())
}

/// Runs `tool args…` as the `postgres` user (the server refuses to run as root).
fn as_postgres(tool: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(tool)
        .args(args)
        .output()
        .map_err(|e| format!("runuser {}: {e}", tool.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {args:?}: {}{}",
            tool.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl PgCluster {
    /// A new server, started; `None` ("skip", not under CI) without `initdb` or `runuser`.
    pub fn start() -> Option<Self> {
        let (Some(initdb), Some(_)) = (tool("initdb"), tool("pg_ctl")) else {
            crate::missing("PostgreSQL's initdb and pg_ctl (/usr/lib/postgresql/*/bin)");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("ferry-pg-")
            .tempdir()
            .ok()?;
        let chown = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status();
        if !chown.is_ok_and(|s| s.success()) {
            crate::missing("root, to run a private PostgreSQL server as the postgres user");
            return None;
        }
        let data = dir.path().join("data");
        let data_s = data.display().to_string();
        if let Err(e) = as_postgres(
            &initdb,
            &[
                "-D",
                &data_s,
                "--auth=trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
            ],
        ) {
            crate::missing(&format!("a private PostgreSQL server ({e})"));
            return None;
        }
        let port = crate::proc::free_port();
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             wal_level = logical\nmax_replication_slots = 10\nmax_wal_senders = 10\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n",
            dir.path().display()
        );
        let mut text = std::fs::read_to_string(data.join("postgresql.conf")).ok()?;
        text.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), text).ok()?;
        let c = Self { dir, port };
        if let Err(e) = c.ctl(&["start"]) {
            crate::missing(&format!("a private PostgreSQL server ({e})"));
            return None;
        }
        Some(c)
    }

    fn ctl(&self, args: &[&str]) -> Result<(), String> {
        let pg_ctl = tool("pg_ctl").ok_or("no pg_ctl")?;
        let data = self.dir.path().join("data").display().to_string();
        let log = self.dir.path().join("server.log").display().to_string();
        let mut all = vec!["-D", data.as_str(), "-l", log.as_str(), "-w", "-t", "60"];
        all.extend_from_slice(args);
        as_postgres(&pg_ctl, &all)
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Shuts the server down (fast: connections are ended) and starts it again.
    pub fn restart(&self) {
        self.ctl(&["-m", "fast", "restart"])
            .unwrap_or_else(|e| panic!("restarting the private PostgreSQL server: {e}"));
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.ctl(&["-m", "immediate", "stop"]);
    }
}
