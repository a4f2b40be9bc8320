#!/usr/bin/env bash
# The Debian package as an operator meets it: `cargo deb` builds it,
# `dpkg -i` installs it, the systemd unit passes `systemd-analyze verify`
# and an offline `systemd-analyze security` review, and the packaged binary,
# started as the packaged user with the unit's own ExecStart on the packaged
# configuration, answers /readyz, writes only its data directory, and drains
# on SIGTERM within the unit's TimeoutStopSec. A second start reopens the
# ledger the first one created.
#
# MEDLEDGER_DEB_PROFILE picks the Cargo profile the packaged binary is built
# with: `release` (the default, what operators ship) or `dev`, which CI uses
# to reuse the binary the other suites built instead of a second, release
# build of the whole dependency tree; the package is otherwise the same.
#
# It installs the package on this host and purges it at the end; it refuses
# to run where a medledger package or /var/lib/medledger already exists.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
UNIT=/lib/systemd/system/medledger.service

if [ "$(id -u)" != 0 ]; then
  echo "tests/package/run.sh installs a package: run it as root" >&2
  exit 1
fi
if dpkg -s medledger > /dev/null 2>&1 || [ -e /var/lib/medledger ]; then
  echo "a medledger package or /var/lib/medledger is already on this host; not touching it" >&2
  exit 1
fi
if ! cargo deb --version > /dev/null 2>&1; then
  cargo install cargo-deb --version 3.8.0 --locked --quiet
fi

NODE=""
cleanup() {
  [ -n "$NODE" ] && kill "$NODE" 2> /dev/null || true
  dpkg --purge medledger > /dev/null 2>&1 || true
  rm -rf /var/lib/medledger
  if getent passwd medledger > /dev/null; then deluser --quiet --system medledger > /dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
WORK=$(mktemp -d)
trap cleanup EXIT

cargo deb -p medledger --locked --profile "${MEDLEDGER_DEB_PROFILE:-release}" --output "$WORK/medledger.deb"
dpkg-deb --info "$WORK/medledger.deb" | grep -E "Package|Version|Depends"
dpkg -i "$WORK/medledger.deb"

# What the package put on the system.
getent passwd medledger | grep -q ':/var/lib/medledger:' || { echo "no medledger system user"; exit 1; }
[ "$(stat -c %U:%G:%a /var/lib/medledger)" = "medledger:medledger:750" ] || { stat /var/lib/medledger; exit 1; }
[ "$(stat -c %U:%G:%a /etc/medledger/medledger.toml)" = "root:medledger:640" ] || { stat /etc/medledger/medledger.toml; exit 1; }
dpkg-query -W -f='${Conffiles}\n' medledger | grep -q /etc/medledger/medledger.toml || { echo "the configuration is not a conffile"; exit 1; }
/usr/bin/medledger --version

# The unit: valid, and hardened as OPERATIONS.md says.
systemd-analyze verify "$UNIT"
for line in "ProtectSystem=strict" "NoNewPrivileges=yes" "PrivateTmp=yes" \
  "ReadWritePaths=/var/lib/medledger" "Restart=on-failure" "User=medledger"; do
  grep -qx "$line" "$UNIT" || { echo "the unit lacks $line"; exit 1; }
done
systemd-analyze security --offline=true --no-pager "$UNIT" > "$WORK/security.txt" || true
tail -1 "$WORK/security.txt"
python3 - "$WORK/security.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", text)
if not m:
    sys.exit("systemd-analyze security printed no exposure level")
# systemd rates 0–10, lower is safer; below 2.0 is "OK", and a
# network daemon that needs sockets cannot reach "SAFE".
if float(m.group(1)) >= 2.0:
    sys.exit(f"exposure {m.group(1)} is not below 2.0")
PY

# Start the unit's ExecStart as the unit's user, with the unit's umask and
# no new privileges, from / as systemd would.
EXEC=$(sed -n 's/^ExecStart=//p' "$UNIT")
STOP_S=$(sed -n 's/^TimeoutStopSec=//p' "$UNIT")
start_node() {
  (cd / && umask 0077 && exec setpriv --reuid=medledger --regid=medledger --init-groups \
    --no-new-privs --inh-caps=-all --bounding-set=-all -- $EXEC) > "$WORK/node.out" 2> "$WORK/node.log" &
  NODE=$!
  python3 tests/wait_ready.py http://127.0.0.1:7878 || { cat "$WORK/node.log"; exit 1; }
}
stop_node() {
  kill -TERM "$NODE"
  for _ in $(seq 1 $((STOP_S * 10))); do
    kill -0 "$NODE" 2> /dev/null || break
    sleep 0.1
  done
  if kill -0 "$NODE" 2> /dev/null; then echo "no exit within TimeoutStopSec=$STOP_S"; exit 1; fi
  wait "$NODE" || { echo "the node exited with an error on SIGTERM"; cat "$WORK/node.log"; exit 1; }
  NODE=""
}

start_node
curl -fsS http://127.0.0.1:7878/readyz
echo
# The packaged configuration asks for JSON logs.
python3 - "$WORK/node.log" <<'PY'
import json, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
assert lines, "the node logged nothing"
for l in lines:
    json.loads(l)
PY
[ -f /var/lib/medledger/node.key ] || { echo "no node key in the data directory"; exit 1; }
# Everything in the data directory belongs to the service user, and the
# key is readable by it alone.
if find /var/lib/medledger ! -user medledger | grep -q .; then
  echo "files not owned by medledger:"; find /var/lib/medledger ! -user medledger; exit 1
fi
[ "$(stat -c %a /var/lib/medledger/node.key)" = 600 ] || { stat /var/lib/medledger/node.key; exit 1; }
HEIGHT=$(curl -fsS http://127.0.0.1:7878/v1/checkpoint | head -3)
stop_node

start_node
[ "$(curl -fsS http://127.0.0.1:7878/v1/checkpoint | head -3)" = "$HEIGHT" ] \
  || { echo "the second start did not reopen the same ledger"; exit 1; }
stop_node
echo "package: built, installed, verified, served as medledger, drained on SIGTERM"
