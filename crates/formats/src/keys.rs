//! Ed25519 keys and the key-file format.
//!
//! A key file is one JCS JSON object, `{"kind":"ed25519","public_key":HEX,"secret_key":HEX,"v":1}`,
//! so an operator can tell which public key a file holds without tools.
//!
//! Keys are signed with ed25519-dalek; every signature is checked by the
//! rule of [`crate::sig`].

use crate::bytes::Bytes;
use crate::sig::VerifyingKey;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

/// A participant's or node's public key: the 32-byte Ed25519 encoding.
pub type PublicKey = Bytes<32>;

/// Why a key or key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file is not the expected JSON object.
    #[error("malformed key file: {0}")]
    Malformed(String),
    /// The public key in the file does not belong to the secret key.
    #[error("key file is inconsistent: its public key does not match its secret key")]
    Mismatch,
    /// The bytes are not a usable Ed25519 public key.
    #[error("invalid Ed25519 public key")]
    InvalidPublicKey,
    /// The operating system's random source failed.
    #[error("random source failed: {0}")]
    Random(String),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    kind: String,
    public_key: PublicKey,
    secret_key: Bytes<32>,
    v: u32,
}

/// Fills `buf` from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(buf)
}

/// A fresh random Ed25519 signing key.
pub fn generate() -> Result<SigningKey, KeyError> {
    Ok(SigningKey::from_bytes(&random_bytes::<32>()?))
}

/// The public key of `key` as a [`PublicKey`].
pub fn public_key(key: &SigningKey) -> PublicKey {
    Bytes(key.verifying_key().to_bytes())
}

/// Decodes a public key for checking signatures, refusing weak
/// (small-order) keys.
///
/// This is the key policy, separate from the signature rule: under ZIP-215
/// a small-order key has valid signatures on every message (S = 0, R of
/// small order), so a signature by it proves nothing, and no secret key
/// derives one. Every key the ledger registers or trusts passes here first.
pub fn verifying_key(key: &PublicKey) -> Result<VerifyingKey, KeyError> {
    let vk = VerifyingKey::from_bytes(&key.0).map_err(|_| KeyError::InvalidPublicKey)?;
    if vk.is_weak() {
        return Err(KeyError::InvalidPublicKey);
    }
    Ok(vk)
}

/// Decoded public keys, shared between threads: the weak-key check and the
/// point decompression are paid once per author rather than once per
/// signature. (A [`crate::sig::Batch`] still decompresses each distinct key
/// once per batch: ed25519-zebra's batch takes key bytes.) The cache is
/// cleared when it reaches its capacity.
pub struct KeyCache {
    map: std::sync::RwLock<std::collections::HashMap<PublicKey, VerifyingKey>>,
    capacity: usize,
}

impl KeyCache {
    /// A cache holding at most `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        KeyCache {
            map: std::sync::RwLock::new(std::collections::HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The decoded key, as [`verifying_key`] returns it.
    pub fn get(&self, key: &PublicKey) -> Result<VerifyingKey, KeyError> {
        if let Some(k) = self.map.read().unwrap_or_else(|e| e.into_inner()).get(key) {
            return Ok(*k);
        }
        let k = verifying_key(key)?;
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(*key, k);
        Ok(k)
    }
}

/// Renders a key file (one line of JSON and a newline).
pub fn encode_key_file(key: &SigningKey) -> String {
    let file = KeyFile {
        kind: "ed25519".into(),
        public_key: public_key(key),
        secret_key: Bytes(key.to_bytes()),
        v: 1,
    };
    // Infallible: the struct holds only strings and integers.
    let mut text = serde_json::to_string(&file).unwrap_or_default();
    text.push('\n');
    text
}

/// Parses a key file and checks that its halves belong together.
pub fn decode_key_file(text: &str) -> Result<SigningKey, KeyError> {
    let file: KeyFile =
        serde_json::from_str(text.trim_end()).map_err(|e| KeyError::Malformed(e.to_string()))?;
    if file.kind != "ed25519" || file.v != 1 {
        return Err(KeyError::Malformed(format!(
            "unsupported key kind {:?} version {}",
            file.kind, file.v
        )));
    }
    let key = SigningKey::from_bytes(&file.secret_key.0);
    if public_key(&key) != file.public_key {
        return Err(KeyError::Mismatch);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_known_answer() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let text = encode_key_file(&key);
        assert_eq!(
            text,
            "{\"kind\":\"ed25519\",\"public_key\":\"ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c\",\"secret_key\":\"0707070707070707070707070707070707070707070707070707070707070707\",\"v\":1}\n"
        );
        assert_eq!(decode_key_file(&text).unwrap().to_bytes(), key.to_bytes());
    }

    #[test]
    fn weak_keys_are_refused_when_parsed_and_ordinary_keys_are_not() {
        // Small-order points: the identity, a point of order 8 (the key of
        // speccheck cases 0 and 1), a non-canonical encoding of the point of
        // order 2 (cases 10 and 11), and the point of order 4 (y = 0).
        for hex_key in [
            "0100000000000000000000000000000000000000000000000000000000000000",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            let key = PublicKey::parse_hex(hex_key).unwrap();
            assert!(
                matches!(verifying_key(&key), Err(KeyError::InvalidPublicKey)),
                "{hex_key} accepted"
            );
            let cache = KeyCache::new(4);
            assert!(cache.get(&key).is_err());
        }
        let ordinary = public_key(&SigningKey::from_bytes(&[7u8; 32]));
        assert_eq!(verifying_key(&ordinary).unwrap().to_bytes(), ordinary.0);
    }

    #[test]
    fn tampered_key_file_is_refused() {
        let text = encode_key_file(&SigningKey::from_bytes(&[7u8; 32]));
        let bad = text.replace("ea4a", "ea4b");
        assert!(matches!(decode_key_file(&bad), Err(KeyError::Mismatch)));
        assert!(matches!(
            decode_key_file("not json"),
            Err(KeyError::Malformed(_))
        ));
    }
}
