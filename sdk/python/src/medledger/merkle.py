"""The RFC 6962 / RFC 9162 Merkle tree: hashes, roots and proof verification.

leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || left || right); the
empty tree's root is SHA-256(""). Inclusion and consistency proofs are
verified exactly as RFC 9162 sections 2.1.3.2 and 2.1.4.2 describe, so any
proof another RFC 6962 verifier accepts is accepted here and nothing else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from .errors import ProofError

HASH_SIZE = 32


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def empty_root() -> bytes:
    """The root of the empty tree, SHA-256 of no bytes."""
    return hashlib.sha256(b"").digest()


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH of the given leaf hashes (RFC 6962 section 2.1), iteratively."""
    return Frontier.of(leaves).root()


class Frontier:
    """The compact range of a growing tree: one hash per full subtree.

    Lets a client recompute a large log's root from its leaf hashes in
    O(log n) memory, as ``medledger export verify`` does.
    """

    def __init__(self) -> None:
        self._size = 0
        self._stack: list[bytes] = []  # full subtrees, largest first

    @classmethod
    def of(cls, leaves: Sequence[bytes]) -> "Frontier":
        f = cls()
        for leaf in leaves:
            f.push(leaf)
        return f

    @property
    def size(self) -> int:
        """Leaves pushed so far."""
        return self._size

    def push(self, leaf: bytes) -> None:
        """Appends one leaf hash."""
        _check_hash(leaf, "leaf hash")
        h = leaf
        n = self._size
        while n & 1:
            h = node_hash(self._stack.pop(), h)
            n >>= 1
        self._stack.append(h)
        self._size += 1

    def root(self) -> bytes:
        """The root over the leaves pushed so far."""
        if not self._stack:
            return empty_root()
        h = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            h = node_hash(left, h)
        return h


def _check_hash(h: bytes, what: str) -> None:
    if not isinstance(h, (bytes, bytearray)) or len(h) != HASH_SIZE:
        raise ProofError(f"{what} is not {HASH_SIZE} bytes")


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` leads to from ``leaf`` at ``index`` (RFC 9162 2.1.3.2)."""
    if index < 0 or size <= 0 or index >= size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    _check_hash(leaf, "leaf hash")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        _check_hash(p, "proof hash")
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes) -> None:
    """Raises ``ProofError`` unless ``proof`` binds ``leaf`` at ``index`` to ``expected_root``."""
    _check_hash(expected_root, "root")
    got = root_from_inclusion_proof(index, size, leaf, proof)
    if got != expected_root:
        raise ProofError(f"inclusion proof for leaf {index} leads to root {got.hex()}, not {expected_root.hex()}")


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Raises ``ProofError`` unless ``proof`` shows the tree (size1, root1) is a
    prefix of (size2, root2) (RFC 9162 2.1.4.2)."""
    for p in proof:
        _check_hash(p, "proof hash")
    if size1 < 0 or size2 < size1:
        raise ProofError(f"cannot prove size {size1} is a prefix of size {size2}")
    if size1 == size2:
        if proof:
            raise ProofError("proof between equal sizes must be empty")
        if root1 != root2:
            raise ProofError(f"two different roots for tree size {size1}")
        if size1 == 0 and root1 != empty_root():
            raise ProofError("root of the empty tree is not SHA-256 of nothing")
        return
    _check_hash(root1, "first root")
    _check_hash(root2, "second root")
    if size1 == 0:
        # Every tree extends the empty one; a proof for it proves nothing.
        raise ProofError("a consistency proof from the empty tree is meaningless")
    if not proof:
        raise ProofError("consistency proof is empty")
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # size1 is a power of two
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != root1:
        raise ProofError(f"consistency proof does not lead to the root of size {size1}")
    if sr != root2:
        raise ProofError(f"consistency proof does not lead to the root of size {size2}")
