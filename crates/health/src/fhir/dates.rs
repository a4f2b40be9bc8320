//! FHIR dates and dateTimes: what they are, the time range each covers,
//! and the `date` search parameter's comparisons.

use super::error::{FhirError, rule};

const MS_PER_DAY: i64 = 86_400_000;

/// A parsed FHIR date or dateTime.
enum Parsed {
    Year(i64),
    Month(i64, i64),
    Day(i64, i64, i64),
    Time {
        /// Start of the day, ms since the epoch, in the local time of the
        /// value.
        day_ms: i64,
        /// Time of day, ms.
        time_ms: i64,
        /// Width of the precision given, ms.
        width: i64,
        /// Offset from UTC, ms.
        offset_ms: i64,
    },
}

/// A fixed-width decimal number at `b[at..at + len]`.
fn digits(b: &[u8], at: usize, len: usize) -> Option<i64> {
    let s = b.get(at..at + len)?;
    s.iter().try_fold(0i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

/// Parses a FHIR date or dateTime: `YYYY`, `YYYY-MM`, `YYYY-MM-DD` or
/// `YYYY-MM-DDThh:mm:ss[.fraction](Z|+hh:mm|-hh:mm)`.
fn parse_date_time(s: &str) -> Option<Parsed> {
    let b = s.as_bytes();
    let year = digits(b, 0, 4).filter(|y| *y >= 1)?;
    if b.len() == 4 {
        return Some(Parsed::Year(year));
    }
    let sep = |at: usize, c: u8| b.get(at) == Some(&c);
    if !sep(4, b'-') {
        return None;
    }
    let month = digits(b, 5, 2).filter(|m| (1..=12).contains(m))?;
    if b.len() == 7 {
        return Some(Parsed::Month(year, month));
    }
    if !sep(7, b'-') {
        return None;
    }
    let day = digits(b, 8, 2)
        .filter(|d| (1..=crate::calendar::days_in_month(year, month)).contains(d))?;
    if b.len() == 10 {
        return Some(Parsed::Day(year, month, day));
    }
    if !(sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    let hour = digits(b, 11, 2).filter(|h| *h <= 23)?;
    let minute = digits(b, 14, 2).filter(|m| *m <= 59)?;
    let second = digits(b, 17, 2).filter(|s| *s <= 60)?;
    let mut at = 19;
    let mut millis = 0;
    let mut width = 1000;
    if sep(at, b'.') {
        let n = b
            .get(at + 1..)?
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if !(1..=9).contains(&n) {
            return None;
        }
        let kept = n.min(3);
        millis = digits(b, at + 1, kept)?;
        for _ in kept..3 {
            millis *= 10;
        }
        width = match n {
            1 => 100,
            2 => 10,
            _ => 1,
        };
        at += 1 + n;
    }
    let offset_ms = match b.get(at..)? {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), rest @ ..] if rest.len() == 5 && rest[2] == b':' => {
            let oh = digits(rest, 0, 2)?;
            let om = digits(rest, 3, 2).filter(|m| *m <= 59)?;
            if oh > 14 || (oh == 14 && om != 0) {
                return None;
            }
            let off = (oh * 60 + om) * 60_000;
            if *sign == b'-' { -off } else { off }
        }
        _ => return None,
    };
    Some(Parsed::Time {
        day_ms: crate::calendar::days_from_civil(year, month, day) * MS_PER_DAY,
        time_ms: ((hour * 60 + minute) * 60 + second) * 1000 + millis,
        width,
        offset_ms,
    })
}

/// The UTC range `(start_ms, end_ms)` (start inclusive, end exclusive, ms
/// since the Unix epoch) a FHIR date or dateTime covers at its precision:
/// `YYYY`, `YYYY-MM`, `YYYY-MM-DD` or `YYYY-MM-DDThh:mm:ss[.fraction]` with
/// `Z` or `±hh:mm`. Values without a time are taken as UTC. `None` if `s`
/// is not such a value.
pub fn date_range(s: &str) -> Option<(i64, i64)> {
    let day = |y, m, d| crate::calendar::days_from_civil(y, m, d) * MS_PER_DAY;
    Some(match parse_date_time(s)? {
        Parsed::Year(y) => (day(y, 1, 1), day(y + 1, 1, 1)),
        Parsed::Month(y, m) => {
            let start = day(y, m, 1);
            (
                start,
                start + crate::calendar::days_in_month(y, m) * MS_PER_DAY,
            )
        }
        Parsed::Day(y, m, d) => {
            let start = day(y, m, d);
            (start, start + MS_PER_DAY)
        }
        Parsed::Time {
            day_ms,
            time_ms,
            width,
            offset_ms,
        } => {
            let start = day_ms + time_ms - offset_ms;
            (start, start + width)
        }
    })
}

/// A prefix of a date search parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prefix {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Sa,
    Eb,
    Ap,
}

