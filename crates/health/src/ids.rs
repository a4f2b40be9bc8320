//! Serbian patient identifiers: JMBG and LBO.
//!
//! A JMBG is `DDMMYYYRRBBBK`: day, month, the last three digits of the birth
//! year (`9xx` is 19xx, `0xx` is 20xx), a registration region, a serial and a
//! mod-11 check digit. An LBO (health insurance number) is 11 digits with no
//! public check rule, so on its own it is indistinguishable from any other
//! 11-digit number; the PII guard looks for it next to insurance keywords.

/// Why an identifier is invalid.
#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    /// Something other than digits.
    #[error("an identifier is digits only")]
    NotDigits,
    /// Neither 11 (LBO) nor 13 (JMBG) digits.
    #[error("an identifier is an 11-digit LBO or a 13-digit JMBG, not {0} digits")]
    Length(usize),
    /// The JMBG's first seven digits are not a date.
    #[error("the JMBG does not start with a valid birth date")]
    Date,
    /// The JMBG's check digit is wrong.
    #[error("the JMBG's check digit does not match")]
    CheckDigit,
}

const WEIGHTS: [u32; 12] = [7, 6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2];

/// The check digit of the first 12 digits of a JMBG.
fn check_digit(d: &[u8]) -> u8 {
    let sum: u32 = d
        .iter()
        .zip(WEIGHTS)
        .map(|(&b, w)| u32::from(b - b'0') * w)
        .sum();
    let m = 11 - sum % 11;
    if m > 9 { 0 } else { m as u8 }
}

/// The full birth year of a JMBG's three year digits.
fn year(yyy: u32) -> u32 {
    if yyy >= 800 { 1000 + yyy } else { 2000 + yyy }
}

/// Checks a 13-digit JMBG: digits, a real date and the check digit.
pub fn check_jmbg(s: &str) -> Result<(), IdError> {
    let d = s.as_bytes();
    if !d.iter().all(u8::is_ascii_digit) {
        return Err(IdError::NotDigits);
    }
    if d.len() != 13 {
        return Err(IdError::Length(d.len()));
    }
    let num = |r: std::ops::Range<usize>| {
        d[r].iter()
            .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'))
    };
    let (day, month, y) = (num(0..2), num(2..4), year(num(4..7)));
    if day == 0 || i64::from(day) > crate::calendar::days_in_month(i64::from(y), i64::from(month)) {
        return Err(IdError::Date);
    }
    if check_digit(&d[..12]) != d[12] - b'0' {
        return Err(IdError::CheckDigit);
    }
    Ok(())
}

/// True if `s` is exactly a valid JMBG.
pub fn is_valid_jmbg(s: &str) -> bool {
    check_jmbg(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_jmbgs_pass() {
        // Check digits computed independently (python, the mod-11 rule).
        for s in ["0101990710008", "1503857150010", "3112999500122"] {
            assert_eq!(check_jmbg(s), Ok(()), "{s}");
        }
    }

    #[test]
    fn every_single_digit_change_of_the_check_digit_fails() {
        let base = *b"0101990710008";
        for k in b'0'..=b'9' {
            let mut s = base;
            s[12] = k;
            let s = std::str::from_utf8(&s).unwrap();
            assert_eq!(is_valid_jmbg(s), k == b'8', "{s}");
        }
    }

    #[test]
    fn dates_are_checked() {
        // 29 Feb 2001 does not exist; 29 Feb 2000 does.
        assert_eq!(check_jmbg("2902001710000"), Err(IdError::Date));
        assert_eq!(check_jmbg("0013990710000"), Err(IdError::Date));
        assert_eq!(check_jmbg("0001990710000"), Err(IdError::Date));
        let s = format!("290200071000{}", check_digit(b"290200071000"));
        assert_eq!(check_jmbg(&s), Ok(()));
    }

    #[test]
    fn shape_errors() {
        assert_eq!(check_jmbg("010199071000"), Err(IdError::Length(12)));
        assert_eq!(check_jmbg("01019907100a8"), Err(IdError::NotDigits));
    }
}
