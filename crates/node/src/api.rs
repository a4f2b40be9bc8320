//! The HTTP API under `/v1`, plus health, metrics and the OpenAPI document.
//!
//! Handlers never block the async runtime: ledger work runs on blocking
//! threads. Client input never produces a 500: every failure is a
//! [`Problem`] with a stable code.

use crate::config::NodeConfig;
use crate::problem::{Problem, submit_problem};
use crate::tokens::Tokens;
use crate::{Receipt, Sequencer};
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
use medledger_formats::tx::{Transaction, TxWire};
use medledger_ledger::ledger::Store;
use medledger_ledger::roles::{DIRECTORY_READERS, RECORD_READERS, Role};
use medledger_ledger::state::Participant;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceBuilder;

/// Shared state of the API.
pub struct AppState {
    /// The sequencer (writes).
    pub seq: Arc<Sequencer>,
    /// Bearer tokens.
    pub tokens: Tokens,
    /// Settings.
    pub config: NodeConfig,
    /// Prometheus exporter, if installed.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Pseudonym key and integration accounts' keys.
    pub health: crate::health::Health,
    /// Alerts, counts and registries derived from the log.
    pub views: Arc<crate::views::Views>,
    /// Cluster mode: the Raft side.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// This node as a cosigner of the ledger's checkpoints (its node key).
    pub cosigner: Arc<medledger_formats::cosignature::Cosigner>,
    /// Base URLs of the other nodes' HTTP APIs (e.g. `http://10.0.0.2:7878`),
    /// asked for cosignatures; empty for a single node.
    pub peers: Arc<std::sync::RwLock<Vec<String>>>,
    /// Concurrency budgets for writes and for reads.
    pub budgets: crate::edge::Budgets,
}

pub(crate) type Shared = Arc<AppState>;
type ApiResult<T> = Result<T, Problem>;

/// The OpenAPI document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Builds the router.
pub fn router(state: Shared) -> Router {
    let max_body = state.config.max_body_bytes;
    let edge = crate::edge::Edge {
        budgets: state.budgets.clone(),
        max_body,
        body_timeout: Duration::from_millis(state.config.body_read_timeout_ms),
        fhir_errors: crate::fhir_api::outcome_response,
    };
    // The routes that write to the ledger: a follower redirects them.
    let lead = axum::middleware::from_fn_with_state(state.clone(), to_leader);
    let api = Router::new()
        .route("/v1/transactions", post(submit).layer(lead.clone()))
        .route("/v1/transactions/{id}", get(get_transaction))
        .route("/v1/transactions/{id}/receipt", get(get_receipt))
        .route("/v1/checkpoint", get(checkpoint))
        .route("/v1/cosignature", get(crate::cosign::cosignature))
        .route("/v1/proofs/consistency", get(consistency))
        .route("/v1/blocks", get(blocks))
        .route("/v1/blocks/{height}", get(block))
        .route("/v1/status", get(status))
        .route("/v1/participants", get(participants))
        .route("/v1/pseudonyms", post(crate::health::pseudonyms))
        .route(
            "/v1/patients/{pseudonym}/history",
            get(crate::health::history),
        )
        .route("/v1/export", get(crate::export::export))
        .route(
            "/v1/vitals",
            post(crate::services::vitals).layer(lead.clone()),
        )
        .route("/v1/alerts", get(crate::services::alerts))
        .route("/v1/alerts/stream", get(crate::services::alert_stream))
        .route("/v1/donors/{pseudonym}", get(crate::services::donor))
        .route("/v1/stats/epidemic", get(crate::stats::epidemic))
        .route("/v1/stats/vaccination", get(crate::stats::vaccination))
        .route("/fhir", post(crate::fhir_api::bundle).layer(lead.clone()))
        .route("/fhir/metadata", get(crate::fhir_api::metadata))
        .route(
            "/fhir/Patient/{pseudonym}/$everything",
            get(crate::fhir_api::everything),
        )
        .route(
            "/fhir/{type}",
            get(crate::fhir_api::search).merge(post(crate::fhir_api::create).layer(lead)),
        )
        .route("/fhir/{type}/{id}", get(crate::fhir_api::read))
        .route("/", get(crate::dashboard::index))
        .route("/dashboard/{asset}", get(crate::dashboard::file))
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
        .with_state(state);
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
    .layer(axum::middleware::from_fn_with_state(edge, crate::edge::admit))
    .layer(tower_http::trace::TraceLayer::new_for_http())
}

