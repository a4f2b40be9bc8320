//! C2SP tlog-cosignature (`cosignature/v1`, Ed25519): a cosigner's
//! statement that, as of a time, the checkpoint is the largest consistent
//! tree head it has observed for the log.
//!
//! A cosignature is a signed-note signature line on the checkpoint:
//! `— <name> base64(key id || u64 timestamp (big-endian) || Ed25519
//! signature)`. The key id is `SHA-256(name || 0x0A || 0x04 || public
//! key)[:4]` and the signed message is `cosignature/v1\ntime <timestamp>\n`
//! followed by the checkpoint's note text. Cosigner keys are written as
//! vkeys of type `0x04`. The Ed25519 signature is checked by the rule of
//! [`crate::sig`] (ZIP-215), like every other signature.

use crate::bytes::Bytes;
use crate::keys;
use crate::note::{
    Note, NoteError, NoteSignature, compute_key_id, parse_vkey, render_vkey, validate_key_name,
};
use crate::sig::VerifyingKey;
use ed25519_dalek::{Signer, SigningKey};

/// Signature type byte of Ed25519 cosignatures.
pub const SIG_TYPE_COSIGNATURE_ED25519: u8 = 0x04;

/// Largest timestamp a cosignature may carry (2^63 − 1).
pub const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// Why a cosignature cannot be made or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum CosignatureError {
    /// The key name or vkey is malformed, or the key id does not match.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The vkey is not of type 0x04.
    #[error("not a cosignature key (type 0x{0:02x}, want 0x04)")]
    KeyType(u8),
    /// The timestamp exceeds 2^63 − 1.
    #[error("timestamp {0} exceeds 2^63 - 1")]
    Timestamp(u64),
    /// The signature line is not key id, timestamp and 64 signature bytes.
    #[error("cosignature by {0} is not a timestamped Ed25519 signature")]
    Malformed(String),
    /// The signature does not verify.
    #[error("cosignature by {0} does not verify")]
    Invalid(String),
    /// Fewer cosigners than required vouch for the checkpoint.
    #[error("{found} of the required {quorum} cosignatures verify")]
    Quorum {
        /// Valid cosignatures from distinct trusted cosigners.
        found: usize,
        /// Cosignatures required.
        quorum: usize,
    },
}

/// The message a cosigner signs for `text` (a checkpoint note's text) at
/// `timestamp`.
pub fn message(text: &str, timestamp: u64) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    m.extend_from_slice(text.as_bytes());
    m
}

/// A cosigner: a name and an Ed25519 key used for cosignatures only.
pub struct Cosigner {
    name: String,
    key_id: u32,
    key: SigningKey,
    verifier: CosignatureVerifier,
}

impl Cosigner {
    /// A cosigner named `name` (a schema-less URL) signing with `key`.
    pub fn new(name: &str, key: SigningKey) -> Result<Self, CosignatureError> {
        let verifier = CosignatureVerifier::new(name, key.verifying_key().as_bytes())?;
        Ok(Cosigner {
            name: name.to_owned(),
            key_id: verifier.key_id,
            key,
            verifier,
        })
    }

    /// Its verifier.
    pub fn verifier(&self) -> CosignatureVerifier {
        self.verifier.clone()
    }

    /// The cosignature of `note`'s text at `timestamp` (POSIX seconds).
    pub fn cosign(&self, note: &Note, timestamp: u64) -> Result<NoteSignature, CosignatureError> {
        if timestamp > MAX_TIMESTAMP {
            return Err(CosignatureError::Timestamp(timestamp));
        }
        let signature = self.key.sign(&message(&note.text, timestamp));
        let mut sig = timestamp.to_be_bytes().to_vec();
        sig.extend_from_slice(&signature.to_bytes());
        Ok(NoteSignature {
            name: self.name.clone(),
            key_id: self.key_id,
            sig,
        })
    }
}

