#!/usr/bin/env bash
# bench/fleet.sh — one broker, many agents, beside the bastion peer.
#
# 1. Ferry: tests/tests/fleet.rs with the release broker (FERRY_BIN): AGENTS
#    agents (every fourth over TLS/TCP), each with its own certificate and
#    loopback address, connect at once; the broker's RSS idle and with them,
#    its CPU over 20 s with the agents idle; then SIGKILL, restart, and the
#    arrival times of every agent (p50/p90/max, per second).
# 2. The peer, same run: SSH_SESSIONS reverse tunnels (`ssh -N -R`, what a
#    bastion setup keeps open per site) to one private sshd on loopback;
#    sshd's memory (PSS over all its processes: it forks per connection, and
#    PSS shares the common pages fairly) idle and with the sessions, its CPU
#    over 20 s with them idle, and the time to open them all.
# Prints both and the ratio of cloud-side memory per connection.
#
# Usage: bench/fleet.sh          (env: AGENTS=1000 SSH_SESSIONS=200 SSH_PORT=2322)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
AGENTS=${AGENTS:-1000}
SSH_SESSIONS=${SSH_SESSIONS:-200}
SSH_PORT=${SSH_PORT:-2322}
BENCH_WORK=${BENCH_WORK:-/tmp/ferry-bench}
OUT=$BENCH_WORK/fleet.$(date +%Y%m%dT%H%M%S)
mkdir -p "$OUT"

if ! command -v sshd >/dev/null 2>&1 && [ ! -x /usr/sbin/sshd ]; then
  echo "installing openssh-server" >&2
  apt-get update -qq && apt-get install -y -qq openssh-server openssh-client >/dev/null
fi

echo "== building (release broker, test binary)" >&2
cargo build --release -q -p ferry
cargo test -q -p ferry-tests --test fleet --no-run 2>/dev/null

echo "== Ferry: $AGENTS agents" >&2
FERRY_BIN=$ROOT/target/release/ferry FERRY_FLEET_AGENTS=$AGENTS \
  cargo test -q -p ferry-tests --test fleet -- --nocapture 2>&1 \
  | grep '^fleet:' | tee "$OUT/ferry.txt"

echo "== peer: $SSH_SESSIONS reverse SSH tunnels to one sshd" >&2
D=$OUT/ssh
mkdir -p "$D"; chmod 700 "$D"
ssh-keygen -q -t ed25519 -N '' -f "$D/host"
ssh-keygen -q -t ed25519 -N '' -f "$D/client"
cp "$D/client.pub" "$D/authorized_keys"
mkdir -p /run/sshd
cat > "$D/sshd_config" <<EOF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $D/host
AuthorizedKeysFile $D/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
MaxStartups 2000:30:4000
MaxSessions 10
GatewayPorts no
AllowTcpForwarding yes
LogLevel ERROR
PidFile $D/sshd.pid
EOF
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  [ -f "$D/sshd.pid" ] && kill "$(cat "$D/sshd.pid")" 2>/dev/null
  wait 2>/dev/null || true
}
trap cleanup EXIT
/usr/sbin/sshd -f "$D/sshd_config" -E "$D/sshd.log"
for _ in $(seq 1 50); do [ -s "$D/sshd.pid" ] && break; sleep 0.1; done
MASTER=$(cat "$D/sshd.pid")

descendants() { local c; echo "$1"; for c in $(pgrep -P "$1" 2>/dev/null); do descendants "$c"; done; }
sshd_pids() { descendants "$MASTER"; }
sum_sshd() {  # $1: a file under /proc/PID, $2: awk printing one number from it
  local sum=0 p v
  for p in $(sshd_pids); do
    v=$(awk "$2" "/proc/$p/$1" 2>/dev/null || echo 0)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
pss_kib() { sum_sshd smaps_rollup '/^Pss:/ {print $2}'; }
# utime + stime: fields 14 and 15, 12 and 13 once "pid (comm) " is cut.
cpu_ticks() { sum_sshd stat '{ sub(/.*\) /, ""); split($0, f, " "); print f[12] + f[13] }'; }
established() { ss -Htn state established "( sport = :$SSH_PORT )" | wc -l; }

IDLE=$(pss_kib)
START=$(date +%s.%N)
for i in $(seq 1 "$SSH_SESSIONS"); do
  ssh -N -i "$D/client" -p "$SSH_PORT" \
    -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o ServerAliveInterval=10 -o ExitOnForwardFailure=yes -o LogLevel=ERROR \
    -R "0:127.0.0.1:5432" root@127.0.0.1 &
  PIDS+=($!)
done
for _ in $(seq 1 600); do
  [ "$(established)" -ge "$SSH_SESSIONS" ] && break
  sleep 0.1
done
END=$(date +%s.%N)
UP=$(established)
sleep 5
FULL=$(pss_kib)
T0=$(cpu_ticks); sleep 20; T1=$(cpu_ticks)
HZ=$(getconf CLK_TCK)
{
  printf 'ssh: %d of %d reverse tunnels up in %.1fs\n' "$UP" "$SSH_SESSIONS" "$(echo "$END - $START" | bc)"
  printf 'ssh: sshd PSS %.1f MiB idle, %.1f MiB with %d tunnels (%.1f KiB per tunnel); CPU with them idle: %.2f%% of one core over 20s\n' \
    "$(echo "$IDLE / 1024" | bc -l)" "$(echo "$FULL / 1024" | bc -l)" "$UP" \
    "$(echo "($FULL - $IDLE) / $UP" | bc -l)" "$(echo "($T1 - $T0) * 100 / $HZ / 20" | bc -l)"
} | tee "$OUT/ssh.txt"

FERRY_PER=$(sed -n 's/.*(\([0-9.]*\) KiB per agent).*/\1/p' "$OUT/ferry.txt")
SSH_PER=$(sed -n 's/.*(\([0-9.]*\) KiB per tunnel).*/\1/p' "$OUT/ssh.txt")
if [ -n "$FERRY_PER" ] && [ -n "$SSH_PER" ]; then
  printf 'ratio: cloud-side memory per connection, sshd / Ferry broker: %.1f×\n' \
    "$(echo "$SSH_PER / $FERRY_PER" | bc -l)" | tee "$OUT/ratio.txt"
fi
echo "results: $OUT" >&2
