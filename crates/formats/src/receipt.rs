//! C2SP transparency log proofs (<https://c2sp.org/tlog-proof>, v1): an
//! offline-verifiable receipt that a leaf is in a log, made of an optional
//! unauthenticated `extra` blob, the leaf index, an RFC 6962 inclusion proof
//! and the log's signed checkpoint (with any witness cosignatures).
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64>            (optional)
//! index <decimal>
//! <base64 hash>             (zero or more)
//!
//! <checkpoint note, verbatim>
//! ```
//!
//! Parsing is strict and canonical: `TlogProof::parse(s)?.render() == s`.

use crate::checkpoint::{Checkpoint, CheckpointError, decode_hash, parse_decimal_u64};
use crate::merkle::{self, ProofError};
use crate::note::{MAX_NOTE_SIZE, Note, NoteVerifier};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// First line of every v1 proof.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// Maximum number of inclusion proof hashes: a tree of at most 2^64 leaves
/// is at most 64 levels deep.
pub const MAX_PROOF_HASHES: usize = 64;

/// Maximum size in bytes of a rendered proof: the largest checkpoint note we
/// accept plus generous room for the header, index, hashes and extra data.
pub const MAX_TLOG_PROOF_SIZE: usize = 2 * MAX_NOTE_SIZE;

/// Errors from parsing or verifying a tlog proof.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    /// The input exceeds [`MAX_TLOG_PROOF_SIZE`].
    #[error("tlog proof is {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Size of the input in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A line before the checkpoint is malformed.
    #[error("malformed tlog proof, line {line}: {what} {reason}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// Which part is wrong (e.g. "index").
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The embedded checkpoint is malformed, not trusted or for another log.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The leaf index is not inside the checkpointed tree.
    #[error("leaf index {index} is out of range for tree size {size}")]
    IndexOutOfRange {
        /// The proof's leaf index.
        index: u64,
        /// The checkpoint's tree size.
        size: u64,
    },
    /// The inclusion proof does not bind the leaf to the checkpoint's root.
    #[error(transparent)]
    Proof(#[from] ProofError),
}

/// A parsed `c2sp.org/tlog-proof@v1` receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// Optional opaque extra data. Not authenticated: never trust it
    /// without checking it against the verified leaf.
    pub extra: Option<Vec<u8>>,
    /// Zero-based index of the leaf in the log.
    pub index: u64,
    /// RFC 6962 inclusion proof, from the leaf's sibling up to the root's child.
    pub proof: Vec<[u8; 32]>,
    /// The log's signed checkpoint, including any cosignatures.
    pub checkpoint: Note,
}

/// Splits off the next newline-terminated line of `rest`, or `None` if no
/// newline is left.
fn next_line<'a>(rest: &mut &'a str) -> Option<&'a str> {
    let (line, tail) = rest.split_once('\n')?;
    *rest = tail;
    Some(line)
}

