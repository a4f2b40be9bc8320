//! MedicationRequest (an e-prescription) and MedicationDispense rules: the
//! medication coded in WHO ATC at the substance level, structured doses and
//! amounts in UCUM, the validity period and the fills allowed.

use serde_json::{Map, Value};

use super::dates::{check_date_time, date_range};
use super::elements::{
    Coding, Walk, check_status, code_pairs, common_rules, get_arr, get_obj, get_str, opt_cc,
    opt_ref, patient_reference, quantity, refuse_contained,
};
use super::error::{FhirError, rule, structure};
use super::observation::check_ucum_system;
use super::storage::{KIND_DISPENSE, KIND_PRESCRIPTION, Summary};
use crate::prescription::{
    ATC, Amount, Dispense, MAX_REPEATS, MAX_VALIDITY_DAYS, Prescription, is_atc_substance, is_tx_id,
};

/// What [`super::validate`] learned beyond the summary of a medication
/// resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MedicationFacts {
    /// A MedicationRequest.
    Request(Prescription),
    /// A MedicationDispense.
    Dispense(Dispense),
}

/// UCUM units a medication amount or dose may be given in: mass, volume,
/// substance and international units, and drops; besides these, any UCUM
/// annotation of a count (`{tablet}`, `{capsule}`, `{puff}`, ...).
const METRIC_UNITS: &[&str] = &[
    "ug", "mg", "g", "mL", "L", "mmol", "[IU]", "[iU]", "[drp]", "1",
];

/// FHIR UnitsOfTime codes.
const UNITS_OF_TIME: &[&str] = &["s", "min", "h", "d", "wk", "mo", "a"];

/// Most dosage instructions on one prescription.
const MAX_DOSAGES: usize = 10;

/// Largest amount accepted, in units (a typing error beyond).
const MAX_AMOUNT: f64 = 1_000_000.0;

/// Whether `code` is a UCUM unit accepted for medication amounts.
pub fn is_medication_unit(code: &str) -> bool {
    if METRIC_UNITS.contains(&code) {
        return true;
    }
    // A UCUM annotation: `{` lowercase words joined by `-` `}`.
    code.strip_prefix('{')
        .and_then(|c| c.strip_suffix('}'))
        .is_some_and(|a| {
            (1..=32).contains(&a.len())
                && a.as_bytes()[0].is_ascii_lowercase()
                && a.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
        })
}

/// A positive value with at most three decimals, as thousandths.
fn milli(x: f64, path: &str) -> Result<u64, FhirError> {
    if !(x > 0.0 && x <= MAX_AMOUNT) {
        return Err(rule(
            "value",
            path,
            format!("{path} must be greater than 0 and at most {MAX_AMOUNT}"),
        ));
    }
    let scaled = x * 1000.0;
    let m = scaled.round();
    if (scaled - m).abs() > 1e-6 {
        return Err(rule(
            "value",
            path,
            format!("{path} has more than three decimals"),
        ));
    }
    Ok(m as u64)
}

