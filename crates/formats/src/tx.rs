//! Transactions: header, payload, salt and the author's signature.
//!
//! ```text
//! header     = {author, commitment, kind, nonce, time, v}      (JCS, keys sorted)
//! commitment = SHA-256(salt || JCS(payload))                   salt: 16 random bytes
//! signature  = Ed25519(author, "medledger/tx/v1\n" || JCS(header))   checked by crate::sig (ZIP-215)
//! id         = SHA-256(0x00 || JCS(header) || signature)       the RFC 6962 leaf hash
//! ```
//! The payload is outside the signed header and is bound only through the
//! salted commitment, so it can later be redacted without breaking a hash.
//!
//! A *redacted* transaction is stored with its salt and every payload byte
//! overwritten by 0x00 (the lengths stay, so the record is rewritten in
//! place). No JCS payload is all zero bytes (the shortest is `{}`), so the
//! form cannot be mistaken for a payload; whether a redaction covers it is
//! the ledger's rule, not this module's.

use crate::bytes::Bytes;
use crate::canon::{self, CanonError, TX_TAG};
use crate::keys::{self, KeyError, PublicKey};
use crate::merkle::{self, Hash};
use crate::sig::{self, VerifyingKey};
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Current transaction format version.
pub const TX_VERSION: u32 = 1;
/// Longest accepted kind name.
pub const MAX_KIND_LEN: usize = 64;

/// The signed part of a transaction. Field order is JCS order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxHeader {
    /// The author's Ed25519 public key; it is also the participant id.
    pub author: PublicKey,
    /// SHA-256(salt || JCS(payload)).
    pub commitment: Bytes<32>,
    /// What the payload is, e.g. `medical_report`.
    pub kind: String,
    /// Random bytes that make two otherwise equal submissions distinct.
    pub nonce: Bytes<16>,
    /// The author's clock, milliseconds since the Unix epoch.
    pub time: u64,
    /// Format version, [`TX_VERSION`].
    pub v: u32,
}

/// A transaction as it travels in JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxWire {
    /// The signed header.
    pub header: TxHeader,
    /// The payload, a JSON object.
    pub payload: Value,
    /// The salt of the payload commitment.
    pub salt: Bytes<16>,
    /// Ed25519 signature over `TX_TAG || JCS(header)`.
    pub signature: Bytes<64>,
}

/// Why a transaction is malformed.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum TxError {
    /// Unsupported `v`.
    #[error("unsupported transaction version {0}")]
    Version(u32),
    /// The kind is empty, too long or uses characters outside `[a-z0-9_.]`.
    #[error("invalid kind: must be 1-{MAX_KIND_LEN} characters of a-z, 0-9, '_' or '.'")]
    Kind,
    /// The payload has no canonical form.
    #[error("payload: {0}")]
    Payload(#[from] CanonError),
    /// The commitment does not match salt and payload.
    #[error("payload does not match the header's commitment")]
    Commitment,
    /// `time` beyond 2^53-1 has no exact JCS form.
    #[error("time is beyond 2^53-1 ms")]
    Time,
    /// The author field is not a usable public key.
    #[error("author is not a valid Ed25519 public key")]
    Author,
    /// The signature does not verify.
    #[error("signature does not verify")]
    Signature,
    /// Stored header bytes are not valid JSON of a header.
    #[error("header is malformed: {0}")]
    Header(String),
    /// Stored header bytes are valid but not canonical.
    #[error("header bytes are not canonical JCS")]
    NotCanonical,
    /// Key material failure while signing.
    #[error("key: {0}")]
    Key(String),
    /// The payload was erased by a redaction.
    #[error("the payload was redacted")]
    Redacted,
}

impl From<KeyError> for TxError {
    fn from(e: KeyError) -> Self {
        TxError::Key(e.to_string())
    }
}

/// A well-formed transaction: canonical bytes computed once, commitment checked.
/// The signature is checked separately so that it can be batched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    header: TxHeader,
    message: Vec<u8>,
    signature: [u8; 64],
    id: Hash,
    salt: [u8; 16],
    payload: Vec<u8>,
    redacted: bool,
}

/// True if stored salt and payload bytes are the redacted form: every byte 0x00.
pub fn is_redacted_form(salt: &[u8; 16], payload: &[u8]) -> bool {
    salt.iter().chain(payload).all(|&b| b == 0)
}

/// SHA-256(salt || payload_jcs).
pub fn commitment(salt: &[u8; 16], payload_jcs: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(payload_jcs);
    h.finalize().into()
}

