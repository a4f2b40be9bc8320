#!/usr/bin/env bash
# Alternates two medledger builds (A B A B …) on the same HTTP workloads, a
# fresh data directory per run, and prints tx/s and p99 for each run.
#   bench/http_ab.sh OLD_BINARY NEW_BINARY [ROUNDS] [SINGLE_COUNT] [BATCH_COUNT]
set -euo pipefail
A=$1 B=$2 ROUNDS=${3:-3} SINGLE=${4:-60000} BATCH=${5:-300000}
port=17290
tmp=$(mktemp -d)
trap 'kill %1 2>/dev/null || true; rm -rf "$tmp"' EXIT
run() { # binary label
  local bin=$1 label=$2 dir="$tmp/d"
  rm -rf "$dir"
  "$bin" serve --data-dir "$dir" --listen 127.0.0.1:$port > "$tmp/serve.log" 2>&1 &
  until curl -sf http://127.0.0.1:$port/healthz > /dev/null; do sleep 0.1; done
  for w in "32 1 $SINGLE" "8 1000 $BATCH"; do
    set -- $w
    "$bin" bench http --url http://127.0.0.1:$port --concurrency "$1" --batch "$2" \
      --count "$3" --admin-key "$dir/admin.key" --vkey "$(curl -s http://127.0.0.1:$port/v1/status | python3 -c "import json,sys; print(json.load(sys.stdin)[\"vkey\"])")" --json 2>/dev/null \
      | python3 -c "import json,sys; r=json.load(sys.stdin); print('$label', 'c=$1 batch=$2', round(r['tx_per_s']), 'tx/s', 'p99', round(r['p99_ms'],2), 'ms')"
  done
  kill %1; wait %1 2>/dev/null || true
}
for i in $(seq "$ROUNDS"); do
  run "$A" A
  run "$B" B
done