fn too_large(max: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("request body exceeds {max} bytes"),
    )
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Problem::internal(format!("worker failed: {e}")))?
}

fn store_of(state: &Shared) -> Arc<Store> {
    state.seq.store().clone()
}

/// The problem for a storage error. Details name a block or a file, never
/// a path on the server; the full error goes to the log.
pub(crate) fn ledger_err(e: medledger_ledger::LedgerError) -> Problem {
    use medledger_ledger::LedgerError;
    match e {
        LedgerError::NotFound(what) => Problem::not_found(what),
        LedgerError::Damaged { height, what } => {
            Problem::corrupt(format!("block {height} is damaged: {what}"))
        }
        other => {
            tracing::error!(error = %other, "storage error");
            Problem::unavailable("storage error; the node's log has the details")
        }
    }
}

/// The participant behind the bearer token, if its role is in `roles`.
pub(crate) fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    roles: &[Role],
) -> ApiResult<Participant> {
    // The scheme name is case-insensitive (RFC 9110 section 11.1).
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token)
        .ok_or_else(|| Problem::unauthorized("a bearer token is required"))?;
    let key = state
        .tokens
        .lookup(token.trim())
        .ok_or_else(|| Problem::unauthorized("unknown or revoked token"))?;
    let store = state.seq.store();
    let record = store
        .index()
        .participant(&key.0)
        .map_err(|e| Problem::unavailable(e.to_string()))?
        .and_then(|bytes| serde_json::from_slice::<Participant>(&bytes).ok())
        .ok_or_else(|| Problem::unauthorized("token's participant is not registered"))?;
    if record.revoked_at.is_some() {
        return Err(Problem::unauthorized("token's participant was revoked"));
    }
    if !roles.contains(&record.role) {
        return Err(Problem::forbidden(format!(
            "role {} may not read this",
            record.role
        )));
    }
    Ok(record)
}

fn require_json(headers: &HeaderMap) -> ApiResult<()> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send transactions as application/json",
        ))
    }
}

fn receipt_json(r: &Receipt) -> Value {
    json!({
        "id": hex::encode(r.id),
        "index": r.leaf,
        "height": r.height,
        "receipt": r.proof.render(),
    })
}

/// Bodies up to this size are parsed and checked on the async runtime.
const INLINE_BODY: usize = 16 << 10;

/// A submission parsed and handed to the sequencer.
struct Prepared {
    slots: Vec<Option<Result<Receipt, Problem>>>,
    at: Vec<usize>,
    waiting: crate::pipeline::Waiting,
    batch: bool,
}

fn parse_item(raw: &RawValue) -> Result<Transaction, Problem> {
    let wire: TxWire =
        serde_json::from_str(raw.get()).map_err(|e| Problem::schema(e.to_string()))?;
    Transaction::from_wire(wire).map_err(|e| Problem::schema(e.to_string()))
}

/// Reads a JSON array lazily, refusing it as soon as it holds more than
/// `max` items, so a body of a million tiny items never becomes a million
/// parsed values.
struct CappedItems<'a> {
    max: usize,
    over: &'a std::cell::Cell<bool>,
}

impl<'de> serde::de::DeserializeSeed<'de> for CappedItems<'_> {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for CappedItems<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of transactions")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            if out.len() == self.max {
                self.over.set(true);
                return Err(serde::de::Error::custom("too many items"));
            }
            out.push(item);
        }
        Ok(out)
    }
}

