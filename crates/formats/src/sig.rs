//! The signature rule: the one definition of a valid Ed25519 signature,
//! used for every signature medledger checks (transaction authors, block
//! proposers, C2SP notes, checkpoints and cosignatures), alone or in a batch.
//!
//! The rule is ZIP-215 (<https://zips.z.cash/zip-0215>). For a public key
//! `A_bytes`, a signature `R_bytes || S_bytes` and a message `M`:
//!
//! - `A_bytes` and `R_bytes` must each decode to a point of the curve;
//!   non-canonical encodings are accepted;
//! - `S_bytes` must be a canonical scalar, `S < L`;
//! - `k = SHA-512(R_bytes || A_bytes || M) mod L`, over the bytes as given;
//! - the cofactored equation `[8][S]B = [8]R + [8][k]A` must hold.
//!
//! A batch checks one random linear combination of the same cofactored
//! equations, so it accepts exactly when every signature in it is accepted
//! alone. RFC 8032's cofactorless equation has no batch form with that
//! property (a torsion component makes its batch verdict random), which is
//! why the rule is ZIP-215 rather than `verify_strict`.
//!
//! Refusing weak (small-order) public keys is a separate rule about keys,
//! applied where keys are parsed or registered ([`crate::keys::verifying_key`],
//! [`crate::note::NoteVerifier`]); [`VerifyingKey::is_weak`] tells them apart.

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_zebra::batch;
use ed25519_zebra::{Signature, VerificationKey, VerificationKeyBytes};

/// Why a key or a signature was refused by the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The 32 bytes do not encode a point of the curve.
    #[error("not an Ed25519 public key: the bytes encode no curve point")]
    InvalidKey,
    /// The signature does not satisfy the rule.
    #[error("Ed25519 signature does not verify")]
    Invalid,
}

/// A decoded Ed25519 public key, ready to check signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyingKey(VerificationKey);

impl VerifyingKey {
    /// Decodes any encoding of a curve point, canonical or not, as ZIP-215
    /// does. Says nothing of the point's order: see [`Self::is_weak`].
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, SignatureError> {
        VerificationKey::try_from(*bytes)
            .map(VerifyingKey)
            .map_err(|_| SignatureError::InvalidKey)
    }

    /// The 32 bytes the key was decoded from.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.into()
    }

    /// Whether the point has small order (divides 8). Any signature with
    /// such a key passes for any message once `S` and `R` are chosen to
    /// fit, so a signature by it proves nothing.
    pub fn is_weak(&self) -> bool {
        CompressedEdwardsY(self.to_bytes())
            .decompress()
            .is_none_or(|p| p.is_small_order())
    }

    /// Checks one signature under the rule.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> Result<(), SignatureError> {
        self.0
            .verify(&Signature::from_bytes(signature), message)
            .map_err(|_| SignatureError::Invalid)
    }
}

/// Signatures checked together: cheaper than one by one, with the same
/// verdict as checking each alone (all valid or not).
#[derive(Default)]
pub struct Batch {
    inner: batch::Verifier,
    len: usize,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `signature` by `key` over `message`. The message is hashed now
    /// and not kept.
    pub fn queue(&mut self, key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) {
        let key = VerificationKeyBytes::from(key.to_bytes());
        self.inner
            .queue((key, Signature::from_bytes(signature), message));
        self.len += 1;
    }

    /// Number of queued signatures.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `Ok` exactly when every queued signature is valid under the rule.
    /// The coefficients of the combined equation come from the thread's
    /// CSPRNG (seeded from the OS), so a signer cannot predict them.
    pub fn verify(self) -> Result<(), SignatureError> {
        self.inner
            .verify(rand::rng())
            .map_err(|_| SignatureError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::scalar::Scalar;
    use ed25519_dalek::{Signer, SigningKey};
    use sha2::{Digest, Sha512};

    /// One case of the "Taming the many EdDSAs" vectors.
    struct Case {
        msg: Vec<u8>,
        pbk: [u8; 32],
        sig: [u8; 64],
    }

    /// Reads `shared/testdata/ed25519-speccheck/cases.txt`: a count, then
    /// `msg=`, `pbk=`, `sig=` lines in hex for each case.
    fn speccheck_cases() -> Vec<Case> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/testdata/ed25519-speccheck/cases.txt"
        );
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read speccheck vectors {path}: {e}"));
        let mut lines = text.lines();
        let count: usize = lines.next().expect("count line").parse().expect("count");
        let field = |line: Option<&str>, name: &str| -> Vec<u8> {
            let line = line.unwrap_or_else(|| panic!("missing {name} line"));
            let hex_text = line
                .strip_prefix(name)
                .and_then(|l| l.strip_prefix('='))
                .unwrap_or_else(|| panic!("expected {name}=, found {line:?}"));
            hex::decode(hex_text).expect("hex")
        };
        let cases: Vec<Case> = (0..count)
            .map(|_| Case {
                msg: field(lines.next(), "msg"),
                pbk: field(lines.next(), "pbk").try_into().expect("32-byte key"),
                sig: field(lines.next(), "sig")
                    .try_into()
                    .expect("64-byte signature"),
            })
            .collect();
        assert!(lines.next().is_none(), "trailing lines in {path}");
        cases
    }

