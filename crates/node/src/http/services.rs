//! The smart-health services: the vitals batch endpoint, NEWS2 alerts (a
//! list and a Server-Sent Events stream) and the organ-donor registry.

use crate::http::health::checkpoint_for;
use crate::http::problem::Problem;
use crate::http::request::{Shared, admit_body, authorize, blocking, parse_u64, query};
use crate::views::{AlertEvent, DonorEntry};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use medledger_health::news2::Risk;
use medledger_health::registries::{Decision, Organ};
use medledger_ledger::{ALERT_READERS, DONOR_READERS, kind};
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// Most alerts in one page.
const MAX_ALERTS: usize = 1000;

/// `POST /v1/vitals`: a gateway's batch of signed `vital_signs`
/// transactions. Answers with each one's leaf and id (receipts are fetched
/// on demand), so a batch of thousands stays small on the wire.
pub(crate) async fn vitals(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let (results, batch) = admit_body(&state, &headers, body, Some(kind::VITAL_SIGNS)).await?;
    if !batch && let Some(Err(p)) = results.first() {
        return Err(p.clone());
    }
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    let out: Vec<Value> = results
        .iter()
        .map(|r| match r {
            Ok(r) => json!({"status": 200, "id": hex::encode(r.id), "leaf": r.leaf}),
            Err(p) => json!({"status": p.status, "problem": p}),
        })
        .collect();
    Ok(Json(json!({
        "accepted": accepted,
        "refused": results.len() - accepted,
        "results": out,
    }))
    .into_response())
}

/// Query of the alert list and stream.
#[derive(Deserialize)]
pub(crate) struct AlertQuery {
    min_level: Option<String>,
    patient: Option<String>,
    offset: Option<String>,
    limit: Option<String>,
    access_token: Option<String>,
}

fn min_level(q: &AlertQuery) -> Result<Risk, Problem> {
    match q.min_level.as_deref() {
        None | Some("low") => Ok(Risk::Low),
        Some("low_medium") => Ok(Risk::LowMedium),
        Some("medium") => Ok(Risk::Medium),
        Some("high") => Ok(Risk::High),
        Some(other) => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("min_level must be low, low_medium, medium or high, not {other:?}"),
        )),
    }
}

/// The `patient` filter, if given: a malformed pseudonym would match no
/// alert, so it is refused rather than answered with an empty list.
fn patient_filter(q: &AlertQuery) -> Result<(), Problem> {
    match q.patient.as_deref() {
        Some(p) if !medledger_health::pseudonym::is_well_formed(p) => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            "patient must be a pseudonym, 26 characters of base32 (A-Z, 2-7)",
        )),
        _ => Ok(()),
    }
}

/// `GET /v1/alerts`: current NEWS2 alerts, highest level and score first.
pub(crate) async fn alerts(
    State(state): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<AlertQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let q = query(q)?;
    let min = min_level(&q)?;
    patient_filter(&q)?;
    let offset = parse_u64("offset", q.offset.as_deref())?.unwrap_or(0) as usize;
    let limit =
        parse_u64("limit", q.limit.as_deref())?.map_or(100, |l| (l as usize).clamp(1, MAX_ALERTS));
    let st = state.clone();
    blocking(move || {
        authorize(&st, &headers, ALERT_READERS)?;
        let views = &st.views;
        let applied = views.applied();
        let all: Vec<_> = views
            .alerts()
            .into_iter()
            .filter(|a| a.level >= min)
            .filter(|a| q.patient.as_deref().is_none_or(|p| a.patient == p))
            .collect();
        let total = all.len();
        let page: Vec<&crate::views::Alert> =
            all.iter().skip(offset).take(limit).map(|a| &**a).collect();
        Ok(Json(json!({
            "as_of": applied,
            "window_minutes": views.window_minutes(),
            "total": total,
            "offset": offset,
            "alerts": page,
        }))
        .into_response())
    })
    .await
}

