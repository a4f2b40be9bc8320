//! Payload schemas of the public-health counts (epidemic and vaccination
//! reports), the organ-donor registry and the patient's chosen doctor.
//!
//! Counts are aggregates, never about one patient: they carry a date, a
//! region and a code, and the statistics endpoints publish them with
//! small-cell suppression. A count report is identified by the reporting
//! institution with its date, region and code (a vaccination also by dose
//! and age band); a later report with the same identity supersedes the
//! earlier one, which stays on the ledger as history.

use crate::payload::{PayloadError, is_date};
use crate::{fhir, pseudonym};
use serde::{Deserialize, Serialize};

/// Kind of a daily epidemic count.
pub const EPIDEMIC_REPORT: &str = "epidemic_report";
/// Kind of a vaccination count.
pub const VACCINATION_REPORT: &str = "vaccination_report";
/// Kind of an organ-donor decision.
pub const ORGAN_DONOR_DECISION: &str = "organ_donor_decision";
/// Kind of a patient's choice of doctor.
pub const CHOSEN_DOCTOR: &str = "chosen_doctor";

/// Largest count one report may carry (the population of a country).
pub const MAX_COUNT: u64 = 100_000_000;

/// Age bands of vaccination counts.
pub const AGE_BANDS: [&str; 9] = [
    "0-4", "5-11", "12-17", "18-29", "30-49", "50-64", "65-74", "75-84", "85+",
];

/// Highest dose number (primary series and boosters).
pub const MAX_DOSE: u8 = 10;

/// A day's counts of one disease in one region, from one reporting
/// institution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpidemicReport {
    /// The day counted, `YYYY-MM-DD`.
    pub date: String,
    /// Region code (a district, e.g. `Nisavski`).
    pub region: String,
    /// The disease, ICD-10 in WHO format (e.g. `U07.1`).
    pub disease: String,
    /// New cases confirmed that day.
    pub new_cases: u64,
    /// Patients in hospital with the disease.
    pub hospitalised: u64,
    /// Patients on a respirator.
    pub on_respirator: u64,
    /// Deaths that day.
    pub deaths: u64,
}

/// Doses of one vaccine given on one day in one region to one age band.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaccinationReport {
    /// The day counted, `YYYY-MM-DD`.
    pub date: String,
    /// Region code.
    pub region: String,
    /// The vaccine: an ATC or CVX code, or a product code.
    pub vaccine: String,
    /// Dose number in the series, 1 to [`MAX_DOSE`].
    pub dose: u8,
    /// One of [`AGE_BANDS`].
    pub age_band: String,
    /// Doses given.
    pub doses: u64,
}

/// The decision recorded in the organ-donor registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Consents to donate every organ and tissue.
    OptInAll,
    /// Consents to donate the organs and tissues listed.
    OptIn,
    /// Refuses donation.
    OptOut,
    /// Withdraws the earlier decision, leaving none on record (which is
    /// not a refusal).
    Withdrawal,
}

/// Organs and tissues a donor may consent to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Organ {
    /// Kidneys.
    Kidneys,
    /// Heart.
    Heart,
    /// Liver.
    Liver,
    /// Lungs.
    Lungs,
    /// Pancreas.
    Pancreas,
    /// Small bowel.
    SmallBowel,
    /// Corneas.
    Corneas,
    /// Other tissue.
    OtherTissue,
}

/// A decision for the organ-donor registry, recorded by the patient's
/// chosen doctor or a registry officer (the signed author).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DonorDecision {
    /// The patient's pseudonym.
    pub patient: String,
    /// The decision.
    pub decision: Decision,
    /// For [`Decision::OptIn`] only: the organs and tissues consented to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organs: Vec<Organ>,
    /// The day the patient declared it, `YYYY-MM-DD`.
    pub date: String,
}

/// A patient's choice of doctor, recorded by the doctor's institution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChosenDoctor {
    /// The patient's pseudonym.
    pub patient: String,
    /// The doctor's public key, 64 hex digits.
    pub doctor: String,
    /// The day the choice takes effect, `YYYY-MM-DD`.
    pub date: String,
}