    /// The ZIP-215 verdict for each speccheck case, in file order.
    ///
    /// Source: the "Zebra" row of the results table in the README of
    /// novifinancial/ed25519-speccheck (the project that published these
    /// vectors with the paper "Taming the many EdDSAs"); ed25519-zebra is
    /// ZIP-215's reference implementation. Each verdict also follows from
    /// the README's description of the case and the rule in this module:
    ///
    /// | # | case (README)                                   | verdict | why                                   |
    /// |---|-------------------------------------------------|---------|---------------------------------------|
    /// | 0 | S = 0, small A, small R                         | valid   | cofactored equation holds             |
    /// | 1 | 0 < S < L, small A, mixed R                     | valid   | cofactored equation holds             |
    /// | 2 | 0 < S < L, mixed A, small R                     | valid   | cofactored equation holds             |
    /// | 3 | 0 < S < L, mixed A, mixed R                     | valid   | both equations hold                   |
    /// | 4 | 0 < S < L, mixed A, mixed R, cofactored only    | valid   | only the cofactored equation holds    |
    /// | 5 | as 4, fails only if 8·k is reduced mod L first  | valid   | ZIP-215 computes [8][k]A, unreduced   |
    /// | 6 | S > L                                           | invalid | S must be canonical                   |
    /// | 7 | S >> L                                          | invalid | S must be canonical                   |
    /// | 8 | non-canonical R, hashed after re-encoding       | invalid | k is over R as given, so it differs   |
    /// | 9 | non-canonical R, hashed as given                | valid   | non-canonical R is accepted           |
    /// |10 | non-canonical small A, hashed after re-encoding | valid   | [8][k]A = 0 whatever k is             |
    /// |11 | non-canonical small A, hashed as given          | valid   | non-canonical A is accepted           |
    const ZIP215_VERDICTS: [bool; 12] = [
        true, true, true, true, true, true, false, false, false, true, true, true,
    ];

    /// Ordinary signatures by distinct keys, to mix with an edge case.
    fn ordinary(n: u8) -> Vec<(VerifyingKey, Vec<u8>, [u8; 64])> {
        (0..n)
            .map(|i| {
                let key = SigningKey::from_bytes(&[i.wrapping_add(40); 32]);
                let msg = vec![i; 1 + usize::from(i)];
                let sig = key.sign(&msg).to_bytes();
                let vk = VerifyingKey::from_bytes(key.verifying_key().as_bytes()).unwrap();
                (vk, msg, sig)
            })
            .collect()
    }

    #[test]
    fn speccheck_single_verdicts_are_zip215() {
        let cases = speccheck_cases();
        assert_eq!(cases.len(), ZIP215_VERDICTS.len());
        for (i, (c, &want)) in cases.iter().zip(&ZIP215_VERDICTS).enumerate() {
            let key = VerifyingKey::from_bytes(&c.pbk).expect("every case's key is a curve point");
            assert_eq!(
                key.verify(&c.msg, &c.sig).is_ok(),
                want,
                "speccheck case {i}"
            );
        }
    }

