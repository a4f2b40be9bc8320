"""Writes carebundle's synthetic US-Core R4 transaction Bundles, one file each."""

import sys
from pathlib import Path

import carebundle

out = Path(sys.argv[1])
count = int(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
bundles = carebundle.generate_cohort(count=count, seed=20261124, sex="mixed")
for i, b in enumerate(bundles):
    (out / f"bundle-{i:03}.json").write_text(carebundle.to_json(b))
print(f"wrote {len(bundles)} bundles to {out}")