/// A required Quantity with a positive value in an accepted UCUM unit.
fn amount(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Amount, FhirError> {
    let p = format!("{path}.{key}");
    let Some(v) = obj.get(key) else {
        return Err(rule("required", &p, format!("{p} is required")));
    };
    let q = quantity(v, &p)?;
    let Some(value) = q.value else {
        return Err(rule(
            "required",
            format!("{p}.value"),
            format!("{p}.value is required"),
        ));
    };
    let milli = milli(value, &format!("{p}.value"))?;
    let Some(code) = q.code else {
        return Err(rule(
            "required",
            format!("{p}.code"),
            format!("{p}.code is required: a UCUM unit such as mg, mL or {{tablet}}"),
        ));
    };
    if !is_medication_unit(code) {
        return Err(rule(
            "code-invalid",
            format!("{p}.code"),
            format!(
                "{p}.code is not an accepted UCUM unit: use one of {} or an annotation such as {{tablet}}",
                METRIC_UNITS.join(", ")
            ),
        ));
    }
    check_ucum_system(q.system, &p)?;
    Ok(Amount {
        milli,
        unit: code.to_owned(),
    })
}

/// The medication: a `medicationCodeableConcept` with a fifth-level ATC
/// coding. Returns the ATC code and every coding's `(system, code)`.
fn medication(
    obj: &Map<String, Value>,
    rt: &str,
) -> Result<(String, Vec<(String, String)>), FhirError> {
    if obj.contains_key("medicationReference") {
        return Err(rule(
            "not-supported",
            format!("{rt}.medicationReference"),
            format!(
                "{rt}.medicationReference is not accepted; code the medication in {rt}.medicationCodeableConcept with WHO ATC"
            ),
        ));
    }
    let path = format!("{rt}.medicationCodeableConcept");
    let Some(codings) = opt_cc(obj, "medicationCodeableConcept", rt)? else {
        return Err(rule(
            "required",
            &path,
            format!("{path} is required, with a WHO ATC coding ({ATC})"),
        ));
    };
    let atc: Vec<&Coding<'_>> = codings.iter().filter(|c| c.system == ATC).collect();
    let code = match atc.as_slice() {
        [] => {
            return Err(rule(
                "required",
                format!("{path}.coding"),
                format!("{path} needs a coding with system {ATC}"),
            ));
        }
        [one] => one.code,
        _ => {
            return Err(rule(
                "invalid",
                format!("{path}.coding"),
                format!("{path} has more than one ATC coding; a prescription names one substance"),
            ));
        }
    };
    if !is_atc_substance(code) {
        return Err(rule(
            "code-invalid",
            format!("{path}.coding.code"),
            "the ATC code must name a substance (level 5): a letter, two digits, two letters, two digits, e.g. N02AA01",
        ));
    }
    Ok((code.to_owned(), code_pairs(Some(&codings))))
}

/// A required string element that must be `want`.
fn fixed(obj: &Map<String, Value>, key: &str, rt: &str, want: &str) -> Result<(), FhirError> {
    let path = format!("{rt}.{key}");
    match get_str(obj, key, rt)? {
        None => Err(rule("required", &path, format!("{path} is required"))),
        Some(s) if s == want => Ok(()),
        Some(_) => Err(rule("value", &path, format!("{path} must be {want}"))),
    }
}

/// One dosage instruction: `doseAndRate[0].doseQuantity` and
/// `timing.repeat` (frequency, period, periodUnit).
fn dosage(d: &Value, path: &str) -> Result<(Amount, u32, u64, String), FhirError> {
    let Some(d) = d.as_object() else {
        return Err(structure(path, format!("{path} must be a Dosage object")));
    };
    let rates = get_arr(d, "doseAndRate", path)?.unwrap_or_default();
    let Some(first) = rates.first() else {
        return Err(rule(
            "required",
            format!("{path}.doseAndRate"),
            format!("{path}.doseAndRate with a doseQuantity is required"),
        ));
    };
    let rate_path = format!("{path}.doseAndRate[0]");
    let Some(rate) = first.as_object() else {
        return Err(structure(
            &rate_path,
            format!("{rate_path} must be an object"),
        ));
    };
    let dose = amount(rate, "doseQuantity", &rate_path)?;
    let timing_path = format!("{path}.timing.repeat");
    let repeat = get_obj(d, "timing", path)?
        .map(|t| get_obj(t, "repeat", &format!("{path}.timing")))
        .transpose()?
        .flatten();
    let Some(repeat) = repeat else {
        return Err(rule(
            "required",
            &timing_path,
            format!("{timing_path} is required (frequency, period, periodUnit)"),
        ));
    };
    let frequency = match repeat.get("frequency") {
        Some(Value::Number(n)) => match n.as_u64() {
            Some(f @ 1..=100) => f as u32,
            _ => {
                return Err(rule(
                    "value",
                    format!("{timing_path}.frequency"),
                    format!("{timing_path}.frequency must be a whole number from 1 to 100"),
                ));
            }
        },
        Some(_) => {
            return Err(structure(
                format!("{timing_path}.frequency"),
                format!("{timing_path}.frequency must be a number"),
            ));
        }
        None => {
            return Err(rule(
                "required",
                format!("{timing_path}.frequency"),
                format!("{timing_path}.frequency is required"),
            ));
        }
    };
    let period = match repeat.get("period") {
        Some(Value::Number(n)) => {
            milli(n.as_f64().unwrap_or(-1.0), &format!("{timing_path}.period"))?
        }
        Some(_) => {
            return Err(structure(
                format!("{timing_path}.period"),
                format!("{timing_path}.period must be a number"),
            ));
        }
        None => {
            return Err(rule(
                "required",
                format!("{timing_path}.period"),
                format!("{timing_path}.period is required"),
            ));
        }
    };
    let unit = get_str(repeat, "periodUnit", &timing_path)?;
    let Some(unit) = unit.filter(|u| UNITS_OF_TIME.contains(u)) else {
        return Err(rule(
            if unit.is_none() {
                "required"
            } else {
                "code-invalid"
            },
            format!("{timing_path}.periodUnit"),
            format!(
                "{timing_path}.periodUnit is required: one of {}",
                UNITS_OF_TIME.join(", ")
            ),
        ));
    };
    Ok((dose, frequency, period, unit.to_owned()))
}

/// The validity period: `start` and `end` dates (or dateTimes), end not
/// before start, at most [`MAX_VALIDITY_DAYS`] long. Returns the UTC range
/// it covers, end exclusive.
fn validity(req: &Map<String, Value>, path: &str) -> Result<(i64, i64), FhirError> {
    let p = format!("{path}.validityPeriod");
    let Some(period) = get_obj(req, "validityPeriod", path)? else {
        return Err(rule(
            "required",
            &p,
            format!("{p} is required, with a start and an end date"),
        ));
    };
    let mut bounds = [0i64; 2];
    for (i, key) in ["start", "end"].into_iter().enumerate() {
        let kp = format!("{p}.{key}");
        let s = get_str(period, key, &p)?;
        let Some(s) = check_date_time(s, &kp)? else {
            return Err(rule("required", &kp, format!("{kp} is required")));
        };
        let Some((from, until)) = date_range(&s) else {
            return Err(rule("value", &kp, format!("{kp} must be a date")));
        };
        bounds[i] = if i == 0 { from } else { until };
    }
    let [from, until] = bounds;
    if until <= from {
        return Err(rule(
            "invalid",
            format!("{p}.end"),
            format!("{p}.end is before its start"),
        ));
    }
    if until - from > MAX_VALIDITY_DAYS * 86_400_000 {
        return Err(rule(
            "value",
            format!("{p}.end"),
            format!("{p} is longer than {MAX_VALIDITY_DAYS} days"),
        ));
    }
    Ok((from, until))
}

/// What both medication resources open with, in the order the other
/// resources check it: the common rules, the structure, no contained
/// resources, a pseudonym `subject` and a status among `statuses`. Returns
/// the walk (its rule failures are reported last), the patient and the raw
/// `time_field`.
fn opening<'a>(
    obj: &'a Map<String, Value>,
    rt: &str,
    time_field: &str,
    statuses: &[&str],
) -> Result<(Walk, String, Option<&'a str>), FhirError> {
    common_rules(obj, rt)?;
    let subject = opt_ref(obj, "subject", rt)?;
    let time = get_str(obj, time_field, rt)?;
    let mut walk = Walk::of(obj, rt);
    if let Some(e) = walk.structure.take() {
        return Err(e);
    }
    refuse_contained(obj, rt)?;
    let patient = patient_reference(rt, "subject", subject.as_ref())?;
    check_status(
        get_str(obj, "status", rt)?,
        statuses,
        &format!("{rt}.status"),
    )?;
    Ok((walk, patient, time))
}

