"""Consistency across calls: the last trusted checkpoint, and the rule
that every later one must be a proven extension of it.

The tracker holds the largest checkpoint verified so far. A newer one of
the same size must have the same root; a larger one must come with an RFC
6962 consistency proof from the node that verifies; a smaller one is
either an older view that the node proves is a prefix (accepted for
receipts, which may cite an older checkpoint) or, for the node's *latest*
checkpoint, a rollback. Failures raise ``ConsistencyError`` carrying both
signed notes, which together prove the misbehaviour to anyone holding the
node's vkey. With ``state=PATH`` the trusted checkpoint survives restarts.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from . import merkle
from .errors import ConsistencyError, ProofError, ProblemError
from .note import Checkpoint, Trust

ProofFetcher = Callable[[int, int], list[bytes]]


class ConsistencyTracker:
    """Keeps the last verified checkpoint and refuses forks and rollbacks."""

    def __init__(self, trust: Trust, fetch_proof: ProofFetcher, state: str | os.PathLike | None = None):
        self._trust = trust
        self._fetch = fetch_proof
        self._state = Path(state) if state is not None else None
        self.last: Checkpoint | None = None
        # (size, root) pairs proven consistent with `last`'s history.
        self._known: set[tuple[int, bytes]] = set()
        if self._state is not None and self._state.exists():
            saved = json.loads(self._state.read_text(encoding="utf-8"))
            # The saved note is verified again: a state file is not trusted blindly.
            self.last = Checkpoint.verify(saved["checkpoint"], trust)
            self._known.add((self.last.size, self.last.root))

    def _save(self) -> None:
        if self._state is None or self.last is None:
            return
        fd, tmp = tempfile.mkstemp(dir=self._state.parent or ".", prefix=".medledger-state-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"v": 1, "checkpoint": self.last.note}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._state)

    def _prove(self, small: Checkpoint, large: Checkpoint) -> list[bytes]:
        try:
            proof = self._fetch(small.size, large.size)
        except ProblemError as p:
            if p.status >= 500:
                raise
            raise ConsistencyError(
                "fork", f"the node refused to prove size {large.size} extends size {small.size}: {p}",
                small.note, large.note) from None
        try:
            merkle.verify_consistency(small.size, large.size, proof, small.root, large.root)
        except ProofError as e:
            raise ConsistencyError(
                "fork", f"consistency proof from {small.size} to {large.size} does not verify: {e}",
                small.note, large.note, proof) from None
        return proof

    def observe(self, cp: Checkpoint, *, latest: bool) -> None:
        """Checks ``cp`` (already signature-verified) against the last trusted
        checkpoint and advances to it if it is larger. ``latest``: ``cp`` is
        what the node serves as its current checkpoint, so a smaller one is
        a rollback even when it is a consistent prefix."""
        old = self.last
        if old is None:
            self.last = cp
            self._known = {(cp.size, cp.root)}
            self._save()
            return
        if (cp.size, cp.root) in self._known and not (latest and cp.size < old.size):
            return
        if cp.size == old.size:
            if cp.root != old.root:
                raise ConsistencyError("fork", f"two different roots signed for tree size {cp.size}", old.note, cp.note)
            return
        if cp.size > old.size:
            self._prove(old, cp)
            self.last = cp
            self._known.add((cp.size, cp.root))
            self._save()
            return
        proof = self._prove(cp, old)
        if latest:
            raise ConsistencyError(
                "rollback", f"the log shrank from {old.size} to {cp.size}; the proof shows the new tree is a prefix of the old",
                old.note, cp.note, proof)
        self._known.add((cp.size, cp.root))
