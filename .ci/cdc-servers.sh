#!/usr/bin/env bash
# cdc-servers.sh — turn on what change data capture needs on the local test servers,
# idempotently, restarting a server only when a setting it needs is not active yet:
#   PostgreSQL: wal_level = logical, max_replication_slots >= 10, max_wal_senders >= 10
#               (ALTER SYSTEM, then a restart with pg_ctlcluster);
#   MariaDB:    binary log on, binlog_format = ROW, binlog_row_image = FULL, a server_id
#               (a conf file in /etc/mysql/mariadb.conf.d/, which my.cnf is made to
#               include; then a restart), and binlog_row_metadata = FULL (dynamic).
# The same as ../shared/bench/cdc_prepare.sh on this machine kind, kept here so a clean
# clone needs nothing outside the repository. Prints the running values; exits non-zero
# if any is wrong. Needs root (it restarts servers). Env: DRY_RUN=1 only reports.
set -uo pipefail

PG="psql -X -q -h 127.0.0.1 -p 5432 -U postgres -d postgres -Atc"
MY="mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P 3306 -u root -N -B -e"
MY_CNF_DIR=/etc/mysql/mariadb.conf.d
MY_CNF_MAIN=/etc/mysql/my.cnf
MY_CNF_FILE=$MY_CNF_DIR/60-ferry-cdc.cnf
DRY_RUN=${DRY_RUN:-0}
MIN_SLOTS=10

say() { echo "cdc-servers: $*" >&2; }
wait_for() {  # up to 60 s for `$@` to succeed
  local i
  for i in $(seq 1 120); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  return 1
}

# ---------------- PostgreSQL ----------------
$PG "select 1" >/dev/null 2>&1 || { say "PostgreSQL is not reachable on 127.0.0.1:5432"; exit 1; }
restart=0
if [ "$($PG "show wal_level")" != logical ]; then
  say "PostgreSQL wal_level=$($PG "show wal_level") -> logical"
  [ "$DRY_RUN" = 1 ] || $PG "ALTER SYSTEM SET wal_level = 'logical'" >/dev/null
  restart=1
fi
for s in max_replication_slots max_wal_senders; do
  if [ "$($PG "show $s")" -lt $MIN_SLOTS ]; then
    say "PostgreSQL $s=$($PG "show $s") -> $MIN_SLOTS"
    [ "$DRY_RUN" = 1 ] || $PG "ALTER SYSTEM SET $s = $MIN_SLOTS" >/dev/null
    restart=1
  fi
done
[ "$($PG "select count(*) from pg_settings where pending_restart")" = 0 ] || restart=1
if [ "$restart" = 1 ] && [ "$DRY_RUN" != 1 ]; then
  cluster=$(ls /etc/postgresql | sort -V | tail -1)
  say "restarting PostgreSQL $cluster main"
  pg_ctlcluster --skip-systemctl-redirect "$cluster" main restart || { say "pg_ctlcluster restart failed"; exit 1; }
  wait_for $PG "select 1" || { say "PostgreSQL did not come back within 60 s"; exit 1; }
fi

# ---------------- MariaDB ----------------
$MY "select 1" >/dev/null 2>&1 || { say "MariaDB is not reachable on 127.0.0.1:3306"; exit 1; }
want_cnf="# Written by Ferry's .ci/cdc-servers.sh: the binary log change data capture reads.
[mysqld]
server_id                  = 1
log_bin                    = mysql-bin
binlog_format              = ROW
binlog_row_image           = FULL
binlog_row_metadata        = FULL
binlog_expire_logs_seconds = 172800
max_binlog_size            = 256M
"
if [ "$DRY_RUN" != 1 ]; then
  mkdir -p "$MY_CNF_DIR"
  [ "$(cat "$MY_CNF_FILE" 2>/dev/null)" = "$(printf '%s' "$want_cnf")" ] \
    || { say "writing $MY_CNF_FILE"; printf '%s' "$want_cnf" > "$MY_CNF_FILE"; chmod 644 "$MY_CNF_FILE"; }
  grep -qE "^!includedir $MY_CNF_DIR/?$" "$MY_CNF_MAIN" 2>/dev/null \
    || { say "including $MY_CNF_DIR from $MY_CNF_MAIN"; printf '\n!includedir %s/\n' "$MY_CNF_DIR" >> "$MY_CNF_MAIN"; }
fi
my_state() { $MY "select concat_ws(' ', @@log_bin+0, @@binlog_format, @@binlog_row_image)"; }
if [ "$(my_state)" != "1 ROW FULL" ] && [ "$DRY_RUN" != 1 ]; then
  say "MariaDB log_bin/binlog_format/binlog_row_image = '$(my_state)' -> '1 ROW FULL', restarting"
  if command -v systemctl >/dev/null && systemctl is-active --quiet mariadb 2>/dev/null; then
    systemctl restart mariadb
  else
    mariadb-admin --no-defaults --protocol=TCP -h 127.0.0.1 -P 3306 -u root shutdown \
      || { say "mariadb-admin shutdown failed"; exit 1; }
    for _ in $(seq 1 120); do pgrep -x mariadbd >/dev/null || break; sleep 0.5; done
    pgrep -x mariadbd >/dev/null && { say "mariadbd still running after 60 s"; exit 1; }
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd \
      || { say "start-stop-daemon failed"; exit 1; }
  fi
  wait_for $MY "select 1" || { say "MariaDB did not come back within 60 s"; exit 1; }
fi
[ "$DRY_RUN" = 1 ] || [ "$($MY "select @@binlog_row_metadata")" = FULL ] \
  || $MY "SET GLOBAL binlog_row_metadata = FULL"

# ---------------- check ----------------
rc=0
say "postgresql wal_level=$($PG "show wal_level") max_replication_slots=$($PG "show max_replication_slots") max_wal_senders=$($PG "show max_wal_senders")"
say "mariadb $($MY "select concat('log_bin=', @@log_bin, ' binlog_format=', @@binlog_format, ' binlog_row_image=', @@binlog_row_image, ' binlog_row_metadata=', @@binlog_row_metadata, ' server_id=', @@server_id)")"
[ "$($PG "show wal_level")" = logical ] || { say "ERROR: PostgreSQL wal_level is not logical"; rc=1; }
[ "$(my_state)" = "1 ROW FULL" ] || { say "ERROR: MariaDB's binary log is not on in ROW format with full images"; rc=1; }
[ "$($MY "select @@binlog_row_metadata")" = FULL ] || { say "ERROR: MariaDB binlog_row_metadata is not FULL"; rc=1; }
exit $rc
