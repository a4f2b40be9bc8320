"""FHIR R4 search semantics, checked with the fhirpy client against a running node.

Usage: search_matrix.py BASE_URL TOKEN

The script seeds its own Observations about two fresh pseudonyms, then runs a
matrix of searches. Every expected answer is computed here, from the seed
list, by predicates written from the FHIR R4 search page: never by asking
the node.
"""

import base64
import datetime as dt
import os
import sys

import requests
from fhirpy import SyncFHIRClient

base, token = sys.argv[1], sys.argv[2]
client = SyncFHIRClient(base, authorization=f"Bearer {token}")
auth = {"Authorization": f"Bearer {token}"}
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print(f"FAIL: {msg}", file=sys.stderr)


def pseudonym():
    return base64.b32encode(os.urandom(16)).decode().rstrip("=")


A, B = pseudonym(), pseudonym()
LOINC = "http://loinc.org"
CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
IDS = "https://his.example/observation-id"
UNITS = {"8867-4": ("/min", 70), "9279-1": ("/min", 16), "2339-0": ("mg/dL", 95)}
# (patient, LOINC code, day, business identifier or None)
SEED = [
    (A, "8867-4", "2026-03-01", None),
    (A, "8867-4", "2026-03-02", "A-2"),
    (A, "9279-1", "2026-03-02", None),
    (A, "2339-0", "2026-03-03", "A-4"),
    (A, "9279-1", "2026-03-05", None),
    (B, "8867-4", "2026-03-01", None),
    (B, "9279-1", "2026-03-04", "B-2"),
    (B, "2339-0", "2026-03-06", None),
]


