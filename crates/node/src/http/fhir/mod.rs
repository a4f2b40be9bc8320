//! The FHIR R4 facade under `/fhir`.
//!
//! Resources are stored as the payloads of ledger transactions (kinds
//! `fhir.observation`, `fhir.condition`, `fhir.immunization`); a resource's
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
/// Candidates a search examines per request before it returns a page with
/// a `next` link (a page can then hold fewer than `_count` matches).
pub(crate) const MAX_SCAN: usize = 20_000;

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

/// `GET /fhir/metadata`: the CapabilityStatement.
pub(crate) async fn metadata(headers: HeaderMap) -> Response {
    fhir_json(
        StatusCode::OK,
        &present::capability_statement(&base_url(&headers), env!("CARGO_PKG_VERSION")),
    )
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
    let mut slots: Vec<Result<(usize, &'static str, String), FhirError>> = Vec::new();
    for p in prepared {
        match p {
            Ok((tx, ty, _)) => {
                slots.push(Ok((txs.len(), ty, hex::encode(tx.id()))));
                txs.push(tx);
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
            Ok((at, ty, id)) => match results.get(at) {
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

/// A parsed search.
struct Search {
    patient: Option<String>,
    code: Option<(Option<String>, String)>,
    dates: Vec<String>,
    count: usize,
    after: Option<u64>,
    /// The query without `_after`, for links.
    params: Vec<(String, String)>,
}

fn bad_param(msg: String) -> FhirError {
    FhirError::new(400, "invalid", None, msg)
}

fn parse_search(ty: &str, raw: Option<&str>) -> Result<Search, FhirError> {
    let mut s = Search {
        patient: None,
        code: None,
        dates: Vec::new(),
        count: DEFAULT_COUNT,
        after: None,
        params: Vec::new(),
    };
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let (k, v) = (k.into_owned(), v.into_owned());
        match (k.as_str(), ty) {
            ("subject" | "patient", _) => {
                let p = v.strip_prefix("Patient/").unwrap_or(&v);
                if !pseudonym::is_well_formed(p) {
                    return Err(bad_param(format!(
                        "{k} must be Patient/<pseudonym> (26 characters of base32)"
                    )));
                }
                s.patient = Some(p.to_owned());
            }
            ("code", "Observation" | "Condition") | ("vaccine-code", "Immunization") => {
                s.code = Some(match v.split_once('|') {
                    Some((sys, code)) if !sys.is_empty() => (Some(sys.to_owned()), code.to_owned()),
                    Some((_, code)) => (None, code.to_owned()),
                    None => (None, v.clone()),
                });
            }
            ("date", _) => {
                // Checked now, so a bad parameter is a 400 even with no candidates.
                fhir::date_matches(&v, "2000-01-01")?;
                s.dates.push(v.clone());
            }
            ("_count", _) => {
                s.count = v
                    .parse::<usize>()
                    .map_err(|_| bad_param("_count must be a non-negative integer".into()))?
                    .clamp(1, MAX_COUNT);
            }
            ("_after", _) => {
                s.after = Some(
                    v.parse()
                        .map_err(|_| bad_param("_after must be a log index".into()))?,
                );
                continue;
            }
            ("_format" | "_pretty", _) => {}
            _ => {
                return Err(FhirError::new(
                    400,
                    "not-supported",
                    None,
                    format!("search parameter {k} is not supported for {ty}"),
                ));
            }
        }
        s.params.push((k, v));
    }
    Ok(s)
}

fn link(path: &str, params: &[(String, String)], after: Option<u64>) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        ser.append_pair(k, v);
    }
    if let Some(a) = after {
        ser.append_pair("_after", &a.to_string());
    }
    let q = ser.finish();
    if q.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{q}")
    }
}

/// One page of a search at `path`: a searchset with its `self` link and,
/// when there is more, a `next` link that resumes after `next`.
fn page(
    headers: &HeaderMap,
    path: &str,
    s: &Search,
    found: Vec<Value>,
    next: Option<u64>,
) -> Response {
    let self_link = link(path, &s.params, s.after);
    let next_link = next.map(|n| link(path, &s.params, Some(n)));
    fhir_json(
        StatusCode::OK,
        &present::searchset(
            &base_url(headers),
            &self_link,
            next_link.as_deref(),
            None,
            found,
        ),
    )
}

/// Runs a search over candidate leaves: the matches of one page and where
/// the next page starts.
#[allow(clippy::too_many_arguments)]
fn run_search(
    store: &Store,
    judge: &mut access::Judge<'_>,
    kinds: &[&str],
    by: By<'_>,
    s: &Search,
    tombstones: bool,
    matches: impl Fn(&fhir::Summary) -> bool,
) -> Result<(Vec<Value>, Option<u64>), FhirError> {
    const CHUNK: usize = 512;
    let unavailable =
        |e: medledger_store::IndexError| from_problem(Problem::unavailable(e.to_string()));
    // `_after` comes from the query: u64::MAX must not overflow.
    let mut from = s.after.map_or(0, |a| a.saturating_add(1));
    let mut out = Vec::new();
    let mut scanned = 0;
    loop {
        let leaves = store
            .index()
            .leaves_by(by, from, CHUNK)
            .map_err(unavailable)?;
        let Some(&last) = leaves.last() else {
            return Ok((out, None));
        };
        for r in records(store, &leaves).map_err(from_problem)? {
            scanned += 1;
            if !kinds.contains(&r.tx.header().kind.as_str()) {
                continue;
            }
            if r.tx.is_redacted() {
                if tombstones && let Some(t) = tombstone_resource(store, &r) {
                    out.push(t);
                    if out.len() == s.count {
                        return Ok((out, Some(r.leaf)));
                    }
                }
                continue;
            }
            let Ok(payload) = serde_json::from_slice::<Value>(r.tx.payload_jcs()) else {
                continue;
            };
            let Ok(summary) = fhir::validate(&payload) else {
                continue;
            };
            if !matches(&summary) || !judge.admit(&r.tx).map_err(from_problem)? {
                continue;
            }
            out.push(present::as_read(
                &payload,
                &hex::encode(r.tx.id()),
                r.tx.header().time,
            ));
            if out.len() == s.count {
                return Ok((out, Some(r.leaf)));
            }
        }
        if leaves.len() < CHUNK {
            return Ok((out, None));
        }
        if scanned >= MAX_SCAN {
            return Ok((out, Some(last)));
        }
        from = last + 1;
    }
}

/// `GET /fhir/{type}`: search by `subject`/`patient`, `code` and `date`.
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
    let s = parse_search(ty, raw)?;
    let store = state.log.store();
    // A patient's search runs over their own records only.
    let own = reader.participant.patient.as_deref();
    let by = match (&s.patient, &s.code) {
        (Some(p), _) => By::Patient(p),
        (None, _) if reader.participant.role == Role::Patient => {
            By::Patient(own.unwrap_or_default())
        }
        (None, Some((_, c))) => By::Code(c),
        (None, None) => By::Kind(kind),
    };
    let mut judge = access::Judge::new(state, &reader);
    let (found, next) = run_search(store, &mut judge, &[kind], by, &s, false, |sum| {
        s.patient.as_ref().is_none_or(|p| &sum.patient == p)
            && s.code.as_ref().is_none_or(|(sys, code)| {
                sum.codes
                    .iter()
                    .any(|(ss, cc)| cc == code && sys.as_ref().is_none_or(|x| x == ss))
            })
            && s.dates.iter().all(|d| {
                sum.date
                    .as_deref()
                    .is_some_and(|v| fhir::date_matches(d, v).unwrap_or(false))
            })
    })?;
    *entries = judge
        .entries(Some(link(ty, &s.params, s.after)))
        .map_err(from_problem)?;
    Ok(page(headers, ty, &s, found, next))
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
    let mut s = parse_search("Patient", raw)?;
    if s.patient.is_some() || s.code.is_some() || !s.dates.is_empty() {
        return Err(bad_param("$everything takes only _count".into()).into());
    }
    let first = s.after.is_none();
    if first {
        s.count = s.count.saturating_sub(1).max(1);
    }
    let kinds = [
        fhir::KIND_OBSERVATION,
        fhir::KIND_CONDITION,
        fhir::KIND_IMMUNIZATION,
    ];
    let mut judge = access::Judge::new(state, &reader);
    let by = By::Patient(patient);
    let (mut found, next) = run_search(store, &mut judge, &kinds, by, &s, true, |_| true)?;
    let path = format!("Patient/{patient}/$everything");
    *entries = judge
        .entries(Some(link(&path, &s.params, s.after)))
        .map_err(from_problem)?;
    if first {
        found.insert(0, patient_resource(patient));
    }
    Ok(page(headers, &path, &s, found, next))
}
