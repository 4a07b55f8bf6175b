#!/usr/bin/env bash
# migrate.sh — a whole database, MariaDB → PostgreSQL: Ferry through the tunnel
# beside pgloader, measured in the same run.
#
# 1. Builds the release binary.
# 2. Makes the MariaDB source `bench_migrate` from bench/migrate-source.sql: 25
#    tables, about 6.3M rows at SCALE=1 (order_lines 2.5M, orders 1M, events 800k,
#    and 22 small and medium tables), primary keys (4 composite), AUTO_INCREMENT,
#    unique and secondary indexes, 34 foreign keys with ON DELETE/UPDATE actions,
#    NOT NULL, defaults (CURRENT_TIMESTAMP, ON UPDATE), and INT, BIGINT, SMALLINT,
#    DECIMAL, VARCHAR, CHAR, TEXT, DATETIME(n), TIMESTAMP(n), DATE, TINYINT(1),
#    ENUM, JSON and DOUBLE columns. Deterministic; skipped when the source
#    already holds this version at this scale (FORCE=1 rebuilds it). It records
#    per-table row counts and checksums, the data size (the tables as text, see
#    below) and the source's indexes and foreign keys in
#    $BENCH_WORK/migrate.bench_migrate.env.
# 3. RUNS times, interleaved, each tool into its own PostgreSQL database, dropped
#    and created again before the run, then CHECKPOINT and sync, then the clock:
#    ferry     `ferry broker run` and `ferry agent run` as separate processes on
#              loopback (mutual TLS, QUIC, zstd-1), `ferry job submit` of one job:
#              reader `datasource: bench/mig`, `tables: ["*"]`; writer schema
#              public, `createTable: true`; channel $CHANNEL. Timed from submit
#              until the job has ended (loads, indexes, identities, foreign keys).
#              Peak RSS is each process's VmHWM; broker and agent start anew
#              for each run.
#    pgloader  `pgloader --dynamic-space-size 4096` with `include drop, create
#              tables, create indexes, foreign keys, reset sequences`, schema
#              renamed to public; wall time and max RSS from /usr/bin/time.
# 4. Verifies each run: per table the row count and a checksum (sum of the key,
#    the exact sum of a DECIMAL column and the epoch sum of a DATETIME/TIMESTAMP
#    column where the table has them) against the source; and compares the
#    target catalog's indexes and foreign keys (columns, uniqueness, ON DELETE /
#    ON UPDATE) with the source's. A run whose rows differ is FAIL and is left
#    out of the medians; missing indexes or keys are shown, not hidden. A run
#    during which the VM stood still (no top frame for over 5 s) is STALL and is
#    left out too.
#
# Env: RUNS=1  CHANNEL=4  SCALE=1  TOOLS="ferry pgloader"  COMPRESSION=zstd:1
#      PGLOADER_HEAP=4096  FORCE=1 (rebuild the source)  GEN_ONLY=1 (only make
#      the source)  CLEAN=1 (drop the source at the end too)  KEEP_TARGETS=1
#      (leave the last run's target databases)
#      QUIET_TIMEOUT=900 (s to wait, before each run, for other processes to go idle)
#      QUIC_PORT=17920 ADMIN_PORT=17921
# Output: $BENCH_WORK/migrate.<time>/{runs.tsv,summary.txt,logs}
#         ($BENCH_WORK is /tmp/ferry-bench; migrate.latest links to the newest)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
# shellcheck disable=SC1091
. "$SHARED/lib/common.sh"
# shellcheck disable=SC1091
. "$HERE/lib.sh"

RUNS=${RUNS:-1}
CHANNEL=${CHANNEL:-4}
SCALE=${SCALE:-1}
TOOLS=${TOOLS:-ferry pgloader}
COMPRESSION=${COMPRESSION:-zstd:1}
PGLOADER_HEAP=${PGLOADER_HEAP:-4096}
QUIC_PORT=${QUIC_PORT:-17920}
ADMIN_PORT=${ADMIN_PORT:-17921}
SRC_DB=bench_migrate
MIG_GEN_VERSION=1   # bump when migrate-source.sql or the checks below change meaning
SQL_FILE=$HERE/migrate-source.sql
META=$BENCH_WORK/migrate.$SRC_DB.env
my() { $MYSQL -N -B "$@"; }
pg() { local db=$1; shift; $PSQL -d "$db" -At "$@"; }

