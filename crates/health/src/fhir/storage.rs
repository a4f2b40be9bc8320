//! How FHIR resources are kept on the ledger: the transaction kind of each
//! accepted resource type, the storage form of a resource, and what the
//! indexes take from it.

use serde_json::Value;

/// Ledger kind of a stored Observation.
pub const KIND_OBSERVATION: &str = "fhir.observation";
/// Ledger kind of a stored Condition.
pub const KIND_CONDITION: &str = "fhir.condition";
/// Ledger kind of a stored Immunization.
pub const KIND_IMMUNIZATION: &str = "fhir.immunization";
/// Ledger kind of a MedicationRequest: an e-prescription.
pub const KIND_PRESCRIPTION: &str = crate::prescription::PRESCRIPTION;
/// Ledger kind of a MedicationDispense: a dispense against a prescription.
pub const KIND_DISPENSE: &str = crate::prescription::DISPENSE;

/// The ledger kind for a resourceType name, or `None` if not accepted.
pub fn kind_of(resource_type: &str) -> Option<&'static str> {
    match resource_type {
        "Observation" => Some(KIND_OBSERVATION),
        "Condition" => Some(KIND_CONDITION),
        "Immunization" => Some(KIND_IMMUNIZATION),
        "MedicationRequest" => Some(KIND_PRESCRIPTION),
        "MedicationDispense" => Some(KIND_DISPENSE),
        _ => None,
    }
}

/// The resourceType for a ledger kind, or `None` if the kind is not a FHIR
/// kind.
pub fn resource_type_of(kind: &str) -> Option<&'static str> {
    match kind {
        KIND_OBSERVATION => Some("Observation"),
        KIND_CONDITION => Some("Condition"),
        KIND_IMMUNIZATION => Some("Immunization"),
        KIND_PRESCRIPTION => Some("MedicationRequest"),
        KIND_DISPENSE => Some("MedicationDispense"),
        _ => None,
    }
}

/// What the ledger indexes from a valid resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// One of the `KIND_*` constants.
    pub kind: &'static str,
    /// `Observation`, `Condition`, `Immunization`, `MedicationRequest` or
    /// `MedicationDispense`.
    pub resource_type: &'static str,
    /// The pseudonym from the `Patient/<pseudonym>` subject or patient
    /// reference.
    pub patient: String,
    /// The clinically relevant time as given (a validated FHIR dateTime):
    /// `effectiveDateTime` or `effectivePeriod.start` (Observation),
    /// `onsetDateTime` or else `recordedDate` (Condition),
    /// `occurrenceDateTime` (Immunization), `authoredOn`
    /// (MedicationRequest), `whenHandedOver` (MedicationDispense).
    pub date: Option<String>,
    /// `(system, code)` of every coding of the main code that has both
    /// (`Observation.code`, `Condition.code`, `Immunization.vaccineCode`,
    /// `medicationCodeableConcept`), in document order.
    pub codes: Vec<(String, String)>,
    /// `vital-signs` or `laboratory` for Observations, `None` otherwise.
    pub category: Option<&'static str>,
    /// `(system, value)` of every business identifier (`identifier`), in
    /// document order.
    pub identifiers: Vec<(String, String)>,
}

/// Prepares a client resource for storage: removes the server-assigned `id`,
/// `meta.versionId` and `meta.lastUpdated`, keeping the rest of `meta`
/// (profile, security, ...). A `meta` left empty is removed.
pub fn for_storage(v: &Value) -> Value {
    let mut out = v.clone();
    if let Value::Object(obj) = &mut out {
        obj.remove("id");
        let emptied = match obj.get_mut("meta") {
            Some(Value::Object(meta)) => {
                meta.remove("versionId");
                meta.remove("lastUpdated");
                meta.is_empty()
            }
            _ => false,
        };
        if emptied {
            obj.remove("meta");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for rt in [
            "Observation",
            "Condition",
            "Immunization",
            "MedicationRequest",
            "MedicationDispense",
        ] {
            let kind = kind_of(rt).unwrap();
            assert_eq!(resource_type_of(kind), Some(rt));
        }
        assert_eq!(kind_of("Patient"), None);
        assert_eq!(kind_of("observation"), None);
        assert_eq!(resource_type_of("medical_report"), None);
    }
}
