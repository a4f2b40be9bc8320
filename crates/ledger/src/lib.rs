//! medledger ledger: the deterministic state machine ([`state`]) that turns
//! an ordered sequence of blocks into participants and a Merkle log, and the
//! durable [`Ledger`] that stores it.

pub mod access;
pub mod feed;
pub mod ledger;
pub mod roles;
pub mod state;
pub mod verify;

pub use ledger::{Ledger, LedgerError};
