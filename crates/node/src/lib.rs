//! medledger node, in the order data flows through it: the write path
//! (`pipeline`: admission, the sequencer and its sinks), the cluster (a Raft
//! sink and state machine), the views that follow the committed log, and
//! the HTTP API that institutions run (`http`). `serve` wires them.

pub mod cluster;
pub mod config;
pub mod http;
pub mod pipeline;
pub mod secrets;
pub mod serve;
pub mod tokens;
pub mod views;

pub use pipeline::{Receipt, Sequencer, SequencerConfig, SubmitError};
