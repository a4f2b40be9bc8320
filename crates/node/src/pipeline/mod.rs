//! The write path, in the order data flows through it: callers' batches
//! are admitted (signatures, payload rules, roles, duplicates) and cut
//! into blocks by the sequencer, which hands each sealed block to a
//! [`BlockSink`] that makes it durable.

mod core;
mod outcome;
mod sequencer;
mod sink;

pub use outcome::{Receipt, SubmitError};
pub(crate) use sequencer::SUBMISSION_CHUNK;
pub use sequencer::{Sequencer, SequencerConfig, Waiting};
pub(crate) use sink::{BlockSink, SinkError, Written};
