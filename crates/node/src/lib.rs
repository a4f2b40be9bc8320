//! medledger node: the sequencer (admission and group commit). The HTTP API
//! and consensus glue build on it.

pub mod sequencer;

pub use sequencer::{Receipt, Sequencer, SequencerConfig, SubmitError};
