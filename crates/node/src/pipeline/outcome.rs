//! What a submission comes to: a receipt, or why it was not committed.

use medledger_formats::merkle::Hash;
use medledger_formats::receipt::TlogProof;
use medledger_ledger::Rejection;

/// Why a submitted transaction was not committed.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    /// The ledger's rules refused it.
    #[error("{0}")]
    Rejected(#[from] Rejection),
    /// Storage failed; the node stops accepting writes until restarted.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// In a cluster, only the leader takes writes; the leader's base URL
    /// when known.
    #[error("this node is not the cluster's leader")]
    NotLeader(Option<String>),
    /// In a cluster, the block holding it was not committed (leadership
    /// moved, or the cluster's state machine refused the block); nothing
    /// of it is on the ledger and it may be submitted again.
    #[error("not committed: {0}")]
    NotCommitted(String),
}

impl SubmitError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            SubmitError::Rejected(r) => r.code(),
            SubmitError::Unavailable(_) => "storage_unavailable",
            SubmitError::NotLeader(_) => "not_leader",
            SubmitError::NotCommitted(_) => "not_committed",
        }
    }
}

/// Proof that a transaction is in the log.
#[derive(Clone, Debug)]
pub struct Receipt {
    /// Transaction id.
    pub id: Hash,
    /// Log index.
    pub leaf: u64,
    /// Block height.
    pub height: u64,
    /// The C2SP tlog-proof.
    pub proof: TlogProof,
}
