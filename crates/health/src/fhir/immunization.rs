//! Immunization rules.

use serde_json::{Map, Value};

use super::dates::check_date_time;
use super::elements::{
    Walk, check_status, code_pairs, common_rules, get_str, opt_cc, opt_ref, patient_reference,
    refuse_contained, single_choice,
};
use super::error::{FhirError, rule};
use super::storage::{KIND_IMMUNIZATION, Summary};

const IMMUNIZATION_STATUS: &[&str] = &["completed", "entered-in-error", "not-done"];

pub(super) fn validate_immunization(obj: &Map<String, Value>) -> Result<Summary, FhirError> {
    const RT: &str = "Immunization";
    common_rules(obj, RT)?;
    let status = get_str(obj, "status", RT)?;
    let vaccine = opt_cc(obj, "vaccineCode", RT)?;
    let patient = opt_ref(obj, "patient", RT)?;
    single_choice(obj, "occurrence", RT)?;
    let occurrence = get_str(obj, "occurrenceDateTime", RT)?;
    let walk = Walk::of(obj, RT);
    if let Some(e) = walk.structure {
        return Err(e);
    }

    refuse_contained(obj, RT)?;
    let patient = patient_reference(RT, "patient", patient.as_ref())?;
    check_status(status, IMMUNIZATION_STATUS, "Immunization.status")?;
    let Some(vaccine) = vaccine else {
        return Err(rule(
            "required",
            "Immunization.vaccineCode",
            "Immunization.vaccineCode is required",
        ));
    };
    let codes = code_pairs(Some(&vaccine));
    if codes.is_empty() {
        return Err(rule(
            "required",
            "Immunization.vaccineCode.coding",
            "Immunization.vaccineCode needs at least one coding with a system and a code",
        ));
    }
    let Some(date) = check_date_time(occurrence, "Immunization.occurrenceDateTime")? else {
        return Err(rule(
            "required",
            "Immunization.occurrenceDateTime",
            "Immunization.occurrenceDateTime is required",
        ));
    };
    if let Some(e) = walk.rule {
        return Err(e);
    }
    Ok(Summary {
        kind: KIND_IMMUNIZATION,
        resource_type: RT,
        patient,
        date: Some(date),
        codes,
        category: None,
        identifiers: Vec::new(),
    })
}
