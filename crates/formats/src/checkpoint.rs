//! C2SP transparency log checkpoints (<https://c2sp.org/tlog-checkpoint>):
//! a signed note whose text is `origin\nsize\nbase64(root)\n` followed by
//! optional extension lines.
//!
//! Parsing is strict and canonical, so `from_text(t)?.to_text() == t` for
//! every accepted `t`.

use crate::note::{Note, NoteError, NoteSigner, NoteVerifier};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// Errors from parsing, signing or opening checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The signed note around the checkpoint is malformed or does not verify.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The checkpoint text does not follow the format.
    #[error("malformed checkpoint: {what} {reason}")]
    Malformed {
        /// Which part is wrong (e.g. "tree size").
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The checkpoint is for another log than the one expected.
    #[error("checkpoint origin is {found:?}, expected {expected:?}")]
    WrongOrigin {
        /// The origin the caller asked for.
        expected: String,
        /// The origin in the checkpoint.
        found: String,
    },
    /// The note verified, but not with a key named after the checkpoint's
    /// origin, so no trusted key vouches for this log's tree head.
    #[error("checkpoint for {origin:?} has no verified signature from a key named {origin:?}")]
    NotSignedByLog {
        /// The checkpoint's origin.
        origin: String,
    },
    /// A checkpoint may only be signed with a key whose name is its origin.
    #[error("key {signer:?} may not sign a checkpoint for origin {origin:?}")]
    SignerNotOrigin {
        /// The signer's key name.
        signer: String,
        /// The checkpoint's origin.
        origin: String,
    },
}

/// Parses an ASCII decimal `u64` with no sign, no leading zeros (except
/// `"0"` itself) and no overflow. The error completes a sentence such as
/// "tree size ...".
///
/// `str::parse::<u64>` is not used alone because it accepts a leading `+`
/// and leading zeros, which would make the encoding non-canonical.
pub(crate) fn parse_decimal_u64(s: &str) -> Result<u64, &'static str> {
    if s.is_empty() {
        return Err("is empty");
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("is not a decimal number");
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err("has leading zeros");
    }
    s.parse::<u64>().map_err(|_| "does not fit in 64 bits")
}

/// Decodes a canonical standard-base64 SHA-256 hash. The error completes a
/// sentence such as "root hash ...".
pub(crate) fn decode_hash(s: &str) -> Result<[u8; 32], &'static str> {
    let bytes = BASE64.decode(s).map_err(|_| "is not canonical base64")?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| "is not 32 bytes")
}

