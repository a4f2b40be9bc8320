//! Witnessed break-glass: the list of break-glass reads with their
//! reviews for the data-protection officer, and the counts `/metrics`
//! publishes (counts are no personal data).

use crate::http::health::checkpoint_for;
use crate::http::problem::Problem;
use crate::http::record::{Record, records};
use crate::http::request::{Shared, authorize, blocking, ledger_err, parse_u64, query};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use medledger_formats::note::Note;
use medledger_health::access as rules;
use medledger_ledger::{BREAK_GLASS_READERS, BreakGlass, Store, now_ms};
use serde::Deserialize;
use serde_json::{Value, json};
use std::fmt::Write;

/// Most entries in one page of the list.
const MAX_PAGE: usize = 1_000;

/// Query of the list.
#[derive(Deserialize)]
pub(crate) struct GlassQuery {
    unreviewed: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// `GET /v1/break-glass`: break-glass reads in ledger order, each with its
/// receipt, its review (with its receipt) once reviewed, and whether it is
/// overdue; `unreviewed=true` lists only those awaiting review.
pub(crate) async fn list(
    State(state): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<GlassQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let q = query(q)?;
    let unreviewed = match q.unreviewed.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "bad_query",
                "unreviewed must be true or false",
            ));
        }
    };
    let after = parse_u64("after", q.after.as_deref())?;
    let limit = parse_u64("limit", q.limit.as_deref())?
        .map_or(MAX_PAGE, |l| (l as usize).clamp(1, MAX_PAGE));
    blocking(move || {
        authorize(&state, &headers, BREAK_GLASS_READERS)?;
        let store = state.log.store();
        let (checkpoint, size) = checkpoint_for(store, None)?;
        let deadline = store.break_glass_review_ms().map_err(ledger_err)?;
        // `after` comes from the query: u64::MAX must not overflow.
        let from = after.map_or(0, |a| a.saturating_add(1));
        let mut page = store
            .break_glass(from, limit + 1, unreviewed)
            .map_err(ledger_err)?;
        page.retain(|b| b.leaf < size);
        let more = page.len() > limit;
        page.truncate(limit);
        let next = more.then(|| page.last().map(|b| b.leaf)).flatten();
        let now = now_ms();
        let items = page
            .iter()
            .map(|b| entry_json(store, b, &checkpoint, size, deadline, now))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Json(json!({
            "as_of": size,
            "checkpoint": checkpoint.render(),
            "review_deadline_ms": deadline,
            "entries": items,
            "next_after": next,
        }))
        .into_response())
    })
    .await
}

fn one(store: &Store, leaf: u64) -> Result<Record, Problem> {
    records(store, &[leaf])?
        .pop()
        .ok_or_else(|| Problem::not_found(format!("leaf {leaf}")))
}

fn receipt(store: &Store, r: &Record, checkpoint: &Note) -> Result<String, Problem> {
    let mut proof = store
        .receipt(r.leaf, Some(checkpoint))
        .map_err(ledger_err)?;
    proof.extra = Some(r.tx.leaf_preimage());
    Ok(proof.render())
}

/// One break-glass read as the list shows it. A review beyond the
/// checkpoint's size is left for the next answer.
fn entry_json(
    store: &Store,
    b: &BreakGlass,
    checkpoint: &Note,
    size: u64,
    deadline: u64,
    now: u64,
) -> Result<Value, Problem> {
    let entry = one(store, b.leaf)?;
    let summary = rules::access_entry(entry.tx.payload_jcs())
        .map_err(|e| Problem::corrupt(format!("access entry at leaf {}: {e}", b.leaf)))?;
    let review = match b.review.filter(|&l| l < size) {
        None => Value::Null,
        Some(leaf) => {
            let r = one(store, leaf)?;
            let payload = rules::review(r.tx.payload_jcs())
                .map_err(|e| Problem::corrupt(format!("review at leaf {leaf}: {e}")))?;
            json!({
                "id": hex::encode(r.tx.id()),
                "index": leaf,
                "time": r.tx.header().time,
                "author": r.tx.header().author,
                "outcome": payload.outcome.code(),
                "reason": payload.reason.code(),
                "receipt": receipt(store, &r, checkpoint)?,
            })
        }
    };
    let shown = BreakGlass {
        review: b.review.filter(|&l| l < size),
        ..b.clone()
    };
    Ok(json!({
        "id": b.id.to_hex(),
        "index": b.leaf,
        "time": b.time,
        "due": b.time.saturating_add(deadline),
        "overdue": shown.overdue(deadline, now),
        "reader": summary.reader,
        "patients": b.patients,
        "purpose": summary.purpose.code(),
        "reason": summary.reason,
        "receipt": receipt(store, &entry, checkpoint)?,
        "review": review,
    }))
}

/// The break-glass gauges in the Prometheus text format: reads awaiting
/// review, and those of them past their deadline. Computed when scraped,
/// since an entry turns overdue with time alone.
pub(crate) fn gauges(store: &Store) -> Result<String, Problem> {
    let deadline = store.break_glass_review_ms().map_err(ledger_err)?;
    let open = store.break_glass(0, usize::MAX, true).map_err(ledger_err)?;
    let now = now_ms();
    let overdue = open.iter().filter(|b| b.overdue(deadline, now)).count();
    let mut out = String::new();
    for (name, help, value) in [
        (
            "medledger_break_glass_unreviewed",
            "Break-glass reads awaiting the data-protection officer's review.",
            open.len(),
        ),
        (
            "medledger_break_glass_unreviewed_overdue",
            "Break-glass reads still unreviewed past the ledger's review deadline.",
            overdue,
        ),
    ] {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        );
    }
    Ok(out)
}
