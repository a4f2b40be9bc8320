"""medledger: the Python SDK of the medledger ledger.

Sign and submit transactions, and read them back verified: checkpoints by
their C2SP signed-note signature, receipts (C2SP tlog-proof) by their RFC
6962 inclusion proof, payloads by their salted commitment, and every
checkpoint against the last one trusted (RFC 6962 consistency proofs).
Research exports arrive as pandas DataFrames, proven complete and unchanged.
"""

from .client import (NO_RETRY, AlertEvent, Client, Retry, VerifiedBlock, VerifiedRecord, VerifiedRecords,
                     VerifiedTransaction, verify_block)
from .consistency import ConsistencyTracker
from .errors import (
    ConsistencyError,
    ExportVerificationError,
    FormatError,
    KeyFileError,
    MedledgerError,
    ProblemError,
    ProofError,
    ProtocolError,
    SignatureError,
    TransportError,
    VerificationError,
)
from .keys import SigningKey
from .note import Checkpoint, Cosigner, Note, Trust, Verifier, verify_cosignatures
from .receipt import TlogProof, VerifiedReceipt, verify_receipt
from .tx import Transaction, canonical_payload, commitment

__version__ = "0.1.0"

__all__ = [
    "AlertEvent", "Checkpoint", "Client", "Cosigner", "ConsistencyError", "ConsistencyTracker",
    "ExportVerificationError", "FormatError", "KeyFileError", "MedledgerError", "NO_RETRY", "Note",
    "ProblemError", "ProofError", "ProtocolError", "Retry", "SignatureError", "SigningKey", "TlogProof",
    "Transaction", "TransportError", "Trust", "VerificationError", "VerifiedBlock", "VerifiedReceipt",
    "VerifiedRecord", "VerifiedRecords", "VerifiedTransaction", "Verifier", "canonical_payload", "commitment", "verify_block", "verify_cosignatures", "verify_receipt",
]