/// Splits a body into its transactions: one object, or an array (a batch).
fn split_items(body: &[u8], max_batch: usize) -> ApiResult<(Vec<&RawValue>, bool)> {
    let batch = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    if !batch {
        let item: &RawValue =
            serde_json::from_slice(body).map_err(|e| Problem::malformed(e.to_string()))?;
        return Ok((vec![item], false));
    }
    let over = std::cell::Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(body);
    let items = serde::de::DeserializeSeed::deserialize(
        CappedItems {
            max: max_batch,
            over: &over,
        },
        &mut de,
    )
    .and_then(|items| de.end().map(|()| items));
    match items {
        Ok(items) if items.is_empty() => Err(Problem::schema("empty batch")),
        Ok(items) => Ok((items, true)),
        Err(_) if over.get() => Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!("at most {max_batch} transactions per request"),
        )),
        Err(e) => Err(Problem::malformed(e.to_string())),
    }
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
pub(crate) async fn admit_body(
    state: &Shared,
    headers: &HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    only: Option<&'static str>,
) -> ApiResult<(Vec<Result<Receipt, Problem>>, bool)> {
    require_json(headers)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(state.config.max_body_bytes)
        } else {
            Problem::malformed(e.body_text())
        }
    })?;
    let max_batch = state.config.max_batch;
    let seq = state.seq.clone();
    let inline = body.len() <= INLINE_BODY;
    // Parsing and signature checks are CPU work: small bodies (a single
    // transaction) are handled on the runtime, larger ones on the blocking
    // pool. Waiting for the commit never holds a thread.
    let prepare = move || -> ApiResult<Prepared> {
        let (items, batch) = split_items(&body, max_batch)?;
        let mut slots: Vec<Option<Result<Receipt, Problem>>> = Vec::with_capacity(items.len());
        let mut good = Vec::new();
        let mut at = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let parsed = parse_item(item).and_then(|tx| match only {
                Some(kind) if tx.header().kind != kind => Err(Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "wrong_kind",
                    format!("this endpoint takes {kind} transactions only"),
                )),
                _ => Ok(tx),
            });
            match parsed {
                Ok(tx) => {
                    good.push(tx);
                    at.push(i);
                    slots.push(None);
                }
                Err(p) => {
                    metrics::counter!("medledger_transactions_rejected_total", "reason" => p.code)
                        .increment(1);
                    slots.push(Some(Err(p)));
                }
            }
        }
        let waiting = seq.enqueue(good);
        Ok(Prepared {
            slots,
            at,
            waiting,
            batch,
        })
    };
    let Prepared {
        mut slots,
        at,
        waiting,
        batch,
    } = if inline {
        prepare()?
    } else {
        blocking(prepare).await?
    };
    for (i, outcome) in at.into_iter().zip(waiting.done().await) {
        slots[i] = Some(outcome.map_err(|e| submit_problem(&e)));
    }
    let results = slots
        .into_iter()
        .map(|s| s.unwrap_or_else(|| Err(Problem::internal("missing result"))))
        .collect::<Vec<_>>();
    Ok((results, batch))
}

/// A path parameter, or 400 `code` when it is not UTF-8 once percent-decoded.
pub(crate) fn path_param(
    p: Result<Path<String>, PathRejection>,
    code: &'static str,
) -> ApiResult<String> {
    p.map(|Path(v)| v)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, code, e.body_text()))
}

/// Query parameters, or 400 bad_query (say, a parameter given twice).
pub(crate) fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|Query(v)| v)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))
}

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
    blocking(move || {
        let reader = authorize(&st, &headers, RECORD_READERS)?;
        let store = st.seq.store();
        let (tx, leaf, height) = store
            .transaction(&id.0)
            .map_err(ledger_err)?
            .ok_or_else(|| Problem::not_found(format!("transaction {id}")))?;
        crate::services::may_read_kind(&reader, &tx.header().kind)?;
        let mut proof = store.receipt(leaf, None).map_err(ledger_err)?;
        proof.extra = Some(tx.leaf_preimage());
        let wire = tx.to_wire().map_err(|e| Problem::internal(e.to_string()))?;
        Ok(axum::Json(json!({
            "id": id,
            "index": leaf,
            "height": height,
            "transaction": wire,
            "receipt": proof.render(),
        }))
        .into_response())
    })
    .await
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
        crate::cosign::cosign_with_peers(&state, &mut proof.checkpoint).await?;
    }
    Ok(text(proof.render()))
}

async fn checkpoint(State(state): State<Shared>) -> ApiResult<Response> {
    let store = state.seq.store();
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

pub(crate) fn parse_u64(name: &str, v: Option<&str>) -> ApiResult<Option<u64>> {
    v.map(|s| {
        s.parse::<u64>().map_err(|_| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "bad_query",
                format!("{name} must be a non-negative integer"),
            )
        })
    })
    .transpose()
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
pub const MAX_BLOCKS_PAGE: u64 = 100;

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
        && let Err(crate::SubmitError::NotLeader(Some(leader))) = cluster.leadership.epoch()
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
    let store = state.seq.store();
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
        let store = st.seq.store();
        let list: Vec<Participant> = store
            .index()
            .participants()
            .map_err(|e| Problem::unavailable(e.to_string()))?
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect();
        Ok(axum::Json(json!({ "participants": list })).into_response())
    })
    .await
}

async fn metrics_text(State(state): State<Shared>) -> Response {
    let body = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn readyz(State(state): State<Shared>) -> ApiResult<&'static str> {
    if let Some((height, what)) = state.seq.store().damaged() {
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
