//! The deployment files (Dockerfile, docker-compose.yml, deploy/compose/,
//! deploy/systemd/) cannot run here: there is no Docker daemon or compose,
//! and systemd is not PID 1. This test keeps them correct instead:
//!
//! - compose: the network layout that keeps the tunnel outbound only; every
//!   `ferry` command line is accepted by the real binary; the `certs`
//!   service's script is run for real (twice) with its volumes mapped to
//!   temp dirs, and the broker's and agent's configs are then loaded with the
//!   real loaders from the same layout of mounts, so every file they name
//!   must be one that `certs` made or a bind mount provides; ports agree with
//!   the configs; the example job parses with the engine's parser and names
//!   the agent's group and source.
//! - Dockerfile: two stages, a builder Rust >= the workspace's
//!   `rust-version`, a non-root runtime user, the ferry entrypoint, COPY
//!   sources that exist and are not excluded by .dockerignore.
//! - systemd: `systemd-analyze verify` on each unit (ExecStart pointed at
//!   the built binary), the hardening keys, and ExecStart's arguments.
//!
//! Needs the `ferry` binary (`cargo build -p ferry`, or the workspace test
//! run, builds it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_tests::proc::ferry_bin;
use serde_yaml_ng::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let p = repo().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

// ---------------------------------------------------------------- compose --

struct Compose {
    root: Value,
}

impl Compose {
    fn load() -> Self {
        let root: Value = serde_yaml_ng::from_str(&read("docker-compose.yml"))
            .expect("docker-compose.yml is YAML");
        Compose { root }
    }

    fn services(&self) -> Vec<(String, &Value)> {
        self.root["services"]
            .as_mapping()
            .expect("services is a mapping")
            .iter()
            .map(|(k, v)| (k.as_str().expect("service name").to_string(), v))
            .collect()
    }

    fn service(&self, name: &str) -> &Value {
        let s = &self.root["services"][name];
        assert!(!s.is_null(), "docker-compose.yml has no service `{name}`");
        s
    }

    /// Services whose image is the one built from the Dockerfile.
    fn ferry_services(&self) -> Vec<(String, &Value)> {
        self.services()
            .into_iter()
            .filter(|(_, s)| {
                s["build"].as_str() == Some(".")
                    || s["image"].as_str().is_some_and(|i| i.starts_with("ferry"))
            })
            .collect()
    }

    /// The service whose image starts with `prefix`.
    fn by_image(&self, prefix: &str) -> Vec<(String, &Value)> {
        self.services()
            .into_iter()
            .filter(|(_, s)| s["image"].as_str().is_some_and(|i| i.starts_with(prefix)))
            .collect()
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Null => vec![],
        Value::Sequence(s) => s
            .iter()
            .map(|x| x.as_str().expect("a string").to_string())
            .collect(),
        Value::Mapping(m) => m
            .keys()
            .map(|k| k.as_str().expect("a string").to_string())
            .collect(),
        Value::String(s) => vec![s.clone()],
        other => panic!("expected a list, got {other:?}"),
    }
}

fn networks(s: &Value) -> Vec<String> {
    assert!(
        s["network_mode"].is_null() || s["network_mode"].as_str() == Some("none"),
        "network_mode {:?}: only `none` is allowed (host networking bypasses the layout)",
        s["network_mode"]
    );
    let mut n = strings(&s["networks"]);
    n.sort();
    n
}

/// A published port: (host ip, host port, container port, protocol).
#[derive(Debug)]
struct Port {
    host_ip: Option<String>,
    container: u16,
    proto: String,
}

