//! The durable ledger: state machine plus storage.
//!
//! ```text
//! DIR/ledger.json   origin and skew, written once by init
//! DIR/node.key      node key (0600): proposes blocks, signs checkpoints
//! DIR/admin.key     the first admin's key (0600), registered in genesis
//! DIR/segments/     blocks, the source of truth
//! DIR/merkle/       stored subtree hashes (derived)
//! DIR/index.redb    indexes and participants (derived)
//! DIR/LOCK          held while a process has the ledger open
//! ```

use crate::roles::{Role, kind};
use crate::state::{
    BlockFault, BreakGlass, Checked, ClusterMember, DEFAULT_BREAK_GLASS_REVIEW_MS,
    DEFAULT_MAX_SKEW_MS, GenesisPayload, LedgerState, Participant, PrescriptionRecord, Rejection,
    Seen, Tip,
};
use ed25519_dalek::SigningKey;
use medledger_formats::block::{Block, SealedHeader};
use medledger_formats::checkpoint::Checkpoint;
use medledger_formats::keys;
use medledger_formats::merkle::{self, Frontier, Hash};
use medledger_formats::note::{Note, NoteSigner, NoteVerifier};
use medledger_formats::receipt::TlogProof;
use medledger_formats::record::{self, RecordError};
use medledger_formats::tx::Transaction;
use medledger_store::{
    BlockEntry, BlockIndex, Directory, Index, IndexError, Location, MerkleStore, PairRef,
    RedactedEntry, RedactionPlan, SEGMENT_HEADER, SegmentError, SegmentLog, StoredBlock, TxEntry,
    list_segments, read_segment, segment_name, sync_dir, walk,
};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// Make the index durable every this many blocks (and on close).
const INDEX_FLUSH_EVERY: u64 = 128;

/// Ledger failures.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The data directory is not a ledger.
    #[error("{0} is not a medledger data directory (no ledger.json); run `medledger init` first")]
    NotInitialized(PathBuf),
    /// `init` on a directory that already holds a ledger.
    #[error("{0} already holds a ledger")]
    AlreadyInitialized(PathBuf),
    /// Another process has the ledger open.
    #[error("{0} is in use by another process")]
    Locked(PathBuf),
    /// A configuration or key file is wrong.
    #[error("{path}: {what}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// Segment storage failed or is corrupt.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A participant's record in the index does not decode.
    #[error(
        "the index's record of participant {key} does not decode ({error}); \
         remove index.redb and open again to rebuild it from the segments"
    )]
    Directory {
        /// The participant's key, hex.
        key: String,
        /// What is wrong.
        error: String,
    },
    /// A stored record does not decode.
    #[error("block at {location:?}: {error}")]
    Record {
        /// Where.
        location: Location,
        /// What.
        error: RecordError,
    },
    /// A stored block does not follow from the state.
    #[error("block {height}: {fault}")]
    Block {
        /// Height.
        height: u64,
        /// What.
        fault: BlockFault,
    },
    /// Derived files record more than the segments hold: blocks that were
    /// acknowledged (their segment write was fsynced before anything else
    /// was written) are missing from the segment tail.
    #[error(
        "acknowledged data is missing: the {what} records {recorded}, but the segments end at {found}; \
         the end of the last segment was damaged or truncated. Run `medledger verify`; to accept the \
         loss, remove index.redb and merkle/ and open again"
    )]
    AcknowledgedLost {
        /// Which derived file noticed.
        what: &'static str,
        /// What it records.
        recorded: u64,
        /// What the segments hold.
        found: u64,
    },
    /// The stored Merkle tree disagrees with the blocks even after a rebuild.
    #[error("Merkle tree does not match block {0}'s log_root")]
    TreeMismatch(u64),
    /// A transaction could not be admitted while building a block.
    #[error("transaction rejected: {0}")]
    Rejected(Rejection),
    /// A format error (signing, sealing).
    #[error("format: {0}")]
    Format(String),
    /// A requested item does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A stored block fails its checksum or does not decode, or a stored
    /// transaction does not hash to the id it is filed under. The store
    /// refuses every later commit; the message names no file path.
    #[error("block {height} is damaged: {what}")]
    Damaged {
        /// Height of the damaged block.
        height: u64,
        /// What is wrong.
        what: String,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> LedgerError + '_ {
    move |source| LedgerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn fmt_err(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Format(e.to_string())
}

/// `ledger.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LedgerConfig {
    /// Checkpoint origin line; also the node's note key name.
    pub origin: String,
    /// Format version of the data directory.
    pub v: u32,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Writes `text` to a new file readable only by its owner.
pub fn write_secret_file(path: &Path, text: &str) -> Result<(), LedgerError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_at(path))?;
    f.write_all(text.as_bytes()).map_err(io_at(path))?;
    f.sync_all().map_err(io_at(path))
}

/// Reads a key file.
pub fn read_key_file(path: &Path) -> Result<SigningKey, LedgerError> {
    let text = fs::read_to_string(path).map_err(io_at(path))?;
    keys::decode_key_file(&text).map_err(|e| LedgerError::Config {
        path: path.to_path_buf(),
        what: e.to_string(),
    })
}

/// What `init` created.
#[derive(Clone, Debug)]
pub struct InitReport {
    /// The admin key file.
    pub admin_key: PathBuf,
    /// The node's C2SP verifier key.
    pub vkey: String,
    /// The origin line.
    pub origin: String,
}

/// What committing one block produced.
#[derive(Clone, Debug)]
pub struct Committed {
    /// The block header.
    pub header: SealedHeader,
    /// The signed checkpoint for the log after this block.
    pub checkpoint: Note,
    /// Time spent in fsync.
    pub fsync: std::time::Duration,
}

/// The storage half of a ledger: segments, subtree hashes, index, checkpoints.
pub struct Store {
    dir: PathBuf,
    origin: String,
    signer: NoteSigner,
    segments: SegmentLog,
    /// Write-locked only while a committed block's leaves are appended.
    tree: RwLock<MerkleStore>,
    index: Index,
    last: RwLock<Option<SealedHeader>>,
    checkpoint: RwLock<Option<Note>>,
    /// The first damaged block found, after which nothing is committed.
    damaged: RwLock<Option<(u64, String)>>,
    _lock: File,
}

/// Reads through a lock a panicking thread may have poisoned: the value is
/// still the last one written.
fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// Ids of blocks sequenced but not yet in the index.
#[derive(Default)]
pub struct Pending(Mutex<HashSet<Hash>>);

impl Pending {
    /// Adds ids.
    pub fn add(&self, ids: impl IntoIterator<Item = Hash>) {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        set.extend(ids);
    }
    /// Removes ids once indexed.
    pub fn remove<'a>(&self, ids: impl IntoIterator<Item = &'a Hash>) {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            set.remove(id);
        }
    }
    /// True if `id` is pending.
    pub fn contains(&self, id: &Hash) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id)
    }
}

/// Answers [`Seen`] from the index plus the pending ids.
pub struct IndexSeen<'a> {
    /// Committed and indexed.
    pub index: &'a Index,
    /// Sequenced but not yet indexed.
    pub pending: &'a Pending,
}

impl Seen for IndexSeen<'_> {
    fn facts(&self, id: &Hash) -> Option<medledger_store::TxFacts> {
        // In flight is not committed: a redaction names only indexed ones.
        if self.pending.contains(id) {
            return None;
        }
        self.index.facts(id).ok().flatten()
    }

    fn seen(&self, id: &Hash) -> bool {
        // An index read failure must not let a duplicate in; treat as seen.
        self.pending.contains(id)
            || self
                .index
                .leaves_of(&[id])
                .map(|v| v[0].is_some())
                .unwrap_or(true)
    }
}

/// A durable ledger, opened by one process at a time.
pub struct Ledger {
    /// The storage half.
    pub store: Store,
    /// The state machine.
    pub state: LedgerState,
    /// The node key.
    pub node_key: SigningKey,
}