impl TlogProof {
    /// Renders the proof text. Does not validate; for values from
    /// [`TlogProof::parse`] the result is the parsed input.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(TLOG_PROOF_HEADER);
        out.push('\n');
        if let Some(extra) = &self.extra {
            out.push_str("extra ");
            out.push_str(&BASE64.encode(extra));
            out.push('\n');
        }
        out.push_str(&format!("index {}\n", self.index));
        for hash in &self.proof {
            out.push_str(&BASE64.encode(hash));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint.render());
        out
    }

    /// Parses a proof strictly: the exact header line, an optional
    /// `extra <base64>` line, `index N` (decimal, no leading zeros), up to
    /// [`MAX_PROOF_HASHES`] lines of 32-byte canonical base64, an empty line,
    /// and a signed note whose text is a well-formed checkpoint.
    ///
    /// Nothing is verified here; see [`TlogProof::verify`].
    pub fn parse(s: &str) -> Result<Self, ReceiptError> {
        if s.len() > MAX_TLOG_PROOF_SIZE {
            return Err(ReceiptError::TooLarge {
                len: s.len(),
                max: MAX_TLOG_PROOF_SIZE,
            });
        }
        let malformed = |line, what, reason| ReceiptError::Malformed { line, what, reason };
        let mut rest = s;
        let mut line_no = 1;

        let header = next_line(&mut rest).ok_or(malformed(
            line_no,
            "header",
            "is missing or not newline-terminated",
        ))?;
        if header != TLOG_PROOF_HEADER {
            return Err(malformed(
                line_no,
                "header",
                "is not c2sp.org/tlog-proof@v1",
            ));
        }

        line_no += 1;
        let mut line =
            next_line(&mut rest).ok_or(malformed(line_no, "index line", "is missing"))?;
        let mut extra = None;
        if let Some(b64) = line.strip_prefix("extra ") {
            // The empty string is the valid encoding of empty extra data;
            // it stays distinct from an absent line so rendering round-trips.
            let data = BASE64
                .decode(b64)
                .map_err(|_| malformed(line_no, "extra data", "is not canonical base64"))?;
            extra = Some(data);
            line_no += 1;
            line = next_line(&mut rest).ok_or(malformed(line_no, "index line", "is missing"))?;
        }

        let digits = line.strip_prefix("index ").ok_or(malformed(
            line_no,
            "index line",
            "does not start with \"index \"",
        ))?;
        let index = parse_decimal_u64(digits).map_err(|r| malformed(line_no, "index", r))?;

        let mut proof = Vec::new();
        loop {
            line_no += 1;
            let line = next_line(&mut rest).ok_or(malformed(
                line_no,
                "proof",
                "has no empty line before the checkpoint",
            ))?;
            if line.is_empty() {
                break;
            }
            if proof.len() >= MAX_PROOF_HASHES {
                return Err(malformed(line_no, "proof", "has more than 64 hashes"));
            }
            proof.push(decode_hash(line).map_err(|r| malformed(line_no, "proof hash", r))?);
        }

        // The rest is the checkpoint note verbatim. Check its text is a
        // checkpoint now, so a receipt that parses is structurally complete.
        let checkpoint = Note::parse(rest).map_err(CheckpointError::from)?;
        Checkpoint::from_text(&checkpoint.text)?;
        Ok(Self {
            extra,
            index,
            proof,
            checkpoint,
        })
    }

    /// Verifies the receipt offline and returns the verified checkpoint:
    ///
    /// 1. the checkpoint is signed by a trusted log key named after its
    ///    origin and, if `origin` is given, is for that origin (see
    ///    [`Checkpoint::verify_note`]);
    /// 2. `index` is below the tree size;
    /// 3. the inclusion proof binds `leaf` at `index` to the root.
    ///
    /// `leaf` is the RFC 6962 leaf hash (for example
    /// [`merkle::leaf_hash`] of the entry); computing it from the entry and
    /// `extra` is the caller's job. Witness cosignatures are not checked
    /// here.
    pub fn verify(
        &self,
        leaf: &[u8; 32],
        origin: Option<&str>,
        verifiers: &[NoteVerifier],
    ) -> Result<Checkpoint, ReceiptError> {
        let checkpoint = Checkpoint::verify_note(&self.checkpoint, origin, verifiers)?;
        if self.index >= checkpoint.size {
            return Err(ReceiptError::IndexOutOfRange {
                index: self.index,
                size: checkpoint.size,
            });
        }
        merkle::verify_inclusion(
            leaf,
            self.index,
            checkpoint.size,
            &self.proof,
            &checkpoint.root,
        )?;
        Ok(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::{NoteError, NoteSigner};
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;
    use sha2::{Digest as _, Sha256};

    const ORIGIN: &str = "medledger.example/log";

    /// Receipt for leaf "entry 1" in the 3-leaf tree of "entry 0".."entry 2",
    /// extra "medledger", checkpoint signed with the key of seed 0x00..0x1f.
    /// Tree hashes and signature computed independently with Python hashlib
    /// and `cryptography`.
    const KAT_RECEIPT: &str = "c2sp.org/tlog-proof@v1\nextra bWVkbGVkZ2Vy\nindex 1\ndziFphNIniTOLPdhmdakI/BC5LvxLX7s7pEu8nbGVwE=\nV8efTzGuApxdS9MLBzwnyU35NDiytGl+Hh7vW8A5SkE=\n\nmedledger.example/log\n3\nlPvQ3YNvUDAWkubQ6t5yjuGexSv/8WBu2AfIV11aqhk=\n\n\u{2014} medledger.example/log SKCwguYBhvjhHmBVC3aCq5OjWasR8BDkr1fal29beQpP80bBBlwm7zAsBEMnQ45YuBeQ/HOOnaZjI1NmVmwAloItmw8=\n";

    /// The example of c2sp.org/tlog-proof. Its signatures are elided with
    /// "[...]", so it cannot parse as a whole.
    const SPEC_EXAMPLE: &str = "c2sp.org/tlog-proof@v1\nextra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ\nindex 73894\ngSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=\nB95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=\nEKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=\nRoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=\nAHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=\n\nexample.com/fancylog\n109482\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n\n\u{2014} example.com/fancylog hI2DJw[...]1roloI=\n\u{2014} witness1.example mJirIklj[...]qY9v2B/5bg==\n\u{2014} witness2.example TnKKVHLX[...]xwYwrSjgow==\n\u{2014} witness3.example S4X82uH5[...]3oEcROGLFQ==\n";

    fn log_signer() -> NoteSigner {
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = i as u8;
        }
        NoteSigner::new(ORIGIN, SigningKey::from_bytes(&seed)).unwrap()
    }

    /// Independent test-only RFC 6962 tree: MTH and PATH of section 2.1.
    fn node(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update([1u8]);
        h.update(l);
        h.update(r);
        h.finalize().into()
    }

    fn split(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
        match leaves.len() {
            0 => Sha256::digest([]).into(),
            1 => leaves[0],
            n => {
                let k = split(n);
                node(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn path(m: usize, leaves: &[[u8; 32]]) -> Vec<[u8; 32]> {
        let n = leaves.len();
        if n <= 1 {
            return vec![];
        }
        let k = split(n);
        if m < k {
            let mut p = path(m, &leaves[..k]);
            p.push(mth(&leaves[k..]));
            p
        } else {
            let mut p = path(m - k, &leaves[k..]);
            p.push(mth(&leaves[..k]));
            p
        }
    }

    fn leaves(n: usize) -> Vec<[u8; 32]> {
        (0..n)
            .map(|i| merkle::leaf_hash(format!("entry {i}").as_bytes()))
            .collect()
    }

    fn receipt(leaves: &[[u8; 32]], index: usize, extra: Option<Vec<u8>>) -> TlogProof {
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            size: leaves.len() as u64,
            root: mth(leaves),
            extensions: vec![],
        };
        TlogProof {
            extra,
            index: index as u64,
            proof: path(index, leaves),
            checkpoint: cp.sign(&log_signer()).unwrap(),
        }
    }

    fn malformed_at(s: &str) -> (usize, &'static str, &'static str) {
        match TlogProof::parse(s) {
            Err(ReceiptError::Malformed { line, what, reason }) => (line, what, reason),
            other => panic!("{s:?} gave {other:?}"),
        }
    }

    #[test]
    fn known_answer() {
        let built = receipt(&leaves(3), 1, Some(b"medledger".to_vec()));
        assert_eq!(built.render(), KAT_RECEIPT);
        let parsed = TlogProof::parse(KAT_RECEIPT).unwrap();
        assert_eq!(parsed, built);
        let cp = parsed
            .verify(
                &merkle::leaf_hash(b"entry 1"),
                Some(ORIGIN),
                &[log_signer().verifier()],
            )
            .unwrap();
        assert_eq!(cp.size, 3);
    }

    #[test]
    fn all_small_trees_verify() {
        let trusted = [log_signer().verifier()];
        for n in 1..=10 {
            let ls = leaves(n);
            for i in 0..n {
                let r = receipt(&ls, i, None);
                let parsed = TlogProof::parse(&r.render()).unwrap();
                assert_eq!(parsed, r);
                let cp = parsed.verify(&ls[i], Some(ORIGIN), &trusted).unwrap();
                assert_eq!((cp.size, cp.root), (n as u64, mth(&ls)));
                // The wrong leaf, or the right leaf at another index, fails.
                let wrong = merkle::leaf_hash(b"not in the log");
                assert!(matches!(
                    parsed.verify(&wrong, None, &trusted),
                    Err(ReceiptError::Proof(_))
                ));
                if n > 1 {
                    let other = ls[(i + 1) % n];
                    assert!(matches!(
                        parsed.verify(&other, None, &trusted),
                        Err(ReceiptError::Proof(_))
                    ));
                }
            }
        }
    }

    #[test]
    fn verification_failures() {
        let ls = leaves(5);
        let trusted = [log_signer().verifier()];
        let r = receipt(&ls, 2, None);
        assert!(matches!(
            r.verify(&ls[2], Some("other.example/log"), &trusted),
            Err(ReceiptError::Checkpoint(
                CheckpointError::WrongOrigin { .. }
            ))
        ));
        let stranger = NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[9; 32])).unwrap();
        assert!(matches!(
            r.verify(&ls[2], Some(ORIGIN), &[stranger.verifier()]),
            Err(ReceiptError::Checkpoint(CheckpointError::Note(
                NoteError::NoKnownSignature
            )))
        ));
        let mut out_of_range = r.clone();
        out_of_range.index = 5;
        assert!(matches!(
            out_of_range.verify(&ls[2], None, &trusted),
            Err(ReceiptError::IndexOutOfRange { index: 5, size: 5 })
        ));
        out_of_range.index = u64::MAX;
        assert!(matches!(
            out_of_range.verify(&ls[2], None, &trusted),
            Err(ReceiptError::IndexOutOfRange { .. })
        ));
        for (i, bit) in [(0, 0), (1, 7), (2, 3)] {
            let mut bad = r.clone();
            bad.proof[i][bit] ^= 1;
            assert!(matches!(
                bad.verify(&ls[2], None, &trusted),
                Err(ReceiptError::Proof(_))
            ));
        }
        let mut short = r.clone();
        short.proof.pop();
        assert!(matches!(
            short.verify(&ls[2], None, &trusted),
            Err(ReceiptError::Proof(_))
        ));
        let mut long = r.clone();
        long.proof.push([0; 32]);
        assert!(matches!(
            long.verify(&ls[2], None, &trusted),
            Err(ReceiptError::Proof(_))
        ));
        // A tampered checkpoint fails on its signature before any proof math.
        let tampered =
            r.render()
                .replacen(&format!("\n{ORIGIN}\n5\n"), &format!("\n{ORIGIN}\n4\n"), 1);
        let parsed = TlogProof::parse(&tampered).unwrap();
        assert!(matches!(
            parsed.verify(&ls[2], None, &trusted),
            Err(ReceiptError::Checkpoint(CheckpointError::Note(
                NoteError::SignatureInvalid { .. }
            )))
        ));
    }

    #[test]
    fn spec_example_header_parses() {
        // The elided signatures make the embedded note invalid: a clean error.
        assert!(matches!(
            TlogProof::parse(SPEC_EXAMPLE),
            Err(ReceiptError::Checkpoint(CheckpointError::Note(
                NoteError::MalformedSignatureLine { line: 5, .. }
            )))
        ));
        // With a real checkpoint in its place, the spec's lines parse exactly.
        let head = SPEC_EXAMPLE.split("\n\n").next().unwrap();
        let kat_checkpoint = KAT_RECEIPT.split_once("\n\n").unwrap().1;
        let text = format!("{head}\n\n{kat_checkpoint}");
        let parsed = TlogProof::parse(&text).unwrap();
        let extra = parsed.extra.as_deref().unwrap();
        assert!(extra.starts_with(b"age-v1.2.1-darwin-arm64.tar.gz"));
        assert_eq!(parsed.index, 73894);
        assert_eq!(parsed.proof.len(), 5);
        assert_eq!(
            BASE64.encode(parsed.proof[4]),
            "AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk="
        );
        assert_eq!(parsed.render(), text);
        assert!(matches!(
            parsed.verify(&[0; 32], Some(ORIGIN), &[log_signer().verifier()]),
            Err(ReceiptError::IndexOutOfRange {
                index: 73894,
                size: 3
            })
        ));
    }

    #[test]
    fn optional_and_empty_fields_round_trip() {
        let ls = leaves(1);
        // A single-leaf tree has an empty proof; no extra line at all.
        let r = receipt(&ls, 0, None);
        let text = r.render();
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nindex 0\n\nmedledger.example/log\n1\n"));
        assert_eq!(TlogProof::parse(&text).unwrap(), r);
        // Empty extra data is "extra " and stays distinct from no extra.
        let r = receipt(&ls, 0, Some(vec![]));
        assert!(
            r.render()
                .starts_with("c2sp.org/tlog-proof@v1\nextra \nindex 0\n")
        );
        assert_eq!(TlogProof::parse(&r.render()).unwrap(), r);
    }

    #[test]
    fn malformed_receipts_rejected() {
        let (head, cp) = KAT_RECEIPT.split_once("\n\n").unwrap();
        let with_head = |h: &str| format!("{h}\n\n{cp}");
        let h0 = "dziFphNIniTOLPdhmdakI/BC5LvxLX7s7pEu8nbGVwE=";
        assert_eq!(
            malformed_at(""),
            (1, "header", "is missing or not newline-terminated")
        );
        assert_eq!(
            malformed_at("c2sp.org/tlog-proof@v1"),
            (1, "header", "is missing or not newline-terminated")
        );
        assert_eq!(
            malformed_at(&with_head("c2sp.org/tlog-proof@v2\nindex 0")).0,
            1
        );
        assert_eq!(
            malformed_at(&with_head("C2SP.org/tlog-proof@v1\nindex 0")).0,
            1
        );
        assert_eq!(
            malformed_at(&with_head("c2sp.org/tlog-proof@v1 \nindex 0")).0,
            1
        );
        assert_eq!(
            malformed_at(&with_head("c2sp.org/tlog-proof@v1\r\nindex 0")).0,
            1
        );
        assert_eq!(
            malformed_at(&with_head("c2sp.org/tlog-proof@v1\nindex 01")),
            (2, "index", "has leading zeros")
        );
        assert_eq!(
            malformed_at(&with_head("c2sp.org/tlog-proof@v1\nindex +1")),
            (2, "index", "is not a decimal number")
        );
        assert_eq!(
            malformed_at(&with_head("c2sp.org/tlog-proof@v1\nindex -1")),
            (2, "index", "is not a decimal number")
        );
        assert_eq!(
            malformed_at(&with_head("c2sp.org/tlog-proof@v1\nindex  1")),
            (2, "index", "is not a decimal number")
        );
        assert_eq!(
            malformed_at(&with_head("c2sp.org/tlog-proof@v1\nindex ")),
            (2, "index", "is empty")
        );
        assert_eq!(
            malformed_at(&with_head(
                "c2sp.org/tlog-proof@v1\nindex 18446744073709551616"
            )),
            (2, "index", "does not fit in 64 bits")
        );
        assert_eq!(
            malformed_at(&with_head("c2sp.org/tlog-proof@v1\nIndex 1")).1,
            "index line"
        );
        assert_eq!(
            malformed_at(&with_head("c2sp.org/tlog-proof@v1\nindex\t1")).1,
            "index line"
        );
        assert_eq!(
            malformed_at(&with_head("c2sp.org/tlog-proof@v1")).1,
            "index line"
        );
        // "extra" must come before "index", with canonical base64.
        assert_eq!(
            malformed_at(&with_head("c2sp.org/tlog-proof@v1\nindex 1\nextra AA==")).1,
            "proof hash"
        );
        assert_eq!(
            malformed_at(&with_head("c2sp.org/tlog-proof@v1\nextra AA=\nindex 1")),
            (2, "extra data", "is not canonical base64")
        );
        assert_eq!(
            malformed_at(&with_head("c2sp.org/tlog-proof@v1\nextra AB==\nindex 1")).1,
            "extra data"
        );
        assert_eq!(
            malformed_at(&with_head(
                "c2sp.org/tlog-proof@v1\nextra AA==\nextra AA==\nindex 1"
            ))
            .1,
            "index line"
        );
        // Proof hashes: wrong length, bad base64, unpadded.
        let short = BASE64.encode([7u8; 31]);
        assert_eq!(
            malformed_at(&with_head(&format!(
                "c2sp.org/tlog-proof@v1\nindex 1\n{h0}\n{short}"
            ))),
            (4, "proof hash", "is not 32 bytes")
        );
        let long = BASE64.encode([7u8; 33]);
        assert_eq!(
            malformed_at(&with_head(&format!(
                "c2sp.org/tlog-proof@v1\nindex 1\n{long}"
            )))
            .2,
            "is not 32 bytes"
        );
        let unpadded = h0.trim_end_matches('=');
        assert_eq!(
            malformed_at(&with_head(&format!(
                "c2sp.org/tlog-proof@v1\nindex 1\n{unpadded}"
            )))
            .2,
            "is not canonical base64"
        );
        assert_eq!(
            malformed_at(&with_head(&format!(
                "c2sp.org/tlog-proof@v1\nindex 1\n {h0}"
            )))
            .2,
            "is not canonical base64"
        );
        // Too many hashes.
        let many = vec![h0; MAX_PROOF_HASHES + 1].join("\n");
        assert_eq!(
            malformed_at(&with_head(&format!(
                "c2sp.org/tlog-proof@v1\nindex 1\n{many}"
            ))),
            (MAX_PROOF_HASHES + 3, "proof", "has more than 64 hashes")
        );
        // No empty line before the checkpoint: the checkpoint's origin line
        // is then read as a proof hash.
        assert_eq!(malformed_at(&format!("{head}\n{cp}")).1, "proof hash");
        assert_eq!(malformed_at(&format!("{head}\n")).1, "proof");
        // Missing or broken checkpoint.
        assert!(matches!(
            TlogProof::parse(&format!("{head}\n\n")),
            Err(ReceiptError::Checkpoint(CheckpointError::Note(
                NoteError::MissingSignatureSeparator
            )))
        ));
        assert!(matches!(
            TlogProof::parse(&format!("{head}\n\n\n{cp}")),
            Err(ReceiptError::Checkpoint(CheckpointError::Malformed {
                what: "origin",
                ..
            }))
        ));
        // A validly signed note whose text is not a checkpoint.
        let not_cp = Note::sign("hello\n", &[&log_signer()]).unwrap().render();
        assert!(matches!(
            TlogProof::parse(&format!("{head}\n\n{not_cp}")),
            Err(ReceiptError::Checkpoint(CheckpointError::Malformed {
                what: "tree size",
                ..
            }))
        ));
        // Size limit.
        let huge = format!("{}\n\n{cp}", "a".repeat(MAX_TLOG_PROOF_SIZE));
        assert!(matches!(
            TlogProof::parse(&huge),
            Err(ReceiptError::TooLarge { .. })
        ));
    }

    fn receipt_ish() -> impl Strategy<Value = String> {
        let line = prop_oneof![
            Just(String::new()),
            Just(TLOG_PROOF_HEADER.to_string()),
            "extra [A-Za-z0-9+/=]{0,12}",
            "index [0-9]{0,21}",
            "[A-Za-z0-9+/]{43}=",
            "[ -~]{0,10}",
        ];
        (prop::collection::vec(line, 0..8), any::<bool>()).prop_map(|(lines, with_cp)| {
            let mut s = lines.join("\n");
            if with_cp {
                s.push_str("\n\n");
                s.push_str(KAT_RECEIPT.split_once("\n\n").map_or("", |(_, cp)| cp));
            }
            s
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn parse_never_panics_and_is_canonical(s in any::<String>()) {
            if let Ok(r) = TlogProof::parse(&s) {
                prop_assert_eq!(r.render(), s);
            }
        }

        #[test]
        fn parse_receipt_ish(s in receipt_ish()) {
            if let Ok(r) = TlogProof::parse(&s) {
                prop_assert_eq!(r.render(), s);
            }
        }

        #[test]
        fn render_parse_round_trip(
            extra in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
            index in any::<u64>(),
            proof in prop::collection::vec(any::<[u8; 32]>(), 0..MAX_PROOF_HASHES),
        ) {
            let checkpoint = TlogProof::parse(KAT_RECEIPT).unwrap().checkpoint;
            let r = TlogProof { extra, index, proof, checkpoint };
            prop_assert_eq!(TlogProof::parse(&r.render()).unwrap(), r);
        }

        #[test]
        fn generated_receipts_verify(n in 1usize..40, pick in any::<usize>()) {
            let ls = leaves(n);
            let i = pick % n;
            let r = receipt(&ls, i, None);
            let parsed = TlogProof::parse(&r.render()).unwrap();
            prop_assert!(parsed.verify(&ls[i], Some(ORIGIN), &[log_signer().verifier()]).is_ok());
        }
    }
}
