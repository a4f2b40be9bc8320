"""Transactions, byte-identical to ``crates/formats/src/tx.rs``.

::

    header     = {author, commitment, kind, nonce, time, v}      JCS (RFC 8785)
    commitment = SHA-256(salt || JCS(payload))                   salt: 16 random bytes
    signature  = Ed25519(author, "medledger/tx/v1\\n" || JCS(header))
    id         = SHA-256(0x00 || JCS(header) || signature)       the RFC 6962 leaf hash

The wire form is ``{"header", "payload", "salt", "signature"}`` with hex
byte strings.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time as _time
from dataclasses import dataclass
from typing import Any

import rfc8785

from . import merkle
from .errors import FormatError, SignatureError, VerificationError
from .keys import SigningKey, verify_signature

TX_TAG = b"medledger/tx/v1\n"
TX_VERSION = 1
MAX_SAFE_INTEGER = (1 << 53) - 1
MAX_DEPTH = 32
_KIND = re.compile(r"[a-z0-9_.]{1,64}")
_HEADER_FIELDS = {"author", "commitment", "kind", "nonce", "time", "v"}


def _check_value(v: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise FormatError(f"payload nests deeper than {MAX_DEPTH} levels")
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return
    if isinstance(v, int):
        if abs(v) > MAX_SAFE_INTEGER:
            raise FormatError(f"number at {path} is outside the exactly representable range ±(2^53-1)")
    elif isinstance(v, float):
        if not math.isfinite(v):
            raise FormatError(f"number at {path} is not finite")
    elif isinstance(v, list):
        for i, item in enumerate(v):
            _check_value(item, f"{path}[{i}]", depth + 1)
    elif isinstance(v, dict):
        for k, item in v.items():
            if not isinstance(k, str):
                raise FormatError(f"key at {path} is not a string")
            _check_value(item, f"{path}.{k}", depth + 1)
    else:
        raise FormatError(f"value at {path} is not JSON ({type(v).__name__})")


def canonical_payload(payload: dict) -> bytes:
    """JCS bytes of a payload, refusing what another JCS could render
    differently (integers beyond 2^53, non-finite numbers, deep nesting)."""
    if not isinstance(payload, dict):
        raise FormatError("payload must be a JSON object")
    _check_value(payload, "$", 0)
    return rfc8785.dumps(payload)


def commitment(salt: bytes, payload_jcs: bytes) -> bytes:
    """SHA-256(salt || JCS(payload))."""
    return hashlib.sha256(salt + payload_jcs).digest()


def _hex(d: dict, field: str, n: int) -> bytes:
    v = d.get(field)
    if not isinstance(v, str) or not re.fullmatch(f"[0-9a-f]{{{2 * n}}}", v):
        raise FormatError(f"{field} is not {2 * n} lowercase hex digits")
    return bytes.fromhex(v)


def check_header(header: dict) -> None:
    """The header's shape, as the Rust struct (deny_unknown_fields) requires."""
    if not isinstance(header, dict) or set(header) != _HEADER_FIELDS:
        raise FormatError(f"header must have exactly the fields {sorted(_HEADER_FIELDS)}")
    if header["v"] != TX_VERSION or isinstance(header["v"], bool):
        raise FormatError(f"unsupported transaction version {header['v']!r}")
    if not isinstance(header["kind"], str) or not _KIND.fullmatch(header["kind"]):
        raise FormatError("invalid kind: must be 1-64 characters of a-z, 0-9, '_' or '.'")
    t = header["time"]
    if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t <= MAX_SAFE_INTEGER:
        raise FormatError("time must be an integer from 0 to 2^53-1 (ms since the Unix epoch)")
    _hex(header, "author", 32)
    _hex(header, "commitment", 32)
    _hex(header, "nonce", 16)


def header_jcs(header: dict) -> bytes:
    """JCS(header)."""
    check_header(header)
    return rfc8785.dumps(header)


def verify_header_signature(header_bytes: bytes, signature: bytes) -> dict:
    """Checks the author's signature over stored header bytes (which must be
    canonical) and returns the parsed header."""
    try:
        header = json.loads(header_bytes)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VerificationError(f"header is not JSON: {e}") from None
    if header_jcs(header) != header_bytes:
        raise VerificationError("header bytes are not canonical JCS")
    try:
        verify_signature(bytes.fromhex(header["author"]), TX_TAG + header_bytes, signature)
    except SignatureError as e:
        raise SignatureError(f"author signature: {e}") from None
    return header


@dataclass(frozen=True)
class Transaction:
    """A signed transaction: header, payload, salt and signature.

    Build one with :meth:`sign`; read one from the wire with
    :meth:`from_wire`, which checks the commitment (and, unless told not to,
    the signature)."""

    header: dict
    payload: Any
    salt: bytes
    signature: bytes

    @classmethod
    def sign(cls, key: SigningKey, kind: str, payload: dict, time_ms: int | None = None,
             *, salt: bytes | None = None, nonce: bytes | None = None) -> "Transaction":
        """Builds, commits and signs a transaction. ``salt`` and ``nonce`` are
        random unless given (give them only for known-answer tests)."""
        salt = os.urandom(16) if salt is None else salt
        nonce = os.urandom(16) if nonce is None else nonce
        if len(salt) != 16 or len(nonce) != 16:
            raise FormatError("salt and nonce are 16 bytes")
        if time_ms is None:
            time_ms = int(_time.time() * 1000)
        header = {
            "author": key.public_key_hex,
            "commitment": commitment(salt, canonical_payload(payload)).hex(),
            "kind": kind,
            "nonce": nonce.hex(),
            "time": time_ms,
            "v": TX_VERSION,
        }
        sig = key.sign(TX_TAG + header_jcs(header))
        return cls(header, payload, salt, sig)

    @classmethod
    def from_wire(cls, wire: dict, *, verify: bool = True) -> "Transaction":
        """A transaction from its JSON form; checks shape, commitment and
        (by default) the author's signature."""
        if not isinstance(wire, dict) or set(wire) != {"header", "payload", "salt", "signature"}:
            raise FormatError("a transaction has exactly header, payload, salt and signature")
        tx = cls(wire["header"], wire["payload"], _hex(wire, "salt", 16), _hex(wire, "signature", 64))
        check_header(tx.header)
        if commitment(tx.salt, canonical_payload(tx.payload)).hex() != tx.header["commitment"]:
            raise VerificationError("payload does not match the header's commitment")
        if verify:
            verify_header_signature(tx.header_jcs, tx.signature)
        return tx

    @property
    def header_jcs(self) -> bytes:
        """JCS(header)."""
        return header_jcs(self.header)

    @property
    def leaf_preimage(self) -> bytes:
        """JCS(header) || signature: what a receipt's ``extra`` holds."""
        return self.header_jcs + self.signature

    @property
    def id(self) -> str:
        """The transaction id (hex): the RFC 6962 leaf hash of the preimage."""
        return merkle.leaf_hash(self.leaf_preimage).hex()

    @property
    def kind(self) -> str:
        """The transaction kind, e.g. ``medical_report``."""
        return self.header["kind"]

    def to_wire(self) -> dict:
        """The JSON form the node accepts."""
        return {"header": self.header, "payload": self.payload, "salt": self.salt.hex(),
                "signature": self.signature.hex()}

    def to_json(self) -> bytes:
        """The wire form as bytes (canonical, so resends are byte-identical)."""
        return rfc8785.dumps(self.to_wire())
