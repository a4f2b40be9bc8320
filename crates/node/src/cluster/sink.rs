//! The cluster's [`BlockSink`]: the leader proposes each sealed block as a
//! Raft entry without waiting for the one before; every node, this one
//! included, re-validates and commits it once a quorum holds it.

use super::{Cluster, Outcome, Proposal};
use crate::pipeline::{BlockSink, SinkError, SubmitError, Written};
use medledger_formats::block::Block;
use medledger_ledger::{Admitted, LedgerState};
use std::sync::Arc;

/// Most blocks proposed to the cluster and not yet answered.
const IN_FLIGHT: usize = 4;

/// Proposes blocks through Raft.
pub(crate) struct RaftSink {
    cluster: Arc<Cluster>,
    runtime: tokio::runtime::Handle,
}

impl RaftSink {
    /// The sink of `cluster`; Raft calls run on `runtime`.
    pub(crate) fn new(cluster: Arc<Cluster>, runtime: tokio::runtime::Handle) -> Self {
        RaftSink { cluster, runtime }
    }
}

impl BlockSink for RaftSink {
    fn epoch(&self) -> Result<u64, SubmitError> {
        self.cluster.leadership.epoch()
    }

    fn applied(&self) -> Option<LedgerState> {
        let state = self.cluster.side.state.lock();
        Some(state.unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn write(&self, block: &Block, admitted: Admitted, epoch: u64) -> Result<Written, SinkError> {
        let cluster = &self.cluster;
        match cluster.leadership.epoch() {
            Ok(now) if now == epoch => {}
            Ok(_) => {
                let why = SubmitError::NotCommitted("leadership changed".into());
                return Err(SinkError::Refused(why));
            }
            Err(e) => return Err(SinkError::Refused(e)),
        }
        let hash = *block.header.hash();
        // Its signatures and payloads were judged at admission: this node's
        // state machine need not judge them again.
        cluster.side.own_insert(hash, admitted.verdicts);
        let proposal = Proposal::of(block);
        let outcome = match self
            .runtime
            .block_on(cluster.raft.client_write_ff(proposal))
        {
            Ok(outcome) => outcome,
            Err(_) => {
                cluster.side.own_remove(&hash);
                cluster.leadership.bump();
                let why = SubmitError::NotLeader(cluster.leadership.leader());
                return Err(SinkError::Refused(why));
            }
        };
        let (cluster, runtime) = (cluster.clone(), self.runtime.clone());
        Ok(Box::new(move || {
            let written = runtime.block_on(outcome);
            cluster.side.own_remove(&hash);
            match written.map(|w| w.map(|w| w.data)) {
                Ok(Ok(Outcome::Committed { .. })) => cluster
                    .side
                    .store
                    .checkpoint()
                    .ok_or_else(|| SubmitError::Unavailable("no checkpoint".into())),
                Ok(Ok(outcome)) => {
                    // Refused by the state machine everywhere: start over
                    // from the applied state.
                    cluster.leadership.bump_from(epoch);
                    let why = match outcome {
                        Outcome::Refused(r) => r,
                        other => format!("{other:?}"),
                    };
                    Err(SubmitError::NotCommitted(format!("block refused: {why}")))
                }
                // Leadership moved while the block was being replicated: a
                // new leader may still commit it, so the outcome is not
                // known (a resubmission answers 409 duplicate if it was).
                Ok(Err(_)) | Err(_) => {
                    cluster.leadership.bump_from(epoch);
                    Err(SubmitError::NotLeader(cluster.leadership.leader()))
                }
            }
        }))
    }

    fn in_flight(&self) -> usize {
        IN_FLIGHT
    }
}
