#!/usr/bin/env bash
# e2e.sh [ROWS] — Ferry end to end through the tunnel, beside the peer tools
# measured in the same run.
#
# Builds the release binary, makes sure the shared `bench_orders` table exists
# (../shared/bench/gen_data.sh), runs ../shared/bench/peers.sh for the peers,
# then times Ferry the way a user runs it: `ferry broker run` and `ferry agent
# run` as separate processes on loopback (mutual TLS, zstd-1 on the wire), and
# `ferry job submit` of a job whose reader names the agent's data source:
#   ferry_pg: PostgreSQL bench_src -> PostgreSQL bench_dst
#   ferry_my: MariaDB test         -> PostgreSQL bench_dst
# into the same pre-created target as the peers' pipes (PRIMARY KEY on id).
# Every run is checked with the harness' checksum against the source. Broker
# and agent are restarted for each run, so their peak RSS (VmHWM) is that run's.
#
# Env: RUNS=3  PEERS="pg_copy_binary pgloader_my sling_my"  CHANNEL=2
#      COMPRESSION=zstd:1  SKIP_PEERS=1 (reuse the latest peers run)
#      TRANSPORT="stream_window = 4194304" (TOML lines for both sides' [transport])
# Output: $BENCH_WORK/ferry-e2e.ROWS.<time>/{runs.tsv,summary.txt,logs}
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
# shellcheck disable=SC1091
. "$SHARED/lib/common.sh"
# shellcheck disable=SC1091
. "$HERE/lib.sh"

ROWS=${1:-1000000}
RUNS=${RUNS:-3}
PEERS=${PEERS:-pg_copy_binary pgloader_my sling_my}
CHANNEL=${CHANNEL:-2}
COMPRESSION=${COMPRESSION:-zstd:1}
QUIC_PORT=${QUIC_PORT:-17910}
ADMIN_PORT=${ADMIN_PORT:-17911}

(cd "$ROOT" && cargo build --release -q -p ferry) || { echo "release build failed" >&2; exit 1; }
FERRY=${CARGO_TARGET_DIR:-$ROOT/target}/release/ferry

"$SHARED/gen_data.sh" "$ROWS" >&2 || { echo "gen_data.sh failed" >&2; exit 1; }
# shellcheck disable=SC1090
. "$BENCH_WORK/meta.$ROWS.env"   # ROWS, DATA_BYTES, SRC_CHECKSUM
pg_ensure_db "$DST_PG_DB"

if [ "${SKIP_PEERS:-0}" != 1 ]; then
  RUNS=$RUNS TOOLS="$PEERS" SKIP_GEN=1 "$SHARED/peers.sh" "$ROWS" >&2
fi
PEERS_OUT=$BENCH_WORK/peers.$ROWS.latest

OUT=$BENCH_WORK/ferry-e2e.$ROWS.$(date +%Y%m%dT%H%M%S)
mkdir -p "$OUT"
cd "$OUT" || exit 1

# ---- PKI, configs, jobs ----
ferry_pki 127.0.0.1,localhost || { echo "ferry certs failed" >&2; exit 1; }
ferry_configs "127.0.0.1:$QUIC_PORT" "127.0.0.1:$QUIC_PORT" jobs "${TRANSPORT:-}" "[sources.pg]
kind = \"postgres\"
url = \"postgres://$PG_USER@$PG_HOST:$PG_PORT/$SRC_PG_DB\"
[sources.my]
kind = \"mysql\"
url = \"mysql://$MY_USER@$MY_HOST:$MY_PORT/$SRC_MY_DB\""
DST_URL="postgres://$PG_USER@$PG_HOST:$PG_PORT/$DST_PG_DB"
ferry_job job_pg.yaml postgresqlreader bench/pg "$DST_URL" "$CHANNEL"
ferry_job job_my.yaml mysqlreader bench/my "$DST_URL" "$CHANNEL"
hwm_kib() { awk '/^VmHWM:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14+$15)/t}' "/proc/$1/stat" 2>/dev/null || echo 0; }
stop() { kill -TERM "$1" 2>/dev/null; for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -KILL "$1" 2>/dev/null; }

