//! Offline checks of what a node returns: receipts, transactions,
//! checkpoints and blocks, against the node keys the caller trusts.
//! No I/O, so each check can be tested on its own.

use crate::error::VerifyError;
use medledger_formats::block::SealedHeader;
use medledger_formats::canon;
use medledger_formats::canon::canonical_payload;
use medledger_formats::checkpoint::Checkpoint;
use medledger_formats::merkle::{self, Hash};
use medledger_formats::note::NoteVerifier;
use medledger_formats::receipt::TlogProof;
use medledger_formats::tx::{Transaction, TxHeader, commitment};

/// The node keys and origin a client trusts.
#[derive(Clone, Debug)]
pub struct Trust {
    origin: String,
    verifiers: Vec<NoteVerifier>,
}

/// A receipt that verified: the proof binds the transaction id to a
/// checkpoint signed by a trusted node key.
#[derive(Clone, Debug)]
pub struct VerifiedReceipt {
    /// The transaction id (the leaf hash), recomputed from the receipt.
    pub id: Hash,
    /// The leaf index.
    pub index: u64,
    /// The block height as the node reported it; not covered by the proof.
    pub height: Option<u64>,
    /// The verified checkpoint the proof leads to.
    pub checkpoint: Checkpoint,
    /// The receipt exactly as received (a C2SP tlog-proof).
    pub text: String,
}

/// A checkpoint note that verified with a trusted key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The signed note, verbatim.
    pub note: String,
    /// Its parsed checkpoint.
    pub checkpoint: Checkpoint,
}

impl Trust {
    /// Trusts `verifiers` for checkpoints of `origin`.
    pub fn new(origin: impl Into<String>, verifiers: Vec<NoteVerifier>) -> Self {
        Trust {
            origin: origin.into(),
            verifiers,
        }
    }

    /// Trusts one vkey string; the origin is the key's name, because a
    /// checkpoint must be signed by a key named after its origin.
    pub fn from_vkey(vkey: &str) -> Result<Self, VerifyError> {
        let v = NoteVerifier::parse(vkey.trim())?;
        Ok(Trust::new(v.name().to_owned(), vec![v]))
    }

    /// The trusted origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The trusted verifier keys.
    pub fn verifiers(&self) -> &[NoteVerifier] {
        &self.verifiers
    }

    /// Verifies a signed checkpoint note.
    pub fn checkpoint(&self, note: &str) -> Result<SignedCheckpoint, VerifyError> {
        let (checkpoint, _) = Checkpoint::open(note, Some(&self.origin), &self.verifiers)?;
        Ok(SignedCheckpoint {
            note: note.to_owned(),
            checkpoint,
        })
    }

    /// Verifies that `text` proves `tx`: its `extra` must be exactly the
    /// transaction's leaf preimage and the inclusion proof must lead from the
    /// transaction id to a trusted checkpoint.
    pub fn receipt_for(
        &self,
        text: &str,
        tx: &Transaction,
    ) -> Result<VerifiedReceipt, VerifyError> {
        let proof = TlogProof::parse(text)?;
        let extra = proof.extra.as_deref().ok_or(VerifyError::NoExtra)?;
        if extra != tx.leaf_preimage().as_slice() {
            return Err(VerifyError::ExtraMismatch {
                id: hex::encode(tx.id()),
            });
        }
        self.proven(text, &proof, extra, tx.id())
    }

    /// The shared tail of receipt checks: `extra` must hash to `id`, and the
    /// proof must lead from it to a trusted checkpoint.
    fn proven(
        &self,
        text: &str,
        proof: &TlogProof,
        extra: &[u8],
        id: &Hash,
    ) -> Result<VerifiedReceipt, VerifyError> {
        let leaf = merkle::leaf_hash(extra);
        if leaf != *id {
            return Err(VerifyError::IdMismatch {
                what: "receipt leaf",
                expected: hex::encode(id),
                found: hex::encode(leaf),
            });
        }
        let checkpoint = proof.verify(&leaf, Some(&self.origin), &self.verifiers)?;
        Ok(VerifiedReceipt {
            id: leaf,
            index: proof.index,
            height: None,
            checkpoint,
            text: text.to_owned(),
        })
    }

    /// Verifies that `text` proves the transaction with id `id`: the leaf
    /// hash of `extra` must be `id`, the proof must verify, and the author's
    /// signature over the header in `extra` must verify, under the same rule
    /// (ZIP-215, `medledger_formats::sig`) the node applied when it admitted
    /// the transaction.
    pub fn receipt_for_id(&self, text: &str, id: &Hash) -> Result<VerifiedReceipt, VerifyError> {
        let proof = TlogProof::parse(text)?;
        let extra = proof.extra.as_deref().ok_or(VerifyError::NoExtra)?;
        let receipt = self.proven(text, &proof, extra, id)?;
        check_author_signature(extra)?;
        Ok(receipt)
    }

