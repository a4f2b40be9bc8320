"""Research exports, verified, as pandas DataFrames.

``Client.export`` reads ``GET /v1/export`` as NDJSON and proves it the way
``medledger export verify --url`` does:

1. the pinned checkpoint (``Medledger-Checkpoint``) is signed by the trusted
   key, has the size in ``Medledger-Log-Size``, and extends every checkpoint
   this client verified before (consistency proof);
2. every row is of the kind, below the checkpoint's size, in log order,
   dated within the query's days, and its bytes are the canonical rendering
   of its record;
3. (``verify="full"``, the default) walking every block below the size
   recomputes the checkpoint's root from the transaction ids; each record of
   the kind is read back (payload commitment, author signature, receipt)
   and is byte for byte the row at its leaf; and the selected records are
   exactly the rows, but for as many as the node says it withheld under
   patients' consent directives.

:meth:`VerifiedExport.save` writes the NDJSON file and a manifest in the
CLI's format, so ``medledger export verify FILE --vkey ... --url ...``
checks it independently; :func:`load_export` reads such a pair back (from
the SDK or from ``medledger export --format ndjson``) and verifies it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import rfc8785

from . import merkle
from .errors import ExportVerificationError, FormatError, MedledgerError, ProblemError
from .note import Checkpoint, Trust

if TYPE_CHECKING:
    from .client import Client

MANIFEST_VERSION = 1
KINDS = ("medical_report", "vital_signs", "epidemic_report", "vaccination_report",
         "organ_donor_decision", "fhir.observation", "fhir.condition", "fhir.immunization")
_DATE_FIELD = {"medical_report": "encounter_date", "vital_signs": "time", "epidemic_report": "date",
               "vaccination_report": "date", "organ_donor_decision": "date"}
MS_PER_DAY = 86_400_000
BLOCKS_PAGE = 100


def _day_ms(day: str, what: str) -> int:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day or ""):
        raise FormatError(f"{what} {day!r} is not a day YYYY-MM-DD")
    d = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    return int(d.timestamp()) * 1000


def date_start_ms(s: str) -> int | None:
    """Start of a date (YYYY, YYYY-MM, YYYY-MM-DD) or an instant, in ms UTC."""
    if not isinstance(s, str):
        return None
    try:
        if re.fullmatch(r"\d{4}", s):
            return _day_ms(f"{s}-01-01", "date")
        if re.fullmatch(r"\d{4}-\d{2}", s):
            return _day_ms(f"{s}-01", "date")
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
            return _day_ms(s, "date")
        t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except (ValueError, FormatError):
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return int(t.timestamp() * 1000)


class Selection:
    """Which records of a kind an export's days select (``record_date_ms`` and
    ``Export::selects`` of crates/health/src/export.rs)."""

    def __init__(self, kind: str, date_from: str | None, date_to: str | None):
        if kind not in KINDS:
            raise FormatError(f"unknown export kind {kind!r}; one of {', '.join(KINDS)}")
        self.kind, self.date_from, self.date_to = kind, date_from, date_to
        self.start = _day_ms(date_from, "from") if date_from else None
        self.end = _day_ms(date_to, "to") + MS_PER_DAY if date_to else None
        self.ranged = self.start is not None or self.end is not None

    def selects(self, record: Any) -> bool:
        """Whether the query's days select ``record`` (a payload)."""
        if not self.ranged:
            return True
        field = _DATE_FIELD.get(self.kind)
        if field is None:
            # FHIR resources carry their clinical date in type-specific
            # elements; this SDK does not re-derive it.
            raise MedledgerError(f"date selection of {self.kind} is not re-derived by this SDK; "
                                 "export it without from/to, or verify with `medledger export verify`")
        d = date_start_ms(record.get(field)) if isinstance(record, dict) else None
        return d is not None and (self.start is None or d >= self.start) and (self.end is None or d < self.end)


def render_row(leaf: int, tx_id: str, recorded: int, kind: str, record_jcs: bytes) -> bytes:
    """One NDJSON row as the node renders it, with its newline."""
    head = json.dumps({"leaf": leaf, "id": tx_id, "recorded": recorded, "kind": kind}, separators=(",", ":"))
    return head[:-1].encode() + b',"record":' + record_jcs + b"}\n"


@dataclass(frozen=True)
class Row:
    """One export row: leaf, transaction id, author time (ms), kind, record."""

    leaf: int
    id: str
    recorded: int
    kind: str
    record: Any