fn ports(s: &Value) -> Vec<Port> {
    strings(&s["ports"])
        .into_iter()
        .map(|p| {
            let (spec, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
            let parts: Vec<&str> = spec.split(':').collect();
            let container = parts.last().unwrap().parse().expect("container port");
            let host_ip = (parts.len() == 3).then(|| parts[0].to_string());
            Port {
                host_ip,
                container,
                proto: proto.to_string(),
            }
        })
        .collect()
}

/// (source, target, read-only) of each short-syntax volume entry.
fn mounts(s: &Value) -> Vec<(String, String, bool)> {
    strings(&s["volumes"])
        .into_iter()
        .map(|m| {
            let parts: Vec<&str> = m.split(':').collect();
            assert!(
                (2..=3).contains(&parts.len()),
                "volume `{m}`: expected SOURCE:TARGET[:ro]"
            );
            (
                parts[0].to_string(),
                parts[1].to_string(),
                parts.get(2) == Some(&"ro"),
            )
        })
        .collect()
}

fn environment(s: &Value) -> BTreeMap<String, String> {
    match &s["environment"] {
        Value::Null => BTreeMap::new(),
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => serde_yaml_ng::to_string(other).unwrap().trim().to_string(),
                };
                (k.as_str().unwrap().to_string(), v)
            })
            .collect(),
        Value::Sequence(_) => strings(&s["environment"])
            .into_iter()
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((&kv, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        other => panic!("environment: {other:?}"),
    }
}

#[test]
fn compose_networks_keep_the_tunnel_outbound() {
    let c = Compose::load();
    assert_eq!(
        c.root["networks"]["idc"]["internal"].as_bool(),
        Some(true),
        "network `idc` must be `internal: true`"
    );
    assert!(
        c.root["networks"]["cloud"].is_mapping() || c.root["networks"]["cloud"].is_null(),
        "network `cloud` must be declared"
    );
    let dbs: Vec<_> = c
        .by_image("mariadb")
        .into_iter()
        .chain(c.by_image("mysql"))
        .collect();
    assert!(!dbs.is_empty(), "no MariaDB/MySQL service");
    for (name, s) in &dbs {
        assert_eq!(networks(s), ["idc"], "`{name}` must be on `idc` only");
    }
    for (name, s) in c
        .by_image("postgres")
        .into_iter()
        .chain(c.by_image("minio"))
    {
        assert_eq!(networks(s), ["cloud"], "`{name}` must be on `cloud` only");
    }
    assert_eq!(
        networks(c.service("broker")),
        ["cloud"],
        "broker: `cloud` only"
    );
    assert_eq!(
        networks(c.service("agent")),
        ["cloud", "idc"],
        "the agent reads on `idc` and dials out on `cloud`"
    );
    for (name, s) in c.services() {
        let n = networks(s);
        if n.iter().any(|n| n == "idc") {
            assert!(
                ports(s).is_empty() && s["expose"].is_null(),
                "`{name}` is on `idc` and publishes or exposes ports"
            );
            assert!(
                name == "agent" || n == ["idc"],
                "`{name}`: only the agent may join `idc` and another network"
            );
        }
    }
    assert!(
        c.service("agent")["ports"].is_null(),
        "the agent publishes no ports"
    );

    // The broker: its QUIC port (UDP) and TLS/TCP fallback port to the
    // world, the admin API on loopback only, nothing else.
    let broker_toml: ferry_broker::BrokerConfig =
        toml::from_str(&read("deploy/compose/broker.toml")).expect("broker.toml");
    let p = ports(c.service("broker"));
    assert!(
        p.iter()
            .any(|p| p.proto == "udp" && p.container == broker_toml.listen.port()),
        "the broker must publish UDP {} (its `listen`), got {p:?}",
        broker_toml.listen.port()
    );
    let tcp = broker_toml
        .tcp_listen_addr()
        .expect("tcp_listen")
        .expect("the fallback listens")
        .port();
    assert!(
        p.iter().any(|p| p.proto == "tcp" && p.container == tcp),
        "the broker must publish TCP {tcp} (its TLS/TCP fallback), got {p:?}"
    );
    for port in &p {
        if port.container == broker_toml.admin_listen.port() && port.proto == "tcp" {
            assert_eq!(
                port.host_ip.as_deref(),
                Some("127.0.0.1"),
                "admin API published beyond the host's loopback"
            );
        } else {
            assert!(
                (port.proto == "udp" && port.container == broker_toml.listen.port())
                    || (port.proto == "tcp" && port.container == tcp),
                "the broker publishes an unexpected port {port:?}"
            );
        }
    }

    // Every ferry service waits for the certificates.
    for (name, s) in c.ferry_services() {
        if name == "certs" {
            continue;
        }
        assert_eq!(
            s["depends_on"]["certs"]["condition"].as_str(),
            Some("service_completed_successfully"),
            "`{name}` must depend on `certs` with condition service_completed_successfully"
        );
    }
}

