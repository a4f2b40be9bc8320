//! The FHIR R4 facade under `/fhir`.
//!
//! Resources are stored as the payloads of ledger transactions (kinds
//! `fhir.observation`, `fhir.condition`, `fhir.immunization`, and
//! `prescription` for a MedicationRequest, `dispense` for a
//! MedicationDispense); a resource's
//! id is its transaction id. FHIR clients do not sign: a write is
//! authenticated by a bearer token, and the node signs it with the key it
//! holds for that participant (an integration account registered like any
//! other participant), so the ledger still records who submitted it.
//! Every write passes the same rules as a signed submission: the PII guard,
//! the resource rules and the author's role. Errors are OperationOutcomes.

mod present;

use crate::http::access;
use crate::http::problem::Problem;
use crate::http::record::{Record, records};
use crate::http::request::{AppState, authorize, blocking, ledger_err};
use crate::pipeline::SubmitError;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use medledger_formats::bytes::Bytes as Hex;
use medledger_formats::tx::Transaction;
use medledger_health::fhir::{self, BundleType, FhirError};
use medledger_health::pseudonym;
use medledger_health::records::{self as rules, PayloadError};
use medledger_ledger::{FHIR_WRITERS, Participant, Rejection, Role, Store, allowed_roles, now_ms};
use medledger_store::By;
use present::EntryOutcome;
use serde_json::{Value, json};
use std::sync::Arc;

type Shared = Arc<AppState>;
type FhirResult = Result<Response, Fail>;

/// A failed FHIR interaction, answered with an OperationOutcome of its
/// errors and the highest of their statuses.
pub(crate) struct Fail(Vec<FhirError>);

impl From<FhirError> for Fail {
    fn from(e: FhirError) -> Self {
        Fail(vec![e])
    }
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        let status = self.0.iter().map(|e| e.status).max().unwrap_or(500);
        let mut r = fhir_json(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &present::outcome_of(&self.0),
        );
        if status == 401 {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"medledger\""),
            );
        }
        r
    }
}

/// The FHIR JSON media type.
pub(crate) const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
/// Default page size of a search.
pub(crate) const DEFAULT_COUNT: usize = 50;
/// Largest page size of a search.
pub(crate) const MAX_COUNT: usize = 1000;
/// Most records one search examines: every match is judged and counted
/// (for `Bundle.total` and stable pages), so a search that would examine
/// more is refused as too costly and must be narrowed.
pub(crate) const MAX_SCAN: usize = 200_000;

fn fhir_json(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    r
}

/// A problem from the shared API plumbing, as a FHIR error.
fn from_problem(p: Problem) -> FhirError {
    let code = match p.status {
        401 => "login",
        403 => "forbidden",
        404 => "not-found",
        410 => "deleted",
        405 => "not-supported",
        406 => "not-supported",
        408 => "timeout",
        413 => "too-costly",
        415 => "not-supported",
        429 => "throttled",
        503 => "transient",
        s if s >= 500 => "exception",
        _ => "invalid",
    };
    FhirError::new(p.status, code, None, p.detail)
}

/// A problem from outside the FHIR handlers (the HTTP edge), as the
/// OperationOutcome a FHIR client expects.
pub(crate) fn outcome_response(p: Problem) -> Response {
    Fail::from(from_problem(p)).into_response()
}

fn not_found(what: String) -> FhirError {
    FhirError::new(404, "not-found", None, what)
}

/// The facade's absolute base URL, from the request's Host.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or("localhost");
    let proto = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https")
        .unwrap_or("http");
    format!("{proto}://{host}/fhir")
}

/// The node's origin (`http://host`), from the request's Host.
fn origin(headers: &HeaderMap) -> String {
    base_url(headers).trim_end_matches("/fhir").to_owned()
}

/// `GET /fhir/metadata`: the CapabilityStatement.
pub(crate) async fn metadata(headers: HeaderMap) -> Response {
    fhir_json(
        StatusCode::OK,
        &present::capability_statement(
            &base_url(&headers),
            &format!("{}{}", origin(&headers), crate::oauth::TOKEN_PATH),
            env!("CARGO_PKG_VERSION"),
        ),
    )
}

