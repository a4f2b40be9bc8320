//! medledger node: the sequencer (admission and group commit) and the HTTP
//! API that institutions run.

pub mod api;
pub mod cluster;
pub mod config;
pub mod cosign;
pub mod dashboard;
pub mod edge;
pub mod export;
pub mod fhir_api;
pub mod health;
pub mod pipeline;
pub mod problem;
pub mod request;
pub mod secrets;
pub mod serve;
pub mod services;
pub mod stats;
pub mod tokens;
pub mod views;

pub use pipeline::{Receipt, Sequencer, SequencerConfig, SubmitError};
