#!/usr/bin/env bash
# cdc.sh [CHANGES [RATE [LAG_SECONDS]]] — Ferry's change streams beside the CDC peers, same
# run: ../shared/bench/cdc_peers.sh with its `ext` tool driven by Ferry.
#
# Builds the release binary and runs `ferry broker run` and `ferry agent run` as separate
# processes on loopback (mutual TLS, zstd-1) for the whole invocation. ROUTE=pg (default):
# the agent offers PostgreSQL cdc_src with `[sources.pg.changes]`, beside PostgreSQL's
# native logical replication; ROUTE=my: MariaDB cdc_src with `[sources.my.changes]`, beside
# pg_chameleon. The ext hooks (bench/cdc-hooks.sh):
#   setup         `ferry job submit --detach` of a `setting.mode: stream` job
#                 cdc_src.cdc_orders -> cdc_ext.public.cdc_orders, then wait until the
#                 agent reads the source (attached to its slot; a binlog dump thread);
#   pause         `ferry job cancel` (the slot, or the target's checkpoint, keeps the
#                 position), wait until detached;
#   resume        pg: a new job (the slot holds the position); my: `ferry job resume`
#                 (the target holds it);
#   teardown      cancel (pg: then drop the slot and the publication).
# The peers' table (runs.tsv, summary.txt) is the shared script's; this script adds the
# agent's and broker's peak RSS.
#
# Env: ROUTE=pg|my  RUNS=3  TOOLS (default "pg_native ext", or "chameleon ext" for my)
#      PHASES="burst lag"  (passed to cdc_peers.sh)
# Output: $BENCH_WORK/cdc.CHANGES.RATE.<time>/ (cdc_peers.sh's), ferry logs in ferry-cdc.<time>/
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
# shellcheck disable=SC1091
. "$SHARED/lib/common.sh"
# shellcheck disable=SC1091
. "$SHARED/lib/cdc_common.sh"
# shellcheck disable=SC1091
. "$HERE/lib.sh"

CHANGES=${1:-200000}
RATE=${2:-5000}
LAG_SECONDS=${3:-60}
QUIC_PORT=${QUIC_PORT:-17930}
ADMIN_PORT=${ADMIN_PORT:-17931}
export FERRY_CDC_SLOT=${FERRY_CDC_SLOT:-ferry_bench_cdc}
export FERRY_CDC_ROUTE=${ROUTE:-pg}

(cd "$ROOT" && cargo build --release -q -p ferry) || { echo "release build failed" >&2; exit 1; }
FERRY=${CARGO_TARGET_DIR:-$ROOT/target}/release/ferry
export FERRY

WORK=$BENCH_WORK/ferry-cdc.$(date +%Y%m%dT%H%M%S)
mkdir -p "$WORK"
cd "$WORK" || exit 1
ferry_pki 127.0.0.1,localhost || { echo "ferry certs failed" >&2; exit 1; }
if [ "$FERRY_CDC_ROUTE" = my ]; then
  SOURCE="[sources.my]
kind = \"mysql\"
url = \"mysql://$MY_USER@$MY_HOST:$MY_PORT/$CDC_MY_DB\"
changes = {}"
  READER="mysqlreader"; DATASOURCE=bench/my; SRC_TABLE=$CDC_TABLE; PEERS="chameleon ext"
else
  SOURCE="[sources.pg]
kind = \"postgres\"
url = \"postgres://$PG_USER@$PG_HOST:$PG_PORT/$CDC_PG_SRC_DB\"
changes = { slot = \"$FERRY_CDC_SLOT\" }"
  READER="postgresqlreader"; DATASOURCE=bench/pg; SRC_TABLE=public.$CDC_TABLE; PEERS="pg_native ext"
fi
ferry_configs "127.0.0.1:$QUIC_PORT" "127.0.0.1:$QUIC_PORT" jobs "" "$SOURCE"
cat > stream.yaml <<YAML
reader:
  name: $READER
  parameter:
    datasource: $DATASOURCE
    table: $SRC_TABLE
writer:
  name: postgresqlwriter
  parameter:
    url: postgres://$PG_USER@$PG_HOST:$PG_PORT/${EXT_DST_DB:-cdc_ext}
    table: public.$CDC_TABLE
    existing: append
setting:
  mode: stream
  compression: zstd:1
YAML

"$FERRY" broker run -c broker.toml > broker.log 2>&1 &
BPID=$!
sleep 0.3
"$FERRY" agent run -c agent.toml > agent.log 2>&1 &
APID=$!
hwm_kib() { awk '/^VmHWM:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
finish() {
  echo "peak RSS: agent $(( $(hwm_kib "$APID") / 1024 )) MiB, broker $(( $(hwm_kib "$BPID") / 1024 )) MiB" | tee -a "$WORK/rss.txt"
  kill -TERM "$APID" "$BPID" 2>/dev/null
  wait "$APID" "$BPID" 2>/dev/null
}
trap finish EXIT
for _ in $(seq 100); do
  "$FERRY" broker agents --admin "127.0.0.1:$ADMIN_PORT" 2>/dev/null | grep -q "bench-01" && break
  sleep 0.1
done

export FERRY_CDC_WORK=$WORK FERRY_CDC_ADMIN=127.0.0.1:$ADMIN_PORT
hooks="$HERE/cdc-hooks.sh"
EXT_NAME=ferry EXT_ROUTE=$FERRY_CDC_ROUTE \
  EXT_SETUP="$hooks setup" EXT_PAUSE="$hooks pause" EXT_RESUME="$hooks resume" \
  EXT_TEARDOWN="$hooks teardown" EXT_PIDS_CMD="echo $APID $BPID" \
  TOOLS=${TOOLS:-$PEERS} \
  "$SHARED/cdc_peers.sh" "$CHANGES" "$RATE" "$LAG_SECONDS"
