//! Where sealed blocks go. The sequencer hands each block to a
//! [`BlockSink`] and does not know which one it has: a single node's
//! [`LocalSink`] writes and fsyncs the block itself; a cluster node's sink
//! (in `cluster`) proposes it through Raft, and every node commits it.

use super::outcome::SubmitError;
use medledger_formats::block::Block;
use medledger_formats::note::Note;
use medledger_ledger::{Admitted, LedgerState, Store};
use std::sync::Arc;

/// A written block's outcome, to wait for: the checkpoint that covers it
/// once it is durable, or why it was not committed.
pub(crate) type Written = Box<dyn FnOnce() -> Result<Note, SubmitError> + Send>;

/// Why a sink did not take a block.
#[derive(Debug)]
pub(crate) enum SinkError {
    /// Storage failed: nothing more may be built on the tip.
    Storage(String),
    /// The block is not committed, and the node goes on (for instance, it
    /// no longer leads its cluster).
    Refused(SubmitError),
}

/// A sealed block's way to durability.
pub(crate) trait BlockSink: Send + Sync {
    /// The epoch blocks are sealed in now, or why this node may not seal.
    fn epoch(&self) -> Result<u64, SubmitError>;
    /// The state to seal on once the epoch has changed; `None` when the
    /// sequencer's own state stays right (a single node, whose epoch never
    /// changes).
    fn applied(&self) -> Option<LedgerState>;
    /// Starts making `block` (sealed in `epoch`, with what admission
    /// learned for its index) durable.
    fn write(&self, block: &Block, admitted: Admitted, epoch: u64) -> Result<Written, SinkError>;
    /// Written blocks that may await their outcomes at once: with more than
    /// one, outcomes are awaited in order on a thread of their own.
    fn in_flight(&self) -> usize;
}

/// A single node: each block is written and fsynced here, before `write`
/// returns.
pub(crate) struct LocalSink {
    store: Arc<Store>,
}

impl LocalSink {
    /// The sink that commits to `store`.
    pub(crate) fn new(store: Arc<Store>) -> Self {
        LocalSink { store }
    }
}

impl BlockSink for LocalSink {
    fn epoch(&self) -> Result<u64, SubmitError> {
        Ok(0)
    }

    fn applied(&self) -> Option<LedgerState> {
        None
    }

    fn write(&self, block: &Block, admitted: Admitted, _epoch: u64) -> Result<Written, SinkError> {
        let committed = self
            .store
            .commit(block, admitted)
            .map_err(|e| SinkError::Storage(e.to_string()))?;
        metrics::histogram!("medledger_fsync_seconds").record(committed.fsync.as_secs_f64());
        let checkpoint = committed.checkpoint;
        Ok(Box::new(move || Ok(checkpoint)))
    }

    fn in_flight(&self) -> usize {
        1
    }
}