/// A log checkpoint (signed tree head body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Log identity; non-empty, no newline.
    pub origin: String,
    /// Number of leaves in the tree.
    pub size: u64,
    /// RFC 6962 Merkle tree root hash at `size`.
    pub root: [u8; 32],
    /// Optional opaque extension lines; each non-empty, without newline.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// Renders the note text: `origin\nsize\nbase64(root)\n` then each
    /// extension line followed by a newline. Does not validate; see
    /// [`Checkpoint::validate`].
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        );
        for ext in &self.extensions {
            out.push_str(ext);
            out.push('\n');
        }
        out
    }

    /// Parses a checkpoint note text strictly: newline-terminated, no
    /// control characters, non-empty origin, decimal size without leading
    /// zeros, root of exactly 32 bytes in canonical base64, non-empty
    /// extension lines.
    pub fn from_text(text: &str) -> Result<Self, CheckpointError> {
        let malformed = |what, reason| CheckpointError::Malformed { what, reason };
        let body = text
            .strip_suffix('\n')
            .ok_or(malformed("text", "does not end with a newline"))?;
        // The text must be usable as a note text; bytes below 0x20 are always
        // single ASCII characters in UTF-8.
        if body.bytes().any(|b| b < 0x20 && b != b'\n') {
            return Err(malformed("text", "contains a control character"));
        }
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(malformed("origin", "is empty"));
        }
        let size_line = lines.next().ok_or(malformed("tree size", "is missing"))?;
        let size = parse_decimal_u64(size_line).map_err(|r| malformed("tree size", r))?;
        let root_line = lines.next().ok_or(malformed("root hash", "is missing"))?;
        let root = decode_hash(root_line).map_err(|r| malformed("root hash", r))?;
        let mut extensions = Vec::new();
        for ext in lines {
            if ext.is_empty() {
                return Err(malformed("extension line", "is empty"));
            }
            extensions.push(ext.to_owned());
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// Checks that the fields render to a text that parses back to the same
    /// value (e.g. no newline hidden in the origin or an extension).
    pub fn validate(&self) -> Result<(), CheckpointError> {
        if Self::from_text(&self.to_text())? != *self {
            return Err(CheckpointError::Malformed {
                what: "fields",
                reason: "contain a newline",
            });
        }
        Ok(())
    }

    /// Signs the checkpoint as its log. The signer's key name must equal the
    /// origin (the spec's SHOULD, enforced here so that [`Checkpoint::open`]
    /// accepts what we sign).
    pub fn sign(&self, signer: &NoteSigner) -> Result<Note, CheckpointError> {
        self.validate()?;
        if signer.name() != self.origin {
            return Err(CheckpointError::SignerNotOrigin {
                signer: signer.name().to_owned(),
                origin: self.origin.clone(),
            });
        }
        Ok(Note::sign(&self.to_text(), &[signer])?)
    }

    /// Parses a signed checkpoint note and verifies it; see
    /// [`Checkpoint::verify_note`]. Returns the checkpoint and the note (whose
    /// unverified signature lines, such as witness cosignatures, are kept).
    pub fn open(
        note: &str,
        origin: Option<&str>,
        verifiers: &[NoteVerifier],
    ) -> Result<(Checkpoint, Note), CheckpointError> {
        let note = Note::parse(note)?;
        let checkpoint = Self::verify_note(&note, origin, verifiers)?;
        Ok((checkpoint, note))
    }

    /// Verifies an already parsed checkpoint note:
    ///
    /// 1. the note's signatures verify per [`Note::verify`] (unknown keys
    ///    ignored, any failing trusted key rejects, at least one verifies);
    /// 2. its text is a well-formed checkpoint;
    /// 3. if `origin` is given, the checkpoint's origin equals it;
    /// 4. one of the keys that verified is named exactly like the origin, so
    ///    a trusted key of one log cannot vouch for another log's checkpoint
    ///    when `verifiers` holds keys of several logs.
    pub fn verify_note(
        note: &Note,
        origin: Option<&str>,
        verifiers: &[NoteVerifier],
    ) -> Result<Checkpoint, CheckpointError> {
        // Signatures first: the spec says the text must be ignored until a
        // trusted signature verified.
        let verified = note.verify(verifiers)?;
        let checkpoint = Self::from_text(&note.text)?;
        if let Some(expected) = origin
            && checkpoint.origin != expected
        {
            return Err(CheckpointError::WrongOrigin {
                expected: expected.to_owned(),
                found: checkpoint.origin,
            });
        }
        if !verified.iter().any(|v| v.name() == checkpoint.origin) {
            return Err(CheckpointError::NotSignedByLog {
                origin: checkpoint.origin,
            });
        }
        Ok(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::NoteSignature;
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;
    use sha2::{Digest as _, Sha256};

    /// Example from c2sp.org/tlog-checkpoint (its key is not published).
    const SPEC_CHECKPOINT: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";

    const ORIGIN: &str = "medledger.example/log";

    /// Checkpoint {ORIGIN, 7, SHA-256("medledger")} signed with the key of
    /// seed 0x00..0x1f; computed independently with Python `cryptography`.
    const KAT_SIGNED: &str = "medledger.example/log\n7\nRWuLv/QhdtsvzuSN7y1e7mPt1/eQwi456BS2mcDHwQg=\n\n\u{2014} medledger.example/log SKCwgi7yOxQJXpYZi3nQbJY8RdI7i6vLRWH0IpJnFoHGFqZ0T39dv2IUcO8GJa9X/z5Uav5CPXQAINggFJaC0f98sQM=\n";

    fn signer(name: &str, first: u8) -> NoteSigner {
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = first.wrapping_add(i as u8);
        }
        NoteSigner::new(name, SigningKey::from_bytes(&seed)).unwrap()
    }

    fn kat_checkpoint() -> Checkpoint {
        Checkpoint {
            origin: ORIGIN.into(),
            size: 7,
            root: Sha256::digest(b"medledger").into(),
            extensions: vec![],
        }
    }

    fn malformed(text: &str) -> (&'static str, &'static str) {
        match Checkpoint::from_text(text) {
            Err(CheckpointError::Malformed { what, reason }) => (what, reason),
            other => panic!("{text:?} gave {other:?}"),
        }
    }

    #[test]
    fn spec_example_parses() {
        let note = Note::parse(SPEC_CHECKPOINT).unwrap();
        let cp = Checkpoint::from_text(&note.text).unwrap();
        assert_eq!(cp.origin, "example.com/behind-the-sofa");
        assert_eq!(cp.size, 20852163);
        assert_eq!(
            BASE64.encode(cp.root),
            "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
        );
        assert!(cp.extensions.is_empty());
        assert_eq!(cp.to_text(), note.text);
        assert_eq!(note.render(), SPEC_CHECKPOINT);
    }

    #[test]
    fn signed_known_answer() {
        let log = signer(ORIGIN, 0);
        let note = kat_checkpoint().sign(&log).unwrap();
        assert_eq!(note.render(), KAT_SIGNED);
        let (cp, opened) = Checkpoint::open(KAT_SIGNED, Some(ORIGIN), &[log.verifier()]).unwrap();
        assert_eq!(cp, kat_checkpoint());
        assert_eq!(opened, note);
    }

    #[test]
    fn open_checks_origin_and_signatures() {
        let log = signer(ORIGIN, 0);
        let trusted = [log.verifier()];
        assert!(Checkpoint::open(KAT_SIGNED, None, &trusted).is_ok());
        assert!(matches!(
            Checkpoint::open(KAT_SIGNED, Some("other.example/log"), &trusted),
            Err(CheckpointError::WrongOrigin { ref expected, ref found })
                if expected == "other.example/log" && found == ORIGIN
        ));
        // Untrusted key only.
        let stranger = signer(ORIGIN, 77);
        assert!(matches!(
            Checkpoint::open(KAT_SIGNED, Some(ORIGIN), &[stranger.verifier()]),
            Err(CheckpointError::Note(NoteError::NoKnownSignature))
        ));
        // Tampered tree size: 7 -> 6 is a one-bit change.
        let tampered = KAT_SIGNED.replacen("\n7\n", "\n6\n", 1);
        assert!(matches!(
            Checkpoint::open(&tampered, Some(ORIGIN), &trusted),
            Err(CheckpointError::Note(NoteError::SignatureInvalid { .. }))
        ));
        // Malformed note.
        assert!(matches!(
            Checkpoint::open("medledger.example/log\n7\n", None, &trusted),
            Err(CheckpointError::Note(NoteError::MissingSignatureSeparator))
        ));
    }

    #[test]
    fn key_of_another_log_cannot_vouch() {
        // Both keys are trusted, but the checkpoint for ORIGIN is only signed
        // by the key of another log.
        let log = signer(ORIGIN, 0);
        let other = signer("other.example/log", 1);
        let note = Note::sign(&kat_checkpoint().to_text(), &[&other]).unwrap();
        let trusted = [log.verifier(), other.verifier()];
        assert!(matches!(
            Checkpoint::verify_note(&note, None, &trusted),
            Err(CheckpointError::NotSignedByLog { ref origin }) if origin == ORIGIN
        ));
        // And signing with a mismatched name is refused up front.
        assert!(matches!(
            kat_checkpoint().sign(&other),
            Err(CheckpointError::SignerNotOrigin { .. })
        ));
    }

    #[test]
    fn cosignatures_are_kept_and_ignored() {
        let log = signer(ORIGIN, 0);
        let mut note = kat_checkpoint().sign(&log).unwrap();
        // A 0x04-style witness cosignature: 8-byte timestamp + 64-byte sig.
        note.sigs.push(NoteSignature {
            name: "witness.example/w1".into(),
            key_id: 0xdeadbeef,
            sig: vec![0x5a; 72],
        });
        let text = note.render();
        let (cp, opened) = Checkpoint::open(&text, Some(ORIGIN), &[log.verifier()]).unwrap();
        assert_eq!(cp, kat_checkpoint());
        assert_eq!(opened.sigs.len(), 2);
        assert_eq!(opened.render(), text);
    }

    #[test]
    fn extensions_round_trip() {
        let mut cp = kat_checkpoint();
        cp.extensions = vec!["ext one".into(), "\u{2014} looks like a signature".into()];
        let text = cp.to_text();
        assert!(text.ends_with("\next one\n\u{2014} looks like a signature\n"));
        assert_eq!(Checkpoint::from_text(&text).unwrap(), cp);
        let log = signer(ORIGIN, 0);
        let note = cp.sign(&log).unwrap();
        let (opened, _) =
            Checkpoint::open(&note.render(), Some(ORIGIN), &[log.verifier()]).unwrap();
        assert_eq!(opened, cp);
    }

    #[test]
    fn malformed_texts_rejected() {
        let root = "RWuLv/QhdtsvzuSN7y1e7mPt1/eQwi456BS2mcDHwQg=";
        assert_eq!(
            malformed(&format!("o\n007\n{root}\n")),
            ("tree size", "has leading zeros")
        );
        assert_eq!(
            malformed(&format!("o\n00\n{root}\n")),
            ("tree size", "has leading zeros")
        );
        assert_eq!(
            malformed(&format!("o\n+7\n{root}\n")),
            ("tree size", "is not a decimal number")
        );
        assert_eq!(
            malformed(&format!("o\n-1\n{root}\n")),
            ("tree size", "is not a decimal number")
        );
        assert_eq!(
            malformed(&format!("o\n7 \n{root}\n")),
            ("tree size", "is not a decimal number")
        );
        assert_eq!(
            malformed(&format!("o\n\n{root}\n")),
            ("tree size", "is empty")
        );
        assert_eq!(
            malformed(&format!("o\n18446744073709551616\n{root}\n")),
            ("tree size", "does not fit in 64 bits")
        );
        assert_eq!(
            Checkpoint::from_text(&format!("o\n18446744073709551615\n{root}\n"))
                .unwrap()
                .size,
            u64::MAX
        );
        assert_eq!(
            Checkpoint::from_text(&format!("o\n0\n{root}\n"))
                .unwrap()
                .size,
            0
        );
        // Root hash: 31 and 33 bytes, missing padding, trailing bits, junk.
        let short = BASE64.encode([1u8; 31]);
        let long = BASE64.encode([1u8; 33]);
        assert_eq!(
            malformed(&format!("o\n1\n{short}\n")),
            ("root hash", "is not 32 bytes")
        );
        assert_eq!(
            malformed(&format!("o\n1\n{long}\n")),
            ("root hash", "is not 32 bytes")
        );
        let unpadded = root.trim_end_matches('=');
        assert_eq!(
            malformed(&format!("o\n1\n{unpadded}\n")),
            ("root hash", "is not canonical base64")
        );
        let trailing_bits = root.replace("Qg=", "Qh=");
        assert_eq!(
            malformed(&format!("o\n1\n{trailing_bits}\n")),
            ("root hash", "is not canonical base64")
        );
        assert_eq!(
            malformed("o\n1\n!!!!\n"),
            ("root hash", "is not canonical base64")
        );
        assert_eq!(malformed("o\n1\n"), ("root hash", "is missing"));
        assert_eq!(malformed("o\n"), ("tree size", "is missing"));
        assert_eq!(malformed(&format!("\n1\n{root}\n")), ("origin", "is empty"));
        assert_eq!(malformed(""), ("text", "does not end with a newline"));
        assert_eq!(
            malformed(&format!("o\n1\n{root}")),
            ("text", "does not end with a newline")
        );
        assert_eq!(
            malformed(&format!("o\n1\n{root}\n\n")),
            ("extension line", "is empty")
        );
        assert_eq!(
            malformed(&format!("o\n1\n{root}\na\n\nb\n")),
            ("extension line", "is empty")
        );
        assert_eq!(
            malformed(&format!("o\r\n1\n{root}\n")),
            ("text", "contains a control character")
        );
    }

    #[test]
    fn invalid_fields_are_not_signed() {
        let log = signer(ORIGIN, 0);
        let mut cp = kat_checkpoint();
        cp.origin = format!("{ORIGIN}\n7");
        assert!(matches!(
            cp.sign(&log),
            Err(CheckpointError::Malformed { .. })
        ));
        let mut cp = kat_checkpoint();
        cp.extensions = vec![String::new()];
        assert!(matches!(
            cp.sign(&log),
            Err(CheckpointError::Malformed { .. })
        ));
        let mut cp = kat_checkpoint();
        cp.extensions = vec!["a\nb".into()];
        assert!(matches!(
            cp.validate(),
            Err(CheckpointError::Malformed { what: "fields", .. })
        ));
    }

    fn valid_checkpoint() -> impl Strategy<Value = Checkpoint> {
        (
            "[!-~\u{e8}][ -~\u{e8}]{0,30}",
            any::<u64>(),
            any::<[u8; 32]>(),
            prop::collection::vec("[ -~\u{2014}]{1,20}", 0..4),
        )
            .prop_map(|(origin, size, root, extensions)| Checkpoint {
                origin,
                size,
                root,
                extensions,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn from_text_never_panics_and_is_canonical(s in any::<String>()) {
            if let Ok(cp) = Checkpoint::from_text(&s) {
                prop_assert_eq!(cp.to_text(), s);
            }
        }

        #[test]
        fn from_text_checkpoint_ish(
            lines in prop::collection::vec(
                prop_oneof!["[0-9]{0,21}", "[A-Za-z0-9+/=]{40,48}", "[ -~]{0,8}"], 0..6),
        ) {
            let s = lines.join("\n") + "\n";
            if let Ok(cp) = Checkpoint::from_text(&s) {
                prop_assert_eq!(cp.to_text(), s);
            }
        }

        #[test]
        fn text_round_trip(cp in valid_checkpoint()) {
            prop_assert_eq!(Checkpoint::from_text(&cp.to_text()).unwrap(), cp.clone());
            prop_assert!(cp.validate().is_ok());
        }

        #[test]
        fn sign_open_round_trip(cp in valid_checkpoint(), seed in any::<[u8; 32]>()) {
            // Origins that are not valid key names cannot be signed by a log
            // key of the same name; keep to those that are.
            prop_assume!(!cp.origin.contains([' ', '+']));
            let log = NoteSigner::new(&cp.origin, SigningKey::from_bytes(&seed)).unwrap();
            let note = cp.sign(&log).unwrap();
            let (opened, _) = Checkpoint::open(&note.render(), Some(&cp.origin), &[log.verifier()]).unwrap();
            prop_assert_eq!(opened, cp);
        }
    }
}
