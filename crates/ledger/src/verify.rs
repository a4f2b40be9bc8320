//! Full verification of a data directory from its segments alone: every
//! record checksum, payload commitment, transaction id, signature, Merkle
//! root, block-hash link, proposer signature and admission rule. It trusts
//! nothing derived (index, subtree files) and needs no secret key.

use crate::state::{BlockFault, LedgerState, Seen};
use crossbeam_channel::bounded;
use medledger_formats::block::Block;
use medledger_formats::keys::PublicKey;
use medledger_formats::merkle::Hash;
use medledger_formats::record::{self, RecordError};
use medledger_formats::tx::Transaction;
use medledger_store::{
    Location, RECORD_HEADER, SEGMENT_HEADER, SegmentError, StoredBlock, TxFacts, list_segments,
    read_segment, walk,
};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// What verification found wrong: the first failure, located.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A segment could not be read, or a record is damaged.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// The segment files do not follow each other.
    #[error("segment {path}: {what}")]
    Layout {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A block record does not decode (bad canonical form, commitment, ...).
    #[error("block at segment {segment} offset {offset}{height}: {error}", height = .height.map(|h| format!(" (height {h})")).unwrap_or_default())]
    Record {
        /// Segment first height.
        segment: u64,
        /// Byte offset.
        offset: u64,
        /// Height, if the header decoded.
        height: Option<u64>,
        /// What.
        error: RecordError,
    },
    /// A block does not follow from the ones before it.
    #[error("block {height}: {fault}")]
    Block {
        /// Height.
        height: u64,
        /// What.
        fault: BlockFault,
    },
    /// The ledger verifies on its own but not against what the caller trusts.
    #[error("not the trusted ledger: {0}")]
    Untrusted(String),
    /// The directory holds no blocks at all.
    #[error("no blocks found in {0}")]
    Empty(PathBuf),
    /// A payload is erased, but no committed redaction names its transaction.
    #[error(
        "block {height}: the payload of transaction {id} is erased, but no redaction names it (tampered)"
    )]
    Uncovered {
        /// Height of the block holding it.
        height: u64,
        /// The transaction, hex.
        id: String,
    },
}

/// Totals of a successful verification.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Blocks checked.
    pub blocks: u64,
    /// Transactions checked.
    pub transactions: u64,
    /// Segment bytes read.
    pub bytes: u64,
    /// Root of the log after the last block.
    pub log_root: Hash,
    /// The origin set by genesis.
    pub origin: String,
    /// Keys of the active nodes at the end.
    pub nodes: Vec<PublicKey>,
    /// Log size and root after each block, for checking trusted checkpoints.
    pub block_roots: Vec<(u64, Hash)>,
    /// Redaction transactions committed.
    pub redactions: u64,
    /// Transactions whose payload is erased, each named by a redaction.
    pub redacted: u64,
    /// Transactions a committed redaction names whose payload is still
    /// stored (a redaction not yet applied here; opening the ledger applies it).
    pub unapplied: u64,
}

/// What verification remembers of each committed transaction, to judge
/// the redactions that name it: leaf, kind (an index into a list of kinds)
/// and whether its payload is erased.
#[derive(Default)]
struct Known {
    txs: HashMap<Hash, (u64, u16, bool)>,
    kinds: Vec<String>,
}

impl Known {
    fn add(&mut self, tx: &Transaction, leaf: u64) {
        let kind = &tx.header().kind;
        let k = match self.kinds.iter().position(|x| x == kind) {
            Some(k) => k,
            None => {
                self.kinds.push(kind.clone());
                self.kinds.len() - 1
            }
        };
        self.txs
            .insert(*tx.id(), (leaf, k as u16, tx.is_redacted()));
    }
}

impl Seen for Known {
    fn seen(&self, id: &Hash) -> bool {
        self.txs.contains_key(id)
    }

    fn facts(&self, id: &Hash) -> Option<TxFacts> {
        let &(leaf, k, _) = self.txs.get(id)?;
        Some(TxFacts {
            leaf,
            kind: self.kinds.get(k as usize)?.clone(),
            // Verification keeps no patients: that link was checked when
            // the redaction was admitted.
            patient: None,
            redacted_by: None,
        })
    }
}

/// Total size of the segment files, for progress reporting.
pub fn segment_bytes(dir: &Path) -> Result<u64, VerifyError> {
    let mut total = 0;
    for (_, path) in list_segments(&dir.join("segments"))? {
        total += std::fs::metadata(&path)
            .map_err(|source| SegmentError::Io {
                path: path.clone(),
                source,
            })?
            .len();
    }
    Ok(total)
}

/// Decodes one stored pair and checks its transactions' signatures: the
/// stateless, parallel part.
fn decode_and_check(loc: Location, payloads: &[u8], block: &[u8]) -> Result<Block, VerifyError> {
    let record_err = |error| VerifyError::Record {
        segment: loc.segment,
        offset: loc.offset,
        height: record::decode_block_header(block)
            .ok()
            .map(|h| h.header().height),
        error,
    };
    let b = record::decode_block(block, payloads).map_err(record_err)?;
    let refs: Vec<&Transaction> = b.txs.iter().collect();
    for (index, r) in Transaction::verify_signatures(&refs)
        .into_iter()
        .enumerate()
    {
        if r.is_err() {
            return Err(VerifyError::Block {
                height: b.header.header().height,
                fault: BlockFault::Tx {
                    index,
                    id: crate::state::hex_id(b.txs[index].id()),
                    rejection: crate::state::Rejection::BadSignature,
                },
            });
        }
    }
    Ok(b)
}

/// Work flowing from the reader through the checkers to the state machine.
enum Item {
    /// A segment starts: its first height and path.
    Segment(u64, PathBuf),
    /// A stored block, decoded and signature-checked by a worker.
    Block(Box<Result<Block, VerifyError>>, u64),
    /// Reading failed here.
    Fail(VerifyError),
}