/// `GET /.well-known/smart-configuration` (and under `/fhir`, where SMART
/// clients look for it): the SMART App Launch v2 discovery document of the
/// Backend Services token endpoint (`POST /v1/token`).
pub(crate) async fn smart_configuration(headers: HeaderMap) -> Response {
    let scopes: Vec<String> = crate::oauth::SYSTEM_SCOPES
        .iter()
        .map(|s| (*s).to_owned())
        .chain(
            medledger_ledger::Purpose::ALL
                .iter()
                .map(|p| format!("{}{}", crate::oauth::PURPOSE_SCOPE, p.code())),
        )
        .collect();
    let body = json!({
        "token_endpoint": format!("{}{}", origin(&headers), crate::oauth::TOKEN_PATH),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA"],
        "scopes_supported": scopes,
        "capabilities": ["client-confidential-asymmetric"],
    });
    let mut r = (StatusCode::OK, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Whether an `Accept` header admits a JSON answer: absent or empty, or a
/// media range that covers `application/fhir+json` or `application/json`
/// with a non-zero quality.
fn accepts_json(headers: &HeaderMap) -> bool {
    let values: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.iter().all(|v| v.trim().is_empty()) {
        return true;
    }
    values.iter().flat_map(|v| v.split(',')).any(|range| {
        let mut parts = range.split(';');
        let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let zero = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        !zero
            && matches!(
                mime.as_str(),
                "*/*"
                    | "application/*"
                    | "application/fhir+json"
                    | "application/json"
                    | "application/json+fhir"
            )
    })
}

/// `_format` in the query, when it names something other than JSON.
fn non_json_format(query: Option<&str>) -> bool {
    form_urlencoded::parse(query.unwrap_or("").as_bytes()).any(|(k, v)| {
        k == "_format"
            && !matches!(
                v.as_ref(),
                "json" | "application/json" | "application/fhir+json"
            )
    })
}

/// The edge of `/fhir`: an `Accept` (or `_format`) without JSON is 406,
/// and every problem answered under `/fhir` from outside the FHIR handlers
/// (404 of an unknown path, 405 of a method the path does not take, a
/// timeout) becomes the OperationOutcome a FHIR client expects.
pub(crate) async fn edge(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let path = req.uri().path();
    if path != "/fhir" && !path.starts_with("/fhir/") {
        return next.run(req).await;
    }
    if !accepts_json(req.headers()) || non_json_format(req.uri().query()) {
        return Fail::from(FhirError::new(
            406,
            "not-supported",
            None,
            "this server answers FHIR in JSON only (application/fhir+json)",
        ))
        .into_response();
    }
    let r = next.run(req).await;
    let problem = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"));
    if !problem {
        return r;
    }
    let (parts, body) = r.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let detail = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| parts.status.to_string());
    let mut out =
        Fail::from(from_problem(Problem::new(parts.status, "problem", detail))).into_response();
    for h in [header::ALLOW, header::RETRY_AFTER, header::LOCATION] {
        if let Some(v) = parts.headers.get(&h) {
            out.headers_mut().insert(h, v.clone());
        }
    }
    out
}

fn require_fhir_json(headers: &HeaderMap) -> Result<(), FhirError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/fhir+json")
        || mime.eq_ignore_ascii_case("application/json")
    {
        Ok(())
    } else {
        Err(FhirError::new(
            415,
            "not-supported",
            None,
            "send resources as application/fhir+json",
        ))
    }
}

/// The parsed JSON body; a body over max_body_bytes is 413, as an
/// OperationOutcome like every other /fhir error.
fn parse_body(body: Result<Bytes, BytesRejection>) -> Result<Value, FhirError> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            FhirError::new(413, "too-costly", None, "the body exceeds max_body_bytes")
        }
        _ => FhirError::new(400, "structure", None, e.body_text()),
    })?;
    serde_json::from_slice(&body)
        .map_err(|e| FhirError::new(400, "structure", None, format!("the body is not JSON: {e}")))
}