/// One value of a `date` search parameter, e.g. `ge2026-01-01`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DateParam {
    prefix: Prefix,
    /// The range the value covers, `[start, end)` ms; for `ap`, widened.
    start: i64,
    end: i64,
}

/// Share of the distance between an `ap` value and now by which its range
/// is widened on each side (the 10 % the FHIR R4 search page suggests).
const AP_PERCENT: i64 = 10;

impl DateParam {
    /// Parses one value (prefix and date). `now_ms` is the instant `ap`
    /// measures its approximation from: the value's range is widened on
    /// each side by 10 % of the distance between its start and `now_ms`
    /// (not at all for a value at `now_ms`). A malformed value is a 400
    /// error.
    pub fn parse(param: &str, now_ms: i64) -> Result<DateParam, FhirError> {
        let (prefix, rest) = match param.get(..2) {
            Some(p) if p.bytes().all(|c| c.is_ascii_lowercase()) => {
                let prefix = match p {
                    "eq" => Prefix::Eq,
                    "ne" => Prefix::Ne,
                    "lt" => Prefix::Lt,
                    "gt" => Prefix::Gt,
                    "le" => Prefix::Le,
                    "ge" => Prefix::Ge,
                    "sa" => Prefix::Sa,
                    "eb" => Prefix::Eb,
                    "ap" => Prefix::Ap,
                    _ => {
                        return Err(FhirError::new(
                            400,
                            "not-supported",
                            None,
                            "date search prefixes are eq, ne, lt, gt, le, ge, sa, eb and ap",
                        ));
                    }
                };
                (prefix, param.get(2..).unwrap_or_default())
            }
            _ => (Prefix::Eq, param),
        };
        let Some((mut start, mut end)) = date_range(rest) else {
            return Err(FhirError::new(
                400,
                "value",
                None,
                "a date search value is YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.fff](Z|+hh:mm|-hh:mm), optionally prefixed",
            ));
        };
        if prefix == Prefix::Ap {
            let slack = now_ms.abs_diff(start) / AP_PERCENT.unsigned_abs();
            let slack = i64::try_from(slack).unwrap_or(i64::MAX);
            start = start.saturating_sub(slack);
            end = end.saturating_add(slack);
        }
        Ok(DateParam { prefix, start, end })
    }

    /// Whether a resource date `value` satisfies this parameter.
    ///
    /// Both are compared as the ranges [`date_range`] gives. Prefixes: `eq`
    /// (the default; the ranges overlap), `ne` (they do not), `lt` / `gt`
    /// (the value has time before / after the parameter's range), `le` /
    /// `ge` (`lt` / `gt` or `eq`), `sa` (the value starts after the
    /// parameter's range), `eb` (the value ends before it), `ap` (the
    /// value overlaps the widened range). A value that is not a date
    /// matches nothing.
    pub fn matches(&self, value: &str) -> bool {
        let Some((rs, re)) = date_range(value) else {
            return false;
        };
        let (ps, pe) = (self.start, self.end);
        let overlaps = rs < pe && ps < re;
        match self.prefix {
            Prefix::Eq | Prefix::Ap => overlaps,
            Prefix::Ne => !overlaps,
            Prefix::Lt => rs < ps,
            Prefix::Gt => re > pe,
            Prefix::Le => rs < pe,
            Prefix::Ge => re > ps,
            Prefix::Sa => rs >= pe,
            Prefix::Eb => re <= ps,
        }
    }
}

