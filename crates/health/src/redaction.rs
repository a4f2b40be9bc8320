//! Redaction: the data-protection officer's order to erase the payloads of
//! committed records. Every field is a code or a transaction id, so the
//! order itself holds no personal data.

use crate::payload::PayloadError;
use serde::{Deserialize, Serialize};

/// Kind of a redaction.
pub const REDACTION: &str = "record.redaction";

/// Kind of a patient's request for erasure.
pub const ERASURE_REQUEST: &str = "record.erasure_request";

/// Most records one redaction may name.
pub const MAX_TARGETS: usize = 1000;

/// The legal basis a redaction cites.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LegalBasis {
    /// GDPR Art. 17: the right to erasure.
    #[serde(rename = "gdpr-art-17")]
    GdprArt17,
    /// GDPR Art. 16: the right to rectification.
    #[serde(rename = "gdpr-art-16")]
    GdprArt16,
    /// A court order.
    CourtOrder,
    /// The record was entered in error (wrong patient, wrong field).
    EnteredInError,
}

impl LegalBasis {
    /// Every basis.
    pub const ALL: [LegalBasis; 4] = [
        LegalBasis::GdprArt17,
        LegalBasis::GdprArt16,
        LegalBasis::CourtOrder,
        LegalBasis::EnteredInError,
    ];

    /// The code stored in a redaction.
    pub fn code(self) -> &'static str {
        match self {
            LegalBasis::GdprArt17 => "gdpr-art-17",
            LegalBasis::GdprArt16 => "gdpr-art-16",
            LegalBasis::CourtOrder => "court-order",
            LegalBasis::EnteredInError => "entered-in-error",
        }
    }
}

/// Why the records are redacted: a closed set of codes, never free text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedactionReason {
    /// The data subject asked for erasure.
    SubjectRequest,
    /// The consent the processing rested on was withdrawn.
    ConsentWithdrawn,
    /// The data were processed unlawfully.
    UnlawfulProcessing,
    /// The data are inaccurate.
    Inaccurate,
    /// The record was written about the wrong patient.
    WrongPatient,
    /// The record holds a direct identifier (a name typed into free text).
    DirectIdentifier,
    /// A court or authority ordered it.
    Ordered,
}

impl RedactionReason {
    /// Every reason code.
    pub const ALL: [RedactionReason; 7] = [
        RedactionReason::SubjectRequest,
        RedactionReason::ConsentWithdrawn,
        RedactionReason::UnlawfulProcessing,
        RedactionReason::Inaccurate,
        RedactionReason::WrongPatient,
        RedactionReason::DirectIdentifier,
        RedactionReason::Ordered,
    ];

    /// The code stored in a redaction.
    pub fn code(self) -> &'static str {
        match self {
            RedactionReason::SubjectRequest => "subject-request",
            RedactionReason::ConsentWithdrawn => "consent-withdrawn",
            RedactionReason::UnlawfulProcessing => "unlawful-processing",
            RedactionReason::Inaccurate => "inaccurate",
            RedactionReason::WrongPatient => "wrong-patient",
            RedactionReason::DirectIdentifier => "direct-identifier",
            RedactionReason::Ordered => "ordered",
        }
    }
}

/// A redaction's payload (kind [`REDACTION`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redaction {
    /// Ids (hex) of the committed transactions whose payloads are erased,
    /// each once.
    pub targets: Vec<String>,
    /// The legal basis.
    pub basis: LegalBasis,
    /// Why, as a code.
    pub reason: RedactionReason,
    /// The patient (pseudonym) the targets are about, when they are about
    /// one: every target must then be about this patient, and the patient's
    /// history keeps a trace that the records existed and were redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// The erasure request (its transaction id, hex) this redaction grants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// A patient's request that records about them be erased (kind
/// [`ERASURE_REQUEST`]), filed by the patient or by a doctor on their
/// behalf. The data-protection officer's redaction that grants it names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequest {
    /// Ids (hex) of the records to erase, each once.
    pub targets: Vec<String>,
    /// The legal basis invoked.
    pub basis: LegalBasis,
    /// The patient (pseudonym) the records are about.
    pub patient: String,
}

fn schema(m: impl Into<String>) -> PayloadError {
    PayloadError::Schema(m.into())
}

fn is_hex_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn check_targets(targets: &[String]) -> Result<(), PayloadError> {
    if targets.is_empty() || targets.len() > MAX_TARGETS {
        return Err(schema(format!("1 to {MAX_TARGETS} targets")));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, t) in targets.iter().enumerate() {
        if !is_hex_id(t) || !seen.insert(t.as_str()) {
            return Err(schema(format!(
                "targets[{i}] must be a transaction id, 64 lowercase hex digits, not named before"
            )));
        }
    }
    Ok(())
}

/// Checks an erasure request's payload (JSON bytes) on its own.
pub fn erasure_request(payload: &[u8]) -> Result<ErasureRequest, PayloadError> {
    let r: ErasureRequest = serde_json::from_slice(payload).map_err(|e| schema(e.to_string()))?;
    check_targets(&r.targets)?;
    if !crate::pseudonym::is_well_formed(&r.patient) {
        return Err(schema("patient must be a pseudonym"));
    }
    Ok(r)
}

