#!/usr/bin/env bash
# The node against its own OpenAPI document, with schemathesis (PyPI):
#  1. `medledger demo` seeds a data directory and a node serves it;
#  2. schemathesis generates requests for every operation of the document
#     the node serves at /openapi.json, valid and invalid ones, with the
#     bearer token of the demo's integration account;
#  3. every answer must have a status, a content type, a body and headers
#     that the document describes for that operation, and none may be a
#     5xx (CHECKS below says what else is checked);
#  4. the node then stops cleanly and the ledger still verifies.
# The run is seeded and bounded in examples per operation, so it sends the
# same requests each time. GET /v1/alerts/stream is left out: an event
# stream never ends.
#
# MEDLEDGER_BIN: the binary to test (default: a debug build, made here).
# MEDLEDGER_OPENAPI: a document file to test instead of the served one, to
# try edits of openapi.json without a rebuild.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
if [ -n "${MEDLEDGER_BIN:-}" ]; then
  BIN=$(realpath "$MEDLEDGER_BIN")
else
  cargo build --locked -q -p medledger
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/medledger"
fi
SCHEMA_FILE=""
[ -z "${MEDLEDGER_OPENAPI:-}" ] || SCHEMA_FILE=$(realpath "$MEDLEDGER_OPENAPI")
WORK=$(mktemp -d)
trap 'kill $NODE 2>/dev/null || true; rm -rf "$WORK"' EXIT
NODE=""

python3 -m venv "$WORK/py"
"$WORK/py/bin/pip" install -q -r tests/api/requirements.txt

D="$WORK/data"
"$BIN" demo --data-dir "$D" --patients 40 --reports 100 --vitals-days 2 > "$WORK/demo.json"
INTEGRATION=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["integration_participant"])' "$WORK/demo.json")
TOKEN=$("$BIN" token issue --data-dir "$D" --participant "$INTEGRATION")
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"
"$BIN" serve --data-dir "$D" --listen "127.0.0.1:$PORT" > "$WORK/node.log" 2>&1 &
NODE=$!
python3 tests/wait_ready.py "$URL"

# Half the pseudonyms and ids it sends are ones the ledger holds, so that
# bodies of real records are checked too, not only 404s.
"$WORK/py/bin/python" - "$URL" "$TOKEN" "$WORK/demo.json" > "$WORK/schemathesis.toml" <<'PY'
import json, sys, urllib.request
url, token, demo = sys.argv[1:]
def get(path):
    req = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {token}"})
    return json.load(urllib.request.urlopen(req, timeout=30))
patients = {json.load(open(demo))["example_patient"]}
ids = []
for t in ("Observation", "Condition", "Immunization"):
    for e in get(f"/fhir/{t}?_count=5").get("entry", []):
        ids.append(e["resource"]["id"])
        ref = e["resource"].get("subject") or e["resource"].get("patient")
        patients.add(ref["reference"].removeprefix("Patient/"))
for b in get("/v1/blocks?from=1&limit=3")["blocks"]:
    ids += [t["id"] for t in b["transactions"]][:5]
status = get("/v1/status")
values = {
    "patients": sorted(patients),
    "ids": ids,
    "sizes": [status["log_size"]],
    "roots": [status["log_root"]],
}
for name, v in values.items():
    print(f"dictionaries.{name}.values = {json.dumps(v)}")
print("[parameters]")
for key, dictionary in (
    ("path.pseudonym", "patients"),
    ("query.patient", "patients"),
    ("query.subject", "patients"),
    ("path.id", "ids"),
    ("query.size", "sizes"),
    ("query.root", "roots"),
):
    print(f'"{key}" = {{ dictionary = "{dictionary}", probability = 0.5 }}')
PY

# What every answer is held to: no 5xx; a status, content type, body and
# headers the document gives for the operation; a token-gated operation
# answers 401 without the token; a method the document does not give is
# 405 with an Allow header listing those it does. (Whether each valid
# request is accepted and each invalid one refused is not checked: some
# rules, such as a signature or a parameter that depends on another, are
# beyond what JSON Schema can say.)
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance
CHECKS=$CHECKS,response_schema_conformance,response_headers_conformance
CHECKS=$CHECKS,missing_required_header,ignored_auth,unsupported_method,allow_header_conformance

# One worker: requests go in the same order every run, and Hypothesis's
# source inspection, which calls ast.parse, is not thread-safe on
# CPython 3.11. No example database: every run starts from the seed alone.
started=$(date +%s)
set +e
(
  cd "$WORK"
  timeout 270 "$WORK/py/bin/schemathesis" --config-file "$WORK/schemathesis.toml" \
    run "${SCHEMA_FILE:-$URL/openapi.json}" \
    --url "$URL" \
    --header "Authorization: Bearer $TOKEN" \
    --checks "$CHECKS" \
    --exclude-path /v1/alerts/stream \
    --max-examples 40 \
    --seed 2026 \
    --generation-database none \
    --workers 1 \
    --request-timeout 30 \
    --no-color
)
status=$?
set -e
echo "schemathesis: exit $status after $(($(date +%s) - started)) s"
if [ "$status" -ne 0 ]; then
  echo "--- node log (last 40 lines)"
  tail -n 40 "$WORK/node.log"
  exit 1
fi
kill -TERM "$NODE"
wait "$NODE"
NODE=""
"$BIN" verify "$D" > /dev/null
echo "API conformance (schemathesis): ok"