    #[test]
    fn speccheck_batch_verdict_equals_single_verdict_every_time() {
        let cases = speccheck_cases();
        let others = ordinary(7);
        for (i, (c, &want)) in cases.iter().zip(&ZIP215_VERDICTS).enumerate() {
            let key = VerifyingKey::from_bytes(&c.pbk).unwrap();
            // 200 runs: a verdict that depended on the batch's random
            // coefficients (as a cofactorless batch's does for cases 1-5)
            // would differ in some of them.
            for round in 0..200usize {
                let mut batch = Batch::new();
                let at = round % (others.len() + 1);
                for (j, (k, m, s)) in others.iter().enumerate() {
                    if j == at {
                        batch.queue(&key, &c.msg, &c.sig);
                    }
                    batch.queue(k, m, s);
                }
                if at == others.len() {
                    batch.queue(&key, &c.msg, &c.sig);
                }
                assert_eq!(batch.len(), others.len() + 1);
                assert_eq!(
                    batch.verify().is_ok(),
                    want,
                    "speccheck case {i} in a batch, round {round}"
                );
            }
            // The edge case twice, and alone.
            let mut batch = Batch::new();
            batch.queue(&key, &c.msg, &c.sig);
            batch.queue(&key, &c.msg, &c.sig);
            assert_eq!(batch.verify().is_ok(), want, "speccheck case {i} twice");
        }
    }

    #[test]
    fn batch_of_ordinary_signatures_verifies_and_one_flipped_bit_fails_it() {
        let mut sigs = ordinary(9);
        let mut batch = Batch::new();
        for (k, m, s) in &sigs {
            batch.queue(k, m, s);
        }
        assert!(batch.verify().is_ok());
        assert!(Batch::new().verify().is_ok(), "an empty batch holds");
        sigs[4].2[3] ^= 1;
        let mut batch = Batch::new();
        for (k, m, s) in &sigs {
            batch.queue(k, m, s);
        }
        assert_eq!(batch.verify(), Err(SignatureError::Invalid));
    }

    #[test]
    fn small_order_keys_are_weak_and_others_are_not() {
        let cases = speccheck_cases();
        // Cases 0, 1, 10 and 11 have a small-order A (README table).
        for (i, c) in cases.iter().enumerate() {
            let key = VerifyingKey::from_bytes(&c.pbk).unwrap();
            assert_eq!(key.is_weak(), matches!(i, 0 | 1 | 10 | 11), "case {i}");
        }
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(VerifyingKey::from_bytes(&identity).unwrap().is_weak());
        let ordinary = SigningKey::from_bytes(&[1; 32]).verifying_key();
        assert!(
            !VerifyingKey::from_bytes(ordinary.as_bytes())
                .unwrap()
                .is_weak()
        );
    }

    #[test]
    fn bytes_off_the_curve_are_not_a_key() {
        // y = 2 gives x^2 = 3 / (4d + 1), which is not a square mod p.
        let mut y2 = [0u8; 32];
        y2[0] = 2;
        assert_eq!(
            VerifyingKey::from_bytes(&y2),
            Err(SignatureError::InvalidKey)
        );
    }

    /// The reported defect: R is the identity point and S = k·a, so
    /// `[S]B = R + [k]A` holds exactly. `verify_strict` refused it (small
    /// R) while the cofactorless batch accepted it; under ZIP-215 it is a
    /// valid signature, alone and in any batch. (It also reveals the
    /// author's secret scalar, a = S/k: only its author can make it.)
    #[test]
    fn identity_r_signature_gets_one_verdict_alone_and_in_batches() {
        let key = SigningKey::from_bytes(&[77; 32]);
        let a = key.to_scalar();
        let public = key.verifying_key().to_bytes();
        let message = b"identity R";
        let mut r = [0u8; 32];
        r[0] = 1;
        let k = Scalar::from_hash(
            Sha512::new()
                .chain_update(r)
                .chain_update(public)
                .chain_update(message),
        );
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r);
        sig[32..].copy_from_slice((k * a).as_bytes());
        assert!(
            key.verifying_key()
                .verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig))
                .is_err(),
            "the strict rule the ledger used to apply refuses it"
        );
        let vk = VerifyingKey::from_bytes(&public).unwrap();
        assert_eq!(vk.verify(message, &sig), Ok(()));
        let others = ordinary(3);
        for _ in 0..100 {
            let mut batch = Batch::new();
            for (k, m, s) in &others {
                batch.queue(k, m, s);
            }
            batch.queue(&vk, message, &sig);
            assert_eq!(batch.verify(), Ok(()));
        }
    }
}
