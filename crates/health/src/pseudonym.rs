//! Keyed pseudonyms: what a patient is called on the ledger.
//!
//! ```text
//! pseudonym = BASE32(HMAC-SHA256(key, "medledger/pseudonym/v1\n" || scheme || ":" || digits)[..16])
//! ```
//! `scheme` is `lbo` (health insurance number, 11 digits), `jmbg` (13
//! digits, date and check digit validated) or, for imports from systems
//! that carry neither, `ext` over `system|value` of the source's identifier. The 16-byte truncation keeps the
//! pseudonym short (26 characters of RFC 4648 base32, no padding) while
//! leaving 128 bits: a collision among 10 million patients has odds of about
//! 2^-82.
//!
//! Why a key: identifiers come from small spaces. There are about 10^11 LBOs
//! and, because a JMBG is a birth date, a region, a 3-digit serial and a
//! check digit, only about 40,000 valid JMBGs per birth date. An unkeyed
//! hash of either is reversed by hashing every candidate, which takes
//! minutes. With a secret key of 256 bits the same search has to guess the
//! key first. The key therefore lives only with the pseudonymization
//! authority, never on the ledger and never in a log.

use crate::ids::{self, IdError};
use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;

/// Length of a pseudonym in characters.
pub const LEN: usize = 26;
/// Key length written by [`PseudonymKey::generate`].
pub const KEY_BYTES: usize = 32;
/// Shortest key accepted (128 bits).
pub const MIN_KEY_BYTES: usize = 16;
const TAG: &[u8] = b"medledger/pseudonym/v1\n";

/// A patient identifier the authority accepts.
#[derive(Clone, PartialEq, Eq)]
pub enum Identifier {
    /// Health insurance number (LBO), 11 digits.
    Lbo(String),
    /// Unique master citizen number (JMBG), 13 digits.
    Jmbg(String),
    /// An identifier from another system, `system|value` (a source
    /// system's patient number), for imports whose sources carry neither.
    External(String),
}

impl fmt::Debug for Identifier {
    // Never print the digits: identifiers must not reach a log by accident.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identifier::Lbo(_) => f.write_str("Lbo(..)"),
            Identifier::Jmbg(_) => f.write_str("Jmbg(..)"),
            Identifier::External(_) => f.write_str("External(..)"),
        }
    }
}

impl Identifier {
    /// Parses an LBO (11 digits) or a JMBG (13 digits with a valid date and
    /// check digit). Spaces and dashes between digits are ignored.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let digits: String = input
            .trim()
            .chars()
            .filter(|c| *c != ' ' && *c != '-')
            .collect();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdError::NotDigits);
        }
        match digits.len() {
            11 => Ok(Identifier::Lbo(digits)),
            13 => {
                ids::check_jmbg(&digits)?;
                Ok(Identifier::Jmbg(digits))
            }
            n => Err(IdError::Length(n)),
        }
    }

    /// An identifier of another system; `None` if either part is empty.
    pub fn external(system: &str, value: &str) -> Option<Self> {
        (!system.trim().is_empty() && !value.trim().is_empty())
            .then(|| Identifier::External(format!("{}|{}", system.trim(), value.trim())))
    }

    fn scheme(&self) -> (&'static str, &str) {
        match self {
            Identifier::Lbo(d) => ("lbo", d),
            Identifier::Jmbg(d) => ("jmbg", d),
            Identifier::External(s) => ("ext", s),
        }
    }
}

/// Why a key is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// Too short.
    #[error("a pseudonym key needs at least {MIN_KEY_BYTES} bytes, this one has {0}")]
    Short(usize),
    /// Not hex.
    #[error("a pseudonym key file holds one line of hex")]
    Encoding,
}

/// The authority's secret key.
#[derive(Clone)]
pub struct PseudonymKey(Vec<u8>);

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymKey(..)")
    }
}

impl PseudonymKey {
    /// A key from raw bytes (at least 16).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(KeyError::Short(bytes.len()));
        }
        Ok(Self(bytes.to_vec()))
    }

    /// A key from the text of a key file: one line of lowercase or
    /// uppercase hex.
    pub fn from_file_text(text: &str) -> Result<Self, KeyError> {
        let line = text.trim();
        let bytes = data_encoding::HEXLOWER_PERMISSIVE
            .decode(line.as_bytes())
            .map_err(|_| KeyError::Encoding)?;
        Self::from_bytes(&bytes)
    }

    /// The text of a key file for this key.
    pub fn to_file_text(&self) -> String {
        format!("{}\n", data_encoding::HEXLOWER.encode(&self.0))
    }

    /// A fresh random key of [`KEY_BYTES`] from `random`.
    pub fn generate(random: [u8; KEY_BYTES]) -> Self {
        Self(random.to_vec())
    }

    /// The pseudonym of `id` under this key.
    pub fn pseudonym(&self, id: &Identifier) -> String {
        let (scheme, digits) = id.scheme();
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC takes keys of any length");
        mac.update(TAG);
        mac.update(scheme.as_bytes());
        mac.update(b":");
        mac.update(digits.as_bytes());
        let tag = mac.finalize().into_bytes();
        BASE32_NOPAD.encode(&tag[..16])
    }
}

