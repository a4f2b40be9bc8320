//! Blocks: a header that chains to the previous block and advances the log.
//!
//! ```text
//! header    = {first_leaf, height, log_root, log_size, prev_hash, proposer,
//!              time, tx_count, txs_root, v}                  (JCS, keys sorted)
//! hash      = SHA-256("medledger/block/v1\n" || JCS(header))
//! signature = Ed25519(proposer, "medledger/block/v1\n" || JCS(header))   checked by crate::sig
//! ```

use crate::bytes::Bytes;
use crate::canon::{self, BLOCK_TAG, CanonError};
use crate::keys::{self, PublicKey};
use crate::merkle::Hash;
use crate::tx::Transaction;
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Current block format version.
pub const BLOCK_VERSION: u32 = 1;

/// The hashed and signed part of a block. Field order is JCS order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockHeader {
    /// Log index of the block's first transaction.
    pub first_leaf: u64,
    /// 0 for genesis, then +1 per block.
    pub height: u64,
    /// RFC 6962 root of the whole log after this block.
    pub log_root: Bytes<32>,
    /// Number of leaves in the log after this block.
    pub log_size: u64,
    /// Hash of the previous block; zeros for genesis.
    pub prev_hash: Bytes<32>,
    /// The proposing node's public key.
    pub proposer: PublicKey,
    /// Proposer's clock when the block was cut, ms since the Unix epoch.
    pub time: u64,
    /// Number of transactions in the block.
    pub tx_count: u64,
    /// RFC 6962 root over this block's transaction ids alone.
    pub txs_root: Bytes<32>,
    /// Format version, [`BLOCK_VERSION`].
    pub v: u32,
}

/// Why a block header was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlockError {
    /// Not valid JSON of a header.
    #[error("block header is malformed: {0}")]
    Malformed(String),
    /// Valid but not canonical JCS.
    #[error("block header bytes are not canonical JCS")]
    NotCanonical,
    /// Unsupported `v`.
    #[error("unsupported block version {0}")]
    Version(u32),
    /// The proposer signature does not verify.
    #[error("proposer signature does not verify")]
    Signature,
    /// Canonicalization failed.
    #[error("{0}")]
    Canon(#[from] CanonError),
}

/// A block header with its canonical bytes, hash and proposer signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedHeader {
    header: BlockHeader,
    message: Vec<u8>,
    hash: Hash,
    signature: [u8; 64],
}

fn hash_message(message: &[u8]) -> Hash {
    Sha256::digest(message).into()
}

impl SealedHeader {
    /// Signs `header` with the proposer key.
    pub fn seal(header: BlockHeader, key: &SigningKey) -> Result<Self, BlockError> {
        let message = canon::tagged_header(BLOCK_TAG, &header)?;
        let signature = key.sign(&message).to_bytes();
        Ok(Self {
            hash: hash_message(&message),
            header,
            message,
            signature,
        })
    }

    /// Rebuilds a sealed header from stored bytes, refusing non-canonical ones.
    /// Does not check the signature.
    pub fn from_stored(header_jcs: &[u8], signature: [u8; 64]) -> Result<Self, BlockError> {
        let header: BlockHeader =
            serde_json::from_slice(header_jcs).map_err(|e| BlockError::Malformed(e.to_string()))?;
        if header.v != BLOCK_VERSION {
            return Err(BlockError::Version(header.v));
        }
        let h = &header;
        if [h.first_leaf, h.height, h.log_size, h.time, h.tx_count]
            .iter()
            .any(|n| *n > canon::MAX_SAFE_INTEGER)
        {
            return Err(BlockError::Malformed("integer beyond 2^53-1".into()));
        }
        let message = canon::tagged_header(BLOCK_TAG, &header)?;
        if &message[BLOCK_TAG.len()..] != header_jcs {
            return Err(BlockError::NotCanonical);
        }
        Ok(Self {
            hash: hash_message(&message),
            header,
            message,
            signature,
        })
    }

    /// Checks the proposer's signature under the rule of [`crate::sig`].
    pub fn verify_signature(&self) -> Result<(), BlockError> {
        let key = keys::verifying_key(&self.header.proposer).map_err(|_| BlockError::Signature)?;
        key.verify(&self.message, &self.signature)
            .map_err(|_| BlockError::Signature)
    }

    /// The header.
    pub fn header(&self) -> &BlockHeader {
        &self.header
    }
    /// `JCS(header)`.
    pub fn header_jcs(&self) -> &[u8] {
        &self.message[BLOCK_TAG.len()..]
    }
    /// The block hash.
    pub fn hash(&self) -> &Hash {
        &self.hash
    }
    /// The proposer's signature.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }
}

/// A block: its sealed header and its transactions in log order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// The sealed header.
    pub header: SealedHeader,
    /// The transactions.
    pub txs: Vec<Transaction>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_header_known_answer() {
        let key = SigningKey::from_bytes(&[5u8; 32]);
        let header = BlockHeader {
            first_leaf: 10,
            height: 3,
            log_root: Bytes([0xaa; 32]),
            log_size: 12,
            prev_hash: Bytes([0xbb; 32]),
            proposer: keys::public_key(&key),
            time: 1_700_000_000_123,
            tx_count: 2,
            txs_root: Bytes([0xcc; 32]),
            v: 1,
        };
        let sealed = SealedHeader::seal(header, &key).unwrap();
        sealed.verify_signature().unwrap();
        assert_eq!(
            hex::encode(sealed.hash()),
            "57af2d7ba642cabcf51f2a0a055de895d00ed129320c308521da7dc05b93bfa5"
        );
        assert_eq!(
            hex::encode(sealed.signature()),
            "9dbd3176ff5a6447e3ab4143baed1d719f394165e9f102c1c79c5090a425a6af5e7822845bcdd7ac62793825192b37c46a84c2690dd29aa9a41c736b0e50be0e"
        );
        assert_eq!(
            sealed.header_jcs(),
            canon::jcs(sealed.header()).unwrap().as_slice()
        );
        let back = SealedHeader::from_stored(sealed.header_jcs(), *sealed.signature()).unwrap();
        assert_eq!(back, sealed);
        let mut sig = *sealed.signature();
        sig[10] ^= 0x40;
        let bad = SealedHeader::from_stored(sealed.header_jcs(), sig).unwrap();
        assert_eq!(bad.verify_signature(), Err(BlockError::Signature));
    }
}