    /// Verifies a record as a patient's history or access log returns it:
    /// the receipt proves `id` (with its author's signature over the
    /// header), and the payload with its salt opens the header's
    /// commitment, so the payload is the one the proven header commits to.
    /// Returns the receipt and the proven header.
    pub fn record(
        &self,
        receipt: &str,
        id: &Hash,
        salt: &[u8; 16],
        payload: &serde_json::Value,
    ) -> Result<(VerifiedReceipt, TxHeader), VerifyError> {
        let proof = TlogProof::parse(receipt)?;
        let extra = proof.extra.as_deref().ok_or(VerifyError::NoExtra)?;
        let verified = self.proven(receipt, &proof, extra, id)?;
        let (header_jcs, sig) = extra
            .split_last_chunk::<64>()
            .ok_or(VerifyError::AuthorSignature)?;
        let header = Transaction::verify_header_signature(header_jcs, sig)
            .map_err(|_| VerifyError::AuthorSignature)?;
        let jcs = canonical_payload(payload).map_err(|e| VerifyError::FieldMismatch {
            field: "payload",
            expected: "canonical JSON".into(),
            found: e.to_string(),
        })?;
        if commitment(salt, &jcs) != header.commitment.0 {
            return Err(VerifyError::FieldMismatch {
                field: "payload",
                expected: format!("the content committed to by {}", hex::encode(id)),
                found: "other content".into(),
            });
        }
        Ok((verified, header))
    }

    /// Verifies a block as `/v1/blocks` returns it: canonical header, hash,
    /// a proposer that is a trusted node key and its signature, and the
    /// transaction ids and their root. Returns the sealed header.
    pub fn block(&self, block: &crate::Block) -> Result<SealedHeader, VerifyError> {
        let bad = |what: String| VerifyError::Block {
            height: block.height,
            what,
        };
        let jcs = canon::jcs(&block.header).map_err(|e| bad(e.to_string()))?;
        let sig = decode_sig(&block.signature).map_err(|e| bad(format!("signature {e}")))?;
        let sealed = SealedHeader::from_stored(&jcs, sig).map_err(|e| bad(e.to_string()))?;
        let h = sealed.header();
        if h.height != block.height {
            return Err(bad(format!("header says height {}", h.height)));
        }
        if hex::encode(sealed.hash()) != block.hash {
            return Err(bad("hash does not match the header".into()));
        }
        if !self
            .verifiers
            .iter()
            .any(|v| v.key().to_bytes() == h.proposer.0)
        {
            return Err(bad(format!(
                "proposer {} is not a trusted node key",
                h.proposer
            )));
        }
        sealed.verify_signature().map_err(|e| bad(e.to_string()))?;
        if h.tx_count != block.transactions.len() as u64 {
            return Err(bad(format!(
                "tx_count is {} but {} transactions were sent",
                h.tx_count,
                block.transactions.len()
            )));
        }
        let mut ids = Vec::with_capacity(block.transactions.len());
        for t in &block.transactions {
            let header_jcs = canon::jcs(&t.header).map_err(|e| bad(e.to_string()))?;
            let sig = decode_sig(&t.signature).map_err(|e| bad(format!("tx signature {e}")))?;
            let id = merkle::leaf_hash_parts(&[&header_jcs, &sig]);
            if hex::encode(id) != t.id {
                return Err(bad(format!(
                    "transaction {} has id {}",
                    t.id,
                    hex::encode(id)
                )));
            }
            ids.push(id);
        }
        if merkle::root(&ids) != h.txs_root.0 {
            return Err(bad("txs_root does not match the transaction ids".into()));
        }
        Ok(sealed)
    }
}

fn decode_sig(hex_sig: &str) -> Result<[u8; 64], &'static str> {
    let bytes = hex::decode(hex_sig).map_err(|_| "is not hex")?;
    <[u8; 64]>::try_from(bytes.as_slice()).map_err(|_| "is not 64 bytes")
}

