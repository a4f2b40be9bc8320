//! FHIR R4 resource rules.
//!
//! FHIR resources are stored as transaction payloads (the resource JSON
//! itself) under the kinds [`KIND_OBSERVATION`], [`KIND_CONDITION`],
//! [`KIND_IMMUNIZATION`], [`KIND_PRESCRIPTION`] (MedicationRequest) and
//! [`KIND_DISPENSE`] (MedicationDispense). This module decides which resources are accepted
//! ([`validate`]), extracts what the indexes need ([`Summary`]), parses
//! transaction and batch Bundles, and reads FHIR dates. What the node's
//! `/fhir` facade answers with (OperationOutcome, CapabilityStatement,
//! Bundles) is built on the node's HTTP side.
//!
//! Everything here is a pure, deterministic function of its input: the
//! ledger's state machine re-runs [`validate`] on every stored FHIR payload
//! when it verifies a chain.
//!
//! Patients appear only as `Patient/<pseudonym>` references. Error messages
//! never repeat a submitted reference or free-text value, so an identifier
//! put in the wrong place does not end up in a response or a log.

mod bundle;
mod condition;
mod dates;
mod elements;
mod error;
mod identifier;
mod immunization;
mod medication;
mod observation;
mod search;
mod storage;
#[cfg(test)]
mod tests;
mod validate;

pub use bundle::{Bundle, BundleEntry, BundleType, check_entry, parse_bundle};
pub use condition::is_icd10;
pub use dates::{DateParam, date_matches, date_range};
pub use error::FhirError;
pub use identifier::MAX_IDENTIFIERS;
pub use medication::{MedicationFacts, is_medication_unit};
pub(crate) use observation::{DIASTOLIC, Measure, SYSTOLIC, measure_of};
pub use search::{
    Clause, Modifier, ParamType, Query, RESULT_PARAMS, SearchParam, SearchParamError,
    search_params, split_values,
};
pub use storage::{
    KIND_CONDITION, KIND_DISPENSE, KIND_IMMUNIZATION, KIND_OBSERVATION, KIND_PRESCRIPTION, Summary,
    for_storage, kind_of, resource_type_of,
};
pub use validate::{validate, validate_with_facts};
