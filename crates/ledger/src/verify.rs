//! Full verification of a data directory from its segments alone: every
//! record checksum, payload commitment, transaction id, signature, Merkle
//! root, block-hash link, proposer signature and admission rule. It trusts
//! nothing derived (index, subtree files) and needs no secret key.

use crate::state::{BlockFault, LedgerState};
use medledger_formats::block::Block;
use medledger_formats::merkle::Hash;
use medledger_formats::record::{self, RecordError};
use medledger_formats::tx::Transaction;
use medledger_store::segment::{self, Location, SEGMENT_HEADER, SegmentError};
use std::collections::HashSet;
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
    /// The directory holds no blocks at all.
    #[error("no blocks found in {0}")]
    Empty(PathBuf),
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
}

/// Total size of the segment files, for progress reporting.
pub fn segment_bytes(dir: &Path) -> Result<u64, VerifyError> {
    let mut total = 0;
    for (_, path) in segment::list_segments(&dir.join("segments"))? {
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

/// Verifies the ledger in `dir`. `progress` receives the bytes verified so far.
pub fn verify_dir(
    dir: &Path,
    max_skew_ms: u64,
    threads: usize,
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, VerifyError> {
    let seg_dir = dir.join("segments");
    let segments = segment::list_segments(&seg_dir)?;
    let mut state = LedgerState::new(max_skew_ms);
    let mut seen: HashSet<Hash> = HashSet::new();
    let mut report = VerifyReport::default();
    let threads = threads.max(1);
    for (first, path) in segments {
        let data = segment::read_segment(&path, first)?;
        let mut pairs = Vec::new();
        let walk = segment::walk(first, &data, SEGMENT_HEADER as usize, |p| {
            pairs.push(p.to_owned());
        });
        // Decode and check signatures in parallel, in chunks of blocks.
        let chunk = 64;
        for group in pairs.chunks(chunk * threads) {
            let decoded: Vec<Result<Block, VerifyError>> = std::thread::scope(|s| {
                let handles: Vec<_> = group
                    .chunks(chunk)
                    .map(|c| {
                        s.spawn(move || {
                            c.iter()
                                .map(|b| decode_and_check(b.location, &b.payloads, &b.block))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_default())
                    .collect()
            });
            for (block, stored) in decoded.into_iter().zip(group) {
                let block = block?;
                let height = block.header.header().height;
                if report.blocks == 0 && first != 0 {
                    return Err(VerifyError::Layout {
                        path: path.clone(),
                        what: "the first segment must start at height 0".into(),
                    });
                }
                if stored.location
                    == (Location {
                        segment: first,
                        offset: SEGMENT_HEADER,
                    })
                    && height != first
                {
                    return Err(VerifyError::Layout {
                        path: path.clone(),
                        what: format!("starts with block {height}, file name says {first}"),
                    });
                }
                state
                    .apply_block_checked(&block, &seen)
                    .map_err(|fault| VerifyError::Block { height, fault })?;
                seen.extend(block.txs.iter().map(|t| *t.id()));
                report.blocks += 1;
                report.transactions += block.txs.len() as u64;
                report.bytes += (stored.payloads.len()
                    + stored.block.len()
                    + 2 * segment::RECORD_HEADER) as u64;
                progress(report.bytes);
            }
        }
        if let Some((offset, what, followed)) = walk.damage {
            let what = if followed {
                what.to_string()
            } else {
                format!("{what} (a torn tail: opening the ledger would cut it off)")
            };
            return Err(SegmentError::Corrupt { path, offset, what }.into());
        }
        report.bytes += SEGMENT_HEADER;
    }
    if report.blocks == 0 {
        return Err(VerifyError::Empty(dir.to_path_buf()));
    }
    report.log_root = state.tip().log.root();
    Ok(report)
}
