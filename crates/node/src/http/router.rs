//! The HTTP API under `/v1`, plus health, metrics and the OpenAPI document.
//!
//! Handlers never block the async runtime: ledger work runs on blocking
//! threads. Client input never produces a 500: every failure is a
//! [`Problem`] with a stable code.

use crate::http::access;
use crate::http::problem::Problem;
use crate::http::record::Record;
use crate::http::request::{
    ApiResult, Shared, admit_body, authorize, blocking, ledger_err, parse_u64, path_param, query,
    receipt_json,
};
use axum::Router;
use axum::body::Bytes;
use axum::error_handling::HandleErrorLayer;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use medledger_formats::bytes::Bytes as Hex;
use medledger_ledger::{DIRECTORY_READERS, Participant, Store};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceBuilder;

/// The OpenAPI document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Builds the router.
pub fn router(state: Shared) -> Router {
    let max_body = state.config.max_body_bytes;
    let edge = crate::http::edge::Edge {
        budgets: state.budgets.clone(),
        max_body,
        body_timeout: Duration::from_millis(state.config.body_read_timeout_ms),
        fhir_errors: crate::http::fhir::outcome_response,
    };
    // The routes that write to the ledger: a follower redirects them.
    let lead = axum::middleware::from_fn_with_state(state.clone(), to_leader);
    let api = Router::new()
        .route("/v1/transactions", post(submit).layer(lead.clone()))
        .route("/v1/transactions/{id}", get(get_transaction))
        .route("/v1/transactions/{id}/receipt", get(get_receipt))
        .route("/v1/checkpoint", get(checkpoint))
        .route("/v1/cosignature", get(crate::http::cosign::cosignature))
        .route("/v1/proofs/consistency", get(consistency))
        .route("/v1/blocks", get(blocks))
        .route("/v1/blocks/{height}", get(block))
        .route("/v1/status", get(status))
        .route("/v1/token", post(crate::http::token::token))
        .route("/v1/participants", get(participants))
        .route("/v1/pseudonyms", post(crate::http::health::pseudonyms))
        .route(
            "/v1/patients/{pseudonym}/history",
            get(crate::http::health::history),
        )
        .route(
            "/v1/patients/{pseudonym}/access-log",
            get(crate::http::health::access_log),
        )
        .route("/v1/break-glass", get(crate::http::glass::list))
        .route("/v1/export", get(crate::http::export::export))
        .route(
            "/v1/vitals",
            post(crate::http::services::vitals).layer(lead.clone()),
        )
        .route("/v1/alerts", get(crate::http::services::alerts))
        .route(
            "/v1/alerts/stream",
            get(crate::http::services::alert_stream),
        )
        .route("/v1/donors/{pseudonym}", get(crate::http::services::donor))
        .route("/v1/stats/epidemic", get(crate::http::stats::epidemic))
        .route(
            "/v1/stats/vaccination",
            get(crate::http::stats::vaccination),
        )
        .route("/fhir", post(crate::http::fhir::bundle).layer(lead.clone()))
        .route("/fhir/metadata", get(crate::http::fhir::metadata))
        .route(
            "/.well-known/smart-configuration",
            get(crate::http::fhir::smart_configuration),
        )
        .route(
            "/fhir/.well-known/smart-configuration",
            get(crate::http::fhir::smart_configuration),
        )
        .route(
            "/fhir/Patient/{pseudonym}/$everything",
            get(crate::http::fhir::everything),
        )
        .route(
            "/fhir/{type}",
            get(crate::http::fhir::search).merge(post(crate::http::fhir::create).layer(lead)),
        )
        .route("/fhir/{type}/{id}", get(crate::http::fhir::read))
        .route("/", get(crate::http::dashboard::index))
        .route("/dashboard/{asset}", get(crate::http::dashboard::file))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback(|| async { Problem::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method (see Allow)",
            )
        })
        .with_state(state)
        .layer(axum::middleware::from_fn(crate::http::fhir::edge));
    api.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async move {
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "timeout",
                    "the request took longer than 60 s; look a transaction up by id before resubmitting it",
                )
            }))
            .timeout(Duration::from_secs(60)),
    )
    .layer(DefaultBodyLimit::max(max_body))
    // Outside the budgets: a body is read whole, within its time limit,
    // before its request may take a permit.
    .layer(axum::middleware::from_fn_with_state(edge, crate::http::edge::admit))
    .layer(tower_http::trace::TraceLayer::new_for_http())
    .layer(axum::middleware::from_fn(crate::http::observe::observe))
}

fn store_of(state: &Shared) -> Arc<Store> {
    state.log.store().clone()
}