fn block_index(block: &Block, location: Location, admitted: Admitted) -> BlockIndex {
    let h = block.header.header();
    BlockIndex {
        block: BlockEntry {
            height: h.height,
            location,
            first_leaf: h.first_leaf,
            tx_count: h.tx_count,
        },
        txs: block
            .txs
            .iter()
            .zip(admitted.verdicts)
            .enumerate()
            .map(|(i, (tx, checked))| {
                let terms = checked.into_terms();
                TxEntry {
                    id: *tx.id(),
                    leaf: h.first_leaf + i as u64,
                    author: tx.header().author.0,
                    kind: tx.header().kind.clone(),
                    patient: terms.patient,
                    codes: terms.codes,
                    accessed: terms.accessed,
                    time: tx.header().time,
                    erased: tx.is_redacted(),
                }
            })
            .collect(),
        participants: admitted.directory.participants,
        chosen: admitted.directory.chosen,
        break_glass: admitted.directory.break_glass,
        redacted: admitted.directory.redacted,
        prescriptions: admitted.directory.prescriptions,
    }
}

fn decode_prescription(id: &[u8; 32], record: &[u8]) -> Result<PrescriptionRecord, LedgerError> {
    serde_json::from_slice(record).map_err(|e| LedgerError::Directory {
        key: format!("prescription {}", medledger_formats::bytes::Bytes(*id)),
        error: e.to_string(),
    })
}

fn decode_break_glass(leaf: u64, record: &[u8]) -> Result<BreakGlass, LedgerError> {
    serde_json::from_slice(record).map_err(|e| LedgerError::Directory {
        key: format!("break-glass entry at leaf {leaf}"),
        error: e.to_string(),
    })
}

fn decode_participant(key: &[u8; 32], record: &[u8]) -> Result<Participant, LedgerError> {
    serde_json::from_slice(record).map_err(|e| LedgerError::Directory {
        key: medledger_formats::bytes::Bytes(*key).to_string(),
        error: e.to_string(),
    })
}

/// What admission learned about a block, kept for its index so that commit
/// parses no payload again: each transaction's payload verdict, in order,
/// and the directory records the block changed.
#[derive(Debug, Default)]
pub struct Admitted {
    /// One verdict per transaction, in the block's order.
    pub verdicts: Vec<Checked>,
    /// Participants, chosen doctors and break-glass entries as they stand
    /// after the block.
    pub directory: Directory,
}

impl Admitted {
    /// The block of `txs`, admitted on `state` with `verdicts`.
    pub fn of(state: &LedgerState, txs: &[Transaction], verdicts: Vec<Checked>) -> Self {
        Admitted {
            directory: directory_records(state, txs, &verdicts),
            verdicts,
        }
    }
}

/// Directory records to index for what `txs` touched, as they stand in
/// `state`: participants, chosen doctors and break-glass entries.
fn directory_records(state: &LedgerState, txs: &[Transaction], verdicts: &[Checked]) -> Directory {
    Directory {
        break_glass: LedgerState::touched_break_glass(txs, verdicts)
            .iter()
            .filter_map(|id| state.break_glass(id))
            .filter_map(|b| serde_json::to_vec(b).ok().map(|v| (b.leaf, v)))
            .collect(),
        participants: LedgerState::touched_participants(txs)
            .into_iter()
            .filter_map(|k| state.participant(&k))
            .filter_map(|p| serde_json::to_vec(p).ok().map(|v| (p.key.0, v)))
            .collect(),
        chosen: LedgerState::touched_patients(txs)
            .into_iter()
            .filter_map(|p| state.chosen_doctor(&p).map(|d| (p, d.0)))
            .collect(),
        redacted: redacted_entries(state, verdicts),
        prescriptions: LedgerState::touched_prescriptions(txs, verdicts)
            .iter()
            .filter_map(|id| state.prescription(id))
            .filter_map(|r| serde_json::to_vec(r).ok().map(|v| (r.id.0, v)))
            .collect(),
    }
}

/// The transactions that the redactions among `verdicts` erase, as `state`
/// (after the block) records them.
fn redacted_entries(state: &LedgerState, verdicts: &[Checked]) -> Vec<RedactedEntry> {
    let mut out = Vec::new();
    for v in verdicts {
        let Checked::Redaction(r) = v else { continue };
        for t in &r.targets {
            let Ok(id) = medledger_formats::bytes::Bytes::<32>::parse_hex(t) else {
                continue;
            };
            if let Some(&(leaf, by)) = state.redacted().get(&id.0) {
                out.push(RedactedEntry {
                    id: id.0,
                    leaf,
                    by,
                    patient: r.patient.clone(),
                });
            }
        }
    }
    out
}

impl Store {
    /// The last committed block header.
    pub fn last(&self) -> Option<SealedHeader> {
        read(&self.last).clone()
    }

    /// The latest signed checkpoint.
    pub fn checkpoint(&self) -> Option<Note> {
        read(&self.checkpoint).clone()
    }

    /// The node's verifier key.
    pub fn verifier(&self) -> NoteVerifier {
        self.signer.verifier()
    }

