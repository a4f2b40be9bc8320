//! Bodies of the two record kinds in a segment file. Framing (length,
//! checksum) belongs to storage; this is what is inside. All integers are
//! little-endian.
//!
//! ```text
//! payloads record (kind 1):  height u64 | count u32 | count × (salt [16] | len u32 | JCS(payload))
//! block record    (kind 2):  len u32 | JCS(block header) | proposer signature [64]
//!                            | count u32 | count × (len u32 | JCS(tx header) | signature [64])
//! ```
//! A block's payloads record comes just before its block record. Payloads
//! live in their own record so that one can be redacted in place while the
//! block record, and every hash over it, stays unchanged.

use crate::block::{Block, BlockError, SealedHeader};
use crate::tx::{Transaction, TxError};
use std::collections::{BTreeMap, BTreeSet};

/// Record kind: the payloads and salts of one block.
pub const KIND_PAYLOADS: u8 = 1;
/// Record kind: a block header and its transaction headers and signatures.
pub const KIND_BLOCK: u8 = 2;

/// Why a record body could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    /// The body ends before a field it announces.
    #[error("record is truncated")]
    Truncated,
    /// Bytes remain after the last field.
    #[error("record has {0} trailing bytes")]
    Trailing(usize),
    /// The payloads record does not belong to this block.
    #[error("payloads record is for height {payloads}, block is {block}")]
    HeightMismatch {
        /// Height in the payloads record.
        payloads: u64,
        /// Height in the block header.
        block: u64,
    },
    /// The counts in the two records or the header disagree.
    #[error(
        "transaction count mismatch: header {header}, block record {block}, payloads record {payloads}"
    )]
    CountMismatch {
        /// `tx_count` in the header.
        header: u64,
        /// Entries in the block record.
        block: u64,
        /// Entries in the payloads record.
        payloads: u64,
    },
    /// The block header is invalid.
    #[error("block header: {0}")]
    Block(#[from] BlockError),
    /// A transaction is invalid.
    #[error("transaction {index} of the block: {error}")]
    Tx {
        /// Position in the block.
        index: usize,
        /// What is wrong.
        error: TxError,
    },
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn bytes(&mut self) -> Result<&'a [u8], RecordError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn finish(&self) -> Result<(), RecordError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(RecordError::Trailing(self.0.len()))
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Appends the payloads record body of `block`.
pub fn encode_payloads(block: &Block, out: &mut Vec<u8>) {
    out.extend_from_slice(&block.header.header().height.to_le_bytes());
    out.extend_from_slice(&(block.txs.len() as u32).to_le_bytes());
    for tx in &block.txs {
        out.extend_from_slice(tx.salt());
        put_bytes(out, tx.payload_jcs());
    }
}

/// Redacts, in a payloads record body, the transactions at `positions`
/// (their places in the block): overwrites each one's salt and payload with
/// 0x00 and leaves every length, so the body keeps its size and layout.
/// Returns how many of them were not redacted before. Already redacted ones
/// are left as they are, so doing it again changes nothing.
pub fn redact_payloads(body: &mut [u8], positions: &[usize]) -> Result<usize, RecordError> {
    // Find each transaction's salt and payload spans first, then write.
    let mut spans = Vec::new();
    {
        let mut p = Reader(body);
        p.u64()?;
        let count = p.u32()? as usize;
        let mut at = 12usize;
        for index in 0..count {
            p.take(16)?;
            let payload = p.bytes()?;
            let end = at + 16 + 4 + payload.len();
            if positions.contains(&index) {
                spans.push((at, at + 16, at + 20, end));
            }
            at = end;
        }
        p.finish()?;
        if let Some(&bad) = positions.iter().find(|&&i| i >= count) {
            return Err(RecordError::CountMismatch {
                header: bad as u64,
                block: count as u64,
                payloads: count as u64,
            });
        }
    }
    let mut changed = 0;
    for (salt, salt_end, payload, end) in spans {
        let (s, rest) = body[salt..end].split_at_mut(salt_end - salt);
        let p = &mut rest[payload - salt_end..];
        let mut salt_bytes = [0u8; 16];
        salt_bytes.copy_from_slice(s);
        if !crate::tx::is_redacted_form(&salt_bytes, p) {
            changed += 1;
        }
        s.fill(0);
        p.fill(0);
    }
    Ok(changed)
}

/// Appends the block record body of `block`.
pub fn encode_block(block: &Block, out: &mut Vec<u8>) {
    put_bytes(out, block.header.header_jcs());
    out.extend_from_slice(block.header.signature());
    out.extend_from_slice(&(block.txs.len() as u32).to_le_bytes());
    for tx in &block.txs {
        put_bytes(out, tx.header_jcs());
        out.extend_from_slice(tx.signature());
    }
}

/// Decodes only the sealed header of a block record (for fast scans).
pub fn decode_block_header(body: &[u8]) -> Result<SealedHeader, RecordError> {
    let mut r = Reader(body);
    let jcs = r.bytes()?;
    let sig = r.array::<64>()?;
    Ok(SealedHeader::from_stored(jcs, sig)?)
}

/// The transaction ids of a block record, computed from the stored bytes
/// without parsing them (for rebuilding the Merkle log quickly).
pub fn block_tx_ids(body: &[u8]) -> Result<Vec<crate::merkle::Hash>, RecordError> {
    let mut r = Reader(body);
    r.bytes()?;
    r.array::<64>()?;
    let count = r.u32()? as usize;
    let mut ids = Vec::with_capacity(count.min(body.len() / 68));
    for _ in 0..count {
        let header_jcs = r.bytes()?;
        let signature = r.take(64)?;
        ids.push(crate::merkle::leaf_hash_parts(&[header_jcs, signature]));
    }
    r.finish()?;
    Ok(ids)
}

/// A transaction as the block record holds it: header and signature, no payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxStub {
    /// The parsed header.
    pub header: crate::tx::TxHeader,
    /// The author's signature.
    pub signature: [u8; 64],
    /// The transaction id.
    pub id: crate::merkle::Hash,
}