async fn submit(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    let (results, batch) = admit_body(&state, &headers, body, None).await?;
    if !batch {
        return match results.into_iter().next() {
            Some(Ok(r)) => Ok((StatusCode::OK, axum::Json(receipt_json(&r))).into_response()),
            Some(Err(p)) => Err(p),
            None => Err(Problem::internal("missing result")),
        };
    }
    let out: Vec<Value> = results
        .iter()
        .map(|r| match r {
            Ok(r) => {
                let mut v = receipt_json(r);
                v["status"] = json!(200);
                v
            }
            Err(p) => json!({"status": p.status, "problem": p}),
        })
        .collect();
    Ok(axum::Json(json!({ "results": out })).into_response())
}

/// Admits the signed transactions of a request body (one, or an array),
/// each of kind `only` if given, and waits for their outcomes. Also says
/// whether the body was an array.
fn parse_id(id: &str) -> ApiResult<Hex<32>> {
    Hex::<32>::parse_hex(id).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad_id",
            format!("transaction id: {e}"),
        )
    })
}

async fn get_transaction(
    State(state): State<Shared>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let id = parse_id(&path_param(id, "bad_id")?)?;
    let st = state.clone();
    let (answer, entries) = blocking(move || {
        let reader = access::reader(&st, &headers)?;
        let store = st.log.store();
        let (tx, leaf, height) = store
            .transaction(&id.0)
            .map_err(ledger_err)?
            .ok_or_else(|| Problem::not_found(format!("transaction {id}")))?;
        crate::http::request::may_read_kind(&reader.participant, &tx.header().kind)?;
        let record = Record { tx, leaf, height };
        if record.tx.is_redacted() {
            // Nothing of the record is read, so there is nothing to log.
            return Err(crate::http::record::gone(store, &record));
        }
        let judged = access::judge(&st, &reader, vec![record], None)?;
        let Some(Record { tx, .. }) = judged.records.into_iter().next() else {
            let refused = access::refused(&reader, judged.withheld);
            return Ok((Err(refused), judged.entries));
        };
        let mut proof = store.receipt(leaf, None).map_err(ledger_err)?;
        proof.extra = Some(tx.leaf_preimage());
        let wire = tx.to_wire().map_err(|e| Problem::internal(e.to_string()))?;
        let body = json!({
            "id": id,
            "index": leaf,
            "height": height,
            "transaction": wire,
            "receipt": proof.render(),
        });
        Ok((Ok(body), judged.entries))
    })
    .await?;
    access::log(&state, entries).await?;
    Ok(axum::Json(answer?).into_response())
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

#[derive(Deserialize)]
struct ReceiptQuery {
    cosigned: Option<String>,
}

async fn get_receipt(
    State(state): State<Shared>,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<ReceiptQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let id = parse_id(&path_param(id, "bad_id")?)?;
    let cosigned = match query(q)?.cosigned.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "bad_query",
                "cosigned must be true or false",
            ));
        }
    };
    let store = store_of(&state);
    let mut proof = blocking(move || {
        let (tx, leaf, _) = store
            .transaction(&id.0)
            .map_err(ledger_err)?
            .ok_or_else(|| Problem::not_found(format!("transaction {id}")))?;
        let mut proof = store.receipt(leaf, None).map_err(ledger_err)?;
        proof.extra = Some(tx.leaf_preimage());
        Ok(proof)
    })
    .await?;
    if cosigned {
        crate::http::cosign::cosign_with_peers(&state, &mut proof.checkpoint).await?;
    }
    Ok(text(proof.render()))
}

async fn checkpoint(State(state): State<Shared>) -> ApiResult<Response> {
    let store = state.log.store();
    let cp = store
        .checkpoint()
        .ok_or_else(|| Problem::unavailable("no checkpoint yet"))?;
    Ok(text(cp.render()))
}

#[derive(Deserialize)]
struct ConsistencyQuery {
    from: Option<String>,
    to: Option<String>,
}

async fn consistency(
    State(state): State<Shared>,
    q: Result<Query<ConsistencyQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q)?;
    let from = parse_u64("from", q.from.as_deref())?
        .ok_or_else(|| Problem::new(StatusCode::BAD_REQUEST, "bad_query", "from is required"))?;
    let to = parse_u64("to", q.to.as_deref())?;
    let store = store_of(&state);
    blocking(move || {
        let size = store.last().map_or(0, |h| h.header().log_size);
        let to = to.unwrap_or(size);
        if from == 0 || from > to || to > size {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "bad_query",
                format!("need 0 < from <= to <= {size} (the current log size)"),
            ));
        }
        let proof = store.consistency(from, to).map_err(ledger_err)?;
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(axum::Json(json!({
            "from": from,
            "to": to,
            "proof": proof.iter().map(|h| b64.encode(h)).collect::<Vec<_>>(),
        }))
        .into_response())
    })
    .await
}

