//! The health domain of medledger: what a record may contain.
//!
//! Everything here is a pure function of its input, so every node and every
//! verifier judges the same transaction the same way.

pub mod access;
pub mod alerts;
pub mod calendar;
pub mod export;
pub mod fhir;
pub mod ids;
pub mod news2;
pub mod opioid;
mod payload;
pub mod pii;
pub mod prescription;
pub mod pseudonym;
pub mod records;
pub mod redaction;
pub mod registries;
pub mod suppression;
#[cfg(test)]
mod testing;
