# bench/lib.sh — what bench/e2e.sh and bench/wan.sh share: the PKI, the
# broker and agent configs, the job file and the target table. Sourced after
# the shared harness' lib/common.sh (PSQL, TABLE, COLS, PG_DDL, DST_PG_DB)
# with FERRY and ADMIN_PORT set; writes into the current directory.

# ferry_pki SANS: a CA, a broker certificate for SANS (comma-separated) and
# agent bench-01 of group bench, in ./pki; an existing ./pki is kept.
ferry_pki() {
  [ -f pki/agents/bench-01.pem ] && return 0
  "$FERRY" certs --dir pki init >/dev/null &&
    "$FERRY" certs --dir pki server --san "$1" >/dev/null &&
    "$FERRY" certs --dir pki agent --id bench-01 --group bench >/dev/null
}

# ferry_configs LISTEN DIAL JOBS_DIR TRANSPORT SOURCES: ./broker.toml listening
# on LISTEN (QUIC), ./agent.toml dialling DIAL; TRANSPORT is TOML lines for
# both sides' [transport], SOURCES the agent's [sources.*] tables.
ferry_configs() {
  cat > broker.toml <<EOF
listen = "$1"
admin_listen = "127.0.0.1:$ADMIN_PORT"
jobs_dir = "$3"
[tls]
ca = "pki/ca.pem"
cert = "pki/broker.pem"
key = "pki/broker.key"
crl = "pki/crl.pem"
[transport]
$4
EOF
  cat > agent.toml <<EOF
broker = "$2"
[tls]
ca = "pki/ca.pem"
cert = "pki/agents/bench-01.pem"
key = "pki/agents/bench-01.key"
[transport]
$4
$5
EOF
}

# ferry_job FILE READER DATASOURCE TARGET_URL CHANNEL [WHERE]: a job copying
# the bench table from the agent's DATASOURCE to PostgreSQL at TARGET_URL.
ferry_job() {
  local where=""
  [ -n "${6:-}" ] && where="    where: \"$6\""
  cat > "$1" <<EOF
reader:
  name: $2
  parameter:
    datasource: $3
    table: $TABLE
    column: [${COLS//,/, }]
    splitPk: id
$where
writer:
  name: postgresqlwriter
  parameter:
    url: $4
    table: $TABLE
    column: [${COLS//,/, }]
setting:
  speed: {channel: $5}
EOF
}

# prepare_target: an empty bench table in DST_PG_DB, checkpointed and synced,
# so no run pays for the previous one's writes.
pg_dst() { $PSQL -d "$DST_PG_DB" "$@"; }
prepare_target() {
  pg_dst -c "SET client_min_messages=warning; DROP TABLE IF EXISTS public.$TABLE CASCADE;" >/dev/null
  pg_dst -c "$PG_DDL" >/dev/null
  pg_dst -c "CHECKPOINT" >/dev/null
  sync
}