/// Decodes a block record alone: the sealed header and its transactions'
/// headers, without touching payloads (for serving headers cheaply).
pub fn decode_block_stubs(body: &[u8]) -> Result<(SealedHeader, Vec<TxStub>), RecordError> {
    let mut r = Reader(body);
    let jcs = r.bytes()?;
    let sig = r.array::<64>()?;
    let header = SealedHeader::from_stored(jcs, sig)?;
    let count = r.u32()? as usize;
    let mut out = Vec::with_capacity(count.min(body.len() / 68));
    for index in 0..count {
        let header_jcs = r.bytes()?;
        let signature = r.array::<64>()?;
        let tx_header = serde_json::from_slice(header_jcs).map_err(|e| RecordError::Tx {
            index,
            error: TxError::Header(e.to_string()),
        })?;
        out.push(TxStub {
            header: tx_header,
            signature,
            id: crate::merkle::leaf_hash_parts(&[header_jcs, &signature]),
        });
    }
    r.finish()?;
    Ok((header, out))
}

/// Decodes a block from its block record and payloads record bodies,
/// checking every transaction's canonical form and commitment (not signatures).
pub fn decode_block(block_body: &[u8], payloads_body: &[u8]) -> Result<Block, RecordError> {
    let mut txs = Vec::new();
    let header = decode_with(block_body, payloads_body, |_| true, |_, tx| txs.push(tx))?;
    Ok(Block { header, txs })
}

