//! C2SP signed notes (<https://c2sp.org/signed-note>): text signed by one or
//! more keys, with Ed25519 verifier keys ("vkeys").
//!
//! Only Ed25519 (signature type `0x01`) signatures are created and verified.
//! Signatures of any other kind (for example `0x04` witness cosignatures) are
//! parsed, kept verbatim and rendered back unchanged, so that a later layer can
//! verify them and so that re-rendering never drops a witness's cosignature.
//!
//! Parsing is strict and canonical: for every string `s` that
//! [`Note::parse`] accepts, `Note::parse(s)?.render() == s`. Verification
//! follows the spec's rules for unknown keys, see [`Note::verify`]; each
//! Ed25519 signature is checked by the rule of [`crate::sig`] (ZIP-215),
//! and weak keys are refused as [`crate::keys::verifying_key`] refuses them.

use crate::bytes::Bytes;
use crate::keys;
use crate::sig::VerifyingKey;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, SigningKey};
use sha2::{Digest as _, Sha256};
use std::fmt;

/// Signature type identifier byte for Ed25519 note signatures.
pub const SIG_TYPE_ED25519: u8 = 0x01;

/// Maximum number of signature lines accepted in a note.
///
/// The spec requires accepting at least 16; 100 leaves room for many witness
/// cosignatures while bounding the work spent on a hostile note.
pub const MAX_SIGNATURES: usize = 100;

/// Maximum size in bytes of a rendered note.
///
/// Large enough for [`MAX_SIGNATURES`] post-quantum signatures (about 5 kB
/// each), small enough that parsing untrusted input stays cheap.
pub const MAX_NOTE_SIZE: usize = 1 << 20;

/// Prefix of every signature line: em dash (U+2014) and a space.
const SIG_LINE_PREFIX: &str = "\u{2014} ";

/// Errors from parsing, signing or verifying notes and verifier keys.
#[derive(Debug, thiserror::Error)]
pub enum NoteError {
    /// The input exceeds [`MAX_NOTE_SIZE`].
    #[error("note is {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Size of the input in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input is not valid UTF-8.
    #[error("note is not valid UTF-8")]
    InvalidUtf8,
    /// The input contains an ASCII control character other than newline.
    #[error("note contains control character U+{code:04X} at byte {offset}")]
    ControlCharacter {
        /// Byte offset of the character.
        offset: usize,
        /// The character's code point.
        code: u32,
    },
    /// The note text is empty or does not end with a newline.
    #[error("note text must be non-empty and end with a newline")]
    TextNotNewlineTerminated,
    /// There is no blank line separating the text from the signatures.
    #[error("note has no blank line separating the text from the signatures")]
    MissingSignatureSeparator,
    /// The signature block is empty.
    #[error("note has no signature lines")]
    NoSignatures,
    /// The last signature line does not end with a newline.
    #[error("note does not end with a newline")]
    MissingFinalNewline,
    /// A signature line does not have the form `— <name> <base64>`.
    #[error("malformed signature line {line}: {reason}")]
    MalformedSignatureLine {
        /// 1-based line number within the note.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The note has more than [`MAX_SIGNATURES`] signatures.
    #[error("note has more than {max} signatures")]
    TooManySignatures {
        /// The limit.
        max: usize,
    },
    /// A key name is empty or contains whitespace, `+` or a control character.
    #[error("invalid key name {name:?}: {reason}")]
    InvalidKeyName {
        /// The rejected name (Debug-escaped when displayed).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A verifier key string is not `name+hex8(id)+base64(type||key)`.
    #[error("malformed verifier key: {0}")]
    MalformedVerifierKey(&'static str),
    /// A verifier key has a signature type other than Ed25519 (`0x01`).
    #[error("unsupported verifier key type 0x{0:02x} (only Ed25519, 0x01, is supported)")]
    UnsupportedKeyType(u8),
    /// A verifier key's id does not match its name and public key.
    #[error(
        "verifier key id {found:08x} does not match its name and key (expected {expected:08x})"
    )]
    KeyIdMismatch {
        /// Id computed from the name and key.
        expected: u32,
        /// Id written in the verifier key.
        found: u32,
    },
    /// The Ed25519 public key is not a valid point or has small order.
    #[error("invalid Ed25519 public key")]
    InvalidPublicKey,
    /// Two different trusted keys share a key name and key id, so a signature
    /// naming them cannot be attributed.
    #[error("two different trusted keys share name {name:?} and key id {key_id:08x}")]
    AmbiguousVerifier {
        /// The shared key name.
        name: String,
        /// The shared key id.
        key_id: u32,
    },
    /// A signature from a trusted key failed to verify.
    #[error("signature by {name:?} (key id {key_id:08x}) failed to verify")]
    SignatureInvalid {
        /// Key name of the failing signature.
        name: String,
        /// Key id of the failing signature.
        key_id: u32,
    },
    /// No signature in the note is from a trusted key.
    #[error("note has no signature from a trusted key")]
    NoKnownSignature,
    /// A [`Note`] built by hand does not render to a note that parses back to
    /// the same value.
    #[error("note fields do not form a canonical note")]
    NotCanonical,
}

/// Renders a vkey: `name+hex8(key id)+base64(signature type || public key)`.
pub fn render_vkey(name: &str, key_id: u32, sig_type: u8, key: &[u8; 32]) -> String {
    let mut material = Vec::with_capacity(33);
    material.push(sig_type);
    material.extend_from_slice(key);
    format!("{name}+{key_id:08x}+{}", BASE64.encode(material))
}

/// Computes a key id: the first four bytes, big-endian, of
/// `SHA-256(name || 0x0A || sig_type || public_key)`.
///
/// Exposed so that other signature types (such as `0x04` cosignatures) can
/// compute their ids the same way.
pub fn compute_key_id(name: &str, sig_type: u8, public_key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', sig_type]);
    h.update(public_key);
    let digest = h.finalize();
    let mut id = [0u8; 4];
    // The digest is always 32 bytes, so the zip covers all four id bytes.
    for (dst, src) in id.iter_mut().zip(digest.iter()) {
        *dst = *src;
    }
    u32::from_be_bytes(id)
}

/// Parses a vkey `name+hex8(key id)+base64(sig_type || 32-byte key)` of
/// signature type `sig_type`, checking the name and that the key id is
/// `SHA-256(name || 0x0A || sig_type || key)[:4]`. Returns the name and key.
pub(crate) fn parse_vkey(vkey: &str, sig_type: u8) -> Result<(String, [u8; 32]), NoteError> {
    // Key names cannot contain '+', but base64 can: split at most twice.
    let mut parts = vkey.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(NoteError::MalformedVerifierKey("expected name+keyid+key"));
    };
    validate_key_name(name)?;
    // The spec fixes the id encoding to exactly 8 lowercase hex digits;
    // checking the digits ourselves also rejects the sign prefix that
    // `from_str_radix` would accept.
    if id_hex.len() != 8
        || !id_hex
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(NoteError::MalformedVerifierKey(
            "key id is not 8 lowercase hex digits",
        ));
    }
    let found = u32::from_str_radix(id_hex, 16)
        .map_err(|_| NoteError::MalformedVerifierKey("key id is not 8 lowercase hex digits"))?;
    let key_bytes = BASE64
        .decode(key_b64)
        .map_err(|_| NoteError::MalformedVerifierKey("key is not canonical base64"))?;
    let (&found_type, public) = key_bytes
        .split_first()
        .ok_or(NoteError::MalformedVerifierKey("key is empty"))?;
    if found_type != sig_type {
        return Err(NoteError::UnsupportedKeyType(found_type));
    }
    let public: [u8; 32] = public
        .try_into()
        .map_err(|_| NoteError::MalformedVerifierKey("Ed25519 key is not 32 bytes"))?;
    let expected = compute_key_id(name, sig_type, &public);
    if expected != found {
        return Err(NoteError::KeyIdMismatch { expected, found });
    }
    Ok((name.to_owned(), public))
}

