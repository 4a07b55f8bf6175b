//! `ferry-impair`: the seeded link-impairment UDP relay of the end-to-end
//! tests (`ferry_tests::impair::ImpairRelay`) as a standalone process, for
//! `bench/wan.sh`.
//!
//! The agent sends to `--listen`; the relay forwards to `--server` (the
//! broker) and passes the broker's answers back. Each direction gets the
//! one-way delay `--delay-ms` (so RTT = 2 × delay) and drops each datagram
//! with probability `--loss`, independently: loss applies to both the data
//! direction (agent → broker) and the ACK direction. The directions have
//! their own RNGs, seeded `--seed` (up) and `--seed + 1` (down).
//!
//! Runs until SIGTERM or SIGINT, then prints its counters as one JSON line
//! on stdout (and a readable line on stderr).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use ferry_tests::impair::{DirStats, ImpairRelay, Impairment};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(
    name = "ferry-impair",
    about = "Seeded UDP relay adding delay and loss"
)]
struct Cli {
    /// Address the clients (agents) send to.
    #[arg(long)]
    listen: SocketAddr,
    /// Address of the server (broker) to relay to.
    #[arg(long)]
    server: SocketAddr,
    /// One-way delay added in each direction, milliseconds (RTT/2).
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Probability (0..1) of dropping a datagram, in each direction.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Seed of the up direction's RNG; the down direction uses seed + 1.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn dir_json(d: &DirStats) -> serde_json::Value {
    serde_json::json!({
        "received": d.received,
        "forwarded": d.forwarded,
        "dropped": d.dropped,
    })
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if !(0.0..=1.0).contains(&cli.loss) {
        bail!("--loss {} is not a probability in 0..1", cli.loss);
    }
    let delay = Duration::from_millis(cli.delay_ms);
    let up = Impairment::delay(delay).loss(cli.loss).seed(cli.seed);
    let down = Impairment::delay(delay)
        .loss(cli.loss)
        .seed(cli.seed.wrapping_add(1));
    let relay = ImpairRelay::start(cli.listen, cli.server, up, down)
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    eprintln!(
        "ferry-impair: {} -> {}, one-way delay {} ms each way, loss {} each way, seed {}",
        relay.addr, cli.server, cli.delay_ms, cli.loss, cli.seed
    );
    let started = Instant::now();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let which = rt.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let which = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        anyhow::Ok(which)
    })?;

    let s = relay.stats();
    drop(relay);
    let line = serde_json::json!({
        "signal": which,
        "seconds": started.elapsed().as_secs_f64(),
        "delay_ms": cli.delay_ms,
        "loss": cli.loss,
        "seed": cli.seed,
        "up": dir_json(&s.up),
        "down": dir_json(&s.down),
    });
    println!("{line}");
    eprintln!(
        "ferry-impair: {which}: up {} in / {} out / {} dropped, down {} in / {} out / {} dropped",
        s.up.received,
        s.up.forwarded,
        s.up.dropped,
        s.down.received,
        s.down.forwarded,
        s.down.dropped
    );
    Ok(())
}