/// Runs the binary with `args` and `--help`: clap refuses unknown flags,
/// subcommands and bad values before it prints help.
fn accepted(args: &[String]) -> Result<(), String> {
    let out = Command::new(ferry_bin())
        .args(args)
        .arg("--help")
        .output()
        .expect("run ferry");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn compose_ferry_commands_are_accepted_by_the_binary() {
    // The check itself can fail:
    assert!(accepted(&["agent".into(), "run".into(), "--conf".into(), "x".into()]).is_err());
    let c = Compose::load();
    let mut checked = 0;
    for (name, s) in c.ferry_services() {
        if !s["entrypoint"].is_null() {
            continue; // a shell script: run for real by the certs test below
        }
        let args = strings(&s["command"]);
        assert!(!args.is_empty(), "`{name}` has no command");
        accepted(&args).unwrap_or_else(|e| panic!("`{name}`: ferry {args:?}: {e}"));
        checked += 1;
    }
    assert!(
        checked >= 2,
        "expected the broker's and the agent's commands"
    );
}

/// A temp dir standing in for a service's filesystem: each mount target is
/// a symlink to the bind-mounted repo path or to the named volume's dir.
fn fake_root(tmp: &Path, volumes: &Path, name: &str, s: &Value) -> PathBuf {
    let root = tmp.join("roots").join(name);
    for (source, target, _) in mounts(s) {
        let host = if source.starts_with("./") || source.starts_with('/') {
            let p = repo().join(&source);
            assert!(
                p.exists(),
                "`{name}` mounts {source}, which is not in the repository"
            );
            p
        } else {
            assert!(
                !c_volumes_missing(&source),
                "`{name}` mounts undeclared volume `{source}`"
            );
            let p = volumes.join(&source);
            std::fs::create_dir_all(&p).unwrap();
            p
        };
        let link = root.join(target.trim_start_matches('/'));
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&host, &link).unwrap();
    }
    root
}

fn c_volumes_missing(volume: &str) -> bool {
    Compose::load().root["volumes"].get(volume).is_none()
}

fn in_root(root: &Path, container_path: &str) -> PathBuf {
    assert!(
        container_path.starts_with('/'),
        "{container_path}: not absolute"
    );
    root.join(container_path.trim_start_matches('/'))
}

fn config_arg(args: &[String]) -> String {
    let i = args
        .iter()
        .position(|a| a == "--config" || a == "-c")
        .expect("a --config argument");
    args[i + 1].clone()
}

/// Whether `path` (in a fake root) lies on a writable mount of `s`.
fn on_writable_mount(s: &Value, container_path: &Path) -> bool {
    mounts(s)
        .iter()
        .any(|(_, target, ro)| !ro && container_path.starts_with(target))
}