/// Checks the spec's key name rules: non-empty, no Unicode whitespace, no `+`.
///
/// Control characters are also rejected: a note may not contain them, so a
/// name with one could never appear in a valid signature line.
fn check_key_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("key name is empty");
    }
    // `char::is_whitespace` is the Unicode White_Space property, i.e. the
    // spec's "Unicode spaces" (and what Go's `unicode.IsSpace` checks).
    if name.chars().any(char::is_whitespace) {
        return Err("key name contains whitespace");
    }
    if name.contains('+') {
        return Err("key name contains '+'");
    }
    if name.chars().any(char::is_control) {
        return Err("key name contains a control character");
    }
    Ok(())
}

pub(crate) fn validate_key_name(name: &str) -> Result<(), NoteError> {
    check_key_name(name).map_err(|reason| NoteError::InvalidKeyName {
        name: name.to_owned(),
        reason,
    })
}

/// Rejects ASCII control characters other than newline.
///
/// Scanning bytes is exact for UTF-8: bytes below 0x20 never occur inside a
/// multi-byte sequence, so each one is a control character by itself.
fn check_control_chars(s: &str) -> Result<(), NoteError> {
    match s.bytes().position(|b| b < 0x20 && b != b'\n') {
        Some(offset) => Err(NoteError::ControlCharacter {
            offset,
            code: s.as_bytes().get(offset).copied().map_or(0, u32::from),
        }),
        None => Ok(()),
    }
}

/// Checks that `text` can be the text of a note: size limit, no control
/// characters, non-empty and newline-terminated.
fn validate_text(text: &str) -> Result<(), NoteError> {
    if text.len() > MAX_NOTE_SIZE {
        return Err(NoteError::TooLarge {
            len: text.len(),
            max: MAX_NOTE_SIZE,
        });
    }
    check_control_chars(text)?;
    if !text.ends_with('\n') {
        return Err(NoteError::TextNotNewlineTerminated);
    }
    Ok(())
}

/// Signing side of a note key: a key name and an Ed25519 signing key.
///
/// Deliberately neither `Clone` nor `Debug`-printing the secret: the manual
/// `Debug` impl shows only the name and key id.
pub struct NoteSigner {
    verifier: NoteVerifier,
    key: SigningKey,
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.verifier.name)
            .field("key_id", &format_args!("{:08x}", self.verifier.key_id))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// Creates a signer; fails if `name` is not a valid key name (empty,
    /// contains whitespace, `+` or a control character).
    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        let verifier = NoteVerifier::new(name, key.verifying_key().as_bytes())?;
        Ok(Self { verifier, key })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.verifier.name
    }

    /// The key id, `SHA-256(name || 0x0A || 0x01 || public key)[:4]`.
    pub fn key_id(&self) -> u32 {
        self.verifier.key_id
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> NoteVerifier {
        self.verifier.clone()
    }

    /// Signs `text` (which must be a valid note text) and returns the
    /// signature as a value.
    pub fn sign_text(&self, text: &str) -> Result<NoteSignature, NoteError> {
        validate_text(text)?;
        let sig: Signature = self.key.sign(text.as_bytes());
        Ok(NoteSignature {
            name: self.verifier.name.clone(),
            key_id: self.verifier.key_id,
            sig: sig.to_bytes().to_vec(),
        })
    }

    /// Signs `text` and returns the signature line
    /// `— <name> base64(key id || signature)\n`.
    pub fn sign_line(&self, text: &str) -> Result<String, NoteError> {
        Ok(self.sign_text(text)?.to_line())
    }
}