/// True for a region code: 1 to 64 letters, digits, spaces, `.`, `_` or `-`.
pub fn is_region(s: &str) -> bool {
    is_code(s, 64, true)
}

fn is_code(s: &str, max: usize, spaces: bool) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.trim() == s
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-') || (spaces && c == ' '))
}

fn schema(m: impl Into<String>) -> PayloadError {
    PayloadError::Schema(m.into())
}

fn parse<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, PayloadError> {
    serde_json::from_slice(payload).map_err(|e| schema(e.to_string()))
}

fn counts(named: &[(&str, u64)]) -> Result<(), PayloadError> {
    match named.iter().find(|(_, n)| *n > MAX_COUNT) {
        Some((name, _)) => Err(schema(format!("{name} must be at most {MAX_COUNT}"))),
        None => Ok(()),
    }
}

fn date_region(date: &str, region: &str) -> Result<(), PayloadError> {
    if !is_date(date) {
        return Err(schema("date must be a date, YYYY-MM-DD"));
    }
    if !is_region(region) {
        return Err(schema(
            "region must be a code of 1 to 64 letters, digits, spaces, '.', '_' or '-'",
        ));
    }
    Ok(())
}

/// Checks an epidemic report's payload.
pub fn epidemic(payload: &[u8]) -> Result<EpidemicReport, PayloadError> {
    let r: EpidemicReport = parse(payload)?;
    date_region(&r.date, &r.region)?;
    if !fhir::is_icd10(&r.disease) {
        return Err(schema(
            "disease must be an ICD-10 code in WHO format (e.g. U07.1)",
        ));
    }
    counts(&[
        ("new_cases", r.new_cases),
        ("hospitalised", r.hospitalised),
        ("on_respirator", r.on_respirator),
        ("deaths", r.deaths),
    ])?;
    if r.on_respirator > r.hospitalised {
        return Err(schema("on_respirator cannot exceed hospitalised"));
    }
    Ok(r)
}

/// Checks a vaccination report's payload.
pub fn vaccination(payload: &[u8]) -> Result<VaccinationReport, PayloadError> {
    let r: VaccinationReport = parse(payload)?;
    date_region(&r.date, &r.region)?;
    if !is_code(&r.vaccine, 32, false) {
        return Err(schema(
            "vaccine must be a code of 1 to 32 letters, digits, '.', '_' or '-'",
        ));
    }
    if !(1..=MAX_DOSE).contains(&r.dose) {
        return Err(schema(format!("dose must be 1 to {MAX_DOSE}")));
    }
    if !AGE_BANDS.contains(&r.age_band.as_str()) {
        return Err(schema(format!(
            "age_band must be one of {}",
            AGE_BANDS.join(", ")
        )));
    }
    counts(&[("doses", r.doses)])?;
    Ok(r)
}

/// Checks an organ-donor decision's payload (the author's right to record
/// it is the state machine's business).
pub fn donor(payload: &[u8]) -> Result<DonorDecision, PayloadError> {
    let d: DonorDecision = parse(payload)?;
    if !pseudonym::is_well_formed(&d.patient) {
        return Err(schema("patient must be a pseudonym"));
    }
    if !is_date(&d.date) {
        return Err(schema("date must be a date, YYYY-MM-DD"));
    }
    match d.decision {
        Decision::OptIn if d.organs.is_empty() => {
            return Err(schema("opt_in names at least one organ or tissue"));
        }
        Decision::OptIn => {
            let mut seen = d.organs.clone();
            seen.sort();
            seen.dedup();
            if seen.len() != d.organs.len() {
                return Err(schema("organs must not repeat"));
            }
        }
        _ if !d.organs.is_empty() => {
            return Err(schema("organs are given with opt_in only"));
        }
        _ => {}
    }
    Ok(d)
}

