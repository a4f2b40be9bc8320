//! e-Prescriptions and dispensing: the kinds, what the state machine takes
//! from each payload, and the cancellation payload.
//!
//! A `prescription` is a FHIR R4 MedicationRequest and a `dispense` a FHIR
//! R4 MedicationDispense (their rules are in `fhir::medication`); a
//! `prescription.cancel` is a small JSON document of its own. The rules
//! that need the ledger (a dispense names a live prescription, fills and
//! quantities add up) are the state machine's.

use serde::{Deserialize, Serialize};

use crate::payload::PayloadError;
use crate::pseudonym;

/// Kind of an e-prescription (a FHIR MedicationRequest by a doctor).
pub const PRESCRIPTION: &str = "prescription";
/// Kind of a dispense (a FHIR MedicationDispense by a pharmacy).
pub const DISPENSE: &str = "dispense";
/// Kind of a prescriber's cancellation of a prescription.
pub const PRESCRIPTION_CANCEL: &str = "prescription.cancel";

/// The WHO ATC code system.
pub const ATC: &str = "http://www.whocc.no/atc";
/// Most repeats (fills after the first) a prescription may allow.
pub const MAX_REPEATS: u32 = 12;
/// Longest validity period of a prescription, in days.
pub const MAX_VALIDITY_DAYS: i64 = 366;
/// Longest cancellation reason, in bytes.
pub const MAX_REASON: usize = 1024;

/// Whether `code` is a WHO ATC code of the fifth level (a chemical
/// substance): a letter, two digits, two letters, two digits, e.g.
/// `N02AA01`. Prescriptions and dispenses name a substance, never a group.
pub fn is_atc_substance(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() == 7
        && b[0].is_ascii_uppercase()
        && b[1..3].iter().all(u8::is_ascii_digit)
        && b[3..5].iter().all(u8::is_ascii_uppercase)
        && b[5..7].iter().all(u8::is_ascii_digit)
}

/// An amount of a medication: thousandths of a unit (so sums are exact
/// integers on every node), and the UCUM unit code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Amount {
    /// The value times 1000.
    pub milli: u64,
    /// The UCUM code, e.g. `mg` or `{tablet}`.
    pub unit: String,
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (whole, frac) = (self.milli / 1000, self.milli % 1000);
        if frac == 0 {
            write!(f, "{whole} {}", self.unit)
        } else {
            let frac = format!("{frac:03}");
            write!(f, "{whole}.{} {}", frac.trim_end_matches('0'), self.unit)
        }
    }
}

/// What the state machine takes from a valid MedicationRequest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prescription {
    /// The ATC code of the substance prescribed.
    pub atc: String,
    /// `dispenseRequest.quantity`: the amount of one fill.
    pub per_fill: Amount,
    /// `dispenseRequest.numberOfRepeatsAllowed`: fills after the first.
    pub repeats: u32,
    /// Start of `dispenseRequest.validityPeriod`, ms since the epoch.
    pub valid_from_ms: i64,
    /// End of the validity period (exclusive: the end of its last day),
    /// ms since the epoch.
    pub valid_until_ms: i64,
    /// The dose of the first dosage instruction.
    pub dose: Amount,
    /// How often that dose is taken: `frequency` times per `period`
    /// (thousandths) `period_unit` (a FHIR UnitsOfTime code).
    pub frequency: u32,
    /// The period, times 1000.
    pub period_milli: u64,
    /// `s`, `min`, `h`, `d`, `wk`, `mo` or `a`.
    pub period_unit: String,
}

/// What the state machine takes from a valid MedicationDispense.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dispense {
    /// The prescription's transaction id, lowercase hex, from
    /// `authorizingPrescription` (`MedicationRequest/<id>`).
    pub prescription: String,
    /// The ATC code of the substance handed over.
    pub atc: String,
    /// The amount handed over.
    pub quantity: Amount,
    /// `whenHandedOver`, ms since the epoch.
    pub handed_over_ms: i64,
}

/// Payload of `prescription.cancel`: the prescriber withdraws a
/// prescription, so that nothing more is dispensed against it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cancel {
    /// The prescription's transaction id, lowercase hex.
    pub prescription: String,
    /// The patient's pseudonym (the prescription's patient), so the
    /// cancellation shows in the patient's history.
    pub patient: String,
    /// Why, as free text (checked by the PII guard).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// Whether `s` is a transaction id: 64 lowercase hex digits.
pub fn is_tx_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks a `prescription.cancel` payload's schema.
pub fn cancel(payload: &[u8]) -> Result<Cancel, PayloadError> {
    let schema = |m: &str| PayloadError::Schema(m.to_owned());
    let c: Cancel =
        serde_json::from_slice(payload).map_err(|e| PayloadError::Schema(e.to_string()))?;
    if !is_tx_id(&c.prescription) {
        return Err(schema(
            "prescription must be the prescription's transaction id, 64 lowercase hex digits",
        ));
    }
    if !pseudonym::is_well_formed(&c.patient) {
        return Err(schema("patient must be a pseudonym"));
    }
    if c.reason.len() > MAX_REASON {
        return Err(PayloadError::Schema(format!(
            "reason is longer than {MAX_REASON} bytes"
        )));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fifth_level_atc_codes_name_a_substance() {
        for ok in ["N02AA01", "A10BA02", "N05BA12"] {
            assert!(is_atc_substance(ok), "{ok}");
        }
        // Levels 1 to 4, lowercase, a digit for a letter, too long.
        for bad in [
            "N", "N02", "N02A", "N02AA", "n02aa01", "N0AAA01", "N02A101", "N02AA011", "",
        ] {
            assert!(!is_atc_substance(bad), "{bad}");
        }
    }

    #[test]
    fn amounts_print_without_trailing_zeros() {
        let a = |milli, unit: &str| Amount {
            milli,
            unit: unit.into(),
        };
        assert_eq!(a(20_000, "{tablet}").to_string(), "20 {tablet}");
        assert_eq!(a(2_500, "mL").to_string(), "2.5 mL");
        assert_eq!(a(1, "mg").to_string(), "0.001 mg");
    }

    #[test]
    fn a_cancellation_names_a_transaction_and_a_pseudonym() {
        let id = "ab".repeat(32);
        let p = "MFRGGZDFMZTWQ2LKNNWG23TPOA";
        let ok = format!(r#"{{"prescription":"{id}","patient":"{p}","reason":"wrong dose"}}"#);
        assert_eq!(cancel(ok.as_bytes()).unwrap().reason, "wrong dose");
        for bad in [
            format!(
                r#"{{"prescription":"{}","patient":"{p}"}}"#,
                "AB".repeat(32)
            ),
            format!(r#"{{"prescription":"{id}","patient":"someone"}}"#),
            format!(r#"{{"prescription":"{id}","patient":"{p}","extra":1}}"#),
            format!(r#"{{"prescription":"{id}"}}"#),
        ] {
            assert!(
                matches!(cancel(bad.as_bytes()), Err(PayloadError::Schema(_))),
                "{bad}"
            );
        }
    }
}