RUNS_TSV=$OUT/runs.tsv
printf 'tool\trun\trows\tseconds\twire_bytes\tagent_rss_kib\tbroker_rss_kib\tagent_cpu_s\tbroker_cpu_s\tstatus\n' > "$RUNS_TSV"
log "ferry e2e: rows=$ROWS runs=$RUNS channel=$CHANNEL compression=$COMPRESSION out=$OUT"
for run in $(seq 1 "$RUNS"); do
  for src in pg my; do
    tool=ferry_$src
    prepare_target
    "$FERRY" broker run -c broker.toml > "broker.$tool.$run.log" 2>&1 &
    bpid=$!
    sleep 0.3
    "$FERRY" agent run -c agent.toml > "agent.$tool.$run.log" 2>&1 &
    apid=$!
    for _ in $(seq 100); do
      "$FERRY" broker agents --admin "127.0.0.1:$ADMIN_PORT" 2>/dev/null | grep -q "bench-01.*pg" && break
      sleep 0.1
    done
    t0=$(now)
    "$FERRY" job --admin "127.0.0.1:$ADMIN_PORT" submit --quiet --compression "$COMPRESSION" "job_$src.yaml" > "summary.$tool.$run.txt" 2>&1
    rc=$?
    t1=$(now)
    arss=$(hwm_kib "$apid"); brss=$(hwm_kib "$bpid"); acpu=$(cpu_s "$apid"); bcpu=$(cpu_s "$bpid")
    stop "$apid"; stop "$bpid"
    wire=$(awk -F': ' '/^Bytes on the wire/{print $2}' "summary.$tool.$run.txt" | awk '{printf "%d", $1*1e6}')
    if [ $rc -ne 0 ]; then
      status="failed:$(tail -n1 "summary.$tool.$run.txt" | tr '\t ' '__' | cut -c1-120)"
    else
      n=$(pg_count "$DST_PG_DB"); s=$(pg_checksum "$DST_PG_DB" 2>&1 | head -1)
      if [ "$n" != "$ROWS" ]; then status="count=$n"
      elif [ "$s" != "$SRC_CHECKSUM" ]; then status="checksum_mismatch:$s"
      else status=ok; fi
    fi
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$run" "$ROWS" "$secs" "${wire:-0}" "$arss" "$brss" "$acpu" "$bcpu" "$status" >> "$RUNS_TSV"
    log "$tool run $run: ${secs}s wire=${wire:-0}B agent=${arss}KiB broker=${brss}KiB $status"
  done
done

# ---- summary: medians, beside the peers of this session ----
med() { awk -F'\t' -v t="$1" -v c="$2" 'NR>1 && $1==t && $10=="ok" {print $c}' "$RUNS_TSV" | median; }
maxc() { awk -F'\t' -v t="$1" -v c="$2" 'NR>1 && $1==t {if ($c>m) m=$c} END{print m+0}' "$RUNS_TSV"; }
peer_secs() { awk -v t="$1" '$1==t {print $3}' "$PEERS_OUT/summary.txt" 2>/dev/null | head -1; }
{
  echo "# Ferry through the tunnel vs peers, $ROWS rows of $TABLE ($(awk -v b="$DATA_BYTES" 'BEGIN{printf "%.0f", b/1e6}') MB as text), runs=$RUNS, channel=$CHANNEL, $COMPRESSION"
  printf '%-16s %8s %10s %8s %9s %10s %11s %s\n' tool seconds rows_per_s MB_per_s wire_MB agent_MiB broker_MiB ok_runs
  for tool in ferry_pg ferry_my; do
    s=$(med $tool 4); w=$(med $tool 5)
    ok=$(awk -F'\t' -v t=$tool 'NR>1 && $1==t && $10=="ok"' "$RUNS_TSV" | wc -l)
    printf '%-16s %8.2f %10.0f %8.1f %9.1f %10.1f %11.1f %s/%s\n' "$tool" "$s" \
      "$(awk -v r="$ROWS" -v s="$s" 'BEGIN{print (s>0)?r/s:0}')" \
      "$(awk -v b="$DATA_BYTES" -v s="$s" 'BEGIN{print (s>0)?b/1e6/s:0}')" \
      "$(awk -v w="$w" 'BEGIN{print w/1e6}')" \
      "$(awk -v k="$(maxc $tool 6)" 'BEGIN{print k/1024}')" \
      "$(awk -v k="$(maxc $tool 7)" 'BEGIN{print k/1024}')" "$ok" "$RUNS"
  done
  echo
  echo "# peers (median seconds, from $PEERS_OUT/summary.txt)"
  [ -f "$PEERS_OUT/summary.txt" ] && cat "$PEERS_OUT/summary.txt"
  echo
  echo "# ratios (rows/s of Ferry / rows/s of the peer = peer seconds / Ferry seconds)"
  fpg=$(med ferry_pg 4); fmy=$(med ferry_my 4)
  for pair in "ferry_pg pg_copy_binary" "ferry_pg pg_copy_text" "ferry_my pgloader_my" "ferry_my pgloader_my_lowmem" "ferry_my sling_my" "ferry_my my_pipe"; do
    set -- $pair
    p=$(peer_secs "$2"); [ -n "$p" ] && [ "$p" != NA ] || continue
    f=$([ "$1" = ferry_pg ] && echo "$fpg" || echo "$fmy")
    awk -v a="$1" -v b="$2" -v p="$p" -v f="$f" 'BEGIN{ if (f>0) printf "%-9s vs %-20s %.2fx  (%.2f s vs %.2f s)\n", a, b, p/f, f, p }'
  done
} | tee "$OUT/summary.txt"
ln -sfn "$OUT" "$BENCH_WORK/ferry-e2e.$ROWS.latest"
