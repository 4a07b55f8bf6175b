#!/usr/bin/env bash
# wan.sh [ROWS] — Ferry over a constrained WAN link, beside an SSH tunnel.
#
# Topology (built here, torn down on exit — also on failure or Ctrl-C):
#
#   netns fwan-idc  198.18.7.1/24 [veth fwan-i] ==== [veth fwan-c] 198.18.7.2/24  netns fwan-cloud
#     ferry agent run                                                 ferry broker run
#     psql | ssh -L (peer)                                            sshd (peer)
#                                                                     ferry-impair (relay runs)
#
# Both veth ends shape their egress with
#   tc qdisc add dev <veth> root tbf rate $RATE burst $BURST latency $TBF_LATENCY
# (defaults 20mbit, 32kbit = 4 KB bucket, 400 ms of queue = 1 MB at 20 Mbit/s;
# the kernel has no netem). PostgreSQL stays in the host namespace: everything
# inside the namespaces reaches it through its unix socket in
# /var/run/postgresql (shared filesystem), so the only traffic on the link is
# the transfer itself. No other non-loopback address is ever used.
#
# Runs (each verified by row count + checksum against the source):
#   1. link:  Ferry PG->PG on the shaped link, compression none, zstd:1, zstd:3,
#             zstd:9, over QUIC with BBR (the default; LINK_CONGESTION=cubic for
#             the earlier one); and TLS_TCP_COMPRESSIONS over the TLS-over-TCP
#             fallback (agent `[tcp_fallback] mode = "always"`, kernel TCP).
#             LINK_LOSSES="0 1 3" repeats them with that share of packets
#             dropped in each direction (iptables `statistic --mode random`
#             on each namespace's INPUT from the veth: after the tbf, silent to
#             the sender, like loss on the path; not seeded, unlike the relay;
#             it reaches TCP too, which the UDP relay cannot carry).
#   2. ssh:   the peer: `COPY (select ...) TO STDOUT` | `COPY ... FROM STDIN`
#             run inside fwan-idc, the target reached through
#             `ssh -N -L 127.0.0.1:PORT:/var/run/postgresql/.s.PGSQL.5432`
#             to an sshd in fwan-cloud; plain (Compression=no) and -C
#             (Compression=yes, zlib). COPY text format (COPY_FORMAT): for this
#             table text is smaller than binary both raw (408.9 vs 413.0 MB)
#             and zlib-compressed (132.3 vs 137.1 MB), so it favours the peer.
#   3. relay: Ferry through `ferry-impair` (bench/src/bin/impair.rs, the seeded
#             relay of tests/src/impair.rs) in fwan-cloud: the agent dials the
#             relay on 198.18.7.2:$RELAY_PORT, the relay forwards to the broker.
#             One-way delay RTT/2 in each direction; loss p applied to each
#             direction independently (data and ACKs). The tbf limit stays on.
#             Matrix RELAY_LOSSES x RELAY_RTTS x CONGESTIONS, zstd:1; plus one
#             0 ms / 0 % cubic point (RELAY_BASELINE=1) that shows what the relay
#             itself costs against the direct link.
# Every run is capped (relay runs at CAP, link and SSH runs at LINK_CAP seconds): a run that hits it is cancelled
# (`ferry job cancel`, or the pipe killed) and reported as "> cap" with the rows
# the target holds, which gives a lower bound of rows/s.
# Broker and agent are restarted for each run, so their peak RSS (VmHWM) is that run's.
#
# Needs root and: iproute2 (ip, tc), iptables, openssh-server + openssh-client,
# postgresql-client, jq; install with `apt-get install -y iproute2 iptables
# openssh-server openssh-client postgresql-client jq`. The data comes from the shared harness (SHARED_BENCH,
# default ../shared/bench next to the main checkout; gen_data.sh makes the table).
#
# Env: RUNS=1  CAP=240  LINK_CAP=900  RATE=20mbit  BURST=32kbit  TBF_LATENCY=400ms  CHANNEL=2
#      LINK_ROWS=ROWS  RELAY_ROWS=ROWS  (fewer rows: the runs read `id <= N`)
#      COMPRESSIONS="none zstd:1 zstd:3 zstd:9"  SSH_MODES="plain compressed"
#      RELAY_LOSSES="0 1 3" (percent)  RELAY_RTTS="50 150" (ms)
#      CONGESTIONS="cubic bbr"  LINK_CONGESTION=bbr  TLS_TCP_COMPRESSIONS="" (e.g. "zstd:1")  LINK_LOSSES="0" (percent)
#      TCP_CONGESTION= (the kernel's TCP congestion control in both namespaces, for
#      TLS/TCP and SSH runs; default: the host's; a namespace may only pick one
#      listed in the host's net.ipv4.tcp_allowed_congestion_control)  RELAY_COMPRESSION=zstd:1  RELAY_BASELINE=1  SEED=1
#      COPY_FORMAT=text|binary  SKIP_LINK=1  SKIP_SSH=1  SKIP_RELAY=1
#      TRANSPORT="..." (extra TOML lines for both sides' [transport])  NO_BUILD=1 (use the built binaries)
# Output: $BENCH_WORK/ferry-wan.ROWS.<time>/{runs.tsv,summary.txt,logs}
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
if [ -n "${SHARED_BENCH:-}" ]; then
  SHARED=$SHARED_BENCH