/// The writer behind the token and the key the node holds for it.
fn writer(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(Participant, ed25519_dalek::SigningKey), FhirError> {
    let p = authorize(state, headers, FHIR_WRITERS).map_err(from_problem)?;
    let key = state.health.signers.get(&p.key).ok_or_else(|| {
        FhirError::new(
            403,
            "forbidden",
            None,
            "this node holds no signing key for the token's participant; FHIR writes \
             go through an institution's integration account (see docs/FHIR.md)",
        )
    })?;
    Ok((p, key))
}

/// Checks a resource as the ledger will and signs it for `author`.
fn prepare(
    resource: &Value,
    author: &Participant,
    key: &ed25519_dalek::SigningKey,
) -> Result<Transaction, FhirError> {
    let stored = fhir::for_storage(resource);
    let summary = fhir::validate(&stored)?;
    rules::check(summary.kind, &stored).map_err(|e| match e {
        PayloadError::Pii(f) => FhirError::new(
            422,
            "security",
            Some(f.field.clone()),
            format!("refused: {f}; send only pseudonymized data"),
        ),
        PayloadError::Fhir(e) => e,
        PayloadError::Schema(m) => FhirError::new(422, "invalid", None, m),
    })?;
    let roles = allowed_roles(summary.kind).unwrap_or(&[]);
    if !roles.contains(&author.role) {
        return Err(FhirError::new(
            403,
            "forbidden",
            None,
            format!(
                "role {} may not write {} resources",
                author.role, summary.resource_type
            ),
        ));
    }
    Transaction::sign(key, summary.kind, now_ms(), &stored)
        .map_err(|e| FhirError::new(400, "invalid", None, e.to_string()))
}

/// What the sequencer said, as a FHIR error.
fn submit_error(e: &SubmitError) -> FhirError {
    match e {
        SubmitError::Unavailable(m) | SubmitError::NotCommitted(m) => {
            FhirError::new(503, "transient", None, m.clone())
        }
        SubmitError::NotLeader(_) => FhirError::new(503, "transient", None, e.to_string()),
        SubmitError::Rejected(r) => match r {
            Rejection::Fhir(f) => f.clone(),
            Rejection::Pii(f) => FhirError::new(
                422,
                "security",
                Some(f.field.clone()),
                format!("refused: {f}"),
            ),
            Rejection::UnknownAuthor
            | Rejection::RevokedAuthor
            | Rejection::DevicePatient
            | Rejection::NotPrescriber
            | Rejection::RoleNotAllowed { .. } => {
                FhirError::new(403, "forbidden", None, r.to_string())
            }
            other => FhirError::new(422, "business-rule", None, other.to_string()),
        },
    }
}

fn created_location(base: &str, resource_type: &str, id: &str) -> String {
    format!("{base}/{resource_type}/{id}/_history/1")
}

/// What a conditional create found.
enum Existing {
    /// No match: create.
    None,
    /// Exactly one: answer with it, write nothing.
    One(Box<Record>),
    /// More than one: 412.
    Many,
}

/// The resources of type `ty` written by `author` that match the query of
/// a conditional create (`If-None-Exist`, `request.ifNoneExist`).
///
/// Only the writer's own resources are matched: a retry comes from the
/// writer that sent the original, and a writer need not be a reader, so
/// others' records are neither matched nor revealed.
fn existing(
    store: &Store,
    ty: &str,
    author: &Participant,
    query: &str,
) -> Result<Existing, FhirError> {
    let kind = fhir::kind_of(ty)
        .ok_or_else(|| FhirError::new(400, "not-supported", None, format!("{ty} is not stored")))?;
    let q = query.trim_start_matches('?');
    let q = q.strip_prefix(&format!("{ty}?")).unwrap_or(q);
    let s = parse_search(ty, Some(q), false, now_ms())?;
    if s.query.clauses.is_empty() {
        return Err(FhirError::new(
            400,
            "invalid",
            None,
            "a conditional create needs search criteria (e.g. identifier=system|value)",
        ));
    }
    let term = s.query.index_term();
    let key = author.key.0;
    let by = match (s.query.patient(), &term) {
        (_, Some(t)) => By::Code(t),
        (Some(p), None) => By::Patient(p),
        (None, None) => By::Author(&key),
    };
    const CHUNK: usize = 512;
    let mut from = 0;
    let mut found: Option<Box<Record>> = None;
    let mut scanned = 0;
    loop {
        let leaves = store
            .index()
            .leaves_by(by, from, CHUNK)
            .map_err(|e| from_problem(Problem::unavailable(e.to_string())))?;
        let Some(&last) = leaves.last() else {
            break;
        };
        for r in records(store, &leaves).map_err(from_problem)? {
            scanned += 1;
            if scanned > MAX_SCAN {
                return Err(FhirError::new(
                    400,
                    "too-costly",
                    None,
                    "the conditional create's criteria match too many records; use identifier=system|value",
                ));
            }
            if r.tx.header().kind != kind || r.tx.header().author != author.key {
                continue;
            }
            let Ok(payload) = serde_json::from_slice::<Value>(r.tx.payload_jcs()) else {
                continue;
            };
            let Ok(summary) = fhir::validate(&payload) else {
                continue;
            };
            if s.query.matches(&summary) {
                if found.is_some() {
                    return Ok(Existing::Many);
                }
                found = Some(Box::new(r));
            }
        }
        if leaves.len() < CHUNK {
            break;
        }
        from = last + 1;
    }
    Ok(found.map_or(Existing::None, Existing::One))
}

fn if_none_exist(headers: &HeaderMap) -> Result<Option<String>, FhirError> {
    match headers.get("if-none-exist") {
        None => Ok(None),
        Some(v) => v.to_str().map(|s| Some(s.to_owned())).map_err(|_| {
            FhirError::new(400, "invalid", None, "If-None-Exist must be a query string")
        }),
    }
}

fn more_than_one(ty: &str) -> FhirError {
    FhirError::new(
        412,
        "duplicate",
        None,
        format!("the conditional create's criteria match more than one {ty}; nothing was written"),
    )
}

/// The answer to a conditional create that matched `r`: 200 with the
/// resource, its Location and ETag.
fn found_response(headers: &HeaderMap, ty: &str, r: &Record) -> FhirResult {
    let id = hex::encode(r.tx.id());
    let resource = resource_of(r)
        .ok_or_else(|| FhirError::new(500, "exception", None, "a stored resource did not parse"))?;
    let mut resp = fhir_json(StatusCode::OK, &resource);
    if let Ok(loc) = HeaderValue::from_str(&created_location(&base_url(headers), ty, &id)) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    resp.headers_mut()
        .insert(header::ETAG, HeaderValue::from_static("W/\"1\""));
    Ok(resp)
}

/// `POST /fhir/{type}`: creates one resource.
pub(crate) async fn create(
    State(state): State<Shared>,
    headers: HeaderMap,
    ty: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> FhirResult {
    let Path(ty) = ty.map_err(|e| from_problem(Problem::not_found(e.body_text())))?;
    let (author, key) = writer(&state, &headers)?;
    require_fhir_json(&headers)?;
    let resource = parse_body(body)?;
    let given = resource.get("resourceType").and_then(Value::as_str);
    if given != Some(ty.as_str()) {
        return Err(FhirError::new(
            400,
            "invalid",
            Some("resourceType".into()),
            format!("the body's resourceType does not match the URL's {ty}"),
        )
        .into());
    }
    let tx = prepare(&resource, &author, &key)?;
    if let Some(q) = if_none_exist(&headers)? {
        let st = state.clone();
        let (t, a) = (ty.clone(), author.clone());
        let found = blocking(move || Ok(existing(st.log.store(), &t, &a, &q)))
            .await
            .map_err(from_problem)??;
        match found {
            Existing::None => {}
            Existing::One(r) => return found_response(&headers, &ty, &r),
            Existing::Many => return Err(more_than_one(&ty).into()),
        }
    }
    let id = hex::encode(tx.id());
    let time = tx.header().time;
    let stored = fhir::for_storage(&resource);
    let results = state.seq.enqueue(vec![tx]).done().await;
    match results.into_iter().next() {
        Some(Ok(_)) => {
            let base = base_url(&headers);
            let mut r = fhir_json(StatusCode::CREATED, &present::as_read(&stored, &id, time));
            if let Ok(loc) = HeaderValue::from_str(&created_location(&base, &ty, &id)) {
                r.headers_mut().insert(header::LOCATION, loc);
            }
            r.headers_mut()
                .insert(header::ETAG, HeaderValue::from_static("W/\"1\""));
            Ok(r)
        }
        Some(Err(e)) => Err(submit_error(&e).into()),
        None => Err(FhirError::new(500, "exception", None, "no result").into()),
    }
}

/// A Bundle entry to write (its transaction, type and storage form), or
/// the type and id a conditional create matched instead.
type Planned = Result<(Transaction, &'static str, Value), (&'static str, String)>;
/// A Bundle entry's place among the transactions written (index, type,
/// id), or its answer already known.
type Slot = Result<(usize, &'static str, String), EntryOutcome>;

/// `POST /fhir`: a `transaction` (all or nothing) or `batch` Bundle.
///
/// A transaction is checked entry by entry first; if any entry fails,
/// nothing is written and every failure is reported. Otherwise its
/// transactions go to the sequencer as one submission, which is admitted
/// into one block and made durable by one write: all of them or none.
pub(crate) async fn bundle(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> FhirResult {
    let (author, key) = writer(&state, &headers)?;
    require_fhir_json(&headers)?;
    let v = parse_body(body)?;
    let b = fhir::parse_bundle(&v)?;
    let max = crate::pipeline::SUBMISSION_CHUNK;
    if b.entries.len() > max {
        return Err(FhirError::new(
            413,
            "too-costly",
            None,
            format!("a Bundle holds at most {max} entries here"),
        )
        .into());
    }
    let prepared: Vec<Result<(Transaction, &'static str, Value), FhirError>> = b
        .entries
        .iter()
        .map(|e| {
            fhir::check_entry(e)?;
            let tx = prepare(&e.resource, &author, &key)?;
            let ty = fhir::resource_type_of(&tx.header().kind).unwrap_or("Resource");
            Ok((tx, ty, fhir::for_storage(&e.resource)))
        })
        .collect();
    // Conditional creates: an entry whose ifNoneExist matches one resource
    // writes nothing and answers with it; more than one fails the entry.
    let mut found: Vec<Option<Result<String, FhirError>>> = Vec::new();
    for (e, p) in b.entries.iter().zip(&prepared) {
        let (Some(q), Ok((_, ty, _))) = (&e.if_none_exist, p) else {
            found.push(None);
            continue;
        };
        let st = state.clone();
        let (t, a, q) = ((*ty).to_owned(), author.clone(), q.clone());
        let hit = blocking(move || Ok(existing(st.log.store(), &t, &a, &q)))
            .await
            .map_err(from_problem)?;
        found.push(match hit {
            Ok(Existing::None) => None,
            Ok(Existing::One(r)) => Some(Ok(hex::encode(r.tx.id()))),
            Ok(Existing::Many) => Some(Err(more_than_one(ty))),
            Err(e) => Some(Err(e)),
        });
    }
    let prepared: Vec<Result<Planned, FhirError>> = prepared
        .into_iter()
        .zip(found)
        .map(|(p, f)| match (p, f) {
            (Err(e), _) => Err(e),
            (Ok(_), Some(Err(e))) => Err(e),
            (Ok((_, ty, _)), Some(Ok(id))) => Ok(Err((ty, id))),
            (Ok(p), None) => Ok(Ok(p)),
        })
        .collect();
    if b.kind == BundleType::Transaction {
        let errors: Vec<FhirError> = prepared
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().err().map(|e| (i, e)))
            .map(|(i, e)| {
                let mut e = e.clone();
                e.diagnostics = format!("entry {i}: {}", e.diagnostics);
                e
            })
            .collect();
        if !errors.is_empty() {
            return Err(Fail(errors));
        }
    }
    let mut txs = Vec::new();
    let mut slots: Vec<Result<Slot, FhirError>> = Vec::new();
    for p in prepared {
        match p {
            Ok(Ok((tx, ty, _))) => {
                slots.push(Ok(Ok((txs.len(), ty, hex::encode(tx.id())))));
                txs.push(tx);
            }
            Ok(Err((resource_type, id))) => {
                slots.push(Ok(Err(EntryOutcome::Existing { resource_type, id })))
            }
            Err(e) => slots.push(Err(e)),
        }
    }
    let results = if txs.is_empty() {
        Vec::new()
    } else {
        state.seq.enqueue(txs).done().await
    };
    let outcomes: Vec<EntryOutcome> = slots
        .into_iter()
        .map(|s| match s {
            Ok(Err(existing)) => existing,
            Ok(Ok((at, ty, id))) => match results.get(at) {
                Some(Ok(_)) => EntryOutcome::Created {
                    resource_type: ty,
                    id,
                },
                Some(Err(e)) => EntryOutcome::Failed(submit_error(e)),
                None => EntryOutcome::Failed(FhirError::new(500, "exception", None, "no result")),
            },
            Err(e) => EntryOutcome::Failed(e),
        })
        .collect();
    if b.kind == BundleType::Transaction
        && let Some(EntryOutcome::Failed(e)) = outcomes
            .iter()
            .find(|o| matches!(o, EntryOutcome::Failed(_)))
    {
        return Err(e.clone().into());
    }
    Ok(fhir_json(
        StatusCode::OK,
        &present::transaction_response(b.kind, outcomes),
    ))
}

/// The 410 OperationOutcome (issue `deleted`) for a read of a redacted record.
fn redacted_outcome(store: &Store, r: &Record, ty: &str) -> FhirError {
    let redaction = crate::http::record::redaction_of(store, r.leaf)
        .ok()
        .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "(not yet indexed)".into());
    FhirError::new(
        410,
        "deleted",
        None,
        format!(
            "{ty}/{} existed and was redacted by transaction {redaction}",
            hex::encode(r.tx.id())
        ),
    )
}

/// What `$everything` shows of a redacted record: an OperationOutcome that
/// says it existed (type, id, time) and which redaction erased it.
fn tombstone_resource(store: &Store, r: &Record) -> Option<Value> {
    let ty = fhir::resource_type_of(&r.tx.header().kind)?;
    let redaction = crate::http::record::redaction_of(store, r.leaf).ok()?;
    Some(json!({
        "resourceType": "OperationOutcome",
        "id": hex::encode(r.tx.id()),
        "issue": [{
            "severity": "information",
            "code": "deleted",
            "diagnostics": format!(
                "{ty}/{} (recorded at {} ms) was redacted",
                hex::encode(r.tx.id()),
                r.tx.header().time
            ),
        }],
        "extension": [{
            "url": "https://medledger.example/fhir/StructureDefinition/redacted-by",
            "valueString": redaction.get("id").and_then(Value::as_str).unwrap_or(""),
        }],
    }))
}

/// A stored FHIR record as its resource.
fn resource_of(r: &Record) -> Option<Value> {
    fhir::resource_type_of(&r.tx.header().kind)?;
    let payload: Value = serde_json::from_slice(r.tx.payload_jcs()).ok()?;
    Some(present::as_read(
        &payload,
        &hex::encode(r.tx.id()),
        r.tx.header().time,
    ))
}

fn patient_resource(p: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "id": p,
        "meta": {"tag": [{
            "system": "https://medledger.example/fhir/CodeSystem/pseudonym",
            "code": "pseudonymized",
            "display": "Known only by a keyed pseudonym; no identifying data is held"
        }]}
    })
}

fn has_records(store: &Store, patient: &str) -> Result<bool, FhirError> {
    Ok(!store
        .index()
        .leaves_by(By::Patient(patient), 0, 1)
        .map_err(|e| from_problem(Problem::unavailable(e.to_string())))?
        .is_empty())
}

/// `GET /fhir/{type}/{id}`.
pub(crate) async fn read(
    State(state): State<Shared>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
) -> FhirResult {
    let Path((ty, id)) = p.map_err(|e| from_problem(Problem::not_found(e.body_text())))?;
    let st = state.clone();
    let mut entries = Vec::new();
    let answer = blocking(move || {
        Ok((
            read_blocking(&st, &headers, &ty, &id, &mut entries),
            entries,
        ))
    })
    .await
    .map_err(from_problem)?;
    logged(&state, answer).await
}

/// Commits a read's access entries, then lets its answer go.
async fn logged(state: &AppState, (answer, entries): (FhirResult, Vec<Transaction>)) -> FhirResult {
    access::log(state, entries).await.map_err(from_problem)?;
    answer
}

fn read_blocking(
    state: &AppState,
    headers: &HeaderMap,
    ty: &str,
    id: &str,
    entries: &mut Vec<Transaction>,
) -> FhirResult {
    let reader = access::reader(state, headers).map_err(from_problem)?;
    let store = state.log.store();
    if ty == "Patient" {
        if !access::may_read_patient(&reader, id) {
            return Err(from_problem(access::refused(&reader, 0)).into());
        }
        if pseudonym::is_well_formed(id) && has_records(store, id)? {
            return Ok(fhir_json(StatusCode::OK, &patient_resource(id)));
        }
        return Err(not_found(format!("Patient/{id} has no records")).into());
    }
    let Some(kind) = fhir::kind_of(ty) else {
        return Err(FhirError::new(
            404,
            "not-supported",
            None,
            format!("resource type {ty} is not served"),
        )
        .into());
    };
    let missing = || not_found(format!("{ty}/{id} is not known"));
    let Ok(hex) = Hex::<32>::parse_hex(id) else {
        return Err(missing().into());
    };
    let (tx, leaf, height) = store
        .transaction(&hex.0)
        .map_err(|e| from_problem(ledger_err(e)))?
        .ok_or_else(missing)?;
    if tx.header().kind != kind {
        return Err(missing().into());
    }
    let r = Record { tx, leaf, height };
    if r.tx.is_redacted() {
        return Err(redacted_outcome(store, &r, ty).into());
    }
    let resource = resource_of(&r).ok_or_else(missing)?;
    let mut judge = access::Judge::new(state, &reader);
    let read = judge.admit(&r.tx).map_err(from_problem)?;
    let withheld = judge.withheld();
    *entries = judge.entries(None).map_err(from_problem)?;
    if !read {
        return Err(from_problem(access::refused(&reader, withheld)).into());
    }
    let mut resp = fhir_json(StatusCode::OK, &resource);
    resp.headers_mut()
        .insert(header::ETAG, HeaderValue::from_static("W/\"1\""));
    Ok(resp)
}

/// A parsed search: the query, and how its results are given.
struct Search {
    query: fhir::Query,
    /// Page size; 0 answers the total only.
    count: usize,
    /// Whether `Bundle.total` is given (`_total` other than `none`).
    total: bool,
    /// `_sort`: `Some(true)` for `-date`, `Some(false)` for `date`.
    sort: Option<bool>,
    /// Where the page starts among the matches.
    offset: usize,
    /// The log size the search is pinned to (`_as_of`), once paging.
    as_of: Option<u64>,
    /// Parameters ignored under `Prefer: handling=lenient`.
    ignored: Vec<String>,
    /// The parameters applied, without `_offset` and `_as_of`, for links.
    params: Vec<(String, String)>,
}

fn bad_param(msg: String) -> FhirError {
    FhirError::new(400, "invalid", None, msg)
}

/// Whether the request asks for lenient handling of unknown search
/// parameters (`Prefer: handling=lenient`, RFC 7240 as FHIR uses it).
fn lenient(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .any(|p| {
            p.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("handling")
                    && v.trim().trim_matches('"').eq_ignore_ascii_case("lenient")
            })
        })
}