# ---- the tables: name, base rows (SCALE=1), key sum, DECIMAL column, time column ----
# The key sum and the columns are summed in both databases; "-" = none.
TABLE_SPECS="
countries        200      count(phone_code)                       -           -
currencies       30       sum(decimals)                           -           -
settings         50       count(value)                            -           updated_at
regions          2000     sum(id)                                 -           -
warehouses       40       sum(id)                                 -           created_at
employees        2000     sum(id)                                 salary      -
categories       500      sum(id)                                 -           -
brands           1000     sum(id)                                 -           -
suppliers        2000     sum(id)                                 -           -
tags             1000     sum(id)                                 -           -
coupons          5000     sum(max_uses)                           discount_pct created_at
products         40000    sum(id)                                 price       created_at
product_tags     100000   sum(product_id*10000+tag_id)            -           added_at
price_history    100000   sum(id)                                 price       -
inventory        150000   sum(warehouse_id*1000000+product_id)    -           updated_at
customers        250000   sum(id)                                 -           created_at
addresses        300000   sum(id)                                 -           -
orders           1000000  sum(id)                                 total       placed_at
order_lines      2500000  sum(order_id*100+line_no)               unit_price  -
order_coupons    60000    sum(order_id)                           -           applied_at
payments         450000   sum(id)                                 amount      paid_at
shipments        300000   sum(id)                                 -           shipped_at
reviews          100000   sum(id)                                 -           created_at
events           800000   sum(id)                                 -           occurred_at
audit_log        120000   sum(id)                                 -           changed_at
"
# Row counts at SCALE: tables of more than 10,000 rows scale, lookups do not;
# order_lines is 2.5 x orders (its generator needs that).
table_rows() {
  echo "$TABLE_SPECS" | awk -v s="$SCALE" 'NF {
    n = ($2 > 10000) ? int($2 * s + 0.5) : $2; if (n < 1) n = 1; rows[$1] = n; order[++k] = $1 }
    END { rows["order_lines"] = int(rows["orders"] * 5 / 2);
          for (i = 1; i <= k; i++) print order[i], rows[order[i]] }'
}
TABLE_NAMES=$(echo "$TABLE_SPECS" | awk 'NF{print $1}')
NTABLES=$(echo "$TABLE_NAMES" | wc -l)

# One statement per table and dialect, each printing "table|count|keysum|decsum|timesum"
# (separate statements, so a table missing in a target fails alone).
checks_sql() {  # $1: my | pg
  local t key dec ts d e
  echo "$TABLE_SPECS" | while read -r t _ key dec ts; do
    [ -n "$t" ] || continue
    if [ "$1" = my ]; then
      d=$([ "$dec" = - ] && echo 0 || echo "round(coalesce(sum($dec),0),2)")
      e=$([ "$ts" = - ] && echo 0 || echo "coalesce(sum(floor(unix_timestamp($ts))),0)")
      printf "select concat_ws('|','%s',count(*),coalesce(%s,0),%s,%s) from %s;\n" "$t" "$key" "$d" "$e" "$t"
    else
      d=$([ "$dec" = - ] && echo 0 || echo "round(coalesce(sum($dec),0)::numeric,2)")
      e=$([ "$ts" = - ] && echo 0 || echo "coalesce(sum(floor(extract(epoch from $ts)))::bigint,0)")
      printf "select concat_ws('|','%s',count(*),coalesce(%s,0),%s,%s) from public.%s;\n" "$t" "$key" "$d" "$e" "$t"
    fi
  done
}
# Index and foreign-key signatures, one per line, sorted: "table(col,..)P|U|" and
# "table(col,..)>reftable:ON DELETE:ON UPDATE" (R = RESTRICT or NO ACTION, C, N, D).
my_index_sigs() {
  my -e "select concat(table_name,'(',group_concat(column_name order by seq_in_index separator ','),')',
      if(index_name='PRIMARY','P',if(non_unique=0,'U','')))
    from information_schema.statistics where table_schema='$SRC_DB' group by table_name, index_name" | LC_ALL=C sort
}
my_fk_sigs() {
  my -e "select concat(k.table_name,'(',group_concat(k.column_name order by k.ordinal_position separator ','),')>',
      k.referenced_table_name,':',
      case r.delete_rule when 'CASCADE' then 'C' when 'SET NULL' then 'N' when 'SET DEFAULT' then 'D' else 'R' end,':',
      case r.update_rule when 'CASCADE' then 'C' when 'SET NULL' then 'N' when 'SET DEFAULT' then 'D' else 'R' end)
    from information_schema.key_column_usage k join information_schema.referential_constraints r
      on r.constraint_schema = k.constraint_schema and r.constraint_name = k.constraint_name and r.table_name = k.table_name
    where k.table_schema='$SRC_DB' and k.referenced_table_name is not null
    group by k.table_name, k.constraint_name, k.referenced_table_name, r.delete_rule, r.update_rule" | LC_ALL=C sort
}
pg_index_sigs() {
  pg "$1" -c "select c.relname || '(' || (select string_agg(a.attname, ',' order by k.i)
      from unnest(i.indkey) with ordinality k(attnum, i) join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum)
      || ')' || case when i.indisprimary then 'P' when i.indisunique then 'U' else '' end
    from pg_index i join pg_class c on c.oid = i.indrelid join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'public'" | LC_ALL=C sort
}
pg_fk_sigs() {
  pg "$1" -c "select c.conrelid::regclass::text || '(' || (select string_agg(a.attname, ',' order by k.i)
      from unnest(c.conkey) with ordinality k(attnum, i) join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.attnum)
      || ')>' || c.confrelid::regclass::text || ':' ||
      case c.confdeltype when 'c' then 'C' when 'n' then 'N' when 'd' then 'D' else 'R' end || ':' ||
      case c.confupdtype when 'c' then 'C' when 'n' then 'N' when 'd' then 'D' else 'R' end
    from pg_constraint c join pg_namespace n on n.oid = c.connamespace
    where c.contype = 'f' and n.nspname = 'public'" | LC_ALL=C sort
}