/// True if `s` could be a pseudonym: 26 characters of the RFC 4648 base32
/// alphabet in canonical form (the last character carries 3 bits of data
/// and 2 zero bits, so only 8 letters can end it).
pub fn is_well_formed(s: &str) -> bool {
    s.len() == LEN
        && s.bytes().all(|b| matches!(b, b'A'..=b'Z' | b'2'..=b'7'))
        && BASE32_NOPAD.decode(s.as_bytes()).is_ok()
}

/// A well-formed pseudonym for synthetic data (tests, benchmarks): the
/// base32 of `n` in 16 big-endian bytes. It is not keyed, so it must never
/// name a real patient.
pub fn synthetic(n: u64) -> String {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(b"SYNTHETC");
    b[8..].copy_from_slice(&n.to_be_bytes());
    BASE32_NOPAD.encode(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> PseudonymKey {
        PseudonymKey::from_bytes(&[b; 32]).unwrap()
    }

    #[test]
    fn same_input_same_pseudonym_other_key_other_pseudonym() {
        let id = Identifier::parse("12345678901").unwrap();
        let a = key(1).pseudonym(&id);
        assert_eq!(
            a,
            key(1).pseudonym(&Identifier::parse("123 4567 8901").unwrap())
        );
        assert_ne!(a, key(2).pseudonym(&id));
        assert!(is_well_formed(&a), "{a}");
        assert_eq!(a.len(), LEN);
    }

    #[test]
    fn known_answer_matches_an_independent_hmac() {
        // python3: base64.b32encode(hmac.new(bytes(range(32)),
        //   b"medledger/pseudonym/v1\nlbo:12345678901", "sha256").digest()[:16])
        let k = PseudonymKey::from_bytes(&(0u8..32).collect::<Vec<_>>()).unwrap();
        let p = k.pseudonym(&Identifier::parse("12345678901").unwrap());
        assert_eq!(p, KAT);
    }
    const KAT: &str = include_str!("../testdata/pseudonym_kat.txt").trim_ascii();

    #[test]
    fn lbo_and_jmbg_are_separate_schemes() {
        // The same 11 leading digits never collide across schemes.
        let jmbg = Identifier::parse("0101990710008").unwrap();
        assert!(matches!(jmbg, Identifier::Jmbg(_)));
        let lbo = Identifier::parse("01019907100").unwrap();
        assert_ne!(key(1).pseudonym(&jmbg), key(1).pseudonym(&lbo));
        let ext = Identifier::external("urn:lbo", "01019907100").unwrap();
        assert_ne!(key(1).pseudonym(&ext), key(1).pseudonym(&lbo));
        assert_eq!(Identifier::external(" ", "x"), None);
        assert_eq!(format!("{ext:?}"), "External(..)");
    }

    #[test]
    fn bad_inputs_and_keys_are_refused() {
        assert_eq!(Identifier::parse("12345"), Err(IdError::Length(5)));
        assert_eq!(Identifier::parse("1234567890a"), Err(IdError::NotDigits));
        assert!(
            Identifier::parse("0101990710009").is_err(),
            "bad check digit"
        );
        assert_eq!(
            PseudonymKey::from_bytes(&[0; 15]).unwrap_err(),
            KeyError::Short(15)
        );
        assert_eq!(
            PseudonymKey::from_file_text("zz").unwrap_err(),
            KeyError::Encoding
        );
        let k = key(7);
        let again = PseudonymKey::from_file_text(&k.to_file_text()).unwrap();
        let id = Identifier::parse("12345678901").unwrap();
        assert_eq!(k.pseudonym(&id), again.pseudonym(&id));
        assert_eq!(format!("{id:?}"), "Lbo(..)");
    }

    #[test]
    fn well_formed_is_strict() {
        assert!(is_well_formed("MFRGGZDFMZTWQ2LKNNWG23TPOA"));
        assert!(
            !is_well_formed("MFRGGZDFMZTWQ2LKNNWG23TPOB"),
            "non-canonical tail"
        );
        assert!(!is_well_formed("mfrggzdfmztwq2lknnwg23tpoa"));
        assert!(!is_well_formed("MFRGGZDFMZTWQ2LKNNWG23TPO"));
        assert!(!is_well_formed("P0000000000000000000000001"));
        assert!(!is_well_formed("12345678901"));
        assert!(is_well_formed(&synthetic(0)) && is_well_formed(&synthetic(u64::MAX)));
        assert_ne!(synthetic(1), synthetic(2));
    }
}
