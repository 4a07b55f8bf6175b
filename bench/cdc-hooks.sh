#!/usr/bin/env bash
# cdc-hooks.sh setup|pause|resume|teardown — cdc_peers.sh's `ext` hooks for bench/cdc.sh
# (which exports FERRY, FERRY_CDC_WORK, FERRY_CDC_ADMIN, FERRY_CDC_SLOT, FERRY_CDC_ROUTE).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SHARED=${SHARED_BENCH:-$HERE/../../shared/bench}
# shellcheck disable=SC1091
. "$SHARED/lib/common.sh"
# shellcheck disable=SC1091
. "$SHARED/lib/cdc_common.sh"
cd "$FERRY_CDC_WORK" || exit 1
src() { $PSQL -d "$CDC_PG_SRC_DB" -tA -c "$1"; }
attached() {
  if [ "${FERRY_CDC_ROUTE:-pg}" = my ]; then
    # The agent's binlog dump thread (pg_chameleon's are stopped while Ferry runs).
    $MYSQL -N -e "SELECT LEAST(count(*), 1) FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'"
  else
    src "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$FERRY_CDC_SLOT' AND active"
  fi
}
wait_attached() {  # $1 = 1 or 0
  for _ in $(seq 600); do [ "$(attached)" = "$1" ] && return 0; sleep 0.05; done
  echo "the slot did not become active=$1" >&2; return 1
}
submit() {
  "$FERRY" job --admin "$FERRY_CDC_ADMIN" submit --detach stream.yaml > job.id || return 1
  wait_attached 1
}
cancel() {
  [ -s job.id ] && "$FERRY" job --admin "$FERRY_CDC_ADMIN" cancel "$(cat job.id)" >/dev/null 2>&1
  wait_attached 0
}
# A MySQL server keeps no reader's position: the stopped job resumes from its target's.
resume() {
  if [ "${FERRY_CDC_ROUTE:-pg}" = my ]; then
    "$FERRY" job --admin "$FERRY_CDC_ADMIN" resume --detach "$(cat job.id)" >/dev/null || return 1
    wait_attached 1
  else
    submit
  fi
}
case "${1:-}" in
  setup) submit ;;
  resume) resume ;;
  pause) cancel ;;
  teardown)
    cancel
    rm -f job.id
    [ "${FERRY_CDC_ROUTE:-pg}" = my ] && exit 0
    src "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '$FERRY_CDC_SLOT'" >/dev/null
    src "DROP PUBLICATION IF EXISTS $FERRY_CDC_SLOT" >/dev/null ;;
  *) echo "usage: $0 setup|pause|resume|teardown" >&2; exit 2 ;;
esac
