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

/// Connects `a` and `b` with a veth pair named `dev_a` / `dev_b` (each at
/// most 15 characters), addressed `addr_a/prefix` and `addr_b/prefix`, up.
/// Removed with the namespaces.
pub fn veth(a: &Netns, dev_a: &str, addr_a: &str, b: &Netns, dev_b: &str, addr_b: &str) {
    let _ = Command::new("ip").args(["link", "del", dev_a]).output();
    sh(&[
        "ip", "link", "add", dev_a, "type", "veth", "peer", "name", dev_b,
    ]);
    sh(&["ip", "link", "set", dev_a, "netns", &a.name]);
    sh(&["ip", "link", "set", dev_b, "netns", &b.name]);
    a.exec(&["ip", "addr", "add", addr_a, "dev", dev_a]);
    b.exec(&["ip", "addr", "add", addr_b, "dev", dev_b]);
    a.exec(&["ip", "link", "set", dev_a, "up"]);
    b.exec(&["ip", "link", "set", dev_b, "up"]);
}

/// An IDC behind NAT: `idc` (private addresses) reaches `cloud` only
/// through `router`, which masquerades the IDC's addresses behind its own
/// cloud-side address. `cloud` has no route to the IDC's subnet, and the
/// router forwards nothing new from cloud to idc: nothing in `cloud` can
/// open a connection into `idc`; replies to the IDC's own flows pass.
///
/// ```text
///   idc   192.168.<n>.2/24 ── 192.168.<n>.1  router  198.18.<n>.1 ── 198.18.<n>.2/24  cloud
/// ```
pub struct NatSite {
    pub idc: Netns,
    pub router: Netns,
    pub cloud: Netns,
    /// The agent's address inside the IDC.
    pub idc_ip: String,
    /// The router's public address: what `cloud` sees the agent come from.
    pub public_ip: String,
    /// The broker's address in `cloud`.
    pub cloud_ip: String,
    /// The IDC's veth end (inside `idc`), to re-address or cut.
    pub idc_dev: String,
    /// The router's public veth end (inside `router`), to re-address.
    pub router_dev: String,
}

impl NatSite {
    /// Builds the three namespaces; `n` (1..=250) keeps concurrent sites
    /// of one process apart.
    pub fn new(n: u8) -> Self {
        let pid = std::process::id();
        let idc = Netns::new(&format!("natidc{n}"));
        let router = Netns::new(&format!("natrt{n}"));
        let cloud = Netns::new(&format!("natcl{n}"));
        // veth names: at most 15 characters.
        let tag = format!("{n}{}", pid % 100_000);
        let (idc_dev, r_in) = (format!("ni{tag}"), format!("ri{tag}"));
        let (r_out, cloud_dev) = (format!("ro{tag}"), format!("nc{tag}"));
        let idc_ip = format!("192.168.{n}.2");
        let public_ip = format!("198.18.{n}.1");
        let cloud_ip = format!("198.18.{n}.2");
        veth(
            &idc,
            &idc_dev,
            &format!("{idc_ip}/24"),
            &router,
            &r_in,
            &format!("192.168.{n}.1/24"),
        );
        veth(
            &router,
            &r_out,
            &format!("{public_ip}/24"),
            &cloud,
            &cloud_dev,
            &format!("{cloud_ip}/24"),
        );
        idc.exec(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &format!("192.168.{n}.1"),
        ]);
        router.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        router.exec(&[
            "iptables",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            &r_out,
            "-j",
            "MASQUERADE",
        ]);
        router.exec(&["iptables", "-P", "FORWARD", "DROP"]);
        router.exec(&[
            "iptables", "-A", "FORWARD", "-i", &r_in, "-o", &r_out, "-j", "ACCEPT",
        ]);
        router.exec(&[
            "iptables",
            "-A",
            "FORWARD",
            "-i",
            &r_out,
            "-o",
            &r_in,
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED,RELATED",
            "-j",
            "ACCEPT",
        ]);
        Self {
            idc,
            router,
            cloud,
            idc_ip,
            public_ip,
            cloud_ip,
            idc_dev,
            router_dev: r_out,
        }
    }

    /// Moves the agent's host to `192.168.<n>.<host>` (DHCP, a failover):
    /// deleting the old address takes its routes along, so the default
    /// route is added again. Returns the new address.
    pub fn readdress_idc(&self, host: u8) -> String {
        let new_ip = swap_address(&self.idc, &self.idc_dev, &self.idc_ip, host);
        let gw = format!("{}.1", net_of(&self.idc_ip));
        self.idc
            .exec(&["ip", "route", "add", "default", "via", &gw]);
        new_ip
    }

    /// Gives the router's uplink the public address `198.18.<n>.<host>` (an
    /// ISP re-assigns it): MASQUERADE forgets every mapping of the old one.
    /// Returns the new public address.
    pub fn readdress_public(&self, host: u8) -> String {
        swap_address(&self.router, &self.router_dev, &self.public_ip, host)
    }

    /// Makes the router drop every UDP datagram it would forward, the way
    /// firewalls that allow only TCP out do.
    pub fn block_udp(&self) {
        self.router
            .exec(&["iptables", "-I", "FORWARD", "1", "-p", "udp", "-j", "DROP"]);
    }

    /// UDP datagrams the router dropped after [`block_udp`](Self::block_udp).
    pub fn udp_drops(&self) -> u64 {
        let out = self
            .router
            .exec(&["iptables", "-L", "FORWARD", "-v", "-n", "-x"]);
        // "    12     4000 DROP       17   --  *      *       0.0.0.0/0   0.0.0.0/0"
        out.lines()
            .filter(|l| l.contains("DROP") && (l.contains(" udp ") || l.contains(" 17 ")))
            .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    /// Packets the router refused to forward (new flows from cloud to idc).
    pub fn forward_drops(&self) -> u64 {
        let out = self
            .router
            .exec(&["iptables", "-L", "FORWARD", "-v", "-n", "-x"]);
        // "Chain FORWARD (policy DROP 3 packets, 180 bytes)"
        out.lines()
            .next()
            .and_then(|l| l.split("policy DROP ").nth(1))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

/// The first three octets of an IPv4 address.
fn net_of(ip: &str) -> &str {
    ip.rsplit_once('.').map_or(ip, |(net, _)| net)
}

/// Replaces `old`/24 on `dev` in `ns` with `<net of old>.<host>`/24.
fn swap_address(ns: &Netns, dev: &str, old: &str, host: u8) -> String {
    let new = format!("{}.{host}", net_of(old));
    ns.exec(&["ip", "addr", "del", &format!("{old}/24"), "dev", dev]);
    ns.exec(&["ip", "addr", "add", &format!("{new}/24"), "dev", dev]);
    new
}