fn parse_count(v: &str) -> Result<usize, FhirError> {
    Ok(v.parse::<usize>()
        .map_err(|_| bad_param("_count must be a non-negative integer".into()))?
        .min(MAX_COUNT))
}

fn parse_search(ty: &str, raw: Option<&str>, lenient: bool, now: u64) -> Result<Search, FhirError> {
    let mut s = Search {
        query: fhir::Query::default(),
        count: DEFAULT_COUNT,
        total: true,
        sort: None,
        offset: 0,
        as_of: None,
        ignored: Vec::new(),
        params: Vec::new(),
    };
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let (k, v) = (k.into_owned(), v.into_owned());
        match k.as_str() {
            "_count" => s.count = parse_count(&v)?,
            "_total" => match v.as_str() {
                "none" => s.total = false,
                "accurate" | "estimate" => s.total = true,
                _ => return Err(bad_param("_total is none, estimate or accurate".into())),
            },
            "_summary" => match v.as_str() {
                "count" => s.count = 0,
                "false" => {}
                _ => {
                    return Err(FhirError::new(
                        400,
                        "not-supported",
                        None,
                        "_summary takes count or false here",
                    ));
                }
            },
            "_sort" => {
                s.sort = Some(match v.as_str() {
                    "date" => false,
                    "-date" => true,
                    _ => {
                        return Err(FhirError::new(
                            400,
                            "not-supported",
                            None,
                            "_sort takes date or -date",
                        ));
                    }
                })
            }
            "_offset" => {
                s.offset = v
                    .parse()
                    .map_err(|_| bad_param("_offset must be a non-negative integer".into()))?;
                continue;
            }
            "_as_of" => {
                s.as_of = Some(
                    v.parse()
                        .map_err(|_| bad_param("_as_of must be a log size".into()))?,
                );
                continue;
            }
            // fhirpy's count() sends `_totalMethod=count` (HAPI's name for
            // `_total`); every total here is exact, so it changes nothing.
            "_format" | "_pretty" | "_totalMethod" => {}
            _ => match fhir::Clause::parse(ty, &k, &v, now) {
                Ok(Some(c)) => s.query.clauses.push(c),
                Ok(None) => {}
                Err(fhir::SearchParamError::Invalid(e)) => return Err(e),
                Err(fhir::SearchParamError::Unknown) if lenient => {
                    s.ignored.push(k);
                    continue;
                }
                Err(fhir::SearchParamError::Unknown) => {
                    return Err(FhirError::new(
                        400,
                        "not-supported",
                        None,
                        format!(
                            "search parameter {k} is not supported for {ty} (see /fhir/metadata); \
                             send Prefer: handling=lenient to have unknown parameters ignored"
                        ),
                    ));
                }
            },
        }
        s.params.push((k, v));
    }
    Ok(s)
}

