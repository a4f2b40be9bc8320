#!/usr/bin/env bash
# Reference figure for BENCHMARKS.md: the workload of `medledger bench http`
# on PostgreSQL 15 with pgbench. Each transaction is one durable INSERT of the
# same ~300-byte medical report (320 bytes as JCS, as in `bench http`) into a
# table shaped like a medledger record, with fsync=on and
# synchronous_commit=on, over TCP on loopback like the HTTP benchmark.
#
#   bench/postgres.sh [-c CLIENTS] [-j THREADS] [-T SECONDS | -t TXNS] [-b ROWS]
#
#   -c  concurrent clients (default 32)        -j  pgbench threads (default 2)
#   -T  run for SECONDS (default 10)           -t  run TXNS transactions in all
#   -b  rows per transaction (default 1; 1000 mirrors `bench http --batch 1000`)
#
# Idempotent: installs PostgreSQL from Debian if missing, creates its own
# cluster in $PGBENCH_DIR (default /tmp/medledger-pg) on port $PGBENCH_PORT
# (default 55432) once, empties the table before each run, and stops the
# server afterwards (KEEP=1 leaves it running). The last line of output is the
# summary to quote.
set -euo pipefail

CLIENTS=32
THREADS=2
DURATION=10
TXNS=""
ROWS=1
while getopts "c:j:T:t:b:h" opt; do
  case "$opt" in
    c) CLIENTS=$OPTARG ;;
    j) THREADS=$OPTARG ;;
    T) DURATION=$OPTARG; TXNS="" ;;
    t) TXNS=$OPTARG ;;
    b) ROWS=$OPTARG ;;
    *) sed -n '2,22p' "$0"; exit 2 ;;
  esac
done

DIR=${PGBENCH_DIR:-/tmp/medledger-pg}
PORT=${PGBENCH_PORT:-55432}
DB=medledger_bench

as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

pgbin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}

# 1. PostgreSQL itself.
if [ -z "$(pgbin)" ] || [ ! -x "$(pgbin)/pgbench" ]; then
  echo "installing PostgreSQL from Debian..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql postgresql-contrib >&2 ||
    { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql postgresql-contrib >&2; }
fi
BIN=$(pgbin)
VERSION=$("$BIN/postgres" --version | awk '{print $3}')

# 2. Our own cluster, created once.
if [ ! -f "$DIR/PG_VERSION" ]; then
  mkdir -p "$DIR"
  chown postgres: "$DIR"
  chmod 700 "$DIR"
  as_postgres "$BIN/initdb" -D "$DIR" -U postgres --auth=trust --encoding=UTF8 >&2
fi

# 3. Start it with durability on (and say so explicitly).
stop() { as_postgres "$BIN/pg_ctl" -D "$DIR" -m fast -w stop >/dev/null 2>&1 || true; }
if ! as_postgres "$BIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1; then
  as_postgres "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w -o \
    "-p $PORT -c listen_addresses=127.0.0.1 -k $DIR -c fsync=on -c synchronous_commit=on -c full_page_writes=on -c max_connections=200" \
    start >&2
fi
[ "${KEEP:-0}" = 1 ] || trap stop EXIT