/// Whether a resource date `value` satisfies the `date` search parameter
/// `param` ([`DateParam`]), with `ap` measured from `now_ms`.
pub fn date_matches(param: &str, value: &str, now_ms: i64) -> Result<bool, FhirError> {
    Ok(DateParam::parse(param, now_ms)?.matches(value))
}

/// Checks a dateTime element and returns it as given.
pub(super) fn check_date_time(s: Option<&str>, path: &str) -> Result<Option<String>, FhirError> {
    match s {
        None => Ok(None),
        Some(s) if parse_date_time(s).is_some() => Ok(Some(s.to_owned())),
        Some(_) => Err(rule(
            "value",
            path,
            format!(
                "{path} must be a FHIR dateTime: YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.fff](Z|+hh:mm|-hh:mm)"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAN_1_2026: i64 = 1_767_225_600_000;
    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;

    #[test]
    fn date_range_at_each_precision() {
        assert_eq!(
            date_range("2026"),
            Some((JAN_1_2026, JAN_1_2026 + 365 * DAY))
        );
        assert_eq!(
            date_range("2024"),
            Some((JAN_1_2026 - 731 * DAY, JAN_1_2026 - 365 * DAY))
        );
        assert_eq!(
            date_range("2026-01"),
            Some((JAN_1_2026, JAN_1_2026 + 31 * DAY))
        );
        let feb_2024 = date_range("2024-02").unwrap();
        assert_eq!(feb_2024.1 - feb_2024.0, 29 * DAY);
        assert_eq!(
            date_range("2026-12"),
            Some((JAN_1_2026 + 334 * DAY, JAN_1_2026 + 365 * DAY))
        );
        assert_eq!(
            date_range("2026-01-01"),
            Some((JAN_1_2026, JAN_1_2026 + DAY))
        );
        assert_eq!(
            date_range("2026-01-01T09:00:00Z"),
            Some((JAN_1_2026 + 9 * HOUR, JAN_1_2026 + 9 * HOUR + 1000))
        );
        let t = JAN_1_2026 + 9 * HOUR + 123;
        assert_eq!(date_range("2026-01-01T09:00:00.123Z"), Some((t, t + 1)));
        assert_eq!(date_range("2026-01-01T09:00:00.123456Z"), Some((t, t + 1)));
        let t = JAN_1_2026 + 9 * HOUR + 100;
        assert_eq!(date_range("2026-01-01T09:00:00.1Z"), Some((t, t + 100)));
        let t = JAN_1_2026 + 9 * HOUR + 120;
        assert_eq!(date_range("2026-01-01T09:00:00.12Z"), Some((t, t + 10)));
        assert!(date_range("1969-12-31").unwrap().0 < 0);
        assert_eq!(date_range("0001-01-01").unwrap().0, -62_135_596_800_000);
    }

    #[test]
    fn date_range_timezone_offsets() {
        let utc = date_range("2026-01-01T09:00:00Z").unwrap();
        assert_eq!(date_range("2026-01-01T10:00:00+01:00"), Some(utc));
        assert_eq!(date_range("2026-01-01T04:30:00-04:30"), Some(utc));
        assert_eq!(date_range("2026-01-01T09:00:00+00:00"), Some(utc));
        assert_eq!(date_range("2026-01-01T09:00:00-00:00"), Some(utc));
        // Crossing a day and a year boundary.
        assert_eq!(
            date_range("2025-12-31T23:00:00-10:00").unwrap().0,
            JAN_1_2026 + 9 * HOUR
        );
        assert_eq!(
            date_range("2026-01-01T00:30:00+14:00").unwrap().0,
            JAN_1_2026 - 13 * HOUR - 30 * 60_000
        );
        assert_eq!(date_range("2026-01-01T09:00:00"), None);
        assert_eq!(date_range("2024-02-29T12:00:00Z").map(|_| ()), Some(()));
        assert_eq!(date_range("2023-02-29T12:00:00Z"), None);
        assert_eq!(date_range("1900-02-29"), None);
        assert_eq!(date_range("2000-02-29").map(|_| ()), Some(()));
        assert_eq!(date_range("2026-04-31"), None);
        assert_eq!(date_range("2026-13"), None);
    }

    #[test]
    fn ap_widens_by_a_tenth_of_the_distance_to_now() {
        // Now is 2026-01-01; 2016-01-01 is 3653 days earlier, so `ap` reaches
        // 365.3 days to either side of that day.
        let now = JAN_1_2026;
        let ap = |v: &str| date_matches("ap2016-01-01", v, now).unwrap();
        assert!(ap("2016-01-01T12:00:00Z"));
        assert!(ap("2016-12-30"));
        assert!(ap("2015-01-02"));
        assert!(!ap("2017-01-02"));
        assert!(!ap("2014-12-30"));
        // At now itself there is no slack: ap is eq.
        assert!(date_matches("ap2026-01-01", "2026-01-01T23:00:00Z", now).unwrap());
        assert!(!date_matches("ap2026-01-01", "2026-01-02", now).unwrap());
        // A future value is measured the same way.
        assert!(date_matches("ap2036-01-01", "2035-02-01", now).unwrap());
        assert!(!date_matches("ap2036-01-01", "2034-11-01", now).unwrap());
    }

    #[test]
    fn date_matches_with_prefixes() {
        let at = "2026-01-15T09:00:00Z";
        let now = JAN_1_2026;
        let yes = |p: &str, v: &str| assert!(date_matches(p, v, now).unwrap(), "{p} vs {v}");
        let no = |p: &str, v: &str| assert!(!date_matches(p, v, now).unwrap(), "{p} vs {v}");
        yes("2026-01-15", at);
        yes("eq2026-01-15", at);
        yes("eq2026-01", at);
        yes("2026", at);
        no("2026-01-16", at);
        no("eq2026-01-14", at);
        yes("ne2026-01-14", at);
        no("ne2026-01-15", at);
        yes("lt2026-01-16", at);
        no("lt2026-01-15", at);
        yes("le2026-01-15", at);
        no("le2026-01-14", at);
        yes("gt2026-01-14", at);
        no("gt2026-01-15", at);
        yes("ge2026-01-15", at);
        yes("ge2026-01-01", at);
        no("ge2026-01-16", at);
        yes("sa2026-01-14", at);
        no("sa2026-01-15", at);
        yes("eb2026-01-16", at);
        no("eb2026-01-15", at);
        // Time zones: 09:00Z is 10:00 in +01:00.
        yes("eq2026-01-15T10:00:00+01:00", at);
        no("eq2026-01-15T09:00:00+01:00", at);
        yes("gt2026-01-15T09:00:00+01:00", at);
        // A less precise resource date overlaps a more precise parameter.
        yes("eq2026-01-15", "2026-01");
        yes("lt2026-01-15", "2026-01");
        yes("gt2026-01-15", "2026-01");
        no("sa2026-01-15", "2026-01");
        // An unusable stored date matches nothing.
        no("ne2026-01-15", "garbage");
        for bad in [
            "",
            "xx2026",
            "ax2026-01-01",
            "ge",
            "ge2026-1",
            "GE2026",
            "2026-01-01T09:00:00",
        ] {
            let e = date_matches(bad, at, now).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
        }
    }
}
