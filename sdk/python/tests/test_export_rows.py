"""Export rows and date selection, without a node."""

import json

import pytest
import rfc8785

from medledger import ExportVerificationError
from medledger.export import Selection, _parse_rows, render_row


def test_rows_render_as_the_node_streams_them():
    rec = {"patient": "P", "diagnoses": ["J10.1"], "encounter_date": "2026-11-24"}
    line = render_row(7, "ab" * 32, 1700000000000, "medical_report", rfc8785.dumps(rec))
    assert json.loads(line) == {"leaf": 7, "id": "ab" * 32, "recorded": 1700000000000, "kind": "medical_report", "record": rec}
    assert line.startswith(b'{"leaf":7,"id":"') and line.endswith(b'"encounter_date":"2026-11-24","patient":"P"}}\n')


def test_days_are_utc_and_inclusive():
    s = Selection("vital_signs", "2026-11-23", "2026-11-23")
    assert s.selects({"time": "2026-11-24T00:30:00+01:00"})      # 23:30 UTC on the 23rd
    assert not s.selects({"time": "2026-11-24T00:30:00Z"})
    assert s.selects({"time": "2026-11-23T00:00:00Z"})
    assert not s.selects({"time": "not a time"}) and not s.selects({})
    m = Selection("medical_report", None, "2026-11-24")
    assert m.selects({"encounter_date": "2026-11-24"}) and not m.selects({"encounter_date": "2026-11-25"})
    assert Selection("fhir.observation", None, None).selects({"anything": 1})


def test_rows_out_of_order_outside_the_range_or_not_canonical_are_refused():
    sel = Selection("medical_report", "2026-11-24", "2026-11-24")
    ok = {"encounter_date": "2026-11-24"}
    row = lambda leaf, rec: render_row(leaf, "ab" * 32, 1, "medical_report", rfc8785.dumps(rec))
    assert len(_parse_rows(row(1, ok) + row(4, ok), sel, 10)) == 2
    for body in [row(4, ok) + row(1, ok), row(11, ok), row(1, {"encounter_date": "2026-11-25"}),
                 row(1, ok).replace(b'"leaf":1,', b'"leaf": 1,'), row(1, ok)[:-1]]:
        with pytest.raises(ExportVerificationError):
            _parse_rows(body, sel, 10)