pub(super) fn validate_medication_request(
    obj: &Map<String, Value>,
) -> Result<(Summary, Prescription), FhirError> {
    const RT: &str = "MedicationRequest";
    let (walk, patient, authored) = opening(obj, RT, "authoredOn", &["active"])?;
    fixed(obj, "intent", RT, "order")?;
    let (atc, codes) = medication(obj, RT)?;
    let authored = check_date_time(authored, "MedicationRequest.authoredOn")?;

    let dosages = get_arr(obj, "dosageInstruction", RT)?.unwrap_or_default();
    if dosages.is_empty() || dosages.len() > MAX_DOSAGES {
        return Err(rule(
            "required",
            "MedicationRequest.dosageInstruction",
            format!(
                "MedicationRequest.dosageInstruction must hold 1 to {MAX_DOSAGES} structured doses"
            ),
        ));
    }
    let mut first = None;
    for (i, d) in dosages.iter().enumerate() {
        let parsed = dosage(d, &format!("MedicationRequest.dosageInstruction[{i}]"))?;
        first.get_or_insert(parsed);
    }
    let Some((dose, frequency, period_milli, period_unit)) = first else {
        return Err(rule(
            "required",
            "MedicationRequest.dosageInstruction",
            "MedicationRequest.dosageInstruction is required",
        ));
    };

    const DR: &str = "MedicationRequest.dispenseRequest";
    let Some(req) = get_obj(obj, "dispenseRequest", RT)? else {
        return Err(rule(
            "required",
            DR,
            format!("{DR} is required: quantity, validityPeriod, numberOfRepeatsAllowed"),
        ));
    };
    let per_fill = amount(req, "quantity", DR)?;
    let (valid_from_ms, valid_until_ms) = validity(req, DR)?;
    let repeats = match req.get("numberOfRepeatsAllowed") {
        None => 0,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(r) if r <= u64::from(MAX_REPEATS) => r as u32,
            _ => {
                return Err(rule(
                    "value",
                    format!("{DR}.numberOfRepeatsAllowed"),
                    format!(
                        "{DR}.numberOfRepeatsAllowed must be a whole number from 0 (a single fill) to {MAX_REPEATS}"
                    ),
                ));
            }
        },
        Some(_) => {
            return Err(structure(
                format!("{DR}.numberOfRepeatsAllowed"),
                format!("{DR}.numberOfRepeatsAllowed must be a number"),
            ));
        }
    };
    if let Some(e) = walk.rule {
        return Err(e);
    }
    let summary = Summary {
        kind: KIND_PRESCRIPTION,
        resource_type: RT,
        patient,
        date: authored,
        codes,
        category: None,
        identifiers: Vec::new(),
    };
    Ok((
        summary,
        Prescription {
            atc,
            per_fill,
            repeats,
            valid_from_ms,
            valid_until_ms,
            dose,
            frequency,
            period_milli,
            period_unit,
        },
    ))
}