/// Checks a chosen-doctor record's payload.
pub fn chosen_doctor(payload: &[u8]) -> Result<ChosenDoctor, PayloadError> {
    let c: ChosenDoctor = parse(payload)?;
    if !pseudonym::is_well_formed(&c.patient) {
        return Err(schema("patient must be a pseudonym"));
    }
    if c.doctor.len() != 64 || !c.doctor.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(schema("doctor must be a public key, 64 hex digits"));
    }
    if !is_date(&c.date) {
        return Err(schema("date must be a date, YYYY-MM-DD"));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const P: &str = "MFRGGZDFMZTWQ2LKNNWG23TPOA";

    fn bytes(v: &Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    /// Each case: a valid document with one field replaced, and a word the
    /// error must contain.
    fn refused<T: std::fmt::Debug>(
        check: fn(&[u8]) -> Result<T, PayloadError>,
        ok: &Value,
        cases: &[(&str, Value, &str)],
    ) {
        assert!(check(&bytes(ok)).is_ok(), "{ok}");
        for (field, value, expect) in cases {
            let mut v = ok.clone();
            if value.is_null() {
                v.as_object_mut().unwrap().remove(*field);
            } else {
                v[*field] = value.clone();
            }
            let err = check(&bytes(&v)).unwrap_err().to_string();
            assert!(err.contains(expect), "{field}={value}: {err}");
        }
    }

    #[test]
    fn epidemic_reports() {
        let ok = json!({"date": "2026-11-20", "region": "Nisavski", "disease": "U07.1",
            "new_cases": 12, "hospitalised": 3, "on_respirator": 1, "deaths": 0});
        refused(
            epidemic,
            &ok,
            &[
                ("date", json!("2026-11-31"), "date"),
                ("region", json!(""), "region"),
                ("region", json!("Nis/Centar"), "region"),
                ("disease", json!("covid"), "ICD-10"),
                ("new_cases", json!(-1), "invalid value"),
                ("deaths", json!(MAX_COUNT + 1), "deaths"),
                ("on_respirator", json!(4), "exceed"),
                ("deaths", Value::Null, "deaths"),
                ("patient", json!(P), "unknown field"),
            ],
        );
    }

    #[test]
    fn vaccination_reports() {
        let ok = json!({"date": "2026-11-20", "region": "Beograd", "vaccine": "J07BX03",
            "dose": 2, "age_band": "65-74", "doses": 140});
        refused(
            vaccination,
            &ok,
            &[
                ("dose", json!(0), "dose"),
                ("dose", json!(11), "dose"),
                ("age_band", json!("65-75"), "age_band"),
                ("vaccine", json!("J07 BX03"), "vaccine"),
                ("doses", json!(1.5), "invalid type"),
            ],
        );
    }

    #[test]
    fn donor_decisions() {
        let ok = json!({"patient": P, "decision": "opt_in", "organs": ["kidneys", "corneas"],
            "date": "2026-11-24"});
        refused(
            donor,
            &ok,
            &[
                ("organs", json!([]), "at least one"),
                ("organs", json!(["kidneys", "kidneys"]), "repeat"),
                ("organs", json!(["spleen"]), "unknown variant"),
                ("decision", json!("maybe"), "unknown variant"),
                ("patient", json!("Petar Petrovic"), "pseudonym"),
                ("date", json!("yesterday"), "date"),
            ],
        );
        for decision in ["opt_in_all", "opt_out", "withdrawal"] {
            let v = json!({"patient": P, "decision": decision, "date": "2026-11-24"});
            assert!(donor(&bytes(&v)).is_ok(), "{v}");
            let mut with_organs = v.clone();
            with_organs["organs"] = json!(["heart"]);
            assert!(donor(&bytes(&with_organs)).is_err(), "{with_organs}");
        }
    }

    #[test]
    fn chosen_doctors() {
        let ok = json!({"patient": P, "doctor": "ab".repeat(32), "date": "2026-01-15"});
        refused(
            chosen_doctor,
            &ok,
            &[
                ("doctor", json!("ab".repeat(31)), "public key"),
                ("doctor", json!("zz".repeat(32)), "public key"),
                ("date", json!("2026-1-15"), "date"),
            ],
        );
    }
}