def resource(patient, code, day, ident):
    unit, value = UNITS[code]
    category = "laboratory" if code == "2339-0" else "vital-signs"
    r = {
        "status": "final",
        "category": [{"coding": [{"system": CAT, "code": category}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": f"{day}T10:00:00Z",
        "valueQuantity": {"value": value, "system": "http://unitsofmeasure.org", "code": unit},
    }
    if ident:
        r["identifier"] = [{"system": IDS, "value": ident}]
    return r


for row in SEED:
    client.resource("Observation", **resource(*row)).save()

DAY = {row: dt.date.fromisoformat(row[2]) for row in SEED}


def on(day):
    return dt.date.fromisoformat(day)


# FHIR R4 date prefixes for a day-precision value against a day-precision
# parameter (both cover whole days, so eq is the same day).
PREFIX = {
    "eq": lambda v, p: v == p,
    "ne": lambda v, p: v != p,
    "lt": lambda v, p: v < p,
    "gt": lambda v, p: v > p,
    "le": lambda v, p: v <= p,
    "ge": lambda v, p: v >= p,
    "sa": lambda v, p: v > p,
    "eb": lambda v, p: v < p,
}

both = f"Patient/{A},Patient/{B}"
matrix = [
    # (description, search params, predicate over a seed row)
    ("subject OR", {"subject": both}, lambda r: True),
    ("subject one", {"subject": f"Patient/{A}"}, lambda r: r[0] == A),
    ("code OR", {"subject": both, "code": "8867-4,9279-1"}, lambda r: r[1] in ("8867-4", "9279-1")),
    ("code AND", {"subject": both, "code": ["8867-4", "9279-1"]}, lambda r: False),
    ("code AND same", {"subject": both, "code": ["8867-4", f"{LOINC}|8867-4"]}, lambda r: r[1] == "8867-4"),
    ("system|code", {"subject": both, "code": f"{LOINC}|2339-0"}, lambda r: r[1] == "2339-0"),
    ("other system|code", {"subject": both, "code": "http://snomed.info/sct|2339-0"}, lambda r: False),
    ("|code", {"subject": both, "code": "|2339-0"}, lambda r: False),
    ("system|", {"subject": both, "code": f"{LOINC}|"}, lambda r: True),
    ("code:not", {"subject": both, "code:not": "8867-4"}, lambda r: r[1] != "8867-4"),
    ("code:not OR", {"subject": both, "code:not": "8867-4,9279-1"}, lambda r: r[1] not in ("8867-4", "9279-1")),
    ("category", {"subject": both, "category": "laboratory"}, lambda r: r[1] == "2339-0"),
    ("category system|code", {"subject": both, "category": f"{CAT}|vital-signs"}, lambda r: r[1] != "2339-0"),
    ("identifier", {"subject": both, "identifier": f"{IDS}|A-2"}, lambda r: r[3] == "A-2"),
    ("identifier OR", {"subject": both, "identifier": f"{IDS}|A-2,{IDS}|B-2"}, lambda r: r[3] in ("A-2", "B-2")),
    ("identifier:missing=true", {"subject": both, "identifier:missing": "true"}, lambda r: r[3] is None),
    ("identifier:missing=false", {"subject": both, "identifier:missing": "false"}, lambda r: r[3] is not None),
    ("identifier:not", {"subject": both, "identifier:not": f"{IDS}|A-2"}, lambda r: r[3] != "A-2"),
    ("date OR", {"subject": both, "date": "2026-03-01,2026-03-06"}, lambda r: r[2] in ("2026-03-01", "2026-03-06")),
    ("date AND", {"subject": both, "date": ["ge2026-03-02", "lt2026-03-05"]}, lambda r: on("2026-03-02") <= on(r[2]) < on("2026-03-05")),
    ("code and date", {"subject": f"Patient/{A}", "code": "9279-1", "date": "gt2026-03-02"}, lambda r: r[0] == A and r[1] == "9279-1" and on(r[2]) > on("2026-03-02")),
]
for prefix, rule in PREFIX.items():
    matrix.append(
        (f"date {prefix}", {"subject": both, "date": f"{prefix}2026-03-02"}, lambda r, rule=rule: rule(on(r[2]), on("2026-03-02")))
    )

for name, params, pred in matrix:
    want = sum(1 for r in SEED if pred(r))
    got = client.resources("Observation").search(**params).count()
    check(got == want, f"{name}: count {got}, expected {want}")
    found = client.resources("Observation").search(**params).limit(3).fetch_all()
    check(len(found) == want, f"{name}: {len(found)} fetched over pages, expected {want}")

# _sort on the date, both ways, over pages of two.
days = sorted(r[2] for r in SEED)
for sort, expected in (("date", days), ("-date", days[::-1])):
    got = [o["effectiveDateTime"][:10] for o in client.resources("Observation").search(subject=both).sort(sort).limit(2).fetch_all()]
    check(got == expected, f"_sort={sort}: {got}")

# _count=0 and _summary=count answer the total only; _total=none omits it.
for extra in ({"_count": "0"}, {"_summary": "count"}):
    b = requests.get(f"{base}/Observation", params={"subject": both, **extra}, headers=auth).json()
    check(b.get("total") == len(SEED) and "entry" not in b, f"{extra}: {b.get('total')}, entries {len(b.get('entry', []))}")
b = requests.get(f"{base}/Observation", params={"subject": both, "_total": "none"}, headers=auth).json()
check("total" not in b and len(b.get("entry", [])) == len(SEED), "_total=none")

# Pages do not move while records arrive.
first = requests.get(f"{base}/Observation", params={"subject": both, "_count": "3", "_sort": "date"}, headers=auth).json()
client.resource("Observation", **resource(A, "8867-4", "2026-02-01", None)).save()
seen = [e["resource"]["effectiveDateTime"][:10] for e in first.get("entry", [])]
nxt = [l["url"] for l in first["link"] if l["relation"] == "next"]
while nxt:
    page = requests.get(nxt[0], headers=auth).json()
    seen += [e["resource"]["effectiveDateTime"][:10] for e in page.get("entry", [])]
    nxt = [l["url"] for l in page["link"] if l["relation"] == "next"]
check(seen == days, f"pinned pages: {seen}")
check(client.resources("Observation").search(subject=both).count() == len(SEED) + 1, "a new search sees the late record")

# Unknown parameters: 400, or ignored and reported under Prefer: handling=lenient.
r = requests.get(f"{base}/Observation", params={"subject": both, "bogus": "1"}, headers=auth)
check(r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome", f"unknown parameter: {r.status_code}")
r = requests.get(f"{base}/Observation", params={"subject": both, "bogus": "1"}, headers={**auth, "Prefer": "handling=lenient"})
b = r.json()
check(r.status_code == 200 and b.get("total") == len(SEED) + 1, f"lenient: {r.status_code} {b.get('total')}")
check(any(e.get("search", {}).get("mode") == "outcome" for e in b.get("entry", [])), "lenient search reports what it ignored")

# Errors are OperationOutcomes; XML is 406.
for method, url, status in (("PUT", f"{base}/Observation/x", 405), ("DELETE", f"{base}/Observation/x", 405), ("GET", f"{base}/", 404)):
    r = requests.request(method, url, headers=auth)
    check(r.status_code == status and r.json().get("resourceType") == "OperationOutcome", f"{method} {url}: {r.status_code}")
r = requests.get(f"{base}/metadata", headers={"Accept": "application/fhir+xml"})
check(r.status_code == 406 and r.json().get("resourceType") == "OperationOutcome", f"XML Accept: {r.status_code}")

# The CapabilityStatement declares what the matrix used.
meta = client.execute("metadata", method="get")
obs = next(x for x in meta["rest"][0]["resource"] if x["type"] == "Observation")
declared = {p["name"] for p in obs["searchParam"]}
used = {k.split(":")[0] for _, params, _ in matrix for k in params}
check(used <= declared, f"searched but not declared: {used - declared}")
check(meta["rest"][0]["security"]["service"][0]["coding"][0]["code"] == "SMART-on-FHIR", "rest.security")
smart = requests.get(f"{base}/.well-known/smart-configuration").json()
check(smart["token_endpoint"].endswith("/v1/token") and "client_credentials" in smart["grant_types_supported"], "smart-configuration")

# Conditional create: a retried POST leaves one record.
body = {"resourceType": "Observation", **resource(B, "8867-4", "2026-03-07", "B-9")}
cond = {**auth, "Content-Type": "application/fhir+json", "If-None-Exist": f"identifier={IDS}|B-9"}
r1 = requests.post(f"{base}/Observation", json=body, headers=cond)
r2 = requests.post(f"{base}/Observation", json=body, headers=cond)
check(r1.status_code == 201 and r2.status_code == 200, f"conditional create: {r1.status_code}, {r2.status_code}")
check(r1.json()["id"] == r2.json()["id"], "the retry answers the first resource")
check(client.resources("Observation").search(identifier=f"{IDS}|B-9").count() == 1, "one record after a retry")

if failures:
    sys.exit(f"{len(failures)} search checks failed")
print(f"fhirpy search matrix: {len(matrix)} queries over {len(SEED)} seeded Observations, sorting, totals, pinned pages, errors and conditional create: ok")