fn block_json(store: &Store, height: u64) -> ApiResult<Value> {
    // Headers only: a public endpoint must not make the node read and check payloads.
    let (header, stubs) = store.block_headers(height).map_err(ledger_err)?;
    let txs: Vec<Value> = stubs
        .iter()
        .map(|t| {
            json!({
                "id": hex::encode(t.id),
                "header": t.header,
                "signature": hex::encode(t.signature),
            })
        })
        .collect();
    Ok(json!({
        "height": height,
        "hash": hex::encode(header.hash()),
        "header": header.header(),
        "signature": hex::encode(header.signature()),
        "transactions": txs,
    }))
}

async fn block(
    State(state): State<Shared>,
    height: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let height = path_param(height, "bad_query")?;
    let height = parse_u64("height", Some(&height))?.unwrap_or(0);
    let store = store_of(&state);
    blocking(move || Ok(axum::Json(block_json(&store, height)?).into_response())).await
}

#[derive(Deserialize)]
struct BlocksQuery {
    from: Option<String>,
    limit: Option<String>,
}

/// Most blocks returned by one `/v1/blocks` call.
pub(crate) const MAX_BLOCKS_PAGE: u64 = 100;

async fn blocks(
    State(state): State<Shared>,
    q: Result<Query<BlocksQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q)?;
    let from = parse_u64("from", q.from.as_deref())?.unwrap_or(0);
    let limit = parse_u64("limit", q.limit.as_deref())?
        .unwrap_or(20)
        .clamp(1, MAX_BLOCKS_PAGE);
    let store = store_of(&state);
    blocking(move || {
        let tip = store.last().map_or(0, |h| h.header().height + 1);
        let end = from.saturating_add(limit).min(tip);
        let list = (from..end)
            .map(|h| block_json(&store, h))
            .collect::<ApiResult<Vec<_>>>()?;
        let next = (end < tip).then_some(end);
        Ok(axum::Json(json!({ "blocks": list, "next": next })).into_response())
    })
    .await
}

/// In a cluster, a write sent to a follower is redirected (307, so the
/// client repeats the same POST) to the leader.
async fn to_leader(
    State(state): State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(cluster) = &state.cluster
        && let Err(crate::pipeline::SubmitError::NotLeader(Some(leader))) =
            cluster.leadership.epoch()
    {
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        return axum::response::Redirect::temporary(&format!(
            "{}{target}",
            leader.trim_end_matches('/')
        ))
        .into_response();
    }
    next.run(req).await
}

async fn status(State(state): State<Shared>) -> ApiResult<Response> {
    let store = state.log.store();
    let (height, size, root) = store.last().map_or((0, 0, String::new()), |h| {
        let h = h.header();
        (h.height, h.log_size, h.log_root.to_hex())
    });
    Ok(axum::Json(json!({
        "origin": store.origin(),
        "vkey": store.verifier().to_vkey(),
        "cosigner_vkey": state.cosigner.verifier().to_vkey(),
        "height": height,
        "log_size": size,
        "log_root": root,
        "checkpoint": store.checkpoint().map(|c| c.render()),
        "writable": !state.seq.failed() && store.damaged().is_none(),
        "damaged": store.damaged().map(|(height, what)| json!({"height": height, "what": what})),
        "cluster": state.cluster.as_ref().map(|c| c.status()),
    }))
    .into_response())
}

async fn participants(State(state): State<Shared>, headers: HeaderMap) -> ApiResult<Response> {
    let st = state.clone();
    blocking(move || {
        authorize(&st, &headers, DIRECTORY_READERS)?;
        let store = st.log.store();
        let list: Vec<Participant> = store.participants().map_err(ledger_err)?;
        Ok(axum::Json(json!({ "participants": list })).into_response())
    })
    .await
}

async fn metrics_text(State(state): State<Shared>) -> Response {
    // Read from the store, so followers report them too.
    if let Some(h) = state.log.store().last() {
        let h = h.header();
        metrics::gauge!("medledger_block_height").set(h.height as f64);
        metrics::gauge!("medledger_log_size").set(h.log_size as f64);
    }
    let mut body = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    if !body.is_empty() && !body.ends_with('\n') {
        body.push('\n');
    }
    // Gauges that depend on the clock are computed from the ledger when
    // scraped; a node that cannot read them yet (no genesis) leaves them out.
    let st = state.clone();
    if let Ok(gauges) = blocking(move || crate::http::glass::gauges(st.log.store())).await {
        body.push_str(&gauges);
    }
    if let Some(cluster) = &state.cluster {
        body.push_str(&cluster.gauges());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn readyz(State(state): State<Shared>) -> ApiResult<&'static str> {
    if let Some((height, what)) = state.log.store().damaged() {
        Err(Problem::corrupt(format!(
            "block {height} is damaged ({what}); the node no longer accepts writes"
        )))
    } else if state.seq.failed() {
        Err(Problem::unavailable(
            "storage failed; the node no longer accepts writes",
        ))
    } else {
        Ok("ready")
    }
}