# ---- build ----
[ "${GEN_ONLY:-0}" = 1 ] ||
  (cd "$ROOT" && cargo build --release -q -p ferry) || { echo "release build failed" >&2; exit 1; }
FERRY=${CARGO_TARGET_DIR:-$ROOT/target}/release/ferry
[ "${GEN_ONLY:-0}" = 1 ] || command -v pgloader >/dev/null || { echo "pgloader is missing: apt-get install -y pgloader time" >&2; exit 1; }

# ---- the source ----
GEN_TAG="v$MIG_GEN_VERSION scale=$SCALE sql=$(sha1sum "$SQL_FILE" | cut -c1-12)"
source_is_current() {
  [ "${FORCE:-0}" != 1 ] && [ -f "$META" ] || return 1
  [ "$(awk -F= '$1=="GEN_TAG"{print substr($0, 9)}' "$META")" = "\"$GEN_TAG\"" ] || return 1
  # the database is still there with every table at its row count
  local want have
  want=$(table_rows | awk '{print $1"|"$2}' | LC_ALL=C sort)
  have=$(my -D "$SRC_DB" -e "SET time_zone='+00:00'; $(checks_sql my)" 2>/dev/null | awk -F'|' '{print $1"|"$2}' | LC_ALL=C sort)
  [ "$want" = "$have" ]
}
generate_source() {
  log "generating MariaDB $SRC_DB ($GEN_TAG)"
  local t0 sql
  t0=$(now)
  my -e "DROP DATABASE IF EXISTS $SRC_DB; CREATE DATABASE $SRC_DB CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci" || return 1
  # @n_<table> -> that table's row count
  sql=$(table_rows | awk '{printf "s/@n_%s\\b/%s/g;", $1, $2}')
  sed -e "$sql" "$SQL_FILE" | my -D "$SRC_DB" || return 1
  my -D "$SRC_DB" -e "ANALYZE TABLE $(echo "$TABLE_NAMES" | paste -sd, -)" >/dev/null || return 1
  log "generated in $(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.0f", b-a}') s"
}
write_meta() {
  log "measuring the source (row counts, checksums, text size)"
  local checks text=0 t n b
  checks=$(my -D "$SRC_DB" -e "SET time_zone='+00:00'; $(checks_sql my)") || return 1
  # Data bytes: every table as tab-separated text (mariadb --batch), the unit of
  # the harness's COPY-text MB; and InnoDB's data_length for comparison.
  for t in $TABLE_NAMES; do
    b=$(my -D "$SRC_DB" --quick -e "SET time_zone='+00:00'; select * from $t" | wc -c)
    text=$((text + b))
  done
  n=$(echo "$checks" | awk -F'|' '{s+=$2} END{print s}')
  {
    echo "GEN_TAG=\"$GEN_TAG\""
    echo "SRC_ROWS=$n"
    echo "SRC_TEXT_BYTES=$text"
    echo "SRC_DATA_LENGTH=$(my -e "select sum(data_length) from information_schema.tables where table_schema='$SRC_DB'")"
    echo "SRC_INDEX_LENGTH=$(my -e "select sum(index_length) from information_schema.tables where table_schema='$SRC_DB'")"
    echo "SRC_CHECKS=\"$(echo "$checks" | LC_ALL=C sort | tr '\n' ' ')\""
    echo "SRC_INDEXES=$(my_index_sigs | wc -l)"
    echo "SRC_FKS=$(my_fk_sigs | wc -l)"
  } > "$META.tmp" && mv "$META.tmp" "$META"
}
if source_is_current; then
  log "source $SRC_DB is current ($GEN_TAG), not generated again"