/// `GET /v1/alerts/stream`: alert changes as Server-Sent Events (`alert`
/// and `cleared`; `resync` when this subscriber fell behind and should read
/// `GET /v1/alerts` again). Browsers' EventSource cannot send headers, so
/// the token may also come as `access_token` in the query.
pub(crate) async fn alert_stream(
    State(state): State<Shared>,
    mut headers: HeaderMap,
    q: Result<Query<AlertQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    let q = query(q)?;
    let min = min_level(&q)?;
    patient_filter(&q)?;
    if let Some(token) = &q.access_token
        && !headers.contains_key(header::AUTHORIZATION)
    {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| Problem::unauthorized("access_token is not a token"))?;
        headers.insert(header::AUTHORIZATION, value);
    }
    let st = state.clone();
    let headers2 = headers.clone();
    blocking(move || authorize(&st, &headers2, ALERT_READERS).map(|_| ())).await?;
    let (rx, closed) = state.views.subscribe();
    let patient = q.patient;
    let events = futures_util::stream::unfold((rx, closed), move |(mut rx, mut closed)| {
        let patient = patient.clone();
        async move {
            loop {
                if *closed.borrow() {
                    return None;
                }
                let received = tokio::select! {
                    r = rx.recv() => r,
                    _ = closed.changed() => return None,
                };
                let event = match received {
                    Ok(AlertEvent::Raised(a)) => {
                        if a.level < min || patient.as_deref().is_some_and(|p| a.patient != p) {
                            continue;
                        }
                        Event::default()
                            .event("alert")
                            .id(a.seq.to_string())
                            .json_data(&*a)
                    }
                    Ok(AlertEvent::Cleared { seq, patient: p }) => {
                        if patient.as_deref().is_some_and(|want| p != want) {
                            continue;
                        }
                        Event::default()
                            .event("cleared")
                            .id(seq.to_string())
                            .json_data(json!({"seq": seq, "patient": p}))
                    }
                    Err(RecvError::Lagged(n)) => Event::default()
                        .event("resync")
                        .json_data(json!({"missed": n})),
                    Err(RecvError::Closed) => return None,
                };
                return Some((Ok(event.unwrap_or_default()), (rx, closed)));
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The registry state a patient's decisions lead to.
fn donor_state(entries: &[DonorEntry]) -> Value {
    let Some(last) = entries.last() else {
        return json!({"status": "no_decision"});
    };
    let d = &last.decision;
    let all = [
        Organ::Kidneys,
        Organ::Heart,
        Organ::Liver,
        Organ::Lungs,
        Organ::Pancreas,
        Organ::SmallBowel,
        Organ::Corneas,
        Organ::OtherTissue,
    ];
    let (status, organs): (&str, &[Organ]) = match d.decision {
        Decision::OptInAll => ("donor", &all),
        Decision::OptIn => ("donor", &d.organs),
        Decision::OptOut => ("refused", &[]),
        Decision::Withdrawal => ("no_decision", &[]),
    };
    json!({
        "status": status,
        "organs": organs,
        "decision": d.decision,
        "date": d.date,
        "leaf": last.leaf,
        "id": hex::encode(last.id),
        "withdrawn": d.decision == Decision::Withdrawal,
    })
}

/// `GET /v1/donors/{pseudonym}`: a patient's organ-donor registry entry:
/// the decision in force and every decision on record, each with its
/// receipt.
pub(crate) async fn donor(
    State(state): State<Shared>,
    headers: HeaderMap,
    patient: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let patient = crate::http::health::pseudonym_param(patient)?;
    let st = state.clone();
    blocking(move || {
        authorize(&st, &headers, DONOR_READERS)?;
        let store = st.log.store();
        // Answer as of the log the registry view has read.
        let (checkpoint, size) = checkpoint_for(store, Some(st.views.applied()))?;
        let entries: Vec<DonorEntry> = st
            .views
            .donor_decisions(&patient)
            .into_iter()
            .filter(|e| e.leaf < size)
            .collect();
        let history = entries
            .iter()
            .map(|e| {
                let (tx, _, _) = store
                    .transaction(&e.id)
                    .map_err(crate::http::request::ledger_err)?
                    .ok_or_else(|| Problem::internal("registry entry not in the log"))?;
                let mut proof = store
                    .receipt(e.leaf, Some(&checkpoint))
                    .map_err(crate::http::request::ledger_err)?;
                proof.extra = Some(tx.leaf_preimage());
                Ok(json!({
                    "leaf": e.leaf,
                    "id": hex::encode(e.id),
                    "recorded_by": tx.header().author,
                    "decision": e.decision.decision,
                    "organs": e.decision.organs,
                    "date": e.decision.date,
                    "receipt": proof.render(),
                }))
            })
            .collect::<Result<Vec<_>, Problem>>()?;
        Ok(Json(json!({
            "patient": patient,
            "as_of": size,
            "checkpoint": checkpoint.render(),
            "current": donor_state(&entries),
            "history": history,
        }))
        .into_response())
    })
    .await
}