/// Checks the author's signature in a leaf preimage `header_jcs || sig`.
fn check_author_signature(extra: &[u8]) -> Result<(), VerifyError> {
    let (header_jcs, sig) = extra
        .split_last_chunk::<64>()
        .filter(|(header, _)| !header.is_empty())
        .ok_or(VerifyError::AuthorSignature)?;
    Transaction::verify_header_signature(header_jcs, sig)
        .map(|_| ())
        .map_err(|_| VerifyError::AuthorSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use medledger_formats::merkle::MemTree;
    use medledger_formats::note::NoteSigner;
    use serde_json::json;

    const ORIGIN: &str = "medledger.example/client";

    fn signer(seed: u8) -> NoteSigner {
        NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    /// A three-leaf log whose middle leaf is `tx`, and its receipt.
    fn receipt(tx: &Transaction, log: &NoteSigner) -> String {
        let leaves = [merkle::leaf_hash(b"a"), *tx.id(), merkle::leaf_hash(b"c")];
        let tree = MemTree::from_leaves(&leaves);
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            size: 3,
            root: tree.root(),
            extensions: vec![],
        };
        let proof = merkle::inclusion_proof(&tree, 1, 3).unwrap();
        TlogProof {
            extra: Some(tx.leaf_preimage()),
            index: 1,
            proof,
            checkpoint: cp.sign(log).unwrap(),
        }
        .render()
    }

    fn tx() -> Transaction {
        let author = SigningKey::from_bytes(&[9; 32]);
        Transaction::sign(
            &author,
            "medical_report",
            1_700_000_000_000,
            &json!({"a": 1}),
        )
        .unwrap()
    }

    #[test]
    fn receipt_for_the_right_transaction_verifies() {
        let log = signer(1);
        let trust = Trust::new(ORIGIN, vec![log.verifier()]);
        let tx = tx();
        let text = receipt(&tx, &log);
        let r = trust.receipt_for(&text, &tx).unwrap();
        assert_eq!(r.id, *tx.id());
        assert_eq!(r.index, 1);
        assert_eq!(r.checkpoint.size, 3);
        let r = trust.receipt_for_id(&text, tx.id()).unwrap();
        assert_eq!(r.text, text);
    }

    #[test]
    fn receipt_for_another_transaction_is_refused() {
        let log = signer(1);
        let trust = Trust::new(ORIGIN, vec![log.verifier()]);
        let (a, b) = (tx(), tx());
        let text = receipt(&a, &log);
        assert!(matches!(
            trust.receipt_for(&text, &b),
            Err(VerifyError::ExtraMismatch { .. })
        ));
        assert!(matches!(
            trust.receipt_for_id(&text, b.id()),
            Err(VerifyError::IdMismatch { .. })
        ));
    }

    #[test]
    fn receipt_signed_by_an_untrusted_key_is_refused() {
        let tx = tx();
        let text = receipt(&tx, &signer(2));
        let trust = Trust::new(ORIGIN, vec![signer(1).verifier()]);
        assert!(matches!(
            trust.receipt_for(&text, &tx),
            Err(VerifyError::Receipt(_))
        ));
    }

    #[test]
    fn every_flipped_proof_byte_is_refused() {
        let log = signer(1);
        let trust = Trust::new(ORIGIN, vec![log.verifier()]);
        let tx = tx();
        let text = receipt(&tx, &log);
        let proof = TlogProof::parse(&text).unwrap();
        for i in 0..proof.proof.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = proof.clone();
                bad.proof[i][7] ^= bit;
                assert!(trust.receipt_for(&bad.render(), &tx).is_err());
            }
        }
        let mut bad = proof.clone();
        bad.index = 0;
        assert!(trust.receipt_for(&bad.render(), &tx).is_err());
    }

    #[test]
    fn forged_author_signature_is_refused_by_id_lookup() {
        let log = signer(1);
        let trust = Trust::new(ORIGIN, vec![log.verifier()]);
        // A leaf whose preimage carries a signature that does not verify: the
        // log proves it is logged, but not that the author signed it.
        let good = tx();
        let mut preimage = good.leaf_preimage();
        let last = preimage.len() - 1;
        preimage[last] ^= 1;
        let leaf = merkle::leaf_hash(&preimage);
        let leaves = [leaf];
        let tree = MemTree::from_leaves(&leaves);
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            size: 1,
            root: tree.root(),
            extensions: vec![],
        };
        let text = TlogProof {
            extra: Some(preimage),
            index: 0,
            proof: vec![],
            checkpoint: cp.sign(&log).unwrap(),
        }
        .render();
        assert!(matches!(
            trust.receipt_for_id(&text, &leaf),
            Err(VerifyError::AuthorSignature)
        ));
    }

    #[test]
    fn checkpoint_with_a_wrong_key_or_origin_is_refused() {
        let log = signer(1);
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            size: 1,
            root: [7; 32],
            extensions: vec![],
        };
        let note = cp.sign(&log).unwrap().render();
        assert!(
            Trust::new(ORIGIN, vec![log.verifier()])
                .checkpoint(&note)
                .is_ok()
        );
        assert!(
            Trust::new(ORIGIN, vec![signer(2).verifier()])
                .checkpoint(&note)
                .is_err()
        );
        assert!(
            Trust::new("other.example/log", vec![log.verifier()])
                .checkpoint(&note)
                .is_err()
        );
        let vkey = log.verifier().to_vkey();
        assert_eq!(Trust::from_vkey(&vkey).unwrap().origin(), ORIGIN);
    }
}
