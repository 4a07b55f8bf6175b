//! Network namespaces for cross-network tests.
//!
//! Everything created here is named with a per-process prefix and removed
//! when its guard drops (deleting a namespace removes its veth ends and
//! firewall rules with it). Traffic only goes to addresses of the
//! namespaces we create.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;

/// Whether this process can create namespaces and has the tools.
pub fn available() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("network namespace tests need root".into());
    }
    for tool in ["ip", "iptables"] {
        let ok = Command::new(tool)
            .arg("-V")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            return Err(format!(
                "`{tool}` not found (apt-get install iproute2 iptables)"
            ));
        }
    }
    Ok(())
}

/// Runs a command, panicking with its output on failure.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates namespace `<prefix>-<pid>` with loopback up.
    pub fn new(prefix: &str) -> Self {
        let name = format!("{prefix}-{}", std::process::id());
        // A leftover from a crashed earlier run of the same pid is removed first.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// A `Command` that runs `program` inside the namespace.
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `f` on a thread that has entered this namespace: sockets it
    /// creates live in the namespace.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns on a valid namespace fd affects only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "setns({path}) failed: {}",
                std::io::Error::last_os_error()
            );
            f()
        })
        .join()
        .expect("namespace thread panicked")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Connects two namespaces with a veth pair: `a` gets `addr_a/prefix`,
/// `b` gets `addr_b/prefix`. Removed with the namespaces.
pub fn link(a: &Netns, addr_a: &str, b: &Netns, addr_b: &str, prefix: u8) {
    let pid = std::process::id();
    let (va, vb) = (format!("va{pid}"), format!("vb{pid}"));
    let _ = Command::new("ip").args(["link", "del", &va]).output();
    sh(&[
        "ip", "link", "add", &va, "type", "veth", "peer", "name", &vb,
    ]);
    sh(&["ip", "link", "set", &va, "netns", &a.name]);
    sh(&["ip", "link", "set", &vb, "netns", &b.name]);
    a.exec(&[
        "ip",
        "addr",
        "add",
        &format!("{addr_a}/{prefix}"),
        "dev",
        &va,
    ]);
    b.exec(&[
        "ip",
        "addr",
        "add",
        &format!("{addr_b}/{prefix}"),
        "dev",
        &vb,
    ]);
    a.exec(&["ip", "link", "set", &va, "up"]);
    b.exec(&["ip", "link", "set", &vb, "up"]);
}

/// Makes `ns` refuse every inbound connection attempt: packets of NEW
/// connections (TCP SYNs, first UDP datagrams of a flow) are dropped;
/// replies to connections the namespace opened itself still pass.
pub fn deny_inbound(ns: &Netns) {
    ns.exec(&["iptables", "-A", "INPUT", "-i", "lo", "-j", "ACCEPT"]);
    ns.exec(&[
        "iptables",
        "-A",
        "INPUT",
        "-m",
        "conntrack",
        "--ctstate",
        "ESTABLISHED,RELATED",
        "-j",
        "ACCEPT",
    ]);
    ns.exec(&["iptables", "-A", "INPUT", "-j", "DROP"]);
}
