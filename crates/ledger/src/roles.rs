//! Roles, transaction kinds, and which role may submit which kind.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A participant's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A hospital, health centre or institute.
    Institution,
    /// A physician.
    Doctor,
    /// A wearable or gateway bound to one patient.
    Device,
    /// A public-health officer.
    PublicHealth,
    /// A researcher (reads de-identified data).
    Researcher,
    /// An auditor (reads proofs and blocks).
    Auditor,
    /// The pseudonymization authority.
    PseudonymizationAuthority,
    /// The data-protection officer.
    DataProtectionOfficer,
    /// Registers and revokes participants.
    Admin,
    /// A ledger node: proposes blocks and signs checkpoints.
    Node,
    /// An officer of the organ-donor registry.
    RegistryOfficer,
    /// A patient, bound to one pseudonym by the pseudonymization authority
    /// (the paper's digital identity of the patient).
    Patient,
    /// A pharmacy: dispenses against e-prescriptions, and reads them.
    Pharmacy,
}

impl Role {
    /// Every role, for listings and tests.
    pub const ALL: [Role; 13] = [
        Role::Institution,
        Role::Doctor,
        Role::Device,
        Role::PublicHealth,
        Role::Researcher,
        Role::Auditor,
        Role::PseudonymizationAuthority,
        Role::DataProtectionOfficer,
        Role::Admin,
        Role::Node,
        Role::RegistryOfficer,
        Role::Patient,
        Role::Pharmacy,
    ];

    /// The name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Institution => "institution",
            Role::Doctor => "doctor",
            Role::Device => "device",
            Role::PublicHealth => "public_health",
            Role::Researcher => "researcher",
            Role::Auditor => "auditor",
            Role::PseudonymizationAuthority => "pseudonymization_authority",
            Role::DataProtectionOfficer => "data_protection_officer",
            Role::Admin => "admin",
            Role::Node => "node",
            Role::RegistryOfficer => "registry_officer",
            Role::Patient => "patient",
            Role::Pharmacy => "pharmacy",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Transaction kinds the ledger accepts.
pub mod kind {
    /// The first transaction of block 0: origin, admin key and node key.
    pub const GENESIS: &str = "ledger.genesis";
    /// Registers a participant.
    pub const REGISTER: &str = "participant.register";
    /// Revokes a participant.
    pub const REVOKE: &str = "participant.revoke";
    /// A doctor's medical report.
    pub const MEDICAL_REPORT: &str = medledger_health::records::MEDICAL_REPORT;
    /// Vital-sign readings.
    pub const VITAL_SIGNS: &str = medledger_health::records::VITAL_SIGNS;
    /// Daily epidemic counts.
    pub const EPIDEMIC_REPORT: &str = medledger_health::registries::EPIDEMIC_REPORT;
    /// Vaccination counts.
    pub const VACCINATION_REPORT: &str = medledger_health::registries::VACCINATION_REPORT;
    /// An organ-donor decision.
    pub const ORGAN_DONOR_DECISION: &str = medledger_health::registries::ORGAN_DONOR_DECISION;
    /// A patient's choice of doctor.
    pub const CHOSEN_DOCTOR: &str = medledger_health::registries::CHOSEN_DOCTOR;
    /// A FHIR R4 Observation (vital signs or laboratory).
    pub const FHIR_OBSERVATION: &str = medledger_health::fhir::KIND_OBSERVATION;
    /// A FHIR R4 Condition coded in ICD-10.
    pub const FHIR_CONDITION: &str = medledger_health::fhir::KIND_CONDITION;
    /// A FHIR R4 Immunization.
    pub const FHIR_IMMUNIZATION: &str = medledger_health::fhir::KIND_IMMUNIZATION;
    /// A patient's consent directive (FHIR R4 Consent, patient-privacy).
    pub const CONSENT_DIRECTIVE: &str = medledger_health::access::CONSENT_DIRECTIVE;
    /// A logged record-level read (FHIR AuditEvent), signed by the node
    /// that served it.
    pub const ACCESS_ENTRY: &str = medledger_health::access::ACCESS_ENTRY;
    /// The data-protection officer's review of a break-glass access entry.
    pub const ACCESS_REVIEW: &str = medledger_health::access::ACCESS_REVIEW;
    /// The data-protection officer's order to erase records' payloads.
    pub const REDACTION: &str = medledger_health::redaction::REDACTION;
    /// A patient's request for erasure (filed by them or their doctor).
    pub const ERASURE_REQUEST: &str = medledger_health::redaction::ERASURE_REQUEST;
    /// An e-prescription (FHIR R4 MedicationRequest).
    pub const PRESCRIPTION: &str = medledger_health::prescription::PRESCRIPTION;
    /// A dispense against a prescription (FHIR R4 MedicationDispense).
    pub const DISPENSE: &str = medledger_health::prescription::DISPENSE;
    /// The prescriber's cancellation of a prescription.
    pub const PRESCRIPTION_CANCEL: &str = medledger_health::prescription::PRESCRIPTION_CANCEL;

    /// Every kind a participant may submit (all but genesis).
    pub const SUBMITTABLE: [&str; 19] = [
        REGISTER,
        REVOKE,
        MEDICAL_REPORT,
        VITAL_SIGNS,
        EPIDEMIC_REPORT,
        VACCINATION_REPORT,
        ORGAN_DONOR_DECISION,
        CHOSEN_DOCTOR,
        FHIR_OBSERVATION,
        FHIR_CONDITION,
        FHIR_IMMUNIZATION,
        CONSENT_DIRECTIVE,
        ACCESS_ENTRY,
        ACCESS_REVIEW,
        REDACTION,
        ERASURE_REQUEST,
        PRESCRIPTION,
        DISPENSE,
        PRESCRIPTION_CANCEL,
    ];

