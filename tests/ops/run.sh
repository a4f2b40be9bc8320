#!/usr/bin/env bash
# Operators' view of a real node: `/metrics` after a mixed workload passes
# `promtool check metrics` (Debian's prometheus package), the alerting
# rules in deploy/prometheus pass `promtool check rules` and their unit
# tests, every panel of the Grafana dashboard queries a series the node
# exports, and with MEDLEDGER_LOG_FORMAT=json every log line is one JSON
# object, one access line per request, naming the participant and never
# the token.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
if ! command -v promtool > /dev/null; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus > /dev/null
fi
cargo build --locked -q -p medledger
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/medledger"
WORK=$(mktemp -d)
trap 'kill $NODE 2>/dev/null || true; rm -rf "$WORK"' EXIT
NODE=""

promtool check rules deploy/prometheus/medledger-alerts.yml
promtool test rules tests/ops/alerts_test.yml

D="$WORK/data"
"$BIN" demo --data-dir "$D" --patients 10 --reports 20 --vitals-days 1 > "$WORK/demo.json"
KEY=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["integration_key"])' "$WORK/demo.json")
PARTICIPANT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["integration_participant"])' "$WORK/demo.json")
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"
MEDLEDGER_LOG_FORMAT=json "$BIN" serve --data-dir "$D" --listen "127.0.0.1:$PORT" > "$WORK/node.out" 2> "$WORK/node.log" &
NODE=$!
python3 tests/wait_ready.py "$URL"
TOKEN=$("$BIN" token request --key "$KEY" --url "$URL" --scope "purpose/TREAT")
python3 - "$URL" "$TOKEN" "$WORK/metrics.txt" <<'PY'
import sys, urllib.request, urllib.error
url, token, out = sys.argv[1:]
def call(path, method="GET", data=None, auth=True, rid=None, ctype=None):
    req = urllib.request.Request(url + path, method=method, data=data)
    if ctype:
        req.add_header("Content-Type", ctype)
    if auth:
        req.add_header("Authorization", f"Bearer {token}")
    if rid:
        req.add_header("X-Request-Id", rid)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
status, headers, _ = call("/fhir/Observation?_count=2", rid="ops-check-1")
assert status == 200, status
assert headers.get("x-request-id") == "ops-check-1", headers
assert call("/v1/status", auth=False)[0] == 200
assert call("/v1/no-such-endpoint", auth=False)[0] == 404
assert call("/v1/transactions", "POST", b"{", auth=False, ctype="application/json")[0] == 400
assert call("/v1/token", "POST", b"grant_type=password", auth=False)[0] == 400
status, _, body = call("/metrics", auth=False)
assert status == 200
open(out, "wb").write(body)
PY
promtool check metrics < "$WORK/metrics.txt"
# A transaction from a key nobody registered is refused by the ledger's
# rules, which /metrics counts by code.
"$BIN" keygen --out "$WORK/stranger.key" > /dev/null
if echo '{"patient":"x"}' | "$BIN" submit --url "$URL" --key "$WORK/stranger.key" --kind medical_report > "$WORK/refused.json"; then
  echo "a stranger's transaction was accepted"; exit 1
fi
curl -sf "$URL/metrics" > "$WORK/metrics.txt"
grep -q '^medledger_transactions_rejected_total{' "$WORK/metrics.txt"
promtool check metrics < "$WORK/metrics.txt"
kill -TERM "$NODE"
wait "$NODE" || true
NODE=""
python3 - "$WORK/node.log" "$WORK/metrics.txt" "$TOKEN" "$PARTICIPANT" deploy/grafana/medledger.json <<'PY'
import json, re, sys
log, metrics, token, participant, dashboard = sys.argv[1:]
lines = open(log).read().splitlines()
assert lines, "the node logged nothing"
events = []
for n, line in enumerate(lines, 1):
    try:
        events.append(json.loads(line))
    except ValueError:
        sys.exit(f"log line {n} is not JSON: {line!r}")
    assert token not in line, f"log line {n} holds the bearer token"
access = [e for e in events if e.get("target") == "medledger::access"]
routes = {(e["method"], e["route"], e["status"]) for e in access}
for want in [("GET", "/fhir/{type}", 200), ("GET", "/v1/status", 200),
             ("GET", "unmatched", 404), ("POST", "/v1/transactions", 400),
             ("POST", "/v1/token", 400), ("GET", "/metrics", 200)]:
    assert want in routes, (want, sorted(routes))
for e in access:
    for field in ("request_id", "latency_ms", "status", "route", "method"):
        assert field in e, (field, e)
fhir = [e for e in access if e["route"] == "/fhir/{type}"]
assert [e["request_id"] for e in fhir] == ["ops-check-1"], fhir
assert fhir[0]["participant"] == participant, fhir[0]
assert all("participant" not in e for e in access if e["route"] == "/v1/status")
# Every series a dashboard panel queries is one the node exports.
exported = set(re.findall(r"^(medledger_[a-z_0-9]+?)(?:_bucket|_sum|_count)?[{ ]", open(metrics).read(), re.M))
board = json.load(open(dashboard))
queried = set()
for panel in board["panels"]:
    for target in panel.get("targets", []):
        queried |= set(re.findall(r"\b(medledger_[a-z_0-9]+?)(?:_bucket|_sum|_count)?\b", target["expr"]))
assert queried, "the dashboard queries nothing"
missing = queried - exported
assert not missing, f"the dashboard queries series the node does not export: {missing}"
print(f"{len(access)} access lines; dashboard queries {len(queried)} exported series")
PY
echo "operations checks: ok"
