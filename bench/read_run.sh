#!/usr/bin/env bash
# One run of `medledger bench read` against a fresh single node: starts
# NODE_BINARY on a new data directory, lets BENCH_BINARY (a build that has
# `bench read`; it can drive an older node, whose token file it writes)
# commit the records and read them, prints the bench's JSON line, stops the
# node and waits for it (so the node's CPU counts in this script's own).
#   bench/read_run.sh NODE_BINARY BENCH_BINARY [COUNT] [CONCURRENCY] [PORT]
set -euo pipefail
node=$1 bench=$2 count=${3:-100000} clients=${4:-32} port=${5:-17390}
tmp=$(mktemp -d)
"$node" serve --data-dir "$tmp/d" --listen 127.0.0.1:$port > "$tmp/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
until curl -sf http://127.0.0.1:$port/healthz > /dev/null; do sleep 0.1; done
vkey=$(curl -s http://127.0.0.1:$port/v1/status | python3 -c 'import json,sys; print(json.load(sys.stdin)["vkey"])')
"$bench" bench read --url http://127.0.0.1:$port --data-dir "$tmp/d" --vkey "$vkey" \
  --concurrency "$clients" --count "$count" --records 1000 --json
