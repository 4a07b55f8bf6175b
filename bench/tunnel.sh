#!/usr/bin/env bash
# bench/tunnel.sh — Ferry's tunnel beside the SSH-tunnel baseline, same run.
#
# 1. ../shared/bench/ssh_tunnel.sh ROWS: raw ssh throughput (aes128-gcm,
#    2000 MiB) and the PostgreSQL binary COPY pipe, on this machine, now.
# 2. tunnel-bench (release): bench_orders batches agent -> broker over
#    loopback QUIC, compression off and zstd-1, RUNS runs each, interleaved.
# Prints medians and the ratios the issue asks for. Results: $OUT.
#
# Usage: bench/tunnel.sh [ROWS]     (env: RUNS=3 MB=2000 SKIP_SSH=1)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SHARED=${SHARED:-$ROOT/../shared/bench}
ROWS=${1:-1000000}
RUNS=${RUNS:-3}
MB=${MB:-2000}
BENCH_WORK=${BENCH_WORK:-/tmp/ferry-bench}
OUT=$BENCH_WORK/tunnel.$ROWS.$(date +%Y%m%dT%H%M%S)
mkdir -p "$OUT"

need=()
for t in sshd:openssh-server socat:socat bc:bc /usr/bin/time:time perl:perl; do
  command -v "${t%%:*}" >/dev/null 2>&1 || [ -x "${t%%:*}" ] || need+=("${t#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ -z "${SKIP_SSH:-}" ]; then
  echo "== ssh baseline (ssh_tunnel.sh $ROWS)" >&2
  CIPHERS="aes128-gcm@openssh.com" MB=$MB RUNS=$RUNS "$SHARED/ssh_tunnel.sh" "$ROWS" | tee "$OUT/ssh.txt"
else
  "$SHARED/gen_data.sh" "$ROWS" >&2
fi
TSV=$BENCH_WORK/bench_orders.$ROWS.tsv
[ -s "$TSV" ] || { echo "no $TSV (gen_data.sh failed?)" >&2; exit 1; }

cargo build --release -q -p ferry-bench --bin tunnel-bench
BIN=$ROOT/target/release/tunnel-bench

echo "== ferry tunnel ($RUNS runs each, interleaved)" >&2
: > "$OUT/ferry.jsonl"
for run in $(seq 1 "$RUNS"); do
  for c in off zstd:1; do
    "$BIN" run --tsv "$TSV" --mb "$MB" --compression "$c" --json | tee -a "$OUT/ferry.jsonl"
  done
done

python3 - "$OUT" <<'PY'
import json, statistics, sys, re, os
out = sys.argv[1]
runs = [json.loads(l) for l in open(f"{out}/ferry.jsonl") if l.strip()]
ssh = {}
p = f"{out}/ssh.txt"
if os.path.exists(p):
    for line in open(p):
        f = line.split()
        if len(f) >= 5 and not line.startswith("#"):
            ssh[f[0]] = float(f[4]) if f[4] not in ("-", "NA") else None
def med(xs): return statistics.median(xs)
print(f"\n# ferry tunnel, medians of {len(runs)//2} runs each; MB = 1e6 bytes; payload = uncompressed Arrow IPC")
print(f"# {'mode':8} {'payload_MB/s':>12} {'table_MB/s':>10} {'wire_MB/s':>9} {'ratio':>6} {'cpu_s/GB':>8} {'agent_cpu_s':>11} {'broker_cpu_s':>12} {'broker_rss_MiB':>14}")
meds = {}
for c in ("off", "zstd:1"):
    rs = [r for r in runs if r["compression"] == c]
    m = {k: med([r[k] for r in rs]) for k in ("payload_mb_s","table_text_mb_s","wire_mb_s","compression_ratio","cpu_s_per_gb","agent_cpu_s","broker_cpu_s","broker_rss_mib")}
    meds[c] = m
    print(f"  {c:8} {m['payload_mb_s']:12.1f} {m['table_text_mb_s']:10.1f} {m['wire_mb_s']:9.1f} {m['compression_ratio']:6.2f} {m['cpu_s_per_gb']:8.2f} {m['agent_cpu_s']:11.2f} {m['broker_cpu_s']:12.2f} {m['broker_rss_mib']:14.1f}")
s = ssh.get("raw_ssh_aes128-gcm")
cp = ssh.get("pg_copy_binary_direct")
print()
if s:
    print(f"ssh aes128-gcm raw (same run): {s:.1f} MB/s -> ferry off / ssh = {meds['off']['payload_mb_s']/s:.2f} (target >= 0.5)")
if cp:
    print(f"pg binary COPY pipe (same run): {cp:.1f} MB/s -> ferry zstd:1 / copy = {meds['zstd:1']['table_text_mb_s']/cp:.2f} (table MB/s; target >= 3)")
    print(f"                                          ferry zstd:1 payload / copy = {meds['zstd:1']['payload_mb_s']/cp:.2f}")
PY
echo "(agent RSS is left out: tunnel-bench holds the whole table in memory to resend it)" >&2
echo "results in $OUT" >&2
