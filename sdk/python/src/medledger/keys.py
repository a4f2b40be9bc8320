"""Ed25519 keys, the CLI's key-file format, and the signature check.

A key file (``medledger keygen``) is one JCS JSON object and a newline::

    {"kind":"ed25519","public_key":HEX,"secret_key":HEX,"v":1}

Signatures are checked with ``cryptography`` (OpenSSL, RFC 8032). The ledger
checks under ZIP-215; OpenSSL accepts a strict subset of what ZIP-215
accepts (it refuses non-canonical R and A and needs the cofactorless
equation), so this SDK never accepts a signature the ledger would refuse,
and every honestly made signature passes both. Weak (small-order) public
keys are refused here as the ledger refuses them: a signature by such a key
proves nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import KeyFileError, SignatureError

# The y-coordinates (sign bit cleared) of the eight small-order points of
# edwards25519, including their non-canonical encodings y = p and y = p + 1:
# the same list libsodium checks in crypto_sign_verify_detached.
_SMALL_ORDER_Y = frozenset(
    bytes.fromhex(h)
    for h in (
        "0000000000000000000000000000000000000000000000000000000000000000",  # y=0, order 4
        "0100000000000000000000000000000000000000000000000000000000000000",  # y=1, identity
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y=p-1, order 2
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y=p (=0)
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y=p+1 (=1)
    )
)


def is_weak_public_key(key: bytes) -> bool:
    """Whether ``key`` encodes a point of small order (any encoding)."""
    if len(key) != 32:
        return True
    return key[:31] + bytes([key[31] & 0x7F]) in _SMALL_ORDER_Y


def public_key_from_bytes(key: bytes) -> Ed25519PublicKey:
    """Decodes a 32-byte public key, refusing weak keys and non-points."""
    if not isinstance(key, (bytes, bytearray)) or len(key) != 32:
        raise SignatureError("an Ed25519 public key is 32 bytes")
    if is_weak_public_key(bytes(key)):
        raise SignatureError(f"weak (small-order) Ed25519 public key {bytes(key).hex()}")
    try:
        return Ed25519PublicKey.from_public_bytes(bytes(key))
    except ValueError as e:
        raise SignatureError(f"not an Ed25519 public key: {e}") from None


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Raises ``SignatureError`` unless ``signature`` by ``public_key`` covers ``message``."""
    pk = public_key_from_bytes(public_key)
    if len(signature) != 64:
        raise SignatureError("an Ed25519 signature is 64 bytes")
    try:
        pk.verify(bytes(signature), message)
    except InvalidSignature:
        raise SignatureError("Ed25519 signature does not verify") from None


class SigningKey:
    """An Ed25519 signing key (a participant's or a device's)."""

    def __init__(self, private: Ed25519PrivateKey):
        self._private = private
        self.public_key: bytes = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def generate(cls) -> "SigningKey":
        """A fresh key from the operating system's CSPRNG."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> "SigningKey":
        """The key of a 32-byte RFC 8032 secret (seed)."""
        if len(seed) != 32:
            raise KeyFileError("an Ed25519 secret key is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(bytes(seed)))

    @classmethod
    def from_key_file_text(cls, text: str) -> "SigningKey":
        """Parses a key file's text and checks that its halves belong together."""
        try:
            obj = json.loads(text.rstrip("\n"))
        except json.JSONDecodeError as e:
            raise KeyFileError(f"malformed key file: {e}") from None
        if not isinstance(obj, dict) or set(obj) != {"kind", "public_key", "secret_key", "v"}:
            raise KeyFileError("malformed key file: expected exactly kind, public_key, secret_key, v")
        if obj["kind"] != "ed25519" or obj["v"] != 1:
            raise KeyFileError(f"unsupported key kind {obj['kind']!r} version {obj['v']!r}")
        try:
            seed = _hex(obj["secret_key"], 32)
            public = _hex(obj["public_key"], 32)
        except ValueError as e:
            raise KeyFileError(f"malformed key file: {e}") from None
        key = cls.from_seed(seed)
        if key.public_key != public:
            raise KeyFileError("key file is inconsistent: its public key does not match its secret key")
        return key

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SigningKey":
        """Reads a key file written by ``medledger keygen`` (or :meth:`save`)."""
        return cls.from_key_file_text(Path(path).read_text(encoding="utf-8"))

    def key_file_text(self) -> str:
        """The key file: JCS JSON and a newline, byte-identical to the CLI's."""
        seed = self._private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        obj = {"kind": "ed25519", "public_key": self.public_key.hex(), "secret_key": seed.hex(), "v": 1}
        return rfc8785.dumps(obj).decode() + "\n"

    def save(self, path: str | os.PathLike) -> None:
        """Writes the key file with mode 0600; refuses to overwrite."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(self.key_file_text())

    @property
    def public_key_hex(self) -> str:
        """The public key in hex: the participant id on the ledger."""
        return self.public_key.hex()

    def sign(self, message: bytes) -> bytes:
        """An Ed25519 signature over ``message``."""
        return self._private.sign(message)

    def private_key(self) -> Ed25519PrivateKey:
        """The ``cryptography`` key object (for JWT assertions and the like)."""
        return self._private

    def __repr__(self) -> str:
        return f"SigningKey(public_key={self.public_key_hex})"


def _hex(value: object, n: int) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * n or value != value.lower():
        raise ValueError(f"expected {2 * n} lowercase hex digits")
    return bytes.fromhex(value)
