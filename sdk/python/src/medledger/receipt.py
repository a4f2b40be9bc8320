"""Receipts: C2SP tlog-proof v1, with medledger's ``extra`` line.

::

    c2sp.org/tlog-proof@v1
    extra base64(JCS(header) || signature)     the leaf preimage
    index N
    base64(hash) ...                           RFC 6962 inclusion proof
    <blank line>
    <signed checkpoint note>

The transaction id is the leaf hash of ``extra``. A receipt verifies
offline: the checkpoint is signed by a trusted node key, the index is in
the tree, and the proof binds the leaf to the checkpoint's root.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import merkle
from .errors import FormatError, VerificationError
from .note import Checkpoint, Note, Trust, _decimal, b64decode_strict
from .tx import verify_header_signature

HEADER = "c2sp.org/tlog-proof@v1"
MAX_PROOF_HASHES = 64


@dataclass(frozen=True)
class TlogProof:
    """A parsed, unverified receipt."""

    extra: bytes | None
    index: int
    proof: tuple[bytes, ...]
    checkpoint_note: str

    @classmethod
    def parse(cls, s: str) -> "TlogProof":
        """Parses strictly; verifies nothing."""
        if len(s.encode()) > 2 * (1 << 20):
            raise FormatError("tlog proof is larger than 2 MiB")
        lines = s.split("\n")
        if not lines or lines[0] != HEADER:
            raise FormatError(f"receipt does not start with {HEADER}")
        i = 1
        extra = None
        if i < len(lines) and lines[i].startswith("extra "):
            extra = b64decode_strict(lines[i][6:], "extra data")
            i += 1
        if i >= len(lines) or not lines[i].startswith("index "):
            raise FormatError('receipt has no "index N" line')
        index = _decimal(lines[i][6:], "index")
        i += 1
        proof = []
        while True:
            if i >= len(lines) - 1:
                raise FormatError("receipt has no empty line before the checkpoint")
            line = lines[i]
            i += 1
            if line == "":
                break
            if len(proof) >= MAX_PROOF_HASHES:
                raise FormatError("receipt has more than 64 proof hashes")
            h = b64decode_strict(line, "proof hash")
            if len(h) != 32:
                raise FormatError("proof hash is not 32 bytes")
            proof.append(h)
        note = "\n".join(lines[i:])
        Checkpoint.parse_text(Note.parse(note).text)
        return cls(extra, index, tuple(proof), note)


@dataclass(frozen=True)
class VerifiedReceipt:
    """A receipt that verified: ``id`` is in the tree of ``checkpoint`` at ``index``."""

    id: str
    index: int
    checkpoint: Checkpoint
    header: dict
    text: str
    height: int | None = None


def verify_receipt(text: str, trust: Trust, expected_id: str | None = None,
                   expected_preimage: bytes | None = None) -> VerifiedReceipt:
    """Verifies a receipt for a transaction.

    The leaf is recomputed from ``extra`` (JCS(header) || signature); it must
    be ``expected_id`` if given, and ``extra`` must equal
    ``expected_preimage`` if given. The author's signature over the header
    is checked, then the checkpoint's signature and the inclusion proof.
    """
    p = TlogProof.parse(text)
    if p.extra is None:
        raise VerificationError("receipt carries no extra line (the transaction's header and signature)")
    if expected_preimage is not None and p.extra != expected_preimage:
        raise VerificationError("receipt is for another transaction: its extra differs from the transaction's header and signature")
    leaf = merkle.leaf_hash(p.extra)
    if expected_id is not None and leaf.hex() != expected_id.lower():
        raise VerificationError(f"receipt proves leaf {leaf.hex()}, not transaction {expected_id}")
    if len(p.extra) <= 64:
        raise VerificationError("receipt extra is too short for a header and a signature")
    header_jcs, sig = p.extra[:-64], p.extra[-64:]
    header = verify_header_signature(header_jcs, sig)
    cp = Checkpoint.verify(p.checkpoint_note, trust)
    if p.index >= cp.size:
        raise VerificationError(f"leaf index {p.index} is out of range for tree size {cp.size}")
    merkle.verify_inclusion(p.index, cp.size, leaf, list(p.proof), cp.root)
    return VerifiedReceipt(leaf.hex(), p.index, cp, header, text)
