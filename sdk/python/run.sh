#!/usr/bin/env bash
# The Python SDK (sdk/python) on real processes: its unit tests, then its
# integration tests against a node that `medledger demo` seeded and
# `medledger serve` serves. The SDK is installed into a fresh venv from
# PyPI packages only (cryptography, httpx, httpx-sse, rfc8785, PyJWT,
# pandas, pytest).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
cargo build --locked -q -p medledger
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/medledger"
WORK=$(mktemp -d)
NODE=""
trap 'if [ -n "$NODE" ]; then kill "$NODE" 2>/dev/null || true; fi; rm -rf "$WORK"' EXIT

python3 -m venv "$WORK/py"
"$WORK/py/bin/pip" install -q -e "sdk/python[pandas]" pytest

D="$WORK/data"
"$BIN" demo --data-dir "$D" --patients 10 --reports 20 --vitals-days 1 > "$WORK/demo.json"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"
"$BIN" serve --data-dir "$D" --listen "127.0.0.1:$PORT" > "$WORK/node.log" 2>&1 &
NODE=$!
python3 tests/wait_ready.py "$URL"
export MEDLEDGER_TEST_URL="$URL" MEDLEDGER_TEST_BIN="$BIN" MEDLEDGER_TEST_DATA="$D" \
  MEDLEDGER_TEST_DEMO="$WORK/demo.json" MEDLEDGER_TEST_REQUIRE_NODE=1
if ! "$WORK/py/bin/python" -m pytest -q -p no:cacheprovider sdk/python/tests; then
  echo "--- node log (last 40 lines)"
  tail -n 40 "$WORK/node.log"
  exit 1
fi
kill -TERM "$NODE"
wait "$NODE"
NODE=""
echo "Python SDK against a real node: ok"