    /// The origin line.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The stored subtree hashes.
    pub fn tree(&self) -> RwLockReadGuard<'_, MerkleStore> {
        read(&self.tree)
    }

    /// The index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The participant registered under `key`, as the index holds it.
    pub fn participant(&self, key: &[u8; 32]) -> Result<Option<Participant>, LedgerError> {
        self.index
            .participant(key)?
            .map(|record| decode_participant(key, &record))
            .transpose()
    }

    /// Every participant, revoked ones included, in key order. A record
    /// that does not decode is an error, never left out.
    pub fn participants(&self) -> Result<Vec<Participant>, LedgerError> {
        self.index
            .participants()?
            .into_iter()
            .map(|(key, record)| decode_participant(&key, &record))
            .collect()
    }

    /// Break-glass entries from the one at leaf `from` on, oldest first,
    /// at most `limit`; with `unreviewed`, only those not yet reviewed. A
    /// record that does not decode is an error, never left out.
    pub fn break_glass(
        &self,
        from: u64,
        limit: usize,
        unreviewed: bool,
    ) -> Result<Vec<BreakGlass>, LedgerError> {
        // A record that does not decode is kept, to be reported below.
        let keep = |r: &[u8]| {
            !unreviewed
                || serde_json::from_slice::<BreakGlass>(r).map_or(true, |b| b.review.is_none())
        };
        self.index
            .break_glass(from, limit, keep)?
            .into_iter()
            .map(|(leaf, record)| decode_break_glass(leaf, &record))
            .collect()
    }

    /// Every e-prescription with what was dispensed against it. A record
    /// that does not decode is an error, never left out.
    pub fn prescriptions(&self) -> Result<Vec<PrescriptionRecord>, LedgerError> {
        self.index
            .prescriptions()?
            .into_iter()
            .map(|(id, record)| decode_prescription(&id, &record))
            .collect()
    }

    /// How long after a break-glass read its review is due, as the
    /// genesis block sets it.
    pub fn break_glass_review_ms(&self) -> Result<u64, LedgerError> {
        Ok(self.genesis()?.break_glass_review_ms)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn sign_checkpoint(&self, size: u64, root: Hash) -> Result<Note, LedgerError> {
        Checkpoint {
            origin: self.origin.clone(),
            size,
            root,
            extensions: Vec::new(),
        }
        .sign(&self.signer)
        .map_err(fmt_err)
    }

    /// Writes a block and makes it durable (one fsync), then updates the
    /// subtree hashes and the index from what admission learned. Returns
    /// once the block is durable.
    pub fn commit(&self, block: &Block, admitted: Admitted) -> Result<Committed, LedgerError> {
        if let Some((height, what)) = self.damaged() {
            return Err(LedgerError::Damaged { height, what });
        }
        let h = block.header.header();
        if admitted.verdicts.len() != block.txs.len() {
            return Err(LedgerError::Format(format!(
                "block {} holds {} transactions but {} verdicts",
                h.height,
                block.txs.len(),
                admitted.verdicts.len()
            )));
        }
        // Only the block that follows the tip may be written: after a failed
        // commit the sequencer's next block would chain to a missing one.
        let follows = match self.last() {
            Some(last) => h.height == last.header().height + 1 && h.prev_hash.0 == *last.hash(),
            None => h.height == 0,
        };
        if !follows {
            return Err(LedgerError::Format(format!(
                "block {} does not follow the stored tip",
                h.height
            )));
        }
        // The targets' places, read before anything is written.
        let plan = self.redaction_plan(&admitted.directory.redacted)?;
        let mut payloads = Vec::new();
        record::encode_payloads(block, &mut payloads);
        let mut body = Vec::new();
        record::encode_block(block, &mut body);
        let location = self.segments.append(h.height, &payloads, &body)?;
        let synced = std::time::Instant::now();
        self.segments.sync()?;
        let fsync = synced.elapsed();
        // The redaction is committed: erase its targets before the index
        // records the block, so that an index that holds the redaction
        // always means the payloads are gone. A crash before the index does
        // leaves the block to replay on open, which erases them again.
        self.apply_redaction(&plan)?;
        let ids: Vec<Hash> = block.txs.iter().map(|t| *t.id()).collect();
        let tree_path = self.dir.join("merkle");
        write(&self.tree).append(&ids).map_err(io_at(&tree_path))?;
        // The checkpoint moves before the index, so a transaction found
        // through the index always has a checkpoint that covers it.
        let checkpoint = self.sign_checkpoint(h.log_size, h.log_root.0)?;
        *write(&self.last) = Some(block.header.clone());
        *write(&self.checkpoint) = Some(checkpoint.clone());
        let durable =
            h.height.is_multiple_of(INDEX_FLUSH_EVERY) || !admitted.directory.redacted.is_empty();
        self.index
            .apply(&[block_index(block, location, admitted)], durable)?;
        Ok(Committed {
            header: block.header.clone(),
            checkpoint,
            fsync,
        })
    }

    /// Where the payloads of `entries` are stored: each block's payloads
    /// record and the positions in it. The targets are committed, so indexed.
    fn redaction_plan(&self, entries: &[RedactedEntry]) -> Result<RedactionPlan, LedgerError> {
        let mut plan: RedactionPlan = Vec::new();
        for e in entries {
            let height = self
                .index
                .height_of_leaf(e.leaf)?
                .ok_or_else(|| LedgerError::NotFound(format!("block of leaf {}", e.leaf)))?;
            let entry = self
                .index
                .block(height)?
                .ok_or_else(|| LedgerError::NotFound(format!("block {height}")))?;
            let position = (e.leaf - entry.first_leaf) as u32;
            match plan.iter_mut().find(|(l, _)| *l == entry.location) {
                Some((_, positions)) => positions.push(position),
                None => plan.push((entry.location, vec![position])),
            }
        }
        Ok(plan)
    }

    /// Overwrites the planned payloads and salts in place and fsyncs.
    fn apply_redaction(&self, plan: &RedactionPlan) -> Result<(), LedgerError> {
        if plan.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let erased = self.segments.redact(plan)?;
        tracing::info!(
            erased,
            blocks = plan.len(),
            ms = started.elapsed().as_millis() as u64,
            "redaction applied"
        );
        Ok(())
    }

    /// The leaf of the redaction that erased `leaf`, if one did.
    pub fn redacted_by(&self, leaf: u64) -> Result<Option<u64>, LedgerError> {
        Ok(self.index.redacted_by(leaf)?)
    }

    /// A receipt for log entry `leaf` against `checkpoint` (the latest if None).
    pub fn receipt(&self, leaf: u64, checkpoint: Option<&Note>) -> Result<TlogProof, LedgerError> {
        self.receipts(leaf..leaf + 1, checkpoint)?
            .pop()
            .ok_or_else(|| LedgerError::NotFound(format!("leaf {leaf}")))
    }

    /// Receipts for the log entries `leaves` against `checkpoint` (the latest
    /// if None): one checkpoint parse and one lock for a whole block's worth.
    pub fn receipts(
        &self,
        leaves: std::ops::Range<u64>,
        checkpoint: Option<&Note>,
    ) -> Result<Vec<TlogProof>, LedgerError> {
        let note = match checkpoint.cloned().or_else(|| self.checkpoint()) {
            Some(n) => n,
            None => return Err(LedgerError::NotFound("no checkpoint yet".into())),
        };
        let cp = Checkpoint::from_text(&note.text).map_err(fmt_err)?;
        let proofs = self.checked_inclusions(leaves.clone(), cp.size, &cp.root)?;
        Ok(leaves
            .zip(proofs)
            .map(|(index, proof)| TlogProof {
                extra: None,
                index,
                proof,
                checkpoint: note.clone(),
            })
            .collect())
    }

    /// Inclusion proofs, each checked against `root` before it is handed out.
    /// The subtree files are derived data on a disk that can rot; a proof
    /// that does not reach the signed root means they are damaged, and they
    /// are rebuilt from the segments once before giving up.
    fn checked_inclusions(
        &self,
        leaves: std::ops::Range<u64>,
        size: u64,
        root: &Hash,
    ) -> Result<Vec<Vec<Hash>>, LedgerError> {
        let tree_dir = self.dir.join("merkle");
        for attempt in 0..2 {
            {
                let tree = self.tree();
                let mut proofs = Vec::with_capacity((leaves.end - leaves.start) as usize);
                for leaf in leaves.clone() {
                    let proof = merkle::inclusion_proof(&*tree, leaf, size).map_err(fmt_err)?;
                    let leaf_hash = merkle::SubtreeSource::subtree(&*tree, 0, leaf)
                        .map_err(io_at(&tree_dir))?;
                    if merkle::root_from_inclusion(&leaf_hash, leaf, size, &proof).as_ref()
                        != Ok(root)
                    {
                        break;
                    }
                    proofs.push(proof);
                }
                if proofs.len() as u64 == leaves.end - leaves.start {
                    return Ok(proofs);
                }
            }
            if attempt == 0 {
                tracing::error!(
                    size,
                    "stored subtree hashes are damaged; rebuilding them from the segments"
                );
                self.rebuild_tree()?;
            }
        }
        Err(LedgerError::TreeMismatch(
            self.last().map_or(0, |l| l.header().height),
        ))
    }

    /// Rebuilds the subtree files from the segments, to the size they had.
    fn rebuild_tree(&self) -> Result<(), LedgerError> {
        let tree_dir = self.dir.join("merkle");
        let mut tree = write(&self.tree);
        let target = tree.size();
        tree.clear().map_err(io_at(&tree_dir))?;
        fill_tree(&self.segments, &mut tree, None, target, &tree_dir)
    }

    /// A consistency proof between two log sizes, checked before it is
    /// handed out (against the signed root when `to` is the current size),
    /// so that damaged subtree files never pass for a forked history.
    pub fn consistency(&self, from: u64, to: u64) -> Result<Vec<Hash>, LedgerError> {
        for attempt in 0..2 {
            {
                let tree = self.tree();
                let proof = merkle::consistency_proof(&*tree, from, to).map_err(fmt_err)?;
                let root1 = merkle::range_root(&*tree, from).map_err(fmt_err)?;
                let root2 = match self.last() {
                    Some(l) if l.header().log_size == to => l.header().log_root.0,
                    _ => merkle::range_root(&*tree, to).map_err(fmt_err)?,
                };
                if merkle::verify_consistency(from, to, &proof, &root1, &root2).is_ok() {
                    return Ok(proof);
                }
            }
            if attempt == 0 {
                tracing::error!(
                    from,
                    to,
                    "stored subtree hashes are damaged; rebuilding them from the segments"
                );
                self.rebuild_tree()?;
            }
        }
        Err(LedgerError::TreeMismatch(
            self.last().map_or(0, |l| l.header().height),
        ))
    }

    /// The first damaged block found since the ledger was opened, and what
    /// is wrong with it. Once set, [`Store::commit`] refuses every block.
    pub fn damaged(&self) -> Option<(u64, String)> {
        read(&self.damaged).clone()
    }

    /// Records that block `height` is damaged (the full error, file path
    /// included, goes to the log only) and returns the error to report.
    fn damage(&self, height: u64, error: &dyn std::fmt::Display, what: String) -> LedgerError {
        tracing::error!(height, %error, "a stored block is damaged; refusing further writes");
        let mut d = write(&self.damaged);
        if d.is_none() {
            *d = Some((height, what.clone()));
        }
        LedgerError::Damaged { height, what }
    }

    /// Reads the stored record of block `height`; damage is reported as
    /// [`LedgerError::Damaged`] and stops further commits.
    fn stored(&self, height: u64) -> Result<(Location, StoredBlock), LedgerError> {
        let entry = self
            .index
            .block(height)?
            .ok_or_else(|| LedgerError::NotFound(format!("block {height}")))?;
        match self.segments.read(entry.location) {
            Ok(stored) => Ok((entry.location, stored)),
            Err(e @ SegmentError::Corrupt { .. }) => {
                let what = match &e {
                    SegmentError::Corrupt { offset, what, .. } => format!(
                        "segment {} is corrupt at byte {offset}: {what}",
                        segment_name(entry.location.segment)
                    ),
                    _ => e.to_string(),
                };
                Err(self.damage(height, &e, what))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Reads every stored record and checks its checksum, so that damage
    /// anywhere in the log is found before the node takes a write. Returns
    /// how many blocks were checked.
    pub fn scrub(&self) -> Result<u64, LedgerError> {
        let mut blocks = 0u64;
        match scan_segments(&self.segments, None, |_| {
            blocks += 1;
            Ok(())
        }) {
            Ok(()) => Ok(blocks),
            Err(LedgerError::Segment(e @ SegmentError::Corrupt { .. })) => {
                let what = match &e {
                    SegmentError::Corrupt { path, offset, what } => format!(
                        "segment {} is corrupt at byte {offset}: {what}",
                        path.file_name()
                            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
                    ),
                    _ => e.to_string(),
                };
                Err(self.damage(blocks, &e, what))
            }
            Err(e) => Err(e),
        }
    }

    /// Reads and decodes the block at `height`.
    pub fn block(&self, height: u64) -> Result<Block, LedgerError> {
        let (_, stored) = self.stored(height)?;
        record::decode_block(&stored.block, &stored.payloads).map_err(|error| {
            self.damage(height, &error, format!("record does not decode: {error}"))
        })
    }

    /// The block at `height` with its transactions' headers only (no payloads read or checked).
    pub fn block_headers(
        &self,
        height: u64,
    ) -> Result<(SealedHeader, Vec<record::TxStub>), LedgerError> {
        let (location, stored) = self.stored(height)?;
        record::decode_block_stubs(&stored.block)
            .map_err(|error| LedgerError::Record { location, error })
    }

    /// Reads the block at `height` and decodes only its transactions at
    /// log indexes `leaves`, in that order.
    fn block_txs(&self, height: u64, leaves: &[u64]) -> Result<Vec<Transaction>, LedgerError> {
        let (_, stored) = self.stored(height)?;
        let (_, txs) =
            record::decode_block_txs(&stored.block, &stored.payloads, leaves).map_err(|error| {
                self.damage(height, &error, format!("record does not decode: {error}"))
            })?;
        leaves
            .iter()
            .zip(txs)
            .map(|(leaf, tx)| tx.ok_or_else(|| LedgerError::NotFound(format!("leaf {leaf}"))))
            .collect()
    }

    /// The block height of log index `leaf`.
    fn height_of(&self, leaf: u64) -> Result<u64, LedgerError> {
        self.index
            .height_of_leaf(leaf)?
            .ok_or_else(|| LedgerError::NotFound(format!("block of leaf {leaf}")))
    }

    /// Finds a transaction by id: the transaction, its log index and block height.
    pub fn transaction(&self, id: &Hash) -> Result<Option<(Transaction, u64, u64)>, LedgerError> {
        let Some(leaf) = self.index.leaves_of(&[id])?[0] else {
            return Ok(None);
        };
        let height = self.height_of(leaf)?;
        let tx = self
            .block_txs(height, &[leaf])?
            .pop()
            .ok_or_else(|| LedgerError::NotFound(format!("leaf {leaf}")))?;
        if tx.id() != id {
            // Its header or signature changed on disk (with a fixed CRC):
            // serving it under this id would be serving other data.
            let what = format!("the transaction at leaf {leaf} does not hash to its id");
            return Err(self.damage(height, &what, what.clone()));
        }
        Ok(Some((tx, leaf, height)))
    }

    /// The transactions at log indexes `leaves`, each with its block height,
    /// in the order given. A run of them in one block reads that block once
    /// and decodes only them.
    pub fn transactions_at(
        &self,
        leaves: &[u64],
    ) -> Result<Vec<(Transaction, u64, u64)>, LedgerError> {
        let mut out = Vec::with_capacity(leaves.len());
        let heights = leaves
            .iter()
            .map(|&leaf| self.height_of(leaf))
            .collect::<Result<Vec<_>, _>>()?;
        for run in heights.chunk_by(|a, b| a == b) {
            let height = run[0];
            let start = out.len();
            let run_leaves = &leaves[start..start + run.len()];
            let txs = self.block_txs(height, run_leaves)?;
            out.extend(
                txs.into_iter()
                    .zip(run_leaves)
                    .map(|(tx, &leaf)| (tx, leaf, height)),
            );
        }
        Ok(out)
    }

    /// The checkpoint published when the log had `size` entries, signed
    /// again from the log root of the block that ended there. Checkpoints
    /// exist only at block boundaries; any other size is not found.
    pub fn checkpoint_at(&self, size: u64) -> Result<Note, LedgerError> {
        let none = || LedgerError::NotFound(format!("no checkpoint of size {size}"));
        let height = match size.checked_sub(1) {
            Some(last) => self.index.height_of_leaf(last)?.ok_or_else(none)?,
            None => return Err(none()),
        };
        let (header, _) = self.block_headers(height)?;
        if header.header().log_size != size {
            return Err(none());
        }
        self.sign_checkpoint(size, header.header().log_root.0)
    }

    /// Makes the index and subtree files durable (on shutdown).
    pub fn flush(&self) -> Result<(), LedgerError> {
        self.index.flush()?;
        self.tree().sync().map_err(io_at(&self.dir.join("merkle")))
    }
}

/// Paths inside a data directory.
fn paths(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (
        dir.join("ledger.json"),
        dir.join("node.key"),
        dir.join("admin.key"),
    )
}

/// Extracts the ids of a block record body without parsing its JSON.
fn block_ids(body: &[u8]) -> Result<(SealedHeader, Vec<Hash>), RecordError> {
    let header = record::decode_block_header(body)?;
    let ids = record::block_tx_ids(body)?;
    Ok((header, ids))
}

impl Ledger {
    /// Creates a new ledger in `dir`: node key, admin key, genesis block.
    pub fn init(dir: &Path, origin: &str, institution: &str) -> Result<InitReport, LedgerError> {
        Self::init_with(dir, origin, institution, None)
    }

    /// [`Ledger::init`], with the first node's place in a cluster recorded
    /// in genesis when `cluster` is given.
    pub fn init_with(
        dir: &Path,
        origin: &str,
        institution: &str,
        cluster: Option<ClusterMember>,
    ) -> Result<InitReport, LedgerError> {
        let (config_path, _, admin_path) = paths(dir);
        let node_key = new_node_key(dir, origin)?;
        let admin_key = keys::generate().map_err(fmt_err)?;
        write_secret_file(&admin_path, &keys::encode_key_file(&admin_key))?;
        let (config, tmp) = write_config(dir, origin)?;
        let mut ledger = Self::open_parts(dir, config.clone(), node_key.clone())?;
        let time = now_ms();
        let genesis = Transaction::sign(
            &admin_key,
            kind::GENESIS,
            time,
            &serde_json::to_value(GenesisPayload {
                origin: origin.to_owned(),
                admin: keys::public_key(&admin_key),
                node: keys::public_key(&node_key),
                institution: institution.to_owned(),
                max_skew_ms: DEFAULT_MAX_SKEW_MS,
                cluster,
                break_glass_review_ms: DEFAULT_BREAK_GLASS_REVIEW_MS,
            })
            .map_err(fmt_err)?,
        )
        .map_err(fmt_err)?;
        let checked = ledger
            .state
            .admit(&genesis, time, 0)
            .map_err(LedgerError::Rejected)?;
        let txs = vec![genesis];
        let admitted = Admitted::of(&ledger.state, &txs, vec![checked]);
        let block = ledger
            .state
            .seal_block(txs, time, &node_key)
            .map_err(fmt_err)?;
        ledger.store.commit(&block, admitted)?;
        ledger.store.flush()?;
        // The config file appears last: a crash before this leaves no ledger.json
        // and init can simply be run again after removing the directory.
        fs::rename(&tmp, &config_path).map_err(io_at(&config_path))?;
        sync_dir(dir).map_err(io_at(dir))?;
        Ok(InitReport {
            admin_key: admin_path,
            vkey: ledger.store.verifier().to_vkey(),
            origin: origin.to_owned(),
        })
    }

    /// Creates the data directory of a node that joins a cluster: its own
    /// node key and the ledger's origin, and no blocks. It receives every
    /// block, genesis included, from the cluster. Returns the node key.
    pub fn init_joining(dir: &Path, origin: &str) -> Result<keys::PublicKey, LedgerError> {
        let (config_path, _, _) = paths(dir);
        let node_key = new_node_key(dir, origin)?;
        write_config(dir, origin)?;
        let tmp = dir.join("ledger.json.tmp");
        fs::rename(&tmp, &config_path).map_err(io_at(&config_path))?;
        sync_dir(dir).map_err(io_at(dir))?;
        Ok(keys::public_key(&node_key))
    }

    /// Opens an existing ledger, repairing derived data from the segments.
    pub fn open(dir: &Path) -> Result<Self, LedgerError> {
        Self::open_as(dir, true)
    }

    /// Opens the ledger of a cluster node. Its key need not be an active
    /// node's yet: a joining node applies blocks before the one that
    /// registers it, and only an active node's blocks are ever accepted.
    pub fn open_cluster(dir: &Path) -> Result<Self, LedgerError> {
        Self::open_as(dir, false)
    }

    fn open_as(dir: &Path, proposer: bool) -> Result<Self, LedgerError> {
        let (config_path, node_path, _) = paths(dir);
        let text = match fs::read_to_string(&config_path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(LedgerError::NotInitialized(dir.to_path_buf()));
            }
            Err(e) => return Err(io_at(&config_path)(e)),
        };
        let config: LedgerConfig =
            serde_json::from_str(&text).map_err(|e| LedgerError::Config {
                path: config_path.clone(),
                what: e.to_string(),
            })?;
        let node_key = read_key_file(&node_path)?;
        let ledger = Self::open_parts(dir, config, node_key)?;
        // A ledger past genesis must be driven by its own registered node key.
        let node = keys::public_key(&ledger.node_key);
        let active = ledger
            .state
            .participant(&node)
            .is_some_and(|p| p.role == Role::Node && p.revoked_at.is_none());
        if proposer && ledger.state.tip().next_height > 0 && !active {
            return Err(LedgerError::Config {
                path: dir.join("node.key"),
                what: format!("key {node} is not this ledger's active node key"),
            });
        }
        Ok(ledger)
    }

    fn open_parts(
        dir: &Path,
        config: LedgerConfig,
        node_key: SigningKey,
    ) -> Result<Self, LedgerError> {
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_at(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(LedgerError::Locked(dir.to_path_buf()));
        }
        let signer =
            NoteSigner::new(&config.origin, node_key.clone()).map_err(|e| LedgerError::Config {
                path: dir.join("ledger.json"),
                what: e.to_string(),
            })?;
        let index_path = dir.join("index.redb");
        let index = match Index::open(&index_path) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, "index unreadable; rebuilding it from the segments");
                fs::remove_file(&index_path).map_err(io_at(&index_path))?;
                Index::open(&index_path)?
            }
        };
        // The last indexed block lets opening read only the segment's tail.
        let hint = match index.indexed_blocks()? {
            0 => None,
            n => index.block(n - 1)?.map(|e| e.location),
        };
        let opened = SegmentLog::open_hinted(
            &dir.join("segments"),
            std::sync::Arc::new(medledger_store::FileFactory),
            hint,
        )?;
        if opened.cut > 0 {
            tracing::warn!(bytes = opened.cut, "cut a torn tail from the last segment");
        }
        let tree_dir = dir.join("merkle");
        let tree = MerkleStore::open(&tree_dir).map_err(io_at(&tree_dir))?;
        let last = match &opened.last {
            Some(s) => Some(record::decode_block_header(&s.block).map_err(|error| {
                LedgerError::Record {
                    location: s.location,
                    error,
                }
            })?),
            None => None,
        };
        let mut store = Store {
            dir: dir.to_path_buf(),
            origin: config.origin.clone(),
            signer,
            segments: opened.log,
            tree: RwLock::new(tree),
            index,
            last: RwLock::new(last),
            checkpoint: RwLock::new(None),
            damaged: RwLock::new(None),
            _lock: lock,
        };
        store.repair_tree()?;
        let state = store.catch_up_index()?;
        // Pages that held terms of redacted records leave the file.
        if store.index.compact_if_due()? {
            tracing::info!("index compacted after a redaction");
        }
        if let Some(last) = store.last() {
            let h = last.header();
            *write(&store.checkpoint) = Some(store.sign_checkpoint(h.log_size, h.log_root.0)?);
        }
        Ok(Ledger {
            store,
            state,
            node_key,
        })
    }
}