fn check_kind(kind: &str) -> Result<(), TxError> {
    let ok = !kind.is_empty()
        && kind.len() <= MAX_KIND_LEN
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
    if ok { Ok(()) } else { Err(TxError::Kind) }
}

impl Transaction {
    /// Builds, signs and commits a new transaction (the client side).
    pub fn sign(key: &SigningKey, kind: &str, time: u64, payload: &Value) -> Result<Self, TxError> {
        check_kind(kind)?;
        if time > canon::MAX_SAFE_INTEGER {
            return Err(TxError::Time);
        }
        let payload = canon::canonical_payload(payload)?;
        let salt = keys::random_bytes::<16>()?;
        let header = TxHeader {
            author: keys::public_key(key),
            commitment: Bytes(commitment(&salt, &payload)),
            kind: kind.to_owned(),
            nonce: Bytes(keys::random_bytes::<16>()?),
            time,
            v: TX_VERSION,
        };
        let message = canon::tagged_header(TX_TAG, &header)?;
        let signature = key.sign(&message).to_bytes();
        Ok(Self::assemble(header, message, signature, salt, payload))
    }

    fn assemble(
        header: TxHeader,
        message: Vec<u8>,
        signature: [u8; 64],
        salt: [u8; 16],
        payload: Vec<u8>,
    ) -> Self {
        let id = merkle::leaf_hash_parts(&[&message[TX_TAG.len()..], &signature]);
        Self {
            header,
            message,
            signature,
            id,
            salt,
            payload,
            redacted: false,
        }
    }

    fn check_header(header: &TxHeader) -> Result<(), TxError> {
        if header.v != TX_VERSION {
            return Err(TxError::Version(header.v));
        }
        check_kind(&header.kind)?;
        if header.time > canon::MAX_SAFE_INTEGER {
            return Err(TxError::Time);
        }
        Ok(())
    }

    fn check(header: &TxHeader, salt: &[u8; 16], payload: &[u8]) -> Result<(), TxError> {
        Self::check_header(header)?;
        if commitment(salt, payload) != header.commitment.0 {
            return Err(TxError::Commitment);
        }
        Ok(())
    }

    /// Accepts a transaction received as JSON. Does not check the signature.
    pub fn from_wire(wire: TxWire) -> Result<Self, TxError> {
        let payload = canon::canonical_payload(&wire.payload)?;
        Self::check(&wire.header, &wire.salt.0, &payload)?;
        let message = canon::tagged_header(TX_TAG, &wire.header)?;
        Ok(Self::assemble(
            wire.header,
            message,
            wire.signature.0,
            wire.salt.0,
            payload,
        ))
    }

    /// Rebuilds a transaction from stored bytes, refusing a non-canonical
    /// header or a payload that does not match its commitment.
    pub fn from_stored(
        header_jcs: &[u8],
        signature: [u8; 64],
        salt: [u8; 16],
        payload_jcs: Vec<u8>,
    ) -> Result<Self, TxError> {
        let header: TxHeader =
            serde_json::from_slice(header_jcs).map_err(|e| TxError::Header(e.to_string()))?;
        let message = canon::tagged_header(TX_TAG, &header)?;
        if &message[TX_TAG.len()..] != header_jcs {
            return Err(TxError::NotCanonical);
        }
        // The payload is bound by the commitment alone; it was canonical when
        // committed, and any change to its bytes breaks the commitment.
        // A redacted payload has no bytes left to bind: it is accepted here
        // and marked, and the ledger asks for the redaction that covers it.
        if is_redacted_form(&salt, &payload_jcs) {
            Self::check_header(&header)?;
            let mut tx = Self::assemble(header, message, signature, [0; 16], Vec::new());
            tx.redacted = true;
            return Ok(tx);
        }
        Self::check(&header, &salt, &payload_jcs)?;
        Ok(Self::assemble(
            header,
            message,
            signature,
            salt,
            payload_jcs,
        ))
    }

    /// This transaction as it is once redacted: header and signature kept,
    /// salt and payload gone.
    pub fn redacted(&self) -> Self {
        let mut tx = self.clone();
        tx.salt = [0; 16];
        tx.payload = Vec::new();
        tx.redacted = true;
        tx
    }

    /// True if its payload and salt were erased by a redaction.
    pub fn is_redacted(&self) -> bool {
        self.redacted
    }