/// An Ed25519 verifier key, rendered as the vkey string
/// `name+hex8(id)+base64(0x01 || public key)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Parses a vkey string, checking that the key id equals
    /// `SHA-256(name || 0x0A || 0x01 || public key)[:4]`.
    ///
    /// Only Ed25519 keys (type `0x01`) are accepted; other types give
    /// [`NoteError::UnsupportedKeyType`].
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let (name, public) = parse_vkey(vkey, SIG_TYPE_ED25519)?;
        Self::new(&name, &public)
    }

    /// Creates a verifier from a key name and public key, computing the key
    /// id. Rejects invalid names, bytes that are no curve point and
    /// small-order ("weak") keys, as [`keys::verifying_key`] does.
    pub fn new(name: &str, public: &[u8; 32]) -> Result<Self, NoteError> {
        validate_key_name(name)?;
        let key = keys::verifying_key(&Bytes(*public)).map_err(|_| NoteError::InvalidPublicKey)?;
        Ok(Self {
            name: name.to_owned(),
            key_id: compute_key_id(name, SIG_TYPE_ED25519, public),
            key,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The Ed25519 public key.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Renders the vkey string `name+hex8(id)+base64(0x01 || public key)`.
    pub fn to_vkey(&self) -> String {
        render_vkey(
            &self.name,
            self.key_id,
            SIG_TYPE_ED25519,
            &self.key.to_bytes(),
        )
    }

    /// Whether `sig` names this key (both key name and key id match).
    fn matches(&self, sig: &NoteSignature) -> bool {
        self.name == sig.name && self.key_id == sig.key_id
    }

    /// Verifies an Ed25519 signature over `msg` under the rule of
    /// [`crate::sig`], the one every medledger signature is checked by.
    fn verify_raw(&self, msg: &[u8], sig: &[u8]) -> bool {
        <&[u8; 64]>::try_from(sig).is_ok_and(|sig| self.key.verify(msg, sig).is_ok())
    }
}

impl fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_vkey())
    }
}

/// One signature line of a note, kept raw: key name, key id and the
/// signature bytes after the id. Unknown signature types are kept as is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key id (first four bytes of the decoded signature, big-endian).
    pub key_id: u32,
    /// Signature bytes following the key id.
    pub sig: Vec<u8>,
}

impl NoteSignature {
    /// Renders `— <name> base64(key id || sig)\n`.
    pub fn to_line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.sig.len());
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&self.sig);
        format!("{SIG_LINE_PREFIX}{} {}\n", self.name, BASE64.encode(raw))
    }

    /// Parses one signature line without its newline; the error is a reason
    /// that the caller combines with the line number.
    fn parse_line(line: &str) -> Result<Self, &'static str> {
        let rest = line
            .strip_prefix(SIG_LINE_PREFIX)
            .ok_or("does not start with an em dash and a space")?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or("no space between key name and signature")?;
        check_key_name(name)?;
        if b64.is_empty() {
            return Err("signature is empty");
        }
        // STANDARD requires canonical padding and zero trailing bits, which
        // keeps parse/render a bijection.
        let raw = BASE64
            .decode(b64)
            .map_err(|_| "signature is not canonical base64")?;
        let Some((id, sig)) = raw.split_first_chunk::<4>() else {
            return Err("signature is shorter than a key id");
        };
        if sig.is_empty() {
            return Err("signature has a key id but no signature bytes");
        }
        Ok(Self {
            name: name.to_owned(),
            key_id: u32::from_be_bytes(*id),
            sig: sig.to_vec(),
        })
    }
}

/// A signed note: the text (including its final newline) and its signatures
/// in order of appearance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The signed text, ending in a newline.
    pub text: String,
    /// All signature lines, including ones from unknown keys.
    pub sigs: Vec<NoteSignature>,
}