/// Verifies the ledger in `dir` with `threads` checking threads.
/// `progress` receives the bytes verified so far.
pub fn verify_dir(
    dir: &Path,
    threads: usize,
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, VerifyError> {
    let seg_dir = dir.join("segments");
    let segments = list_segments(&seg_dir)?;
    // Genesis sets the ledger's skew; this only judges genesis itself.
    let mut state = LedgerState::new(crate::state::DEFAULT_MAX_SKEW_MS);
    let mut seen = Known::default();
    // Erased payloads found so far: id → height of their block.
    let mut erased: HashMap<Hash, u64> = HashMap::new();
    let mut report = VerifyReport::default();
    std::thread::scope(|s| -> Result<(), VerifyError> {
        // The reader walks segments in order; workers decode and check
        // signatures in parallel; this thread applies blocks in order.
        let (raw_tx, raw_rx) = bounded::<(u64, Result<StoredBlock, Item>)>(256);
        let (done_tx, done_rx) = bounded::<(u64, Item)>(256);
        s.spawn(move || {
            let mut n = 0u64;
            let count = segments.len();
            for (i, (first, path)) in segments.into_iter().enumerate() {
                let _ = raw_tx.send((n, Err(Item::Segment(first, path.clone()))));
                n += 1;
                let data = match read_segment(&path, first) {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = raw_tx.send((n, Err(Item::Fail(e.into()))));
                        return;
                    }
                };
                let walk = walk(first, &data, SEGMENT_HEADER as usize, |p| {
                    let _ = raw_tx.send((n, Ok(p.to_owned())));
                    n += 1;
                });
                if let Some((offset, what, followed)) = walk.damage {
                    let what = if followed {
                        what.to_string()
                    } else if i + 1 < count {
                        format!("{what} (at the end of a segment that is not the last: blocks are missing)")
                    } else {
                        format!("{what} (a torn tail: opening the ledger would cut it off)")
                    };
                    let e = SegmentError::Corrupt { path, offset, what };
                    let _ = raw_tx.send((n, Err(Item::Fail(e.into()))));
                    return;
                }
            }
        });
        for _ in 0..threads.max(1) {
            let raw_rx = raw_rx.clone();
            let done_tx = done_tx.clone();
            s.spawn(move || {
                for (n, item) in raw_rx {
                    let item = match item {
                        Ok(b) => {
                            let size =
                                (b.payloads.len() + b.block.len() + 2 * RECORD_HEADER) as u64;
                            Item::Block(
                                Box::new(decode_and_check(b.location, &b.payloads, &b.block)),
                                size,
                            )
                        }
                        Err(other) => other,
                    };
                    if done_tx.send((n, item)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        drop(raw_rx);
        let mut waiting = BTreeMap::new();
        let mut next = 0u64;
        let mut segment: Option<(u64, PathBuf, bool)> = None;
        for (n, item) in done_rx {
            waiting.insert(n, item);
            while let Some(item) = waiting.remove(&next) {
                next += 1;
                match item {
                    Item::Fail(e) => return Err(e),
                    Item::Segment(first, path) => {
                        if report.blocks == 0 && first != 0 {
                            return Err(VerifyError::Layout {
                                path,
                                what: "the first segment must start at height 0".into(),
                            });
                        }
                        report.bytes += SEGMENT_HEADER;
                        segment = Some((first, path, true));
                    }
                    Item::Block(block, size) => {
                        let block = (*block)?;
                        let height = block.header.header().height;
                        if let Some((first, path, starting)) = &mut segment {
                            if *starting && height != *first {
                                return Err(VerifyError::Layout {
                                    path: path.clone(),
                                    what: format!(
                                        "starts with block {height}, file name says {first}"
                                    ),
                                });
                            }
                            *starting = false;
                        }
                        state
                            .apply_block_checked(&block, &seen)
                            .map_err(|fault| VerifyError::Block { height, fault })?;
                        let h = block.header.header();
                        for (i, t) in block.txs.iter().enumerate() {
                            seen.add(t, h.first_leaf + i as u64);
                            if t.is_redacted() {
                                erased.insert(*t.id(), height);
                            }
                            if t.header().kind == crate::roles::kind::REDACTION {
                                report.redactions += 1;
                            }
                        }
                        report.block_roots.push((h.log_size, h.log_root.0));
                        report.blocks += 1;
                        report.transactions += block.txs.len() as u64;
                        report.bytes += size;
                        progress(report.bytes);
                    }
                }
            }
        }
        Ok(())
    })?;
    if report.blocks == 0 {
        return Err(VerifyError::Empty(dir.to_path_buf()));
    }
    // Every erased payload is covered by a redaction committed after it
    // (a redaction names only transactions of earlier blocks).
    let redacted = state.redacted();
    let mut uncovered: Vec<(u64, Hash)> = erased
        .iter()
        .filter(|(id, _)| !redacted.contains_key(*id))
        .map(|(id, h)| (*h, *id))
        .collect();
    uncovered.sort();
    if let Some((height, id)) = uncovered.first() {
        return Err(VerifyError::Uncovered {
            height: *height,
            id: crate::state::hex_id(id),
        });
    }
    report.redacted = erased.len() as u64;
    report.unapplied = redacted
        .keys()
        .filter(|id| !erased.contains_key(*id))
        .count() as u64;
    report.log_root = state.tip().log.root();
    report.origin = state.origin().unwrap_or_default().to_owned();
    report.nodes = state
        .participants()
        .filter(|p| p.role == crate::roles::Role::Node && p.revoked_at.is_none())
        .map(|p| p.key)
        .collect();
    Ok(report)
}
