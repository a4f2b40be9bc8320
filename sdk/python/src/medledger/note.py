"""C2SP signed notes with Ed25519 verifier keys, and tlog checkpoints.

A vkey is ``name+hex8(key id)+base64(0x01 || public key)`` with
key id = SHA-256(name || 0x0A || 0x01 || public key)[:4]. A note is a
newline-terminated text, a blank line, and lines ``— name base64(id || sig)``.
Verification follows c2sp.org/signed-note: signatures by unknown keys are
ignored, a failing signature by a trusted key rejects the note, and at
least one trusted signature must verify. A checkpoint must in addition be
signed by a key named after its origin (c2sp.org/tlog-checkpoint).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from .errors import FormatError, SignatureError
from .keys import public_key_from_bytes, verify_signature

SIG_TYPE_ED25519 = 0x01
MAX_SIGNATURES = 100
MAX_NOTE_SIZE = 1 << 20
_SIG_PREFIX = "\u2014 "


def b64decode_strict(s: str, what: str) -> bytes:
    """Standard base64 with canonical padding, as the Rust side requires."""
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise FormatError(f"{what} is not base64") from None
    if base64.b64encode(raw).decode() != s:
        raise FormatError(f"{what} is not canonical base64")
    return raw


def key_id(name: str, sig_type: int, public_key: bytes) -> int:
    """SHA-256(name || 0x0A || type || key)[:4], big-endian."""
    d = hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()
    return int.from_bytes(d[:4], "big")


def _check_name(name: str) -> None:
    if not name:
        raise FormatError("key name is empty")
    if any(c.isspace() for c in name) or "+" in name or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise FormatError(f"invalid key name {name!r}")


@dataclass(frozen=True)
class Verifier:
    """A trusted Ed25519 note key: name, key id and public key."""

    name: str
    key_id: int
    public_key: bytes

    @classmethod
    def parse(cls, vkey: str) -> "Verifier":
        """Parses a vkey string, checking its key id and refusing weak keys."""
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3:
            raise FormatError("malformed verifier key: expected name+keyid+key")
        name, id_hex, key_b64 = parts
        _check_name(name)
        if not re.fullmatch(r"[0-9a-f]{8}", id_hex):
            raise FormatError("malformed verifier key: key id is not 8 lowercase hex digits")
        material = b64decode_strict(key_b64, "verifier key")
        if not material:
            raise FormatError("malformed verifier key: key is empty")
        if material[0] != SIG_TYPE_ED25519:
            raise FormatError(f"unsupported verifier key type 0x{material[0]:02x} (only Ed25519, 0x01)")
        public = material[1:]
        if len(public) != 32:
            raise FormatError("malformed verifier key: Ed25519 key is not 32 bytes")
        expected = key_id(name, SIG_TYPE_ED25519, public)
        if expected != int(id_hex, 16):
            raise FormatError(f"verifier key id {id_hex} does not match its name and key (expected {expected:08x})")
        public_key_from_bytes(public)  # refuses weak keys and non-points
        return cls(name, expected, public)

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> "Verifier":
        """The verifier of ``public_key`` under key name ``name``."""
        _check_name(name)
        public_key_from_bytes(public_key)
        return cls(name, key_id(name, SIG_TYPE_ED25519, public_key), bytes(public_key))

    def vkey(self) -> str:
        """The vkey string."""
        material = base64.b64encode(bytes([SIG_TYPE_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id:08x}+{material}"

    def __str__(self) -> str:
        return self.vkey()


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, key id and the bytes after the id."""

    name: str
    key_id: int
    sig: bytes