elif [ -d "$ROOT/../shared/bench" ]; then
  SHARED=$ROOT/../shared/bench
else
  # A git worktree: ../shared next to the main checkout.
  common=$(cd "$ROOT" && git rev-parse --path-format=absolute --git-common-dir 2>/dev/null)
  SHARED=$(dirname "${common:-$ROOT/.git}")/../shared/bench
fi
[ -f "$SHARED/lib/common.sh" ] || { echo "shared bench harness not found at $SHARED; set SHARED_BENCH" >&2; exit 1; }
# shellcheck disable=SC1091
. "$SHARED/lib/common.sh"
# shellcheck disable=SC1091
. "$HERE/lib.sh"

ROWS=${1:-1000000}
RUNS=${RUNS:-1}
CAP=${CAP:-240}            # relay runs
LINK_CAP=${LINK_CAP:-900}  # link and SSH runs (uncompressed ones take ~3 min at 20 Mbit/s)
RATE=${RATE:-20mbit}
BURST=${BURST:-32kbit}
TBF_LATENCY=${TBF_LATENCY:-400ms}
CHANNEL=${CHANNEL:-2}
LINK_ROWS=${LINK_ROWS:-$ROWS}
RELAY_ROWS=${RELAY_ROWS:-$ROWS}
COMPRESSIONS=${COMPRESSIONS-none zstd:1 zstd:3 zstd:9}  # may be empty: TLS_TCP_COMPRESSIONS only
TLS_TCP_COMPRESSIONS=${TLS_TCP_COMPRESSIONS:-}
LINK_LOSSES=${LINK_LOSSES:-0}
LINK_CONGESTION=${LINK_CONGESTION:-bbr}
SSH_MODES=${SSH_MODES:-plain compressed}
RELAY_LOSSES=${RELAY_LOSSES:-0 1 3}
RELAY_RTTS=${RELAY_RTTS:-50 150}
CONGESTIONS=${CONGESTIONS:-cubic bbr}
RELAY_COMPRESSION=${RELAY_COMPRESSION:-zstd:1}
RELAY_BASELINE=${RELAY_BASELINE:-1}
SEED=${SEED:-1}
COPY_FORMAT=${COPY_FORMAT:-text}
QUIC_PORT=${QUIC_PORT:-17910}
ADMIN_PORT=${ADMIN_PORT:-17911}
RELAY_PORT=${RELAY_PORT:-17920}
FWD_PORT=${FWD_PORT:-15432}

NS_IDC=fwan-idc
NS_CLOUD=fwan-cloud
DEV_IDC=fwan-i
DEV_CLOUD=fwan-c
IP_IDC=198.18.7.1
IP_CLOUD=198.18.7.2
PGSOCK=/var/run/postgresql
PGURL_SRC="postgres://postgres@localhost/$SRC_PG_DB?host=$PGSOCK"
PGURL_DST="postgres://postgres@localhost/$DST_PG_DB?host=$PGSOCK"

[ "$(id -u)" = 0 ] || { echo "wan.sh needs root (network namespaces, tc)" >&2; exit 1; }
for tool in ip tc iptables ssh /usr/sbin/sshd ssh-keygen psql jq; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y iproute2 iptables openssh-server openssh-client postgresql-client jq" >&2; exit 1; }
done
if [ "$LINK_ROWS" -gt "$ROWS" ] || [ "$RELAY_ROWS" -gt "$ROWS" ]; then
  echo "LINK_ROWS/RELAY_ROWS must not exceed ROWS" >&2; exit 1
fi

if [ "${NO_BUILD:-0}" != 1 ]; then
  # Two invocations, so `ferry` is built with its own features (the same binary as e2e.sh's).
  (cd "$ROOT" && cargo build --release -q -p ferry && cargo build --release -q -p ferry-bench --bin ferry-impair) \
    || { echo "release build failed" >&2; exit 1; }
fi
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
FERRY=$TARGET/release/ferry
IMPAIR=$TARGET/release/ferry-impair

"$SHARED/gen_data.sh" "$ROWS" >&2 || { echo "gen_data.sh failed" >&2; exit 1; }
# shellcheck disable=SC1090
. "$BENCH_WORK/meta.$ROWS.env"   # ROWS, DATA_BYTES, SRC_CHECKSUM
pg_ensure_db "$DST_PG_DB"
TSV=$BENCH_WORK/bench_orders.$ROWS.tsv

