//! Patient-facing services of a node: the pseudonymization authority's
//! endpoint and a patient's history.

use crate::http::access;
use crate::http::problem::Problem;
use crate::http::record::{Record, records};
use crate::http::request::{Shared, authorize, blocking, ledger_err, parse_u64, path_param, query};
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use medledger_formats::note::Note;
use medledger_health::pseudonym::{self, Identifier};
use medledger_ledger::{ACCESS_LOG_READERS, PSEUDONYM_MAKERS, Role, Store};
use medledger_store::By;
use serde::Deserialize;
use serde_json::{Value, json};

/// Most identifiers in one pseudonymization request.
pub(crate) const MAX_IDENTIFIERS: usize = 10_000;
/// Most records in one page of a patient's history.
pub(crate) const MAX_HISTORY: usize = 1_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PseudonymRequest {
    identifiers: Vec<String>,
}

/// `POST /v1/pseudonyms`: LBOs or JMBGs in, keyed pseudonyms out, in order.
/// Invalid identifiers get an error in their slot; no value is echoed and
/// nothing of the request is logged.
pub(crate) async fn pseudonyms(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Json<PseudonymRequest>, JsonRejection>,
) -> Result<Response, Problem> {
    authorize(&state, &headers, PSEUDONYM_MAKERS)?;
    let key = state.health.pseudonym_key.clone().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "pseudonymization_unavailable",
            "this node holds no pseudonym key (pseudonym_key in medledger.toml)",
        )
    })?;
    // The rejection text of a JSON body can quote it: never pass it on.
    let Json(req) = body.map_err(|e| match e {
        JsonRejection::MissingJsonContentType(_) => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send identifiers as application/json",
        ),
        JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "request body is too large",
            )
        }
        _ => Problem::malformed("expected {\"identifiers\": [\"<LBO or JMBG>\", ...]}"),
    })?;
    if req.identifiers.len() > MAX_IDENTIFIERS {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!("at most {MAX_IDENTIFIERS} identifiers per request"),
        ));
    }
    let out = blocking(move || {
        Ok(req
            .identifiers
            .iter()
            .map(|raw| match Identifier::parse(raw) {
                Ok(id) => json!({"pseudonym": key.pseudonym(&id)}),
                Err(e) => json!({"error": "invalid_identifier", "detail": e.to_string()}),
            })
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(Json(json!({ "pseudonyms": out })).into_response())
}

/// The pseudonym in a path, or 400 `bad_pseudonym`.
pub(crate) fn pseudonym_param(p: Result<Path<String>, PathRejection>) -> Result<String, Problem> {
    let patient = path_param(p, "bad_pseudonym")?;
    if !pseudonym::is_well_formed(&patient) {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "bad_pseudonym",
            "a pseudonym is 26 characters of base32 (A-Z, 2-7)",
        ));
    }
    Ok(patient)
}

/// Query of a history.
#[derive(Deserialize)]
pub(crate) struct HistoryQuery {
    as_of: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// The checkpoint a read answers against: the latest, or the one published
/// at `as_of`.
pub(crate) fn checkpoint_for(store: &Store, as_of: Option<u64>) -> Result<(Note, u64), Problem> {
    let latest = store
        .checkpoint()
        .ok_or_else(|| Problem::unavailable("no checkpoint yet"))?;
    let size = store.last().map_or(0, |h| h.header().log_size);
    match as_of {
        None => Ok((latest, size)),
        Some(n) if n > size => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("as_of {n} is beyond the log's size {size}"),
        )),
        Some(n) if n == size => Ok((latest, size)),
        Some(n) => Ok((store.checkpoint_at(n).map_err(ledger_err)?, n)),
    }
}

/// A record with its receipt against `checkpoint`.
pub(crate) fn record_json(store: &Store, r: &Record, checkpoint: &Note) -> Result<Value, Problem> {
    let mut v = crate::http::record::proven_json(store, r, checkpoint)?;
    v["payload"] =
        serde_json::from_slice(r.tx.payload_jcs()).map_err(|e| Problem::internal(e.to_string()))?;
    v["salt"] = json!(hex::encode(r.tx.salt()));
    Ok(v)
}

/// One page of a patient's history or access log, as the query asks.
struct Page {
    as_of: Option<u64>,
    after: Option<u64>,
    limit: usize,
}