/// The participants of the ledger in `dir`, read from its segments alone,
/// so it works while a running node holds the ledger open. Only the
/// transactions that change participants (genesis, register, revoke) are
/// applied, with the ledger's own rules; a torn tail is ignored.
pub fn participants_from_segments(dir: &Path) -> Result<LedgerState, LedgerError> {
    let mut state = LedgerState::new(crate::state::DEFAULT_MAX_SKEW_MS);
    for (first, path) in list_segments(&dir.join("segments"))? {
        let data = read_segment(&path, first)?;
        let mut failed = None;
        walk(first, &data, SEGMENT_HEADER as usize, |p| {
            if failed.is_some() {
                return;
            }
            let block = match record::decode_block(p.block, p.payloads) {
                Ok(b) => b,
                Err(error) => {
                    failed = Some(LedgerError::Record {
                        location: p.location,
                        error,
                    });
                    return;
                }
            };
            let h = block.header.header();
            for (i, tx) in block.txs.iter().enumerate() {
                if matches!(
                    tx.header().kind.as_str(),
                    kind::GENESIS | kind::REGISTER | kind::REVOKE
                ) {
                    // Committed, so it passed in the full state; the rules
                    // it meets here are the same ones.
                    let _ = state.admit(tx, h.time, h.first_leaf + i as u64);
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
    }
    Ok(state)
}

/// Starts a new data directory in `dir`: checks that it holds no ledger
/// and that `origin` is a valid note key name, then writes a new node key.
fn new_node_key(dir: &Path, origin: &str) -> Result<SigningKey, LedgerError> {
    let (config_path, node_path, _) = paths(dir);
    if config_path.exists() {
        return Err(LedgerError::AlreadyInitialized(dir.to_path_buf()));
    }
    fs::create_dir_all(dir).map_err(io_at(dir))?;
    let node_key = keys::generate().map_err(fmt_err)?;
    NoteSigner::new(origin, node_key.clone()).map_err(|e| LedgerError::Config {
        path: config_path,
        what: format!("origin {origin:?}: {e}"),
    })?;
    write_secret_file(&node_path, &keys::encode_key_file(&node_key))?;
    Ok(node_key)
}

/// Writes and syncs `ledger.json.tmp`; the caller renames it into place
/// once the rest of the directory is ready.
fn write_config(dir: &Path, origin: &str) -> Result<(LedgerConfig, PathBuf), LedgerError> {
    let config = LedgerConfig {
        origin: origin.to_owned(),
        v: 1,
    };
    let text = serde_json::to_string_pretty(&config).map_err(fmt_err)?;
    let tmp = dir.join("ledger.json.tmp");
    fs::write(&tmp, text + "\n").map_err(io_at(&tmp))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io_at(&tmp))?;
    Ok((config, tmp))
}

/// Walks stored blocks in order from `from` (a block's location; the start
/// of the log if `None`), calling `visit` for each.
fn scan_segments(
    segments: &SegmentLog,
    from: Option<Location>,
    mut visit: impl FnMut(&PairRef<'_>) -> Result<(), LedgerError>,
) -> Result<(), LedgerError> {
    for first in segments.segment_starts() {
        if from.is_some_and(|l| first < l.segment) {
            continue;
        }
        let path = segments.dir().join(segment_name(first));
        let data = read_segment(&path, first)?;
        let offset = match from {
            Some(l) if l.segment == first => l.offset as usize,
            _ => SEGMENT_HEADER as usize,
        };
        let mut result = Ok(());
        let w = walk(first, &data, offset, |p| {
            if result.is_ok() {
                result = visit(&p);
            }
        });
        result?;
        if let Some((offset, what, _)) = w.damage {
            return Err(SegmentError::Corrupt {
                path,
                offset,
                what: what.into(),
            }
            .into());
        }
    }
    Ok(())
}

/// Appends to `tree` the leaves from its current size up to `target`, read
/// from the blocks stored from `from` on.
fn fill_tree(
    segments: &SegmentLog,
    tree: &mut MerkleStore,
    from: Option<Location>,
    target: u64,
    tree_dir: &Path,
) -> Result<(), LedgerError> {
    scan_segments(segments, from, |b| {
        let (header, ids) = block_ids(b.block).map_err(|error| LedgerError::Record {
            location: b.location,
            error,
        })?;
        let first = header.header().first_leaf;
        let have = tree.size();
        if first > have {
            return Ok(());
        }
        let start = (have - first) as usize;
        let end = (target.saturating_sub(first) as usize).min(ids.len());
        if start < end {
            tree.append(&ids[start..end]).map_err(io_at(tree_dir))?;
        }
        Ok(())
    })
}

impl Store {
    /// Brings the subtree files to the last block's log size and checks
    /// their root, rebuilding them from the segments if they disagree.
    fn repair_tree(&mut self) -> Result<(), LedgerError> {
        let tree_dir = self.dir.join("merkle");
        let tree = self.tree.get_mut().unwrap_or_else(|e| e.into_inner());
        let Some(last) = self
            .last
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        else {
            if tree.size() > 0 {
                return Err(LedgerError::AcknowledgedLost {
                    what: "Merkle subtree store",
                    recorded: tree.size(),
                    found: 0,
                });
            }
            return Ok(());
        };
        let h = last.header();
        if tree.size() > h.log_size {
            return Err(LedgerError::AcknowledgedLost {
                what: "Merkle subtree store",
                recorded: tree.size(),
                found: h.log_size,
            });
        }
        for attempt in 0..2 {
            let have = self.tree().size();
            // First from the block holding the first missing leaf; after a
            // mismatch, from the start.
            let from = if attempt == 0 {
                self.location_of_leaf(have)?
            } else {
                None
            };
            let tree = self.tree.get_mut().unwrap_or_else(|e| e.into_inner());
            fill_tree(&self.segments, tree, from, h.log_size, &tree_dir)?;
            if tree.size() == h.log_size && tree.root() == h.log_root.0 {
                return Ok(());
            }
            tracing::warn!("stored Merkle subtrees disagree with the blocks; rebuilding them");
            tree.clear().map_err(io_at(&tree_dir))?;
        }
        Err(LedgerError::TreeMismatch(h.height))
    }

    /// Location of the block holding `leaf`, from the index (None: scan all).
    fn location_of_leaf(&self, leaf: u64) -> Result<Option<Location>, LedgerError> {
        let Some(height) = self.index.height_of_leaf(leaf)? else {
            return Ok(None);
        };
        Ok(self.index.block(height)?.map(|e| e.location))
    }

    /// Replays into the index every block it lacks, validating each through
    /// the state machine, and returns the state at the last block.
    /// The skew set by the genesis block (stored, so read without replaying).
    fn genesis(&self) -> Result<GenesisPayload, LedgerError> {
        let genesis = self.block(0)?;
        let g: GenesisPayload = genesis
            .txs
            .first()
            .and_then(|t| serde_json::from_slice(t.payload_jcs()).ok())
            .ok_or_else(|| LedgerError::Format("block 0 holds no genesis transaction".into()))?;
        if g.origin != self.origin {
            return Err(LedgerError::Config {
                path: self.dir.join("ledger.json"),
                what: format!(
                    "origin {:?} differs from the genesis block's {:?}",
                    self.origin, g.origin
                ),
            });
        }
        Ok(g)
    }

    fn catch_up_index(&mut self) -> Result<LedgerState, LedgerError> {
        let last_height = self.last().map(|l| l.header().height);
        let mut indexed = self.index.indexed_blocks()?;
        let blocks = last_height.map_or(0, |h| h + 1);
        if indexed > blocks {
            return Err(LedgerError::AcknowledgedLost {
                what: "index",
                recorded: indexed,
                found: blocks,
            });
        }
        let directory = self.participants().and_then(|p| {
            Ok((
                p,
                self.break_glass(0, usize::MAX, false)?,
                self.prescriptions()?,
            ))
        });
        let (participants, break_glass, prescriptions) = match directory {
            Ok(d) => d,
            Err(e @ LedgerError::Directory { .. }) => {
                tracing::warn!(error = %e, "index holds a damaged directory record; rebuilding it");
                self.index.clear()?;
                indexed = 0;
                (Vec::new(), Vec::new(), Vec::new())
            }
            Err(e) => return Err(e),
        };
        let (tip, from) = if indexed == 0 {
            (Tip::default(), None)
        } else {
            let entry = self.index.block(indexed - 1)?.ok_or_else(|| {
                LedgerError::NotFound(format!("index entry of block {}", indexed - 1))
            })?;
            let stored = self.segments.read(entry.location)?;
            let header = record::decode_block_header(&stored.block).map_err(|error| {
                LedgerError::Record {
                    location: entry.location,
                    error,
                }
            })?;
            let h = header.header();
            (
                Tip {
                    next_height: h.height + 1,
                    prev_hash: *header.hash(),
                    log: Frontier::from_source(&*self.tree(), h.log_size).map_err(fmt_err)?,
                    time: h.time,
                },
                Some(entry.location),
            )
        };
        let origin = if indexed == 0 {
            None
        } else {
            Some(self.origin.clone())
        };
        let (max_skew_ms, review_ms) = if indexed == 0 {
            (DEFAULT_MAX_SKEW_MS, DEFAULT_BREAK_GLASS_REVIEW_MS)
        } else {
            let g = self.genesis()?;
            (g.max_skew_ms, g.break_glass_review_ms)
        };
        let chosen = self
            .index
            .chosen_doctors()?
            .into_iter()
            .map(|(p, d)| (p, medledger_formats::keys::PublicKey::from(d)))
            .collect();
        let mut state = LedgerState::restore(max_skew_ms, participants, chosen, origin, tip)
            .with_break_glass(review_ms, break_glass)
            .with_redacted(self.index.redactions()?)
            .with_prescriptions(prescriptions);
        if last_height.is_none_or(|h| indexed > h) {
            return Ok(state);
        }
        let pending = Pending::default();
        let mut batch: Vec<BlockIndex> = Vec::new();
        let index = &self.index;
        let flush = |batch: &mut Vec<BlockIndex>, pending: &Pending| -> Result<(), LedgerError> {
            index.apply(batch, false)?;
            for b in batch.iter() {
                pending.remove(b.txs.iter().map(|t| &t.id));
            }
            batch.clear();
            Ok(())
        };
        let origin = self.origin.clone();
        scan_segments(&self.segments, from, |b| {
            let block =
                record::decode_block(b.block, b.payloads).map_err(|error| LedgerError::Record {
                    location: b.location,
                    error,
                })?;
            let height = block.header.header().height;
            if height < indexed {
                return Ok(());
            }
            let redacts = block.txs.iter().any(|t| t.header().kind == kind::REDACTION);
            if redacts {
                // Its targets are looked up in the index: put every block
                // before it there first.
                flush(&mut batch, &pending)?;
            }
            let verdicts = state
                .apply_block(
                    &block,
                    &IndexSeen {
                        index,
                        pending: &pending,
                    },
                )
                .map_err(|fault| LedgerError::Block { height, fault })?;
            if height == 0 && state.origin() != Some(origin.as_str()) {
                return Err(LedgerError::Config {
                    path: PathBuf::from("ledger.json"),
                    what: "origin differs from the genesis block's".into(),
                });
            }
            pending.add(block.txs.iter().map(|t| *t.id()));
            let admitted = Admitted::of(&state, &block.txs, verdicts);
            if redacts {
                // Committed before a crash that may have come before its
                // targets were erased, or half way: erase them (again).
                let plan = self.redaction_plan(&admitted.directory.redacted)?;
                self.apply_redaction(&plan)?;
            }
            batch.push(block_index(&block, b.location, admitted));
            if redacts || batch.len() >= 256 {
                flush(&mut batch, &pending)?;
            }
            Ok(())
        })?;
        flush(&mut batch, &pending)?;
        self.index.flush()?;
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medledger_store::Location;

    #[test]
    fn a_participant_record_that_does_not_decode_is_an_error_never_left_out() {
        let dir = tempfile::tempdir().unwrap();
        Ledger::init(dir.path(), "test.example/dir", "Test").unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        let store = &ledger.store;
        // The genesis block registers the admin and the node.
        assert_eq!(store.participants().unwrap().len(), 2);
        let key = [9u8; 32];
        let damaged = BlockIndex {
            block: BlockEntry {
                height: 1,
                location: Location {
                    segment: 0,
                    offset: 0,
                },
                first_leaf: 1,
                tx_count: 0,
            },
            txs: Vec::new(),
            participants: vec![(key, b"{\"role\":".to_vec())],
            chosen: Vec::new(),
            break_glass: Vec::new(),
            redacted: Vec::new(),
            prescriptions: Vec::new(),
        };
        store.index().apply(&[damaged], true).unwrap();
        for e in [
            store.participants().unwrap_err(),
            store.participant(&key).unwrap_err(),
        ] {
            assert!(
                matches!(&e, LedgerError::Directory { key: k, .. } if *k == "09".repeat(32)),
                "{e}"
            );
        }
        // The others still read one by one.
        let node = ledger.state.participants().next().unwrap().key;
        assert!(store.participant(&node.0).unwrap().is_some());
    }

    #[test]
    fn verify_refuses_a_block_holding_a_review_of_no_break_glass_entry() {
        use crate::state::payload_rules;
        let dir = tempfile::tempdir().unwrap();
        Ledger::init(dir.path(), "test.example/review", "Test").unwrap();
        let admin = read_key_file(&dir.path().join("admin.key")).unwrap();
        let mut ledger = Ledger::open(dir.path()).unwrap();
        let dpo = SigningKey::from_bytes(&[6; 32]);
        let time = ledger.state.block_time(now_ms());
        let register = Transaction::sign(
            &admin,
            kind::REGISTER,
            time,
            &serde_json::json!({"key": keys::public_key(&dpo),
                "role": "data_protection_officer", "institution": "Test"}),
        )
        .unwrap();
        // The review names an id that was never logged; sealing does not
        // admit, so a faulty proposer could write this block.
        let review = Transaction::sign(
            &dpo,
            kind::ACCESS_REVIEW,
            time,
            &serde_json::json!({"entry": "ee".repeat(32),
                "patients": ["MFRGGZDFMZTWQ2LKNNWG23TPOA"],
                "outcome": "not-justified", "reason": "no-emergency"}),
        )
        .unwrap();
        for txs in [vec![register], vec![review]] {
            let verdicts = txs.iter().map(|t| payload_rules(t).unwrap()).collect();
            let admitted = Admitted::of(&ledger.state, &txs, verdicts);
            let block = ledger
                .state
                .seal_block(txs, time, &ledger.node_key)
                .unwrap();
            ledger.store.commit(&block, admitted).unwrap();
        }
        drop(ledger);
        let err = crate::verify::verify_dir(dir.path(), 1, |_| {}).unwrap_err();
        match err {
            crate::verify::VerifyError::Block {
                height: 2,
                fault:
                    BlockFault::Tx {
                        index: 0,
                        rejection,
                        ..
                    },
            } => assert_eq!(rejection, Rejection::NotBreakGlass),
            other => panic!("expected block 2's review to be refused, got {other}"),
        }
    }

    #[test]
    fn break_glass_entries_survive_reopening_and_an_index_rebuild() {
        use medledger_health::access::{Access, Purpose, Verdict};
        let dir = tempfile::tempdir().unwrap();
        Ledger::init(dir.path(), "test.example/glass", "Test").unwrap();
        let mut ledger = Ledger::open(dir.path()).unwrap();
        let time = ledger.state.block_time(now_ms());
        let entry = Access {
            reader: "ab".repeat(32),
            role: "doctor".into(),
            node: keys::public_key(&ledger.node_key).to_hex(),
            patients: vec!["MFRGGZDFMZTWQ2LKNNWG23TPOA".into()],
            records: Vec::new(),
            query: None,
            returned: 1,
            withheld: 0,
            purpose: Purpose::Etreat,
            verdict: Verdict::BreakGlass,
            reason: Some("unconscious on arrival".into()),
            time_ms: time as i64,
        };
        let tx = Transaction::sign(
            &ledger.node_key,
            kind::ACCESS_ENTRY,
            time,
            &entry.to_audit_event(),
        )
        .unwrap();
        let id = *tx.id();
        let checked = ledger.state.admit(&tx, time, 1).unwrap();
        let txs = vec![tx];
        let admitted = Admitted::of(&ledger.state, &txs, vec![checked]);
        let block = ledger
            .state
            .seal_block(txs, time, &ledger.node_key)
            .unwrap();
        ledger.store.commit(&block, admitted).unwrap();
        let want = ledger.state.break_glass(&id).cloned().unwrap();
        assert_eq!((want.leaf, want.time, want.review), (1, time, None));
        assert_eq!(
            ledger.store.break_glass(0, 10, true).unwrap(),
            std::slice::from_ref(&want)
        );
        ledger.store.flush().unwrap();
        drop(ledger);
        let reopened = Ledger::open(dir.path()).unwrap();
        assert_eq!(reopened.state.break_glass(&id), Some(&want));
        drop(reopened);
        std::fs::remove_file(dir.path().join("index.redb")).unwrap();
        let rebuilt = Ledger::open(dir.path()).unwrap();
        assert_eq!(rebuilt.state.break_glass(&id), Some(&want));
        assert_eq!(rebuilt.store.break_glass(0, 10, false).unwrap(), [want]);
    }

    #[test]
    fn prescriptions_survive_reopening_and_an_index_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        Ledger::init(dir.path(), "test.example/rx", "Test").unwrap();
        let admin = read_key_file(&dir.path().join("admin.key")).unwrap();
        let mut ledger = Ledger::open(dir.path()).unwrap();
        let (doctor, pharmacy) = (
            SigningKey::from_bytes(&[7; 32]),
            SigningKey::from_bytes(&[8; 32]),
        );
        let time = ledger.state.block_time(now_ms());
        let day = |d: u64| medledger_health::calendar::date_of_ms(time + d * 86_400_000);
        let register = |key: &SigningKey, role: &str| {
            Transaction::sign(
                &admin,
                kind::REGISTER,
                time,
                &serde_json::json!({"key": keys::public_key(key), "role": role, "institution": "Test"}),
            )
            .unwrap()
        };
        let tablets = |n: u32| serde_json::json!({"value": n, "system": "http://unitsofmeasure.org", "code": "{tablet}"});
        let rx = Transaction::sign(
            &doctor,
            kind::PRESCRIPTION,
            time,
            &serde_json::json!({
                "resourceType": "MedicationRequest", "status": "active", "intent": "order",
                "subject": {"reference": "Patient/MFRGGZDFMZTWQ2LKNNWG23TPOA"},
                "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": "N02AA01"}]},
                "dosageInstruction": [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                    "doseAndRate": [{"doseQuantity": tablets(1)}]}],
                "dispenseRequest": {"quantity": tablets(10), "numberOfRepeatsAllowed": 1,
                    "validityPeriod": {"start": day(0), "end": day(9)}}
            }),
        )
        .unwrap();
        let fill = Transaction::sign(
            &pharmacy,
            kind::DISPENSE,
            time,
            &serde_json::json!({
                "resourceType": "MedicationDispense", "status": "completed",
                "subject": {"reference": "Patient/MFRGGZDFMZTWQ2LKNNWG23TPOA"},
                "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": "N02AA01"}]},
                "authorizingPrescription": [{"reference": format!("MedicationRequest/{}", crate::state::hex_id(rx.id()))}],
                "quantity": tablets(4),
                "whenHandedOver": medledger_health::calendar::instant_of_ms(time as i64)
            }),
        )
        .unwrap();
        let txs = vec![
            register(&doctor, "doctor"),
            register(&pharmacy, "pharmacy"),
            rx.clone(),
            fill,
        ];
        let mut verdicts = Vec::new();
        for (i, tx) in txs.iter().enumerate() {
            verdicts.push(ledger.state.admit(tx, time, 1 + i as u64).unwrap());
        }
        let admitted = Admitted::of(&ledger.state, &txs, verdicts);
        let block = ledger
            .state
            .seal_block(txs, time, &ledger.node_key)
            .unwrap();
        ledger.store.commit(&block, admitted).unwrap();
        let want = ledger.state.prescription(rx.id()).cloned().unwrap();
        // Leaf 3 of the block after genesis; one fill of 4 of the 2 × 10.
        assert_eq!(
            (
                want.leaf,
                want.fills_allowed,
                want.fills_used,
                want.dispensed_milli
            ),
            (3, 2, 1, 4_000)
        );
        assert_eq!(want.remaining_milli(), 16_000);
        assert_eq!(
            ledger.store.prescriptions().unwrap(),
            std::slice::from_ref(&want)
        );
        ledger.store.flush().unwrap();
        drop(ledger);
        let reopened = Ledger::open(dir.path()).unwrap();
        assert_eq!(reopened.state.prescription(rx.id()), Some(&want));
        drop(reopened);
        std::fs::remove_file(dir.path().join("index.redb")).unwrap();
        let rebuilt = Ledger::open(dir.path()).unwrap();
        assert_eq!(rebuilt.state.prescription(rx.id()), Some(&want));
        assert_eq!(rebuilt.store.prescriptions().unwrap(), [want]);
    }

    #[test]
    fn a_block_is_committed_only_with_one_verdict_per_transaction() {
        let dir = tempfile::tempdir().unwrap();
        Ledger::init(dir.path(), "test.example/verdicts", "Test").unwrap();
        let mut ledger = Ledger::open(dir.path()).unwrap();
        let doctor = SigningKey::from_bytes(&[5; 32]);
        let time = ledger.state.block_time(now_ms());
        let register = Transaction::sign(
            &SigningKey::from_bytes(&[0; 32]),
            kind::REGISTER,
            time,
            &serde_json::json!({"key": keys::public_key(&doctor), "role": "doctor",
                "institution": "Test", "label": "d"}),
        )
        .unwrap();
        let block = ledger
            .state
            .seal_block(vec![register], time, &ledger.node_key)
            .unwrap();
        let err = ledger
            .store
            .commit(&block, Admitted::default())
            .unwrap_err();
        assert!(
            err.to_string().contains("1 transactions but 0 verdicts"),
            "{err}"
        );
        // Nothing was written: the tip is still genesis.
        assert_eq!(ledger.store.last().unwrap().header().height, 0);
    }

    #[test]
    fn records_read_by_leaf_or_id_are_those_of_their_whole_block() {
        let dir = tempfile::tempdir().unwrap();
        Ledger::init(dir.path(), "test.example/reads", "Test").unwrap();
        let admin = read_key_file(&dir.path().join("admin.key")).unwrap();
        let mut ledger = Ledger::open(dir.path()).unwrap();
        let time = ledger.state.block_time(now_ms());
        let registers = (10..14u8)
            .map(|i| {
                let key = keys::public_key(&SigningKey::from_bytes(&[i; 32]));
                Transaction::sign(
                    &admin,
                    kind::REGISTER,
                    time,
                    &serde_json::json!({"key": key, "role": "doctor",
                        "institution": "Test", "label": format!("d{i}")}),
                )
                .unwrap()
            })
            .collect();
        commit_txs(&mut ledger, registers, true).unwrap();
        let store = &ledger.store;
        let mut whole = Vec::new();
        for height in 0..=1 {
            let block = store.block(height).unwrap();
            let first = block.header.header().first_leaf;
            whole.extend(
                (first..)
                    .zip(block.txs)
                    .map(|(leaf, tx)| (tx, leaf, height)),
            );
        }
        assert!(whole.len() >= 5);
        let size = whole.len() as u64;
        // Runs within a block, across blocks, backwards and repeated.
        let leaves = [size - 1, 0, size - 2, size - 1, 1, size - 4];
        let read = store.transactions_at(&leaves).unwrap();
        let expected: Vec<_> = leaves.iter().map(|&l| whole[l as usize].clone()).collect();
        assert_eq!(read, expected);
        for (tx, leaf, height) in &whole {
            assert_eq!(
                store.transaction(tx.id()).unwrap(),
                Some((tx.clone(), *leaf, *height))
            );
        }
        assert!(store.transactions_at(&[size]).is_err());
    }

    /// Seals and commits `txs` as the next block, admitting each on the
    /// state with the index as its lookup; with `apply`, as a node would.
    fn commit_txs(
        ledger: &mut Ledger,
        txs: Vec<Transaction>,
        apply: bool,
    ) -> Result<(), Rejection> {
        let time = ledger.state.block_time(now_ms());
        let first = ledger.state.tip().log.size();
        let pending = Pending::default();
        let mut verdicts = Vec::new();
        for (i, tx) in txs.iter().enumerate() {
            let seen = IndexSeen {
                index: ledger.store.index(),
                pending: &pending,
            };
            let checked = payload_rules_of(tx)?;
            verdicts.push(ledger.state.admit_checked_in(
                tx,
                checked,
                time,
                first + i as u64,
                &seen,
            )?);
        }
        let mut admitted = Admitted::of(&ledger.state, &txs, verdicts);
        if !apply {
            admitted.directory.redacted.clear();
        }
        let block = ledger
            .state
            .seal_block(txs, time, &ledger.node_key)
            .unwrap();
        ledger.store.commit(&block, admitted).unwrap();
        Ok(())
    }

    fn payload_rules_of(tx: &Transaction) -> Result<Checked, Rejection> {
        crate::state::payload_rules(tx)
    }

    #[test]
    fn a_redaction_committed_but_not_applied_before_a_crash_is_applied_on_open() {
        let dir = tempfile::tempdir().unwrap();
        Ledger::init(dir.path(), "test.example/erasure", "Test").unwrap();
        let admin = read_key_file(&dir.path().join("admin.key")).unwrap();
        let mut ledger = Ledger::open(dir.path()).unwrap();
        let doctor = SigningKey::from_bytes(&[5; 32]);
        let dpo = SigningKey::from_bytes(&[6; 32]);
        let reg = |key: &SigningKey, role: &str| {
            Transaction::sign(
                &admin,
                kind::REGISTER,
                now_ms(),
                &serde_json::json!({"key": keys::public_key(key), "role": role,
                    "institution": "Test", "label": role}),
            )
            .unwrap()
        };
        commit_txs(
            &mut ledger,
            vec![reg(&doctor, "doctor"), reg(&dpo, "data_protection_officer")],
            true,
        )
        .unwrap();
        let patient = medledger_health::pseudonym::synthetic(3);
        let report = |text: &str| {
            Transaction::sign(
                &doctor,
                kind::MEDICAL_REPORT,
                now_ms(),
                &serde_json::json!({"patient": patient, "institution": "Test",
                    "encounter_date": "2026-11-24", "diagnoses": ["I10"], "anamnesis": text}),
            )
            .unwrap()
        };
        let (secret, kept) = (report("SECRET-ANAMNESIS"), report("kept"));
        commit_txs(&mut ledger, vec![secret.clone(), kept.clone()], true).unwrap();
        let order = |targets: &[&Transaction]| {
            Transaction::sign(
                &dpo,
                kind::REDACTION,
                now_ms(),
                &serde_json::json!({"targets": targets.iter().map(|t| crate::state::hex_id(t.id())).collect::<Vec<_>>(),
                    "basis": "entered-in-error", "reason": "direct-identifier", "patient": patient}),
            )
            .unwrap()
        };
        // Committed, but the crash comes before its targets are erased.
        commit_txs(&mut ledger, vec![order(&[&secret])], false).unwrap();
        assert!(
            !ledger
                .store
                .transaction(secret.id())
                .unwrap()
                .unwrap()
                .0
                .is_redacted()
        );
        // A second redaction of the same record is refused by the state.
        assert_eq!(
            commit_txs(&mut ledger, vec![order(&[&secret])], true),
            Err(Rejection::AlreadyRedacted(crate::state::hex_id(
                secret.id()
            )))
        );
        ledger.store.flush().unwrap();
        drop(ledger);
        // The index lost the block (a crash before it was durable): opening
        // replays it and erases the payload.
        std::fs::remove_file(dir.path().join("index.redb")).unwrap();
        let reopened = Ledger::open(dir.path()).unwrap();
        let (tx, leaf, _) = reopened.store.transaction(secret.id()).unwrap().unwrap();
        assert!(tx.is_redacted());
        assert_eq!(tx.id(), secret.id());
        assert_eq!(reopened.store.redacted_by(leaf).unwrap(), Some(leaf + 2));
        let (tx, ..) = reopened.store.transaction(kept.id()).unwrap().unwrap();
        assert_eq!(tx, kept);
        let segments = std::fs::read(dir.path().join("segments").join(segment_name(0))).unwrap();
        assert!(!segments.windows(16).any(|w| w == b"SECRET-ANAMNESIS"));
        drop(reopened);
        let report = crate::verify::verify_dir(dir.path(), 2, |_| {}).unwrap();
        assert_eq!(
            (report.redactions, report.redacted, report.unapplied),
            (1, 1, 0)
        );
        // A rebuild on the erased log gives the same state, and a third
        // open changes nothing.
        std::fs::remove_file(dir.path().join("index.redb")).unwrap();
        let rebuilt = Ledger::open(dir.path()).unwrap();
        assert!(rebuilt.state.redacted().contains_key(secret.id()));
        assert_eq!(rebuilt.store.redacted_by(leaf).unwrap(), Some(leaf + 2));
    }
}