/// Decodes a block's sealed header and only its transactions at log
/// indexes `leaves`, in the order given (`None` for an index outside the
/// block). Those are checked as [`decode_block`] checks every one; the
/// others are stepped over by their lengths, so that reading one record
/// does not parse and hash the whole block. Both bodies are still walked
/// to the end, so their framing is checked as a whole.
pub fn decode_block_txs(
    block_body: &[u8],
    payloads_body: &[u8],
    leaves: &[u64],
) -> Result<(SealedHeader, Vec<Option<Transaction>>), RecordError> {
    let first = decode_block_header(block_body)?.header().first_leaf;
    let position = |leaf: u64| usize::try_from(leaf.checked_sub(first)?).ok();
    let wanted: BTreeSet<usize> = leaves.iter().filter_map(|&l| position(l)).collect();
    let mut found = BTreeMap::new();
    let header = decode_with(
        block_body,
        payloads_body,
        |index| wanted.contains(&index),
        |index, tx| {
            found.insert(index, tx);
        },
    )?;
    let txs = leaves
        .iter()
        .map(|&l| found.get(&position(l)?).cloned())
        .collect();
    Ok((header, txs))
}

/// Walks both record bodies of a block, checking their framing and counts,
/// and hands `put` each transaction whose place in the block `keep` asks for.
fn decode_with(
    block_body: &[u8],
    payloads_body: &[u8],
    keep: impl Fn(usize) -> bool,
    mut put: impl FnMut(usize, Transaction),
) -> Result<SealedHeader, RecordError> {
    let mut r = Reader(block_body);
    let jcs = r.bytes()?;
    let sig = r.array::<64>()?;
    let header = SealedHeader::from_stored(jcs, sig)?;
    let count = r.u32()? as usize;

    let mut p = Reader(payloads_body);
    let height = p.u64()?;
    if height != header.header().height {
        return Err(RecordError::HeightMismatch {
            payloads: height,
            block: header.header().height,
        });
    }
    let pcount = p.u32()? as usize;
    if count != pcount || header.header().tx_count != count as u64 {
        return Err(RecordError::CountMismatch {
            header: header.header().tx_count,
            block: count as u64,
            payloads: pcount as u64,
        });
    }
    for index in 0..count {
        let header_jcs = r.bytes()?;
        let signature = r.array::<64>()?;
        let salt = p.array::<16>()?;
        let payload = p.bytes()?;
        if keep(index) {
            let tx = Transaction::from_stored(header_jcs, signature, salt, payload.to_vec())
                .map_err(|error| RecordError::Tx { index, error })?;
            put(index, tx);
        }
    }
    r.finish()?;
    p.finish()?;
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{BlockHeader, SealedHeader};
    use crate::bytes::Bytes;
    use ed25519_dalek::SigningKey;

    fn block() -> Block {
        let key = SigningKey::from_bytes(&[6; 32]);
        let txs: Vec<Transaction> = (0..3)
            .map(|i| {
                Transaction::sign(&key, "medical_report", 1 + i, &serde_json::json!({"i": i}))
                    .unwrap()
            })
            .collect();
        let header = BlockHeader {
            first_leaf: 0,
            height: 0,
            log_root: Bytes([0; 32]),
            log_size: 3,
            prev_hash: Bytes([0; 32]),
            proposer: crate::keys::public_key(&key),
            time: 1,
            tx_count: 3,
            txs_root: Bytes([0; 32]),
            v: 1,
        };
        Block {
            header: SealedHeader::seal(header, &key).unwrap(),
            txs,
        }
    }

    #[test]
    fn block_records_round_trip_whole_and_as_headers() {
        let b = block();
        let (mut body, mut payloads) = (Vec::new(), Vec::new());
        encode_block(&b, &mut body);
        encode_payloads(&b, &mut payloads);
        assert_eq!(decode_block(&body, &payloads).unwrap(), b);
        let (header, stubs) = decode_block_stubs(&body).unwrap();
        assert_eq!(header, b.header);
        assert_eq!(stubs.len(), 3);
        for (s, t) in stubs.iter().zip(&b.txs) {
            assert_eq!(
                (&s.header, &s.signature, &s.id),
                (t.header(), t.signature(), t.id())
            );
        }
        assert_eq!(
            block_tx_ids(&body).unwrap(),
            b.txs.iter().map(|t| *t.id()).collect::<Vec<_>>()
        );
        // Any cut is an error, never a panic.
        for n in 0..body.len() {
            assert!(decode_block_stubs(&body[..n]).is_err());
            assert!(decode_block(&body[..n], &payloads).is_err());
        }
        assert_eq!(
            decode_block(&body, &payloads[..payloads.len() - 1]),
            Err(RecordError::Truncated)
        );
    }

    #[test]
    fn chosen_transactions_decode_as_the_whole_block_does() {
        let mut b = block();
        b.header = {
            let mut h = b.header.header().clone();
            h.first_leaf = 10;
            SealedHeader::seal(h, &SigningKey::from_bytes(&[6; 32])).unwrap()
        };
        let (mut body, mut payloads) = (Vec::new(), Vec::new());
        encode_block(&b, &mut body);
        encode_payloads(&b, &mut payloads);
        let (header, txs) = decode_block_txs(&body, &payloads, &[12, 10, 12, 9, 13]).unwrap();
        assert_eq!(header, b.header);
        assert_eq!(
            txs,
            vec![
                Some(b.txs[2].clone()),
                Some(b.txs[0].clone()),
                Some(b.txs[2].clone()),
                None,
                None
            ]
        );
        // The framing of both records is checked whole, whatever is chosen.
        for n in 0..body.len() {
            assert!(decode_block_txs(&body[..n], &payloads, &[10]).is_err());
        }
        assert_eq!(
            decode_block_txs(&body, &payloads[..payloads.len() - 1], &[10]),
            Err(RecordError::Truncated)
        );
        // A changed payload fails its own read, not the others'.
        let mut bad = payloads.clone();
        let at = 12 + 16 + 4;
        bad[at] ^= 1;
        assert!(decode_block_txs(&body, &bad, &[10]).is_err());
        assert_eq!(
            decode_block_txs(&body, &bad, &[11]).unwrap().1,
            vec![Some(b.txs[1].clone())]
        );
    }

    #[test]
    fn a_redacted_payload_keeps_its_size_and_every_id_and_is_marked() {
        let b = block();
        let (mut body, mut payloads) = (Vec::new(), Vec::new());
        encode_block(&b, &mut body);
        encode_payloads(&b, &mut payloads);
        let before = payloads.clone();
        assert_eq!(redact_payloads(&mut payloads, &[1]).unwrap(), 1);
        assert_eq!(payloads.len(), before.len());
        // Only the salt and payload bytes of transaction 1 changed, to zeros.
        let payload1 = b.txs[1].payload_jcs();
        let changed: Vec<usize> = (0..before.len())
            .filter(|&i| before[i] != payloads[i])
            .collect();
        assert!(changed.iter().all(|&i| payloads[i] == 0));
        assert!(changed.len() >= payload1.len());
        let text = String::from_utf8_lossy(&payloads);
        assert!(!text.contains(std::str::from_utf8(payload1).unwrap()));
        let redacted = decode_block(&body, &payloads).unwrap();
        assert!(!redacted.txs[0].is_redacted() && !redacted.txs[2].is_redacted());
        assert!(redacted.txs[1].is_redacted());
        assert_eq!(redacted.txs[1].payload_jcs(), b"");
        assert_eq!(redacted.txs[1].id(), b.txs[1].id());
        assert_eq!(redacted.txs[0], b.txs[0]);
        // Idempotent.
        let once = payloads.clone();
        assert_eq!(redact_payloads(&mut payloads, &[1]).unwrap(), 0);
        assert_eq!(payloads, once);
        // A position past the block is an error, and nothing is written.
        assert!(redact_payloads(&mut payloads, &[3]).is_err());
        assert_eq!(payloads, once);
        // Zeroing a payload but not its salt is no redaction: the commitment fails.
        let mut half = before.clone();
        let start = 12 + 16 + 4 + b.txs[0].payload_jcs().len() + 16 + 4;
        half[start..start + payload1.len()].fill(0);
        assert!(decode_block(&body, &half).is_err());
    }
}