@dataclass(frozen=True)
class Note:
    """A parsed (not yet verified) signed note."""

    text: str
    signatures: tuple[NoteSignature, ...]

    @classmethod
    def parse(cls, s: str) -> "Note":
        """Parses a signed note strictly; verifies nothing."""
        if len(s.encode()) > MAX_NOTE_SIZE:
            raise FormatError("note is larger than 1 MiB")
        for i, ch in enumerate(s):
            if ord(ch) < 0x20 and ch != "\n":
                raise FormatError(f"note contains control character U+{ord(ch):04X} at offset {i}")
        split = s.rfind("\n\n")
        if split < 0:
            raise FormatError("note has no blank line separating the text from the signatures")
        text, block = s[: split + 1], s[split + 2 :]
        if not block:
            raise FormatError("note has no signature lines")
        if not block.endswith("\n"):
            raise FormatError("note does not end with a newline")
        sigs = []
        for line in block[:-1].split("\n"):
            if len(sigs) >= MAX_SIGNATURES:
                raise FormatError(f"note has more than {MAX_SIGNATURES} signatures")
            if not line.startswith(_SIG_PREFIX):
                raise FormatError("signature line does not start with an em dash and a space")
            rest = line[len(_SIG_PREFIX) :]
            name, sep, b64 = rest.partition(" ")
            if not sep or not b64:
                raise FormatError("signature line has no signature")
            _check_name(name)
            raw = b64decode_strict(b64, "signature")
            if len(raw) < 5:
                raise FormatError("signature is shorter than a key id and a signature")
            sigs.append(NoteSignature(name, int.from_bytes(raw[:4], "big"), raw[4:]))
        return cls(text, tuple(sigs))

    def verify(self, verifiers: list[Verifier]) -> list[Verifier]:
        """The trusted verifiers whose signatures verified (at least one).

        Raises ``SignatureError`` if a trusted key's signature fails, if two
        trusted keys share name and id, or if no trusted key signed."""
        ok: list[Verifier] = []
        for sig in self.signatures:
            matches = [v for v in verifiers if v.name == sig.name and v.key_id == sig.key_id]
            if not matches:
                continue
            if any(m.public_key != matches[0].public_key for m in matches):
                raise SignatureError(f"two trusted keys share name {sig.name!r} and key id {sig.key_id:08x}")
            v = matches[0]
            try:
                verify_signature(v.public_key, self.text.encode(), sig.sig)
            except SignatureError:
                raise SignatureError(f"signature by {sig.name!r} (key id {sig.key_id:08x}) failed to verify") from None
            if v not in ok:
                ok.append(v)
        if not ok:
            raise SignatureError("note has no signature from a trusted key")
        return ok


def _decimal(s: str, what: str) -> int:
    if not re.fullmatch(r"0|[1-9][0-9]*", s):
        raise FormatError(f"{what} is not a decimal number without leading zeros")
    n = int(s)
    if n >= 1 << 64:
        raise FormatError(f"{what} does not fit in 64 bits")
    return n