    /// The JSON form; a redacted transaction has none.
    pub fn to_wire(&self) -> Result<TxWire, TxError> {
        if self.redacted {
            return Err(TxError::Redacted);
        }
        let payload =
            serde_json::from_slice(&self.payload).map_err(|e| TxError::Header(e.to_string()))?;
        Ok(TxWire {
            header: self.header.clone(),
            payload,
            salt: Bytes(self.salt),
            signature: Bytes(self.signature),
        })
    }

    /// Checks the author's signature under the rule of [`crate::sig`].
    pub fn verify_signature(&self) -> Result<(), TxError> {
        let key = keys::verifying_key(&self.header.author).map_err(|_| TxError::Author)?;
        self.verify_with(&key)
    }

    fn verify_with(&self, key: &VerifyingKey) -> Result<(), TxError> {
        key.verify(&self.message, &self.signature)
            .map_err(|_| TxError::Signature)
    }

    /// Checks many signatures; returns one result per transaction, the same
    /// as [`Self::verify_signature`] would give for each.
    ///
    /// One batch equation is tried first; only if it fails is each signature
    /// checked on its own to find the bad ones. The batch is cofactored
    /// (ZIP-215), so it passes exactly when every signature would pass alone.
    pub fn verify_signatures(txs: &[&Transaction]) -> Vec<Result<(), TxError>> {
        // Authors repeat within a batch; decode each key once.
        let cache = keys::KeyCache::new(txs.len());
        Self::verify_signatures_with(txs, &cache)
    }

    /// [`Self::verify_signatures`] with decoded keys from `cache`.
    pub fn verify_signatures_with(
        txs: &[&Transaction],
        cache: &keys::KeyCache,
    ) -> Vec<Result<(), TxError>> {
        let keys: Vec<Result<VerifyingKey, KeyError>> =
            txs.iter().map(|t| cache.get(&t.header.author)).collect();
        if txs.len() >= 4 && keys.iter().all(Result::is_ok) {
            let mut batch = sig::Batch::new();
            for (t, k) in txs.iter().zip(&keys) {
                if let Ok(k) = k {
                    batch.queue(k, &t.message, &t.signature);
                }
            }
            if batch.verify().is_ok() {
                return vec![Ok(()); txs.len()];
            }
        }
        txs.iter()
            .zip(keys)
            .map(|(t, k)| t.verify_with(&k.map_err(|_| TxError::Author)?))
            .collect()
    }

    /// Checks the author's signature over stored header bytes, as a receipt
    /// carries them (`JCS(header) || signature`), without the payload.
    /// Returns the parsed header.
    pub fn verify_header_signature(
        header_jcs: &[u8],
        signature: &[u8; 64],
    ) -> Result<TxHeader, TxError> {
        let header: TxHeader =
            serde_json::from_slice(header_jcs).map_err(|e| TxError::Header(e.to_string()))?;
        let key = keys::verifying_key(&header.author).map_err(|_| TxError::Author)?;
        let mut message = TX_TAG.to_vec();
        message.extend_from_slice(header_jcs);
        key.verify(&message, signature)
            .map_err(|_| TxError::Signature)?;
        Ok(header)
    }

