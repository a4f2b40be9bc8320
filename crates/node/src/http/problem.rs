//! RFC 9457 problem details (`application/problem+json`) with a stable
//! `code` for every failure the API reports.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use medledger_ledger::Rejection;
use serde::Serialize;

use crate::pipeline::SubmitError;

/// A problem response.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the problem type.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What happened in this case.
    pub detail: String,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// For `pii_detected`: where, and what kind of identifier.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub pii: Option<Box<PiiDetail>>,
    /// For `not_leader`: the cluster leader's base URL, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<Box<String>>,
    /// For `redacted`: the redaction that erased the record, and its receipt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redaction: Option<Box<serde_json::Value>>,
}

/// Where a payload holds an identifier, and what kind; never its value.
#[derive(Clone, Debug, Serialize)]
pub struct PiiDetail {
    /// JSON Pointer (RFC 6901) of the field.
    pub field: String,
    /// Kind of identifier (`jmbg`, `lbo`, `email`, `phone`, ...).
    pub identifier: &'static str,
}

impl Problem {
    /// A problem with `status`, `code` and `detail`.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            kind: format!("https://medledger.example/problems/{code}"),
            title: status.canonical_reason().unwrap_or("error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code,
            pii: None,
            leader: None,
            redaction: None,
        }
    }

    /// 410 redacted: the record existed and its payload was erased by the
    /// redaction `redaction` (id, leaf, receipt).
    pub fn redacted(detail: impl Into<String>, redaction: serde_json::Value) -> Self {
        let mut p = Self::new(StatusCode::GONE, "redacted", detail);
        p.redaction = Some(Box::new(redaction));
        p
    }

    /// 400 malformed_json.
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed_json", detail)
    }
    /// 422 schema_violation.
    pub fn schema(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "schema_violation", detail)
    }
    /// 404 not_found.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }
    /// 401 unauthorized.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }
    /// 403 forbidden.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }
    /// 503 storage_unavailable.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            detail,
        )
    }
    /// 500 corrupt: stored data is damaged; names the block, never a path.
    pub fn corrupt(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "corrupt", detail)
    }
    /// 500 internal, for the node's own failures (never for client input).
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }
}

/// The status for each admission outcome.
pub fn submit_problem(e: &SubmitError) -> Problem {
    let status = match e {
        SubmitError::Unavailable(_) | SubmitError::NotLeader(_) | SubmitError::NotCommitted(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        SubmitError::Rejected(r) => match r {
            Rejection::BadSignature => StatusCode::UNAUTHORIZED,
            Rejection::UnknownAuthor
            | Rejection::RevokedAuthor
            | Rejection::DevicePatient
            | Rejection::NotChosenDoctor
            | Rejection::RegistrarNotAllowed
            | Rejection::NotPrescriber
            | Rejection::RoleNotAllowed { .. } => StatusCode::FORBIDDEN,
            Rejection::Duplicate => StatusCode::CONFLICT,
            Rejection::Stale { .. }
            | Rejection::Future { .. }
            | Rejection::Schema(_)
            | Rejection::Pii(_)
            | Rejection::Fhir(_)
            | Rejection::UnknownKind(_)
            | Rejection::GenesisNotFirst
            | Rejection::GenesisNotByAdmin
            | Rejection::GenesisInvalid(_)
            | Rejection::WrongInstitution { .. }
            | Rejection::DoctorNotEligible { .. }
            | Rejection::BadKey { .. }
            | Rejection::AlreadyRegistered
            | Rejection::InstitutionRequired
            | Rejection::PatientBinding(_)
            | Rejection::ClusterPlace(_)
            | Rejection::NotRegistered
            | Rejection::AlreadyRevoked
            | Rejection::LastNode
            | Rejection::ConsentFormRequired
            | Rejection::NotBreakGlass
            | Rejection::AlreadyReviewed
            | Rejection::ReviewPatients
            | Rejection::RedactionTargetUnknown(_)
            | Rejection::RedactionTargetKind { .. }
            | Rejection::AlreadyRedacted(_)
            | Rejection::RedactionPatient(_)
            | Rejection::RedactedKind(_)
            | Rejection::RedactionRequest
            | Rejection::PrescriptionUnknown(_)
            | Rejection::PrescriptionNotYetValid
            | Rejection::PrescriptionExpired
            | Rejection::PrescriptionCancelled
            | Rejection::PrescriptionPatient
            | Rejection::DispenseMedication { .. }
            | Rejection::DispenseUnit { .. }
            | Rejection::FillsExhausted { .. }
            | Rejection::DispenseOverQuantity { .. }
            | Rejection::HandedOverFuture { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        },
    };
    let mut p = Problem::new(status, e.code(), e.to_string());
    if let SubmitError::NotLeader(leader) = e {
        p.leader = leader.clone().map(Box::new);
    }
    if let SubmitError::Rejected(Rejection::Pii(f)) = e {
        p.pii = Some(Box::new(PiiDetail {
            field: f.field.clone(),
            identifier: f.kind.as_str(),
        }));
    }
    p
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        // RFC 9110 section 15.5.2: a 401 names the scheme that would work.
        if self.code == "unauthorized" {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"medledger\""),
            );
        }
        resp
    }
}
