//! The Raft state machine: the ledger itself. Applying a committed entry
//! re-validates its block in full (chain, roots, proposer, every
//! transaction's signature, role, schema, PII guard and duplicates) and
//! commits it to the segments; a block that fails is refused, the same way
//! on every node, and changes nothing.
//!
//! The state machine's own record (last applied entry, membership) is
//! written lazily: re-applying an entry whose block is already stored is a
//! no-op, so a record that lags after a crash costs only a replay.

use super::log_store::{META, RaftDb, log_err, shared};
use super::{ClusterError, Outcome, Proposal, Refusal, TypeConfig, fetch_blocks};
use medledger_formats::block::Block;
use medledger_formats::merkle::Hash;
use medledger_ledger::{Admitted, Checked, CommitFeed, IndexSeen, LedgerState, Pending, Store};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend,
    RaftSnapshotBuilder, SnapshotMeta, StorageError, StoredMembership,
};
use redb::{Durability, ReadableDatabase};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex};

const APPLIED: &str = "sm_applied";

/// How long a node keeps asking its peers for blocks it lacks.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);
const SNAPSHOT: &str = "sm_snapshot";

/// What a snapshot holds: not the ledger, which every node keeps whole, but
/// the point it had reached. A node that installs it fetches the blocks it
/// lacks from its peers and validates each one.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct SnapshotPoint {
    /// Blocks in the ledger.
    pub height: u64,
    /// Hash of the last block (zeros when empty).
    pub block_hash: Hash,
    /// Log size.
    pub log_size: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Applied {
    last: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
}

/// The ledger's side of the cluster, shared with the sequencer.
pub struct Ledgerside {
    /// The store every node commits to.
    pub store: Arc<Store>,
    /// The state after the last applied block.
    pub state: Mutex<LedgerState>,
    /// Tells the log's readers that blocks were committed.
    pub commits: Arc<CommitFeed>,
    /// Blocks this node sealed, by hash, with the payload verdicts of their
    /// transactions (whose signatures it checked when it admitted them).
    pub own: Mutex<HashMap<Hash, Vec<Checked>>>,
    /// This node's id.
    pub id: u64,
    /// This node's key.
    pub node: medledger_formats::keys::PublicKey,
    /// Connections to peers.
    pub network: super::Network,
    /// Set when a committed block holds a redaction: the Raft log still
    /// holds its targets' payloads until it is purged and compacted.
    pub redacted: super::RedactedSince,
}

fn sm_err(verb: ErrorVerb, e: impl ToString) -> StorageError<u64> {
    log_err(ErrorSubject::StateMachine, verb, e)
}

fn snap_err(verb: ErrorVerb, e: impl ToString) -> StorageError<u64> {
    log_err(ErrorSubject::Snapshot(None), verb, e)
}