@dataclass(frozen=True)
class Checkpoint:
    """A verified tlog checkpoint: origin, tree size, root hash, and the
    signed note it came from (``note``), verbatim."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...]
    note: str

    @staticmethod
    def parse_text(text: str) -> tuple[str, int, bytes, tuple[str, ...]]:
        """Origin, size, root and extension lines of a checkpoint text."""
        if not text.endswith("\n"):
            raise FormatError("checkpoint text does not end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3 or not lines[0]:
            raise FormatError("checkpoint needs an origin, a tree size and a root hash")
        size = _decimal(lines[1], "tree size")
        root = b64decode_strict(lines[2], "root hash")
        if len(root) != 32:
            raise FormatError("root hash is not 32 bytes")
        if any(not e for e in lines[3:]):
            raise FormatError("checkpoint has an empty extension line")
        return lines[0], size, root, tuple(lines[3:])

    @classmethod
    def verify(cls, note_text: str, trust: "Trust") -> "Checkpoint":
        """Parses and verifies a signed checkpoint note against ``trust``."""
        note = Note.parse(note_text)
        verified = note.verify(trust.verifiers)
        origin, size, root, ext = cls.parse_text(note.text)
        if origin != trust.origin:
            raise SignatureError(f"checkpoint origin is {origin!r}, expected {trust.origin!r}")
        if not any(v.name == origin for v in verified):
            raise SignatureError(f"checkpoint for {origin!r} has no verified signature from a key named {origin!r}")
        return cls(origin, size, root, ext, note_text)


@dataclass(frozen=True)
class Trust:
    """The origin and node keys a client trusts."""

    origin: str
    verifiers: list[Verifier]

    @classmethod
    def from_vkey(cls, vkey: str) -> "Trust":
        """Trusts one vkey; the origin is its name (a checkpoint must be
        signed by a key named after its origin)."""
        v = Verifier.parse(vkey)
        return cls(v.name, [v])


SIG_TYPE_COSIGNATURE = 0x04
MAX_TIMESTAMP = (1 << 63) - 1


@dataclass(frozen=True)
class Cosigner:
    """A trusted C2SP tlog-cosignature key (vkey type ``0x04``): another node
    or a witness that vouches it saw the checkpoint, consistent with every
    other it saw."""

    name: str
    key_id: int
    public_key: bytes

    @classmethod
    def parse(cls, vkey: str) -> "Cosigner":
        """Parses a cosigner vkey ``name+hex8(id)+base64(0x04 || key)``."""
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3:
            raise FormatError("malformed cosigner key: expected name+keyid+key")
        name, id_hex, key_b64 = parts
        _check_name(name)
        material = b64decode_strict(key_b64, "cosigner key")
        if len(material) != 33 or material[0] != SIG_TYPE_COSIGNATURE:
            raise FormatError("not an Ed25519 cosigner key (type 0x04, 32 bytes)")
        public = material[1:]
        expected = key_id(name, SIG_TYPE_COSIGNATURE, public)
        if not re.fullmatch(r"[0-9a-f]{8}", id_hex) or int(id_hex, 16) != expected:
            raise FormatError(f"cosigner key id {id_hex} does not match its name and key (expected {expected:08x})")
        public_key_from_bytes(public)
        return cls(name, expected, public)

    def verify(self, note: Note) -> int | None:
        """The timestamp of this cosigner's cosignature on ``note``, or None
        if it has none; a line naming it that does not verify raises."""
        found = None
        for sig in note.signatures:
            if sig.name != self.name or sig.key_id != self.key_id:
                continue
            if len(sig.sig) != 72:
                raise SignatureError(f"cosignature by {self.name} is not a timestamp and an Ed25519 signature")
            ts = int.from_bytes(sig.sig[:8], "big")
            if ts > MAX_TIMESTAMP:
                raise SignatureError(f"cosignature by {self.name} has an impossible timestamp")
            msg = f"cosignature/v1\ntime {ts}\n".encode() + note.text.encode()
            try:
                verify_signature(self.public_key, msg, sig.sig[8:])
            except SignatureError:
                raise SignatureError(f"cosignature by {self.name} does not verify") from None
            found = ts if found is None else max(found, ts)
        return found


def verify_cosignatures(checkpoint_note: str, cosigners: list[Cosigner] | list[str], quorum: int) -> dict[str, int]:
    """Checks that at least ``quorum`` distinct trusted cosigners validly
    cosigned the checkpoint; returns each one's name and timestamp. A forged
    line from a trusted cosigner fails the whole check."""
    cs = [c if isinstance(c, Cosigner) else Cosigner.parse(c) for c in cosigners]
    note = Note.parse(checkpoint_note)
    ok: dict[str, int] = {}
    seen: set[bytes] = set()
    for c in cs:
        if c.public_key in seen:
            continue
        ts = c.verify(note)
        if ts is not None:
            ok[c.name] = ts
            seen.add(c.public_key)
    if len(ok) < quorum:
        raise SignatureError(f"{len(ok)} of the required {quorum} cosignatures verify")
    return ok