/// Checks a redaction's payload (JSON bytes) on its own; whether its targets
/// are committed and may be redacted is the ledger's rule.
pub fn redaction(payload: &[u8]) -> Result<Redaction, PayloadError> {
    let r: Redaction = serde_json::from_slice(payload).map_err(|e| schema(e.to_string()))?;
    if r.targets.is_empty() || r.targets.len() > MAX_TARGETS {
        return Err(schema(format!(
            "a redaction names 1 to {MAX_TARGETS} targets"
        )));
    }
    if r.patient
        .as_deref()
        .is_some_and(|p| !crate::pseudonym::is_well_formed(p))
    {
        return Err(schema("patient must be a pseudonym"));
    }
    if r.request.as_deref().is_some_and(|q| !is_hex_id(q)) {
        return Err(schema(
            "request must be a transaction id, 64 lowercase hex digits",
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, t) in r.targets.iter().enumerate() {
        if !is_hex_id(t) || !seen.insert(t.as_str()) {
            return Err(schema(format!(
                "targets[{i}] must be a transaction id, 64 lowercase hex digits, not named before"
            )));
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn bytes(v: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn a_redaction_names_ids_a_basis_and_a_reason_and_nothing_else() {
        let r = redaction(&bytes(json!({
            "targets": [A, B], "basis": "gdpr-art-17", "reason": "subject-request"
        })))
        .unwrap();
        assert_eq!(r.targets, [A, B]);
        assert_eq!(r.basis, LegalBasis::GdprArt17);
        assert_eq!(r.reason, RedactionReason::SubjectRequest);
        let bad = [
            json!({"targets": [], "basis": "gdpr-art-17", "reason": "inaccurate"}),
            json!({"targets": [A, A], "basis": "gdpr-art-17", "reason": "inaccurate"}),
            json!({"targets": [A.to_uppercase()], "basis": "gdpr-art-17", "reason": "inaccurate"}),
            json!({"targets": [&A[1..]], "basis": "gdpr-art-17", "reason": "inaccurate"}),
            json!({"targets": [A], "basis": "gdpr-art-99", "reason": "inaccurate"}),
            json!({"targets": [A], "basis": "court-order", "reason": "because"}),
            json!({"targets": [A], "basis": "court-order", "reason": "ordered", "note": "x"}),
            json!({"targets": [A], "reason": "ordered"}),
            json!({"targets": A, "basis": "court-order", "reason": "ordered"}),
            json!({"targets": [A], "basis": "court-order", "reason": "ordered", "patient": "Ana Petrović"}),
        ];
        for b in bad {
            assert!(
                matches!(redaction(&bytes(b.clone())), Err(PayloadError::Schema(_))),
                "{b}"
            );
        }
        let many: Vec<String> = (0..=MAX_TARGETS).map(|i| format!("{i:064x}")).collect();
        assert!(
            redaction(&bytes(
                json!({"targets": many, "basis": "court-order", "reason": "ordered"})
            ))
            .is_err()
        );
        assert!(redaction(&bytes(json!({"targets": &many[..MAX_TARGETS], "basis": "court-order", "reason": "ordered"}))).is_ok());
    }

    #[test]
    fn an_erasure_request_names_records_a_basis_and_its_patient() {
        let p = crate::pseudonym::synthetic(1);
        let r = erasure_request(&bytes(
            json!({"targets": [A], "basis": "gdpr-art-17", "patient": p}),
        ))
        .unwrap();
        assert_eq!((r.targets, r.patient), (vec![A.to_owned()], p.clone()));
        for bad in [
            json!({"targets": [A], "basis": "gdpr-art-17"}),
            json!({"targets": [], "basis": "gdpr-art-17", "patient": p}),
            json!({"targets": [A], "basis": "gdpr-art-17", "patient": "Ana"}),
            json!({"targets": [A], "basis": "gdpr-art-17", "patient": p, "why": "x"}),
        ] {
            assert!(erasure_request(&bytes(bad.clone())).is_err(), "{bad}");
        }
        let ok = json!({"targets": [A], "basis": "gdpr-art-17", "reason": "subject-request",
            "patient": p, "request": B});
        assert_eq!(redaction(&bytes(ok)).unwrap().request.as_deref(), Some(B));
        let bad = json!({"targets": [A], "basis": "gdpr-art-17", "reason": "subject-request",
            "request": "nope"});
        assert!(redaction(&bytes(bad)).is_err());
    }

    #[test]
    fn codes_are_the_serialized_names() {
        for b in LegalBasis::ALL {
            assert_eq!(serde_json::to_value(b).unwrap(), json!(b.code()));
        }
        for r in RedactionReason::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), json!(r.code()));
        }
        assert_eq!(
            LegalBasis::ALL.map(LegalBasis::code),
            [
                "gdpr-art-17",
                "gdpr-art-16",
                "court-order",
                "entered-in-error"
            ]
        );
    }
}