pub(super) fn validate_medication_dispense(
    obj: &Map<String, Value>,
) -> Result<(Summary, Dispense), FhirError> {
    const RT: &str = "MedicationDispense";
    let (walk, patient, handed) = opening(obj, RT, "whenHandedOver", &["completed"])?;
    let (atc, codes) = medication(obj, RT)?;

    const AP: &str = "MedicationDispense.authorizingPrescription";
    let auth = get_arr(obj, "authorizingPrescription", RT)?.unwrap_or_default();
    let [one] = auth else {
        return Err(rule(
            "required",
            AP,
            format!("{AP} must hold exactly one reference, MedicationRequest/<transaction id>"),
        ));
    };
    let reference = one.get("reference").and_then(Value::as_str);
    let prescription = match reference.and_then(|r| r.strip_prefix("MedicationRequest/")) {
        Some(id) if is_tx_id(id) => id.to_owned(),
        _ => {
            return Err(rule(
                "value",
                format!("{AP}[0].reference"),
                format!(
                    "{AP}[0].reference must be MedicationRequest/<id>, the prescription's transaction id (64 lowercase hex digits)"
                ),
            ));
        }
    };
    let quantity = amount(obj, "quantity", RT)?;
    let Some(handed) = check_date_time(handed, "MedicationDispense.whenHandedOver")? else {
        return Err(rule(
            "required",
            "MedicationDispense.whenHandedOver",
            "MedicationDispense.whenHandedOver is required",
        ));
    };
    let handed_over_ms = match date_range(&handed) {
        Some((t, _)) if handed.contains('T') => t,
        _ => {
            return Err(rule(
                "value",
                "MedicationDispense.whenHandedOver",
                "MedicationDispense.whenHandedOver must be an instant with a time zone, e.g. 2026-12-03T10:15:00Z",
            ));
        }
    };
    if let Some(e) = walk.rule {
        return Err(e);
    }
    let summary = Summary {
        kind: KIND_DISPENSE,
        resource_type: RT,
        patient,
        date: Some(handed),
        codes,
        category: None,
        identifiers: Vec::new(),
    };
    Ok((
        summary,
        Dispense {
            prescription,
            atc,
            quantity,
            handed_over_ms,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::validate_with_facts;
    use serde_json::json;

    const UCUM: &str = "http://unitsofmeasure.org";

    const P: &str = "MFRGGZDFMZTWQ2LKNNWG23TPOA";

    fn tablets(value: f64) -> Value {
        json!({"value": value, "unit": "tablet", "system": UCUM, "code": "{tablet}"})
    }

    fn request() -> Value {
        json!({
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": format!("Patient/{P}")},
            "authoredOn": "2026-12-01",
            "medicationCodeableConcept": {"coding": [
                {"system": ATC, "code": "N02AA01", "display": "morphine"}]},
            "dosageInstruction": [{
                "text": "10 mg every 12 hours",
                "timing": {"repeat": {"frequency": 1, "period": 12, "periodUnit": "h"}},
                "doseAndRate": [{"doseQuantity": {"value": 10, "unit": "mg", "system": UCUM, "code": "mg"}}]
            }],
            "dispenseRequest": {
                "validityPeriod": {"start": "2026-12-01", "end": "2026-12-30"},
                "numberOfRepeatsAllowed": 1,
                "quantity": tablets(28.0)
            }
        })
    }

    fn dispense() -> Value {
        json!({
            "resourceType": "MedicationDispense",
            "status": "completed",
            "subject": {"reference": format!("Patient/{P}")},
            "medicationCodeableConcept": {"coding": [{"system": ATC, "code": "N02AA01"}]},
            "authorizingPrescription": [{"reference": format!("MedicationRequest/{}", "0a".repeat(32))}],
            "quantity": tablets(14.0),
            "whenHandedOver": "2026-12-03T10:15:00Z"
        })
    }

    /// The error of `v` with `pointer` set to `value` (or removed, for
    /// `None`): its status, code, location and text.
    fn refusal(mut v: Value, pointer: &str, value: Option<Value>) -> FhirError {
        match value {
            Some(x) => *v.pointer_mut(pointer).expect(pointer) = x,
            None => {
                let (parent, key) = pointer.rsplit_once('/').unwrap();
                v.pointer_mut(parent)
                    .and_then(Value::as_object_mut)
                    .expect(parent)
                    .remove(key);
            }
        }
        validate_with_facts(&v).expect_err(pointer)
    }

    #[test]
    fn a_prescription_gives_its_substance_amounts_and_validity() {
        let (summary, facts) = validate_with_facts(&request()).unwrap();
        assert_eq!(summary.kind, "prescription");
        assert_eq!(summary.patient, P);
        assert_eq!(summary.codes, [(ATC.to_owned(), "N02AA01".to_owned())]);
        assert_eq!(summary.date.as_deref(), Some("2026-12-01"));
        let Some(MedicationFacts::Request(p)) = facts else {
            panic!("{facts:?}")
        };
        // 2026-01-01 is day 20454 since the epoch; 1 December is 334 days
        // later (day 20788), and the end of 30 December is day 20818.
        assert_eq!(p.valid_from_ms, 20_788 * 86_400_000);
        assert_eq!(p.valid_until_ms, 20_818 * 86_400_000);
        assert_eq!(
            p.per_fill,
            Amount {
                milli: 28_000,
                unit: "{tablet}".into()
            }
        );
        assert_eq!(p.repeats, 1);
        assert_eq!(
            (
                p.dose.milli,
                p.dose.unit.as_str(),
                p.frequency,
                p.period_milli,
                p.period_unit.as_str()
            ),
            (10_000, "mg", 1, 12_000, "h")
        );
    }

    #[test]
    fn a_dispense_gives_its_prescription_quantity_and_time() {
        let (summary, facts) = validate_with_facts(&dispense()).unwrap();
        assert_eq!(
            (summary.kind, summary.resource_type),
            ("dispense", "MedicationDispense")
        );
        let Some(MedicationFacts::Dispense(d)) = facts else {
            panic!("{facts:?}")
        };
        assert_eq!(d.prescription, "0a".repeat(32));
        assert_eq!(d.quantity.milli, 14_000);
        // Day 20790 (3 December) plus 10 h 15 min.
        assert_eq!(
            d.handed_over_ms,
            20_790 * 86_400_000 + (10 * 60 + 15) * 60_000
        );
    }

    #[test]
    fn prescriptions_breaking_a_rule_get_a_clear_error() {
        const DR: &str = "/dispenseRequest";
        let cases: Vec<(&str, Option<Value>, &str, &str)> = vec![
            (
                "/medicationCodeableConcept",
                None,
                "MedicationRequest.medicationCodeableConcept",
                "WHO ATC",
            ),
            (
                "/medicationCodeableConcept/coding/0/system",
                Some(json!("http://snomed.info/sct")),
                "MedicationRequest.medicationCodeableConcept.coding",
                "needs a coding with system http://www.whocc.no/atc",
            ),
            (
                "/medicationCodeableConcept/coding/0/code",
                Some(json!("N02A")),
                "MedicationRequest.medicationCodeableConcept.coding.code",
                "level 5",
            ),
            (
                "/dispenseRequest/quantity/code",
                Some(json!("tablets")),
                "MedicationRequest.dispenseRequest.quantity.code",
                "not an accepted UCUM unit",
            ),
            (
                "/dispenseRequest/quantity/value",
                Some(json!(-28)),
                "MedicationRequest.dispenseRequest.quantity.value",
                "greater than 0",
            ),
            (
                "/dispenseRequest/quantity/value",
                Some(json!(0)),
                "MedicationRequest.dispenseRequest.quantity.value",
                "greater than 0",
            ),
            (
                "/dispenseRequest/quantity/value",
                Some(json!(1.2345)),
                "MedicationRequest.dispenseRequest.quantity.value",
                "more than three decimals",
            ),
            (
                "/dispenseRequest/validityPeriod/end",
                Some(json!("2026-11-30")),
                "MedicationRequest.dispenseRequest.validityPeriod.end",
                "before its start",
            ),
            (
                "/dispenseRequest/validityPeriod/end",
                Some(json!("2027-12-30")),
                "MedicationRequest.dispenseRequest.validityPeriod.end",
                "longer than 366 days",
            ),
            (
                "/dispenseRequest/validityPeriod/start",
                None,
                "MedicationRequest.dispenseRequest.validityPeriod.start",
                "required",
            ),
            (
                "/dispenseRequest/numberOfRepeatsAllowed",
                Some(json!(13)),
                "MedicationRequest.dispenseRequest.numberOfRepeatsAllowed",
                "0 (a single fill) to 12",
            ),
            (
                "/dosageInstruction/0/doseAndRate/0/doseQuantity/code",
                Some(json!("mgs")),
                "MedicationRequest.dosageInstruction[0].doseAndRate[0].doseQuantity.code",
                "UCUM",
            ),
            (
                "/dosageInstruction/0/timing/repeat/periodUnit",
                Some(json!("day")),
                "MedicationRequest.dosageInstruction[0].timing.repeat.periodUnit",
                "one of s, min, h, d, wk, mo, a",
            ),
            (
                "/dosageInstruction/0/timing",
                None,
                "MedicationRequest.dosageInstruction[0].timing.repeat",
                "required",
            ),
            (
                "/status",
                Some(json!("draft")),
                "MedicationRequest.status",
                "active",
            ),
            (
                "/intent",
                Some(json!("plan")),
                "MedicationRequest.intent",
                "order",
            ),
            (DR, None, "MedicationRequest.dispenseRequest", "required"),
        ];
        for (pointer, value, at, says) in cases {
            let e = refusal(request(), pointer, value);
            assert_eq!(e.status, 422, "{pointer}: {e:?}");
            assert_eq!(e.expression.as_deref(), Some(at), "{pointer}: {e:?}");
            assert!(e.diagnostics.contains(says), "{pointer}: {}", e.diagnostics);
        }
        // A wrong JSON type is a 400.
        let e = refusal(
            request(),
            "/dispenseRequest/numberOfRepeatsAllowed",
            Some(json!("1")),
        );
        assert_eq!((e.status, e.code), (400, "structure"));
        // The patient is a pseudonym, never a name.
        let e = refusal(
            request(),
            "/subject",
            Some(json!({"display": "Petar Petrovic"})),
        );
        assert_eq!(e.code, "security");
        assert!(!e.diagnostics.contains("Petar"));
        let mut by_reference = request();
        by_reference["medicationReference"] = json!({"reference": "Medication/abc"});
        let e = validate_with_facts(&by_reference).unwrap_err();
        assert_eq!(e.code, "not-supported");
    }

    #[test]
    fn dispenses_breaking_a_rule_get_a_clear_error() {
        let cases: Vec<(&str, Option<Value>, &str, &str)> = vec![
            (
                "/authorizingPrescription/0/reference",
                Some(json!("MedicationRequest/abc")),
                "MedicationDispense.authorizingPrescription[0].reference",
                "transaction id",
            ),
            (
                "/authorizingPrescription",
                Some(json!([])),
                "MedicationDispense.authorizingPrescription",
                "exactly one",
            ),
            (
                "/quantity/value",
                Some(json!(-1)),
                "MedicationDispense.quantity.value",
                "greater than 0",
            ),
            (
                "/quantity/system",
                Some(json!("http://example.org/units")),
                "MedicationDispense.quantity.system",
                "http://unitsofmeasure.org",
            ),
            (
                "/whenHandedOver",
                Some(json!("2026-12-03")),
                "MedicationDispense.whenHandedOver",
                "instant",
            ),
            (
                "/whenHandedOver",
                None,
                "MedicationDispense.whenHandedOver",
                "required",
            ),
            (
                "/status",
                Some(json!("in-progress")),
                "MedicationDispense.status",
                "completed",
            ),
        ];
        for (pointer, value, at, says) in cases {
            let e = refusal(dispense(), pointer, value);
            assert_eq!(e.status, 422, "{pointer}: {e:?}");
            assert_eq!(e.expression.as_deref(), Some(at), "{pointer}: {e:?}");
            assert!(e.diagnostics.contains(says), "{pointer}: {}", e.diagnostics);
        }
    }

    #[test]
    fn medication_units_are_metric_or_a_counted_form() {
        for ok in [
            "mg",
            "ug",
            "mL",
            "[IU]",
            "{tablet}",
            "{film-coated-tablet}",
            "1",
        ] {
            assert!(is_medication_unit(ok), "{ok}");
        }
        for bad in [
            "",
            "tablet",
            "{}",
            "{Tablet}",
            "{tablet 2}",
            "MG",
            "mg/d",
            "{tablet}}",
        ] {
            assert!(!is_medication_unit(bad), "{bad}");
        }
    }
}
