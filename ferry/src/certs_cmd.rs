//! `ferry certs`: the operator's PKI commands.

use crate::out::outln;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ferry_certs::{CertificateAuthority, RevokeSelector, SubjectName, Validity};

#[derive(Args)]
pub struct CertsArgs {
    /// Directory of the CA (ca.pem, ca.key, crl.pem, issued.json).
    #[arg(long, global = true, default_value = "pki")]
    dir: PathBuf,
    #[command(subcommand)]
    command: CertsCommand,
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create a new CA in --dir.
    Init {
        /// Common name of the CA.
        #[arg(long, default_value = "Ferry CA")]
        name: String,
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue the broker's server certificate.
    Server {
        /// Common name (also the file name: <dir>/<name>.pem and .key).
        #[arg(long, default_value = "broker")]
        name: String,
        /// DNS names and IP addresses agents use to reach the broker (repeat or comma-separate).
        #[arg(long = "san", value_delimiter = ',', required = true)]
        sans: Vec<String>,
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
    /// Issue an agent certificate carrying the agent's id and group.
    ///
    /// Refuses an id the CA has already issued and not revoked: the new key
    /// would overwrite <dir>/agents/<id>.key, and two certificates would
    /// carry one identity. Pass --replace to reissue it anyway (a renewal).
    Agent {
        #[arg(long)]
        id: String,
        #[arg(long)]
        group: String,
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Reissue an id that has an unrevoked certificate: its files are
        /// overwritten; the old certificate stays valid until it expires or
        /// you revoke it (`ferry certs revoke --serial ...`).
        #[arg(long)]
        replace: bool,
    },
    /// Revoke certificates; a running broker picks the new list up by itself.
    Revoke {
        /// Serial number (hex) of the certificate.
        #[arg(long, conflicts_with_all = ["agent", "cert"])]
        serial: Option<String>,
        /// Revoke every certificate of this agent id.
        #[arg(long, conflicts_with = "cert")]
        agent: Option<String>,
        /// Revoke the certificate in this PEM file.
        #[arg(long)]
        cert: Option<PathBuf>,
    },
    /// List issued certificates.
    List,
}

pub fn run(args: CertsArgs) -> Result<()> {
    let dir = args.dir;
    match args.command {
        CertsCommand::Init { name, days } => {
            let ca = CertificateAuthority::init(&dir, &name, Validity::days(days))?;
            outln!("created CA `{name}` in {}", ca.dir().display());
            outln!("  certificate:     {}", dir.join("ca.pem").display());
            outln!(
                "  private key:     {} (mode 0600, keep it off the broker if you can)",
                dir.join("ca.key").display()
            );
            outln!("  revocation list: {}", ca.crl_path().display());
        }
        CertsCommand::Server { name, sans, days } => {
            let ca = load(&dir)?;
            let names = sans
                .iter()
                .map(|s| {
                    s.parse::<SubjectName>()
                        .with_context(|| format!("--san `{s}`"))
                })
                .collect::<Result<Vec<_>>>()?;
            let issued = ca.issue_server(&name, &names, Validity::days(days))?;
            let (cert, key) = (
                dir.join(format!("{name}.pem")),
                dir.join(format!("{name}.key")),
            );
            issued.write(&cert, &key)?;
            outln!(
                "issued broker certificate {} (serial {}, valid until {})",
                cert.display(),
                issued.serial,
                utc(issued.not_after)
            );
            outln!("  private key: {} (mode 0600)", key.display());
            outln!("\nbroker config (broker.toml):\n");
            outln!("listen = \"0.0.0.0:7800\"\nadmin_listen = \"127.0.0.1:7801\"\n\n[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\ncrl = \"{}\"",
                abs(&dir.join("ca.pem")), abs(&cert), abs(&key), abs(&ca.crl_path()));
        }
        CertsCommand::Agent {
            id,
            group,
            days,
            replace,
        } => {
            let ca = load(&dir)?;
            let live: Vec<_> = ca
                .ledger()?
                .into_iter()
                .filter(|e| e.agent_id.as_deref() == Some(id.as_str()) && e.revoked_at.is_none())
                .collect();
            if !live.is_empty() && !replace {
                let which = live
                    .iter()
                    .map(|e| {
                        format!(
                            "serial {} in group `{}`, valid until {}",
                            e.serial,
                            e.group.as_deref().unwrap_or("?"),
                            utc(e.not_after)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                bail!(
                    "agent id `{id}` already has a certificate that is not revoked ({which}); \
                     refusing to reissue it, which would overwrite its key. Pass --replace to \
                     renew or move it, or revoke it first (`ferry certs revoke --agent {id}`)"
                );
            }
            let issued = ca.issue_agent(&id, &group, Validity::days(days))?;
            let agents = dir.join("agents");
            std::fs::create_dir_all(&agents)
                .with_context(|| format!("cannot create {}", agents.display()))?;
            let (cert, key) = (
                agents.join(format!("{id}.pem")),
                agents.join(format!("{id}.key")),
            );
            issued.write(&cert, &key)?;
            outln!("issued agent certificate {} for `{id}` in group `{group}` (serial {}, valid until {})", cert.display(), issued.serial, utc(issued.not_after));
            outln!("  private key: {} (mode 0600)", key.display());
            for e in &live {
                outln!(
                    "  replaced: serial {} (group `{}`, valid until {}); it stays valid until then unless you revoke it: ferry certs revoke --serial {}",
                    e.serial,
                    e.group.as_deref().unwrap_or("?"),
                    utc(e.not_after),
                    e.serial
                );
            }
            outln!("\nagent config (agent.toml); copy ca.pem, the certificate and the key to the agent host:\n");
            outln!(
                "broker = \"BROKER_HOST:7800\"\n\n[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"",
                abs(&dir.join("ca.pem")),
                abs(&cert),
                abs(&key)
            );
        }
        CertsCommand::Revoke {
            serial,
            agent,
            cert,
        } => {
            let ca = load(&dir)?;
            let which = match (serial, agent, cert) {
                (Some(s), None, None) => RevokeSelector::Serial(s),
                (None, Some(a), None) => RevokeSelector::AgentId(a),
                (None, None, Some(c)) => RevokeSelector::CertFile(c),
                _ => bail!("give exactly one of --serial, --agent, --cert"),
            };
            let revoked = ca.revoke(&which)?;
            for e in &revoked {
                outln!("revoked serial {} ({})", e.serial, e.common_name);
            }
            outln!(
                "revocation list {} updated; running brokers reload it within seconds",
                ca.crl_path().display()
            );
        }
        CertsCommand::List => {
            let ca = load(&dir)?;
            let entries = ca.ledger()?;
            if entries.is_empty() {
                outln!("no certificates issued yet");
            }
            for e in entries {
                outln!("{}", serde_json::to_string(&e)?);
            }
        }
    }
    Ok(())
}

fn load(dir: &Path) -> Result<CertificateAuthority> {
    CertificateAuthority::load(dir).with_context(|| {
        format!(
            "no usable CA in {} (create one with `ferry certs init --dir {}`)",
            dir.display(),
            dir.display()
        )
    })
}

fn utc(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .unwrap_or_else(|_| t.to_string())
}

fn abs(p: &Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}