    /// The e-prescription kinds, all that a pharmacy reads.
    pub const MEDICATION: [&str; 3] = [PRESCRIPTION, DISPENSE, PRESCRIPTION_CANCEL];
}

/// Whether a committed transaction of `kind` may be redacted. The ledger
/// itself rests on the others: genesis, registrations and revocations make
/// the directory; consent directives and chosen doctors decide reads; access
/// entries, their reviews and redactions are the accountability record, and
/// hold no health data to erase; prescriptions, dispenses and their
/// cancellations are what the dispensing rules are judged on, so a replay
/// (verify, an index rebuild) needs them whole.
pub fn may_redact(kind: &str) -> bool {
    matches!(
        kind,
        kind::MEDICAL_REPORT
            | kind::VITAL_SIGNS
            | kind::EPIDEMIC_REPORT
            | kind::VACCINATION_REPORT
            | kind::ORGAN_DONOR_DECISION
            | kind::FHIR_OBSERVATION
            | kind::FHIR_CONDITION
            | kind::FHIR_IMMUNIZATION
    )
}

// The read policy. Who may read what sits here, beside the write policy,
// and docs/ROLES.md is tested against it. Checkpoints, proofs, blocks'
// headers and suppressed statistics are public.

/// Roles that may read record-level data: transactions with their
/// payloads, patient histories, exports and FHIR reads. A patient reads
/// only their own (see [`crate::access::decide`]).
pub const RECORD_READERS: &[Role] = &[
    Role::Doctor,
    Role::Institution,
    Role::PublicHealth,
    Role::Researcher,
    Role::Auditor,
    Role::DataProtectionOfficer,
    Role::Admin,
    Role::Patient,
    Role::Pharmacy,
];

/// Roles that may read a patient's access log; a patient, only their own.
pub const ACCESS_LOG_READERS: &[Role] = &[Role::DataProtectionOfficer, Role::Patient];

/// Roles that may list break-glass reads and their reviews: the officer
/// who reviews them. The list holds what an access log holds (patients,
/// readers, stated reasons), so it has the access log's readers; anyone may
/// count the overdue ones at `/metrics`.
pub const BREAK_GLASS_READERS: &[Role] = &[Role::DataProtectionOfficer];

/// Roles that may list participants.
pub const DIRECTORY_READERS: &[Role] = &[
    Role::Doctor,
    Role::Institution,
    Role::PublicHealth,
    Role::Researcher,
    Role::Auditor,
    Role::DataProtectionOfficer,
    Role::Admin,
    Role::PseudonymizationAuthority,
    Role::Node,
];

/// Roles that may read NEWS2 alerts (clinical, about identifiable
/// pseudonyms).
pub const ALERT_READERS: &[Role] = &[Role::Doctor, Role::Institution, Role::Admin];

/// Roles that may read the organ-donor registry.
pub const DONOR_READERS: &[Role] = &[
    Role::Doctor,
    Role::RegistryOfficer,
    Role::DataProtectionOfficer,
];

/// Roles that may turn identifiers into pseudonyms (on the authority's
/// own node).
pub const PSEUDONYM_MAKERS: &[Role] = &[Role::PseudonymizationAuthority];

/// Roles whose integration accounts may write FHIR resources (the node
/// signs them for the account).
pub const FHIR_WRITERS: &[Role] = &[
    Role::Institution,
    Role::Doctor,
    Role::Device,
    Role::Pharmacy,
];

/// Whether `role`, a record reader, may read records of `kind`: organ-donor
/// decisions are for [`DONOR_READERS`] only, whatever else the role may read;
/// a pharmacy reads prescriptions, dispenses and cancellations only (it
/// looks up the prescription it fills), never the rest of a record.
pub fn may_read_kind(role: Role, kind: &str) -> bool {
    if role == Role::Pharmacy {
        return kind::MEDICATION.contains(&kind);
    }
    kind != kind::ORGAN_DONOR_DECISION || DONOR_READERS.contains(&role)
}

/// Roles allowed to submit `kind`; `None` for an unknown kind.
pub fn allowed_roles(kind: &str) -> Option<&'static [Role]> {
    use Role::*;
    Some(match kind {
        // The authority registers and revokes patients only, and only it
        // registers patients (see `LedgerState::check_register`).
        kind::REGISTER | kind::REVOKE => &[Admin, PseudonymizationAuthority],
        kind::MEDICAL_REPORT => &[Doctor],
        kind::VITAL_SIGNS => &[Doctor, Device, Institution],
        kind::EPIDEMIC_REPORT | kind::VACCINATION_REPORT => &[Institution, PublicHealth],
        kind::ORGAN_DONOR_DECISION => &[Doctor, RegistryOfficer],
        kind::CHOSEN_DOCTOR => &[Institution],
        kind::FHIR_OBSERVATION => &[Institution, Doctor, Device],
        kind::FHIR_CONDITION | kind::FHIR_IMMUNIZATION => &[Institution, Doctor],
        kind::CONSENT_DIRECTIVE => &[Doctor, Patient],
        kind::ACCESS_ENTRY => &[Node],
        kind::ACCESS_REVIEW | kind::REDACTION => &[DataProtectionOfficer],
        kind::ERASURE_REQUEST => &[Doctor, Patient],
        // Only the prescription's own prescriber may cancel it (see
        // `LedgerState::check_medication`).
        kind::PRESCRIPTION | kind::PRESCRIPTION_CANCEL => &[Doctor],
        kind::DISPENSE => &[Pharmacy],
        // Genesis is admitted only by its own rule, never by role.
        _ => return None,
    })
}
