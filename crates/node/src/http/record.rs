//! Committed records as the read handlers load them, before the read
//! decision and the answer's format.

use crate::http::problem::Problem;
use crate::http::request::ledger_err;
use medledger_formats::tx::Transaction;
use medledger_ledger::Store;

/// A record as history and FHIR reads return it.
pub(crate) struct Record {
    /// The transaction.
    pub tx: Transaction,
    /// Its log index.
    pub leaf: u64,
    /// Its block.
    pub height: u64,
}

/// Reads the records at `leaves`.
pub(crate) fn records(store: &Store, leaves: &[u64]) -> Result<Vec<Record>, Problem> {
    Ok(store
        .transactions_at(leaves)
        .map_err(ledger_err)?
        .into_iter()
        .map(|(tx, leaf, height)| Record { tx, leaf, height })
        .collect())
}
