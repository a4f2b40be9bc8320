"""The SDK against a real node (sdk/python/run.sh starts one seeded by
`medledger demo`). Every transaction here is signed by the SDK and must be
accepted; every read is verified by the SDK; exports are checked again by
the CLI's own `medledger export verify`."""

import hashlib
import json
import os
import subprocess
import threading
from datetime import datetime, timezone
from pathlib import Path

import httpx
import independent as ref
import pytest

from medledger import (Checkpoint, Client, ConsistencyError, ExportVerificationError, ProblemError, SigningKey,
                       Transaction, Trust, verify_cosignatures)
from medledger.export import load_export

URL = os.environ.get("MEDLEDGER_TEST_URL")
if not URL:
    if os.environ.get("MEDLEDGER_TEST_REQUIRE_NODE"):
        raise RuntimeError("MEDLEDGER_TEST_URL is not set")
    pytest.skip("no node: run sdk/python/run.sh", allow_module_level=True)

DATA = Path(os.environ["MEDLEDGER_TEST_DATA"])
BIN = os.environ["MEDLEDGER_TEST_BIN"]
DEMO = json.loads(Path(os.environ["MEDLEDGER_TEST_DEMO"]).read_text())
TODAY = datetime.now(timezone.utc).strftime("%Y-%m-%d")


@pytest.fixture(scope="module")
def vkey():
    # The test trusts the key the node advertises; the SDK then holds the
    # node to it.
    return httpx.get(f"{URL}/v1/status").json()["vkey"]


@pytest.fixture(scope="module")
def admin():
    return SigningKey.load(DATA / "admin.key")


@pytest.fixture(scope="module")
def integration():
    return SigningKey.load(DEMO["integration_key"])


@pytest.fixture(scope="module")
def analyst(vkey, admin):
    """A public-health officer registered by an SDK-signed transaction."""
    key = SigningKey.generate()
    with Client(URL, vkey) as c:
        tx = Transaction.sign(admin, "participant.register",
                              {"key": key.public_key_hex, "role": "public_health", "institution": "Institut za javno zdravlje",
                               "label": "analyst (SDK test)"})
        r = c.submit(tx)
        assert r.id == tx.id
    return key


def test_checkpoint_and_status_verify(vkey):
    with Client(URL, vkey) as c:
        cp = c.checkpoint()
        assert cp.size > 0 and cp.origin == Trust.from_vkey(vkey).origin
        assert c.status()["log_size"] >= cp.size


def test_a_checkpoint_under_another_key_is_refused(vkey):
    other = ref.vkey(Trust.from_vkey(vkey).origin, ref.seed_key(bytes([1]) * 32)[1])
    with Client(URL, other) as c, pytest.raises(Exception, match="trusted key"):
        c.checkpoint()


def test_sdk_signed_transactions_are_accepted_and_read_back(vkey, admin, integration):
    doctor = SigningKey.generate()
    patient = DEMO["example_patient"]
    with Client(URL, vkey) as c:
        reg = Transaction.sign(admin, "participant.register",
                               {"key": doctor.public_key_hex, "role": "doctor", "institution": DEMO["institution"]})
        chosen = Transaction.sign(integration, "chosen_doctor",
                                  {"patient": patient, "doctor": doctor.public_key_hex, "date": TODAY})
        for t in (reg, chosen):
            assert c.submit(t).id == t.id
        report = Transaction.sign(doctor, "medical_report", {
            "patient": patient, "institution": DEMO["institution"], "encounter_date": TODAY,
            "diagnoses": ["J10.1"], "anamnesis": "fever, 38.4 \u00b0C", "findings": "SpO2 0.97"})
        r = c.submit(report)
        assert r.index < r.checkpoint.size and r.header["kind"] == "medical_report"
        assert c.receipt(report.id).index == r.index
        cosigned = c.receipt(report.id, cosigned=True)
        cosigner = c.status()["cosigner_vkey"]
        assert verify_cosignatures(cosigned.checkpoint.note, [cosigner], 1)
        c.request_token(doctor, "purpose/TREAT")
        got = c.transaction(report.id)
        assert got.payload == report.payload and got.tx.salt == report.salt
        hist = c.history(patient)
        assert report.id in [r.id for r in hist.records]
        assert all(r.receipt.checkpoint == hist.checkpoint for r in hist.records)
        # Resending the committed bytes: a duplicate on a first attempt is the node's answer as it is.
        with pytest.raises(ProblemError) as e:
            c.submit(report)
        assert (e.value.status, e.value.code) == (409, "duplicate")


def test_batch_gives_each_item_its_receipt_or_problem(vkey, integration):
    good = Transaction.sign(integration, "epidemic_report", {
        "date": TODAY, "region": "Nisavski", "disease": "J10.1", "new_cases": 3, "hospitalised": 1,
        "on_respirator": 0, "deaths": 0})
    bad = Transaction.sign(integration, "epidemic_report", {"date": TODAY, "region": "Nisavski"})
    with Client(URL, vkey) as c:
        out = c.submit_batch([good, bad])
    assert out[0].id == good.id
    assert isinstance(out[1], ProblemError) and out[1].status == 422


