"""Exceptions. Every refusal is an exception; nothing is accepted silently.

``MedledgerError`` is the root. ``VerificationError`` and its subclasses mean
that something the node (or a file) presented does not prove what it claims:
treat them as evidence, never retry them away. ``ProblemError`` is the node's
own RFC 9457 answer; ``TransportError`` a network failure.
"""

from __future__ import annotations


class MedledgerError(Exception):
    """Root of every error this package raises."""


class FormatError(MedledgerError):
    """Input that does not parse as the format it claims to be."""


class KeyFileError(FormatError):
    """A key file that is malformed or whose halves do not belong together."""


class VerificationError(MedledgerError):
    """Something failed to verify: a signature, a proof, a commitment."""


class SignatureError(VerificationError):
    """An Ed25519 signature (note, author) does not verify, or the key is weak."""


class ProofError(VerificationError):
    """An RFC 6962 inclusion or consistency proof does not verify."""


class ConsistencyError(VerificationError):
    """The node's log contradicts a checkpoint verified earlier.

    ``kind`` is ``"fork"`` or ``"rollback"``; ``old`` and ``new`` are the two
    signed checkpoint notes, which together are evidence a third party can
    check with the node's verifier key.
    """

    def __init__(self, kind: str, message: str, old: str, new: str, proof: list[bytes] | None = None):
        super().__init__(f"{kind.upper()} DETECTED: {message}")
        self.kind = kind
        self.old = old
        self.new = new
        self.proof = proof


class ExportVerificationError(VerificationError):
    """An export that is not exactly the ledger's selected records."""


class ProtocolError(MedledgerError):
    """The node answered something the API does not describe."""


class TransportError(MedledgerError):
    """The request did not get an answer (connection refused, reset, timeout)."""


class ProblemError(MedledgerError):
    """The node refused with an RFC 9457 problem (``status``, stable ``code``)."""

    def __init__(self, status: int, code: str, detail: str = "", body: dict | None = None):
        super().__init__(f"HTTP {status} {code}: {detail}" if detail else f"HTTP {status} {code}")
        self.status = status
        self.code = code
        self.detail = detail
        self.body = body or {}
