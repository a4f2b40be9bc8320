//! What every payload rule shares: the error a refused payload gets, and
//! the date format of the record schemas.

use crate::fhir::FhirError;
use crate::pii::PiiFinding;

/// Why a payload is refused.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    /// It contains a direct identifier.
    #[error("{0}")]
    Pii(PiiFinding),
    /// It does not fit the kind's schema.
    #[error("{0}")]
    Schema(String),
    /// A FHIR resource breaks a rule.
    #[error("{0}")]
    Fhir(FhirError),
}

/// True for a real calendar date written `YYYY-MM-DD`.
pub fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let d = &b[r];
        d.iter().all(u8::is_ascii_digit).then(|| {
            d.iter()
                .fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0'))
        })
    };
    let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) else {
        return false;
    };
    y >= 1900
        && d >= 1
        && i64::from(d) <= crate::calendar::days_in_month(i64::from(y), i64::from(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        for ok in ["2024-02-29", "2026-11-24", "1900-01-01"] {
            assert!(is_date(ok), "{ok}");
        }
        for bad in [
            "2023-02-29",
            "2026-13-01",
            "2026-1-01",
            "26-11-24",
            "1899-12-31",
            "2026-11-24T",
        ] {
            assert!(!is_date(bad), "{bad}");
        }
    }
}
