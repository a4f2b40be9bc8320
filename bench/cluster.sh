#!/usr/bin/env bash
# Three-node cluster throughput: three nodes on this machine (127.0.0.1, .2
# and .3), every block replicated to a quorum and re-validated by every node
# before it is acknowledged; `bench http` writes to the leader.
#   bench/cluster.sh [COUNT] [BATCH] [CLIENTS]   (needs `cargo build --release`)
#   TLS=1 bench/cluster.sh ...   node-to-node traffic over mutual TLS
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
B=${2:-1000}
C=${3:-8}
BIN=$PWD/target/release/medledger
W=$(mktemp -d)
PORT=${PORT:-7301}
PIDS=()
trap 'kill "${PIDS[@]}" 2> /dev/null; wait 2> /dev/null; rm -rf "$W"' EXIT
url() { echo "http://127.0.0.$1:$((PORT + $1 - 1))"; }
# Where the other nodes reach node $1, and the flags naming it.
if [ "${TLS:-0}" = 1 ]; then
  peer() { echo "https://127.0.0.$1:$((PORT + 10 + $1))"; }
  place() { echo --cluster-addr "$(peer "$1")" --cluster-api "$(url "$1")"; }
else
  peer() { url "$1"; }
  place() { echo --cluster-addr "$(url "$1")"; }
fi
# shellcheck disable=SC2046
"$BIN" init --data-dir "$W/n1" --origin bench.example/cluster --institution "Klinicki centar Nis" \
  --cluster-id 1 $(place 1) > "$W/init1.txt"
K1=$(sed -n 's/^node key: *//p' "$W/init1.txt")
for i in 2 3; do
  TRUST=()
  [ "${TLS:-0}" = 1 ] && TRUST=(--trust "$K1")
  "$BIN" init --data-dir "$W/n$i" --origin bench.example/cluster --cluster-id "$i" --join "${TRUST[@]}" > "$W/init$i.txt"
done
for i in 1 2 3; do
  if [ "${TLS:-0}" = 1 ]; then export MEDLEDGER_CLUSTER_LISTEN="127.0.0.$i:$((PORT + 10 + i))"; fi
  "$BIN" serve --data-dir "$W/n$i" --listen "127.0.0.$i:$((PORT + i - 1))" > /dev/null 2> "$W/n$i.log" &
  PIDS+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 100); do curl -sf "$(url "$i")/healthz" > /dev/null && break; sleep 0.1; done
done
for i in 2 3; do
  KEY=$(sed -n 's/^node key: *//p' "$W/init$i.txt")
  # shellcheck disable=SC2046
  "$BIN" participant register --admin-key "$W/n1/admin.key" --key "$KEY" --role node \
    --institution "Institution $i" --cluster-id "$i" $(place "$i")
done | "$BIN" submit --url "$(url 1)" --signed - > /dev/null 2>&1
# Wait until all three are voters.
for _ in $(seq 200); do
  V=$(curl -sf "$(url 1)/v1/status" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["cluster"]["voters"]))')
  [ "$V" = 3 ] && break
  sleep 0.1
done
"$BIN" bench http --url "$(url 1)" --admin-key "$W/n1/admin.key" \
  --count "$N" --batch "$B" --concurrency "$C"
sleep 1
for i in 1 2 3; do
  curl -sf "$(url "$i")/v1/status" | python3 -c 'import json,sys; d=json.load(sys.stdin); c=d["cluster"]; print("node", c["id"], c["state"], "log size", d["log_size"], "root", d["log_root"][:16])'
done
