//! (stub while the real module is written)
#![allow(missing_docs)]
pub const KIND_OBSERVATION: &str = "fhir.observation";
pub const KIND_CONDITION: &str = "fhir.condition";
pub const KIND_IMMUNIZATION: &str = "fhir.immunization";
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{diagnostics}")]
pub struct FhirError {
    pub status: u16,
    pub code: &'static str,
    pub diagnostics: String,
    pub expression: Option<String>,
}
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub kind: &'static str,
    pub resource_type: &'static str,
    pub patient: String,
    pub date: Option<String>,
    pub codes: Vec<(String, String)>,
    pub category: Option<&'static str>,
}
pub fn validate(v: &serde_json::Value) -> Result<Summary, FhirError> {
    let rt = v.get("resourceType").and_then(|r| r.as_str()).unwrap_or("");
    let (kind, resource_type, field) = match rt {
        "Observation" => (KIND_OBSERVATION, "Observation", "subject"),
        "Condition" => (KIND_CONDITION, "Condition", "subject"),
        "Immunization" => (KIND_IMMUNIZATION, "Immunization", "patient"),
        _ => {
            return Err(FhirError {
                status: 422,
                code: "not-supported",
                diagnostics: "no".into(),
                expression: None,
            });
        }
    };
    let patient = v
        .get(field)
        .and_then(|s| s.get("reference"))
        .and_then(|r| r.as_str())
        .and_then(|r| r.strip_prefix("Patient/"))
        .unwrap_or("")
        .to_string();
    let date = [
        "effectiveDateTime",
        "onsetDateTime",
        "recordedDate",
        "occurrenceDateTime",
    ]
    .iter()
    .find_map(|k| v.get(*k).and_then(|d| d.as_str()))
    .map(String::from);
    Ok(Summary {
        kind,
        resource_type,
        patient,
        date,
        codes: vec![],
        category: None,
    })
}
pub fn is_icd10(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() >= 3 && b[0].is_ascii_uppercase()
}
pub fn resource_type_of(kind: &str) -> Option<&'static str> {
    match kind {
        KIND_OBSERVATION => Some("Observation"),
        KIND_CONDITION => Some("Condition"),
        KIND_IMMUNIZATION => Some("Immunization"),
        _ => None,
    }
}
