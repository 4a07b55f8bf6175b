#!/usr/bin/env bash
# verify.sh [ROWS] — `ferry verify` of bench_orders beside the copy it checks, same run.
#
# Builds the release binary, makes sure the shared `bench_orders` table exists
# (../shared/bench/gen_data.sh), and runs `ferry broker run` and `ferry agent run`
# as separate processes on loopback (mutual TLS, zstd-1). Per run:
#   copy:   `ferry job submit` of MariaDB test.bench_orders -> PostgreSQL bench_dst
#           (the e2e job, into a fresh table with its PRIMARY KEY), checked with the
#           harness' checksum;
#   verify: `ferry verify --json --admin` of the same job: the agent fingerprints the
#           source, the broker the target; only fingerprints cross the tunnel. It must
#           report every row equal.
# Prints median seconds of each, verify/copy, and the bytes verify sent through the
# tunnel beside the table's size (as text) and the copy's wire bytes.
#
# Env: RUNS=3 CHANNEL=2 COMPRESSION=zstd:1
# Output: $BENCH_WORK/ferry-verify.ROWS.<time>/{runs.tsv,summary.txt,logs}
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
CHANNEL=${CHANNEL:-2}
COMPRESSION=${COMPRESSION:-zstd:1}
QUIC_PORT=${QUIC_PORT:-17920}
ADMIN_PORT=${ADMIN_PORT:-17921}

(cd "$ROOT" && cargo build --release -q -p ferry) || { echo "release build failed" >&2; exit 1; }
FERRY=${CARGO_TARGET_DIR:-$ROOT/target}/release/ferry

"$SHARED/gen_data.sh" "$ROWS" >&2 || { echo "gen_data.sh failed" >&2; exit 1; }
# shellcheck disable=SC1090
. "$BENCH_WORK/meta.$ROWS.env"   # ROWS, DATA_BYTES, SRC_CHECKSUM
pg_ensure_db "$DST_PG_DB"

OUT=$BENCH_WORK/ferry-verify.$ROWS.$(date +%Y%m%dT%H%M%S)
mkdir -p "$OUT"
cd "$OUT" || exit 1

