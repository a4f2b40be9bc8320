//! What every handler shares: the node's state, bearer-token
//! authorization against the read policy, blocking work off the async
//! runtime, query and path parameters, problems from storage errors, and
//! the admission of a body of signed transactions.

use crate::config::NodeConfig;
use crate::http::problem::{Problem, submit_problem};
use crate::oauth;
use crate::pipeline::{Receipt, Sequencer};
use crate::tokens::{TOKEN_PREFIX, Tokens};
use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::Query;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{HeaderMap, StatusCode, header};
use medledger_formats::tx::{Transaction, TxWire};
use medledger_ledger::{Followers, Participant, Purpose, Role, Store, now_ms};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::sync::Arc;

/// Shared state of the API.
pub struct AppState {
    /// The sequencer (writes).
    pub seq: Arc<Sequencer>,
    /// The committed log and its followers (reads).
    pub log: Arc<Followers>,
    /// Bearer tokens.
    pub tokens: Tokens,
    /// Settings.
    pub config: NodeConfig,
    /// Prometheus exporter, if installed.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Pseudonym key and integration accounts' keys.
    pub health: crate::secrets::Health,
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
    pub budgets: crate::http::edge::Budgets,
    /// The node key, which signs the access entries of the reads this node
    /// serves.
    pub node_key: ed25519_dalek::SigningKey,
}

pub(crate) type Shared = Arc<AppState>;
pub(crate) type ApiResult<T> = Result<T, Problem>;

pub(crate) fn too_large(max: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("request body exceeds {max} bytes"),
    )
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    crate::http::observe::spawn_blocking(f)
        .await
        .map_err(|e| Problem::internal(format!("worker failed: {e}")))?
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
        LedgerError::Directory { key, .. } => Problem::corrupt(format!(
            "the index's record of participant {key} is damaged"
        )),
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
    authenticate(state, headers, roles).map(|c| c.participant)
}

/// Who a bearer token speaks for, and what it may read for.
pub(crate) struct Caller {
    /// The participant, registered and not revoked.
    pub(crate) participant: Participant,
    /// For an access token, the purposes of use it carries; a token of
    /// the node's token file carries no such limit (`None`).
    pub(crate) purposes: Option<Vec<Purpose>>,
}

/// The caller behind the bearer token, if its role is in `roles`: a token
/// of the node's token file, or an access token signed by an active node
/// of this ledger. Either way the participant must be registered and not
/// revoked now, so revoking it on the ledger ends all its tokens at once.
pub(crate) fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    roles: &[Role],
) -> ApiResult<Caller> {
    // The scheme name is case-insensitive (RFC 9110 section 11.1).
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| Problem::unauthorized("a bearer token is required"))?;
    let store = state.log.store();
    let (key, purposes) = if !token.starts_with(TOKEN_PREFIX) && oauth::is_jwt(token) {
        let access = access_token(store, token)?;
        (access.key, Some(access.purposes))
    } else {
        let key = state
            .tokens
            .lookup(token)
            .ok_or_else(|| Problem::unauthorized("unknown or revoked token"))?;
        (key, None)
    };
    let record = store
        .participant(&key.0)
        .map_err(ledger_err)?
        .ok_or_else(|| Problem::unauthorized("token's participant is not registered"))?;
    if record.revoked_at.is_some() {
        return Err(Problem::unauthorized("token's participant was revoked"));
    }
    crate::http::observe::note_caller(key.0);
    if !roles.contains(&record.role) {
        return Err(Problem::forbidden(format!(
            "role {} may not read this",
            record.role
        )));
    }
    Ok(Caller {
        participant: record,
        purposes,
    })
}

/// Checks an access token: signed by a node registered on this ledger and
/// not revoked, for this ledger, and not expired.
fn access_token(store: &Store, token: &str) -> ApiResult<oauth::Access> {
    let refused = |e: oauth::TokenError| Problem::unauthorized(format!("access token: {e}"));
    let issuer = oauth::access_token_issuer(token).map_err(refused)?;
    let active_node = store
        .participant(&issuer.0)
        .map_err(ledger_err)?
        .is_some_and(|p| p.role == Role::Node && p.revoked_at.is_none());
    if !active_node {
        return Err(Problem::unauthorized(
            "access token: its signer is not an active node of this ledger",
        ));
    }
    let now_s = now_ms() / 1000;
    oauth::verify_access_token(token, &issuer, store.origin(), now_s).map_err(refused)
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

pub(crate) fn receipt_json(r: &Receipt) -> Value {
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

/// Whether `reader` may read records of `kind`: organ-donor decisions are
/// for donor readers only, whatever else the role may read.
pub(crate) fn may_read_kind(reader: &Participant, kind: &str) -> Result<(), Problem> {
    if !medledger_ledger::may_read_kind(reader.role, kind) {
        let what = match reader.role {
            Role::Pharmacy => "records other than prescriptions and dispenses",
            _ => "the organ-donor registry",
        };
        return Err(Problem::forbidden(format!(
            "role {} may not read {what}",
            reader.role
        )));
    }
    Ok(())
}