else
  generate_source || { echo "generating the source failed" >&2; exit 1; }
  write_meta || { echo "measuring the source failed" >&2; exit 1; }
fi
[ "${GEN_ONLY:-0}" = 1 ] && { cat "$META"; exit 0; }
# shellcheck disable=SC1090
. "$META"   # GEN_TAG SRC_ROWS SRC_TEXT_BYTES SRC_DATA_LENGTH SRC_INDEX_LENGTH SRC_CHECKS SRC_INDEXES SRC_FKS

OUT=$BENCH_WORK/migrate.$(date +%Y%m%dT%H%M%S)
mkdir -p "$OUT"
cd "$OUT" || exit 1
echo "$SRC_CHECKS" | tr ' ' '\n' | grep . > src.checks
my_index_sigs > src.indexes
my_fk_sigs > src.fks

# ---- Ferry: PKI, configs, job ----
ferry_pki 127.0.0.1,localhost || { echo "ferry certs failed" >&2; exit 1; }
ferry_configs "127.0.0.1:$QUIC_PORT" "127.0.0.1:$QUIC_PORT" jobs "${TRANSPORT:-}" "[sources.mig]
kind = \"mysql\"
url = \"mysql://$MY_USER@$MY_HOST:$MY_PORT/$SRC_DB\""
cat > job_ferry.yaml <<EOF
reader:
  name: mysqlreader
  parameter:
    datasource: bench/mig
    tables: ["*"]
writer:
  name: postgresqlwriter
  parameter:
    url: postgres://$PG_USER@$PG_HOST:$PG_PORT/${SRC_DB}_ferry
    schema: public
    createTable: true
setting:
  speed: {channel: $CHANNEL}
EOF

# ---- pgloader load file ----
PGL_ROOT=$BENCH_WORK/pgloader
mkdir -p "$PGL_ROOT"
cat > pgloader.load <<EOF
LOAD DATABASE
  FROM mysql://$MY_USER@$MY_HOST:$MY_PORT/$SRC_DB
  INTO postgresql://$PG_USER@$PG_HOST:$PG_PORT/${SRC_DB}_pgloader
  WITH include drop, create tables, create indexes, foreign keys, reset sequences
  ALTER SCHEMA '$SRC_DB' RENAME TO 'public';
EOF