# WAN_OUT=<an earlier work dir>: add this invocation's runs to its runs.tsv (e.g.
# SKIP_RELAY=1 first, SKIP_LINK=1 SKIP_SSH=1 later); the summary covers all of them.
OUT=${WAN_OUT:-$BENCH_WORK/ferry-wan.$ROWS.$(date +%Y%m%dT%H%M%S)}
mkdir -p "$OUT/logs"
cd "$OUT" || exit 1

# ---------------- cleanup: our PIDs, then the namespaces ----------------
PIDS=()
MADE_PRIVSEP=0
cleanup() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[i]}" 2>/dev/null
  done
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    wait "${PIDS[i]}" 2>/dev/null
  done
  ip netns del "$NS_IDC" 2>/dev/null
  ip netns del "$NS_CLOUD" 2>/dev/null
  if [ "$MADE_PRIVSEP" = 1 ]; then rmdir /run/sshd 2>/dev/null; fi
  log "cleaned up (pids: ${PIDS[*]:-none}; namespaces $NS_IDC $NS_CLOUD removed)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
forget() {  # drop a PID we stopped ourselves, so cleanup never signals a reused PID
  local i keep=()
  for i in "${PIDS[@]}"; do [ "$i" = "$1" ] || keep+=("$i"); done
  PIDS=("${keep[@]}")
}
stop() {  # TERM, then KILL after 5 s; reap
  local p=$1
  kill -TERM "$p" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null
  wait "$p" 2>/dev/null
  forget "$p"
}

# ---------------- namespaces, veth, tbf ----------------
for ns in "$NS_IDC" "$NS_CLOUD"; do
  if ip netns list | grep -qw "$ns"; then log "removing leftover namespace $ns"; ip netns del "$ns"; fi
  ip netns add "$ns" || exit 1
  ip -n "$ns" link set lo up
done
ip link del "$DEV_IDC" 2>/dev/null
ip link add "$DEV_IDC" type veth peer name "$DEV_CLOUD" || exit 1
ip link set "$DEV_IDC" netns "$NS_IDC"
ip link set "$DEV_CLOUD" netns "$NS_CLOUD"
ip -n "$NS_IDC" addr add "$IP_IDC/24" dev "$DEV_IDC"
ip -n "$NS_CLOUD" addr add "$IP_CLOUD/24" dev "$DEV_CLOUD"
ip -n "$NS_IDC" link set "$DEV_IDC" up
ip -n "$NS_CLOUD" link set "$DEV_CLOUD" up
ip netns exec "$NS_IDC" tc qdisc add dev "$DEV_IDC" root tbf rate "$RATE" burst "$BURST" latency "$TBF_LATENCY" || exit 1
ip netns exec "$NS_CLOUD" tc qdisc add dev "$DEV_CLOUD" root tbf rate "$RATE" burst "$BURST" latency "$TBF_LATENCY" || exit 1
if [ -n "${TCP_CONGESTION:-}" ]; then
  for ns in "$NS_IDC" "$NS_CLOUD"; do
    ip netns exec "$ns" sysctl -q -w "net.ipv4.tcp_congestion_control=$TCP_CONGESTION" || exit 1
  done
