//! The agent needs no inbound port: it runs in a namespace whose firewall
//! drops every new inbound connection, the broker runs in another, and the
//! tunnel still comes up. The test also shows that the broker's side cannot
//! open a TCP or UDP connection into the agent's side.
//!
//! Topology (names carry the test's pid; all removed on drop):
//!   idc-<pid>  10.231.7.2/30  ── veth ──  10.231.7.1/30  cloud-<pid>
//!   (agent; iptables INPUT: lo + ESTABLISHED,RELATED accepted, rest dropped)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use ferry_tests::netns::{self, Netns};
use ferry_tests::pki::Pki;
use ferry_tests::proc::{ferry_bin, Proc};

const AGENT_IP: &str = "10.231.7.2";
const BROKER_IP: &str = "10.231.7.1";

fn dropped_inbound(idc: &Netns) -> u64 {
    // Packet counter of the final DROP rule in INPUT.
    let out = idc.exec(&["iptables", "-L", "INPUT", "-v", "-n", "-x"]);
    out.lines()
        .filter(|l| l.contains("DROP"))
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn tunnel_comes_up_from_a_namespace_that_accepts_no_inbound_connections() {
    if let Err(why) = netns::available() {
        if ferry_tests::missing(&why) {
            return;
        }
    }
    let idc = Netns::new("idc");
    let cloud = Netns::new("cloud");
    netns::link(&idc, AGENT_IP, &cloud, BROKER_IP, 30);
    netns::deny_inbound(&idc);

    let pki = Pki::new();
    let broker_cert = pki.broker(&[BROKER_IP]);
    let agent_cert = pki.agent("sh-01", "idc-sh");
    let dir = pki.dir.path();
    let broker_toml = dir.join("broker.toml");
    let agent_toml = dir.join("agent.toml");
    std::fs::write(
        &broker_toml,
        pki.broker_toml(&broker_cert, &format!("{BROKER_IP}:7800"), "127.0.0.1:7801"),
    )
    .unwrap();
    std::fs::write(
        &agent_toml,
        pki.agent_toml(&agent_cert, &format!("{BROKER_IP}:7800"), BROKER_IP),
    )
    .unwrap();

    let mut cmd = cloud.command(&ferry_bin());
    cmd.args(["broker", "run", "--config"]).arg(&broker_toml);
    let broker = Proc::spawn("broker", cmd);
    assert!(
        broker.wait_for("broker listening", Duration::from_secs(10)),
        "broker did not start"
    );

    let mut cmd = idc.command(&ferry_bin());
    cmd.args(["agent", "run", "--config"]).arg(&agent_toml);
    let agent = Proc::spawn("agent", cmd);
    assert!(
        agent.wait_for("tunnel up", Duration::from_secs(15)),
        "tunnel did not come up:\n{}",
        agent.output()
    );
    assert!(broker.wait_for("agent connected", Duration::from_secs(5)));

    // The broker lists the agent, seen from the agent's address.
    let list = cloud.exec(&[
        ferry_bin().to_str().unwrap(),
        "broker",
        "agents",
        "--admin",
        "127.0.0.1:7801",
        "--json",
    ]);
    let agents: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(agents[0]["agent_id"], "sh-01", "{list}");
    assert_eq!(agents[0]["group"], "idc-sh");
    let agent_addr: SocketAddr = agents[0]["remote_addr"].as_str().unwrap().parse().unwrap();
    assert_eq!(agent_addr.ip().to_string(), AGENT_IP);

    // Listeners inside idc; each works from inside idc (control), but not from cloud.
    let tcp = idc.run(|| TcpListener::bind("0.0.0.0:0").unwrap());
    let tcp_port = tcp.local_addr().unwrap().port();
    tcp.set_nonblocking(false).unwrap();
    std::thread::spawn(move || {
        while let Ok((mut s, _)) = tcp.accept() {
            let _ = s.write_all(b"hello from idc");
        }
    });
    let udp = idc.run(|| UdpSocket::bind("0.0.0.0:0").unwrap());
    let udp_port = udp.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(&buf[..n], from);
        }
    });
    let tcp_target: SocketAddr = format!("{AGENT_IP}:{tcp_port}").parse().unwrap();
    let udp_target: SocketAddr = format!("{AGENT_IP}:{udp_port}").parse().unwrap();

    let inside = idc.run(move || {
        let mut s = TcpStream::connect_timeout(&tcp_target, Duration::from_secs(2)).ok()?;
        let mut got = String::new();
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.read_to_string(&mut got).ok()?;
        Some(got)
    });
    assert_eq!(
        inside.as_deref(),
        Some("hello from idc"),
        "control: the TCP listener works inside idc"
    );
    let inside_udp = idc.run(move || udp_roundtrip(udp_target));
    assert!(inside_udp, "control: the UDP echo works inside idc");

    let before = dropped_inbound(&idc);
    let tcp_from_cloud =
        cloud.run(move || TcpStream::connect_timeout(&tcp_target, Duration::from_secs(2)));
    let err = tcp_from_cloud.expect_err("cloud must not open a TCP connection into idc");
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::TimedOut,
        "dropped, not refused: {err}"
    );
    assert!(
        !cloud.run(move || udp_roundtrip(udp_target)),
        "cloud must not reach a UDP port in idc"
    );
    // Not even the agent's own QUIC port takes a new flow from cloud.
    assert!(
        !cloud.run(move || udp_roundtrip(agent_addr)),
        "agent's UDP port must not take a new flow"
    );
    assert!(
        dropped_inbound(&idc) > before,
        "the firewall dropped the attempts"
    );

    // And the tunnel is still up.
    let list = cloud.exec(&[
        ferry_bin().to_str().unwrap(),
        "broker",
        "agents",
        "--admin",
        "127.0.0.1:7801",
    ]);
    assert!(
        list.contains("sh-01") && list.contains("idc-sh") && list.contains(AGENT_IP),
        "{list}"
    );
}

fn udp_roundtrip(target: SocketAddr) -> bool {
    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut buf = [0u8; 64];
    for _ in 0..3 {
        let _ = s.send_to(b"ping", target);
        if s.recv_from(&mut buf).is_ok() {
            return true;
        }
    }
    false
}
