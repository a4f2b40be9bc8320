"""Reads back, with the fhirpy client, what the import and a fhirpy create wrote.

Usage: read_back.py BASE_URL TOKEN REPORT.jsonl
"""

import json
import sys

from fhirpy import SyncFHIRClient

base, token, report = sys.argv[1], sys.argv[2], sys.argv[3]
client = SyncFHIRClient(base, authorization=f"Bearer {token}")


def check(cond, msg):
    if not cond:
        print(f"FAIL: {msg}", file=sys.stderr)
        sys.exit(1)


meta = client.execute("metadata", method="get")
check(meta["resourceType"] == "CapabilityStatement", "metadata")
check(meta["fhirVersion"] == "4.0.1", "fhirVersion")

# Every accepted row of the import reads back by id, as written.
accepted = [json.loads(l) for l in open(report) if '"id"' in l]
check(len(accepted) > 0, "the import accepted nothing")
subjects = {}
for row in accepted[:60]:
    for rtype in ("Observation", "Condition", "Immunization"):
        try:
            r = client.reference(rtype, row["id"]).to_resource()
        except Exception:  # noqa: BLE001 - a 404 for the wrong type
            continue
        check(r["id"] == row["id"], f"{rtype}/{row['id']} id")
        ref = (r.get("subject") or r.get("patient"))["reference"]
        check(ref.startswith("Patient/") and len(ref) == len("Patient/") + 26, f"pseudonymous subject {ref}")
        subjects.setdefault(ref, []).append((rtype, r))
        break
    else:
        check(False, f"{row['id']} did not read back")

# Search by subject and code, paged two at a time through next links.
ref, _ = max(subjects.items(), key=lambda kv: len(kv[1]))
hr = client.resources("Observation").search(subject=ref, code="http://loinc.org|8867-4").limit(2).fetch_all()
check(len(hr) >= 1, "heart-rate search")
for o in hr:
    check(o["code"]["coding"][0]["code"] == "8867-4", "code filter")
    check(o["subject"]["reference"] == ref, "subject filter")
allobs = client.resources("Observation").search(subject=ref).limit(2).fetch_all()
check(len(allobs) >= len(hr), "paging follows next links")
dated = client.resources("Observation").search(subject=ref, date="ge1900-01-01").fetch_all()
check(len(dated) == len(allobs), "date filter ge1900 keeps everything")
none = client.resources("Observation").search(subject=ref, date="lt1900-01-01").fetch_all()
check(len(none) == 0, "date filter lt1900 drops everything")

# A create through fhirpy, then read and $everything.
obs = client.resource(
    "Observation",
    status="final",
    category=[{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
    code={"coding": [{"system": "http://loinc.org", "code": "9279-1", "display": "Respiratory rate"}]},
    subject={"reference": ref},
    effectiveDateTime="2026-11-24T10:00:00Z",
    valueQuantity={"value": 18, "unit": "breaths/minute", "system": "http://unitsofmeasure.org", "code": "/min"},
)
obs.save()
check(obs["id"] and len(obs["id"]) == 64, "created id")
again = client.reference("Observation", obs["id"]).to_resource()
check(again["valueQuantity"]["value"] == 18, "created observation reads back")
everything = client.reference("Patient", ref.split("/")[1]).execute("$everything", method="get")
types = [e["resource"]["resourceType"] for e in everything.get("entry", [])]
check(types[0] == "Patient", "$everything starts with the Patient")
check(obs["id"] in [e["resource"].get("id") for e in everything["entry"]], "$everything includes the new one")

# A Patient with a name is refused with an OperationOutcome.
try:
    client.resource("Patient", name=[{"family": "Petrovic"}]).save()
    check(False, "a named Patient was stored")
except Exception as e:  # noqa: BLE001
    check("OperationOutcome" in str(e) or "422" in str(e), f"named Patient refusal: {e}")

print(f"fhirpy read back {len(accepted)} imported rows' resources (checked {sum(len(v) for v in subjects.values())}), searched, paged and created")
