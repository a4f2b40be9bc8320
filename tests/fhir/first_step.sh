#!/usr/bin/env bash
# docs/FHIR.md's first step, exactly as printed, on a fresh node that
# `medledger demo` did not seed: the block after the "first-step" marker is
# extracted and run with `medledger` on PATH, DATA the node's directory and
# N its URL. It fails if any command in it fails or the search does not
# find the Observation it created.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
cargo build --locked -q -p medledger
BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
WORK=$(mktemp -d)
trap 'kill $NODE 2>/dev/null || true; rm -rf "$WORK"' EXIT
NODE=""

awk '/<!-- first-step/{f=1; next} f && /^```sh$/{b=1; next} b && /^```$/{exit} b' docs/FHIR.md > "$WORK/step.sh"
[ -s "$WORK/step.sh" ] || { echo "no first-step block in docs/FHIR.md"; exit 1; }
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
N="http://127.0.0.1:$PORT"
cd "$WORK"
"$BIN_DIR/medledger" serve --data-dir DATA --listen "127.0.0.1:$PORT" > node.log 2>&1 &
NODE=$!
python3 "$ROOT/tests/wait_ready.py" "$N"
PATH="$BIN_DIR:$PATH" N="$N" bash -euo pipefail step.sh > out.txt 2> err.txt \
  || { cat err.txt; echo "docs/FHIR.md's first step failed"; exit 1; }
python3 - out.txt <<'PY'
import json, sys
# The two curl answers, one after the other (JSON has no trailing newline).
text, docs, at = open(sys.argv[1]).read(), [], 0
decoder = json.JSONDecoder()
while (at := text.find("{", at)) >= 0:
    doc, at = decoder.raw_decode(text, at)
    docs.append(doc)
created, found = docs[-2], docs[-1]
assert created["resourceType"] == "Observation", created
assert found["resourceType"] == "Bundle" and found["total"] == 1, found
assert found["entry"][0]["resource"]["id"] == created["id"], found
print("docs/FHIR.md first step: created", created["id"][:16], "and found it by search")
PY