/// A trusted cosigner's name and public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignatureVerifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl CosignatureVerifier {
    /// Parses a vkey `name+hex8(key id)+base64(0x04 || public key)`,
    /// checking the key id.
    pub fn parse(vkey: &str) -> Result<Self, CosignatureError> {
        let (name, public) =
            parse_vkey(vkey, SIG_TYPE_COSIGNATURE_ED25519).map_err(|e| match e {
                NoteError::UnsupportedKeyType(t) => CosignatureError::KeyType(t),
                other => other.into(),
            })?;
        Self::new(&name, &public)
    }

    /// A verifier for the cosigner `name` with public key `public`,
    /// refusing weak keys as [`keys::verifying_key`] does.
    fn new(name: &str, public: &[u8; 32]) -> Result<Self, CosignatureError> {
        validate_key_name(name)?;
        let key = keys::verifying_key(&Bytes(*public)).map_err(|_| NoteError::InvalidPublicKey)?;
        Ok(CosignatureVerifier {
            name: name.to_owned(),
            key_id: compute_key_id(name, SIG_TYPE_COSIGNATURE_ED25519, public),
            key,
        })
    }

    /// The cosigner's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renders the vkey.
    pub fn to_vkey(&self) -> String {
        render_vkey(
            &self.name,
            self.key_id,
            SIG_TYPE_COSIGNATURE_ED25519,
            &self.key.to_bytes(),
        )
    }

    /// The timestamp of this cosigner's valid cosignature on `note`, `None`
    /// if the note carries none from it. A line that names this cosigner but
    /// does not verify is an error, not an absence.
    pub fn verify(&self, note: &Note) -> Result<Option<u64>, CosignatureError> {
        let mut found = None;
        for sig in note
            .sigs
            .iter()
            .filter(|s| s.name == self.name && s.key_id == self.key_id)
        {
            let malformed = || CosignatureError::Malformed(self.name.clone());
            let (ts, signature) = sig.sig.split_first_chunk::<8>().ok_or_else(malformed)?;
            let timestamp = u64::from_be_bytes(*ts);
            if timestamp > MAX_TIMESTAMP {
                return Err(malformed());
            }
            let signature = <&[u8; 64]>::try_from(signature).map_err(|_| malformed())?;
            self.key
                .verify(&message(&note.text, timestamp), signature)
                .map_err(|_| CosignatureError::Invalid(self.name.clone()))?;
            found = Some(found.map_or(timestamp, |t: u64| t.max(timestamp)));
        }
        Ok(found)
    }
}

