#!/usr/bin/env bash
# End-to-end import throughput: a CSV of N medical reports into a fresh
# ledger (parse, PII guard and schema, sign, admit, commit with fsync,
# report). Usage: bench/import.sh [N]   (needs `cargo build --release`)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
BIN=target/release/medledger
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
"$BIN" init --data-dir "$W/data" --origin bench.example/import --institution "Dom zdravlja Nis" > /dev/null
"$BIN" keygen --out "$W/doctor.key" > "$W/doctor.pub"
"$BIN" participant register --admin-key "$W/data/admin.key" --key "$(cat "$W/doctor.pub")" \
  --role doctor --institution "Dom zdravlja Nis" > "$W/reg.jsonl"
"$BIN" import --data-dir "$W/data" --quiet "$W/reg.jsonl" 2> /dev/null
python3 bench/reports_csv.py "$N" "$W/reports.csv"
start=$(date +%s.%N)
"$BIN" import --data-dir "$W/data" --key "$W/doctor.key" --quiet "$W/reports.csv"
end=$(date +%s.%N)
python3 -c "import sys; n,s,e=int(sys.argv[1]),float(sys.argv[2]),float(sys.argv[3]); print(f'{n} reports in {e-s:.2f} s: {n/(e-s):,.0f} reports/s')" "$N" "$start" "$end"
