#!/usr/bin/env bash
# Tests of the web dashboard: first its signature checks under Node.js
# (signatures.mjs, no browser), then end to end in headless Chromium, on real
# processes: a node seeded with `medledger demo`, a token for its integration
# participant, and e2e.mjs driving Chromium through playwright-core.
#
#   bash tests/dashboard/run.sh
#
# Needs Node.js 20 or later with npm, and Chromium (Debian's `chromium`
# package, /usr/bin/chromium, or CHROMIUM=path). Screenshots of every page go
# to $SCREENSHOTS (default: <target dir>/dashboard-screenshots).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
export SCREENSHOTS=${SCREENSHOTS:-$TARGET/dashboard-screenshots}

start=$(date +%s)
command -v node > /dev/null || { echo "dashboard tests need Node.js 20 or later" >&2; exit 1; }
# The vendored Ed25519 verifier and app.js's use of it, on the speccheck
# vectors in ../shared/testdata and on crafted receipts.
node --test tests/dashboard/signatures.mjs

cargo build --locked -q -p medledger
BIN="$TARGET/debug/medledger"

if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    echo "installing Debian's chromium package"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null
  else
    echo "dashboard tests need Chromium at $CHROMIUM (apt-get install chromium)" >&2
    exit 1
  fi
fi
(cd tests/dashboard && npm ci --no-audit --no-fund --loglevel=error > /dev/null)

WORK=$(mktemp -d)
NODE_PID=""
cleanup() {
  if [ -n "$NODE_PID" ]; then
    kill "$NODE_PID" 2> /dev/null || true
    wait "$NODE_PID" 2> /dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

D="$WORK/data"
"$BIN" demo --data-dir "$D" > "$WORK/demo.json"
demo() { node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))[process.argv[2]])' "$WORK/demo.json" "$1"; }
INTEGRATION=$(demo integration_participant)
DOCTOR_KEY="$(demo doctor_keys)/doctor-1.key"
EXAMPLE_PATIENT=$(demo example_patient)
TOKEN=$("$BIN" token issue --data-dir "$D" --participant "$INTEGRATION")

PORT=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
BASE="http://127.0.0.1:$PORT"
"$BIN" serve --data-dir "$D" --listen "127.0.0.1:$PORT" > "$WORK/node.log" 2>&1 &
NODE_PID=$!
for _ in $(seq 1 300); do
  if node -e 'fetch(process.argv[1]).then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "$BASE/healthz"; then
    break
  fi
  kill -0 "$NODE_PID" 2> /dev/null || { cat "$WORK/node.log"; echo "the node exited" >&2; exit 1; }
  sleep 0.1
done

mkdir -p "$SCREENSHOTS"
set +e
BASE="$BASE" TOKEN="$TOKEN" DATA_DIR="$D" MEDLEDGER="$BIN" DOCTOR_KEY="$DOCTOR_KEY" \
  EXAMPLE_PATIENT="$EXAMPLE_PATIENT" node tests/dashboard/e2e.mjs
status=$?
set -e
if [ "$status" -ne 0 ]; then
  echo "--- node log (last 40 lines)"
  tail -n 40 "$WORK/node.log"
fi
echo "dashboard tests took $(($(date +%s) - start)) s; screenshots in $SCREENSHOTS"
exit "$status"
