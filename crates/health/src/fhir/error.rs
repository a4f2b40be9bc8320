//! The error every FHIR rule reports: an issue code, where, why, and the
//! HTTP status it is answered with.

/// FHIR issue severity/code pair plus HTTP status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{diagnostics}")]
pub struct FhirError {
    /// HTTP status: 400 when the body does not parse or is structurally not
    /// the resource, 422 when it breaks a rule.
    pub status: u16,
    /// FHIR IssueType code: `structure`, `required`, `value`, `invalid`,
    /// `code-invalid`, `not-supported`, `business-rule`, `security` or
    /// `processing`.
    pub code: &'static str,
    /// Human-readable explanation. Never repeats submitted identifiers or
    /// free-text values.
    pub diagnostics: String,
    /// FHIRPath-like location of the problem, e.g.
    /// `Observation.valueQuantity.code`.
    pub expression: Option<String>,
}

impl FhirError {
    /// An error with `status`, FHIR issue `code`, location and text.
    pub fn new(
        status: u16,
        code: &'static str,
        expression: Option<String>,
        diagnostics: impl Into<String>,
    ) -> Self {
        FhirError {
            status,
            code,
            diagnostics: diagnostics.into(),
            expression,
        }
    }
}

/// 400 `structure` at `path`.
pub(super) fn structure(path: impl Into<String>, msg: impl Into<String>) -> FhirError {
    FhirError::new(400, "structure", Some(path.into()), msg)
}

/// 422 with `code` at `path`.
pub(super) fn rule(
    code: &'static str,
    path: impl Into<String>,
    msg: impl Into<String>,
) -> FhirError {
    FhirError::new(422, code, Some(path.into()), msg)
}