# ---- helpers ----
hwm_kib() { awk '/^VmHWM:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14+$15)/t}' "/proc/$1/stat" 2>/dev/null || echo 0; }
stop() { kill -TERM "$1" 2>/dev/null; for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -KILL "$1" 2>/dev/null; }
calib() { local a b; a=$(now); perl -e 'my $x=0; $x+=$_*2 for 1..8_000_000'; b=$(now); awk -v a="$a" -v b="$b" 'BEGIN{printf "%.3f", b-a}'; }
# CPU by process during a run: `top -b -d 1` in the background; afterwards the
# CPU seconds of the databases, of the tool and of everything else on the machine
# (another build or test run on this 2-core VM shows up as other_cpu_s).
SAMPLER=""
start_sampler() { top -b -d 1 -w 512 > "$1" 2>/dev/null & SAMPLER=$!; }
stop_sampler() { [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null; SAMPLER=""; }
cpu_by_process() {  # FILE -> "postgres mariadbd tool other" in CPU seconds (frames after the first)
  awk '/^top -/ {f++; next} f > 1 && $1 ~ /^[0-9]+$/ && NF >= 12 {
         c = $12; v = $9 / 100
         if (c == "postgres") pg += v; else if (c == "mariadbd") my += v
         else if (c == "ferry" || c == "pgloader" || c == "sbcl") tool += v
         else if (c != "top" && c != "bash" && c != "awk" && c != "sleep" && c != "time") other += v }
       END { printf "%.1f %.1f %.1f %.1f\n", pg, my, tool, other }' "$1"
}
# Before each run, wait until the rest of the machine is idle (under 0.15 of a core
# over 2 s), at most QUIET_TIMEOUT s: a build or test run of someone else on this
# 2-core VM takes a core from whichever tool runs then.
busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
wait_quiet() {
  local deadline=$((SECONDS + ${QUIET_TIMEOUT:-900})) a b
  while :; do
    a=$(busy_ticks); sleep 2; b=$(busy_ticks)
    awk -v a="$a" -v b="$b" -v t="$TCK" 'BEGIN{exit !((b-a)/t/2 < 0.15)}' && return 0
    if [ $SECONDS -ge $deadline ]; then log "the machine is still busy (other processes); running anyway"; return 0; fi
    sleep 5
  done
}
TCK=$(getconf CLK_TCK)
# The longest gap between two of top's 1-s frames: this VM's host sometimes pauses
# it (a snapshot: the kernel logs "crng reseeded due to virtual machine fork"),
# which stops every process and the sampler alike but not the wall clock.
max_gap() {
  awk '/^top -/ { split($3, h, ":"); t = h[1]*3600 + h[2]*60 + h[3]; if (p != "" && t - p > g) g = t - p; p = t }
       END { print g + 0 }' "$1"
}
target_db() { echo "${SRC_DB}_$1"; }
prepare_target() {
  local db
  db=$(target_db "$1")
  pg postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null &&
    pg postgres -c "CREATE DATABASE $db" >/dev/null &&
    pg postgres -c "CHECKPOINT" >/dev/null && sync
}
drop_targets() {
  local tool
  for tool in ferry pgloader; do pg postgres -c "DROP DATABASE IF EXISTS $(target_db "$tool") WITH (FORCE)" >/dev/null 2>&1; done
}
BPID="" APID=""
cleanup() {
  stop_sampler
  [ -n "$APID" ] && stop "$APID"
  [ -n "$BPID" ] && stop "$BPID"
  [ "${KEEP_TARGETS:-0}" = 1 ] || drop_targets
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# verify TOOL RUN: writes checks/indexes/fks of the target, prints
# "status rows indexes idx_missing fks fk_missing"
verify() {
  local db p="$1.$2" bad rows nidx nfk imiss fmiss iextra
  db=$(target_db "$1")
  checks_sql pg | pg "$db" -v ON_ERROR_STOP=0 2> "$p.verify.err" | LC_ALL=C sort > "$p.checks"
  {
    pg_index_sigs "$db" > "$p.indexes"
    pg_fk_sigs "$db" > "$p.fks"
    # the column types each tool chose (for the record; not checked)
    pg "$db" -F' ' -c "select table_name, column_name, data_type, coalesce(udt_name, '') from information_schema.columns
      where table_schema = 'public' order by 1, 2" > "$p.types"
  } 2>> "$p.verify.err"
  rows=$(awk -F'|' '{s+=$2} END{print s+0}' "$p.checks")
  bad=$(awk -F'|' 'NR==FNR{src[$1]=$0; next} {tgt[$1]=$0} END{for (t in src) if (src[t]!=tgt[t]) print t}' \
          src.checks "$p.checks" | LC_ALL=C sort | paste -sd, -)
  nidx=$(wc -l < "$p.indexes"); nfk=$(wc -l < "$p.fks")
  imiss=$(LC_ALL=C comm -23 src.indexes "$p.indexes" | wc -l)
  iextra=$(LC_ALL=C comm -13 src.indexes "$p.indexes" | paste -sd' ' -)
  fmiss=$(LC_ALL=C comm -23 src.fks "$p.fks" | wc -l)
  LC_ALL=C comm -3 src.indexes "$p.indexes" > "$p.indexes.diff"
  LC_ALL=C comm -3 src.fks "$p.fks" > "$p.fks.diff"
  local status=ok
  [ -n "$bad" ] && status="FAIL(tables:$bad)"
  [ -n "$iextra" ] && log "$1 run $2: indexes in the target that the source has not: $iextra"
  echo "$status $rows $nidx $imiss $nfk $fmiss"
}

# ---- the runs ----
RUNS_TSV=$OUT/runs.tsv
printf 'tool\trun\ttables\trows\tseconds\tbroker_rss_kib\tagent_rss_kib\tpgloader_rss_kib\tcpu_s\twire_bytes\tindexes\tidx_missing\tfks\tfk_missing\tcalib_s\tstatus\tpostgres_cpu_s\tmariadb_cpu_s\tother_cpu_s\n' > "$RUNS_TSV"
log "migrate: $SRC_DB $NTABLES tables $SRC_ROWS rows, text $SRC_TEXT_BYTES B; runs=$RUNS channel=$CHANNEL out=$OUT"

run_ferry() {  # sets SECS RC BRSS ARSS CPU WIRE
  local r=$1 t0 t1 id
  "$FERRY" broker run -c broker.toml > "broker.$r.log" 2>&1 &
  BPID=$!
  sleep 0.3
  "$FERRY" agent run -c agent.toml > "agent.$r.log" 2>&1 &
  APID=$!
  for _ in $(seq 100); do
    "$FERRY" broker agents --admin "127.0.0.1:$ADMIN_PORT" 2>/dev/null | grep -q "bench-01.*mig" && break
    sleep 0.1
  done
  t0=$(now)
  "$FERRY" job --admin "127.0.0.1:$ADMIN_PORT" submit --quiet --compression "$COMPRESSION" job_ferry.yaml > "ferry.$r.summary.txt" 2> "ferry.$r.submit.err"
  RC=$?
  t1=$(now)
  ARSS=$(hwm_kib "$APID"); BRSS=$(hwm_kib "$BPID")
  CPU=$(awk -v a="$(cpu_s "$APID")" -v b="$(cpu_s "$BPID")" 'BEGIN{printf "%.2f", a+b}')
  id=$("$FERRY" job --admin "127.0.0.1:$ADMIN_PORT" list 2>/dev/null | awk 'NR==2{print $1}')
  [ -n "$id" ] && "$FERRY" job --admin "127.0.0.1:$ADMIN_PORT" logs "$id" > "ferry.$r.joblog.txt" 2>&1
  stop "$APID"; stop "$BPID"; APID=""; BPID=""
  SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
  # phases from the broker's log: submitted -> last table loaded and indexed -> foreign keys added, ended
  PHASES=$(awk 'function t(s) { return substr(s,12,2)*3600 + substr(s,15,2)*60 + substr(s,18,9) }
    /job submitted/ {a = t($1)} /table done/ {b = t($1)} /job ended/ {c = t($1)}
    END { if (a && b && c) printf "tables_loaded_and_indexed=%.1f foreign_keys=%.1f", b-a, c-b }' "broker.$r.log")
  WIRE=$(awk -F': ' '/^Bytes on the wire/{print $2}' "ferry.$r.summary.txt" | awk '{printf "%d", $1*1e6}')
}
run_pgloader() {  # sets SECS RC PRSS CPU
  local r=$1 t0 t1
  t0=$(now)
  /usr/bin/time -f '%M %U %S' -o "pgloader.$r.time" pgloader --dynamic-space-size "$PGLOADER_HEAP" \
    --root-dir "$PGL_ROOT" --logfile "pgloader.$r.log" pgloader.load > "pgloader.$r.out" 2>&1 < /dev/null
  RC=$?
  t1=$(now)
  SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
  read -r PRSS u s < "pgloader.$r.time" 2>/dev/null || { PRSS=0; u=0; s=0; }
  CPU=$(awk -v a="$u" -v b="$s" 'BEGIN{printf "%.2f", a+b}')
  # phases from pgloader's report (its own clocks; the index builds overlap the loads)
  PHASES=$(awk 'function sec(s) { m = 0; if (s ~ /m/) { split(s, x, "m"); m = x[1]; s = x[2] } sub(/s$/, "", s); return m*60 + s }
    /COPY Threads Completion/ {c = sec($NF)} /Create Indexes/ {i = sec($NF)} /Create Foreign Keys/ {f = sec($NF)}
    END { if (c != "") printf "copy_threads=%.1f create_indexes=%.1f foreign_keys=%.1f", c, i, f }' "pgloader.$r.out")
}

for run in $(seq 1 "$RUNS"); do
  for tool in $TOOLS; do
    prepare_target "$tool" || { log "preparing $(target_db "$tool") failed"; exit 1; }
    wait_quiet
    cal=$(calib)
    SECS=0 RC=1 BRSS=0 ARSS=0 PRSS=0 CPU=0 WIRE=0 PHASES=""
    case $tool in ferry|pgloader) ;; *) log "unknown tool $tool"; continue ;; esac
    start_sampler "$tool.$run.top"
    "run_$tool" "$run"
    stop_sampler
    read -r pgcpu mycpu _ othercpu <<<"$(cpu_by_process "$tool.$run.top")"
    read -r status rows nidx imiss nfk fmiss <<<"$(verify "$tool" "$run")"
    gap=$(max_gap "$tool.$run.top")
    [ "$status" = ok ] && [ "$gap" -gt 5 ] && status="STALL(vm_paused_${gap}s)"
    if [ "$RC" -ne 0 ]; then
      why=$( { [ "$tool" = ferry ] && tail -n1 "ferry.$run.summary.txt"; [ "$tool" = pgloader ] && tail -n1 "pgloader.$run.out"; } | tr '\t ' '__' | cut -c1-100)
      status="FAIL(exit=$RC:$why)"
    fi
    ntab=$(awk -F'|' '$2>0' "$tool.$run.checks" | wc -l)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$run" "$ntab" "$rows" "$SECS" \
      "$BRSS" "$ARSS" "$PRSS" "$CPU" "${WIRE:-0}" "$nidx" "$imiss" "$nfk" "$fmiss" "$cal" "$status" "$pgcpu" "$mycpu" "$othercpu" >> "$RUNS_TSV"
    printf '%s\t%s\t%s\n' "$tool" "$run" "$PHASES" >> "$OUT/phases.tsv"
    log "$tool run $run: ${SECS}s ($PHASES) rows=$rows idx=$nidx (missing $imiss) fks=$nfk (missing $fmiss) rss broker=$((BRSS/1024)) agent=$((ARSS/1024)) pgloader=$((PRSS/1024)) MiB cpu=${CPU}s postgres=${pgcpu}s mariadb=${mycpu}s other=${othercpu}s calib=${cal}s $status"
  done
done

# ---- summary: medians over verified runs ----
sel() { awk -F'\t' -v t="$1" -v c="$2" 'NR>1 && $1==t && $16=="ok"{print $c}' "$RUNS_TSV"; }
maxc() { awk -F'\t' -v t="$1" -v c="$2" 'NR>1 && $1==t && $16=="ok"{if ($c>m) m=$c} END{print m+0}' "$RUNS_TSV"; }
{
  printf '# whole database MariaDB %s -> PostgreSQL: %s tables, %s rows, data %.1f MB as text (mariadb --batch; InnoDB data_length %.1f MB)\n' \
    "$SRC_DB" "$NTABLES" "$SRC_ROWS" "$(awk -v b="$SRC_TEXT_BYTES" 'BEGIN{print b/1e6}')" "$(awk -v b="$SRC_DATA_LENGTH" 'BEGIN{print b/1e6}')"
  printf '# source: %s indexes, %s foreign keys; runs=%s channel=%s compression=%s; %s, %s cores, %s\n' \
    "$SRC_INDEXES" "$SRC_FKS" "$RUNS" "$CHANNEL" "$COMPRESSION" "$(hostname)" "$(nproc)" "$(date -u +%FT%TZ)"
  awk -F'\t' 'NR>1{print $15}' "$RUNS_TSV" | sort -g | awk '{a[NR]=$1} END{if(NR) printf "# cpu probe before each run (perl loop, s; higher = slower VM): median %s min %s max %s\n", a[int((NR+1)/2)], a[1], a[NR]}'
  printf '# %-10s %6s %9s %9s %9s %8s %11s %11s %8s %8s %9s %7s %7s  %s\n' tool tables rows seconds rows_per_s MB_per_s broker_MiB agent_MiB tool_MiB cpu_s wire_MB indexes fks ok
  for tool in $TOOLS; do
    all=$(awk -F'\t' -v t="$tool" 'NR>1 && $1==t' "$RUNS_TSV" | wc -l)
    [ "$all" -gt 0 ] || continue
    okn=$(sel "$tool" 1 | wc -l)
    if [ "$okn" -eq 0 ]; then
      printf '%-12s %6s %9s %9s %9s %8s %11s %11s %8s %8s %9s %7s %7s  FAIL %s\n' "$tool" - - - - - - - - - - - - \
        "$(awk -F'\t' -v t="$tool" 'NR>1 && $1==t{print $16}' "$RUNS_TSV" | sort -u | paste -sd' ' -)"
      continue
    fi
    s=$(sel "$tool" 5 | median)
    awk -v t="$tool" -v nt="$(sel "$tool" 3 | median)" -v r="$(sel "$tool" 4 | median)" -v s="$s" -v b="$SRC_TEXT_BYTES" \
      -v br="$(maxc "$tool" 6)" -v ar="$(maxc "$tool" 7)" -v pr="$(maxc "$tool" 8)" -v c="$(sel "$tool" 9 | median)" \
      -v w="$(sel "$tool" 10 | median)" -v ni="$(sel "$tool" 11 | median)" -v im="$(sel "$tool" 12 | median)" \
      -v nf="$(sel "$tool" 13 | median)" -v fm="$(sel "$tool" 14 | median)" -v ok="$okn/$all" -v si="$SRC_INDEXES" -v sf="$SRC_FKS" \
      'function mib(k) { return (k > 0) ? sprintf("%.1f", k/1024) : "-" }
       BEGIN { printf "%-12s %6d %9d %9.2f %9.0f %8.1f %11s %11s %8s %8.1f %9s %7s %7s  %s\n", t, nt, r, s, r/s, b/1e6/s,
         mib(br), mib(ar), mib(pr), c, (w > 0) ? sprintf("%.1f", w/1e6) : "-",
         ni "/" si, nf "/" sf, ok ((im > 0 || fm > 0) ? sprintf(" (missing: %d indexes, %d fks)", im, fm) : "") }'
  done
  f=$(sel ferry 5 | median); p=$(sel pgloader 5 | median)
  if [ -n "$f" ] && [ -n "$p" ] && [ "$f" != nan ] && [ "$p" != nan ]; then
    awk -v f="$f" -v p="$p" 'BEGIN{printf "# ratio: Ferry wall / pgloader wall = %.2f (%.2f s / %.2f s; target <= 0.5); pgloader / Ferry = %.2fx\n", f/p, f, p, p/f}'
  fi
  echo "# CPU seconds during the runs (top -b -d 1), medians: tool's own / PostgreSQL / MariaDB / other processes on the machine:"
  for tool in $TOOLS; do
    [ "$(sel "$tool" 1 | wc -l)" -gt 0 ] || continue
    printf '#   %-10s %6.1f / %6.1f / %6.1f / %6.1f\n' "$tool" "$(sel "$tool" 9 | median)" "$(sel "$tool" 17 | median)" "$(sel "$tool" 18 | median)" "$(sel "$tool" 19 | median)"
  done
  echo "# seconds: median wall time of verified runs, from submit (Ferry) or start (pgloader) to the end, indexes and foreign keys included"
  echo "# MB_per_s: the source's tables as mariadb --batch text ($SRC_TEXT_BYTES B) / seconds; RSS: max VmHWM (Ferry broker, agent) / max RSS (pgloader) over runs"
  echo "# indexes, fks: in the target's catalog / in the source's (MariaDB counts the index it adds for a foreign key); diffs in $OUT/*.diff"
  echo "# phases (s) of each run:"
  sed 's/^/#   /' "$OUT/phases.tsv"
  echo "# ferry: $FERRY job submit job_ferry.yaml (reader datasource bench/mig tables [\"*\"], writer schema public createTable true, channel $CHANNEL)"
  echo "# pgloader: pgloader --dynamic-space-size $PGLOADER_HEAP pgloader.load (include drop, create tables, create indexes, foreign keys, reset sequences)"
} | tee "$OUT/summary.txt"
ln -sfn "$OUT" "$BENCH_WORK/migrate.latest"

if [ "${CLEAN:-0}" = 1 ]; then
  log "CLEAN=1: dropping the source $SRC_DB"
  my -e "DROP DATABASE IF EXISTS $SRC_DB" && rm -f "$META"
fi