    /// The header.
    pub fn header(&self) -> &TxHeader {
        &self.header
    }
    /// `JCS(header)`.
    pub fn header_jcs(&self) -> &[u8] {
        &self.message[TX_TAG.len()..]
    }
    /// The bytes the author signed: `TX_TAG || JCS(header)`.
    pub fn signing_message(&self) -> &[u8] {
        &self.message
    }
    /// The leaf preimage `JCS(header) || signature`; the id is its leaf hash.
    pub fn leaf_preimage(&self) -> Vec<u8> {
        let mut out = self.header_jcs().to_vec();
        out.extend_from_slice(&self.signature);
        out
    }
    /// The Ed25519 signature.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }
    /// The transaction id, its RFC 6962 leaf hash.
    pub fn id(&self) -> &Hash {
        &self.id
    }
    /// The commitment salt.
    pub fn salt(&self) -> &[u8; 16] {
        &self.salt
    }
    /// `JCS(payload)`.
    pub fn payload_jcs(&self) -> &[u8] {
        &self.payload
    }
    /// The payload parsed back into JSON.
    pub fn payload(&self) -> Result<Value, TxError> {
        if self.redacted {
            return Err(TxError::Redacted);
        }
        serde_json::from_slice(&self.payload).map_err(|e| TxError::Header(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixed() -> Transaction {
        let key = SigningKey::from_bytes(&[1u8; 32]);
        let header = TxHeader {
            author: keys::public_key(&key),
            commitment: Bytes(commitment(&[2u8; 16], br#"{"a":1}"#)),
            kind: "medical_report".into(),
            nonce: Bytes([3u8; 16]),
            time: 1_700_000_000_000,
            v: 1,
        };
        let message = canon::tagged(TX_TAG, &header).unwrap();
        let sig = key.sign(&message).to_bytes();
        Transaction::from_stored(
            &message[TX_TAG.len()..],
            sig,
            [2u8; 16],
            br#"{"a":1}"#.to_vec(),
        )
        .unwrap()
    }

    #[test]
    fn transaction_known_answer() {
        let tx = fixed();
        assert_eq!(
            std::str::from_utf8(tx.header_jcs()).unwrap(),
            concat!(
                r#"{"author":"8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c","#,
                r#""commitment":"b1ec1b44f68debd9276727e3c98b063a35ae760bb1af99e387cbcf85f21ca1a3","#,
                r#""kind":"medical_report","nonce":"03030303030303030303030303030303","time":1700000000000,"v":1}"#
            )
        );
        assert_eq!(
            hex::encode(tx.id()),
            "563a41f2b17a4d658fe159f7942dabff16177228e45a8a519e1a2ea3b713da98"
        );
        assert_eq!(
            hex::encode(tx.signature()),
            "69b71797d4642181e85a84ecdbb57a7f8ce8de8555cf342a77510545e2096e0879bd323b90c41245d6d524e62ab5af64b02d968aec9ea2ba3b86b4a2a6a68b0b"
        );
        tx.verify_signature().unwrap();
    }

    #[test]
    fn header_serialization_is_jcs() {
        let tx = fixed();
        assert_eq!(tx.header_jcs(), canon::jcs(tx.header()).unwrap());
        let key = SigningKey::from_bytes(&[8u8; 32]);
        for kind in ["a", "vital_signs", "participant.register", "x9_.z"] {
            let t = Transaction::sign(&key, kind, u64::MAX >> 11, &json!({"b": [1, 2.5]})).unwrap();
            assert_eq!(t.header_jcs(), canon::jcs(t.header()).unwrap());
        }
    }

    #[test]
    fn wire_round_trip_and_tampering() {
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let tx = Transaction::sign(&key, "vital_signs", 5, &json!({"hr": 72, "t": 36.6})).unwrap();
        tx.verify_signature().unwrap();
        let wire = tx.to_wire().unwrap();
        let text = serde_json::to_string(&wire).unwrap();
        let back = Transaction::from_wire(serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(back, tx);

        let mut w = wire.clone();
        w.payload = json!({"hr": 73, "t": 36.6});
        assert_eq!(Transaction::from_wire(w), Err(TxError::Commitment));

        let mut w = wire.clone();
        w.header.time += 1;
        let t = Transaction::from_wire(w).unwrap();
        assert_eq!(t.verify_signature(), Err(TxError::Signature));

        let mut w = wire.clone();
        w.header.kind = "Vital".into();
        assert_eq!(Transaction::from_wire(w), Err(TxError::Kind));

        let mut w = wire.clone();
        w.header.time = canon::MAX_SAFE_INTEGER + 1;
        assert_eq!(Transaction::from_wire(w), Err(TxError::Time));

        let mut w = wire;
        w.header.v = 2;
        assert_eq!(Transaction::from_wire(w), Err(TxError::Version(2)));
    }

    #[test]
    fn batch_verification_finds_the_bad_signature() {
        let key = SigningKey::from_bytes(&[4u8; 32]);
        let mut txs: Vec<Transaction> = (0..8)
            .map(|i| Transaction::sign(&key, "k", i, &json!({"i": i})).unwrap())
            .collect();
        txs[5].signature[0] ^= 1;
        let refs: Vec<&Transaction> = txs.iter().collect();
        let results = Transaction::verify_signatures(&refs);
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
        assert_eq!(results[5], Err(TxError::Signature));
    }

    #[test]
    fn non_canonical_stored_header_is_refused() {
        let tx = fixed();
        let spaced = String::from_utf8(tx.header_jcs().to_vec())
            .unwrap()
            .replace(",\"kind\"", ", \"kind\"");
        assert_eq!(
            Transaction::from_stored(
                spaced.as_bytes(),
                *tx.signature(),
                *tx.salt(),
                tx.payload_jcs().to_vec()
            ),
            Err(TxError::NotCanonical)
        );
    }
}
