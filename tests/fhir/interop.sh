#!/usr/bin/env bash
# FHIR interoperability with third-party tools, on real processes:
#  1. carebundle (PyPI) generates US-Core R4 transaction Bundles;
#  2. `medledger import` pseudonymizes their Patients with the authority's
#     key and stores what the ledger accepts, refusing the rest with reasons;
#  3. no name or identifier from the bundles is anywhere in the data directory;
#  4. a re-run of the import skips everything already in;
#  5. the fhirpy client reads it all back from a running node, searches,
#     pages, creates and runs $everything;
#  6. a search matrix (fhirpy) checks R4 search semantics against counts the
#     script computes from the Observations it seeded.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/medledger"
cargo build --locked -q -p medledger
WORK=$(mktemp -d)
trap 'kill $NODE 2>/dev/null || true; rm -rf "$WORK"' EXIT
NODE=""

python3 -m venv "$WORK/py"
"$WORK/py/bin/pip" install -q -r tests/fhir/requirements.txt
"$WORK/py/bin/python" tests/fhir/generate.py "$WORK/bundles" 12

D="$WORK/data"
"$BIN" demo --data-dir "$D" --patients 40 --reports 100 --vitals-days 2 > "$WORK/demo.json"
INTEGRATION_KEY=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["integration_key"])' "$WORK/demo.json")
INTEGRATION=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["integration_participant"])' "$WORK/demo.json")
"$BIN" pseudonym keygen --out "$WORK/authority.key"

set +e
"$BIN" import --data-dir "$D" --key "$INTEGRATION_KEY" --pseudonym-key "$WORK/authority.key" \
  --report "$WORK/report.jsonl" --quiet "$WORK"/bundles/*.json 2> "$WORK/import.err"
status=$?
set -e
cat "$WORK/import.err"
[ "$status" -le 1 ] || { echo "import failed with $status"; exit 1; }
python3 - "$WORK/report.jsonl" "$WORK/bundles" <<'PY'
import collections, json, sys, pathlib
rows = [json.loads(l) for l in open(sys.argv[1])]
final = {}
for r in rows:
    final[r["row"]] = r
accepted = [r for r in final.values() if "id" in r]
refused = collections.Counter(r["error"] for r in final.values() if "error" in r)
print(f"accepted {len(accepted)}, refused {dict(refused)}")
assert len(accepted) >= 12 * 5, "vital signs of every bundle are stored"
assert set(refused) <= {"pseudonymized", "not_stored", "fhir_invalid"}, refused
# Each refusal states its reason.
assert all(r.get("detail") for r in final.values() if "error" in r)
PY

# No name, identifier or birth date from the bundles reached the ledger.
# Long values are searched for in every byte of the data directory. Short
# ones (a name such as "Bex") turn up by chance in megabytes of hashes and
# signatures, so they are searched for as words in the text of every stored
# record, exported from the same directory.
for k in fhir.observation fhir.condition fhir.immunization; do
  "$BIN" export --kind "$k" --format ndjson --data-dir "$D" --out "$WORK/records-$k.ndjson" > /dev/null
done
python3 - "$WORK/bundles" "$D" "$WORK" <<'PY'
import json, pathlib, re, sys
needles = set()
for f in pathlib.Path(sys.argv[1]).glob("*.json"):
    for e in json.load(open(f))["entry"]:
        r = e["resource"]
        if r["resourceType"] in ("Patient", "Practitioner"):
            for n in r.get("name", []):
                needles.add(n["family"])
                needles.update(n.get("given", []))
            for i in r.get("identifier", []):
                needles.add(i["value"])
        if r["resourceType"] == "Patient" and "birthDate" in r:
            needles.add(r["birthDate"])
        needles.add(e["fullUrl"].removeprefix("urn:uuid:"))
data = b"".join(p.read_bytes() for p in pathlib.Path(sys.argv[2]).rglob("*") if p.is_file())
text = "".join(p.read_text() for p in pathlib.Path(sys.argv[3]).glob("records-*.ndjson"))
assert text.count("\n") >= 12 * 5, "the stored records were exported"
found = [
    n for n in needles
    if (n.encode() in data if len(n) >= 8 else re.search(rf"(?<!\w){re.escape(n)}(?!\w)", text))
]
assert not found, f"identifying values in the data directory: {found[:5]}"
print(f"none of {len(needles)} names, identifiers, birth dates and bundle ids is in the data directory")
PY

# A re-run skips what is already in.
set +e
"$BIN" import --data-dir "$D" --key "$INTEGRATION_KEY" --pseudonym-key "$WORK/authority.key" \
  --report "$WORK/report.jsonl" --quiet "$WORK"/bundles/*.json 2> "$WORK/again.err"
set -e
cat "$WORK/again.err"
grep -q "^imported 0, already in" "$WORK/again.err"

TOKEN=$("$BIN" token issue --data-dir "$D" --participant "$INTEGRATION")
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" serve --data-dir "$D" --listen "127.0.0.1:$PORT" 2> "$WORK/node.log" &
NODE=$!
python3 tests/wait_ready.py "http://127.0.0.1:$PORT"
"$WORK/py/bin/python" tests/fhir/read_back.py "http://127.0.0.1:$PORT/fhir" "$TOKEN" "$WORK/report.jsonl"
"$WORK/py/bin/python" tests/fhir/search_matrix.py "http://127.0.0.1:$PORT/fhir" "$TOKEN"
kill -TERM "$NODE"; wait "$NODE"; NODE=""
"$BIN" verify "$D" > /dev/null
echo "FHIR interop: ok"
