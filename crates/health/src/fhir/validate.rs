//! Which resources the ledger accepts: [`validate`] dispatches on the
//! resourceType, and refuses Patients and every other type.

use serde_json::{Map, Value};

use super::condition::validate_condition;
use super::elements::is_type_name;
use super::error::{FhirError, rule};
use super::identifier::business_identifiers;
use super::immunization::validate_immunization;
use super::medication::{
    MedicationFacts, validate_medication_dispense, validate_medication_request,
};
use super::observation::validate_observation;
use super::storage::Summary;

/// Patient elements that identify a person.
pub(super) const IDENTIFYING_PATIENT_ELEMENTS: &[&str] = &[
    "name",
    "identifier",
    "telecom",
    "address",
    "birthDate",
    "photo",
    "contact",
];

/// Validates a resource to be stored (create). `v` is the parsed JSON.
///
/// Returns what the indexes need, or the first problem found: a 400 error
/// when an element has the wrong JSON type, a 422 error when a rule is
/// broken. Structural problems are reported before rule violations.
pub fn validate(v: &Value) -> Result<Summary, FhirError> {
    validate_with_facts(v).map(|(summary, _)| summary)
}

/// [`validate`], also giving what the ledger's state machine needs of a
/// MedicationRequest or MedicationDispense (`None` for other resources).
pub fn validate_with_facts(v: &Value) -> Result<(Summary, Option<MedicationFacts>), FhirError> {
    let Some(obj) = v.as_object() else {
        return Err(FhirError::new(
            400,
            "structure",
            None,
            "a resource is a JSON object",
        ));
    };
    let rt = match obj.get("resourceType") {
        Some(Value::String(s)) => s.as_str(),
        _ => {
            return Err(FhirError::new(
                400,
                "structure",
                Some("resourceType".into()),
                "resourceType is required and must be a string",
            ));
        }
    };
    let (mut summary, facts) =
        match rt {
            "Observation" => validate_observation(obj).map(|s| (s, None)),
            "Condition" => validate_condition(obj).map(|s| (s, None)),
            "Immunization" => validate_immunization(obj).map(|s| (s, None)),
            "MedicationRequest" => validate_medication_request(obj)
                .map(|(s, p)| (s, Some(MedicationFacts::Request(p)))),
            "MedicationDispense" => validate_medication_dispense(obj)
                .map(|(s, d)| (s, Some(MedicationFacts::Dispense(d)))),
            "Patient" => Err(patient_refusal(obj)),
            other => Err(unsupported_type(other)),
        }?;
    summary.identifiers = business_identifiers(obj, summary.resource_type)?;
    Ok((summary, facts))
}

/// Why a Patient resource is refused.
pub(super) fn patient_refusal(obj: &Map<String, Value>) -> FhirError {
    match IDENTIFYING_PATIENT_ELEMENTS
        .iter()
        .find(|k| obj.contains_key(**k))
    {
        Some(k) => rule(
            "security",
            format!("Patient.{k}"),
            "Patient resources that carry names or identifiers are refused; refer to patients as Patient/<pseudonym>",
        ),
        None => rule(
            "not-supported",
            "Patient",
            "Patient resources are not stored; refer to the patient as Patient/<pseudonym>",
        ),
    }
}

/// Refusal of a resource type the ledger does not store.
pub(super) fn unsupported_type(rt: &str) -> FhirError {
    let what = if is_type_name(rt) {
        format!("{rt} resources are not accepted")
    } else {
        "this resourceType is not accepted".to_owned()
    };
    rule(
        "not-supported",
        "resourceType",
        format!(
            "{what}; the ledger stores Observation, Condition, Immunization, MedicationRequest and MedicationDispense"
        ),
    )
}