def _parse_rows(body: bytes, sel: Selection, size: int) -> list[Row]:
    rows: list[Row] = []
    last = -1
    for n, line in enumerate(body.splitlines(keepends=True), 1):
        where = f"row {n}"
        try:
            obj = json.loads(line)
            row = Row(obj["leaf"], obj["id"], obj["recorded"], obj["kind"], obj["record"])
        except (ValueError, KeyError, TypeError) as e:
            raise ExportVerificationError(f"{where} is not an export row: {e}") from None
        if set(obj) != {"leaf", "id", "recorded", "kind", "record"} or not isinstance(row.leaf, int):
            raise ExportVerificationError(f"{where} has other fields than leaf, id, recorded, kind and record")
        leaf = row.leaf
        if row.kind != sel.kind or leaf >= size or leaf <= last:
            raise ExportVerificationError(f"{where} (leaf {leaf}) is not a {sel.kind} record of the query below size {size}, in log order")
        if not sel.selects(row.record):
            raise ExportVerificationError(f"{where} (leaf {leaf}) is dated outside the query's days")
        if render_row(leaf, row.id, row.recorded, row.kind, rfc8785.dumps(row.record)) != line:
            raise ExportVerificationError(f"{where} (leaf {leaf}) is not the canonical rendering of its record")
        last = leaf
        rows.append(row)
    if body and not body.endswith(b"\n"):
        raise ExportVerificationError("the export does not end with a whole row")
    return rows


@dataclass
class VerifiedExport:
    """An export and what was proven about it (``verified``: ``"full"`` or ``"rows"``)."""

    selection: Selection
    checkpoint: Checkpoint
    rows: list[Row]
    body: bytes
    withheld: int
    verified: str

    @property
    def kind(self) -> str:
        """The exported kind."""
        return self.selection.kind

    def manifest(self) -> dict:
        """The manifest, as ``medledger export`` writes it."""
        return {
            "v": MANIFEST_VERSION,
            "query": {"kind": self.kind, "from": self.selection.date_from, "to": self.selection.date_to,
                      "format": "ndjson"},
            "checkpoint": self.checkpoint.note,
            "log_size": self.checkpoint.size,
            "rows": len(self.rows),
            "withheld": self.withheld,
            "sha256": hashlib.sha256(self.body).hexdigest(),
            "leaves": [r.leaf for r in self.rows],
        }

    def save(self, path: str | os.PathLike) -> tuple[Path, Path]:
        """Writes FILE and FILE.manifest.json; returns both paths."""
        path = Path(path)
        manifest = path.with_name(path.name + ".manifest.json")
        path.write_bytes(self.body)
        manifest.write_text(json.dumps(self.manifest(), separators=(",", ":")) + "\n", encoding="utf-8")
        return path, manifest

    def dataframe(self, flatten: bool = True):
        """The rows as a pandas DataFrame: ``leaf``, ``id``, ``recorded`` (UTC
        timestamp) and the record's fields (nested ones as ``a.b`` columns
        when ``flatten``). Needs the ``pandas`` extra."""
        try:
            import pandas as pd
        except ImportError:
            raise MedledgerError("DataFrames need pandas: pip install 'medledger[pandas]'") from None
        records = [r.record for r in self.rows]
        fields = pd.json_normalize(records) if flatten and records else pd.DataFrame.from_records(records)
        meta = pd.DataFrame({
            "leaf": [r.leaf for r in self.rows],
            "id": [r.id for r in self.rows],
            "recorded": pd.to_datetime([r.recorded for r in self.rows], unit="ms", utc=True),
        })
        df = pd.concat([meta, fields.reset_index(drop=True)], axis=1)
        df.attrs["medledger"] = {"kind": self.kind, "checkpoint": self.checkpoint.note,
                                 "log_size": self.checkpoint.size, "withheld": self.withheld,
                                 "verified": self.verified}
        return df


def _full_check(client: "Client", sel: Selection, pinned: Checkpoint, rows: list[Row], withheld: int) -> None:
    """Walks the ledger below the pinned size and matches its records of the
    kind against the rows (see the module's step 3)."""
    size = pinned.size
    frontier = merkle.Frontier()
    by_leaf = {r.leaf: r for r in rows}
    absent = denied = 0
    height = 0
    while frontier.size < size:
        blocks, _ = client.blocks(height, BLOCKS_PAGE)
        if not blocks:
            raise ExportVerificationError(f"the node's log ends at leaf {frontier.size}, before the checkpoint's size {size}")
        for b in blocks:
            if frontier.size >= size:
                break
            h = b.header
            if h.get("first_leaf") != frontier.size or h.get("log_size", 0) > size:
                raise ExportVerificationError(f"block {b.height} does not continue the log at leaf {frontier.size} below size {size}")
            for i, t in enumerate(b.transactions):
                leaf = h["first_leaf"] + i
                frontier.push(bytes.fromhex(t["id"]))
                if t["header"].get("kind") != sel.kind:
                    continue
                row = by_leaf.pop(leaf, None)
                try:
                    vt = client.transaction(t["id"])
                except ProblemError as p:
                    if p.status == 403 and p.code == "consent_denied" and row is None:
                        denied += 1  # withheld from this reader; its date is not ours to see
                        continue
                    raise
                if vt.receipt.index != leaf:
                    raise ExportVerificationError(f"the node proves {t['id']} at leaf {vt.receipt.index}, block {b.height} lists it at {leaf}")
                selected = sel.selects(vt.payload)
                if row is None:
                    absent += selected
                    continue
                if not selected:
                    raise ExportVerificationError(f"leaf {leaf}: the ledger's record is dated outside the query's days")
                want = render_row(leaf, vt.id, vt.header["time"], sel.kind, rfc8785.dumps(vt.payload))
                got = render_row(row.leaf, row.id, row.recorded, row.kind, rfc8785.dumps(row.record))
                if want != got:
                    raise ExportVerificationError(f"leaf {leaf}: the row differs from the ledger's record {vt.id}")
            height = b.height + 1
    if frontier.root() != pinned.root:
        raise ExportVerificationError(
            f"the ledger's first {size} transactions hash to root {frontier.root().hex()}, not the checkpoint's {pinned.root.hex()}")
    if by_leaf:
        raise ExportVerificationError(f"rows at leaves {sorted(by_leaf)[:5]} hold no {sel.kind} record in the ledger")
    if not absent <= withheld <= absent + denied:
        raise ExportVerificationError(
            f"incomplete: {absent} selected records are missing from the export (and {denied} were refused to this "
            f"reader), but the node says it withheld {withheld}")


