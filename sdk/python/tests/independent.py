"""Independent reference code for the tests: RFC 6962 MTH, PATH and PROOF
written straight from the RFC's recursive definitions, C2SP notes, and
transactions, from hashlib, cryptography and rfc8785 alone. Nothing here
imports the SDK, so the tests compare it against a second implementation."""

from __future__ import annotations

import base64
import hashlib

import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def sha(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def leaf(data: bytes) -> bytes:
    return sha(b"\x00" + data)


def _k(n: int) -> int:
    """Largest power of two smaller than n (RFC 6962 2.1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) over leaf hashes."""
    n = len(leaves)
    if n == 0:
        return sha(b"")
    if n == 1:
        return leaves[0]
    k = _k(n)
    return sha(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) (RFC 6962 2.1.1)."""
    n = len(leaves)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) (RFC 6962 2.1.2)."""
    n = len(leaves)
    if m == n:
        return [] if b else [mth(leaves)]
    k = _k(n)
    if m <= k:
        return subproof(m, leaves[:k], b) + [mth(leaves[k:])]
    return subproof(m - k, leaves[k:], False) + [mth(leaves[:k])]


def consistency(m: int, leaves: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n])."""
    return subproof(m, leaves, True)


def seed_key(seed: bytes) -> tuple[Ed25519PrivateKey, bytes]:
    k = Ed25519PrivateKey.from_private_bytes(seed)
    return k, k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def vkey(name: str, pub: bytes) -> str:
    kid = sha(name.encode() + b"\n\x01" + pub)[:4]
    material = base64.b64encode(b"\x01" + pub).decode()
    return f"{name}+{kid.hex()}+{material}"


def sign_note(text: str, name: str, key: Ed25519PrivateKey, pub: bytes) -> str:
    kid = sha(name.encode() + b"\n\x01" + pub)[:4]
    sig = key.sign(text.encode())
    return f"{text}\n\u2014 {name} {base64.b64encode(kid + sig).decode()}\n"


def checkpoint(origin: str, size: int, root: bytes, key: Ed25519PrivateKey, pub: bytes) -> str:
    return sign_note(f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n", origin, key, pub)


def tx(seed: bytes, kind: str, payload: dict, time_ms: int, salt: bytes, nonce: bytes) -> dict:
    """A signed transaction in wire form, with its id and leaf preimage."""
    k, pub = seed_key(seed)
    commit = sha(salt + rfc8785.dumps(payload)).hex()
    header = {"author": pub.hex(), "commitment": commit, "kind": kind, "nonce": nonce.hex(), "time": time_ms, "v": 1}
    hj = rfc8785.dumps(header)
    sig = k.sign(b"medledger/tx/v1\n" + hj)
    return {
        "wire": {"header": header, "payload": payload, "salt": salt.hex(), "signature": sig.hex()},
        "preimage": hj + sig,
        "id": leaf(hj + sig).hex(),
    }


def receipt(preimage: bytes, index: int, leaves: list[bytes], origin: str, key: Ed25519PrivateKey, pub: bytes) -> str:
    lines = ["c2sp.org/tlog-proof@v1", "extra " + base64.b64encode(preimage).decode(), f"index {index}"]
    lines += [base64.b64encode(h).decode() for h in path(index, leaves)]
    return "\n".join(lines) + "\n\n" + checkpoint(origin, len(leaves), mth(leaves), key, pub)