fn link(path: &str, params: &[(String, String)], extra: &[(&str, String)]) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        ser.append_pair(k, v);
    }
    for (k, v) in extra {
        ser.append_pair(k, v);
    }
    let q = ser.finish();
    if q.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{q}")
    }
}

/// One page of a search, pinned to a log size.
struct Found {
    /// The resources of the page.
    page: Vec<Value>,
    /// Every match the reader may see, up to the pinned size.
    total: usize,
    /// The log size the search ran at.
    as_of: u64,
}

/// A searchset Bundle for page `f` of search `s` at `path`: `self` and,
/// when there is more, `next`, both pinned to the log size the first page
/// ran at, so records committed meanwhile neither shift nor join the pages.
fn page(headers: &HeaderMap, path: &str, s: &Search, f: Found, extra_total: usize) -> Response {
    let pin = |offset: usize| {
        let mut extra = vec![("_as_of", f.as_of.to_string())];
        if offset > 0 {
            extra.push(("_offset", offset.to_string()));
        }
        link(path, &s.params, &extra)
    };
    let self_link = pin(s.offset);
    let end = s.offset.saturating_add(s.count);
    let next_link = (s.count > 0 && end < f.total).then(|| pin(end));
    let outcome = (!s.ignored.is_empty()).then(|| {
        present::warning_outcome(&format!(
            "ignored unknown search parameters: {}",
            s.ignored.join(", ")
        ))
    });
    fhir_json(
        StatusCode::OK,
        &present::searchset(
            &base_url(headers),
            &self_link,
            next_link.as_deref(),
            s.total.then_some((f.total + extra_total) as u64),
            f.page,
            outcome,
        ),
    )
}

