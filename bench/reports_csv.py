"""Writes N synthetic medical reports as an import CSV (pseudonyms, ICD-10 codes, clinical text).

Usage: reports_csv.py N OUT.csv [INSTITUTION]
"""

import base64
import csv
import random
import sys

n, out = int(sys.argv[1]), sys.argv[2]
institution = sys.argv[3] if len(sys.argv) > 3 else "Dom zdravlja Nis"
rng = random.Random(2026)
codes = ["J06.9", "I10", "E11.9", "J20.9", "M54.5", "K29.7", "N39.0", "J03.9", "E78.0", "J10.1"]
patients = [base64.b32encode(rng.randbytes(16)).decode().rstrip("=") for _ in range(20_000)]
with open(out, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["patient", "institution", "encounter_date", "diagnoses", "anamnesis", "findings", "therapy"])
    for i in range(n):
        t = 37 + rng.random() * 2.5
        w.writerow([
            rng.choice(patients),
            institution,
            f"2026-{rng.randint(1, 11):02}-{rng.randint(1, 28):02}",
            ";".join(rng.sample(codes, rng.randint(1, 3))),
            f"Tegobe {rng.randint(1, 10)} dana, temperatura do {t:.1f} C, suv kašalj, malaksalost.",
            f"Ždrelo hiperemično, pluća čista, TA {rng.randint(110, 170)}/{rng.randint(70, 100)} mmHg.",
            "Simptomatska terapija, hidratacija, kontrola po potrebi.",
        ])
