#!/usr/bin/env bash
# Access tokens with a client we did not write (tests/smart/client.py,
# PyJWT and cryptography from PyPI), on real processes: `medledger demo`
# seeds a data directory, a node serves it, and the client obtains a token
# for the demo's integration account with a signed assertion and reads with
# it. Then `medledger token request` does the same from the CLI.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
cargo build --locked -q -p medledger
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/medledger"
WORK=$(mktemp -d)
trap 'kill $NODE 2>/dev/null || true; rm -rf "$WORK"' EXIT
NODE=""

python3 -m venv "$WORK/py"
"$WORK/py/bin/pip" install -q -r tests/smart/requirements.txt

D="$WORK/data"
"$BIN" demo --data-dir "$D" --patients 10 --reports 20 --vitals-days 1 > "$WORK/demo.json"
KEY=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["integration_key"])' "$WORK/demo.json")
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"
"$BIN" serve --data-dir "$D" --listen "127.0.0.1:$PORT" > "$WORK/node.log" 2>&1 &
NODE=$!
python3 tests/wait_ready.py "$URL"
if ! "$WORK/py/bin/python" tests/smart/client.py "$URL" "$KEY"; then
  echo "--- node log (last 40 lines)"
  tail -n 40 "$WORK/node.log"
  exit 1
fi
# The CLI's own client, and a read with what it prints.
TOKEN=$("$BIN" token request --key "$KEY" --url "$URL" --scope "purpose/TREAT")
python3 - "$URL" "$TOKEN" <<'PY'
import sys, urllib.request
req = urllib.request.Request(f"{sys.argv[1]}/fhir/Observation?_count=1", headers={"Authorization": f"Bearer {sys.argv[2]}"})
assert urllib.request.urlopen(req, timeout=30).status == 200
PY
if "$BIN" token request --key "$KEY" --url "$URL" --scope "purpose/PUBHLTH" 2> "$WORK/refused.err"; then
  echo "a scope outside the role was granted"; exit 1
fi
grep -q "invalid_scope" "$WORK/refused.err"
kill -TERM "$NODE"
wait "$NODE"
NODE=""
echo "SMART Backend Services interop: ok"