/// A match kept for a page: where, when, and the record.
struct Hit {
    date: Option<i64>,
    tx: Transaction,
    /// For a redacted record, what stands in its place.
    tombstone: Option<Value>,
}

/// Runs search `s` over the candidate leaves `by` gives, up to the pinned
/// log size: every match the reader may see is judged (so the total counts
/// only those), ordered by leaf or by `_sort`, and one page of them is
/// returned and logged as read.
fn run_search(
    store: &Store,
    judge: &mut access::Judge<'_>,
    kinds: &[&str],
    by: By<'_>,
    s: &Search,
    tombstones: bool,
) -> Result<Found, FhirError> {
    const CHUNK: usize = 512;
    let unavailable =
        |e: medledger_store::IndexError| from_problem(Problem::unavailable(e.to_string()));
    let size = store.last().map_or(0, |h| h.header().log_size);
    let as_of = match s.as_of {
        Some(n) if n > size => {
            return Err(bad_param(format!(
                "_as_of {n} is beyond the log's size {size}"
            )));
        }
        Some(n) => n,
        None => size,
    };
    let mut hits = Vec::new();
    let mut from = 0;
    let mut scanned = 0;
    'scan: loop {
        let leaves = store
            .index()
            .leaves_by(by, from, CHUNK)
            .map_err(unavailable)?;
        let Some(&last) = leaves.last() else {
            break;
        };
        let within: Vec<u64> = leaves.iter().copied().filter(|l| *l < as_of).collect();
        for r in records(store, &within).map_err(from_problem)? {
            scanned += 1;
            if scanned > MAX_SCAN {
                return Err(FhirError::new(
                    400,
                    "too-costly",
                    None,
                    format!(
                        "the search examines more than {MAX_SCAN} records; narrow it by patient, code or identifier"
                    ),
                ));
            }
            if !kinds.contains(&r.tx.header().kind.as_str()) {
                continue;
            }
            if r.tx.is_redacted() {
                if tombstones && let Some(t) = tombstone_resource(store, &r) {
                    hits.push(Hit {
                        date: None,
                        tx: r.tx,
                        tombstone: Some(t),
                    });
                }
                continue;
            }
            let Ok(payload) = serde_json::from_slice::<Value>(r.tx.payload_jcs()) else {
                continue;
            };
            let Ok(summary) = fhir::validate(&payload) else {
                continue;
            };
            if !s.query.matches(&summary) || !judge.may_see(&r.tx).map_err(from_problem)? {
                continue;
            }
            let date = summary
                .date
                .as_deref()
                .and_then(fhir::date_range)
                .map(|r| r.0);
            hits.push(Hit {
                date,
                tx: r.tx,
                tombstone: None,
            });
        }
        if leaves.len() < CHUNK || last >= as_of {
            break 'scan;
        }
        from = last + 1;
    }
    if let Some(desc) = s.sort {
        // Stable: ties keep log order; resources without a date go last.
        hits.sort_by(|a, b| match (a.date, b.date) {
            (Some(x), Some(y)) if desc => y.cmp(&x),
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
    }
    let total = hits.len();
    let mut page = Vec::new();
    for h in hits.into_iter().skip(s.offset).take(s.count) {
        if let Some(t) = h.tombstone {
            page.push(t);
            continue;
        }
        judge.returned(&h.tx);
        let payload: Value = serde_json::from_slice(h.tx.payload_jcs()).unwrap_or(Value::Null);
        page.push(present::as_read(
            &payload,
            &hex::encode(h.tx.id()),
            h.tx.header().time,
        ));
    }
    Ok(Found { page, total, as_of })
}

/// `GET /fhir/{type}`: search by the parameters of the type's table
/// (`fhir::search_params`), with the result parameters `_count`,
/// `_total`, `_summary` and `_sort`.
pub(crate) async fn search(
    State(state): State<Shared>,
    headers: HeaderMap,
    ty: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> FhirResult {
    on_blocking_pool(state, headers, ty, raw, search_blocking).await
}

fn search_blocking(
    state: &AppState,
    headers: &HeaderMap,
    ty: &str,
    raw: Option<&str>,
    entries: &mut Vec<Transaction>,
) -> FhirResult {
    let reader = access::reader(state, headers).map_err(from_problem)?;
    let Some(kind) = fhir::kind_of(ty) else {
        return Err(FhirError::new(
            404,
            "not-supported",
            None,
            format!("resource type {ty} is not searchable here"),
        )
        .into());
    };
    let s = parse_search(ty, raw, lenient(headers), now_ms())?;
    let store = state.log.store();
    // A patient's search runs over their own records only.
    let own = reader.participant.patient.as_deref();
    let term = s.query.index_term();
    let by = match (s.query.patient(), &term) {
        (Some(p), _) => By::Patient(p),
        (None, _) if reader.participant.role == Role::Patient => {
            By::Patient(own.unwrap_or_default())
        }
        (None, Some(t)) => By::Code(t),
        (None, None) => By::Kind(kind),
    };
    let mut judge = access::Judge::new(state, &reader);
    let found = run_search(store, &mut judge, &[kind], by, &s, false)?;
    let pinned = [("_as_of", found.as_of.to_string())];
    *entries = judge
        .entries(Some(link(ty, &s.params, &pinned)))
        .map_err(from_problem)?;
    Ok(page(headers, ty, &s, found, 0))
}

/// `GET /fhir/Patient/{pseudonym}/$everything`: the patient and every FHIR
/// resource about them, paged with `_count`.
pub(crate) async fn everything(
    State(state): State<Shared>,
    headers: HeaderMap,
    p: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> FhirResult {
    on_blocking_pool(state, headers, p, raw, everything_blocking).await
}

/// Runs a read handler `f` that takes one path segment and the raw query
/// on the blocking pool.
async fn on_blocking_pool(
    state: Shared,
    headers: HeaderMap,
    segment: Result<Path<String>, PathRejection>,
    raw: Option<String>,
    f: fn(&AppState, &HeaderMap, &str, Option<&str>, &mut Vec<Transaction>) -> FhirResult,
) -> FhirResult {
    let Path(segment) = segment.map_err(|e| from_problem(Problem::not_found(e.body_text())))?;
    let st = state.clone();
    let answer = blocking(move || {
        let mut entries = Vec::new();
        Ok((
            f(&st, &headers, &segment, raw.as_deref(), &mut entries),
            entries,
        ))
    })
    .await
    .map_err(from_problem)?;
    logged(&state, answer).await
}

fn everything_blocking(
    state: &AppState,
    headers: &HeaderMap,
    patient: &str,
    raw: Option<&str>,
    entries: &mut Vec<Transaction>,
) -> FhirResult {
    let reader = access::reader(state, headers).map_err(from_problem)?;
    if !access::may_read_patient(&reader, patient) {
        return Err(from_problem(access::refused(&reader, 0)).into());
    }
    let store = state.log.store();
    if !pseudonym::is_well_formed(patient) || !has_records(store, patient)? {
        return Err(not_found(format!("Patient/{patient} has no records")).into());
    }
    // No search parameters: $everything takes only the result parameters.
    let s = parse_search("Patient", raw, lenient(headers), now_ms())?;
    let kinds = [
        fhir::KIND_OBSERVATION,
        fhir::KIND_CONDITION,
        fhir::KIND_IMMUNIZATION,
        fhir::KIND_PRESCRIPTION,
        fhir::KIND_DISPENSE,
    ];
    let mut judge = access::Judge::new(state, &reader);
    let by = By::Patient(patient);
    let mut found = run_search(store, &mut judge, &kinds, by, &s, true)?;
    let path = format!("Patient/{patient}/$everything");
    let pinned = [("_as_of", found.as_of.to_string())];
    *entries = judge
        .entries(Some(link(&path, &s.params, &pinned)))
        .map_err(from_problem)?;
    // The Patient leads the first page, beside `_count` resources.
    if s.offset == 0 && s.count > 0 {
        found.page.insert(0, patient_resource(patient));
    }
    Ok(page(headers, &path, &s, found, 1))
}
