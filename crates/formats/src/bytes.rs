//! Fixed-size byte strings that travel in JSON as strict lowercase hex.
//!
//! Signed JSON must have exactly one encoding of every value, so parsing
//! refuses upper-case digits, odd lengths and wrong sizes instead of
//! normalising them.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// `N` bytes, rendered as `2N` lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bytes<const N: usize>(pub [u8; N]);

/// Why a hex string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HexError {
    /// The string has the wrong number of digits.
    #[error("expected {expected} hex digits, found {found}")]
    Length {
        /// Digits required.
        expected: usize,
        /// Digits found.
        found: usize,
    },
    /// A character is not a lowercase hex digit.
    #[error("not a lowercase hex digit at position {0}")]
    Digit(usize),
}

impl<const N: usize> Bytes<N> {
    /// Parses exactly `2N` lowercase hex digits.
    pub fn parse_hex(s: &str) -> Result<Self, HexError> {
        if s.len() != 2 * N {
            return Err(HexError::Length {
                expected: 2 * N,
                found: s.len(),
            });
        }
        let mut out = [0u8; N];
        for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
            let hi = digit(pair[0]).ok_or(HexError::Digit(2 * i))?;
            let lo = digit(pair[1]).ok_or(HexError::Digit(2 * i + 1))?;
            out[i] = (hi << 4) | lo;
        }
        Ok(Self(out))
    }

    /// The lowercase hex rendering.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl<const N: usize> fmt::Display for Bytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl<const N: usize> fmt::Debug for Bytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl<const N: usize> From<[u8; N]> for Bytes<N> {
    fn from(b: [u8; N]) -> Self {
        Self(b)
    }
}

impl<const N: usize> Serialize for Bytes<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de, const N: usize> Deserialize<'de> for Bytes<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Self::parse_hex(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_strict_lowercase() {
        assert_eq!(Bytes::<2>::parse_hex("0aff").unwrap().0, [0x0a, 0xff]);
        assert_eq!(Bytes::<2>::parse_hex("0AFF"), Err(HexError::Digit(1)));
        assert!(matches!(
            Bytes::<2>::parse_hex("0af"),
            Err(HexError::Length { .. })
        ));
        assert!(serde_json::from_str::<Bytes<2>>("\"0aff\"").is_ok());
        assert!(serde_json::from_str::<Bytes<2>>("\"0aFf\"").is_err());
        assert_eq!(serde_json::to_string(&Bytes([1u8, 2])).unwrap(), "\"0102\"");
    }
}
