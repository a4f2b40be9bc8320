#!/usr/bin/env bash
# Vital-sign readings through POST /v1/vitals: a fresh node, 64 wearables
# (each registered for its own patient), full NEWS2 reading sets signed in
# advance, sent in batches over keep-alive connections. The node admits,
# commits (fsync) and feeds every reading to the NEWS2 alert view.
#   bench/vitals.sh [COUNT] [BATCH] [CLIENTS]   (needs `cargo build --release`)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
B=${2:-1000}
C=${3:-8}
BIN=target/release/medledger
W=$(mktemp -d)
PORT=${PORT:-7979}
"$BIN" init --data-dir "$W/data" --origin bench.example/vitals --institution "Klinicki centar Nis" > /dev/null
"$BIN" serve --data-dir "$W/data" --listen "127.0.0.1:$PORT" 2> "$W/serve.log" &
NODE=$!
trap 'kill $NODE 2> /dev/null; wait $NODE 2> /dev/null; rm -rf "$W"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" > /dev/null && break; sleep 0.1; done
"$BIN" bench http --url "http://127.0.0.1:$PORT" --admin-key "$W/data/admin.key" \
  --vitals --signers 64 --count "$N" --batch "$B" --concurrency "$C"
# The alert view follows the log: how long until it has read every block?
ADMIN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["public_key"])' "$W/data/admin.key")
TOKEN=$("$BIN" token issue --data-dir "$W/data" --participant "$ADMIN")
python3 - "$PORT" "$TOKEN" <<'PY'
import json, sys, time, urllib.request
port, token = sys.argv[1], sys.argv[2]
def get(path, auth=False):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if auth:
        req.add_header("Authorization", f"Bearer {token}")
    return json.load(urllib.request.urlopen(req))
size = get("/v1/status")["log_size"]
t0 = time.time()
while True:
    a = get("/v1/alerts?limit=1", auth=True)
    if a["as_of"] >= size:
        break
    time.sleep(0.01)
print(f"alert view caught up {time.time() - t0:.2f} s after the last acknowledgement; {a['total']} patients alerting")
PY
