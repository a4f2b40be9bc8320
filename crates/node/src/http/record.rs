//! Committed records as the read handlers load them, before the read
//! decision and the answer's format.

use crate::http::problem::Problem;
use crate::http::request::ledger_err;
use medledger_formats::note::Note;
use medledger_formats::tx::Transaction;
use medledger_ledger::Store;
use serde_json::{Value, json};

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

/// The redaction that erased the record at `leaf`: its id, log index and
/// receipt. `null` fields while the index has not caught up with it.
pub(crate) fn redaction_of(store: &Store, leaf: u64) -> Result<Value, Problem> {
    let Some(by) = store.redacted_by(leaf).map_err(ledger_err)? else {
        return Ok(json!({"id": null, "index": null, "receipt": null}));
    };
    let Some((tx, _, height)) = store
        .transactions_at(&[by])
        .map_err(ledger_err)?
        .into_iter()
        .next()
    else {
        return Err(Problem::internal(format!(
            "redaction at leaf {by} not found"
        )));
    };
    let mut proof = store.receipt(by, None).map_err(ledger_err)?;
    proof.extra = Some(tx.leaf_preimage());
    Ok(json!({
        "id": hex::encode(tx.id()),
        "index": by,
        "height": height,
        "receipt": proof.render(),
    }))
}

/// The 410 answer for a read of the redacted record `r`.
pub(crate) fn gone(store: &Store, r: &Record) -> Problem {
    let id = hex::encode(r.tx.id());
    match redaction_of(store, r.leaf) {
        Ok(redaction) => Problem::redacted(
            format!("transaction {id} existed and its payload was redacted"),
            redaction,
        ),
        Err(p) => p,
    }
}

/// What history shows of a redacted record: that it existed (id, kind,
/// author, time, with its receipt against `checkpoint`) and which redaction
/// erased it, never what it held.
pub(crate) fn tombstone_json(
    store: &Store,
    r: &Record,
    checkpoint: &Note,
) -> Result<Value, Problem> {
    let mut v = proven_json(store, r, checkpoint)?;
    v["redacted"] = redaction_of(store, r.leaf)?;
    Ok(v)
}

/// What was logged of a record, with its receipt against `checkpoint`: id,
/// index, height and the signed header's kind, author and time.
pub(crate) fn proven_json(store: &Store, r: &Record, checkpoint: &Note) -> Result<Value, Problem> {
    let mut proof = store
        .receipt(r.leaf, Some(checkpoint))
        .map_err(ledger_err)?;
    proof.extra = Some(r.tx.leaf_preimage());
    let h = r.tx.header();
    Ok(json!({
        "id": hex::encode(r.tx.id()),
        "index": r.leaf,
        "height": r.height,
        "kind": h.kind,
        "author": h.author,
        "time": h.time,
        "receipt": proof.render(),
    }))
}