#[test]
fn compose_certs_make_what_broker_and_agent_load() {
    let c = Compose::load();
    let tmp = tempfile::tempdir().unwrap();
    let volumes = tmp.path().join("volumes");

    // 1. The certs service's script, for real, twice (`up` runs it again).
    let certs = c.service("certs");
    let entry = strings(&certs["entrypoint"]);
    assert_eq!(entry[0], "/bin/sh", "certs: a shell script");
    let raw = strings(&certs["command"]).join("\n");
    assert!(
        !raw.replace("$$", "").contains('$'),
        "certs: a single `$` is interpolated by compose on the host; write `$$`"
    );
    let script = raw.replace("$$", "$");
    let certs_root = fake_root(tmp.path(), &volumes, "certs", certs);
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(ferry_bin(), bin.join("ferry")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for round in 1..=2 {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(&entry[1..]).arg(&script).env("PATH", &path);
        for (k, v) in environment(certs) {
            let v = if v.starts_with('/') {
                in_root(&certs_root, &v).display().to_string()
            } else {
                v
            };
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "certs script, run {round}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ca = std::fs::read_dir(&volumes).unwrap().count();
    assert!(ca >= 3, "certs filled {ca} volumes");

    // 2. The broker's config, loaded like `ferry broker run` does, from the
    //    broker's mounts: every file it names must be there.
    let broker = c.service("broker");
    let broker_root = fake_root(tmp.path(), &volumes, "broker", broker);
    let args = strings(&broker["command"]);
    let broker_cfg_path = in_root(&broker_root, &config_arg(&args));
    let bc = ferry_broker::BrokerConfig::load(&broker_cfg_path).expect("broker.toml loads");
    for f in [&bc.tls.ca, &bc.tls.cert, &bc.tls.key, &bc.tls.crl] {
        assert!(
            f.exists(),
            "broker.toml names {}, not provided",
            f.display()
        );
    }
    let token = bc.admin_token().expect("admin token");
    assert!(
        token.is_some(),
        "admin_listen beyond loopback needs a token"
    );
    let jobs = if bc.jobs_dir.starts_with(&broker_root) {
        Path::new("/").join(bc.jobs_dir.strip_prefix(&broker_root).unwrap())
    } else {
        bc.jobs_dir.clone()
    };
    assert!(
        on_writable_mount(broker, &jobs),
        "jobs_dir {} is not on a writable volume of the broker",
        jobs.display()
    );

    // 3. The agent's config, with the service's environment as the only one.
    let agent = c.service("agent");
    let agent_root = fake_root(tmp.path(), &volumes, "agent", agent);
    let env = environment(agent);
    let args = strings(&agent["command"]);
    let ac = ferry_agent::AgentConfig::load_with_env(
        &in_root(&agent_root, &config_arg(&args)),
        &|name| env.contains_key(name).then(|| "from-compose".to_string()),
    )
    .expect("agent.toml loads with the agent service's environment");
    for f in [&ac.tls.ca, &ac.tls.cert, &ac.tls.key] {
        assert!(f.exists(), "agent.toml names {}, not provided", f.display());
    }
    let (host, port) = ac.broker.rsplit_once(':').unwrap();
    assert_eq!(host, "broker", "the agent dials the broker service");
    assert_eq!(port.parse::<u16>().unwrap(), bc.listen.port());
    let sans: Vec<&str> = script
        .split_whitespace()
        .skip_while(|w| *w != "--san")
        .nth(1)
        .expect("certs: --san")
        .split(',')
        .collect();
    assert!(
        sans.contains(&ac.server_name().unwrap().as_str()),
        "the broker certificate's --san {sans:?} lacks `{host}`"
    );
    let group = script
        .split_whitespace()
        .skip_while(|w| *w != "--group")
        .nth(1)
        .expect("certs: --group")
        .to_string();

    // 4. The example jobs: the engine's parser, reading `<group>/<source>`.
    let dir = repo().join("deploy/compose/jobs");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let mut vars = ferry_engine::config::default_vars();
        vars.insert("dw_password".into(), "x".into());
        let job =
            ferry_engine::Job::load(&p, &vars).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        match &job.reader.location {
            ferry_engine::config::Location::DataSource { group: g, name } => {
                assert_eq!(g, &group, "{}: group", p.display());
                let s = ac
                    .sources
                    .get(name)
                    .unwrap_or_else(|| panic!("{}: agent has no source `{name}`", p.display()));
                assert_eq!(
                    s.kind,
                    job.reader.kind.name(),
                    "{}: reader kind",
                    p.display()
                );
            }
            other => panic!(
                "{}: the reader must name a datasource, got {other:?}",
                p.display()
            ),
        }
        n += 1;
    }
    assert!(n >= 1, "no example job in {}", dir.display());
}

// ------------------------------------------------------------- Dockerfile --

/// Instructions (KEYWORD, arguments) of a Dockerfile: comments and blank
/// lines dropped, `\` continuations joined.
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue; // comments also inside continuations, as Docker does
        }
        if let Some(body) = t.strip_suffix('\\') {
            cur.push_str(body);
            cur.push(' ');
            continue;
        }
        cur.push_str(t);
        let full = std::mem::take(&mut cur);
        let full = full.trim();
        if full.is_empty() {
            continue;
        }
        let (kw, rest) = full.split_once(char::is_whitespace).unwrap_or((full, ""));
        out.push((kw.to_ascii_uppercase(), rest.trim().to_string()));
    }
    assert!(cur.trim().is_empty(), "Dockerfile ends in a continuation");
    out
}

fn version(s: &str) -> (u32, u32) {
    let mut it = s
        .split('.')
        .map(|p| p.parse::<u32>().expect("a version number"));
    (it.next().unwrap(), it.next().unwrap_or(0))
}