impl Note {
    /// Parses a signed note strictly per the spec: at most
    /// [`MAX_NOTE_SIZE`] bytes, no control characters except newline, a
    /// newline-terminated text separated by the last blank line from 1 to
    /// [`MAX_SIGNATURES`] lines `— <name> <base64>`.
    ///
    /// This does not verify anything; the text must be ignored until
    /// [`Note::verify`] succeeds.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        if s.len() > MAX_NOTE_SIZE {
            return Err(NoteError::TooLarge {
                len: s.len(),
                max: MAX_NOTE_SIZE,
            });
        }
        check_control_chars(s)?;
        // The text may itself contain blank lines; signature lines never are
        // blank, so the separator is the last "\n\n".
        let split = s
            .rfind("\n\n")
            .ok_or(NoteError::MissingSignatureSeparator)?;
        // `split` indexes an ASCII '\n', so both bounds are char boundaries;
        // `get` keeps this panic-free regardless.
        let (Some(text), Some(block)) = (s.get(..split + 1), s.get(split + 2..)) else {
            return Err(NoteError::MissingSignatureSeparator);
        };
        if block.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        let block = block
            .strip_suffix('\n')
            .ok_or(NoteError::MissingFinalNewline)?;
        // Line numbers are 1-based in the whole note: the text's lines, then
        // the blank separator line, then the signatures.
        let first_sig_line = text.bytes().filter(|&b| b == b'\n').count() + 2;
        let mut sigs = Vec::new();
        for (i, line) in block.split('\n').enumerate() {
            if i >= MAX_SIGNATURES {
                return Err(NoteError::TooManySignatures {
                    max: MAX_SIGNATURES,
                });
            }
            let sig = NoteSignature::parse_line(line).map_err(|reason| {
                NoteError::MalformedSignatureLine {
                    line: first_sig_line + i,
                    reason,
                }
            })?;
            sigs.push(sig);
        }
        Ok(Self {
            text: text.to_owned(),
            sigs,
        })
    }

    /// Like [`Note::parse`], for raw bytes that must first be valid UTF-8.
    pub fn parse_bytes(b: &[u8]) -> Result<Self, NoteError> {
        if b.len() > MAX_NOTE_SIZE {
            return Err(NoteError::TooLarge {
                len: b.len(),
                max: MAX_NOTE_SIZE,
            });
        }
        let s = std::str::from_utf8(b).map_err(|_| NoteError::InvalidUtf8)?;
        Self::parse(s)
    }

    /// Renders the note: text, blank line, one line per signature.
    ///
    /// No validation happens here; for notes from [`Note::parse`],
    /// [`Note::sign`] or [`Note::add_signature`] the result parses back to
    /// an equal note. Use [`Note::validate`] for hand-built values.
    pub fn render(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for sig in &self.sigs {
            out.push_str(&sig.to_line());
        }
        out
    }

    /// Checks that this value is exactly what [`Note::parse`] would return
    /// for its rendering, i.e. that rendering it gives a valid note.
    ///
    /// Using the parser as the single definition of validity avoids a second
    /// rule set that could drift from it.
    pub fn validate(&self) -> Result<(), NoteError> {
        if Self::parse(&self.render())? != *self {
            return Err(NoteError::NotCanonical);
        }
        Ok(())
    }

    /// Signs `text` with each signer, in order. At least one signer is
    /// required because a note without signatures is not valid.
    pub fn sign(text: &str, signers: &[&NoteSigner]) -> Result<Note, NoteError> {
        validate_text(text)?;
        if signers.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        let mut note = Note {
            text: text.to_owned(),
            sigs: Vec::new(),
        };
        for signer in signers {
            note.add_signature(signer)?;
        }
        Ok(note)
    }

    /// Adds a signature by `signer`, replacing any existing signature with
    /// the same key name and key id (as Go's `note.Sign` does). On error the
    /// note is left unchanged.
    pub fn add_signature(&mut self, signer: &NoteSigner) -> Result<(), NoteError> {
        let new_sig = signer.sign_text(&self.text)?;
        let mut sigs: Vec<NoteSignature> = self
            .sigs
            .iter()
            .filter(|s| !signer.verifier.matches(s))
            .cloned()
            .collect();
        sigs.push(new_sig);
        if sigs.len() > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures {
                max: MAX_SIGNATURES,
            });
        }
        let candidate = Note {
            text: self.text.clone(),
            sigs,
        };
        // Never produce a note that our own parser (or a peer's) would refuse,
        // e.g. a hand-built existing signature with an invalid name.
        candidate.validate()?;
        *self = candidate;
        Ok(())
    }

    /// Verifies the note against trusted `verifiers`, per the spec:
    ///
    /// - signatures whose (key name, key id) match no verifier are ignored
    ///   (this includes cosignatures and other signature types);
    /// - a signature from a trusted key that fails to verify rejects the
    ///   whole note ([`NoteError::SignatureInvalid`]);
    /// - at least one trusted signature must verify
    ///   ([`NoteError::NoKnownSignature`] otherwise).
    ///
    /// Returns the verifiers whose signature verified, each once, in the
    /// order of `verifiers`.
    pub fn verify<'a>(
        &self,
        verifiers: &'a [NoteVerifier],
    ) -> Result<Vec<&'a NoteVerifier>, NoteError> {
        // Bound the work for hand-built notes too, not only parsed ones.
        if self.sigs.len() > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures {
                max: MAX_SIGNATURES,
            });
        }
        let mut verified = vec![false; verifiers.len()];
        for sig in &self.sigs {
            let mut candidates = verifiers.iter().enumerate().filter(|(_, v)| v.matches(sig));
            let Some((pos, verifier)) = candidates.next() else {
                continue;
            };
            // Name and id equal but keys differ: we cannot tell which key is
            // meant, and silently picking one could turn a forgery into an
            // "ignored" signature or vice versa.
            if candidates.any(|(_, other)| other.key != verifier.key) {
                return Err(NoteError::AmbiguousVerifier {
                    name: sig.name.clone(),
                    key_id: sig.key_id,
                });
            }
            if !verifier.verify_raw(self.text.as_bytes(), &sig.sig) {
                return Err(NoteError::SignatureInvalid {
                    name: sig.name.clone(),
                    key_id: sig.key_id,
                });
            }
            if let Some(flag) = verified.get_mut(pos) {
                *flag = true;
            }
        }
        let ok: Vec<&'a NoteVerifier> = verifiers
            .iter()
            .zip(verified)
            .filter_map(|(v, ok)| ok.then_some(v))
            .collect();
        if ok.is_empty() {
            return Err(NoteError::NoKnownSignature);
        }
        Ok(ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Verifier key and note from the "Example" section of the spec.
    const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    const SPEC_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

    /// The introductory example of the spec: its text contains a blank line.
    const QUASIMODO: &str = "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned \u{e8} subito sera.\n\n\u{2014} quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n";

    /// Known answers for seed 0x00..0x1f, computed independently with
    /// Python's `cryptography` package and hashlib. Ed25519 is deterministic,
    /// so any change to the key id, vkey or line format breaks these.
    const KAT_NAME: &str = "medledger.example/log";
    const KAT_VKEY: &str =
        "medledger.example/log+48a0b082+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4";
    const KAT_TEXT: &str = "Hello, medledger!\n";
    const KAT_LINE: &str = "\u{2014} medledger.example/log SKCwgvo/3rZ4TuZBnA4qW+y3Ulid48D8lw9cfJAwblJnqCw3fAQdYJulzXTSUuOqiulCy6jN1g9W08ivqQERNa+lkgM=\n";

    fn seed_signer(name: &str, first: u8) -> NoteSigner {
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = first.wrapping_add(i as u8);
        }
        NoteSigner::new(name, SigningKey::from_bytes(&seed)).unwrap()
    }

    fn kat_signer() -> NoteSigner {
        seed_signer(KAT_NAME, 0)
    }

    fn parse_err(s: &str) -> NoteError {
        Note::parse(s).unwrap_err()
    }

    #[test]
    fn spec_example_verifies() {
        let v = NoteVerifier::parse(SPEC_VKEY).unwrap();
        assert_eq!(v.name(), "example.com/foo");
        assert_eq!(v.key_id(), 0x530d903a);
        assert_eq!(v.to_vkey(), SPEC_VKEY);
        assert_eq!(v.to_string(), SPEC_VKEY);
        let note = Note::parse(SPEC_NOTE).unwrap();
        assert_eq!(note.text, "This is an example message.\n");
        assert_eq!(note.sigs.len(), 1);
        assert_eq!(note.sigs[0].key_id, 0x530d903a);
        assert_eq!(note.render(), SPEC_NOTE);
        let verifiers = [v];
        let ok = note.verify(&verifiers).unwrap();
        assert_eq!(ok, vec![&verifiers[0]]);
    }

    #[test]
    fn spec_example_text_bit_flip_fails() {
        let verifiers = [NoteVerifier::parse(SPEC_VKEY).unwrap()];
        // 'T' (0x54) -> 'U' (0x55): a single-bit change of the signed text.
        let tampered = SPEC_NOTE.replacen("This", "Uhis", 1);
        let note = Note::parse(&tampered).unwrap();
        assert!(matches!(
            note.verify(&verifiers),
            Err(NoteError::SignatureInvalid { ref name, key_id: 0x530d903a }) if name == "example.com/foo"
        ));
    }

    #[test]
    fn spec_example_signature_bit_flips_fail() {
        let verifiers = [NoteVerifier::parse(SPEC_VKEY).unwrap()];
        let note = Note::parse(SPEC_NOTE).unwrap();
        for byte in 0..note.sigs[0].sig.len() {
            for bit in 0..8 {
                let mut bad = note.clone();
                bad.sigs[0].sig[byte] ^= 1 << bit;
                // Round-trip through text too, as an attacker would deliver it.
                let bad = Note::parse(&bad.render()).unwrap();
                assert!(
                    matches!(
                        bad.verify(&verifiers),
                        Err(NoteError::SignatureInvalid { .. })
                    ),
                    "flip of byte {byte} bit {bit} verified"
                );
            }
        }
        // Flipping a key id bit makes the signature unknown instead.
        for bit in 0..32 {
            let mut bad = note.clone();
            bad.sigs[0].key_id ^= 1 << bit;
            assert!(matches!(
                bad.verify(&verifiers),
                Err(NoteError::NoKnownSignature)
            ));
        }
    }

    #[test]
    fn spec_intro_example_parses() {
        let note = Note::parse(QUASIMODO).unwrap();
        // Separated by the last blank line: the text keeps its inner blank line.
        assert_eq!(
            note.text,
            "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned \u{e8} subito sera.\n"
        );
        assert_eq!(note.sigs.len(), 1);
        assert_eq!(note.sigs[0].name, "quasimodo.example/salvatore");
        assert_eq!(note.sigs[0].key_id, 0x367ba04b);
        assert_eq!(note.sigs[0].sig.len(), 64);
        assert_eq!(note.render(), QUASIMODO);
        // Its key is not the example key: an unknown signature only.
        let verifiers = [NoteVerifier::parse(SPEC_VKEY).unwrap()];
        assert!(matches!(
            note.verify(&verifiers),
            Err(NoteError::NoKnownSignature)
        ));
    }

    #[test]
    fn key_id_computation() {
        let pk = BASE64
            .decode("AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k")
            .unwrap();
        assert_eq!(pk[0], SIG_TYPE_ED25519);
        assert_eq!(
            compute_key_id("example.com/foo", SIG_TYPE_ED25519, &pk[1..]),
            0x530d903a
        );
        // Domain separation: another signature type gives another id.
        assert_ne!(
            compute_key_id("example.com/foo", 0x04, &pk[1..]),
            0x530d903a
        );
        let signer = kat_signer();
        assert_eq!(signer.key_id(), 0x48a0b082);
        assert_eq!(signer.verifier().key_id(), 0x48a0b082);
    }

    #[test]
    fn pinned_signature_known_answer() {
        let signer = kat_signer();
        assert_eq!(signer.name(), KAT_NAME);
        assert_eq!(signer.verifier().to_vkey(), KAT_VKEY);
        assert_eq!(NoteVerifier::parse(KAT_VKEY).unwrap(), signer.verifier());
        assert_eq!(signer.sign_line(KAT_TEXT).unwrap(), KAT_LINE);
        let note = Note::sign(KAT_TEXT, &[&signer]).unwrap();
        let rendered = note.render();
        assert_eq!(rendered, format!("{KAT_TEXT}\n{KAT_LINE}"));
        let verifiers = [NoteVerifier::parse(KAT_VKEY).unwrap()];
        assert_eq!(
            Note::parse(&rendered)
                .unwrap()
                .verify(&verifiers)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn signer_debug_hides_secret() {
        let dbg = format!("{:?}", kat_signer());
        assert!(dbg.contains(KAT_NAME) && dbg.contains("48a0b082"), "{dbg}");
        assert!(!dbg.contains("secret"), "{dbg}");
    }

    #[test]
    fn invalid_key_names_rejected() {
        for name in [
            "",
            "a b",
            "a+b",
            "a\tb",
            "a\u{a0}b",
            "a\u{2003}b",
            "a\u{1}b",
            "a\nb",
        ] {
            let key = SigningKey::from_bytes(&[7; 32]);
            assert!(
                matches!(
                    NoteSigner::new(name, key.clone()),
                    Err(NoteError::InvalidKeyName { .. })
                ),
                "{name:?} accepted"
            );
            assert!(matches!(
                NoteVerifier::new(name, key.verifying_key().as_bytes()),
                Err(NoteError::InvalidKeyName { .. })
            ));
        }
        assert!(
            NoteSigner::new("\u{e8}.example/\u{1f600}", SigningKey::from_bytes(&[7; 32])).is_ok()
        );
    }

    #[test]
    fn vkey_errors() {
        let malformed = [
            "example.com/foo",
            "example.com/foo+530d903a",
            "example.com/foo+530D903A+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
            "example.com/foo+530d903+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
            "example.com/foo+0530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
            "example.com/foo++30d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
            "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2",
            "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k=",
            "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k ",
            "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv",
            "example.com/foo+530d903a+",
        ];
        for vkey in malformed {
            assert!(
                matches!(
                    NoteVerifier::parse(vkey),
                    Err(NoteError::MalformedVerifierKey(_))
                ),
                "{vkey:?} gave {:?}",
                NoteVerifier::parse(vkey)
            );
        }
        assert!(matches!(
            NoteVerifier::parse("+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"),
            Err(NoteError::InvalidKeyName { .. })
        ));
        assert!(matches!(
            NoteVerifier::parse(
                "example.com/bar+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
            ),
            Err(NoteError::KeyIdMismatch {
                found: 0x530d903a,
                ..
            })
        ));
        // A one-character change of the key material changes the id too.
        assert!(matches!(
            NoteVerifier::parse(
                "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2l"
            ),
            Err(NoteError::KeyIdMismatch {
                found: 0x530d903a,
                ..
            })
        ));
        // The same key material with cosignature type 0x04 is not supported
        // (and its id would differ anyway).
        let mut material = BASE64
            .decode("AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k")
            .unwrap();
        material[0] = 0x04;
        let id = compute_key_id("w.example", 0x04, &material[1..]);
        let vkey = format!("w.example+{id:08x}+{}", BASE64.encode(&material));
        assert!(matches!(
            NoteVerifier::parse(&vkey),
            Err(NoteError::UnsupportedKeyType(0x04))
        ));
        // A small-order public key (the identity point) is refused.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let id = compute_key_id("weak.example", SIG_TYPE_ED25519, &weak);
        let mut material = vec![SIG_TYPE_ED25519];
        material.extend_from_slice(&weak);
        let vkey = format!("weak.example+{id:08x}+{}", BASE64.encode(&material));
        assert!(matches!(
            NoteVerifier::parse(&vkey),
            Err(NoteError::InvalidPublicKey)
        ));
    }

    #[test]
    fn malformed_notes_rejected() {
        let line = KAT_LINE;
        type Check = fn(&NoteError) -> bool;
        let cases: Vec<(String, Check)> = vec![
            // No blank line between text and signatures.
            (format!("{KAT_TEXT}{line}"), |e| {
                matches!(e, NoteError::MissingSignatureSeparator)
            }),
            ("".into(), |e| {
                matches!(e, NoteError::MissingSignatureSeparator)
            }),
            // No signatures at all.
            (format!("{KAT_TEXT}\n"), |e| {
                matches!(e, NoteError::NoSignatures)
            }),
            ("\n\n".into(), |e| matches!(e, NoteError::NoSignatures)),
            // Signature block not newline-terminated.
            (
                format!("{KAT_TEXT}\n{}", line.trim_end_matches('\n')),
                |e| matches!(e, NoteError::MissingFinalNewline),
            ),
            // Control characters, including CR from CRLF line endings.
            (format!("Hello\r\n\n{line}"), |e| {
                matches!(
                    e,
                    NoteError::ControlCharacter {
                        offset: 5,
                        code: 0x0d
                    }
                )
            }),
            (format!("a\tb\n\n{line}"), |e| {
                matches!(e, NoteError::ControlCharacter { code: 9, .. })
            }),
            (format!("a\n\n{line}\0"), |e| {
                matches!(e, NoteError::ControlCharacter { code: 0, .. })
            }),
            // Signature line shapes.
            (
                format!("{KAT_TEXT}\n- medledger.example/log AAAAAAA=\n"),
                |e| matches!(e, NoteError::MalformedSignatureLine { line: 3, .. }),
            ),
            (
                format!("{KAT_TEXT}\n\u{2014}medledger.example/log AAAAAAA=\n"),
                |e| matches!(e, NoteError::MalformedSignatureLine { line: 3, .. }),
            ),
            (
                format!("{KAT_TEXT}\n\u{2014} medledger.example/log\n"),
                |e| matches!(e, NoteError::MalformedSignatureLine { line: 3, .. }),
            ),
            (
                format!("{KAT_TEXT}\n\u{2014} medledger.example/log \n"),
                |e| {
                    matches!(
                        e,
                        NoteError::MalformedSignatureLine {
                            line: 3,
                            reason: "signature is empty"
                        }
                    )
                },
            ),
            (format!("{KAT_TEXT}\n\u{2014}  AAAAAAA=\n"), |e| {
                matches!(
                    e,
                    NoteError::MalformedSignatureLine {
                        reason: "key name is empty",
                        ..
                    }
                )
            }),
            (format!("{KAT_TEXT}\n\u{2014} a+b AAAAAAA=\n"), |e| {
                matches!(
                    e,
                    NoteError::MalformedSignatureLine {
                        reason: "key name contains '+'",
                        ..
                    }
                )
            }),
            (format!("{KAT_TEXT}\n\u{2014} a AAAAAAA=x\n"), |e| {
                matches!(e, NoteError::MalformedSignatureLine { .. })
            }),
            (format!("{KAT_TEXT}\n\u{2014} a AAAA AAA=\n"), |e| {
                matches!(e, NoteError::MalformedSignatureLine { .. })
            }),
            // Missing padding and non-zero trailing bits are not canonical.
            (format!("{KAT_TEXT}\n\u{2014} a AAAAAAA\n"), |e| {
                matches!(e, NoteError::MalformedSignatureLine { .. })
            }),
            (format!("{KAT_TEXT}\n\u{2014} a AAAAAAB=\n"), |e| {
                matches!(e, NoteError::MalformedSignatureLine { .. })
            }),
            // Key id only, or less.
            (format!("{KAT_TEXT}\n\u{2014} a AAAAAA==\n"), |e| {
                matches!(e, NoteError::MalformedSignatureLine { .. })
            }),
            (format!("{KAT_TEXT}\n\u{2014} a AAAA\n"), |e| {
                matches!(e, NoteError::MalformedSignatureLine { .. })
            }),
            // Error line numbers count the whole note (second signature: line 4).
            (format!("{KAT_TEXT}\n{line}\u{2014} a AAAA\n"), |e| {
                matches!(e, NoteError::MalformedSignatureLine { line: 4, .. })
            }),
        ];
        for (input, check) in cases {
            let err = parse_err(&input);
            assert!(check(&err), "{input:?} gave {err:?}");
            // Every error renders a message without panicking.
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn invalid_utf8_rejected() {
        let mut bytes = SPEC_NOTE.as_bytes().to_vec();
        bytes[0] = 0xff;
        assert!(matches!(
            Note::parse_bytes(&bytes),
            Err(NoteError::InvalidUtf8)
        ));
        assert!(Note::parse_bytes(SPEC_NOTE.as_bytes()).is_ok());
    }

    #[test]
    fn signature_count_and_size_limits() {
        let line = "\u{2014} a AAAAAAA=\n";
        let at_limit = format!("t\n\n{}", line.repeat(MAX_SIGNATURES));
        assert_eq!(Note::parse(&at_limit).unwrap().sigs.len(), MAX_SIGNATURES);
        let over = format!("t\n\n{}", line.repeat(MAX_SIGNATURES + 1));
        assert!(matches!(
            parse_err(&over),
            NoteError::TooManySignatures {
                max: MAX_SIGNATURES
            }
        ));
        let huge = format!("{}\n\n{line}", "a".repeat(MAX_NOTE_SIZE));
        assert!(matches!(parse_err(&huge), NoteError::TooLarge { .. }));
        // The signing side refuses to exceed the limits too.
        let signer = kat_signer();
        let big_text = format!("{}\n", "a".repeat(MAX_NOTE_SIZE - 1));
        assert!(matches!(
            Note::sign(&big_text, &[&signer]),
            Err(NoteError::TooLarge { .. })
        ));
        let mut full = Note::parse(&at_limit).unwrap();
        assert!(matches!(
            full.add_signature(&signer),
            Err(NoteError::TooManySignatures { .. })
        ));
        assert_eq!(
            full,
            Note::parse(&at_limit).unwrap(),
            "failed add must not modify"
        );
    }

    #[test]
    fn unknown_and_known_signatures() {
        let log = kat_signer();
        let other = seed_signer("other.example", 100);
        // Shares the name but not the key id of the log key.
        let same_name = seed_signer(KAT_NAME, 200);
        let note = Note::sign(KAT_TEXT, &[&other, &log, &same_name]).unwrap();
        assert_eq!(note.sigs.len(), 3);
        let reparsed = Note::parse(&note.render()).unwrap();
        assert_eq!(reparsed, note);

        // Only the log key is trusted: the other two are ignored.
        let trusted = [log.verifier()];
        assert_eq!(reparsed.verify(&trusted).unwrap(), vec![&trusted[0]]);

        // Unknown keys only.
        let only_unknown = Note::sign(KAT_TEXT, &[&other]).unwrap();
        assert!(matches!(
            only_unknown.verify(&trusted),
            Err(NoteError::NoKnownSignature)
        ));
        assert!(matches!(note.verify(&[]), Err(NoteError::NoKnownSignature)));

        // A signature with the log's name and id but a different key's bytes
        // is "known" and must make the whole note fail, even next to a good one.
        let mut forged = note.clone();
        let mut bad = forged.sigs[0].clone();
        bad.name = KAT_NAME.into();
        bad.key_id = log.key_id();
        forged.sigs.push(bad);
        assert!(matches!(
            forged.verify(&trusted),
            Err(NoteError::SignatureInvalid { .. })
        ));

        // Wrong-length signature bytes from a known key fail, never panic.
        let mut short = Note::sign(KAT_TEXT, &[&log]).unwrap();
        short.sigs[0].sig.truncate(63);
        assert!(matches!(
            short.verify(&trusted),
            Err(NoteError::SignatureInvalid { .. })
        ));

        // Several trusted keys: all that signed are returned, once each, in
        // `verifiers` order; duplicates in the trust list are harmless.
        let trusted = [
            other.verifier(),
            log.verifier(),
            log.verifier(),
            seed_signer("x", 9).verifier(),
        ];
        let ok = note.verify(&trusted).unwrap();
        assert_eq!(ok, vec![&trusted[0], &trusted[1]]);
    }

    #[test]
    fn ambiguous_verifiers_rejected() {
        let log = kat_signer();
        let note = Note::sign(KAT_TEXT, &[&log]).unwrap();
        // Forge a verifier that collides on name and id with a different key.
        let mut twin = seed_signer(KAT_NAME, 50).verifier();
        twin.key_id = log.key_id();
        assert!(matches!(
            note.verify(&[log.verifier(), twin]),
            Err(NoteError::AmbiguousVerifier { .. })
        ));
    }

    #[test]
    fn cosignature_lines_preserved() {
        // Checkpoint with a 0x04 cosignature line, from c2sp.org/tlog-cosignature.
        let cp = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";
        let note = Note::parse(cp).unwrap();
        assert_eq!(note.sigs.len(), 2);
        assert_eq!(note.sigs[1].name, "witness.example.com/w1");
        assert_eq!(note.sigs[1].key_id, 0x8d66cf3f);
        assert_eq!(note.sigs[1].sig.len(), 72); // 8-byte timestamp + 64-byte signature
        assert_eq!(note.render(), cp);
        // Adding our signature keeps the foreign ones.
        let mut signed = note.clone();
        signed.add_signature(&kat_signer()).unwrap();
        assert_eq!(&signed.sigs[..2], &note.sigs[..]);
        assert_eq!(signed.verify(&[kat_signer().verifier()]).unwrap().len(), 1);
    }

    #[test]
    fn signing_rules() {
        let log = kat_signer();
        assert!(matches!(
            Note::sign(KAT_TEXT, &[]),
            Err(NoteError::NoSignatures)
        ));
        assert!(matches!(
            Note::sign("", &[&log]),
            Err(NoteError::TextNotNewlineTerminated)
        ));
        assert!(matches!(
            Note::sign("no newline", &[&log]),
            Err(NoteError::TextNotNewlineTerminated)
        ));
        assert!(matches!(
            Note::sign("a\rb\n", &[&log]),
            Err(NoteError::ControlCharacter { .. })
        ));
        assert!(matches!(
            log.sign_line("x"),
            Err(NoteError::TextNotNewlineTerminated)
        ));
        // Texts with blank lines, even at the end, survive the round trip.
        for text in ["\n", "a\n\nb\n", "a\n\n", "a\n\n\n"] {
            let note = Note::sign(text, &[&log]).unwrap();
            let back = Note::parse(&note.render()).unwrap();
            assert_eq!(back.text, text);
            assert_eq!(back.verify(&[log.verifier()]).unwrap().len(), 1);
        }
        // Re-signing with the same key replaces the earlier signature.
        let mut note = Note::sign(KAT_TEXT, &[&log, &log]).unwrap();
        assert_eq!(note.sigs.len(), 1);
        note.sigs[0].sig[0] ^= 1;
        note.add_signature(&log).unwrap();
        assert_eq!(note.sigs.len(), 1);
        assert!(note.verify(&[log.verifier()]).is_ok());
        // A hand-built note with an invalid existing signature name is refused.
        let mut bad = note.clone();
        bad.sigs[0].name = "has space".into();
        assert!(bad.validate().is_err());
        assert!(bad.add_signature(&seed_signer("other", 3)).is_err());
    }

    fn note_ish() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("\n".to_string()),
            Just("\n\n".to_string()),
            Just("\u{2014} ".to_string()),
            Just(" ".to_string()),
            Just("+".to_string()),
            Just("=".to_string()),
            Just("AAAAAAA=".to_string()),
            "[a-zA-Z0-9/+=.]{0,12}",
            "\\PC{0,4}",
            any::<char>().prop_map(String::from),
        ];
        prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    fn valid_name() -> impl Strategy<Value = String> {
        "[a-z0-9./_\u{e8}-]{1,16}"
    }

    fn valid_note() -> impl Strategy<Value = Note> {
        let text = prop::collection::vec("[ -~\u{e8}\u{2014}]{0,24}", 1..6)
            .prop_map(|lines| lines.join("\n") + "\n");
        let sig = (
            valid_name(),
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 1..80),
        )
            .prop_map(|(name, key_id, sig)| NoteSignature { name, key_id, sig });
        (text, prop::collection::vec(sig, 1..6)).prop_map(|(text, sigs)| Note { text, sigs })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn parse_never_panics_and_is_canonical(s in any::<String>()) {
            if let Ok(note) = Note::parse(&s) {
                prop_assert_eq!(note.render(), s);
            }
        }

        #[test]
        fn parse_note_ish_is_canonical(s in note_ish()) {
            if let Ok(note) = Note::parse(&s) {
                prop_assert_eq!(note.render(), s);
            }
        }

        #[test]
        fn vkey_parse_never_panics(s in "[a-z0-9+/=.]{0,80}") {
            if let Ok(v) = NoteVerifier::parse(&s) {
                prop_assert_eq!(v.to_vkey(), s);
            }
        }

        #[test]
        fn render_parse_round_trip(note in valid_note()) {
            let rendered = note.render();
            prop_assert_eq!(Note::parse(&rendered).unwrap(), note.clone());
            prop_assert!(note.validate().is_ok());
        }

        #[test]
        fn sign_verify_round_trip(text in "[ -~\n]{0,64}", seed in any::<[u8; 32]>()) {
            let text = text + "\n";
            let signer = NoteSigner::new("p.example", SigningKey::from_bytes(&seed)).unwrap();
            let note = Note::sign(&text, &[&signer]).unwrap();
            let back = Note::parse(&note.render()).unwrap();
            prop_assert_eq!(&back, &note);
            prop_assert!(back.verify(&[signer.verifier()]).is_ok());
        }
    }
}