def test_consistency_is_kept_across_calls_and_sessions(vkey, integration, tmp_path):
    state = tmp_path / "checkpoint.json"
    with Client(URL, vkey, state=str(state)) as c:
        first = c.checkpoint()
        c.submit(Transaction.sign(integration, "vaccination_report", {
            "date": TODAY, "region": "Nisavski", "vaccine": "influenza", "dose": 1, "age_band": "65-74", "doses": 12}))
        later = c.check_consistency()
        assert later.size > first.size and c.consistency.last == later
    with Client(URL, vkey, state=str(state)) as c2:  # a later session starts from the saved checkpoint
        assert c2.consistency.last.size == later.size
        assert c2.checkpoint().size >= later.size


def test_a_forked_checkpoint_signed_by_the_node_key_is_caught(vkey):
    # What a dishonest operator could do with the node's own key: sign a
    # second root for a size the client already saw.
    node_key = SigningKey.load(DATA / "node.key")
    with Client(URL, vkey) as c:
        seen = c.checkpoint()
        forged = ref.checkpoint(seen.origin, seen.size, ref.sha(b"rewritten history"),
                                node_key.private_key(), node_key.public_key)
        with pytest.raises(ConsistencyError) as e:
            c.consistency.observe(Checkpoint.verify(forged, c.trust), latest=True)
        assert e.value.kind == "fork"
        bigger = ref.checkpoint(seen.origin, seen.size + 1000, ref.sha(b"x"), node_key.private_key(), node_key.public_key)
        with pytest.raises(ConsistencyError):
            c.consistency.observe(Checkpoint.verify(bigger, c.trust), latest=True)


def test_export_to_a_verified_dataframe_that_the_cli_also_accepts(vkey, analyst, tmp_path):
    with Client(URL, vkey) as c:
        c.request_token(analyst, "purpose/PUBHLTH")
        ex = c.export("medical_report")
        assert ex.verified == "full" and len(ex.rows) >= 20
        df = ex.dataframe()
        assert len(df) == len(ex.rows) and {"leaf", "id", "recorded", "patient", "diagnoses"} <= set(df.columns)
        assert df["leaf"].is_monotonic_increasing
        ranged = c.export("medical_report", TODAY, TODAY)
        assert all(r.record["encounter_date"] == TODAY for r in ranged.rows)
        path, manifest = ex.save(tmp_path / "reports.ndjson")
        # The CLI, which shares no code with the SDK, proves the same file.
        out = subprocess.run([BIN, "export", "verify", str(path), "--vkey", vkey, "--url", URL, "--token", c.token],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert load_export(path, vkey=vkey).rows == ex.rows
        assert load_export(path, client=c).verified == "full"
        # One changed byte in a row: refused by the manifest's hash.
        body = path.read_bytes()
        path.write_bytes(body.replace(b"J", b"K", 1))
        with pytest.raises(ExportVerificationError):
            load_export(path, vkey=vkey)


def test_cli_export_loads_into_a_verified_dataframe(vkey, analyst, tmp_path):
    with Client(URL, vkey) as c:
        token = c.request_token(analyst, "purpose/PUBHLTH")
        f = tmp_path / "reports.ndjson"
        subprocess.run([BIN, "export", "--kind", "medical_report", "--format", "ndjson", "--url", URL,
                        "--token", token, "--vkey", vkey, "--out", str(f)], check=True, capture_output=True, timeout=120)
        ex = load_export(f, client=c)
        assert ex.verified == "full" and len(ex.dataframe()) == len(ex.rows) > 0
        # Dropping a row from file and manifest alike is caught against the ledger.
        m = json.loads(Path(str(f) + ".manifest.json").read_text())
        lines = f.read_bytes().splitlines(keepends=True)
        f.write_bytes(b"".join(lines[1:]))
        m.update(rows=m["rows"] - 1, leaves=m["leaves"][1:], sha256=hashlib.sha256(f.read_bytes()).hexdigest())
        Path(str(f) + ".manifest.json").write_text(json.dumps(m))
        assert len(load_export(f, vkey=vkey).rows) == len(lines) - 1  # the file and manifest agree...
        with pytest.raises(ExportVerificationError, match="incomplete"):
            load_export(f, client=c)  # ...but the ledger holds the missing record


def test_alerts_arrive_over_sse(vkey, integration):
    patient = DEMO["example_patient"]
    events = []
    opened = threading.Event()
    with Client(URL, vkey) as reader:
        reader.request_token(integration)
        assert "alerts" in reader.alerts()

        def follow():
            try:
                for ev in reader.follow_alerts(patient=patient, timeout=30, on_open=opened.set):
                    events.append(ev)
                    if ev.event == "alert":
                        return
            except Exception as e:  # surfaced by the assertion below
                events.append(e)

        th = threading.Thread(target=follow, daemon=True)
        th.start()
        assert opened.wait(30), events
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        with Client(URL, vkey) as w:
            w.submit(Transaction.sign(integration, "vital_signs", {
                "patient": patient, "time": now, "respiratory_rate": 28, "spo2": 88, "systolic_bp": 85,
                "pulse": 135, "consciousness": "voice", "temperature": 39.6}))
        th.join(30)
    alerts = [e for e in events if getattr(e, "event", None) == "alert"]
    assert alerts, events
    assert alerts[0].data["patient"] == patient and alerts[0].data["level"] == "high"