impl Ledgerside {
    /// Notes that this node sealed the block with `hash` (and checked its
    /// transactions' signatures at admission, with `verdicts` on their
    /// payloads).
    pub(crate) fn own_insert(&self, hash: Hash, verdicts: Vec<Checked>) {
        self.own
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hash, verdicts);
    }

    /// Forgets the block with `hash` once its outcome is known.
    pub(crate) fn own_remove(&self, hash: &Hash) {
        self.own
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(hash);
    }

    /// The point the ledger has reached.
    pub(crate) fn point(&self) -> SnapshotPoint {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        SnapshotPoint {
            height: state.tip().next_height,
            block_hash: state.tip().prev_hash,
            log_size: state.tip().log.size(),
        }
    }

    /// Validates and commits one block: its log size, or why every node
    /// refuses it (`Ok(Err(_))`).
    pub(crate) fn apply_block(&self, block: &Block) -> Result<Result<u64, Refusal>, ClusterError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let h = block.header.header();
        let next = state.tip().next_height;
        if h.height < next {
            // Applied before a crash that lost the state machine's record.
            let stored = self.store.block(h.height)?;
            return Ok(if stored.header.hash() == block.header.hash() {
                Ok(h.log_size)
            } else {
                Err(Refusal::Taken(h.height))
            });
        }
        let own = self
            .own
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(block.header.hash());
        let pending = Pending::default();
        let seen = IndexSeen {
            index: self.store.index(),
            pending: &pending,
        };
        let applied = match own {
            Some(verdicts) => state.apply_own_block(block, &seen, verdicts),
            None => state.apply_block(block, &seen),
        };
        let verdicts = match applied {
            Ok(verdicts) => verdicts,
            Err(fault) => {
                tracing::warn!(height = h.height, %fault, "refused a block");
                metrics::counter!("medledger_blocks_refused_total").increment(1);
                return Ok(Err(fault.into()));
            }
        };
        let admitted = Admitted::of(&state, &block.txs, verdicts);
        let redacts = !admitted.directory.redacted.is_empty();
        self.store.commit(block, admitted)?;
        self.commits.publish(h.log_size);
        if redacts {
            self.redacted.note();
        }
        Ok(Ok(h.log_size))
    }

    /// Fetches and applies blocks until the ledger holds `height` blocks.
    fn catch_up(&self, height: u64, peers: &[String]) -> Result<(), ClusterError> {
        loop {
            let have = self.point().height;
            if have >= height {
                return Ok(());
            }
            let blocks = fetch_blocks(&self.network, peers, have, height, PATIENCE)?;
            for block in &blocks {
                if let Err(reason) = self.apply_block(block)? {
                    return Err(ClusterError::PeerBlock(reason));
                }
            }
        }
    }
}

/// The state machine openraft drives.
pub struct StateMachine {
    side: Arc<Ledgerside>,
    db: RaftDb,
    applied: Applied,
}

fn read_meta<T: serde::de::DeserializeOwned>(
    db: &RaftDb,
    key: &str,
) -> Result<Option<T>, StorageError<u64>> {
    let err = |e: &dyn ToString| sm_err(ErrorVerb::Read, e.to_string());
    let db = shared(db);
    let tx = db.begin_read().map_err(|e| err(&e))?;
    let table = tx.open_table(META).map_err(|e| err(&e))?;
    match table.get(key).map_err(|e| err(&e))? {
        Some(v) => postcard::from_bytes(v.value())
            .map(Some)
            .map_err(|e| err(&e)),
        None => Ok(None),
    }
}

fn write_meta<T: Serialize>(
    db: &RaftDb,
    key: &str,
    value: &T,
    durable: bool,
) -> Result<(), StorageError<u64>> {
    let err = |e: &dyn ToString| sm_err(ErrorVerb::Write, e.to_string());
    let bytes = postcard::to_allocvec(value).map_err(|e| err(&e))?;
    let db = shared(db);
    let mut tx = db.begin_write().map_err(|e| err(&e))?;
    if !durable {
        // Made durable by the log's next commit; a lost one means a replay.
        tx.set_durability(Durability::None).map_err(|e| err(&e))?;
    }
    {
        let mut table = tx.open_table(META).map_err(|e| err(&e))?;
        table.insert(key, bytes.as_slice()).map_err(|e| err(&e))?;
    }
    tx.commit().map_err(|e| err(&e))
}

impl StateMachine {
    /// The state machine over `side`, with its record in `db`.
    pub fn new(side: Arc<Ledgerside>, db: RaftDb) -> Result<Self, StorageError<u64>> {
        let applied = read_meta(&db, APPLIED)?.unwrap_or_default();
        Ok(StateMachine { side, db, applied })
    }

    fn peers(&self) -> Vec<String> {
        peers_of(&self.applied.membership, self.side.id)
    }
}

/// Base URLs of the members other than `me`.
pub(super) fn peers_of(m: &StoredMembership<u64, BasicNode>, me: u64) -> Vec<String> {
    m.membership()
        .nodes()
        .filter(|(id, _)| **id != me)
        .map(|(_, n)| n.addr.clone())
        .collect()
}