ferry_pki 127.0.0.1,localhost || { echo "ferry certs failed" >&2; exit 1; }
ferry_configs "127.0.0.1:$QUIC_PORT" "127.0.0.1:$QUIC_PORT" jobs "" "[sources.my]
kind = \"mysql\"
url = \"mysql://$MY_USER@$MY_HOST:$MY_PORT/$SRC_MY_DB\""
DST_URL="postgres://$PG_USER@$PG_HOST:$PG_PORT/$DST_PG_DB"
ferry_job job_my.yaml mysqlreader bench/my "$DST_URL" "$CHANNEL"
hwm_kib() { awk '/^VmHWM:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
stop() { kill -TERM "$1" 2>/dev/null; for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -KILL "$1" 2>/dev/null; }

RUNS_TSV=$OUT/runs.tsv
printf 'run\tcopy_s\tcopy_wire\tverify_s\tverify_wire\tagent_rss_kib\tbroker_rss_kib\tstatus\n' > "$RUNS_TSV"
log "ferry verify: rows=$ROWS runs=$RUNS channel=$CHANNEL out=$OUT"
for run in $(seq 1 "$RUNS"); do
  prepare_target
  "$FERRY" broker run -c broker.toml > "broker.$run.log" 2>&1 &
  bpid=$!
  sleep 0.3
  "$FERRY" agent run -c agent.toml > "agent.$run.log" 2>&1 &
  apid=$!
  for _ in $(seq 100); do
    "$FERRY" broker agents --admin "127.0.0.1:$ADMIN_PORT" 2>/dev/null | grep -q "bench-01" && break
    sleep 0.1
  done
  t0=$(now)
  "$FERRY" job --admin "127.0.0.1:$ADMIN_PORT" submit --quiet --compression "$COMPRESSION" job_my.yaml > "copy.$run.txt" 2>&1
  crc=$?
  t1=$(now)
  cwire=$(awk -F': ' '/^Bytes on the wire/{print $2}' "copy.$run.txt" | awk '{printf "%d", $1*1e6}')
  pg_dst -c "CHECKPOINT" >/dev/null; sync
  t2=$(now)
  "$FERRY" verify --json --admin "127.0.0.1:$ADMIN_PORT" job_my.yaml > "verify.$run.json" 2> "verify.$run.err"
  vrc=$?
  t3=$(now)
  arss=$(hwm_kib "$apid"); brss=$(hwm_kib "$bpid")
  stop "$apid"; stop "$bpid"
  vwire=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["wire_bytes"])' "verify.$run.json" 2>/dev/null || echo 0)
  n=$(pg_count "$DST_PG_DB"); s=$(pg_checksum "$DST_PG_DB" 2>&1 | head -1)
  if [ $crc -ne 0 ]; then status="copy_failed"
  elif [ "$n" != "$ROWS" ] || [ "$s" != "$SRC_CHECKSUM" ]; then status="copy_wrong:$n"
  elif [ $vrc -ne 0 ]; then status="verify_failed:$(tail -n1 "verify.$run.err" | tr '\t ' '__' | cut -c1-100)"
  else status=ok; fi
  csecs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
  vsecs=$(awk -v a="$t2" -v b="$t3" 'BEGIN{printf "%.3f", b-a}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$csecs" "${cwire:-0}" "$vsecs" "$vwire" "$arss" "$brss" "$status" >> "$RUNS_TSV"
  log "run $run: copy ${csecs}s (${cwire:-0} B on the wire), verify ${vsecs}s (${vwire} B) agent=${arss}KiB broker=${brss}KiB $status"
done

med() { awk -F'\t' -v c="$1" 'NR>1 && $8=="ok" {print $c}' "$RUNS_TSV" | median; }
{
  echo "# ferry verify vs the copy it checks: $ROWS rows of $TABLE ($(awk -v b="$DATA_BYTES" 'BEGIN{printf "%.0f", b/1e6}') MB as text), MariaDB -> PostgreSQL through the tunnel, runs=$RUNS, channel=$CHANNEL"
  cs=$(med 2); cw=$(med 3); vs=$(med 4); vw=$(med 5)
  ok=$(awk -F'\t' 'NR>1 && $8=="ok"' "$RUNS_TSV" | wc -l)
  printf '%-8s %9s %12s %14s\n' step seconds rows_per_s wire_bytes
  printf '%-8s %9.2f %12.0f %14.0f\n' copy "$cs" "$(awk -v r="$ROWS" -v s="$cs" 'BEGIN{print (s>0)?r/s:0}')" "$cw"
  printf '%-8s %9.2f %12.0f %14.0f\n' verify "$vs" "$(awk -v r="$ROWS" -v s="$vs" 'BEGIN{print (s>0)?r/s:0}')" "$vw"
  awk -v c="$cs" -v v="$vs" 'BEGIN{ if (c>0) printf "verify / copy time: %.2fx (target <= 0.5x)\n", v/c }'
  awk -v w="$vw" -v b="$DATA_BYTES" -v cw="$cw" 'BEGIN{ printf "verify wire bytes: %.3f%% of the table (%d B as text; target < 1%%), %.3f%% of the copy'"'"'s wire bytes\n", 100*w/b, b, (cw>0)?100*w/cw:0 }'
  echo "peak RSS: agent $(awk -F'\t' 'NR>1{if($6>m)m=$6}END{printf "%.0f", m/1024}' "$RUNS_TSV") MiB, broker $(awk -F'\t' 'NR>1{if($7>m)m=$7}END{printf "%.0f", m/1024}' "$RUNS_TSV") MiB (copy and verify)"
  echo "ok runs: $ok/$RUNS"
} | tee "$OUT/summary.txt"
ln -sfn "$OUT" "$BENCH_WORK/ferry-verify.$ROWS.latest"