/// Checks that at least `quorum` of the trusted `cosigners` validly cosigned
/// `note`; returns each of them with its timestamp. A forged line from a
/// trusted cosigner fails the whole check.
pub fn verify_quorum<'a>(
    note: &Note,
    cosigners: &'a [CosignatureVerifier],
    quorum: usize,
) -> Result<Vec<(&'a CosignatureVerifier, u64)>, CosignatureError> {
    let mut ok = Vec::new();
    for c in cosigners {
        if ok
            .iter()
            .any(|(v, _): &(&CosignatureVerifier, u64)| v.key == c.key)
        {
            continue;
        }
        if let Some(ts) = c.verify(note)? {
            ok.push((c, ts));
        }
    }
    if ok.len() < quorum {
        return Err(CosignatureError::Quorum {
            found: ok.len(),
            quorum,
        });
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "medledger.example/log\n3\nlPvQ3YNvUDAWkubQ6t5yjuGexSv/8WBu2AfIV11aqhk=\n";
    /// Computed independently with Python's `cryptography` and hashlib for
    /// the key of seed 0x00..0x1f, name `witness.example/w1`, time 1795478400.
    const KAT_VKEY: &str =
        "witness.example/w1+e75f6532+BAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4";
    const KAT_LINE: &str = "\u{2014} witness.example/w1 519lMgAAAABrBNOAMi/txefGv09TDSwAtP/dZDyBm+fiBAOD2wEH9UyqxJAaIRW+DUnE4u39ZNFvXOIUMQTDumpj5etuq7cJUtQiAQ==\n";
    const KAT_TIME: u64 = 1_795_478_400;

    fn seed_key(first: u8) -> SigningKey {
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = first.wrapping_add(i as u8);
        }
        SigningKey::from_bytes(&seed)
    }

    fn cosigned(lines: &[String]) -> Note {
        Note::parse(&format!("{TEXT}\n{}", lines.concat())).unwrap()
    }

    #[test]
    fn known_answer() {
        let w = Cosigner::new("witness.example/w1", seed_key(0)).unwrap();
        assert_eq!(w.verifier().to_vkey(), KAT_VKEY);
        let note = Note {
            text: TEXT.into(),
            sigs: Vec::new(),
        };
        assert_eq!(w.cosign(&note, KAT_TIME).unwrap().to_line(), KAT_LINE);
        let v = CosignatureVerifier::parse(KAT_VKEY).unwrap();
        assert_eq!(v, w.verifier());
        assert_eq!(
            v.verify(&cosigned(&[KAT_LINE.into()])).unwrap(),
            Some(KAT_TIME)
        );
    }

    #[test]
    fn the_spec_example_parses_and_is_ignored_by_unknown_keys() {
        let example = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";
        let note = Note::parse(example).unwrap();
        let (ts, _) = note.sigs[1].sig.split_first_chunk::<8>().unwrap();
        assert_eq!(u64::from_be_bytes(*ts), 1_679_315_147);
        let other = CosignatureVerifier::parse(KAT_VKEY).unwrap();
        assert_eq!(other.verify(&note).unwrap(), None);
    }

    #[test]
    fn quorum_counts_distinct_valid_cosigners_and_forgeries_fail() {
        let ws: Vec<Cosigner> = (0..3)
            .map(|i| Cosigner::new(&format!("node{i}.example/w"), seed_key(40 * i)).unwrap())
            .collect();
        let vs: Vec<CosignatureVerifier> = ws.iter().map(Cosigner::verifier).collect();
        let note = Note {
            text: TEXT.into(),
            sigs: Vec::new(),
        };
        let line = |w: &Cosigner, t| w.cosign(&note, t).unwrap().to_line();
        let two = cosigned(&[line(&ws[0], 10), line(&ws[2], 20)]);
        let ok = verify_quorum(&two, &vs, 2).unwrap();
        assert_eq!(
            ok.iter().map(|(v, t)| (v.name(), *t)).collect::<Vec<_>>(),
            [("node0.example/w", 10), ("node2.example/w", 20)]
        );
        assert!(matches!(
            verify_quorum(&two, &vs, 3),
            Err(CosignatureError::Quorum {
                found: 2,
                quorum: 3
            })
        ));
        // The same cosigner twice counts once.
        let twice = cosigned(&[line(&ws[0], 10), line(&ws[0], 11)]);
        assert!(verify_quorum(&twice, &vs, 2).is_err());
        // A cosignature over another checkpoint, moved onto this one, fails.
        let other = Note {
            text: "medledger.example/log\n4\nlPvQ3YNvUDAWkubQ6t5yjuGexSv/8WBu2AfIV11aqhk=\n".into(),
            sigs: Vec::new(),
        };
        let moved = cosigned(&[ws[1].cosign(&other, 5).unwrap().to_line()]);
        assert!(matches!(
            verify_quorum(&moved, &vs, 1),
            Err(CosignatureError::Invalid(name)) if name == "node1.example/w"
        ));
        // So does a changed timestamp.
        let mut bumped = cosigned(&[line(&ws[1], 5)]);
        bumped.sigs[0].sig[7] ^= 1;
        assert!(matches!(
            vs[1].verify(&bumped),
            Err(CosignatureError::Invalid(_))
        ));
    }

    #[test]
    fn keys_of_other_types_and_bad_ids_are_refused() {
        let log_vkey = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
        assert!(matches!(
            CosignatureVerifier::parse(log_vkey),
            Err(CosignatureError::KeyType(0x01))
        ));
        let bad_id = KAT_VKEY.replace("e75f6532", "e75f6533");
        assert!(CosignatureVerifier::parse(&bad_id).is_err());
        let w = Cosigner::new("witness.example/w1", seed_key(0)).unwrap();
        let note = Note {
            text: TEXT.into(),
            sigs: Vec::new(),
        };
        assert!(matches!(
            w.cosign(&note, MAX_TIMESTAMP + 1),
            Err(CosignatureError::Timestamp(t)) if t == MAX_TIMESTAMP + 1
        ));
        assert!(Cosigner::new("has space", seed_key(0)).is_err());
    }
}