fi
ip -n "$NS_IDC" route get "$IP_CLOUD" >/dev/null || { echo "no route $IP_IDC -> $IP_CLOUD" >&2; exit 1; }
log "link: $NS_IDC $IP_IDC <-> $NS_CLOUD $IP_CLOUD, tbf rate $RATE burst $BURST latency $TBF_LATENCY both egresses"
# Foreground helpers only: a function run in the background is a subshell, and
# its $! would not be the process (`ip netns exec` itself execs, so $! of a
# direct `ip netns exec ... &` is the program's PID, which stop() needs).
in_idc() { ip netns exec "$NS_IDC" "$@"; }
in_cloud() { ip netns exec "$NS_CLOUD" "$@"; }
link_bytes() {  # bytes that crossed the link so far, both directions (idc veth tx + rx)
  ip -n "$NS_IDC" -j -s link show "$DEV_IDC" | jq '.[0].stats64.tx.bytes + .[0].stats64.rx.bytes'
}
link_loss() {  # $1 percent of the packets each namespace receives from the veth to drop (0: none)
  local pair ns dev p
  for pair in "$NS_IDC:$DEV_IDC" "$NS_CLOUD:$DEV_CLOUD"; do
    ns=${pair%%:*}; dev=${pair#*:}
    ip netns exec "$ns" iptables -F INPUT || return 1
    if [ "$1" != 0 ]; then
      p=$(awk -v p="$1" 'BEGIN{printf "%g", p/100}')
      ip netns exec "$ns" iptables -A INPUT -i "$dev" -m statistic --mode random --probability "$p" -j DROP || return 1
    fi
  done
}
qdisc_drops() {  # packets tbf dropped so far, both ends
  local a b
  a=$(ip netns exec "$NS_IDC" tc -s -j qdisc show dev "$DEV_IDC" | jq '[.[] | select(.kind == "tbf") | .drops] | add // 0')
  b=$(ip netns exec "$NS_CLOUD" tc -s -j qdisc show dev "$DEV_CLOUD" | jq '[.[] | select(.kind == "tbf") | .drops] | add // 0')
  echo $((a + b))
}

# ---------------- PKI, agent/broker configs, jobs ----------------
ferry_pki "$IP_CLOUD,127.0.0.1,localhost" || { echo "ferry certs failed" >&2; exit 1; }
write_configs() {  # $1 broker address the agent dials, $2 congestion, $3 jobs dir, $4 quic|tls-tcp
  local fallback=""
  [ "$4" = tls-tcp ] && fallback='[tcp_fallback]
mode = "always"'
  ferry_configs "$IP_CLOUD:$QUIC_PORT" "$1" "$3" "congestion = \"$2\"
${TRANSPORT:-}" "$fallback
[sources.pg]
kind = \"postgres\"
url = \"$PGURL_SRC\""
}
write_job() {  # $1 rows: the job reads id <= rows when fewer than the table's
  local where=""
  [ "$1" -lt "$ROWS" ] && where="id <= $1"
  ferry_job "job.$1.yaml" postgresqlreader bench/pg "$PGURL_DST" "$CHANNEL" "$where"
}

# Source checksum and COPY-text bytes of the first N rows (ids are 1..ROWS).
declare -A SRC_SUM SRC_BYTES
source_facts() {
  local n=$1
  [ -n "${SRC_SUM[$n]:-}" ] && return 0
  if [ "$n" = "$ROWS" ]; then
    SRC_SUM[$n]=$SRC_CHECKSUM; SRC_BYTES[$n]=$DATA_BYTES
  else
    SRC_SUM[$n]=$($PSQL -d "$SRC_PG_DB" -Atc "$PG_CHECKSUM_SQL where id <= $n")
    SRC_BYTES[$n]=$(head -n "$n" "$TSV" | wc -c)
  fi
  write_job "$n"
}

verify() {  # $1 expected rows -> ok | count=N | checksum_mismatch
  local n s
  n=$(pg_count "$DST_PG_DB"); s=$(pg_checksum "$DST_PG_DB" 2>&1 | head -1)
  if [ "$n" != "$1" ]; then echo "count=$n"
  elif [ "$s" != "${SRC_SUM[$1]}" ]; then echo "checksum_mismatch"
  else echo ok; fi
}
hwm_kib() { awk '/^VmHWM:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14+$15)/t}' "/proc/$1/stat" 2>/dev/null || echo 0; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", b-a}'; }
wait_listen() {  # $1 namespace, $2 -t|-u, $3 port
  local i
  for i in $(seq 100); do
    ip netns exec "$1" ss -Hln "$2" "sport = :$3" | grep -q . && return 0
    sleep 0.1
  done
  echo "nothing listening on port $3 in $1" >&2; return 1
}

RUNS_TSV=$OUT/runs.tsv
[ -s "$RUNS_TSV" ] || printf 'section\tpath\tcompression\tcongestion\trtt_ms\tloss_pct\trun\trows_expected\trows_written\tseconds\twire_bytes\tlink_bytes\ttbf_drops\tagent_rss_kib\tbroker_rss_kib\tagent_cpu_s\tbroker_cpu_s\trelay_dropped_up\trelay_dropped_down\tstatus\n' > "$RUNS_TSV"
record() { local IFS=$'\t'; printf '%s\n' "$*" >> "$RUNS_TSV"; }

# ---------------- one Ferry run ----------------
# $1 section, $2 path label, $3 rows, $4 compression, $5 congestion, $6 rtt ms, $7 loss %, $8 run
ferry_run() {
  local section=$1 path=$2 n=$3 comp=$4 cc=$5 rtt=$6 loss=$7 run=$8
  local tag dial rpid="" bpid apid t0 t1 rc status secs wire l0 l1 d0 d1 arss brss acpu bcpu id written
  local rdu=0 rdd=0 lossp cap=$LINK_CAP transport
  [ "$section" = relay ] && cap=$CAP
  tag="$section.${path// /_}.${comp/:/}.$cc.${rtt}ms.${loss}pct.$run"
  source_facts "$n"
  prepare_target
  dial="$IP_CLOUD:$QUIC_PORT"
  if [ "$section" = relay ]; then
    dial="$IP_CLOUD:$RELAY_PORT"
    lossp=$(awk -v p="$loss" 'BEGIN{printf "%g", p/100}')
    ip netns exec "$NS_CLOUD" "$IMPAIR" --listen "$IP_CLOUD:$RELAY_PORT" --server "$IP_CLOUD:$QUIC_PORT" \
      --delay-ms $((rtt / 2)) --loss "$lossp" --seed "$SEED" > "logs/relay.$tag.json" 2> "logs/relay.$tag.log" &
    rpid=$!; PIDS+=("$rpid")
    wait_listen "$NS_CLOUD" -u "$RELAY_PORT" || return 1
  fi
  transport=quic
  case $path in "ferry tls-tcp"*) transport=tls-tcp ;; esac
  write_configs "$dial" "$cc" "jobs/$tag" "$transport"
  cp broker.toml "logs/broker.$tag.toml"; cp agent.toml "logs/agent.$tag.toml"
  ip netns exec "$NS_CLOUD" "$FERRY" broker run -c broker.toml > "logs/broker.$tag.log" 2>&1 &
  bpid=$!; PIDS+=("$bpid")
  wait_listen "$NS_CLOUD" -t "$ADMIN_PORT" || return 1
  ip netns exec "$NS_IDC" "$FERRY" agent run -c agent.toml > "logs/agent.$tag.log" 2>&1 &
  apid=$!; PIDS+=("$apid")
  for _ in $(seq 200); do
    in_cloud "$FERRY" broker agents --admin "127.0.0.1:$ADMIN_PORT" 2>/dev/null | grep -q "bench-01.*pg" && break
    sleep 0.1
  done
  l0=$(link_bytes); d0=$(qdisc_drops)
  t0=$(now)
  timeout -s INT "$cap" ip netns exec "$NS_CLOUD" "$FERRY" job --admin "127.0.0.1:$ADMIN_PORT" submit --quiet \
    --compression "$comp" "job.$n.yaml" > "logs/summary.$tag.txt" 2> "logs/submit.$tag.err"
  rc=$?
  t1=$(now)
  id=$(sed -n 's/^submitted \([^ ]*\) to .*/\1/p' "logs/submit.$tag.err" | head -1)
  if [ "$rc" = 124 ] && [ -n "$id" ]; then
    in_cloud "$FERRY" job --admin "127.0.0.1:$ADMIN_PORT" cancel "$id" >/dev/null 2>&1
    for _ in $(seq 120); do
      [ "$(in_cloud "$FERRY" job --admin "127.0.0.1:$ADMIN_PORT" status "$id" --json 2>/dev/null | jq -r .state)" = running ] || break
      sleep 0.5
    done
  fi
  l1=$(link_bytes); d1=$(qdisc_drops)
  wire=0
  if [ -n "$id" ]; then
    in_cloud "$FERRY" job --admin "127.0.0.1:$ADMIN_PORT" status "$id" --json > "logs/status.$tag.json" 2>/dev/null
    wire=$(jq -r '(.summary.wire_bytes // .progress.wire_bytes) // 0' "logs/status.$tag.json" 2>/dev/null || echo 0)
  fi
  arss=$(hwm_kib "$apid"); brss=$(hwm_kib "$bpid"); acpu=$(cpu_s "$apid"); bcpu=$(cpu_s "$bpid")
  stop "$apid"; stop "$bpid"
  if [ -n "$rpid" ]; then
    stop "$rpid"
    rdu=$(jq -r '.up.dropped' "logs/relay.$tag.json" 2>/dev/null || echo 0)
    rdd=$(jq -r '.down.dropped' "logs/relay.$tag.json" 2>/dev/null || echo 0)
  fi
  secs=$(elapsed "$t0" "$t1")
  if [ "$rc" = 124 ]; then
    written=$(pg_count "$DST_PG_DB"); status=capped
  elif [ "$rc" != 0 ]; then
    written=$(pg_count "$DST_PG_DB")
    status="failed:$(tail -n1 "logs/submit.$tag.err" | tr '\t ' '__' | cut -c1-100)"
  else
    written=$(pg_count "$DST_PG_DB"); status=$(verify "$n")
  fi
  if [ "$transport" = tls-tcp ] && ! grep -q "tunnel up over TLS/TCP" "logs/agent.$tag.log"; then
    status="failed:not_over_tls_tcp"
  fi
  # Over TLS/TCP the kernel's TCP congestion control applies, not [transport]'s.
  [ "$transport" = tls-tcp ] && cc="tcp-$(ip netns exec "$NS_IDC" sysctl -n net.ipv4.tcp_congestion_control)"
  record "$section" "$path" "$comp" "$cc" "$rtt" "$loss" "$run" "$n" "$written" "$secs" "${wire:-0}" \
    $((l1 - l0)) $((d1 - d0)) "$arss" "$brss" "$acpu" "$bcpu" "${rdu:-0}" "${rdd:-0}" "$status"
  log "$tag: ${secs}s rows=$written/$n wire=${wire}B link=$((l1 - l0))B agent=${arss}KiB broker=${brss}KiB relay_drops=${rdu:-0}/${rdd:-0} $status"
}

# ---------------- one SSH-tunnel run ----------------
SSHD_PID=""
start_sshd() {
  local d=$OUT/ssh
  mkdir -p "$d"; chmod 700 "$d"
  [ -f "$d/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C ferry-wan-host -f "$d/host_ed25519"
  [ -f "$d/client_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C ferry-wan-client -f "$d/client_ed25519"
  cp "$d/client_ed25519.pub" "$d/authorized_keys"; chmod 600 "$d/authorized_keys"
  cat > "$d/sshd_config" <<EOF
# private sshd for ferry wan bench: in $NS_CLOUD on $IP_CLOUD only, key auth only
ListenAddress $IP_CLOUD
Port 22
HostKey $d/host_ed25519
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
AllowTcpForwarding local
AllowStreamLocalForwarding local
GatewayPorts no
X11Forwarding no
PermitTunnel no
Compression yes
UseDNS no
LogLevel ERROR
EOF
  if [ ! -d /run/sshd ]; then mkdir -p /run/sshd && chmod 755 /run/sshd && MADE_PRIVSEP=1; fi
  /usr/sbin/sshd -t -f "$d/sshd_config" || return 1
  ip netns exec "$NS_CLOUD" /usr/sbin/sshd -D -f "$d/sshd_config" -E "$d/sshd.log" &
  SSHD_PID=$!; PIDS+=("$SSHD_PID")
  wait_listen "$NS_CLOUD" -t 22 || return 1
  log "sshd pid $SSHD_PID on $IP_CLOUD:22 in $NS_CLOUD ($(ssh -V 2>&1))"
}
# $1 mode plain|compressed, $2 rows, $3 run
ssh_run() {
  local mode=$1 n=$2 run=$3 d=$OUT/ssh tag comp fpid t0 t1 rc status secs l0 l1 d0 d1 rss cpu fmt="" where="" written
  tag="ssh.$mode.$run"
  comp=no; [ "$mode" = compressed ] && comp=yes
  [ "$COPY_FORMAT" = binary ] && fmt="with (format binary)"
  [ "$n" -lt "$ROWS" ] && where="where id <= $n"
  source_facts "$n"
  prepare_target
  ip netns exec "$NS_IDC" ssh -F /dev/null -i "$d/client_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile="$d/known_hosts" -o LogLevel=ERROR \
    -o Compression="$comp" -o ExitOnForwardFailure=yes \
    -N -L "127.0.0.1:$FWD_PORT:$PGSOCK/.s.PGSQL.5432" "root@$IP_CLOUD" 2> "logs/ssh.$tag.err" &
  fpid=$!; PIDS+=("$fpid")
  wait_listen "$NS_IDC" -t "$FWD_PORT" || return 1
  l0=$(link_bytes); d0=$(qdisc_drops)
  t0=$(now)
  # Source over the unix socket (host namespace's server), target through the tunnel.
  # shellcheck disable=SC2016  # the inner script expands its own positional args
  timeout "$LINK_CAP" ip netns exec "$NS_IDC" bash -c '
    psql -X -q -v ON_ERROR_STOP=1 -h "$1" -U postgres -d "$2" -c "COPY (select $3 from $4 $5) TO STDOUT $6" |
    psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$7" -U postgres -d "$8" -c "COPY $4 ($3) FROM STDIN $6"' \
    copy "$PGSOCK" "$SRC_PG_DB" "$COLS" "$TABLE" "$where" "$fmt" "$FWD_PORT" "$DST_PG_DB" > "logs/copy.$tag.log" 2>&1
  rc=$?
  t1=$(now)
  l1=$(link_bytes); d1=$(qdisc_drops)
  rss=$(hwm_kib "$fpid"); cpu=$(cpu_s "$fpid")
  stop "$fpid"
  secs=$(elapsed "$t0" "$t1")
  written=$(pg_count "$DST_PG_DB")
  if [ "$rc" = 124 ]; then status=capped
  elif [ "$rc" != 0 ]; then status="failed:exit=$rc"
  else status=$(verify "$n"); fi
  record ssh "ssh -L$([ "$mode" = compressed ] && echo ' -C')" "ssh:$([ "$mode" = compressed ] && echo zlib || echo none)" "tcp-$(ip netns exec "$NS_IDC" sysctl -n net.ipv4.tcp_congestion_control)" 0 0 "$run" "$n" "$written" "$secs" 0 \
    $((l1 - l0)) $((d1 - d0)) "$rss" 0 "$cpu" 0 0 0 "$status"
  log "$tag: ${secs}s rows=$written/$n link=$((l1 - l0))B ssh_client=${rss}KiB $status"
}

log "ferry wan: rows=$ROWS link_rows=$LINK_ROWS relay_rows=$RELAY_ROWS runs=$RUNS cap=${CAP}s link_cap=${LINK_CAP}s channel=$CHANNEL out=$OUT"
for run in $(seq 1 "$RUNS"); do
  if [ "${SKIP_LINK:-0}" != 1 ]; then
    for loss in $LINK_LOSSES; do
      link_loss "$loss" || { echo "iptables failed: apt-get install -y iptables" >&2; exit 1; }
      suffix=""
      [ "$loss" != 0 ] && suffix=" ($loss% loss)"
      for comp in $COMPRESSIONS; do
        ferry_run link "ferry direct$suffix" "$LINK_ROWS" "$comp" "$LINK_CONGESTION" 0 "$loss" "$run"
      done
      for comp in $TLS_TCP_COMPRESSIONS; do
        ferry_run link "ferry tls-tcp$suffix" "$LINK_ROWS" "$comp" "$LINK_CONGESTION" 0 "$loss" "$run"
      done
    done
    link_loss 0
  fi
  if [ "${SKIP_SSH:-0}" != 1 ]; then
    [ -n "$SSHD_PID" ] || start_sshd || { echo "sshd did not start" >&2; exit 1; }
    for mode in $SSH_MODES; do
      ssh_run "$mode" "$LINK_ROWS" "$run"
    done
  fi
  if [ "${SKIP_RELAY:-0}" != 1 ]; then
    if [ "$RELAY_BASELINE" = 1 ]; then
      ferry_run relay "ferry relay" "$RELAY_ROWS" "$RELAY_COMPRESSION" cubic 0 0 "$run"
    fi
    for rtt in $RELAY_RTTS; do
      for cc in $CONGESTIONS; do
        for loss in $RELAY_LOSSES; do
          ferry_run relay "ferry relay" "$RELAY_ROWS" "$RELAY_COMPRESSION" "$cc" "$rtt" "$loss" "$run"
        done
      done
    done
  fi
done
[ -n "$SSHD_PID" ] && stop "$SSHD_PID"

# ---------------- summary ----------------
# Per (section, path, compression, congestion, rtt, loss): median over runs of
# seconds (ok runs) or, when no run finished, the best capped run as a lower bound.
agg() {  # prints: key fields, rows, rows_per_s, mb_per_s, wire_mb, link_mb, secs, agent_mib, broker_mib, ok/all, lower_bound(0|1)
  awk -F'\t' -v bytes_all="$DATA_BYTES" -v rows_all="$ROWS" -v relay_bytes="${SRC_BYTES[$RELAY_ROWS]:-0}" -v link_bytes="${SRC_BYTES[$LINK_ROWS]:-0}" '
    NR == 1 { next }
    {
      k = $1 "\t" $2 "\t" $3 "\t" $4 "\t" $5 "\t" $6
      if (!(k in seen)) { seen[k] = 1; order[++nk] = k }
      all[k]++
      if ($20 == "ok") { ok[k]++; s[k, ok[k]] = $10; w[k, ok[k]] = $11; l[k, ok[k]] = $12 }
      else if ($20 == "capped") { if ($9 / $10 > cb[k]) { cb[k] = $9 / $10; cs[k] = $10; cw[k] = $11; cl[k] = $12; cr[k] = $9 } }
      n[k] = $8
      if ($14 > ar[k]) ar[k] = $14
      if ($15 > br[k]) br[k] = $15
    }
    function med(a, k, m,   i, j, t, v) {
      for (i = 1; i <= m; i++) v[i] = a[k, i]
      for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
      return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
    }
    END {
      for (i = 1; i <= nk; i++) {
        k = order[i]
        split(k, f, "\t")
        b = (f[1] == "relay") ? relay_bytes : link_bytes
        if (b == 0) b = bytes_all * n[k] / rows_all
        if (ok[k] > 0) {
          sec = med(s, k, ok[k]); wm = med(w, k, ok[k]); lm = med(l, k, ok[k]); rows = n[k]; lb = 0
        } else if (k in cb) {
          sec = cs[k]; wm = cw[k]; lm = cl[k]; rows = cr[k]; lb = 1; b = b * rows / n[k]
        } else { sec = 0; wm = 0; lm = 0; rows = 0; lb = 2 }
        printf "%s\t%d\t%.0f\t%.2f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%d/%d\t%d\n", k, rows,
          (sec > 0) ? rows / sec : 0, (sec > 0) ? b / 1e6 / sec : 0, wm / 1e6, lm / 1e6, sec,
          ar[k] / 1024, br[k] / 1024, ok[k], all[k], lb
      }
    }' "$RUNS_TSV"
}
source_facts "$LINK_ROWS"; source_facts "$RELAY_ROWS"
AGG=$OUT/aggregate.tsv
agg > "$AGG"
{
  echo "# Ferry over a $RATE link (tc tbf burst $BURST latency $TBF_LATENCY on both egresses, veth between netns $NS_IDC and $NS_CLOUD)"
  echo "# $ROWS-row table $TABLE ($(awk -v b="$DATA_BYTES" 'BEGIN{printf "%.1f", b/1e6}') MB as COPY text); link runs $LINK_ROWS rows, relay runs $RELAY_ROWS rows; runs=$RUNS; cap ${CAP}s (relay) / ${LINK_CAP}s (link, SSH); channel=$CHANNEL; host $(nproc) cores"
  echo "# source MB/s = COPY-text bytes of the rows moved / elapsed; wire MB = Ferry's own count of compressed batch bytes (0 for SSH);"
  echo "# link MB = bytes through the veth (both directions, all headers/ACKs); RSS = peak VmHWM (SSH: the ssh client forwarder)."
  echo "# SSH peer: COPY $COPY_FORMAT format, psql | psql inside $NS_IDC, target through ssh -N -L to sshd in $NS_CLOUD (plain: Compression=no; -C: zlib)."
  echo
  echo "## Ferry vs SSH tunnel on the $RATE link"
  echo
  ssh_plain=$(awk -F'\t' '$1 == "ssh" && $3 == "ssh:none" && $16 == 0 {print $8}' "$AGG")
  ssh_comp=$(awk -F'\t' '$1 == "ssh" && $3 == "ssh:zlib" && $16 == 0 {print $8}' "$AGG")
  echo "| path | compression | congestion | rows/s | source MB/s | wire MB | link MB | elapsed s | agent / broker peak RSS MiB | ratio to SSH tunnel (plain) | ratio to SSH tunnel (-C) | ok |"
  echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  awk -F'\t' -v sp="${ssh_plain:-0}" -v sc="${ssh_comp:-0}" '
    $1 == "link" || $1 == "ssh" {
      pre = ($16 == 1) ? ">" : ""; post = ($16 == 1) ? " (capped)" : ""
      rss = ($1 == "ssh") ? sprintf("%.1f (ssh client)", $13) : sprintf("%.1f / %.1f", $13, $14)
      wire = ($1 == "ssh") ? "-" : sprintf("%.1f", $10)
      r1 = (sp > 0 && $8 > 0) ? sprintf("%s%.2fx", pre, $8 / sp) : "-"
      r2 = (sc > 0 && $8 > 0) ? sprintf("%s%.2fx", pre, $8 / sc) : "-"
      if ($16 == 2) { printf "| %s | %s | %s | failed | | | | | | | | %s |\n", $2, $3, $4, $15; next }
      printf "| %s | %s | %s | %s%.0f | %s%.2f | %s | %.1f | %.1f%s | %s | %s | %s | %s |\n", $2, $3, $4, pre, $8, pre, $9, wire, $11, $12, post, rss, r1, r2, $15
    }' "$AGG"
  echo
  echo "## Ferry through the impairment relay ($RELAY_COMPRESSION, $RATE tbf kept; loss applied independently in each direction; one-way delay = RTT/2 each way)"
  echo
  echo "| RTT ms | loss % (each direction) | congestion | rows | rows/s | source MB/s | wire MB | link MB | elapsed s | agent / broker peak RSS MiB | ratio to the loss-free run of the same RTT and controller | ok |"
  echo "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  awk -F'\t' '
    $1 == "relay" { k = $4 "\t" $5; if ($6 == 0 && $16 == 0) base[k] = $8; line[++n] = $0 }
    END {
      for (i = 1; i <= n; i++) {
        split(line[i], f, "\t"); k = f[4] "\t" f[5]
        pre = (f[16] == 1) ? ">" : ""; post = (f[16] == 1) ? " (capped)" : ""
        if (f[16] == 2) { printf "| %s | %s | %s | failed | | | | | | | | %s |\n", f[5], f[6], f[4], f[15]; continue }
        r = (base[k] > 0) ? sprintf("%s%.2f", pre, f[8] / base[k]) : "-"
        rtt = (f[5] == 0) ? "0 (relay only)" : f[5]
        printf "| %s | %s | %s | %d | %s%.0f | %s%.2f | %.1f | %.1f | %.1f%s | %.1f / %.1f | %s | %s |\n", rtt, f[6], f[4], f[7], pre, f[8], pre, f[9], f[10], f[11], f[12], post, f[13], f[14], r, f[15]
      }
    }' "$AGG"
  echo
  echo "# capped rows: rows/s and MB/s are lower bounds (rows the target held when the run was stopped at its cap)."
  echo "# raw runs: $RUNS_TSV (relay counters in logs/relay.*.json, Ferry summaries in logs/summary.*.txt)"
} | tee "$OUT/summary.txt"
ln -sfn "$OUT" "$BENCH_WORK/ferry-wan.$ROWS.latest"
