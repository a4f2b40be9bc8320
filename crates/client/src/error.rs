//! Errors: the transport failed, the node answered with a problem, or what it
//! answered did not verify.

use medledger_formats::block::BlockError;
use medledger_formats::checkpoint::CheckpointError;
use medledger_formats::note::NoteError;
use medledger_formats::receipt::ReceiptError;
use medledger_formats::tx::TxError;
use serde::Deserialize;
use std::fmt;

/// An RFC 9457 problem the node reported (`application/problem+json`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Problem {
    /// HTTP status.
    pub status: u16,
    /// The node's stable machine-readable code, e.g. `duplicate`.
    pub code: String,
    /// What happened in this case.
    #[serde(default)]
    pub detail: String,
    /// With `410 redacted`: the redaction that erased the record (its
    /// `id`, `index`, `height` and `receipt`), as the node names it.
    #[serde(default)]
    pub redaction: Option<serde_json::Value>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {} {}: {}", self.status, self.code, self.detail)
    }
}

/// Why an answer from the node was not accepted as proof.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The receipt does not parse or its proof or checkpoint does not verify.
    #[error("receipt: {0}")]
    Receipt(#[from] ReceiptError),
    /// The checkpoint note does not parse or verify with the trusted keys.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The receipt has no `extra` line, so it names no transaction.
    #[error("receipt has no extra line with the transaction's header and signature")]
    NoExtra,
    /// The receipt's `extra` is not the leaf preimage of the transaction it
    /// should prove.
    #[error("receipt's extra line is not the leaf preimage of transaction {id}")]
    ExtraMismatch {
        /// The transaction the receipt should prove (hex id).
        id: String,
    },
    /// A transaction id differs from the one expected.
    #[error("{what}: expected transaction {expected}, got {found}")]
    IdMismatch {
        /// Where the id came from.
        what: &'static str,
        /// The id asked for (hex).
        expected: String,
        /// The id found (hex).
        found: String,
    },
    /// A field of the response disagrees with the verified proof.
    #[error("response field {field} is {found}, but the verified receipt says {expected}")]
    FieldMismatch {
        /// The field.
        field: &'static str,
        /// What the verified data says.
        expected: String,
        /// What the response says.
        found: String,
    },
    /// The transaction returned by the node is malformed (e.g. its payload
    /// does not match the header's commitment).
    #[error("transaction: {0}")]
    Transaction(#[from] TxError),
    /// The author's signature over the header does not verify.
    #[error("the author's signature over the transaction header does not verify")]
    AuthorSignature,
    /// A verifier key string is malformed.
    #[error("verifier key: {0}")]
    VerifierKey(#[from] NoteError),
    /// A block does not verify.
    #[error("block {height}: {what}")]
    Block {
        /// The block height asked for or reported.
        height: u64,
        /// What failed.
        what: String,
    },
}

impl From<BlockError> for VerifyError {
    fn from(e: BlockError) -> Self {
        VerifyError::Block {
            height: 0,
            what: e.to_string(),
        }
    }
}

/// Every failure of a client call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request could not be sent or the response not read.
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
    /// The node refused the request.
    #[error("{0}")]
    Problem(Problem),
    /// The response is not in the shape the API documents.
    #[error("unexpected response from the node: {0}")]
    Protocol(String),
    /// The response did not verify against the trusted keys.
    #[error("verification failed: {0}")]
    Verify(#[from] VerifyError),
    /// The client was set up wrongly (bad URL or key).
    #[error("configuration: {0}")]
    Config(String),
}

impl Error {
    /// The problem the node reported, if this is one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Error::Problem(p) => Some(p),
            _ => None,
        }
    }
}