/// Runs blocking ledger work off the async runtime's workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ClusterError> + Send + 'static,
) -> Result<T, ClusterError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ClusterError::Task(e.to_string()))?
}

/// Builds snapshots: the point reached, nothing more.
pub struct Builder {
    side: Arc<Ledgerside>,
    db: RaftDb,
    applied: Applied,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let side = self.side.clone();
        // Logs are purged after this: everything up to here must be durable.
        blocking(move || Ok(side.store.flush()?))
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        let point = self.side.point();
        let data = postcard::to_allocvec(&point).map_err(|e| snap_err(ErrorVerb::Write, e))?;
        let meta = SnapshotMeta {
            last_log_id: self.applied.last,
            last_membership: self.applied.membership.clone(),
            snapshot_id: format!(
                "{}-{}",
                self.applied.last.map_or(0, |l| l.index),
                point.height
            ),
        };
        write_meta(&self.db, APPLIED, &self.applied, true)?;
        write_meta(&self.db, SNAPSHOT, &(meta.clone(), data.clone()), true)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Builder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        Ok((self.applied.last, self.applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        for entry in entries {
            let outcome = match entry.payload {
                EntryPayload::Blank => Outcome::Nothing,
                EntryPayload::Membership(m) => {
                    self.applied.membership = StoredMembership::new(Some(entry.log_id), m);
                    Outcome::Nothing
                }
                EntryPayload::Normal(proposal) => {
                    let side = self.side.clone();
                    let peers = self.peers();
                    blocking(move || apply_proposal(&side, &proposal, &peers))
                        .await
                        .map_err(|e| sm_err(ErrorVerb::Write, e))?
                }
            };
            self.applied.last = Some(entry.log_id);
            out.push(outcome);
        }
        write_meta(&self.db, APPLIED, &self.applied, false)?;
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        Builder {
            side: self.side.clone(),
            db: self.db.clone(),
            applied: self.applied.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let data = snapshot.into_inner();
        let point: SnapshotPoint =
            postcard::from_bytes(&data).map_err(|e| snap_err(ErrorVerb::Read, e))?;
        let peers = peers_of(&meta.last_membership, self.side.id);
        let side = self.side.clone();
        let target = point.clone();
        let started = std::time::Instant::now();
        let from = side.point();
        blocking(move || {
            side.catch_up(target.height, &peers)?;
            let now = side.point();
            if now.height == target.height && now.block_hash != target.block_hash {
                return Err(ClusterError::SnapshotMismatch {
                    height: target.height,
                });
            }
            Ok(())
        })
        .await
        .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        let now = self.side.point();
        tracing::info!(
            blocks = now.height - from.height,
            transactions = now.log_size - from.log_size,
            seconds = started.elapsed().as_secs_f64(),
            "caught up from a snapshot"
        );
        self.applied = Applied {
            last: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        write_meta(&self.db, APPLIED, &self.applied, true)?;
        write_meta(&self.db, SNAPSHOT, &(meta.clone(), data), true)?;
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let stored: Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)> =
            read_meta(&self.db, SNAPSHOT)?;
        Ok(stored.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// Applies one proposed block. A node that joined with no ledger first
/// fetches genesis, which no entry carries; blocks behind a snapshot are
/// fetched when the snapshot is installed. Any other gap means the block
/// stands on one that was refused, so it is refused too: no peer holds
/// the missing block, and waiting for one would stop the cluster for good.
fn apply_proposal(
    side: &Ledgerside,
    proposal: &Proposal,
    peers: &[String],
) -> Result<Outcome, ClusterError> {
    let block = match proposal.block() {
        Ok(b) => b,
        Err(e) => return Ok(Outcome::Refused(format!("undecodable block: {e}"))),
    };
    let height = block.header.header().height;
    if height > 0 && side.point().height == 0 {
        side.catch_up(1, peers)?;
    }
    Ok(match side.apply_block(&block)? {
        Ok(log_size) => Outcome::Committed { height, log_size },
        Err(reason) => Outcome::Refused(reason.to_string()),
    })
}