/// Whether `.dockerignore` excludes `path` (top-level names, `dir/`,
/// `**/name` and `*` globs within one name).
fn docker_ignored(ignore: &str, path: &str) -> bool {
    fn glob(p: &str, s: &str) -> bool {
        match p.split_once('*') {
            None => p == s,
            Some((a, b)) => {
                s.starts_with(a) && (0..=s.len() - a.len()).any(|i| glob(b, &s[a.len() + i..]))
            }
        }
    }
    ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .any(|pat| {
            assert!(
                !pat.starts_with('!'),
                ".dockerignore: `!` not handled by this check"
            );
            let pat = pat.trim_start_matches('/').trim_end_matches('/');
            let comps: Vec<&str> = path.split('/').collect();
            if let Some(any) = pat.strip_prefix("**/") {
                comps.iter().any(|c| glob(any, c))
            } else {
                let pc: Vec<&str> = pat.split('/').collect();
                pc.len() <= comps.len() && pc.iter().zip(&comps).all(|(p, c)| glob(p, c))
            }
        })
}

#[test]
fn dockerfile_builds_ferry_and_runs_it_unprivileged() {
    let ins = dockerfile_instructions(&read("Dockerfile"));
    let froms: Vec<usize> = ins
        .iter()
        .enumerate()
        .filter(|(_, (k, _))| k == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(froms.len(), 2, "two stages: builder and runtime");
    let builder = &ins[froms[0]..froms[1]];
    let runtime = &ins[froms[1]..];

    // Builder: rust:<version> >= rust-version.
    let from = &builder[0].1;
    let image = from.split_whitespace().next().unwrap();
    let alias = from
        .split_whitespace()
        .skip_while(|w| !w.eq_ignore_ascii_case("as"))
        .nth(1)
        .expect("the builder stage is named (FROM ... AS builder)");
    let tag = image
        .strip_prefix("rust:")
        .expect("builder FROM rust:<version>");
    let tag_version = tag.split('-').next().unwrap();
    let ws: toml::Value = toml::from_str(&read("Cargo.toml")).unwrap();
    let msrv = ws["workspace"]["package"]["rust-version"].as_str().unwrap();
    assert!(
        version(tag_version) >= version(msrv),
        "builder {image} is older than rust-version {msrv}"
    );
    let runs: Vec<&str> = builder
        .iter()
        .filter(|(k, _)| k == "RUN")
        .map(|(_, a)| a.as_str())
        .collect();
    assert!(
        runs.iter().any(|r| r.contains("cargo build")
            && r.contains("--release")
            && r.contains("--locked")
            && r.contains("-p ferry")),
        "builder must run `cargo build --release --locked -p ferry`"
    );

    // Builder COPY sources exist and reach the build context.
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap_or_default();
    let members: Vec<String> = ws["workspace"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect();
    for (_, args) in builder.iter().filter(|(k, _)| k == "COPY" || k == "ADD") {
        let words: Vec<&str> = args
            .split_whitespace()
            .filter(|w| !w.starts_with("--"))
            .collect();
        for src in &words[..words.len() - 1] {
            let p = repo().join(src);
            assert!(p.exists(), "builder COPY {src}: not in the repository");
            let base = src.trim_start_matches("./").trim_end_matches('/');
            let needed: Vec<String> = if base == "." || base.is_empty() {
                ["Cargo.toml", "Cargo.lock"]
                    .iter()
                    .map(|s| s.to_string())
                    .chain(members.iter().cloned())
                    .collect()
            } else {
                vec![base.to_string()]
            };
            for n in needed {
                assert!(
                    !docker_ignored(&ignore, &n),
                    "COPY {src}: `{n}` is needed to build but .dockerignore excludes it"
                );
            }
        }
    }
    // A check that can fail: target/ is ignored, and would be sent otherwise.
    assert!(
        docker_ignored(&ignore, "target"),
        ".dockerignore must exclude target/"
    );

    // Runtime: the binary from the builder, a non-root user, the entrypoint.
    let copy = runtime
        .iter()
        .find(|(k, a)| k == "COPY" && a.contains(&format!("--from={alias}")))
        .expect("runtime copies the binary from the builder");
    assert!(copy.1.ends_with("/usr/local/bin/ferry"), "{copy:?}");
    let user = runtime
        .iter()
        .rev()
        .find(|(k, _)| k == "USER")
        .map(|(_, a)| a.clone())
        .expect("runtime stage sets USER");
    let user_name = user.split(':').next().unwrap();
    assert!(
        user_name != "root" && user_name != "0",
        "runtime runs as root ({user})"
    );
    let entry = runtime
        .iter()
        .rev()
        .find(|(k, _)| k == "ENTRYPOINT")
        .expect("ENTRYPOINT");
    let entry: Vec<String> =
        serde_json::from_str(&entry.1).expect("ENTRYPOINT in exec (JSON) form");
    assert_eq!(entry, ["/usr/local/bin/ferry"]);
}

#[test]
fn dockerfile_parser_joins_continuations() {
    let ins = dockerfile_instructions(
        "# syntax=docker/dockerfile:1\nFROM a AS b\nRUN x \\\n  # note\n  && y\n\nuser 1\n",
    );
    assert_eq!(
        ins,
        [
            ("FROM".into(), "a AS b".into()),
            ("RUN".into(), "x  && y".into()),
            ("USER".into(), "1".into()),
        ]
    );
    assert!(docker_ignored("target/\n", "target"));
    assert!(docker_ignored("**/target/\n", "agent/target"));
    assert!(!docker_ignored("*.log\n", "agent"));
}

// ---------------------------------------------------------------- systemd --

fn unit_keys(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not key=value: {l}"));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

#[test]
fn systemd_units_verify_and_are_hardened() {
    let dir = repo().join("deploy/systemd");
    let units: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "service"))
        .collect();
    assert!(
        units.iter().any(|u| u.ends_with("ferry-agent.service")),
        "deploy/systemd/ferry-agent.service missing"
    );
    let analyze = Path::new("/usr/bin/systemd-analyze");
    let tmp = tempfile::tempdir().unwrap();
    for unit in &units {
        let name = unit.file_name().unwrap().to_str().unwrap();
        let text = std::fs::read_to_string(unit).unwrap();
        let keys = unit_keys(&text);
        let get = |k: &str| -> Vec<&str> {
            keys.iter()
                .filter(|(kk, _)| kk == k)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        for (k, v) in [
            ("Type", "simple"),
            ("User", "ferry"),
            ("Restart", "always"),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("ReadWritePaths", "/var/lib/ferry"),
            ("CapabilityBoundingSet", ""),
        ] {
            assert_eq!(get(k), [v], "{name}: expected exactly {k}={v}");
        }
        assert_eq!(get("RestartSec").len(), 1, "{name}: RestartSec");
        if name == "ferry-agent.service" {
            assert_eq!(get("EnvironmentFile"), ["-/etc/ferry/agent.env"], "{name}");
        }
        let exec = get("ExecStart");
        assert_eq!(exec.len(), 1, "{name}: one ExecStart");
        let words: Vec<String> = exec[0].split_whitespace().map(String::from).collect();
        assert_eq!(words[0], "/usr/local/bin/ferry", "{name}: ExecStart");
        accepted(&words[1..]).unwrap_or_else(|e| panic!("{name}: {}: {e}", exec[0]));
        let cfg = config_arg(&words);
        assert!(cfg.starts_with("/etc/ferry/"), "{name}: config {cfg}");

        if !analyze.exists() {
            assert!(
                !ferry_tests::in_ci(),
                "systemd-analyze is missing (apt-get install systemd)"
            );
            eprintln!("SKIP systemd-analyze verify {name}: systemd-analyze not installed");
            continue;
        }
        let copy = tmp.path().join(name);
        let bin = ferry_bin();
        std::fs::write(
            &copy,
            text.replace(
                "ExecStart=/usr/local/bin/ferry",
                &format!("ExecStart={}", bin.display()),
            ),
        )
        .unwrap();
        let out = Command::new(analyze)
            .arg("verify")
            .arg(&copy)
            .env("SYSTEMD_LOG_LEVEL", "notice")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let ours: Vec<&str> = stderr.lines().filter(|l| l.contains(name)).collect();
        assert!(
            out.status.success() && ours.is_empty(),
            "systemd-analyze verify {name} (status {}):\n{stderr}",
            out.status
        );
    }
}
