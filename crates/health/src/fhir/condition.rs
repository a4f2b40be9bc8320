//! Condition rules: a WHO ICD-10 coding, and the clinical and verification
//! status codes.

use serde_json::{Map, Value};

use super::dates::check_date_time;
use super::elements::{
    Coding, Walk, code_pairs, codeable_concept, common_rules, get_arr, get_str, opt_cc, opt_ref,
    patient_reference, refuse_contained, single_choice,
};
use super::error::{FhirError, rule};
use super::storage::{KIND_CONDITION, Summary};

pub(super) const ICD10: &str = "http://hl7.org/fhir/sid/icd-10";
pub(super) const ICD10_CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
pub(super) const CONDITION_CLINICAL: &str =
    "http://terminology.hl7.org/CodeSystem/condition-clinical";
pub(super) const CONDITION_VER_STATUS: &str =
    "http://terminology.hl7.org/CodeSystem/condition-ver-status";
const CLINICAL_STATUS: &[&str] = &[
    "active",
    "recurrence",
    "relapse",
    "inactive",
    "remission",
    "resolved",
];
const VERIFICATION_STATUS: &[&str] = &[
    "unconfirmed",
    "provisional",
    "differential",
    "confirmed",
    "refuted",
    "entered-in-error",
];

/// Whether `code` has the WHO ICD-10 shape: an uppercase letter, two digits,
/// and optionally a dot followed by one or two digits (`I10`, `J10.1`,
/// `E11.65`; two digits after the dot are national modifications).
pub fn is_icd10(code: &str) -> bool {
    let b = code.as_bytes();
    let head =
        b.len() >= 3 && b[0].is_ascii_uppercase() && b[1].is_ascii_digit() && b[2].is_ascii_digit();
    let tail = match b.get(3..) {
        Some([]) => true,
        Some([b'.', rest @ ..]) => {
            (1..=2).contains(&rest.len()) && rest.iter().all(u8::is_ascii_digit)
        }
        _ => false,
    };
    head && tail
}

pub(super) fn validate_condition(obj: &Map<String, Value>) -> Result<Summary, FhirError> {
    const RT: &str = "Condition";
    common_rules(obj, RT)?;
    let code = opt_cc(obj, "code", RT)?;
    let subject = opt_ref(obj, "subject", RT)?;
    let clinical = opt_cc(obj, "clinicalStatus", RT)?;
    let verification = opt_cc(obj, "verificationStatus", RT)?;
    for (i, c) in get_arr(obj, "category", RT)?
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        codeable_concept(c, &format!("{RT}.category[{i}]"))?;
    }
    single_choice(obj, "onset", RT)?;
    let onset = get_str(obj, "onsetDateTime", RT)?;
    let recorded = get_str(obj, "recordedDate", RT)?;
    let walk = Walk::of(obj, RT);
    if let Some(e) = walk.structure {
        return Err(e);
    }

    refuse_contained(obj, RT)?;
    let patient = patient_reference(RT, "subject", subject.as_ref())?;
    check_icd10_coding(code.as_deref())?;
    check_status_concept(
        clinical.as_deref(),
        CONDITION_CLINICAL,
        CLINICAL_STATUS,
        "Condition.clinicalStatus",
    )?;
    check_status_concept(
        verification.as_deref(),
        CONDITION_VER_STATUS,
        VERIFICATION_STATUS,
        "Condition.verificationStatus",
    )?;
    let onset = check_date_time(onset, "Condition.onsetDateTime")?;
    let recorded = check_date_time(recorded, "Condition.recordedDate")?;
    if let Some(e) = walk.rule {
        return Err(e);
    }
    Ok(Summary {
        kind: KIND_CONDITION,
        resource_type: RT,
        patient,
        date: onset.or(recorded),
        codes: code_pairs(code.as_deref()),
        category: None,
        identifiers: Vec::new(),
    })
}

fn check_icd10_coding(code: Option<&[Coding<'_>]>) -> Result<(), FhirError> {
    let Some(codings) = code else {
        return Err(rule(
            "required",
            "Condition.code",
            "Condition.code is required",
        ));
    };
    let mut found = false;
    for (i, c) in codings.iter().enumerate() {
        if c.system != ICD10 {
            continue;
        }
        if !is_icd10(c.code) {
            return Err(rule(
                "code-invalid",
                format!("Condition.code.coding[{i}].code"),
                "not an ICD-10 code: an uppercase letter, two digits, optionally a dot and one or two digits",
            ));
        }
        found = true;
    }
    if found {
        return Ok(());
    }
    let msg = if codings.iter().any(|c| c.system == ICD10_CM) {
        format!(
            "an ICD-10 (WHO) coding with system {ICD10} is required; ICD-10-CM codings alone are not accepted"
        )
    } else {
        format!("an ICD-10 (WHO) coding with system {ICD10} is required")
    };
    Err(rule("code-invalid", "Condition.code", msg))
}

/// Codings of `system` in a status concept must use one of `allowed`.
fn check_status_concept(
    concept: Option<&[Coding<'_>]>,
    system: &str,
    allowed: &[&str],
    path: &str,
) -> Result<(), FhirError> {
    let bad = concept
        .unwrap_or_default()
        .iter()
        .any(|c| c.system == system && !allowed.contains(&c.code));
    if bad {
        return Err(rule(
            "code-invalid",
            path,
            format!("{path} codes from {system} are: {}", allowed.join(", ")),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icd10_shape() {
        for ok in ["J10.1", "U07.1", "I10", "E11.9", "E11.65", "A00", "Z99.89"] {
            assert!(is_icd10(ok), "{ok}");
        }
        for bad in [
            "j10.1", "J1", "J10.", "J10.123", "1J0", "", "J", "J10-1", "J1A", "JJ0.1", "J10.a",
            " J10", "J10 ", "É10", "J10..1",
        ] {
            assert!(!is_icd10(bad), "{bad}");
        }
    }
}