PSQL=(as_postgres "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres)
"${PSQL[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1 ||
  "${PSQL[@]}" -c "CREATE DATABASE $DB"
"${PSQL[@]}" -d "$DB" <<'SQL'
CREATE TABLE IF NOT EXISTS records (
  id        bytea PRIMARY KEY,
  header    jsonb NOT NULL,
  payload   jsonb NOT NULL,
  signature bytea NOT NULL,
  created   timestamptz NOT NULL DEFAULT now()
);
TRUNCATE records;
CHECKPOINT;
SQL
SETTINGS=$("${PSQL[@]}" -d "$DB" -tAc "SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync','synchronous_commit','wal_sync_method')")

# 4. The workload: a header and signature like a medledger transaction's, the
# same payload as `bench http`, and a random 32-byte id.
WORK=$(mktemp -d)
chmod 755 "$WORK"
trap 'rm -rf "$WORK"; [ "${KEEP:-0}" = 1 ] || stop' EXIT
HEADER='{"author":"1d75835c2e76ac8ab23e6c9ea25cb1a67bbdc6867142cea8a78ebf7ee429c85b","commitment":"7d67c648944f5f7be71ae4f9d496df5d55f23c3b28eda642c8d40d90d0186089","kind":"medical_report","nonce":"2aa319553825ec0b05572c1cf5bcb4f5","time":1795529099939,"v":1}'
PAYLOAD='{"anamnesis":"Fever 38.5 C for two days, dry cough, myalgia.","diagnoses":["J10.1","I10"],"encounter_date":"2026-11-24","findings":"Pharynx hyperaemic, lungs clear, BP 150/95.","institution":"Klinicki centar Nis","patient":"P0000000000000000000000042","therapy":"Oseltamivir 75 mg twice daily for 5 days; rest; fluids."}'
SIG="decode('0de70022605689920de70022605689920de70022605689920de70022605689920de70022605689920de70022605689920de70022605689920de7002260568992', 'hex')"
if [ "$ROWS" = 1 ]; then
  echo "INSERT INTO records (id, header, payload, signature) VALUES (sha256(uuid_send(gen_random_uuid())), '$HEADER', '$PAYLOAD', $SIG);" > "$WORK/insert.sql"
else
  echo "INSERT INTO records (id, header, payload, signature) SELECT sha256(uuid_send(gen_random_uuid())), '$HEADER', '$PAYLOAD', $SIG FROM generate_series(1, $ROWS);" > "$WORK/insert.sql"
fi
chown -R postgres: "$WORK"

if [ -n "$TXNS" ]; then
  PER_CLIENT=$(( (TXNS + CLIENTS - 1) / CLIENTS ))
  LIMIT=(-t "$PER_CLIENT")
  WHAT="$((PER_CLIENT * CLIENTS)) txns"
else
  LIMIT=(-T "$DURATION")
  WHAT="${DURATION} s"
fi
(cd "$WORK" && as_postgres "$BIN/pgbench" -n -h 127.0.0.1 -p "$PORT" -U postgres \
  -c "$CLIENTS" -j "$THREADS" "${LIMIT[@]}" -f insert.sql -l --log-prefix="$WORK/lat" "$DB") \
  > "$WORK/out.txt" 2> "$WORK/err.txt" || { cat "$WORK/err.txt" >&2; exit 1; }
cat "$WORK/out.txt" >&2

TPS=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$WORK/out.txt" | head -1)
FAILED=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$WORK/out.txt")
# Per-transaction log: column 3 is the latency in microseconds.
read -r P50 P99 MAX N < <(cat "$WORK"/lat.* | awk '{print $3}' | sort -n |
  awk '{v[NR]=$1} END {i50=int(NR*0.50); i99=int(NR*0.99); if (i50<1) i50=1; if (i99<1) i99=1;
       printf "%.2f %.2f %.2f %d\n", v[i50]/1000, v[i99]/1000, v[NR]/1000, NR}')
ROWS_PER_S=$(awk -v t="$TPS" -v r="$ROWS" 'BEGIN {printf "%.0f", t * r}')
"${PSQL[@]}" -d "$DB" -tAc "SELECT count(*) FROM records" > "$WORK/count.txt"
echo "postgresql $VERSION ($SETTINGS): ${ROWS_PER_S} rows/s, $(printf '%.0f' "$TPS") commits/s, ${ROWS} row(s) of a 320-byte report per commit, ${CLIENTS} clients (-j ${THREADS}), ${WHAT}; commit latency p50 ${P50} ms p99 ${P99} ms max ${MAX} ms; ${N} commits, ${FAILED:-0} failed, $(cat "$WORK/count.txt") rows in table"