def fetch_export(client: "Client", kind: str, date_from: str | None = None, date_to: str | None = None,
                 *, verify: str = "full") -> VerifiedExport:
    """Reads and verifies an export; see the module's documentation."""
    if verify not in ("full", "rows"):
        raise MedledgerError('verify is "full" or "rows"')
    sel = Selection(kind, date_from, date_to)
    params = {"kind": kind, "format": "ndjson"}
    if date_from:
        params["from"] = date_from
    if date_to:
        params["to"] = date_to
    resp = client._request("GET", "/v1/export", auth=True, params=params)
    try:
        note = base64.b64decode(resp.headers["medledger-checkpoint"], validate=True).decode()
        size = int(resp.headers["medledger-log-size"])
        withheld = int(resp.headers.get("medledger-withheld", "0"))
    except (KeyError, ValueError) as e:
        raise ExportVerificationError(f"the export's checkpoint headers are missing or malformed: {e}") from None
    cp = Checkpoint.verify(note, client.trust)
    if cp.size != size:
        raise ExportVerificationError(f"the node says log size {size} but its checkpoint has size {cp.size}")
    client.consistency.observe(cp, latest=False)
    rows = _parse_rows(resp.content, sel, size)
    if verify == "full":
        _full_check(client, sel, cp, rows, withheld)
    return VerifiedExport(sel, cp, rows, resp.content, withheld, verify)


def load_export(path: str | os.PathLike, *, vkey: str | None = None, client: "Client | None" = None,
                manifest: str | os.PathLike | None = None) -> VerifiedExport:
    """Reads an NDJSON export and its manifest and verifies them: the
    manifest's checkpoint is signed by the trusted key (``vkey``, or the
    client's), the file's SHA-256, row count and leaves are the manifest's,
    and each row is well-formed and selected. With ``client`` the export is
    also proven against the ledger (as ``verify="full"``)."""
    path = Path(path)
    mpath = Path(manifest) if manifest else path.with_name(path.name + ".manifest.json")
    try:
        m = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ExportVerificationError(f"{mpath} is not an export manifest: {e}") from None
    if not isinstance(m, dict) or m.get("v") != MANIFEST_VERSION:
        raise ExportVerificationError(f"{mpath}: manifest version is not {MANIFEST_VERSION}")
    q = m.get("query") or {}
    if q.get("format") != "ndjson":
        raise MedledgerError("only NDJSON exports are loaded: export with --format ndjson")
    trust = client.trust if client else Trust.from_vkey(vkey) if vkey else None
    if trust is None:
        raise MedledgerError("give vkey= or client= to verify the manifest's checkpoint")
    cp = Checkpoint.verify(m["checkpoint"], trust)
    if cp.size != m.get("log_size"):
        raise ExportVerificationError(f"the manifest's log_size {m.get('log_size')} is not its checkpoint's size {cp.size}")
    body = path.read_bytes()
    if hashlib.sha256(body).hexdigest() != m.get("sha256"):
        raise ExportVerificationError(f"{path}: SHA-256 differs from the manifest's")
    sel = Selection(q.get("kind"), q.get("from"), q.get("to"))
    rows = _parse_rows(body, sel, cp.size)
    if [r.leaf for r in rows] != m.get("leaves") or len(rows) != m.get("rows"):
        raise ExportVerificationError(f"{path}: rows and leaves differ from the manifest's")
    withheld = int(m.get("withheld", 0))
    verified = "rows"
    if client is not None:
        client.consistency.observe(cp, latest=False)
        client.checkpoint()  # the node's current tree must extend the manifest's
        _full_check(client, sel, cp, rows, withheld)
        verified = "full"
    return VerifiedExport(sel, cp, rows, body, withheld, verified)