impl Page {
    fn of(q: Result<Query<HistoryQuery>, QueryRejection>) -> Result<Page, Problem> {
        let q = query(q)?;
        Ok(Page {
            as_of: parse_u64("as_of", q.as_of.as_deref())?,
            after: parse_u64("after", q.after.as_deref())?,
            limit: parse_u64("limit", q.limit.as_deref())?
                .map_or(MAX_HISTORY, |l| (l as usize).clamp(1, MAX_HISTORY)),
        })
    }

    /// The page's leaves matching `by` below `size`, and where the next
    /// page starts (`None` on the last).
    fn leaves(
        &self,
        store: &Store,
        by: By<'_>,
        size: u64,
    ) -> Result<(Vec<u64>, Option<u64>), Problem> {
        // `after` comes from the query: u64::MAX must not overflow.
        let from = self.after.map_or(0, |a| a.saturating_add(1));
        let mut leaves = store
            .index()
            .leaves_by(by, from, self.limit + 1)
            .map_err(|e| Problem::unavailable(e.to_string()))?;
        leaves.retain(|&l| l < size);
        let more = leaves.len() > self.limit;
        leaves.truncate(self.limit);
        let next = more.then(|| leaves.last().copied()).flatten();
        Ok((leaves, next))
    }
}

/// `GET /v1/patients/{pseudonym}/history`: every record about a patient,
/// oldest first, each with its receipt; `as_of=SIZE` answers as of the
/// checkpoint published at that log size.
pub(crate) async fn history(
    State(state): State<Shared>,
    headers: HeaderMap,
    patient: Result<Path<String>, PathRejection>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let patient = pseudonym_param(patient)?;
    let page = Page::of(q)?;
    let st = state.clone();
    let (answer, entries) = blocking(move || {
        let reader = access::reader(&st, &headers)?;
        if !access::may_read_patient(&reader, &patient) {
            return Err(access::refused(&reader, 0));
        }
        let store = st.log.store();
        let (checkpoint, size) = checkpoint_for(store, page.as_of)?;
        let (leaves, next) = page.leaves(store, By::Patient(&patient), size)?;
        // Redacted records show as such, with nothing of what they held;
        // the rest go through the read decision.
        let (erased, live): (Vec<Record>, Vec<Record>) = records(store, &leaves)?
            .into_iter()
            .partition(|r| r.tx.is_redacted());
        let erased: Vec<Record> = erased
            .into_iter()
            .filter(|r| {
                medledger_ledger::may_read_kind(reader.participant.role, &r.tx.header().kind)
            })
            .collect();
        // The decision leaves out the donor registry for its non-readers,
        // and withholds what the patient's directives deny.
        let judged = access::judge(&st, &reader, live, None)?;
        let mut recs: Vec<(bool, Record)> = judged
            .records
            .into_iter()
            .map(|r| (false, r))
            .chain(erased.into_iter().map(|r| (true, r)))
            .collect();
        recs.sort_by_key(|(_, r)| (r.tx.header().time, r.leaf));
        let items = recs
            .iter()
            .map(|(erased, r)| match erased {
                true => crate::http::record::tombstone_json(store, r, &checkpoint),
                false => record_json(store, r, &checkpoint),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let body = json!({
            "patient": patient,
            "as_of": size,
            "checkpoint": checkpoint.render(),
            "records": items,
            "withheld": judged.withheld,
            "next_after": next,
        });
        Ok((body, judged.entries))
    })
    .await?;
    access::log(&state, entries).await?;
    Ok(Json(answer).into_response())
}

/// `GET /v1/patients/{pseudonym}/access-log`: every logged read of a
/// patient's records, oldest first, each entry with its receipt. For the
/// data-protection officer.
pub(crate) async fn access_log(
    State(state): State<Shared>,
    headers: HeaderMap,
    patient: Result<Path<String>, PathRejection>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let patient = pseudonym_param(patient)?;
    let page = Page::of(q)?;
    blocking(move || {
        let reader = authorize(&state, &headers, ACCESS_LOG_READERS)?;
        if reader.role == Role::Patient && reader.patient.as_deref() != Some(patient.as_str()) {
            return Err(Problem::forbidden(
                "a patient reads only their own access log",
            ));
        }
        let store = state.log.store();
        let (checkpoint, size) = checkpoint_for(store, page.as_of)?;
        let (leaves, next) = page.leaves(store, By::Accessed(&patient), size)?;
        let items = records(store, &leaves)?
            .iter()
            .map(|r| record_json(store, r, &checkpoint))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Json(json!({
            "patient": patient,
            "as_of": size,
            "checkpoint": checkpoint.render(),
            "entries": items,
            "next_after": next,
        }))
        .into_response())
    })
    .await
}
