//! What goes wrong in cluster mode, by kind.

use medledger_ledger::{BlockFault, LedgerError};
use std::path::PathBuf;

/// Why cluster mode could not start, or could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A settings file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `cluster.json` does not parse.
    #[error("{path}: {source}")]
    Settings {
        /// The file.
        path: PathBuf,
        /// The error.
        source: serde_json::Error,
    },
    /// The Raft log's database could not be opened.
    #[error("{path}: {source}")]
    RaftLog {
        /// The file.
        path: PathBuf,
        /// The error.
        source: Box<redb::DatabaseError>,
    },
    /// The ledger's storage failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// openraft refused its configuration, or could not start or go on.
    #[error("raft: {0}")]
    Raft(String),
    /// The mutual-TLS configuration could not be built.
    #[error("tls: {0}")]
    Tls(String),
    /// No peer served the blocks this node lacks.
    #[error("cannot fetch block {height}: {last}")]
    Fetch {
        /// The first block wanted.
        height: u64,
        /// The last peer's answer.
        last: String,
    },
    /// A peer served a block that does not verify.
    #[error("a peer served a block that does not verify: {0}")]
    PeerBlock(Refusal),
    /// After catching up, the last block is not the snapshot's.
    #[error("after catching up to {height} blocks the last block differs from the snapshot's")]
    SnapshotMismatch {
        /// Blocks caught up to.
        height: u64,
    },
    /// A blocking task died.
    #[error("a blocking task failed: {0}")]
    Task(String),
}

/// Why a proposed block is refused; every node refuses it alike.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    /// It does not follow from the state.
    #[error("{0}")]
    Fault(#[from] BlockFault),
    /// A block of that height is applied already, and it is another.
    #[error("block {0} is already another block")]
    Taken(u64),
}
