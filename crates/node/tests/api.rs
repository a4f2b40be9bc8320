//! The HTTP API in process, through `router()` with tower's `oneshot`:
//!
//! - the role matrix of `docs/ROLES.md`, parsed from the file and walked cell
//!   by cell, so the document and the code cannot drift apart;
//! - conformance with `openapi.json`: every route is documented and every
//!   documented path exists, and *every* response any test here observes is
//!   checked against the document (status, content type, body schema, problem
//!   code) as it arrives;
//! - every error a client can provoke, each with its status and stable code,
//!   and never a 500.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, header};
use ed25519_dalek::SigningKey;
use medledger_formats::bytes::Bytes as Hex32Bytes;
use medledger_formats::checkpoint::Checkpoint;
use medledger_formats::cosignature::{CosignatureVerifier, verify_quorum};
use medledger_formats::keys;
use medledger_formats::merkle;
use medledger_formats::note::{Note, NoteVerifier};
use medledger_formats::receipt::TlogProof;
use medledger_formats::tx::Transaction;
use medledger_health::pseudonym::{Identifier, PseudonymKey};
use medledger_ledger::{
    ALERT_READERS, BREAK_GLASS_READERS, DEFAULT_MAX_SKEW_MS, DIRECTORY_READERS, DONOR_READERS,
    FHIR_WRITERS, Ledger, PSEUDONYM_MAKERS, RECORD_READERS, Rejection, Role, allowed_roles, kind,
    may_read_kind, now_ms, read_key_file,
};
use medledger_node::http::{AppState, Budgets, OPENAPI, PEER_TIMEOUT, node_cosigner, router};
use medledger_node::{
    ASSERTION_TYPE, AccessClaims, Health, NodeConfig, Sequencer, SequencerConfig, Signers,
    TOKEN_PREFIX, Tokens, Views, issue_token, revoke_token, sign_access_token, sign_assertion,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::task::Poll;
use tower::ServiceExt;

const ROLES_MD: &str = include_str!("../../../docs/ROLES.md");
const API_SOURCE: &str = include_str!("../src/http/router.rs");
const ORIGIN: &str = "medledger.test/api";

// ---- a node in process ------------------------------------------------------

struct Node {
    dir: tempfile::TempDir,
    app: Router,
    admin: SigningKey,
    node_key: SigningKey,
    /// The other nodes this one asks for cosignatures.
    peers: Arc<RwLock<Vec<String>>>,
    /// Its concurrency budgets.
    budgets: Budgets,
}

/// The pseudonym key of the test nodes.
const PSEUDONYM_KEY: [u8; 32] = [7; 32];

fn start() -> Node {
    start_with(NodeConfig::default())
}

fn start_with(config: NodeConfig) -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    Ledger::init(dir.path(), ORIGIN, "Test").expect("init");
    open_node(dir, config)
}

/// Serves the ledger already in `dir`.
fn open_node(dir: tempfile::TempDir, config: NodeConfig) -> Node {
    let admin = read_key_file(&dir.path().join("admin.key")).expect("admin key");
    let node_key = read_key_file(&dir.path().join("node.key")).expect("node key");
    let ledger = Ledger::open(dir.path()).expect("open");
    let cosigner = node_cosigner(
        ledger.store.origin(),
        &ledger.node_key,
        config.cosigner_name.as_deref(),
    )
    .expect("cosigner");
    let (seq, log) = Sequencer::local(ledger, SequencerConfig::default());
    let views = Views::follow(&log, config.news2_window_minutes);
    let peers = Arc::new(RwLock::new(Vec::new()));
    let budgets = Budgets::new(config.max_concurrency);
    let state = Arc::new(AppState {
        budgets: budgets.clone(),
        seq: Arc::new(seq),
        log,
        views,
        tokens: Tokens::new(dir.path()),
        config,
        metrics: None,
        cluster: None,
        health: Health {
            pseudonym_key: Some(PseudonymKey::from_bytes(&PSEUDONYM_KEY).expect("key")),
            signers: Signers::new(Some(dir.path().join("integrations"))),
        },
        cosigner: Arc::new(cosigner),
        peers: peers.clone(),
        node_key: node_key.clone(),
    });
    Node {
        app: router(state),
        dir,
        admin,
        node_key,
        peers,
        budgets,
    }
}

/// A response, with its body read.
struct Resp {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    fn code(&self) -> String {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }
    fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    /// Requires `status` and, for a problem, `code`.
    fn expect(&self, status: u16, code: &str) -> &Self {
        assert_eq!(
            (
                self.status,
                if status >= 400 {
                    self.code()
                } else {
                    String::new()
                }
            ),
            (status, code.to_owned()),
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }
}

fn request(method: Method, uri: &str, token: Option<&str>) -> axum::http::request::Builder {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    b
}

impl Node {
    /// A request whose success is an endless event stream: the status and
    /// headers of a 200, the whole body of anything else.
    async fn call_stream(&self, req: Request<Body>) -> Resp {
        let resp = self.app.clone().oneshot(req).await.expect("infallible");
        if resp.status() != 200 {
            let (parts, body) = resp.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.expect("body");
            let r = Resp {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: body.to_vec(),
            };
            conform(&Method::GET, "/v1/alerts/stream", &r);
            return r;
        }
        let ct = resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Resp {
            status: 200,
            headers: resp.headers().clone(),
            body: Vec::new(),
        }
    }

    async fn call(&self, req: Request<Body>) -> Resp {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let resp = self.app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body")
            .to_vec();
        let r = Resp {
            status,
            headers,
            body,
        };
        conform(&method, &path, &r);
        r
    }

    async fn get(&self, uri: &str, token: Option<&str>) -> Resp {
        self.call(
            request(Method::GET, uri, token)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    async fn post(&self, body: impl Into<Body>, content_type: Option<&str>) -> Resp {
        let mut b = request(Method::POST, "/v1/transactions", None);
        if let Some(ct) = content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        self.call(b.body(body.into()).unwrap()).await
    }

    async fn post_json(&self, v: &Value) -> Resp {
        self.post(serde_json::to_vec(v).unwrap(), Some("application/json"))
            .await
    }

    /// Submits a batch; one result per transaction.
    async fn submit(&self, txs: &[Transaction]) -> Vec<Value> {
        let body = Value::Array(txs.iter().map(wire).collect());
        let r = self.post_json(&body).await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["results"].as_array().expect("results").clone()
    }

    /// A new doctor, registered.
    async fn doctor(&self) -> SigningKey {
        let doctor = new_key();
        self.submit_ok(&[register_tx(&self.admin, &doctor, Role::Doctor)])
            .await;
        doctor
    }

    async fn submit_ok(&self, txs: &[Transaction]) {
        for (i, r) in self.submit(txs).await.iter().enumerate() {
            assert_eq!(r["status"], 200, "item {i}: {r}");
        }
    }

    /// Makes the node hold `key` as an integration account's signing key.
    fn hold_key(&self, key: &SigningKey) {
        let dir = self.dir.path().join("integrations");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.key", keys::public_key(key).to_hex()));
        if !path.exists() {
            medledger_ledger::write_secret_file(&path, &keys::encode_key_file(key)).unwrap();
        }
    }

    fn token(&self, key: &SigningKey) -> String {
        issue_token(self.dir.path(), keys::public_key(key), now_ms()).expect("issue token")
    }

    /// `POST /v1/token` with a form of `params`.
    async fn token_form(&self, params: &[(&str, &str)]) -> Resp {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        self.call(
            request(Method::POST, "/v1/token", None)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    /// A token request with `assertion` and, if given, `scope`.
    async fn token_with(&self, assertion: &str, scope: Option<&str>) -> Resp {
        let mut params = vec![
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
        ];
        if let Some(scope) = scope {
            params.push(("scope", scope));
        }
        self.token_form(&params).await
    }

    /// A token request signed by `key` for this node, with a fresh jti.
    async fn request_token(&self, key: &SigningKey, scope: Option<&str>) -> Resp {
        self.token_with(&assertion(key, &audience(), 0, 60), scope)
            .await
    }

    /// An access token for `key`.
    async fn access_token(&self, key: &SigningKey, scope: Option<&str>) -> String {
        let r = self.request_token(key, scope).await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["access_token"].as_str().expect("token").to_owned()
    }

    async fn status(&self) -> Value {
        self.get("/v1/status", None).await.json()
    }

    /// `/v1/cosignature` for the node's current size and root.
    async fn cosignature_uri(&self) -> String {
        let s = self.status().await;
        format!(
            "/v1/cosignature?size={}&root={}",
            s["log_size"],
            s["log_root"].as_str().expect("root")
        )
    }

    /// The node's cosigner, from its status.
    async fn cosigner(&self) -> CosignatureVerifier {
        let vkey = self.status().await["cosigner_vkey"]
            .as_str()
            .expect("cosigner_vkey")
            .to_owned();
        CosignatureVerifier::parse(&vkey).expect("cosigner vkey parses")
    }

    /// Serves the node on a loopback port; returns its base URL.
    async fn listen(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let app = self.app.clone();
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }
}

// ---- transactions -----------------------------------------------------------

/// The `aud` of assertions for a node with the default configuration.
fn audience() -> String {
    NodeConfig::default().token_audience()
}

/// An assertion by `key` for `aud`, issued `ago` seconds back and valid
/// for `lifetime` seconds from then, with a fresh jti.
fn assertion(key: &SigningKey, aud: &str, ago: u64, lifetime: u64) -> String {
    let jti = hex::encode(keys::random_bytes::<16>().expect("random"));
    sign_assertion(key, aud, now_ms() / 1000 - ago, lifetime, &jti).expect("sign")
}

fn signed_at(key: &SigningKey, kind: &str, time: u64, payload: &Value) -> Transaction {
    Transaction::sign(key, kind, time, payload).expect("sign")
}

fn signed(key: &SigningKey, kind: &str, payload: &Value) -> Transaction {
    signed_at(key, kind, now_ms(), payload)
}

/// A valid medical report from a doctor of institution "Test".
fn report_payload() -> Value {
    json!({
        "patient": "MFRGGZDFMZTWQ2LKNNWG23TPOA",
        "institution": "Test",
        "encounter_date": "2026-11-24",
        "diagnoses": ["J10.1"],
        "anamnesis": "fever",
    })
}

fn report(doctor: &SigningKey) -> Transaction {
    signed(doctor, kind::MEDICAL_REPORT, &report_payload())
}

/// Registers `key` with `role` at institution "Test"; a device or a patient
/// is bound to the sample patient (a patient is registered by the
/// pseudonymization authority, everyone else by the admin).
fn register_tx(admin: &SigningKey, key: &SigningKey, role: Role) -> Transaction {
    let mut p = json!({"key": keys::public_key(key), "role": role, "institution": "Test", "label": role.as_str()});
    if matches!(role, Role::Device | Role::Patient) {
        p["patient"] = json!("MFRGGZDFMZTWQ2LKNNWG23TPOA");
    }
    signed(admin, kind::REGISTER, &p)
}

fn revoke_tx(admin: &SigningKey, key: &SigningKey) -> Transaction {
    signed(
        admin,
        kind::REVOKE,
        &json!({"key": keys::public_key(key), "reason": "left"}),
    )
}

fn wire(tx: &Transaction) -> Value {
    serde_json::to_value(tx.to_wire().expect("wire")).expect("json")
}

fn id_hex(tx: &Transaction) -> String {
    hex::encode(tx.id())
}

fn new_key() -> SigningKey {
    keys::generate().expect("key")
}

/// The wire form with its signature altered (the id changes with it).
fn bad_signature(tx: &Transaction) -> Value {
    let mut w = wire(tx);
    let sig = w["signature"].as_str().unwrap().to_owned();
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    w["signature"] = json!(format!("{flipped}{}", &sig[1..]));
    w
}

/// The id a wire transaction would have.
fn wire_id(w: &Value) -> String {
    let tx = Transaction::from_wire(serde_json::from_value(w.clone()).unwrap()).unwrap();
    id_hex(&tx)
}

// ---- OpenAPI: the document and a validator for the subset it uses -----------

static SPEC: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(OPENAPI).expect("openapi.json is JSON"));

fn spec_ref(r: &str) -> &'static Value {
    let ptr = r
        .strip_prefix('#')
        .unwrap_or_else(|| panic!("only local $refs: {r}"));
    SPEC.pointer(ptr)
        .unwrap_or_else(|| panic!("$ref {r} does not resolve"))
}

fn deref(v: &'static Value) -> &'static Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => deref(spec_ref(r)),
        None => v,
    }
}

/// The documented path template that `path` instantiates.
fn template_of(path: &str) -> Option<&'static str> {
    let segs: Vec<&str> = path.split('/').collect();
    SPEC["paths"].as_object()?.keys().find_map(|t| {
        let tsegs: Vec<&str> = t.split('/').collect();
        let ok = tsegs.len() == segs.len()
            && tsegs.iter().zip(&segs).all(|(t, s)| {
                if t.starts_with('{') {
                    !s.is_empty()
                } else {
                    t == s
                }
            });
        ok.then_some(t.as_str())
    })
}

const ANNOTATIONS: &[&str] = &["description", "title", "contentEncoding", "format"];

/// Fails on a keyword that [`validate`] does not check.
fn check_keywords(schema: &Value, at: &str) {
    for (k, v) in schema
        .as_object()
        .unwrap_or_else(|| panic!("{at}: not a schema"))
    {
        match k.as_str() {
            "properties" => {
                for (name, ps) in v.as_object().expect("properties") {
                    check_keywords(ps, &format!("{at}.{name}"));
                }
            }
            "items" => check_keywords(v, &format!("{at}[]")),
            "oneOf" => {
                for (i, alt) in v.as_array().expect("oneOf").iter().enumerate() {
                    check_keywords(alt, &format!("{at}|{i}"));
                }
            }
            "pattern" => {
                pattern(v.as_str().expect("pattern"));
            }
            "$ref"
            | "type"
            | "required"
            | "additionalProperties"
            | "minItems"
            | "maxItems"
            | "uniqueItems"
            | "minimum"
            | "maximum"
            | "enum"
            | "const" => {}
            a if ANNOTATIONS.contains(&a) => {}
            other => panic!("{at}: the test's validator does not know keyword {other}"),
        }
    }
}

/// Validates `v` against `schema` (the JSON Schema keywords openapi.json
/// uses; any other keyword fails, so the validator and document stay in step).
fn validate(schema: &'static Value, v: &Value, at: &str) -> Result<(), String> {
    let obj = schema
        .as_object()
        .ok_or_else(|| format!("{at}: schema is not an object"))?;
    for (k, s) in obj {
        match k.as_str() {
            "$ref" => validate(spec_ref(s.as_str().unwrap_or("")), v, at)?,
            "type" => {
                let types: Vec<&str> = match s {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                    _ => return Err(format!("{at}: bad type keyword")),
                };
                if !types.iter().any(|t| has_type(v, t)) {
                    return Err(format!("{at}: {v} is not of type {types:?}"));
                }
            }
            "properties" => {
                if let (Some(props), Some(o)) = (s.as_object(), v.as_object()) {
                    for (name, ps) in props {
                        if let Some(x) = o.get(name) {
                            validate(ps, x, &format!("{at}.{name}"))?;
                        }
                    }
                }
            }
            "required" => {
                if let Some(o) = v.as_object() {
                    for name in s.as_array().into_iter().flatten().filter_map(Value::as_str) {
                        if !o.contains_key(name) {
                            return Err(format!("{at}: missing required {name}"));
                        }
                    }
                }
            }
            "additionalProperties" => {
                if s == &Value::Bool(false)
                    && let Some(o) = v.as_object()
                {
                    let props = obj.get("properties").and_then(Value::as_object);
                    for name in o.keys() {
                        if !props.is_some_and(|p| p.contains_key(name)) {
                            return Err(format!("{at}: undocumented property {name}"));
                        }
                    }
                }
            }
            "items" => {
                for (i, x) in v.as_array().into_iter().flatten().enumerate() {
                    validate(s, x, &format!("{at}[{i}]"))?;
                }
            }
            "minItems" | "maxItems" => {
                if let Some(a) = v.as_array() {
                    let n = s.as_u64().unwrap_or(0) as usize;
                    let ok = if k == "minItems" {
                        a.len() >= n
                    } else {
                        a.len() <= n
                    };
                    if !ok {
                        return Err(format!("{at}: {} items breaks {k} {n}", a.len()));
                    }
                }
            }
            "uniqueItems" => {
                if s == &Value::Bool(true)
                    && let Some(a) = v.as_array()
                    && let Some((i, _)) = a.iter().enumerate().find(|(i, x)| a[..*i].contains(x))
                {
                    return Err(format!("{at}[{i}]: repeats an earlier item"));
                }
            }
            "minimum" | "maximum" => {
                if let (Some(x), Some(lim)) = (v.as_f64(), s.as_f64()) {
                    let ok = if k == "minimum" { x >= lim } else { x <= lim };
                    if !ok {
                        return Err(format!("{at}: {x} breaks {k} {lim}"));
                    }
                }
            }
            "enum" => {
                if !s.as_array().is_some_and(|e| e.contains(v)) {
                    return Err(format!("{at}: {v} is not one of {s}"));
                }
            }
            "const" => {
                if s != v {
                    return Err(format!("{at}: {v} is not {s}"));
                }
            }
            "oneOf" => {
                let alts = s.as_array().ok_or_else(|| format!("{at}: bad oneOf"))?;
                let errors: Vec<String> = alts
                    .iter()
                    .filter_map(|a| validate(a, v, at).err())
                    .collect();
                if alts.len() - errors.len() != 1 {
                    return Err(format!(
                        "{at}: matches {} of oneOf ({errors:?})",
                        alts.len() - errors.len()
                    ));
                }
            }
            "pattern" => {
                if let Some(text) = v.as_str()
                    && !pattern(s.as_str().unwrap_or("")).is_match(text)
                {
                    return Err(format!("{at}: {text:?} does not match {s}"));
                }
            }
            a if ANNOTATIONS.contains(&a) => {}
            other => panic!("{at}: the test's validator does not know keyword {other}"),
        }
    }
    Ok(())
}

fn has_type(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_u64() || v.is_i64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        other => panic!("unknown type {other}"),
    }
}

/// A schema's `pattern`, compiled once. The document's patterns use only
/// syntax that ECMA-262 and regex-lite read alike: classes, groups,
/// alternation, counted repetition and anchors.
fn pattern(p: &str) -> regex_lite::Regex {
    static COMPILED: LazyLock<Mutex<BTreeMap<String, regex_lite::Regex>>> =
        LazyLock::new(Mutex::default);
    let mut compiled = COMPILED.lock().unwrap_or_else(|e| e.into_inner());
    compiled
        .entry(p.to_owned())
        .or_insert_with(|| {
            assert!(
                p.starts_with('^') && p.ends_with('$'),
                "pattern {p} is not anchored"
            );
            regex_lite::Regex::new(p).unwrap_or_else(|e| panic!("pattern {p}: {e}"))
        })
        .clone()
}

/// Checks one observed response against openapi.json. Called on every
/// response of every test in this file.
fn conform(method: &Method, path: &str, r: &Resp) {
    let ctx = format!("{method} {path} -> {}", r.status);
    assert!(
        r.status < 500 || r.status == 503,
        "{ctx}: client input must never cause a server error: {}",
        String::from_utf8_lossy(&r.body)
    );
    // The token endpoint answers OAuth 2.0 errors (RFC 6749 section 5.2);
    // the edge's own refusals there are still problems.
    let oauth = path == "/v1/token" && r.content_type() == "application/json";
    if r.status >= 400 {
        if path.starts_with("/fhir") && r.content_type().starts_with("application/fhir+json") {
            check_outcome(&ctx, r);
        } else if oauth {
            check_oauth_error(&ctx, r);
        } else {
            check_problem(&ctx, r);
        }
    }
    let fhir_outcome =
        path.starts_with("/fhir") && r.content_type().starts_with("application/fhir+json");
    let Some(template) = template_of(path) else {
        if fhir_outcome {
            assert!(
                matches!(r.status, 404 | 406 | 429),
                "{ctx}: an unknown /fhir path must be a 404 OperationOutcome"
            );
            return;
        }
        // The fallback sheds load like every route.
        let code = r.code();
        assert!(
            matches!(
                (r.status, code.as_str()),
                (404, "not_found") | (429, "too_many_requests")
            ),
            "{ctx}: an unknown path must be 404 not_found"
        );
        return;
    };
    let m = method.as_str().to_ascii_lowercase();
    let Some(op) = SPEC["paths"][template].get(&m) else {
        assert_eq!(r.status, 405, "{ctx}: an undocumented method must be 405");
        if fhir_outcome {
            assert_eq!(r.json()["issue"][0]["code"], "not-supported", "{ctx}");
        } else {
            assert_eq!(r.code(), "method_not_allowed", "{ctx}");
        }
        let allow = r
            .headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{ctx}: 405 without Allow"));
        for documented in SPEC["paths"][template].as_object().unwrap().keys() {
            assert!(
                allow.contains(&documented.to_ascii_uppercase()),
                "{ctx}: Allow {allow:?} lacks {documented}"
            );
        }
        return;
    };
    let spec = op["responses"]
        .get(r.status.to_string())
        .map(deref)
        .unwrap_or_else(|| panic!("{ctx}: status not documented for {m} {template}"));
    let mime = r.content_type().split(';').next().unwrap_or("").trim();
    let media = spec["content"]
        .get(mime)
        .unwrap_or_else(|| panic!("{ctx}: content type {mime:?} not documented"));
    let value = if mime.ends_with("json") {
        r.json()
    } else {
        Value::String(r.text())
    };
    if let Err(e) = validate(&media["schema"], &value, "$") {
        panic!("{ctx}: body does not match the documented schema: {e}\n{value}");
    }
    if oauth && r.status >= 400 {
        let codes = spec["x-oauth-errors"].as_array().expect("x-oauth-errors");
        assert!(
            codes.contains(&r.json()["error"]),
            "{ctx}: error {} not in the documented {codes:?}",
            r.json()["error"]
        );
    } else if let Some(codes) = spec.get("x-codes").and_then(Value::as_array) {
        assert!(
            codes.contains(&json!(r.code())),
            "{ctx}: code {} not in the documented {codes:?}",
            r.code()
        );
    }
    for name in spec["headers"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|h| h.0)
    {
        assert!(
            r.headers.contains_key(name.as_str()),
            "{ctx}: documented header {name} missing"
        );
    }
}

/// A FHIR failure is an OperationOutcome with at least one issue.
fn check_outcome(ctx: &str, r: &Resp) {
    let o = r.json();
    assert_eq!(o["resourceType"], "OperationOutcome", "{ctx}: {o}");
    let issues = o["issue"].as_array().expect("issues");
    assert!(!issues.is_empty(), "{ctx}");
    for i in issues {
        assert_eq!(i["severity"], "error", "{ctx}: {o}");
        assert!(
            i["code"].is_string() && i["diagnostics"].is_string(),
            "{ctx}: {o}"
        );
    }
}

/// A token endpoint failure is an OAuth 2.0 error that is never cached.
fn check_oauth_error(ctx: &str, r: &Resp) {
    let e = r.json();
    if let Err(err) = validate(&SPEC["components"]["schemas"]["OAuthError"], &e, "$") {
        panic!("{ctx}: {err}");
    }
    assert_eq!(
        r.headers.get(header::CACHE_CONTROL).map(|v| v.as_bytes()),
        Some(&b"no-store"[..]),
        "{ctx}"
    );
}

/// Every failure is an RFC 9457 problem with a known code.
fn check_problem(ctx: &str, r: &Resp) {
    assert_eq!(
        r.content_type(),
        "application/problem+json",
        "{ctx}: errors are problems"
    );
    let p = r.json();
    for field in ["type", "title", "detail", "code"] {
        assert!(p[field].is_string(), "{ctx}: problem lacks {field}: {p}");
    }
    assert_eq!(p["status"], json!(r.status), "{ctx}: problem status");
    let code = p["code"].as_str().unwrap();
    assert_eq!(
        p["type"],
        json!(format!("https://medledger.example/problems/{code}")),
        "{ctx}"
    );
    if let Err(e) = validate(&SPEC["components"]["schemas"]["Problem"], &p, "$") {
        panic!("{ctx}: {e}");
    }
}

// ---- the router's routes, read from its source ------------------------------

/// (method, path) of every `.route(...)` in api.rs.
fn router_routes() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (at, _) in API_SOURCE.match_indices(".route(") {
        // The call's arguments, up to its closing parenthesis, over any line breaks.
        let rest = &API_SOURCE[at + ".route(".len()..];
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .map(|(i, _)| i)
            .expect("a closed .route(");
        let args = rest[..end].trim_start();
        let Some(args) = args.strip_prefix('"') else {
            continue;
        };
        let (path, handlers) = args.split_once('"').expect("route path");
        let mut found = false;
        for m in ["get", "post", "put", "delete", "patch"] {
            let needle = format!("{m}(");
            for (at, _) in handlers.match_indices(&needle) {
                let before = handlers[..at].chars().last();
                if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    out.insert((m.to_owned(), path.to_owned()));
                    found = true;
                }
            }
        }
        assert!(found, "cannot read the methods of route {path}");
    }
    assert!(
        out.len() >= 13,
        "router routes not found in api.rs: {out:?}"
    );
    out
}

fn documented_routes() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in SPEC["paths"].as_object().unwrap() {
        for m in item.as_object().unwrap().keys() {
            out.insert((m.clone(), path.clone()));
        }
    }
    out
}

// ---- docs/ROLES.md ------------------------------------------------------------

/// The markdown table whose first header cell is `first`: header and rows.
fn md_table(first: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let cells = |l: &str| -> Vec<String> {
        l.trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().trim_matches('`').to_owned())
            .collect()
    };
    let mut lines = ROLES_MD
        .lines()
        .skip_while(|l| !l.trim_start().starts_with(&format!("| {first} |")));
    let header = cells(lines.next().unwrap_or_else(|| panic!("no `{first}` table")));
    let sep = lines.next().unwrap_or("");
    assert!(
        sep.starts_with("|---"),
        "table `{first}` lacks its separator"
    );
    let rows: Vec<Vec<String>> = lines
        .take_while(|l| l.trim_start().starts_with('|'))
        .map(cells)
        .collect();
    for r in &rows {
        assert_eq!(r.len(), header.len(), "ragged row in `{first}`: {r:?}");
    }
    (header, rows)
}

const BAD_TOKEN_COLUMNS: [&str; 3] = ["revoked participant", "revoked token", "unknown token"];

fn endpoint_of(cell: &str) -> (String, String) {
    let (m, p) = cell.split_once(' ').expect("`METHOD /path`");
    (m.to_ascii_lowercase(), p.to_owned())
}

/// One participant per role (admin and node are the genesis keys).
fn role_keys(node: &Node) -> BTreeMap<&'static str, (Role, SigningKey)> {
    Role::ALL
        .iter()
        .map(|&r| {
            let key = match r {
                Role::Admin => node.admin.clone(),
                Role::Node => node.node_key.clone(),
                _ => new_key(),
            };
            (r.as_str(), (r, key))
        })
        .collect()
}

async fn register_roles(node: &Node, keys: &BTreeMap<&'static str, (Role, SigningKey)>) {
    let regs: Vec<Transaction> = keys
        .values()
        .filter(|(r, _)| !matches!(r, Role::Admin | Role::Node | Role::Patient))
        .map(|(r, k)| register_tx(&node.admin, k, *r))
        .collect();
    node.submit_ok(&regs).await;
    let authority = &keys["pseudonymization_authority"].1;
    node.submit_ok(&[register_tx(authority, &keys["patient"].1, Role::Patient)])
        .await;
}

#[tokio::test]
async fn roles_md_endpoint_matrix_holds_for_every_caller_and_endpoint() {
    let node = start();
    let keys = role_keys(&node);
    register_roles(&node, &keys).await;
    let doctor = keys["doctor"].1.clone();
    let gone = new_key();
    let dropped = new_key();
    node.submit_ok(&[
        register_tx(&node.admin, &gone, Role::Doctor),
        register_tx(&node.admin, &dropped, Role::Doctor),
    ])
    .await;
    // The node holds every role's key, as for an integration account, so
    // that FHIR writes are judged by role alone.
    for (_, key) in keys.values() {
        node.hold_key(key);
    }
    let mut tokens: BTreeMap<String, Option<String>> = BTreeMap::new();
    tokens.insert("anonymous".into(), None);
    for (name, (_, key)) in &keys {
        tokens.insert((*name).into(), Some(node.token(key)));
    }
    let gone_token = node.token(&gone);
    node.submit_ok(&[revoke_tx(&node.admin, &gone)]).await;
    let dropped_token = node.token(&dropped);
    revoke_token(node.dir.path(), &dropped_token).unwrap();
    tokens.insert("revoked participant".into(), Some(gone_token));
    tokens.insert("revoked token".into(), Some(dropped_token));
    tokens.insert(
        "unknown token".into(),
        Some(format!("{}{}", TOKEN_PREFIX, "ab".repeat(32))),
    );
    let committed = report(&doctor);
    node.submit_ok(std::slice::from_ref(&committed)).await;
    let id = id_hex(&committed);

    let (header, rows) = md_table("endpoint");
    let expected_columns: Vec<String> = ["endpoint", "anonymous"]
        .into_iter()
        .chain(Role::ALL.iter().map(|r| r.as_str()))
        .chain(BAD_TOKEN_COLUMNS)
        .map(str::to_owned)
        .collect();
    assert_eq!(header, expected_columns, "ROLES.md endpoint table columns");
    let listed: BTreeSet<(String, String)> = rows.iter().map(|r| endpoint_of(&r[0])).collect();
    assert_eq!(
        listed,
        router_routes(),
        "ROLES.md must list exactly the router's endpoints"
    );

    let mut cells = 0;
    for row in &rows {
        let (method, template) = endpoint_of(&row[0]);
        let mut uri = sample_uri(&template, &id);
        // The constants in api.rs must say what the document says.
        let readers = match (method.as_str(), template.as_str()) {
            ("get", "/v1/transactions/{id}")
            | ("get", "/v1/patients/{pseudonym}/history")
            | ("get", "/fhir/{type}")
            | ("get", "/fhir/{type}/{id}")
            | ("get", "/fhir/Patient/{pseudonym}/$everything") => Some(RECORD_READERS),
            ("get", "/v1/participants") => Some(DIRECTORY_READERS),
            ("post", "/v1/pseudonyms") => Some(PSEUDONYM_MAKERS),
            ("post", "/fhir") => Some(FHIR_WRITERS),
            ("get", "/v1/alerts") | ("get", "/v1/alerts/stream") => Some(ALERT_READERS),
            ("get", "/v1/donors/{pseudonym}") => Some(DONOR_READERS),
            ("get", "/v1/break-glass") => Some(BREAK_GLASS_READERS),
            _ => None,
        };
        for (col, cell) in header.iter().zip(row).skip(1) {
            let token = tokens[col].as_deref();
            if template == "/v1/cosignature" {
                // The log grows as the walk submits: cosign its current head.
                uri = node.cosignature_uri().await;
            }
            if let (Some(readers), Some(role)) =
                (readers, Role::ALL.iter().find(|r| r.as_str() == col))
            {
                // The sample record is a medical report and the sample
                // Bundle holds an Observation: a role let in at the door may
                // still be refused those (a pharmacy reads and writes only
                // prescriptions and dispenses).
                let sample = match (method.as_str(), template.as_str()) {
                    ("get", "/v1/transactions/{id}") => may_read_kind(*role, kind::MEDICAL_REPORT),
                    ("post", "/fhir") => {
                        allowed_roles(kind::FHIR_OBSERVATION).is_some_and(|r| r.contains(role))
                    }
                    _ => true,
                };
                let want = if readers.contains(role) && sample {
                    "200"
                } else {
                    "403"
                };
                assert_eq!(
                    cell, want,
                    "ROLES.md {template} × {col} disagrees with api.rs"
                );
            }
            let r = if cell == "assertion" {
                // Not token-gated: a signed assertion is the credential.
                node.request_token(&doctor, None).await
            } else if cell == "signed" {
                // Not token-gated: the same signed write succeeds whatever token comes along.
                assert_eq!(method, "post");
                let tx = if template == "/v1/vitals" {
                    signed(
                        &doctor,
                        kind::VITAL_SIGNS,
                        &payload_for(kind::VITAL_SIGNS, &doctor, &doctor),
                    )
                } else {
                    report(&doctor)
                };
                let mut b = request(Method::POST, &uri, token);
                b = b.header(header::CONTENT_TYPE, "application/json");
                node.call(
                    b.body(Body::from(serde_json::to_vec(&wire(&tx)).unwrap()))
                        .unwrap(),
                )
                .await
            } else if template == "/v1/alerts/stream" {
                node.call_stream(
                    request(Method::GET, &uri, token)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
            } else if method == "post" {
                node.post_to(&uri, token, sample_body(&template)).await
            } else {
                let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
                node.call(request(m, &uri, token).body(Body::empty()).unwrap())
                    .await
            };
            let want: u16 = if cell == "signed" || cell == "assertion" {
                200
            } else {
                cell.parse()
                    .unwrap_or_else(|_| panic!("ROLES.md cell {cell:?} in {template} × {col}"))
            };
            assert_eq!(
                r.status,
                want,
                "{} {uri} as {col}: ROLES.md says {cell}; body {}",
                method.to_uppercase(),
                String::from_utf8_lossy(&r.body)
            );
            cells += 1;
        }
    }
    assert_eq!(cells, rows.len() * (header.len() - 1));

    // The scheme name is case-insensitive (RFC 9110 §11.1); other schemes are not tokens.
    let doc_token = tokens["doctor"].clone().unwrap();
    let uri = format!("/v1/transactions/{id}");
    for (auth, want) in [
        (format!("bearer {doc_token}").into_bytes(), 200),
        (format!("BEARER  {doc_token}").into_bytes(), 200),
        (format!("Basic {doc_token}").into_bytes(), 401),
        (doc_token.clone().into_bytes(), 401),
        (b"Bearer".to_vec(), 401),
        (b"Bearer ".to_vec(), 401),
        (b"Bearer \xff\xfe".to_vec(), 401),
    ] {
        let value = header::HeaderValue::from_bytes(&auth).unwrap();
        let req = Request::get(&uri)
            .header(header::AUTHORIZATION, value)
            .body(Body::empty())
            .unwrap();
        let shown = String::from_utf8_lossy(&auth);
        assert_eq!(node.call(req).await.status, want, "Authorization: {shown}");
    }
}

/// A payload `kind` accepts from an allowed role.
fn payload_for(kind: &str, doctor: &SigningKey, victim: &SigningKey) -> Value {
    match kind {
        kind::REGISTER => {
            json!({"key": keys::public_key(&new_key()), "role": "doctor", "institution": "Test"})
        }
        kind::REVOKE => json!({"key": keys::public_key(victim), "reason": "test"}),
        kind::EPIDEMIC_REPORT => json!({"date": "2026-11-24", "region": "Nisavski",
            "disease": "U07.1", "new_cases": 12, "hospitalised": 3, "on_respirator": 1, "deaths": 0}),
        kind::VACCINATION_REPORT => json!({"date": "2026-11-24", "region": "Nisavski",
            "vaccine": "J07BX03", "dose": 1, "age_band": "65-74", "doses": 40}),
        kind::ORGAN_DONOR_DECISION => json!({"patient": "MFRGGZDFMZTWQ2LKNNWG23TPOA",
            "decision": "opt_in", "organs": ["kidneys", "corneas"], "date": "2026-11-24"}),
        kind::CHOSEN_DOCTOR => json!({"patient": "MFRGGZDFMZTWQ2LKNNWG23TPOA",
            "doctor": keys::public_key(doctor), "date": "2026-11-24"}),
        kind::VITAL_SIGNS => {
            json!({"patient": "MFRGGZDFMZTWQ2LKNNWG23TPOA", "time": "2026-11-24T08:30:00Z", "pulse": 72})
        }
        kind::MEDICAL_REPORT => report_payload(),
        kind::FHIR_OBSERVATION => json!({
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": "Patient/MFRGGZDFMZTWQ2LKNNWG23TPOA"},
            "effectiveDateTime": "2026-11-24T09:00:00Z",
            "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
        }),
        kind::FHIR_CONDITION => json!({
            "resourceType": "Condition",
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "J10.1"}]},
            "subject": {"reference": "Patient/MFRGGZDFMZTWQ2LKNNWG23TPOA"},
            "recordedDate": "2026-11-24"
        }),
        kind::FHIR_IMMUNIZATION => json!({
            "resourceType": "Immunization",
            "status": "completed",
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "208"}]},
            "patient": {"reference": "Patient/MFRGGZDFMZTWQ2LKNNWG23TPOA"},
            "occurrenceDateTime": "2026-11-24"
        }),
        kind::CONSENT_DIRECTIVE => directive_payload(
            "MFRGGZDFMZTWQ2LKNNWG23TPOA",
            json!({"type": "permit", "purpose": [{"system": PURPOSE_SYSTEM, "code": "HRESCH"}]}),
        ),
        // An access entry as IHE BALP lays out a "Patient Record" read,
        // written out here by hand.
        kind::ACCESS_ENTRY => json!({
            "resourceType": "AuditEvent",
            "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110"},
            "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}],
            "action": "R",
            "recorded": "2026-11-24T09:00:00.000Z",
            "outcome": "0",
            "purposeOfEvent": [{"coding": [{"system": PURPOSE_SYSTEM, "code": "TREAT"}]}],
            "agent": [{"who": {"type": "urn:medledger:participant", "reference": keys::public_key(doctor)},
                       "role": [{"coding": [{"system": "urn:medledger:role", "code": "doctor"}]}],
                       "requestor": true}],
            "source": {"observer": {"type": "urn:medledger:participant", "reference": keys::public_key(victim)}},
            "entity": [{"what": {"reference": "Patient/MFRGGZDFMZTWQ2LKNNWG23TPOA"},
                        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"}}],
            "extension": [{"url": "urn:medledger:access-decision", "valueCode": "permit"},
                          {"url": "urn:medledger:records-returned", "valueUnsignedInt": 1},
                          {"url": "urn:medledger:records-withheld", "valueUnsignedInt": 0}]
        }),
        kind::PRESCRIPTION => prescription_payload(0),
        other => panic!("no sample payload for {other}"),
    }
}

/// The ATC code of morphine.
const MORPHINE: &str = "N02AA01";

/// A prescription for PATIENT_P of 20 tablets of morphine a fill, with
/// `repeats` repeats, valid from today (UTC) for 30 days.
fn prescription_payload(repeats: u32) -> Value {
    let day = |d: u64| medledger_health::calendar::date_of_ms(now_ms() + d * 86_400_000);
    json!({
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": format!("Patient/{PATIENT_P}")},
        "authoredOn": day(0),
        "medicationCodeableConcept": {"coding": [
            {"system": "http://www.whocc.no/atc", "code": MORPHINE, "display": "morphine"}]},
        "dosageInstruction": [{
            "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet",
                "system": "http://unitsofmeasure.org", "code": "{tablet}"}}]
        }],
        "dispenseRequest": {
            "validityPeriod": {"start": day(0), "end": day(29)},
            "numberOfRepeatsAllowed": repeats,
            "quantity": {"value": 20, "unit": "tablet",
                "system": "http://unitsofmeasure.org", "code": "{tablet}"}
        }
    })
}

/// A dispense of `qty` tablets of morphine for PATIENT_P against `rx`,
/// handed over now.
fn dispense_payload(rx: &Transaction, qty: f64) -> Value {
    dispense_of(&id_hex(rx), qty)
}

/// [`dispense_payload`] against the prescription with id `rx`.
fn dispense_of(rx: &str, qty: f64) -> Value {
    json!({
        "resourceType": "MedicationDispense",
        "status": "completed",
        "subject": {"reference": format!("Patient/{PATIENT_P}")},
        "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": MORPHINE}]},
        "authorizingPrescription": [{"reference": format!("MedicationRequest/{rx}")}],
        "quantity": {"value": qty, "unit": "tablet",
            "system": "http://unitsofmeasure.org", "code": "{tablet}"},
        "whenHandedOver": medledger_health::calendar::instant_of_ms(now_ms() as i64)
    })
}

#[tokio::test]
async fn prescriptions_and_dispenses_go_through_fhir_and_v1_under_the_dispensing_rules() {
    let node = start();
    let (doctor, other_doctor) = (new_key(), new_key());
    let (pharmacy, second) = (new_key(), new_key());
    node.submit_ok(&[
        register_tx(&node.admin, &doctor, Role::Doctor),
        register_tx(&node.admin, &other_doctor, Role::Doctor),
        register_tx(&node.admin, &pharmacy, Role::Pharmacy),
        register_tx(&node.admin, &second, Role::Pharmacy),
    ])
    .await;
    node.hold_key(&doctor);
    node.hold_key(&pharmacy);
    let (doctor_token, pharmacy_token) = (node.token(&doctor), node.token(&pharmacy));

    // The doctor prescribes through FHIR: a single fill.
    let r = node
        .fhir_post_with(
            "/fhir/MedicationRequest",
            &doctor_token,
            &prescription_payload(0),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let rx_id = r.json()["id"].as_str().unwrap().to_owned();
    let location = r.headers[header::LOCATION].to_str().unwrap().to_owned();
    assert!(
        location.ends_with(&format!("/MedicationRequest/{rx_id}/_history/1")),
        "{location}"
    );

    // The pharmacy reads it, and fills it through FHIR.
    let read = node
        .get(
            &format!("/fhir/MedicationRequest/{rx_id}"),
            Some(&pharmacy_token),
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(
        read.json()["medicationCodeableConcept"]["coding"][0]["code"],
        MORPHINE
    );
    let fill = dispense_of(&rx_id, 20.0);
    let r = node
        .fhir_post_with("/fhir/MedicationDispense", &pharmacy_token, &fill, &[])
        .await;
    assert_eq!(r.status, 201, "{}", r.text());

    // A second pharmacy's signed dispense of the same single fill is refused,
    // and a FHIR one too, as a business rule.
    let again = signed(&second, kind::DISPENSE, &fill);
    node.post_json(&wire(&again))
        .await
        .expect(422, "fills_exhausted");
    let r = node
        .fhir_post_with("/fhir/MedicationDispense", &pharmacy_token, &fill, &[])
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["issue"][0]["code"], "business-rule");

    // Both are in the patient's medication record, for the pharmacy too.
    for (ty, n) in [("MedicationRequest", 1), ("MedicationDispense", 1)] {
        let b = node
            .get(
                &format!("/fhir/{ty}?patient={PATIENT_P}"),
                Some(&pharmacy_token),
            )
            .await;
        assert_eq!(b.status, 200, "{}", b.text());
        assert_eq!(b.json()["total"], n, "{ty}");
    }
    // The pharmacy reads nothing else of the patient's.
    let report = signed(&doctor, kind::MEDICAL_REPORT, &report_payload());
    node.submit_ok(std::slice::from_ref(&report)).await;
    node.get(
        &format!("/v1/transactions/{}", id_hex(&report)),
        Some(&pharmacy_token),
    )
    .await
    .expect(403, "forbidden");
    node.get("/v1/export", Some(&pharmacy_token))
        .await
        .expect(403, "forbidden");

    // A signed prescription through /v1 with repeats; only its prescriber
    // cancels it, and nothing is dispensed after.
    let repeat = signed(&doctor, kind::PRESCRIPTION, &prescription_payload(2));
    node.submit_ok(std::slice::from_ref(&repeat)).await;
    node.submit_ok(&[signed(
        &second,
        kind::DISPENSE,
        &dispense_payload(&repeat, 20.0),
    )])
    .await;
    let cancel =
        json!({"prescription": id_hex(&repeat), "patient": PATIENT_P, "reason": "therapy changed"});
    node.post_json(&wire(&signed(
        &other_doctor,
        kind::PRESCRIPTION_CANCEL,
        &cancel,
    )))
    .await
    .expect(403, "not_prescriber");
    node.submit_ok(&[signed(&doctor, kind::PRESCRIPTION_CANCEL, &cancel)])
        .await;
    node.post_json(&wire(&signed(
        &second,
        kind::DISPENSE,
        &dispense_payload(&repeat, 20.0),
    )))
    .await
    .expect(422, "prescription_cancelled");
    // A dispense without a prescription, and one of more than remains.
    let unknown = signed(&doctor, kind::MEDICAL_REPORT, &report_payload());
    node.post_json(&wire(&signed(
        &second,
        kind::DISPENSE,
        &dispense_payload(&unknown, 1.0),
    )))
    .await
    .expect(422, "prescription_unknown");
    let big = signed(&doctor, kind::PRESCRIPTION, &prescription_payload(1));
    node.submit_ok(std::slice::from_ref(&big)).await;
    // Two fills of 20: 41 is more than the 40 prescribed.
    node.post_json(&wire(&signed(
        &second,
        kind::DISPENSE,
        &dispense_payload(&big, 41.0),
    )))
    .await
    .expect(422, "dispense_over_quantity");

    // Bad input gets a clear OperationOutcome, and /v1 a fhir_invalid problem.
    let mut no_atc = prescription_payload(0);
    no_atc["medicationCodeableConcept"]["coding"][0]["system"] = json!("http://snomed.info/sct");
    let r = node
        .fhir_post_with("/fhir/MedicationRequest", &doctor_token, &no_atc, &[])
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(
        r.json()["issue"][0]["expression"][0],
        "MedicationRequest.medicationCodeableConcept.coding"
    );
    let mut negative = prescription_payload(0);
    negative["dispenseRequest"]["quantity"]["value"] = json!(-20);
    node.post_json(&wire(&signed(&doctor, kind::PRESCRIPTION, &negative)))
        .await
        .expect(422, "fhir_invalid");
    // A pharmacy may not prescribe, through FHIR or signed.
    let r = node
        .fhir_post_with(
            "/fhir/MedicationRequest",
            &pharmacy_token,
            &prescription_payload(0),
            &[],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    node.post_json(&wire(&signed(
        &pharmacy,
        kind::PRESCRIPTION,
        &prescription_payload(0),
    )))
    .await
    .expect(403, "role_not_allowed");
}

#[tokio::test]
async fn roles_md_kind_table_matches_allowed_roles_and_the_ledger() {
    let node = start();
    let keys = role_keys(&node);
    register_roles(&node, &keys).await;
    let victim = new_key();
    node.submit_ok(&[register_tx(&node.admin, &victim, Role::Doctor)])
        .await;
    let patient_victim = new_key();
    let authority = &keys["pseudonymization_authority"].1;
    node.submit_ok(&[register_tx(authority, &patient_victim, Role::Patient)])
        .await;

    // The patient has chosen the doctor, who may then record the patient's
    // organ-donor decision.
    let doctor = keys["doctor"].1.clone();
    node.submit_ok(&[signed(
        &keys["institution"].1,
        kind::CHOSEN_DOCTOR,
        &payload_for(kind::CHOSEN_DOCTOR, &doctor, &victim),
    )])
    .await;

    // A break-glass read about Q (whose records no other kind here is
    // about) for the officer's review to name.
    let glass = node.break_glass(&keys, PATIENT_Q).await;
    // A committed record about no patient, for the officer's redaction to name.
    let erasable = signed(
        &keys["institution"].1,
        kind::EPIDEMIC_REPORT,
        &payload_for(kind::EPIDEMIC_REPORT, &doctor, &victim),
    );
    node.submit_ok(std::slice::from_ref(&erasable)).await;
    // The doctor's prescriptions, for the pharmacy to fill and the doctor
    // to cancel.
    let to_fill = signed(&doctor, kind::PRESCRIPTION, &prescription_payload(0));
    let to_cancel = signed(&doctor, kind::PRESCRIPTION, &prescription_payload(1));
    node.submit_ok(&[to_fill.clone(), to_cancel.clone()]).await;

    let (header, rows) = md_table("kind");
    let expected_columns: Vec<&str> = std::iter::once("kind")
        .chain(Role::ALL.iter().map(|r| r.as_str()))
        .collect();
    assert_eq!(header, expected_columns, "ROLES.md kind table columns");
    let kinds: BTreeSet<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    let submittable = BTreeSet::from(kind::SUBMITTABLE);
    assert_eq!(
        kinds, submittable,
        "ROLES.md must list every submittable kind"
    );

    let mut txs = Vec::new();
    let mut want = Vec::new();
    for row in &rows {
        let k = row[0].as_str();
        let allowed = allowed_roles(k).unwrap_or_else(|| panic!("{k} is not a known kind"));
        for (col, cell) in header.iter().zip(row).skip(1) {
            let (role, key) = &keys[col.as_str()];
            let yes = match cell.as_str() {
                "yes" => true,
                "no" => false,
                other => panic!("ROLES.md {k} × {col}: {other:?} is neither yes nor no"),
            };
            assert_eq!(
                yes,
                allowed.contains(role),
                "ROLES.md {k} × {col} disagrees with roles.rs"
            );
            // The authority registers and revokes patients only.
            let payload = match (*role, k) {
                (Role::PseudonymizationAuthority, kind::REGISTER) => {
                    json!({"key": keys::public_key(&new_key()), "role": "patient",
                           "institution": "Test", "patient": PATIENT_P})
                }
                (Role::PseudonymizationAuthority, kind::REVOKE) => {
                    json!({"key": keys::public_key(&patient_victim), "reason": "test"})
                }
                (_, kind::ACCESS_REVIEW) => review_payload(&glass, &[PATIENT_Q], "justified"),
                (_, kind::REDACTION) => json!({"targets": [id_hex(&erasable)],
                    "basis": "entered-in-error", "reason": "inaccurate"}),
                (_, kind::ERASURE_REQUEST) => json!({"targets": [id_hex(&erasable)],
                    "basis": "gdpr-art-17", "patient": "MFRGGZDFMZTWQ2LKNNWG23TPOA"}),
                (_, kind::DISPENSE) => dispense_payload(&to_fill, 20.0),
                (_, kind::PRESCRIPTION_CANCEL) => {
                    json!({"prescription": id_hex(&to_cancel), "patient": PATIENT_P})
                }
                _ => payload_for(k, &doctor, &victim),
            };
            txs.push(signed(key, k, &payload));
            want.push((k, col.clone(), yes));
        }
    }
    let results = node.submit(&txs).await;
    assert_eq!(results.len(), txs.len());
    // A doctor reads every kind, the organ-donor registry included.
    let reader_token = node.token(&doctor);
    for ((r, tx), (k, col, yes)) in results.iter().zip(&txs).zip(&want) {
        if *yes {
            assert_eq!(r["status"], 200, "{k} from {col}: {r}");
        } else {
            assert_eq!(r["status"], 403, "{k} from {col}: {r}");
            assert_eq!(r["problem"]["code"], "role_not_allowed", "{k} from {col}");
        }
        let uri = format!("/v1/transactions/{}", id_hex(tx));
        let read = node.get(&uri, Some(&reader_token)).await;
        assert_eq!(read.status, if *yes { 200 } else { 404 }, "{k} from {col}");
    }

    // Genesis only ever starts block 0; a kind the ledger does not know is refused.
    let genesis = json!({
        "origin": ORIGIN,
        "admin": keys::public_key(&node.admin),
        "node": keys::public_key(&node.node_key),
        "institution": "Test",
    });
    node.post_json(&wire(&signed(&node.admin, kind::GENESIS, &genesis)))
        .await
        .expect(422, "genesis_not_first");
    node.post_json(&wire(&signed(&keys["doctor"].1, "made.up", &json!({}))))
        .await
        .expect(422, "unknown_kind");
}

// ---- OpenAPI conformance --------------------------------------------------------

#[tokio::test]
async fn openapi_documents_exactly_the_routes_and_every_documented_route_answers() {
    assert_eq!(
        documented_routes(),
        router_routes(),
        "openapi.json paths must be exactly the router's routes"
    );
    let node = start();
    let doctor = node.doctor().await;
    let tx = report(&doctor);
    node.submit_ok(std::slice::from_ref(&tx)).await;
    let token = node.token(&node.admin);
    let authority = new_key();
    node.submit_ok(&[register_tx(
        &node.admin,
        &authority,
        Role::PseudonymizationAuthority,
    )])
    .await;
    let authority_token = node.token(&authority);
    let dpo = new_key();
    node.submit_ok(&[register_tx(&node.admin, &dpo, Role::DataProtectionOfficer)])
        .await;
    let dpo_token = node.token(&dpo);
    node.hold_key(&doctor);
    let doctor_token = node.token(&doctor);
    for (m, template) in documented_routes() {
        let uri = sample_uri(&template, &id_hex(&tx));
        let r = match (m.as_str(), template.as_str()) {
            ("post", "/v1/transactions") => node.post_json(&wire(&report(&doctor))).await,
            ("get", "/v1/cosignature") => node.get(&node.cosignature_uri().await, None).await,
            ("post", "/v1/vitals") => {
                let vitals = signed(
                    &doctor,
                    kind::VITAL_SIGNS,
                    &payload_for(kind::VITAL_SIGNS, &doctor, &doctor),
                );
                node.post_to(&uri, None, serde_json::to_vec(&[wire(&vitals)]).unwrap())
                    .await
            }
            ("get", "/v1/alerts/stream") => {
                node.call_stream(
                    request(Method::GET, &uri, Some(&token))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
            }
            ("get", "/v1/donors/{pseudonym}") => node.get(&uri, Some(&doctor_token)).await,
            ("get", "/v1/patients/{pseudonym}/access-log") | ("get", "/v1/break-glass") => {
                node.get(&uri, Some(&dpo_token)).await
            }
            ("post", "/v1/pseudonyms") => {
                node.post_to(&uri, Some(&authority_token), sample_body(&template))
                    .await
            }
            ("post", "/v1/token") => node.request_token(&doctor, None).await,
            ("post", _) => {
                node.post_to(&uri, Some(&doctor_token), sample_body(&template))
                    .await
            }
            _ => node.get(&uri, Some(&token)).await,
        };
        let created = (m.as_str(), template.as_str()) == ("post", "/fhir/{type}");
        assert_eq!(
            r.status,
            if created { 201 } else { 200 },
            "{m} {uri}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let served = node.get("/openapi.json", None).await;
    assert_eq!(served.text(), OPENAPI);
    assert_eq!(served.content_type(), "application/json");
}

fn walk<'a>(v: &'a Value, f: &mut impl FnMut(&'a Value)) {
    f(v);
    match v {
        Value::Object(o) => o.values().for_each(|x| walk(x, f)),
        Value::Array(a) => a.iter().for_each(|x| walk(x, f)),
        _ => {}
    }
}

#[test]
fn openapi_document_is_consistent() {
    assert_eq!(SPEC["openapi"], "3.1.0");
    // Every $ref resolves.
    walk(&SPEC, &mut |v| {
        if let Some(r) = v.get("$ref").and_then(Value::as_str) {
            spec_ref(r);
        }
    });
    // Every schema uses only keywords the validator checks.
    for (name, s) in SPEC["components"]["schemas"].as_object().unwrap() {
        check_keywords(s, name);
    }
    walk(&SPEC["paths"], &mut |v| {
        if let Some(s) = v.get("schema") {
            check_keywords(s, "paths");
        }
    });
    walk(&SPEC["components"]["responses"], &mut |v| {
        if let Some(s) = v.get("schema") {
            check_keywords(s, "responses");
        }
    });
    let codes: BTreeSet<String> =
        SPEC["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
    // Every admission outcome's code is in the enum.
    let rejections = [
        Rejection::UnknownAuthor,
        Rejection::RevokedAuthor,
        Rejection::RoleNotAllowed {
            role: Role::Doctor,
            kind: String::new(),
        },
        Rejection::UnknownKind(String::new()),
        Rejection::Duplicate,
        Rejection::Stale { max_skew_ms: 0 },
        Rejection::Future { max_skew_ms: 0 },
        Rejection::Schema(String::new()),
        Rejection::BadSignature,
        Rejection::DevicePatient,
        Rejection::NotChosenDoctor,
        Rejection::GenesisNotFirst,
        Rejection::GenesisNotByAdmin,
        Rejection::GenesisInvalid(String::new()),
        Rejection::WrongInstitution {
            institution: String::new(),
        },
        Rejection::DoctorNotEligible {
            institution: String::new(),
        },
        Rejection::BadKey { field: "key" },
        Rejection::AlreadyRegistered,
        Rejection::InstitutionRequired,
        Rejection::PatientBinding(""),
        Rejection::ClusterPlace(String::new()),
        Rejection::NotRegistered,
        Rejection::AlreadyRevoked,
        Rejection::LastNode,
        Rejection::ConsentFormRequired,
        Rejection::NotBreakGlass,
        Rejection::AlreadyReviewed,
        Rejection::ReviewPatients,
        Rejection::RedactionTargetUnknown(String::new()),
        Rejection::RedactionTargetKind {
            id: String::new(),
            kind: String::new(),
        },
        Rejection::AlreadyRedacted(String::new()),
        Rejection::RedactionPatient(String::new()),
        Rejection::RedactedKind(String::new()),
        Rejection::RedactionRequest,
    ];
    for r in rejections {
        assert!(
            codes.contains(r.code()),
            "{} missing from the enum",
            r.code()
        );
        let p = medledger_node::http::submit_problem(&r.clone().into());
        let post = &SPEC["paths"]["/v1/transactions"]["post"]["responses"][p.status.to_string()];
        assert!(
            post["x-codes"]
                .as_array()
                .is_some_and(|c| c.contains(&json!(p.code))),
            "POST /v1/transactions {} does not document {}",
            p.status,
            p.code
        );
    }
    // Every error response is a problem with its codes listed; every code is used.
    let mut used = BTreeSet::new();
    let mut operation_ids = BTreeSet::new();
    for (path, item) in SPEC["paths"].as_object().unwrap() {
        for (m, op) in item.as_object().unwrap() {
            assert!(
                operation_ids.insert(op["operationId"].as_str().unwrap()),
                "duplicate operationId"
            );
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.contains_key("429"),
                "{m} {path}: every route can shed load"
            );
            for (status, resp) in responses {
                let resp = deref(resp);
                if status.starts_with('3') {
                    // A redirect (cluster followers) has no body, only Location.
                    assert!(
                        resp["headers"]["Location"].is_object(),
                        "{m} {path} {status}"
                    );
                    continue;
                }
                let content = resp["content"].as_object().unwrap();
                if status.starts_with('2') {
                    assert!(!content.contains_key("application/problem+json"));
                    continue;
                }
                if path.starts_with("/fhir") && content.contains_key("application/fhir+json") {
                    // FHIR errors are OperationOutcomes, which carry FHIR
                    // issue codes rather than problem codes.
                    assert_eq!(
                        deref(&content["application/fhir+json"]["schema"])["description"]
                            .as_str()
                            .map(|d| d.starts_with("FHIR R4 OperationOutcome")),
                        Some(true),
                        "{m} {path} {status}"
                    );
                    continue;
                }
                if let Some(oauth) = content.get("application/json") {
                    // The token endpoint's OAuth 2.0 errors.
                    assert_eq!(path, "/v1/token", "{m} {path} {status}");
                    assert_eq!(
                        oauth["schema"]["$ref"], "#/components/schemas/OAuthError",
                        "{m} {path} {status}"
                    );
                    let known =
                        &SPEC["components"]["schemas"]["OAuthError"]["properties"]["error"]["enum"];
                    for c in resp["x-oauth-errors"].as_array().expect("x-oauth-errors") {
                        assert!(
                            known.as_array().unwrap().contains(c),
                            "{m} {path} {status}: {c}"
                        );
                    }
                    if !content.contains_key("application/problem+json") {
                        continue;
                    }
                } else {
                    assert_eq!(
                        content.keys().collect::<Vec<_>>(),
                        ["application/problem+json"],
                        "{m} {path} {status}"
                    );
                }
                let xc = resp["x-codes"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{m} {path} {status}: no x-codes"));
                for c in xc {
                    let c = c.as_str().unwrap();
                    assert!(codes.contains(c), "{m} {path} {status}: unknown code {c}");
                    used.insert(c.to_owned());
                }
            }
        }
    }
    let unused: Vec<_> = codes.difference(&used).collect();
    // method_not_allowed belongs to no operation (it answers undocumented methods).
    assert_eq!(
        unused,
        ["method_not_allowed"],
        "codes no response documents"
    );
    // Token-gated operations declare the bearer scheme; public ones do not.
    for (path, item) in SPEC["paths"].as_object().unwrap() {
        for op in item.as_object().unwrap().values() {
            let gated = op["responses"].get("401").is_some_and(|r| {
                let r = deref(r);
                r["x-codes"]
                    .as_array()
                    .is_some_and(|c| c.contains(&json!("unauthorized")))
                    || r["content"].get("application/fhir+json").is_some()
            });
            assert_eq!(op.get("security").is_some(), gated, "{path}: security");
        }
    }
}

/// The document's parameter rules are the handlers' rules: a value the
/// document admits is not refused for its shape, and the other way round.
#[test]
fn openapi_pseudonym_pattern_is_the_nodes_rule() {
    use medledger_health::pseudonym::{is_well_formed, synthetic};
    let re = pattern(
        SPEC["components"]["schemas"]["Pseudonym"]["pattern"]
            .as_str()
            .expect("pattern"),
    );
    let printable: Vec<char> = (' '..='~').collect();
    for n in [0, 1, 7, u64::MAX] {
        let p = synthetic(n);
        assert!(re.is_match(&p) && is_well_formed(&p), "{p}");
        // The last character carries two zero bits: 26 twos are refused.
        for at in [0, 12, 25] {
            for &c in &printable {
                let mut s: Vec<char> = p.chars().collect();
                s[at] = c;
                let s: String = s.into_iter().collect();
                assert_eq!(re.is_match(&s), is_well_formed(&s), "{s:?}");
            }
        }
        for s in [&p[..25], &format!("{p}A")] {
            assert!(!re.is_match(s) && !is_well_formed(s), "{s}");
        }
    }
}

#[test]
fn openapi_day_pattern_admits_exactly_the_days_the_node_reads() {
    use medledger_health::records::is_date;
    let re = pattern(
        SPEC["components"]["schemas"]["Day"]["pattern"]
            .as_str()
            .expect("pattern"),
    );
    for y in [1000, 1899, 1900, 1999, 2000, 2024, 2100, 9999] {
        for m in 0..=13 {
            for d in 0..=32 {
                let s = format!("{y:04}-{m:02}-{d:02}");
                // Past day 28, `format: date` (a real calendar day) decides.
                assert_eq!(re.is_match(&s) && d <= 28, is_date(&s) && d <= 28, "{s}");
                assert!(!is_date(&s) || re.is_match(&s), "{s}");
            }
        }
    }
    for s in [
        "",
        "2024-1-01",
        "2024-01-01T00:00:00Z",
        "+2024-01-01",
        "02024-01-01",
    ] {
        assert!(!re.is_match(s) && !is_date(s), "{s}");
    }
}

#[tokio::test]
async fn query_integers_up_to_u64_max_are_answered_and_larger_ones_are_bad_query() {
    let node = start();
    let doctor = node.doctor().await;
    node.submit_ok(&[report(&doctor)]).await;
    node.hold_key(&doctor);
    let token = node.token(&doctor);
    node.post_to(
        "/fhir/Observation",
        Some(&token),
        observation().to_string().into_bytes(),
    )
    .await
    .expect(201, "");
    let (p, max) = ("MFRGGZDFMZTWQ2LKNNWG23TPOA", u64::MAX);
    // The page after the largest index is empty: it does not wrap to the first.
    let r = node
        .get(
            &format!("/v1/patients/{p}/history?after={max}"),
            Some(&token),
        )
        .await;
    r.expect(200, "");
    assert_eq!(r.json()["records"], json!([]));
    for uri in [
        format!("/fhir/Observation?_offset={max}"),
        format!("/fhir/Patient/{p}/$everything?_offset={max}"),
    ] {
        let r = node.get(&uri, Some(&token)).await;
        r.expect(200, "");
        assert_eq!(r.json()["entry"].as_array().map_or(0, Vec::len), 0, "{uri}");
    }
    node.get(&format!("/v1/blocks/{max}"), None)
        .await
        .expect(404, "not_found");
    // One more does not fit in 64 bits.
    let over = "18446744073709551616";
    node.get(
        &format!("/v1/patients/{p}/history?after={over}"),
        Some(&token),
    )
    .await
    .expect(400, "bad_query");
    node.get(&format!("/v1/blocks/{over}"), None)
        .await
        .expect(400, "bad_query");
}

#[tokio::test]
async fn fhir_writes_over_max_body_bytes_are_413_operation_outcomes() {
    let max = 4096;
    let node = start_with(NodeConfig {
        max_body_bytes: max,
        ..NodeConfig::default()
    });
    let doctor = node.doctor().await;
    node.hold_key(&doctor);
    let token = node.token(&doctor);
    let mut body = observation().to_string().into_bytes();
    body.resize(max + 1, b' ');
    for uri in ["/fhir/Observation", "/fhir"] {
        let r = node.post_to(uri, Some(&token), body.clone()).await;
        assert_eq!(r.status, 413, "{uri}: {}", r.text());
        assert!(r.content_type().starts_with("application/fhir+json"));
        assert_eq!(r.json()["issue"][0]["code"], "too-costly", "{uri}");
    }
}

#[tokio::test]
async fn alerts_refuse_a_malformed_patient_filter() {
    let node = start();
    let token = node.token(&node.admin);
    node.get(
        "/v1/alerts?patient=MFRGGZDFMZTWQ2LKNNWG23TPOA",
        Some(&token),
    )
    .await
    .expect(200, "");
    for bad in [
        "",
        "22222222222222222222222222",
        "mfrggzdfmztwq2lknnwg23tpoa",
        "MFRGGZDFMZTWQ2LKNNWG23TPOB",
    ] {
        node.get(&format!("/v1/alerts?patient={bad}"), Some(&token))
            .await
            .expect(400, "bad_query");
        let stream = request(
            Method::GET,
            &format!("/v1/alerts/stream?patient={bad}"),
            Some(&token),
        );
        node.call_stream(stream.body(Body::empty()).unwrap())
            .await
            .expect(400, "bad_query");
    }
}

// ---- reads ------------------------------------------------------------------

#[tokio::test]
async fn submitted_transaction_reads_back_with_receipts_that_verify_offline() {
    let node = start();
    let doctor = node.doctor().await;
    let token = node.token(&doctor);
    let tx = report(&doctor);
    let posted = node.post_json(&wire(&tx)).await;
    posted.expect(200, "");
    let ack = posted.json();
    assert_eq!(ack["id"], id_hex(&tx));

    let status = node.status().await;
    let verifier = NoteVerifier::parse(status["vkey"].as_str().unwrap()).unwrap();
    let check = |text: &str| {
        let proof = TlogProof::parse(text).expect("receipt parses");
        proof
            .verify(tx.id(), Some(ORIGIN), std::slice::from_ref(&verifier))
            .expect("receipt verifies");
        assert_eq!(proof.index, ack["index"].as_u64().unwrap());
    };
    check(ack["receipt"].as_str().unwrap());

    let read = node
        .get(&format!("/v1/transactions/{}", id_hex(&tx)), Some(&token))
        .await;
    let record = read.json();
    assert_eq!(
        record["transaction"],
        wire(&tx),
        "the payload reads back as sent"
    );
    assert_eq!(record["index"], ack["index"]);
    check(record["receipt"].as_str().unwrap());
    let receipt = node
        .get(&format!("/v1/transactions/{}/receipt", id_hex(&tx)), None)
        .await;
    assert!(receipt.content_type().starts_with("text/plain"));
    check(&receipt.text());
    assert!(
        !receipt.text().contains("MFRGGZDFMZTWQ2LK"),
        "a public receipt never carries the payload"
    );

    let cp = node.get("/v1/checkpoint", None).await.text();
    let checkpoint = Checkpoint::verify_note(
        &Note::parse(&cp).unwrap(),
        Some(ORIGIN),
        std::slice::from_ref(&verifier),
    )
    .unwrap();
    // The reads above were logged, so the log has grown since `status`.
    let status = node.status().await;
    assert_eq!(checkpoint.size, status["log_size"].as_u64().unwrap());

    let block = node
        .get(&format!("/v1/blocks/{}", ack["height"]), None)
        .await
        .json();
    let ids: Vec<&Value> = block["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["id"])
        .collect();
    assert!(ids.contains(&&json!(id_hex(&tx))));
    assert!(
        !block.to_string().contains("MFRGGZDFMZTWQ2LK"),
        "blocks carry no payloads"
    );

    let dir = node.get("/v1/participants", Some(&token)).await.json();
    let me = dir["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["key"] == json!(keys::public_key(&doctor)))
        .expect("the doctor is listed");
    assert_eq!(me["role"], "doctor");
    assert_eq!(me["revoked_at"], Value::Null);

    assert_eq!(node.get("/healthz", None).await.text(), "ok");
    assert_eq!(node.get("/readyz", None).await.text(), "ready");
    let metrics = node.get("/metrics", None).await;
    assert!(metrics.content_type().starts_with("text/plain"));
}

// ---- cosignatures -------------------------------------------------------------

/// The checkpoint note `(ORIGIN, size, root)` carrying one signature `line`.
fn cosigned_note(size: u64, root_hex: &str, line: &str) -> Note {
    let root: [u8; 32] = hex::decode(root_hex)
        .expect("hex root")
        .try_into()
        .expect("32 bytes");
    let text = Checkpoint {
        origin: ORIGIN.into(),
        size,
        root,
        extensions: Vec::new(),
    }
    .to_text();
    Note::parse(&format!("{text}\n{line}")).expect("a signature line")
}

/// Id (hex) of the genesis transaction, which every ledger holds.
async fn genesis_id(node: &Node) -> String {
    let block = node.get("/v1/blocks/0", None).await.json();
    block["transactions"][0]["id"]
        .as_str()
        .expect("genesis id")
        .to_owned()
}

/// A loopback URL nothing listens on.
fn dead_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("http://127.0.0.1:{port}")
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[tokio::test]
async fn cosignature_is_given_only_for_roots_of_the_nodes_own_log() {
    let node = start();
    let root0 = node.status().await["log_root"].as_str().unwrap().to_owned();
    let doctor = new_key();
    // One block of three, so that some sizes fall inside a block.
    node.submit_ok(&[
        register_tx(&node.admin, &doctor, Role::Doctor),
        register_tx(&node.admin, &new_key(), Role::Doctor),
        register_tx(&node.admin, &new_key(), Role::Researcher),
    ])
    .await;
    node.submit_ok(&[report(&doctor)]).await;
    let head = node.status().await;
    let size = head["log_size"].as_u64().unwrap();
    let root = head["log_root"].as_str().unwrap().to_owned();
    let blocks = node.get("/v1/blocks?limit=100", None).await.json();
    let leaves: Vec<[u8; 32]> = blocks["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["transactions"].as_array().unwrap().clone())
        .map(|t| {
            hex::decode(t["id"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect();
    assert_eq!(leaves.len() as u64, size);
    assert_eq!(hex::encode(merkle::root(&leaves)), root);

    let cosigner = node.cosigner().await;
    let key_prefix = &hex::encode(node.node_key.verifying_key().as_bytes())[..16];
    assert_eq!(
        cosigner.name(),
        format!("{ORIGIN}/cosigner/{key_prefix}"),
        "the default cosigner name"
    );
    // Every size the log has had, block boundary or not.
    for n in 1..=size {
        let r = hex::encode(merkle::root(&leaves[..n as usize]));
        let before = now_ms() / 1000;
        let resp = node
            .get(&format!("/v1/cosignature?size={n}&root={r}"), None)
            .await;
        resp.expect(200, "");
        let after = now_ms() / 1000;
        assert!(resp.content_type().starts_with("text/plain"));
        let line = resp.text();
        assert!(
            line.starts_with(&format!("\u{2014} {} ", cosigner.name())) && line.ends_with('\n'),
            "{line:?}"
        );
        let time = cosigner
            .verify(&cosigned_note(n, &r, &line))
            .expect("the line verifies")
            .expect("the line is this node's");
        assert!((before..=after).contains(&time), "POSIX seconds: {time}");
        // Moved onto another checkpoint, the line is a forgery.
        assert!(cosigner.verify(&cosigned_note(n + 1, &r, &line)).is_err());
    }

    let beyond = node
        .get(
            &format!("/v1/cosignature?size={}&root={root}", size + 1),
            None,
        )
        .await;
    beyond.expect(404, "not_yet");
    let conflict = node
        .get(&format!("/v1/cosignature?size={size}&root={root0}"), None)
        .await;
    conflict.expect(409, "split_view");
    let detail = conflict.json()["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.contains(&root) && detail.contains(&root0),
        "both roots: {detail}"
    );
    for q in [
        String::new(),
        format!("?root={root}"),
        format!("?size={size}"),
        format!("?size=0&root={root}"),
        format!("?size=-1&root={root}"),
        format!("?size=x&root={root}"),
        format!("?size={size}&root={}", root.to_uppercase()),
        format!("?size={size}&root={}", &root[..62]),
        format!("?size={size}&root={root}00"),
        format!("?size={size}&root=zz{}", &root[2..]),
        format!("?size={size}&size={size}&root={root}"),
        format!("?size={size}&root=%FF"),
    ] {
        node.get(&format!("/v1/cosignature{q}"), None)
            .await
            .expect(400, "bad_query");
    }
}

#[tokio::test]
async fn cosigned_receipt_adds_the_nodes_cosignature_and_the_plain_one_is_unchanged() {
    let node = start();
    let doctor = node.doctor().await;
    let tx = report(&doctor);
    node.submit_ok(std::slice::from_ref(&tx)).await;
    let uri = format!("/v1/transactions/{}/receipt", id_hex(&tx));
    let plain = node.get(&uri, None).await.text();
    assert_eq!(
        node.get(&format!("{uri}?cosigned=false"), None)
            .await
            .text(),
        plain
    );
    let resp = node.get(&format!("{uri}?cosigned=true"), None).await;
    resp.expect(200, "");
    assert!(resp.content_type().starts_with("text/plain"));
    let cosigned = TlogProof::parse(&resp.text()).expect("receipt parses");
    let plain = TlogProof::parse(&plain).expect("receipt parses");
    let log = NoteVerifier::parse(node.status().await["vkey"].as_str().unwrap()).unwrap();
    cosigned
        .verify(tx.id(), Some(ORIGIN), std::slice::from_ref(&log))
        .expect("the log's signature and the proof still verify");
    // Everything but the added line is the plain receipt.
    assert_eq!(
        (&cosigned.extra, cosigned.index, &cosigned.proof),
        (&plain.extra, plain.index, &plain.proof)
    );
    assert_eq!(cosigned.checkpoint.text, plain.checkpoint.text);
    assert_eq!(cosigned.checkpoint.sigs[..1], plain.checkpoint.sigs[..]);
    assert_eq!(cosigned.checkpoint.sigs.len(), 2);
    let cosigner = node.cosigner().await;
    verify_quorum(&cosigned.checkpoint, std::slice::from_ref(&cosigner), 1)
        .expect("this node's cosignature verifies");
    for q in [
        "?cosigned=yes",
        "?cosigned=",
        "?cosigned=TRUE",
        "?cosigned=true&cosigned=true",
    ] {
        node.get(&format!("{uri}{q}"), None)
            .await
            .expect(400, "bad_query");
    }
}

#[tokio::test]
async fn cosigned_receipt_gathers_agreeing_peers_and_leaves_out_a_peer_with_another_ledger() {
    // A and C hold the same ledger, each with its own registered node key
    // (C copies A's directory); B is another ledger under the same origin.
    let a_dir = tempfile::tempdir().expect("tempdir");
    Ledger::init(a_dir.path(), ORIGIN, "Test").expect("init");
    let admin = read_key_file(&a_dir.path().join("admin.key")).expect("admin key");
    let c_key = new_key();
    let seq = Sequencer::start(
        Ledger::open(a_dir.path()).expect("open"),
        SequencerConfig::default(),
    );
    let outcome = seq
        .enqueue(vec![register_tx(&admin, &c_key, Role::Node)])
        .done()
        .await;
    assert!(outcome.iter().all(Result::is_ok), "{outcome:?}");
    seq.shutdown().expect("shutdown");
    let c_dir = tempfile::tempdir().expect("tempdir");
    copy_dir(a_dir.path(), c_dir.path());
    std::fs::remove_file(c_dir.path().join("node.key")).expect("remove node.key");
    medledger_ledger::write_secret_file(
        &c_dir.path().join("node.key"),
        &keys::encode_key_file(&c_key),
    )
    .expect("write node.key");
    let a = open_node(a_dir, NodeConfig::default());
    let c = open_node(
        c_dir,
        NodeConfig {
            cosigner_name: Some("c.medledger.test/cosigner".into()),
            ..NodeConfig::default()
        },
    );
    // B is as long as A, so it can only disagree.
    let b = start();
    b.submit_ok(&[register_tx(&b.admin, &new_key(), Role::Node)])
        .await;
    let (a_url, b_url, c_url) = (a.listen().await, b.listen().await, c.listen().await);
    let (a_cos, b_cos, c_cos) = (a.cosigner().await, b.cosigner().await, c.cosigner().await);
    assert_eq!(
        c_cos.name(),
        "c.medledger.test/cosigner",
        "cosigner_name is used"
    );

    let head = a.status().await;
    let (size, root) = (&head["log_size"], head["log_root"].as_str().unwrap());
    let uri = format!("/v1/cosignature?size={size}&root={root}");
    c.get(&uri, None).await.expect(200, "");
    let refused = b.get(&uri, None).await;
    refused.expect(409, "split_view");

    // A lists itself too, and a peer that is down: both change nothing.
    *a.peers.write().unwrap() = vec![b_url, c_url, a_url, dead_url()];
    let id = genesis_id(&a).await;
    let resp = a
        .get(
            &format!("/v1/transactions/{id}/receipt?cosigned=true"),
            None,
        )
        .await;
    resp.expect(200, "");
    let proof = TlogProof::parse(&resp.text()).expect("receipt parses");
    let log = NoteVerifier::parse(head["vkey"].as_str().unwrap()).unwrap();
    let id_bytes: [u8; 32] = hex::decode(&id).unwrap().try_into().unwrap();
    proof
        .verify(&id_bytes, Some(ORIGIN), std::slice::from_ref(&log))
        .expect("receipt verifies");
    let names: Vec<&str> = proof
        .checkpoint
        .sigs
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, [ORIGIN, a_cos.name(), c_cos.name()]);
    let all = [a_cos.clone(), b_cos.clone(), c_cos.clone()];
    let ok = verify_quorum(&proof.checkpoint, &all, 2).expect("A and C cosigned");
    assert_eq!(ok.len(), 2);
    assert_eq!(b_cos.verify(&proof.checkpoint).unwrap(), None, "B did not");
    assert!(verify_quorum(&proof.checkpoint, &all, 3).is_err());
}

#[tokio::test(start_paused = true)]
async fn silent_and_unreachable_peers_are_skipped_within_one_peer_timeout() {
    let node = start();
    let id = genesis_id(&node).await;
    // Peers that accept connections and never answer, and one nothing listens on.
    let silent: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let mut peers: Vec<String> = silent
        .iter()
        .map(|l| format!("http://{}", l.local_addr().expect("address")))
        .collect();
    peers.push(dead_url());
    *node.peers.write().unwrap() = peers;
    // Time is paused: it only moves when every task waits on a timer.
    let started = tokio::time::Instant::now();
    let resp = node
        .get(
            &format!("/v1/transactions/{id}/receipt?cosigned=true"),
            None,
        )
        .await;
    let waited = started.elapsed();
    resp.expect(200, "");
    assert!(
        waited <= PEER_TIMEOUT + std::time::Duration::from_millis(100),
        "peers are asked at once, each for at most {PEER_TIMEOUT:?}: waited {waited:?}"
    );
    let proof = TlogProof::parse(&resp.text()).expect("receipt parses");
    assert_eq!(
        proof.checkpoint.sigs.len(),
        2,
        "log signature and own cosignature"
    );
    verify_quorum(&proof.checkpoint, &[node.cosigner().await], 1).expect("own cosignature");
}

// ---- errors -----------------------------------------------------------------

#[tokio::test]
async fn malformed_json_is_400() {
    let node = start();
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let bodies: Vec<Vec<u8>> = vec![
        b"{".to_vec(),
        b"not json".to_vec(),
        Vec::new(),
        b"\xff\xfe\x00".to_vec(),
        b"[1,".to_vec(),
        b"{\"header\":".to_vec(),
        b"{} trailing".to_vec(),
        b"nul".to_vec(),
    ];
    for b in bodies {
        node.post(b, Some("application/json"))
            .await
            .expect(400, "malformed_json");
    }
    // A batch is split without building its items, so deep nesting is only
    // met when the item is read as a transaction: that item is refused.
    let r = node.post(deep.into_bytes(), Some("application/json")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["results"][0]["problem"]["code"],
        "schema_violation"
    );
}

#[tokio::test]
async fn content_type_other_than_json_is_415() {
    let node = start();
    let doctor = node.doctor().await;
    let body = || serde_json::to_vec(&wire(&report(&doctor))).unwrap();
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonp"),
        Some("application/problem+json"),
        Some("multipart/form-data; boundary=x"),
        Some("json"),
        Some(""),
    ] {
        node.post(body(), ct)
            .await
            .expect(415, "unsupported_media_type");
    }
    // A body over the limit is refused at the node's edge, before any
    // route looks at its type.
    node.post(vec![b' '; 20 << 20], Some("text/plain"))
        .await
        .expect(413, "body_too_large");
    for ct in ["application/json; charset=utf-8", "Application/JSON"] {
        node.post(body(), Some(ct)).await.expect(200, "");
    }
}

#[tokio::test]
async fn body_over_max_body_bytes_is_413() {
    let max = 2048;
    let node = start_with(NodeConfig {
        max_body_bytes: max,
        ..NodeConfig::default()
    });
    // Exactly at the limit the body is read (and is not a transaction).
    let mut at_limit = b"{}".to_vec();
    at_limit.resize(max, b' ');
    node.post(at_limit.clone(), Some("application/json"))
        .await
        .expect(422, "schema_violation");
    let mut over = at_limit;
    over.push(b' ');
    node.post(over, Some("application/json"))
        .await
        .expect(413, "body_too_large");
    // A chunked body without Content-Length is cut off the same way.
    let (mut tx, body) = http_body_util::channel::Channel::<axum::body::Bytes>::new(8);
    tokio::spawn(async move {
        for _ in 0..4 {
            if tx.send_data(vec![b' '; 1000].into()).await.is_err() {
                break;
            }
        }
    });
    node.post(Body::new(body), Some("application/json"))
        .await
        .expect(413, "body_too_large");
}

#[tokio::test]
async fn batch_over_max_batch_is_413_and_an_empty_batch_422() {
    let node = start_with(NodeConfig {
        max_batch: 3,
        ..NodeConfig::default()
    });
    let doctor = node.doctor().await;
    let four: Vec<Value> = (0..4).map(|_| wire(&report(&doctor))).collect();
    node.post_json(&Value::Array(four.clone()))
        .await
        .expect(413, "batch_too_large");
    // Nothing of a refused batch is committed.
    let token = node.token(&node.admin);
    for w in &four {
        let uri = format!("/v1/transactions/{}", wire_id(w));
        node.get(&uri, Some(&token)).await.expect(404, "not_found");
    }
    node.post_json(&Value::Array(four[..3].to_vec()))
        .await
        .expect(200, "");
    node.post_json(&json!([]))
        .await
        .expect(422, "schema_violation");
}

#[tokio::test]
async fn schema_violations_are_422() {
    let node = start();
    let doctor = node.doctor().await;
    let good = wire(&report(&doctor));
    let with = |f: &dyn Fn(&mut Value)| {
        let mut w = good.clone();
        f(&mut w);
        w
    };
    let cases = vec![
        json!(42),
        json!("transaction"),
        json!(null),
        json!({}),
        json!({"header": {}}),
        with(&|w| w["extra"] = json!(1)),
        with(&|w| {
            w.as_object_mut().unwrap().remove("salt");
        }),
        with(&|w| w["payload"] = json!(["not", "an", "object"])),
        with(&|w| w["payload"]["anamnesis"] = json!("changed after signing")),
        with(&|w| w["payload"]["big"] = json!(1u64 << 60)),
        with(&|w| w["signature"] = json!(w["signature"].as_str().unwrap().to_uppercase())),
        with(&|w| w["salt"] = json!("00")),
        with(&|w| w["header"]["v"] = json!(2)),
        with(&|w| w["header"]["kind"] = json!("Medical Report")),
        with(&|w| w["header"]["time"] = json!(1u64 << 60)),
        with(&|w| w["header"]["time"] = json!(-1)),
        with(&|w| w["header"]["author"] = json!("zz")),
    ];
    for (i, c) in cases.iter().enumerate() {
        let r = node.post_json(c).await;
        assert_eq!(
            (r.status, r.code()),
            (422, "schema_violation".to_owned()),
            "case {i}: {c}"
        );
    }
    node.post_json(&wire(&signed(&doctor, "no_such_kind", &json!({}))))
        .await
        .expect(422, "unknown_kind");
}

#[tokio::test]
async fn bad_signature_is_401() {
    let node = start();
    let doctor = node.doctor().await;
    let token = node.token(&node.admin);
    let tx = report(&doctor);
    let flipped = bad_signature(&tx);
    let zeros = {
        let mut w = wire(&tx);
        w["signature"] = json!("0".repeat(128));
        w
    };
    // Signed by the doctor but claiming the admin as author.
    let forged = {
        let mut w = wire(&tx);
        w["header"]["author"] = json!(keys::public_key(&node.admin));
        w
    };
    for w in [&flipped, &zeros, &forged] {
        node.post_json(w).await.expect(401, "bad_signature");
        let uri = format!("/v1/transactions/{}", wire_id(w));
        node.get(&uri, Some(&token)).await.expect(404, "not_found");
    }
    // The untouched original is still fresh.
    node.post_json(&wire(&tx)).await.expect(200, "");
}

#[tokio::test]
async fn unknown_revoked_and_unauthorized_authors_are_403() {
    let node = start();
    let doctor = new_key();
    let researcher = new_key();
    node.submit_ok(&[
        register_tx(&node.admin, &doctor, Role::Doctor),
        register_tx(&node.admin, &researcher, Role::Researcher),
    ])
    .await;
    node.post_json(&wire(&report(&new_key())))
        .await
        .expect(403, "unknown_author");
    node.post_json(&wire(&report(&researcher)))
        .await
        .expect(403, "role_not_allowed");
    node.post_json(&wire(&report(&doctor)))
        .await
        .expect(200, "");
    node.submit_ok(&[revoke_tx(&node.admin, &doctor)]).await;
    node.post_json(&wire(&report(&doctor)))
        .await
        .expect(403, "revoked_author");
}

#[tokio::test]
async fn replayed_transaction_is_409_duplicate() {
    let node = start();
    let doctor = node.doctor().await;
    let tx = report(&doctor);
    let first = node.post_json(&wire(&tx)).await;
    first.expect(200, "");
    node.post_json(&wire(&tx)).await.expect(409, "duplicate");
    // Twice in one batch: the first is committed, the second is the duplicate.
    let again = report(&doctor);
    let results = node
        .submit(&[again.clone(), again.clone(), tx.clone()])
        .await;
    let statuses: Vec<&Value> = results.iter().map(|r| &r["status"]).collect();
    assert_eq!(statuses, [&json!(200), &json!(409), &json!(409)]);
    let size = node.status().await["log_size"].as_u64().unwrap();
    assert_eq!(size, 1 + 1 + 2, "genesis, registration, two reports");
}

#[tokio::test]
async fn times_outside_the_skew_are_422() {
    let node = start();
    let doctor = node.doctor().await;
    let p = report_payload();
    let margin = 60_000;
    node.post_json(&wire(&signed_at(
        &doctor,
        kind::MEDICAL_REPORT,
        now_ms() - DEFAULT_MAX_SKEW_MS - margin,
        &p,
    )))
    .await
    .expect(422, "stale_time");
    node.post_json(&wire(&signed_at(
        &doctor,
        kind::MEDICAL_REPORT,
        now_ms() + DEFAULT_MAX_SKEW_MS + margin,
        &p,
    )))
    .await
    .expect(422, "future_time");
    node.post_json(&wire(&signed_at(
        &doctor,
        kind::MEDICAL_REPORT,
        now_ms() - DEFAULT_MAX_SKEW_MS + margin,
        &p,
    )))
    .await
    .expect(200, "");
}

#[tokio::test]
async fn batch_items_are_judged_each_on_their_own() {
    let node = start();
    let doctor = node.doctor().await;
    let token = node.token(&doctor);
    let good = report(&doctor);
    let also_good = report(&doctor);
    let stranger = report(&new_key());
    let stale = signed_at(
        &doctor,
        kind::MEDICAL_REPORT,
        now_ms() - 2 * DEFAULT_MAX_SKEW_MS,
        &report_payload(),
    );
    let forged = bad_signature(&report(&doctor));
    let items = json!([
        wire(&good),
        forged,
        wire(&good),
        {"header": 1},
        wire(&stranger),
        wire(&also_good),
        wire(&stale),
        42,
        wire(&signed(&doctor, "no_such_kind", &json!({}))),
    ]);
    let r = node.post_json(&items).await;
    r.expect(200, "");
    let results = r.json()["results"].as_array().unwrap().clone();
    let got: Vec<(u64, &str)> = results
        .iter()
        .map(|r| {
            (
                r["status"].as_u64().unwrap(),
                r["problem"]["code"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (200, ""),
            (401, "bad_signature"),
            (409, "duplicate"),
            (422, "schema_violation"),
            (403, "unknown_author"),
            (200, ""),
            (422, "stale_time"),
            (422, "schema_violation"),
            (422, "unknown_kind"),
        ]
    );
    for (tx, want) in [
        (&good, 200),
        (&also_good, 200),
        (&stranger, 404),
        (&stale, 404),
    ] {
        let uri = format!("/v1/transactions/{}", id_hex(tx));
        assert_eq!(node.get(&uri, Some(&token)).await.status, want);
    }
    assert_eq!(results[0]["id"], id_hex(&good));
    assert_eq!(
        results[5]["index"].as_u64(),
        results[0]["index"].as_u64().map(|i| i + 1)
    );
}

#[tokio::test]
async fn bad_ids_are_400_and_unknown_ids_404() {
    let node = start();
    let token = node.token(&node.admin);
    let bad = [
        "xyz".to_owned(),
        "0".repeat(63),
        "0".repeat(65),
        "A".repeat(64),
        format!("{}g", "0".repeat(63)),
        "%FF".to_owned(),
        "%2F".to_owned(),
        "%00".to_owned(),
        "%20".repeat(64),
    ];
    for id in &bad {
        for t in [None, Some(token.as_str())] {
            // The id is judged before the token.
            node.get(&format!("/v1/transactions/{id}"), t)
                .await
                .expect(400, "bad_id");
            node.get(&format!("/v1/transactions/{id}/receipt"), t)
                .await
                .expect(400, "bad_id");
        }
    }
    let unknown = "0".repeat(64);
    node.get(&format!("/v1/transactions/{unknown}"), Some(&token))
        .await
        .expect(404, "not_found");
    node.get(&format!("/v1/transactions/{unknown}/receipt"), None)
        .await
        .expect(404, "not_found");
    // Without a token the record endpoint does not reveal whether an id exists.
    node.get(&format!("/v1/transactions/{unknown}"), None)
        .await
        .expect(401, "unauthorized");
}

#[tokio::test]
async fn proof_and_block_queries_validate_their_parameters() {
    let node = start();
    let doctor = node.doctor().await;
    node.submit_ok(&[report(&doctor)]).await;
    let size = node.status().await["log_size"].as_u64().unwrap();
    assert_eq!(size, 3);
    for q in [
        "".to_owned(),
        "?to=2".to_owned(),
        "?from=0".to_owned(),
        "?from=".to_owned(),
        "?from=abc".to_owned(),
        "?from=-1".to_owned(),
        "?from=1.5".to_owned(),
        "?from=18446744073709551616".to_owned(),
        "?from=2&to=1".to_owned(),
        format!("?from=1&to={}", size + 1),
        format!("?from={}", size + 1),
        "?from=1&from=2".to_owned(),
        "?from=1&to=x".to_owned(),
        "?from=%FF".to_owned(),
    ] {
        node.get(&format!("/v1/proofs/consistency{q}"), None)
            .await
            .expect(400, "bad_query");
    }
    let p = node.get("/v1/proofs/consistency?from=1", None).await.json();
    assert_eq!(
        (p["from"].as_u64(), p["to"].as_u64()),
        (Some(1), Some(size))
    );
    let same = node
        .get(
            &format!("/v1/proofs/consistency?from={size}&to={size}"),
            None,
        )
        .await
        .json();
    assert_eq!(same["proof"], json!([]));
    node.get("/v1/proofs/consistency?from=1&unknown=1", None)
        .await
        .expect(200, "");

    for q in ["?from=abc", "?limit=-1", "?limit=x", "?from=1&from=1"] {
        node.get(&format!("/v1/blocks{q}"), None)
            .await
            .expect(400, "bad_query");
    }
    let page = node.get("/v1/blocks?limit=0", None).await.json();
    assert_eq!(
        page["blocks"].as_array().unwrap().len(),
        1,
        "limit is clamped to 1"
    );
    assert_eq!(page["next"], 1);
    let all = node.get("/v1/blocks?limit=1000", None).await.json();
    assert_eq!(all["blocks"].as_array().unwrap().len(), 3);
    assert_eq!(all["next"], Value::Null);
    let past = node.get("/v1/blocks?from=99", None).await.json();
    assert_eq!(past, json!({"blocks": [], "next": null}));
    for h in ["abc", "-1", "1.0", "18446744073709551616", "%FF"] {
        node.get(&format!("/v1/blocks/{h}"), None)
            .await
            .expect(400, "bad_query");
    }
    node.get("/v1/blocks/3", None)
        .await
        .expect(404, "not_found");
    node.get(&format!("/v1/blocks/{}", u64::MAX), None)
        .await
        .expect(404, "not_found");
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405_problems() {
    let node = start();
    for p in [
        "/v1",
        "/v1/",
        "/dashboard/",
        "/dashboard/secret.key",
        "/dashboard/../admin.key",
        "/v2/status",
        "/v1/transactions/",
        "/v1/status/x",
        "/healthz/",
    ] {
        node.get(p, None).await.expect(404, "not_found");
    }
    for (m, p) in [
        (Method::GET, "/v1/transactions"),
        (Method::PUT, "/v1/transactions"),
        (Method::POST, "/v1/status"),
        (Method::DELETE, "/v1/transactions/00"),
        (Method::PATCH, "/v1/participants"),
        (Method::OPTIONS, "/healthz"),
    ] {
        let r = node
            .call(
                Request::builder()
                    .method(m.clone())
                    .uri(p)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, 405, "{m} {p}");
    }
}

/// Holds a request inside the router (its body never arrives).
async fn hold(
    node: &Node,
) -> (
    http_body_util::channel::Sender<axum::body::Bytes>,
    std::pin::Pin<
        Box<impl Future<Output = Result<axum::response::Response, std::convert::Infallible>>>,
    >,
) {
    let (sender, body) = http_body_util::channel::Channel::<axum::body::Bytes>::new(1);
    let req = Request::post("/v1/transactions")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::new(body))
        .unwrap();
    let mut fut = Box::pin(node.app.clone().oneshot(req));
    // One poll parks it on the body.
    std::future::poll_fn(|cx| {
        assert!(
            fut.as_mut().poll(cx).is_pending(),
            "the held request must wait"
        );
        Poll::Ready(())
    })
    .await;
    (sender, fut)
}

#[tokio::test]
async fn a_spent_write_budget_sheds_writes_while_reads_are_served() {
    let node = start_with(NodeConfig {
        max_concurrency: 1,
        ..NodeConfig::default()
    });
    let doctor = node.doctor().await;
    // Every write permit taken, as by writes waiting for their commit.
    let held = node.budgets.writes.clone().try_acquire_owned().unwrap();
    node.post_json(&wire(&report(&doctor)))
        .await
        .expect(429, "too_many_requests");
    // Reads of checkpoints, proofs and status go on.
    for uri in ["/healthz", "/v1/status", "/v1/checkpoint", "/nope"] {
        let r = node.get(uri, None).await;
        assert_ne!(r.status, 429, "{uri} must not be shed by writes");
    }
    drop(held);
    node.post_json(&wire(&report(&doctor)))
        .await
        .expect(200, "");
    // And the other way round: a spent read budget sheds reads only.
    let held = node.budgets.reads.clone().try_acquire_owned().unwrap();
    for uri in ["/healthz", "/v1/status", "/v1/checkpoint", "/nope"] {
        node.get(uri, None).await.expect(429, "too_many_requests");
    }
    node.post_json(&wire(&report(&doctor)))
        .await
        .expect(200, "");
    drop(held);
    node.get("/healthz", None).await.expect(200, "");
}

#[tokio::test(start_paused = true)]
async fn a_body_that_never_arrives_is_408_and_holds_no_permit() {
    let node = start_with(NodeConfig {
        max_concurrency: 1,
        ..NodeConfig::default()
    });
    let (_sender, held) = hold(&node).await;
    // The held request waits for its body outside the budget: the one
    // write permit is still free.
    assert_eq!(node.budgets.writes.available_permits(), 1);
    // Time is paused: the runtime jumps to the body deadline once idle.
    let resp = held.await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    let r = Resp {
        status,
        headers,
        body,
    };
    conform(&Method::POST, "/v1/transactions", &r);
    r.expect(408, "body_timeout");
}

#[tokio::test(start_paused = true)]
async fn a_content_length_over_the_limit_is_413_before_any_body_arrives() {
    let node = start_with(NodeConfig {
        max_body_bytes: 1000,
        ..NodeConfig::default()
    });
    let (_sender, body) = http_body_util::channel::Channel::<axum::body::Bytes>::new(1);
    let req = Request::post("/v1/transactions")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, "10000000000")
        .body(Body::new(body))
        .unwrap();
    let started = tokio::time::Instant::now();
    let resp = node.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        started.elapsed(),
        std::time::Duration::ZERO,
        "answered without waiting (paused time moves only when every task waits)"
    );
}

/// SplitMix64, seeded: the same "random" inputs on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[tokio::test]
async fn no_client_input_yields_a_server_error() {
    let node = start();
    let doctor = node.doctor().await;
    let token = node.token(&doctor);
    let mut rng = Rng(0x6d65_646c_6564_6765);
    let good = serde_json::to_string(&wire(&report(&doctor))).unwrap();
    let alphabet: Vec<char> = "{}[]\":,0123456789abcdefABCDEF-+.eE \\/ntrufl\u{0}\u{7f}é€"
        .chars()
        .collect();
    // Mutated transactions, alone and in batches: each is refused or committed, never a 5xx.
    for i in 0..150 {
        let mut chars: Vec<char> = good.chars().collect();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(chars.len());
            match rng.below(3) {
                0 => chars[at] = alphabet[rng.below(alphabet.len())],
                1 => {
                    chars.remove(at);
                }
                _ => chars.insert(at, alphabet[rng.below(alphabet.len())]),
            }
        }
        let text: String = chars.into_iter().collect();
        let body = if i % 3 == 0 {
            format!("[{text},{good}]")
        } else {
            text
        };
        let r = node.post(body, Some("application/json")).await;
        assert!(r.status < 500, "{}", r.text());
    }
    // Random bytes.
    for _ in 0..50 {
        let len = rng.below(300);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let r = node.post(bytes, Some("application/json")).await;
        assert!(r.status < 500);
    }
    // Odd paths and queries on every route.
    let pieces = [
        "%", "%0", "%zz", "%FF", "%C3%28", "..", "a b", "\u{e9}", "%2e%2e", "0x10", "1e3", "~", "",
    ];
    for (_, template) in documented_routes() {
        for _ in 0..8 {
            let piece = pieces[rng.below(pieces.len())];
            let path = template
                .replace("{id}", &format!("{}{piece}", "0".repeat(rng.below(70))))
                .replace("{height}", piece);
            let query = format!(
                "?from={}&to={}&limit={}",
                pieces[rng.below(pieces.len())],
                rng.next(),
                piece
            );
            let uri = format!("{path}{query}")
                .replace(' ', "%20")
                .replace('\u{e9}', "%C3%A9");
            let Ok(req) = request(Method::GET, &uri, Some(&token)).body(Body::empty()) else {
                continue;
            };
            let r = if template == "/v1/alerts/stream" {
                node.call_stream(req).await
            } else {
                node.call(req).await
            };
            assert!(r.status < 500, "GET {uri}: {}", r.text());
        }
    }
    assert_eq!(node.get("/readyz", None).await.text(), "ready");
}

// ---- patients ---------------------------------------------------------------

/// A concrete URI for a route template: ids of what `report()` committed.
fn sample_uri(template: &str, id: &str) -> String {
    template
        .replace(
            "/fhir/{type}/{id}",
            "/fhir/Patient/MFRGGZDFMZTWQ2LKNNWG23TPOA",
        )
        .replace("{type}", "Observation")
        .replace("{id}", id)
        .replace("{height}", "1")
        .replace("{asset}", "app.js")
        .replace("{pseudonym}", "MFRGGZDFMZTWQ2LKNNWG23TPOA")
        .replace("/v1/proofs/consistency", "/v1/proofs/consistency?from=1")
}

/// A heart-rate Observation about the sample patient.
fn observation() -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": "Patient/MFRGGZDFMZTWQ2LKNNWG23TPOA"},
        "effectiveDateTime": "2026-11-24T09:00:00Z",
        "valueQuantity": {"value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}
    })
}

/// A valid body for a POST route.
fn sample_body(template: &str) -> Vec<u8> {
    let v = match template {
        "/v1/pseudonyms" => json!({"identifiers": ["12345678901"]}),
        "/fhir/{type}" => observation(),
        "/fhir" => json!({
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"resource": observation(), "request": {"method": "POST", "url": "Observation"}}]
        }),
        other => panic!("no sample body for POST {other}"),
    };
    v.to_string().into_bytes()
}

fn report_for(patient: &str, visit: u64) -> Value {
    let mut p = report_payload();
    p["patient"] = json!(patient);
    p["anamnesis"] = json!(format!("visit {visit}"));
    p
}

impl Node {
    async fn post_to(&self, uri: &str, token: Option<&str>, body: Vec<u8>) -> Resp {
        let b = request(Method::POST, uri, token).header(header::CONTENT_TYPE, "application/json");
        self.call(b.body(Body::from(body)).unwrap()).await
    }
}

#[tokio::test]
async fn pseudonyms_are_keyed_deterministic_and_never_echo_the_input() {
    let node = start();
    let authority = new_key();
    let doctor = new_key();
    node.submit_ok(&[
        register_tx(&node.admin, &authority, Role::PseudonymizationAuthority),
        register_tx(&node.admin, &doctor, Role::Doctor),
    ])
    .await;
    let token = node.token(&authority);
    let ids = ["12345678901", "0101990710008", "0101990710009", "98-76"];
    let r = node
        .post_to(
            "/v1/pseudonyms",
            Some(&token),
            json!({ "identifiers": ids }).to_string().into_bytes(),
        )
        .await;
    r.expect(200, "");
    let out = r.json()["pseudonyms"].clone();
    let key = PseudonymKey::from_bytes(&PSEUDONYM_KEY).unwrap();
    let other = PseudonymKey::from_bytes(&[8; 32]).unwrap();
    for i in 0..2 {
        let id = Identifier::parse(ids[i]).unwrap();
        assert_eq!(
            out[i]["pseudonym"],
            key.pseudonym(&id),
            "same key, same pseudonym"
        );
        assert_ne!(
            out[i]["pseudonym"],
            other.pseudonym(&id),
            "another deployment differs"
        );
    }
    assert_eq!(
        out[2]["error"], "invalid_identifier",
        "bad JMBG check digit"
    );
    assert_eq!(out[3]["error"], "invalid_identifier");
    for id in ids {
        assert!(!r.text().contains(id), "the response holds no identifier");
    }

    // Malformed bodies are refused without quoting them.
    let r = node
        .post_to(
            "/v1/pseudonyms",
            Some(&token),
            b"{\"identifiers\": [0101990710008]}".to_vec(),
        )
        .await;
    r.expect(400, "malformed_json");
    assert!(!r.text().contains("101990710008"));
    let many = vec!["12345678901"; 10_001];
    node.post_to(
        "/v1/pseudonyms",
        Some(&token),
        json!({ "identifiers": many }).to_string().into_bytes(),
    )
    .await
    .expect(413, "batch_too_large");
    // Only the authority may ask.
    node.post_to(
        "/v1/pseudonyms",
        Some(&node.token(&doctor)),
        json!({"identifiers": []}).to_string().into_bytes(),
    )
    .await
    .expect(403, "forbidden");
}

#[tokio::test]
async fn a_report_with_an_identifier_is_refused_naming_field_and_kind_only() {
    let node = start();
    let doctor = node.doctor().await;
    for (field, value, kind) in [
        ("anamnesis", "JMBG 0101990710008, febrilan", "jmbg"),
        ("findings", "javiti se na pera.peric@example.rs", "email"),
        ("therapy", "kontakt +381 64 123 4567", "phone"),
        ("anamnesis", "LBO: 12345678901", "lbo"),
        ("patient", "0101990710008", "jmbg"),
        ("patient", "PATIENT-7", "malformed_pseudonym"),
    ] {
        let mut p = report_payload();
        p[field] = json!(value);
        let r = node
            .post_json(&wire(&signed(&doctor, kind::MEDICAL_REPORT, &p)))
            .await;
        r.expect(422, "pii_detected");
        let body = r.json();
        assert_eq!(body["field"], format!("/{field}"), "{value}");
        assert_eq!(body["identifier"], kind, "{value}");
        assert!(!r.text().contains(value), "the value is never echoed");
    }
    // A report from another institution than the doctor's is refused too.
    let mut p = report_payload();
    p["institution"] = json!("Elsewhere");
    node.post_json(&wire(&signed(&doctor, kind::MEDICAL_REPORT, &p)))
        .await
        .expect(422, "wrong_institution");
}

#[tokio::test]
async fn history_lists_a_patients_records_with_receipts_as_of_any_checkpoint() {
    let node = start();
    let doctor = new_key();
    let device = new_key();
    node.submit_ok(&[
        register_tx(&node.admin, &doctor, Role::Doctor),
        register_tx(&node.admin, &device, Role::Device),
    ])
    .await;
    let token = node.token(&doctor);
    let p = "MFRGGZDFMZTWQ2LKNNWG23TPOA";
    let other = medledger_health::pseudonym::synthetic(1);
    node.submit_ok(&[
        signed(&doctor, kind::MEDICAL_REPORT, &report_for(p, 1)),
        signed(&doctor, kind::MEDICAL_REPORT, &report_for(&other, 9)),
    ])
    .await;
    let first_size = node.status().await["log_size"].as_u64().unwrap();
    node.submit_ok(&[signed(&doctor, kind::MEDICAL_REPORT, &report_for(p, 2))])
        .await;

    let status = node.status().await;
    let verifier = NoteVerifier::parse(status["vkey"].as_str().unwrap()).unwrap();
    let check = |h: &Value, want: &[&str]| {
        let records = h["records"].as_array().unwrap();
        let visits: Vec<&str> = records
            .iter()
            .map(|r| r["payload"]["anamnesis"].as_str().unwrap())
            .collect();
        assert_eq!(visits, want);
        for r in records {
            let proof = TlogProof::parse(r["receipt"].as_str().unwrap()).unwrap();
            let id = Hex32Bytes::<32>::parse_hex(r["id"].as_str().unwrap()).unwrap();
            proof
                .verify(&id.0, Some(ORIGIN), std::slice::from_ref(&verifier))
                .expect("receipt verifies");
            assert_eq!(proof.checkpoint.render(), h["checkpoint"].as_str().unwrap());
        }
    };
    let uri = format!("/v1/patients/{p}/history");
    let h = node.get(&uri, Some(&token)).await;
    h.expect(200, "");
    let h = h.json();
    check(&h, &["visit 1", "visit 2"]);
    assert_eq!(h["as_of"], status["log_size"]);
    assert_eq!(h["next_after"], Value::Null);

    let old = node
        .get(&format!("{uri}?as_of={first_size}"), Some(&token))
        .await
        .json();
    check(&old, &["visit 1"]);
    let cp = Checkpoint::from_text(
        &Note::parse(old["checkpoint"].as_str().unwrap())
            .unwrap()
            .text,
    )
    .unwrap();
    assert_eq!(cp.size, first_size);

    let page = node
        .get(&format!("{uri}?limit=1"), Some(&token))
        .await
        .json();
    check(&page, &["visit 1"]);
    let after = page["next_after"].as_u64().expect("a next page");
    let rest = node
        .get(&format!("{uri}?limit=1&after={after}"), Some(&token))
        .await
        .json();
    check(&rest, &["visit 2"]);

    // Inside a block there is no checkpoint; beyond the log there is nothing.
    node.get(&format!("{uri}?as_of={}", first_size - 1), Some(&token))
        .await
        .expect(404, "not_found");
    node.get(&format!("{uri}?as_of={}", first_size + 100), Some(&token))
        .await
        .expect(400, "bad_query");
    node.get(
        "/v1/patients/P0000000000000000000000001/history",
        Some(&token),
    )
    .await
    .expect(400, "bad_pseudonym");
    node.get(&uri, Some(&node.token(&device)))
        .await
        .expect(403, "forbidden");
    node.get(&uri, None).await.expect(401, "unauthorized");
}

// ---- FHIR -------------------------------------------------------------------

#[tokio::test]
async fn fhir_transactions_are_all_or_nothing_batches_are_not_and_errors_are_outcomes() {
    let node = start();
    let integration = new_key();
    node.submit_ok(&[register_tx(&node.admin, &integration, Role::Institution)])
        .await;
    node.hold_key(&integration);
    let token = node.token(&integration);
    let size = || async { node.status().await["log_size"].as_u64().unwrap() };
    let mut bad_unit = observation();
    bad_unit["valueQuantity"]["code"] = json!("bpm");
    let entry =
        |r: &Value| json!({"resource": r, "request": {"method": "POST", "url": "Observation"}});
    let bundle = |kind: &str| {
        json!({"resourceType": "Bundle", "type": kind, "entry": [entry(&observation()), entry(&bad_unit)]})
            .to_string()
            .into_bytes()
    };

    let before = size().await;
    let r = node
        .post_to("/fhir", Some(&token), bundle("transaction"))
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let o = r.json();
    assert_eq!(o["issue"][0]["code"], "value");
    assert!(
        o["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .starts_with("entry 1")
    );
    assert_eq!(
        size().await,
        before,
        "nothing of a failed transaction is written"
    );

    let r = node.post_to("/fhir", Some(&token), bundle("batch")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let b = r.json();
    assert_eq!(b["type"], "batch-response");
    assert!(
        b["entry"][0]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("201")
    );
    assert!(
        b["entry"][1]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("422")
    );
    assert_eq!(size().await, before + 1, "a batch keeps its good entries");

    // Each kind of failure has its status and issue code.
    let mut unknown_code = observation();
    unknown_code["code"]["coding"][0]["code"] = json!("2951-2");
    let named = json!({"resourceType": "Patient", "name": [{"family": "Petrović"}]});
    for (uri, body, status, code) in [
        ("/fhir/Observation", b"{not json".to_vec(), 400, "structure"),
        (
            "/fhir/Condition",
            observation().to_string().into_bytes(),
            400,
            "invalid",
        ),
        (
            "/fhir/Observation",
            unknown_code.to_string().into_bytes(),
            422,
            "code-invalid",
        ),
        (
            "/fhir/Patient",
            named.to_string().into_bytes(),
            422,
            "security",
        ),
    ] {
        let r = node.post_to(uri, Some(&token), body).await;
        assert_eq!(
            (r.status, r.json()["issue"][0]["code"].clone()),
            (status, json!(code)),
            "{uri}: {}",
            r.text()
        );
        assert!(!r.text().contains("Petrović"), "values are not echoed");
    }

    // Created resources read back and page through searches.
    let mut ids = Vec::new();
    for day in ["2026-11-20", "2026-11-21", "2026-11-22"] {
        let mut o = observation();
        o["effectiveDateTime"] = json!(format!("{day}T08:00:00Z"));
        let r = node
            .post_to(
                "/fhir/Observation",
                Some(&token),
                o.to_string().into_bytes(),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let id = r.json()["id"].as_str().unwrap().to_owned();
        let read = node
            .get(&format!("/fhir/Observation/{id}"), Some(&token))
            .await;
        assert_eq!(read.json()["effectiveDateTime"], o["effectiveDateTime"]);
        ids.push(id);
    }
    let mut uri = "/fhir/Observation?subject=Patient/MFRGGZDFMZTWQ2LKNNWG23TPOA&date=ge2026-11-20&date=le2026-11-22&_count=2".to_owned();
    let mut found = Vec::new();
    loop {
        let page = node.get(&uri, Some(&token)).await.json();
        for e in page["entry"].as_array().into_iter().flatten() {
            found.push(e["resource"]["id"].as_str().unwrap().to_owned());
        }
        let next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next");
        match next {
            Some(l) => {
                uri = l["url"]
                    .as_str()
                    .unwrap()
                    .split_once("/fhir")
                    .unwrap()
                    .1
                    .to_owned()
            }
            None => break,
        }
        uri.insert_str(0, "/fhir");
    }
    assert_eq!(
        found, ids,
        "the three dated observations, in order, over two pages"
    );
    let none = node
        .get(
            "/fhir/Observation?subject=Patient/MFRGGZDFMZTWQ2LKNNWG23TPOA&date=lt2026-01-01",
            Some(&token),
        )
        .await
        .json();
    assert!(none.get("entry").is_none());
    let r = node.get("/fhir/Observation?bogus=1", Some(&token)).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["issue"][0]["code"],
        "not-supported",
        "unknown parameters are refused"
    );
}

// ---- smart-health services -----------------------------------------------------

/// Registers `key` with `role` at `institution`.
fn register_at(admin: &SigningKey, key: &SigningKey, role: Role, institution: &str) -> Transaction {
    let p = json!({"key": keys::public_key(key), "role": role, "institution": institution, "label": role.as_str()});
    signed(admin, kind::REGISTER, &p)
}

impl Node {
    /// Waits until the node's views have read the whole log.
    async fn views_caught_up(&self, token: &str) {
        let size = self.status().await["log_size"].as_u64().unwrap();
        for _ in 0..500 {
            let a = self.get("/v1/alerts?limit=1", Some(token)).await.json();
            if a["as_of"].as_u64().unwrap() >= size {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("views did not reach log size {size}");
    }
}

fn epidemic(date: &str, region: &str, disease: &str, new_cases: u64) -> Value {
    json!({"date": date, "region": region, "disease": disease, "new_cases": new_cases,
        "hospitalised": new_cases / 2, "on_respirator": 0, "deaths": 0})
}

/// Entries of one published measure by their coordinates.
fn entries(published: &Value) -> BTreeMap<Vec<Option<String>>, (Option<u64>, String)> {
    published["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            let coords = e["coordinates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().map(str::to_owned))
                .collect();
            (
                coords,
                (
                    e["value"].as_u64(),
                    e["status"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

#[tokio::test]
async fn epidemic_statistics_apply_corrections_and_suppress_small_cells() {
    let node = start();
    let (nis, bg, admin) = (new_key(), new_key(), node.admin.clone());
    node.submit_ok(&[
        register_at(&admin, &nis, Role::Institution, "KC Nis"),
        register_at(&admin, &bg, Role::PublicHealth, "Institut Batut"),
    ])
    .await;
    // Truth: (region, disease) → new cases, summed over reporters and days.
    let mut truth: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut txs = Vec::new();
    let reports = [
        (&nis, "2026-11-20", "Nisavski", "U07.1", 40),
        (&nis, "2026-11-21", "Nisavski", "U07.1", 35),
        (&nis, "2026-11-20", "Nisavski", "J10.1", 2),
        (&nis, "2026-11-20", "Toplicki", "U07.1", 12),
        (&nis, "2026-11-20", "Toplicki", "J10.1", 9),
        (&bg, "2026-11-20", "Beograd", "U07.1", 120),
        (&bg, "2026-11-20", "Beograd", "J10.1", 3),
        (&bg, "2026-11-20", "Nisavski", "U07.1", 6),
    ];
    for (who, date, region, disease, n) in reports {
        txs.push(signed(
            who,
            kind::EPIDEMIC_REPORT,
            &epidemic(date, region, disease, n),
        ));
        *truth.entry((region.into(), disease.into())).or_default() += n;
    }
    node.submit_ok(&txs).await;
    // A correction from the same institution for the same day, region and
    // disease supersedes the first report (40 → 44); another institution's
    // report for the same cell is its own.
    node.submit_ok(&[signed(
        &nis,
        kind::EPIDEMIC_REPORT,
        &epidemic("2026-11-20", "Nisavski", "U07.1", 44),
    )])
    .await;
    *truth.get_mut(&("Nisavski".into(), "U07.1".into())).unwrap() += 4;
    let reader = new_key();
    node.submit_ok(&[register_tx(&admin, &reader, Role::Doctor)])
        .await;
    node.views_caught_up(&node.token(&reader)).await;

    let r = node
        .get(
            "/v1/stats/epidemic?group_by=region,disease&measure=new_cases",
            None,
        )
        .await;
    r.expect(200, "");
    let body = r.json();
    assert_eq!(body["k"], 5);
    assert_eq!(body["reports"], 8, "the correction replaced a report");
    let table = &body["measures"]["new_cases"];
    assert_eq!(table["rule"]["k"], 5);
    let got = entries(table);
    let regions = ["Beograd", "Nisavski", "Toplicki"];
    let diseases = ["J10.1", "U07.1"];
    let value = |r: Option<&str>, d: Option<&str>| -> u64 {
        truth
            .iter()
            .filter(|((tr, td), _)| r.is_none_or(|r| r == tr) && d.is_none_or(|d| d == td))
            .map(|(_, n)| n)
            .sum()
    };
    let mut withheld = 0;
    for r in regions.iter().map(|r| Some(*r)).chain([None]) {
        for d in diseases.iter().map(|d| Some(*d)).chain([None]) {
            let key = vec![r.map(str::to_owned), d.map(str::to_owned)];
            let (published, status) = got.get(&key).unwrap_or_else(|| panic!("no entry {key:?}"));
            let v = value(r, d);
            match published {
                Some(p) => assert_eq!(*p, v, "{key:?}"),
                None => withheld += 1,
            }
            if (1..5).contains(&v) {
                assert_eq!(*published, None, "{key:?} = {v} must be withheld");
                assert_eq!(status, "primary", "{key:?}");
            }
        }
    }
    assert_eq!(got.len(), 12, "4 × 3 cells and margins");
    // Complementary suppression: no line (a row or column with its total)
    // holds exactly one withheld entry, which its total would give away.
    for r in regions.iter().map(|r| Some(*r)).chain([None]) {
        let line: Vec<_> = diseases
            .iter()
            .map(|d| Some(*d))
            .chain([None])
            .map(|d| got[&vec![r.map(str::to_owned), d.map(str::to_owned)]].0)
            .collect();
        assert_ne!(line.iter().filter(|v| v.is_none()).count(), 1, "{r:?}");
    }
    for d in diseases.iter().map(|d| Some(*d)).chain([None]) {
        let line: Vec<_> = regions
            .iter()
            .map(|r| Some(*r))
            .chain([None])
            .map(|r| got[&vec![r.map(str::to_owned), d.map(str::to_owned)]].0)
            .collect();
        assert_ne!(line.iter().filter(|v| v.is_none()).count(), 1, "{d:?}");
    }
    assert!(withheld >= 4, "three small cells and their complements");

    // Filters and a one-dimensional table.
    let by_day = node
        .get(
            "/v1/stats/epidemic?group_by=date&region=Nisavski&disease=U07.1&measure=new_cases",
            None,
        )
        .await
        .json();
    let days = entries(&by_day["measures"]["new_cases"]);
    assert_eq!(days[&vec![Some("2026-11-20".to_owned())]].0, Some(50));
    assert_eq!(days[&vec![Some("2026-11-21".to_owned())]].0, Some(35));
    assert_eq!(days[&vec![None]].0, Some(85));
    let none = node
        .get("/v1/stats/epidemic?from=2027-01-01&measure=deaths", None)
        .await
        .json();
    assert_eq!(none["reports"], 0);
    assert_eq!(none["measures"]["deaths"], Value::Null);
    for bad in [
        "group_by=patient",
        "group_by=date,region,disease,date",
        "group_by=region,region",
        "from=yesterday",
        "measure=infections",
    ] {
        node.get(&format!("/v1/stats/epidemic?{bad}"), None)
            .await
            .expect(400, "bad_query");
    }
    let vax = node
        .get("/v1/stats/vaccination?group_by=age_band,dose", None)
        .await;
    vax.expect(200, "");
    assert_eq!(vax.json()["measures"]["doses"], Value::Null);
}

#[tokio::test]
async fn organ_donor_decisions_need_the_chosen_doctor_or_an_officer_and_keep_their_history() {
    let node = start();
    let admin = node.admin.clone();
    let (centre, chosen, other, officer, researcher) =
        (new_key(), new_key(), new_key(), new_key(), new_key());
    let elsewhere = new_key();
    node.submit_ok(&[
        register_at(&admin, &centre, Role::Institution, "DZ Nis"),
        register_at(&admin, &chosen, Role::Doctor, "DZ Nis"),
        register_at(&admin, &other, Role::Doctor, "DZ Nis"),
        register_at(&admin, &elsewhere, Role::Doctor, "KC Kragujevac"),
        register_at(
            &admin,
            &officer,
            Role::RegistryOfficer,
            "Uprava za biomedicinu",
        ),
        register_tx(&admin, &researcher, Role::Researcher),
    ])
    .await;
    let p = "MFRGGZDFMZTWQ2LKNNWG23TPOA";
    let choice = |doctor: &SigningKey| json!({"patient": p, "doctor": keys::public_key(doctor), "date": "2026-01-10"});
    // The choice is recorded by the doctor's own institution.
    let r = node
        .post_json(&wire(&signed(
            &centre,
            kind::CHOSEN_DOCTOR,
            &choice(&elsewhere),
        )))
        .await;
    r.expect(422, "doctor_not_eligible");
    node.submit_ok(&[signed(&centre, kind::CHOSEN_DOCTOR, &choice(&chosen))])
        .await;

    let decision = |d: &str, organs: &[&str]| {
        let mut v = json!({"patient": p, "decision": d, "date": "2026-11-24"});
        if !organs.is_empty() {
            v["organs"] = json!(organs);
        }
        v
    };
    node.post_json(&wire(&signed(
        &other,
        kind::ORGAN_DONOR_DECISION,
        &decision("opt_in_all", &[]),
    )))
    .await
    .expect(403, "not_chosen_doctor");
    let first = signed(
        &chosen,
        kind::ORGAN_DONOR_DECISION,
        &decision("opt_in", &["kidneys", "corneas"]),
    );
    node.submit_ok(std::slice::from_ref(&first)).await;

    let token = node.token(&chosen);
    let read = |token: String| {
        let node = &node;
        async move {
            node.views_caught_up(&node.token(&node.admin)).await;
            node.get(&format!("/v1/donors/{p}"), Some(&token)).await
        }
    };
    let entry = read(token.clone()).await.json();
    assert_eq!(entry["current"]["status"], "donor");
    assert_eq!(entry["current"]["organs"], json!(["kidneys", "corneas"]));

    node.submit_ok(&[signed(
        &officer,
        kind::ORGAN_DONOR_DECISION,
        &decision("opt_out", &[]),
    )])
    .await;
    assert_eq!(
        read(token.clone()).await.json()["current"]["status"],
        "refused"
    );
    node.submit_ok(&[signed(
        &chosen,
        kind::ORGAN_DONOR_DECISION,
        &decision("withdrawal", &[]),
    )])
    .await;
    let entry = read(node.token(&officer)).await.json();
    assert_eq!(entry["current"]["status"], "no_decision");
    assert_eq!(entry["current"]["withdrawn"], true);
    let history = entry["history"].as_array().unwrap();
    let decisions: Vec<&str> = history
        .iter()
        .map(|h| h["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, ["opt_in", "opt_out", "withdrawal"]);
    let verifier = NoteVerifier::parse(node.status().await["vkey"].as_str().unwrap()).unwrap();
    for h in history {
        let proof = TlogProof::parse(h["receipt"].as_str().unwrap()).unwrap();
        let id = Hex32Bytes::<32>::parse_hex(h["id"].as_str().unwrap()).unwrap();
        proof
            .verify(&id.0, Some(ORIGIN), std::slice::from_ref(&verifier))
            .expect("receipt verifies");
    }
    assert_eq!(history[0]["id"], id_hex(&first));

    // Only the registry's readers see decisions, here or anywhere else.
    let researcher_token = node.token(&researcher);
    node.get(&format!("/v1/donors/{p}"), Some(&researcher_token))
        .await
        .expect(403, "forbidden");
    node.get(
        &format!("/v1/transactions/{}", id_hex(&first)),
        Some(&researcher_token),
    )
    .await
    .expect(403, "forbidden");
    node.get(
        "/v1/export?kind=organ_donor_decision&format=csv",
        Some(&researcher_token),
    )
    .await
    .expect(403, "forbidden");
    let export = node
        .get(
            "/v1/export?kind=organ_donor_decision&format=csv",
            Some(&token),
        )
        .await;
    assert_eq!(export.status, 200);
    assert_eq!(
        export.text().lines().count(),
        4,
        "a header and three decisions"
    );
    let h = node
        .get(
            &format!("/v1/patients/{p}/history"),
            Some(&researcher_token),
        )
        .await
        .json();
    assert!(
        h["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["kind"] != kind::ORGAN_DONOR_DECISION),
        "{h}"
    );
    let unknown = node
        .get(
            &format!("/v1/donors/{}", medledger_health::pseudonym::synthetic(5)),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(unknown["current"]["status"], "no_decision");
    assert_eq!(unknown["history"], json!([]));
}

#[tokio::test]
async fn fhir_vital_sign_observations_feed_the_news2_alerts() {
    let node = start();
    let integration = new_key();
    node.submit_ok(&[register_tx(&node.admin, &integration, Role::Institution)])
        .await;
    node.hold_key(&integration);
    let token = node.token(&integration);
    // A heart rate of 135 scores 3: a low-medium alert on its own.
    let mut hr = observation();
    hr["valueQuantity"]["value"] = json!(135);
    let r = node
        .post_to(
            "/fhir/Observation",
            Some(&token),
            hr.to_string().into_bytes(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    node.views_caught_up(&token).await;
    let alerts = node.get("/v1/alerts", Some(&token)).await.json();
    assert_eq!(alerts["total"], 1, "{alerts}");
    let a = &alerts["alerts"][0];
    assert_eq!(a["patient"], "MFRGGZDFMZTWQ2LKNNWG23TPOA");
    assert_eq!(
        (a["level"].as_str(), a["score"].as_u64()),
        (Some("low_medium"), Some(3))
    );
    assert_eq!(a["complete"], false);
    assert_eq!(a["parameters"][0]["parameter"], "pulse");
    assert_eq!(
        a["transactions"][0]["id"], id,
        "the alert names the Observation"
    );
    node.get("/v1/alerts?min_level=medium", Some(&token))
        .await
        .expect(200, "");
    node.get("/v1/alerts?min_level=urgent", Some(&token))
        .await
        .expect(400, "bad_query");
    // A normal reading taken later clears it.
    let mut calm = observation();
    calm["effectiveDateTime"] = json!("2026-11-24T09:10:00Z");
    node.post_to(
        "/fhir/Observation",
        Some(&token),
        calm.to_string().into_bytes(),
    )
    .await;
    node.views_caught_up(&token).await;
    let alerts = node.get("/v1/alerts", Some(&token)).await.json();
    assert_eq!(alerts["total"], 0, "{alerts}");
}

// ---- accountable access: purposes, consent, the access log ------------------

const PATIENT_P: &str = "MFRGGZDFMZTWQ2LKNNWG23TPOA";
const PATIENT_Q: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY";
const PURPOSE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

impl Node {
    /// A GET naming a purpose and, for a break-glass read, a reason.
    async fn read(&self, uri: &str, token: &str, purpose: &str, reason: Option<&str>) -> Resp {
        let mut b = request(Method::GET, uri, Some(token)).header("x-purpose-of-use", purpose);
        if let Some(r) = reason {
            b = b.header("x-break-glass-reason", r);
        }
        self.call(b.body(Body::empty()).unwrap()).await
    }

    /// The access log of `patient`, as the data-protection officer reads it;
    /// every entry's receipt is verified against the node's key.
    async fn access_log(&self, dpo_token: &str, patient: &str) -> Vec<Value> {
        let r = self
            .get(
                &format!("/v1/patients/{patient}/access-log"),
                Some(dpo_token),
            )
            .await;
        r.expect(200, "");
        let verifier = NoteVerifier::parse(self.status().await["vkey"].as_str().unwrap()).unwrap();
        let entries = r.json()["entries"].as_array().expect("entries").clone();
        for e in &entries {
            assert!(
                e["kind"] == "access.entry" || e["kind"] == "access.review",
                "{e}"
            );
            let proof = TlogProof::parse(e["receipt"].as_str().unwrap()).unwrap();
            let id = Hex32Bytes::<32>::parse_hex(e["id"].as_str().unwrap()).unwrap();
            proof
                .verify(&id.0, Some(ORIGIN), std::slice::from_ref(&verifier))
                .expect("the entry's receipt verifies");
        }
        entries
    }
}

/// A report about `patient`.
fn report_about(doctor: &SigningKey, patient: &str) -> Transaction {
    let mut p = report_payload();
    p["patient"] = json!(patient);
    signed(doctor, kind::MEDICAL_REPORT, &p)
}

/// A doctor's consent directive for `patient`, taken from a signed form.
fn directive(doctor: &SigningKey, patient: &str, provision: Value) -> Transaction {
    signed(
        doctor,
        kind::CONSENT_DIRECTIVE,
        &directive_payload(patient, provision),
    )
}

fn directive_payload(patient: &str, provision: Value) -> Value {
    json!({
            "resourceType": "Consent",
            "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                  "code": "patient-privacy"}]},
            "patient": {"reference": format!("Patient/{patient}")},
            "dateTime": "2026-12-01T09:00:00Z",
            "sourceReference": {"reference": "DocumentReference/form-17"},
            "provision": provision,
    })
}

/// (purpose code, decision, returned, withheld, break-glass reason) of an
/// access entry, read from its AuditEvent as the BALP profile lays it out.
fn entry_summary(e: &Value) -> (String, String, u64, u64, Option<String>) {
    let p = &e["payload"];
    let ext = |url: &str| {
        p["extension"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["url"] == url)
            .cloned()
    };
    (
        p["purposeOfEvent"][0]["coding"][0]["code"]
            .as_str()
            .unwrap()
            .to_owned(),
        ext("urn:medledger:access-decision").unwrap()["valueCode"]
            .as_str()
            .unwrap()
            .to_owned(),
        ext("urn:medledger:records-returned").unwrap()["valueUnsignedInt"]
            .as_u64()
            .unwrap(),
        ext("urn:medledger:records-withheld").unwrap()["valueUnsignedInt"]
            .as_u64()
            .unwrap(),
        ext("urn:medledger:break-glass-reason")
            .map(|x| x["valueString"].as_str().unwrap().to_owned()),
    )
}

#[tokio::test]
async fn roles_md_purpose_table_matches_the_policy_and_every_read() {
    use medledger_ledger::{Purpose, purposes};
    let node = start();
    let keys = role_keys(&node);
    register_roles(&node, &keys).await;
    let doctor = keys["doctor"].1.clone();
    let tx = report_about(&doctor, PATIENT_P);
    // A pharmacy reads prescriptions only: it reads this one instead.
    let rx = signed(&doctor, kind::PRESCRIPTION, &prescription_payload(0));
    node.submit_ok(&[tx.clone(), rx.clone()]).await;
    let (header, rows) = md_table("role");
    assert_eq!(header[..2], ["role", "default"]);
    let listed: BTreeSet<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    for (name, (role, key)) in &keys {
        let allowed = purposes(*role);
        let Some(row) = rows.iter().find(|r| r[0] == *name) else {
            assert!(
                allowed.is_empty(),
                "{name} reads for {allowed:?} but is not listed"
            );
            continue;
        };
        assert_eq!(row[1], allowed[0].code(), "{name}'s default");
        let token = node.token(key);
        let sample = match may_read_kind(*role, kind::MEDICAL_REPORT) {
            true => &tx,
            false => &rx,
        };
        let uri = format!("/v1/transactions/{}", id_hex(sample));
        for (col, cell) in header.iter().zip(row).skip(2) {
            let purpose = Purpose::parse(col).unwrap_or_else(|| panic!("column {col}"));
            assert_eq!(cell == "yes", allowed.contains(&purpose), "{name} × {col}");
            let r = node.read(&uri, &token, col, None).await;
            match cell.as_str() {
                "yes" => r.expect(200, ""),
                _ => r.expect(403, "purpose_not_allowed"),
            };
        }
        // A code that is not a PurposeOfUse is refused like a wrong one.
        node.read(&uri, &token, "MARKETING", None)
            .await
            .expect(403, "purpose_not_allowed");
    }
    assert_eq!(listed.len(), rows.len(), "a role is listed twice");
}

#[tokio::test]
async fn a_directive_withholds_a_patients_records_and_every_read_is_logged_with_a_receipt() {
    let node = start();
    let keys = role_keys(&node);
    register_roles(&node, &keys).await;
    let doctor = keys["doctor"].1.clone();
    let (p_report, q_report) = (
        report_about(&doctor, PATIENT_P),
        report_about(&doctor, PATIENT_Q),
    );
    node.submit_ok(&[p_report.clone(), q_report.clone()]).await;
    // P opts out of research; Q does not.
    let opt_out =
        json!({"type": "deny", "purpose": [{"system": PURPOSE_SYSTEM, "code": "HRESCH"}]});
    node.submit_ok(&[directive(&doctor, PATIENT_P, opt_out)])
        .await;

    let researcher = node.token(&keys["researcher"].1);
    let doctor_token = node.token(&doctor);
    let dpo = node.token(&keys["data_protection_officer"].1);
    let tx_uri = |tx: &Transaction| format!("/v1/transactions/{}", id_hex(tx));
    node.read(&tx_uri(&p_report), &researcher, "HRESCH", None)
        .await
        .expect(403, "consent_denied");
    node.read(&tx_uri(&q_report), &researcher, "HRESCH", None)
        .await
        .expect(200, "");
    let history = node
        .read(
            &format!("/v1/patients/{PATIENT_P}/history"),
            &researcher,
            "HRESCH",
            None,
        )
        .await;
    history.expect(200, "");
    let h = history.json();
    // The directive is a record about P too; both are withheld.
    assert_eq!(h["records"].as_array().unwrap().len(), 0, "{h}");
    assert_eq!(h["withheld"], 2);
    // Treatment is not covered by the opt-out.
    node.read(&tx_uri(&p_report), &doctor_token, "TREAT", None)
        .await
        .expect(200, "");

    let p_log: Vec<_> = node
        .access_log(&dpo, PATIENT_P)
        .await
        .iter()
        .map(entry_summary)
        .collect();
    let deny = |returned, withheld| {
        (
            "HRESCH".to_owned(),
            "deny".to_owned(),
            returned,
            withheld,
            None,
        )
    };
    assert_eq!(
        p_log,
        [
            deny(0, 1),
            deny(0, 2),
            ("TREAT".into(), "permit".into(), 1, 0, None)
        ]
    );
    let q_log: Vec<_> = node
        .access_log(&dpo, PATIENT_Q)
        .await
        .iter()
        .map(entry_summary)
        .collect();
    assert_eq!(q_log, [("HRESCH".into(), "permit".into(), 1, 0, None)]);
    // Each entry names the reader by key and was signed by this node.
    let raw = node.access_log(&dpo, PATIENT_Q).await;
    let who = &raw[0]["payload"]["agent"][0]["who"];
    let researcher_key = keys::public_key(&keys["researcher"].1).to_hex();
    assert_eq!(
        who,
        &json!({"type": "urn:medledger:participant", "reference": researcher_key})
    );
    assert_eq!(
        raw[0]["author"],
        json!(keys::public_key(&node.node_key).to_hex())
    );
    // Only the officer reads access logs.
    node.get(
        &format!("/v1/patients/{PATIENT_P}/access-log"),
        Some(&researcher),
    )
    .await
    .expect(403, "forbidden");
}

#[tokio::test]
async fn break_glass_reads_a_denied_record_only_for_an_emergency_with_a_reason_and_is_flagged() {
    let node = start();
    let keys = role_keys(&node);
    register_roles(&node, &keys).await;
    let doctor = keys["doctor"].1.clone();
    let rec = report_about(&doctor, PATIENT_P);
    node.submit_ok(std::slice::from_ref(&rec)).await;
    node.submit_ok(&[directive(&doctor, PATIENT_P, json!({"type": "deny"}))])
        .await;
    // A directive on the patient's behalf must point at the signed form.
    let mut payload = directive_payload(PATIENT_P, json!({"type": "permit"}));
    payload.as_object_mut().unwrap().remove("sourceReference");
    let unsigned = signed(&doctor, kind::CONSENT_DIRECTIVE, &payload);
    node.post_json(&wire(&unsigned))
        .await
        .expect(422, "consent_form_required");

    let token = node.token(&doctor);
    let uri = format!("/v1/transactions/{}", id_hex(&rec));
    node.read(&uri, &token, "TREAT", Some("chest pain"))
        .await
        .expect(403, "consent_denied");
    node.read(&uri, &token, "ETREAT", None)
        .await
        .expect(403, "consent_denied");
    node.read(&uri, &token, "ETREAT", Some("unconscious on arrival"))
        .await
        .expect(200, "");
    let dpo = node.token(&keys["data_protection_officer"].1);
    let log: Vec<_> = node
        .access_log(&dpo, PATIENT_P)
        .await
        .iter()
        .map(entry_summary)
        .collect();
    assert_eq!(
        log,
        [
            ("TREAT".into(), "deny".into(), 0, 1, None),
            ("ETREAT".into(), "deny".into(), 0, 1, None),
            (
                "ETREAT".into(),
                "break-glass".into(),
                1,
                0,
                Some("unconscious on arrival".into())
            ),
        ]
    );
}

#[tokio::test]
async fn a_patient_registered_by_the_authority_reads_only_their_own_records_and_access_log() {
    let node = start();
    let keys = role_keys(&node);
    register_roles(&node, &keys).await;
    let authority = keys["pseudonymization_authority"].1.clone();
    // Only the authority registers patients, and it registers nothing else.
    let stray = new_key();
    node.post_json(&wire(&register_tx(&node.admin, &stray, Role::Patient)))
        .await
        .expect(403, "registrar_not_allowed");
    node.post_json(&wire(&register_tx(&authority, &stray, Role::Doctor)))
        .await
        .expect(403, "registrar_not_allowed");
    // A patient is bound to one pseudonym.
    let unbound =
        json!({"key": keys::public_key(&stray), "role": "patient", "institution": "Test"});
    node.post_json(&wire(&signed(&authority, kind::REGISTER, &unbound)))
        .await
        .expect(422, "patient_binding");
    node.post_json(&wire(&revoke_tx(&authority, &keys["doctor"].1)))
        .await
        .expect(403, "registrar_not_allowed");

    let doctor = keys["doctor"].1.clone();
    let (p_report, q_report) = (
        report_about(&doctor, PATIENT_P),
        report_about(&doctor, PATIENT_Q),
    );
    node.submit_ok(&[p_report.clone(), q_report.clone()]).await;
    let patient = keys["patient"].1.clone();
    let me = node.token(&patient);
    let tx_uri = |tx: &Transaction| format!("/v1/transactions/{}", id_hex(tx));
    node.read(&tx_uri(&p_report), &me, "PATRQT", None)
        .await
        .expect(200, "");
    // Another patient's record is not for them, whatever the directives say.
    node.read(&tx_uri(&q_report), &me, "PATRQT", None)
        .await
        .expect(403, "forbidden");
    node.read(&tx_uri(&p_report), &me, "TREAT", None)
        .await
        .expect(403, "purpose_not_allowed");
    for uri in [
        format!("/v1/patients/{PATIENT_Q}/history"),
        format!("/v1/patients/{PATIENT_Q}/access-log"),
        "/v1/export?kind=medical_report".to_owned(),
    ] {
        node.get(&uri, Some(&me)).await.expect(403, "forbidden");
    }
    for uri in [
        format!("/fhir/Patient/{PATIENT_Q}/$everything"),
        format!("/fhir/Patient/{PATIENT_Q}"),
    ] {
        let r = node.get(&uri, Some(&me)).await;
        assert_eq!(r.status, 403, "{uri}");
        assert_eq!(r.json()["issue"][0]["code"], "forbidden", "{uri}");
    }
    let h = node
        .get(&format!("/v1/patients/{PATIENT_P}/history"), Some(&me))
        .await;
    h.expect(200, "");
    let records = h.json()["records"].as_array().unwrap().clone();
    let ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [id_hex(&p_report).as_str()]);

    // A patient signs their own directive, without a form; about another
    // patient they may not.
    let own = directive_payload(PATIENT_P, json!({"type": "deny"}));
    let mut own = own.as_object().unwrap().clone();
    own.remove("sourceReference");
    node.submit_ok(&[signed(&patient, kind::CONSENT_DIRECTIVE, &json!(own))])
        .await;
    let other = directive_payload(PATIENT_Q, json!({"type": "deny"}));
    node.post_json(&wire(&signed(&patient, kind::CONSENT_DIRECTIVE, &other)))
        .await
        .expect(403, "device_patient_mismatch");
    // Their own deny-all binds others, not themselves.
    node.read(&tx_uri(&p_report), &me, "PATRQT", None)
        .await
        .expect(200, "");
    node.read(&tx_uri(&p_report), &node.token(&doctor), "TREAT", None)
        .await
        .expect(403, "consent_denied");

    // The patient sees every read of their records, their own included.
    let log = node.access_log(&me, PATIENT_P).await;
    let summary: Vec<_> = log.iter().map(entry_summary).collect();
    let permit = |purpose: &str, n| (purpose.to_owned(), "permit".to_owned(), n, 0, None);
    assert_eq!(
        summary,
        [
            permit("PATRQT", 1),
            permit("PATRQT", 1),
            permit("PATRQT", 1),
            ("TREAT".into(), "deny".into(), 0, 1, None),
        ]
    );
    let role = |e: &Value| e["payload"]["agent"][0]["role"][0]["coding"][0]["code"].clone();
    assert_eq!(role(&log[0]), "patient");
    assert_eq!(role(&log[3]), "doctor");
}

#[tokio::test]
async fn an_export_leaves_out_opted_out_patients_says_how_many_and_is_logged_first() {
    let node = start();
    let keys = role_keys(&node);
    register_roles(&node, &keys).await;
    let doctor = keys["doctor"].1.clone();
    let reports = [
        report_about(&doctor, PATIENT_P),
        report_about(&doctor, PATIENT_Q),
        report_about(&doctor, PATIENT_P),
    ];
    node.submit_ok(&reports).await;
    let opt_out =
        json!({"type": "deny", "purpose": [{"system": PURPOSE_SYSTEM, "code": "HRESCH"}]});
    node.submit_ok(&[directive(&doctor, PATIENT_P, opt_out)])
        .await;
    let researcher = node.token(&keys["researcher"].1);
    let r = node
        .read(
            "/v1/export?kind=medical_report&format=csv",
            &researcher,
            "HRESCH",
            None,
        )
        .await;
    r.expect(200, "");
    assert_eq!(r.headers["medledger-withheld"], "2");
    // CSV: a header row, then `leaf,id,recorded,...` per record.
    let csv = String::from_utf8(r.body.clone()).unwrap();
    let ids: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(ids, [id_hex(&reports[1]).as_str()]);
    // One entry logs the export for both patients before it streams: one
    // record returned, two withheld.
    let dpo = node.token(&keys["data_protection_officer"].1);
    for patient in [PATIENT_P, PATIENT_Q] {
        let log = node.access_log(&dpo, patient).await;
        let summary: Vec<_> = log.iter().map(entry_summary).collect();
        assert_eq!(
            summary,
            [("HRESCH".into(), "permit".into(), 1, 2, None)],
            "{patient}"
        );
        assert_eq!(
            log[0]["payload"]["entity"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["description"].is_string())
                .count(),
            1,
            "the export's query is named"
        );
    }
    // Treatment exports are not covered by the research opt-out.
    let doc = node.token(&doctor);
    let r = node
        .read(
            "/v1/export?kind=medical_report&format=csv",
            &doc,
            "TREAT",
            None,
        )
        .await;
    r.expect(200, "");
    assert_eq!(r.headers["medledger-withheld"], "0");
    assert_eq!(String::from_utf8(r.body).unwrap().lines().count(), 1 + 3);
}

// ---- access tokens (POST /v1/token) -------------------------------------------

/// A committed report by a new doctor: the doctor and the read URI.
async fn doctor_with_report(node: &Node) -> (SigningKey, String) {
    let doctor = node.doctor().await;
    let tx = report(&doctor);
    node.submit_ok(std::slice::from_ref(&tx)).await;
    (doctor, format!("/v1/transactions/{}", id_hex(&tx)))
}

/// Signs an access token as a node with key `signer` would.
fn access_token_by(signer: &SigningKey, sub: &SigningKey, exp: u64, purposes: &[&str]) -> String {
    let now = now_ms() / 1000;
    let claims = AccessClaims {
        iss: keys::public_key(signer).to_hex(),
        sub: keys::public_key(sub).to_hex(),
        aud: ORIGIN.into(),
        iat: now.min(exp),
        exp,
        jti: "test".into(),
        scope: String::new(),
        purpose_of_use: purposes.iter().map(|p| (*p).to_owned()).collect(),
    };
    sign_access_token(signer, &claims).expect("sign")
}

#[tokio::test]
async fn a_registered_doctor_gets_a_token_over_http_and_reads_with_it() {
    // The assertion's audience is the configured public URL, whatever
    // address the request comes in on.
    let node = start_with(NodeConfig {
        public_url: Some("https://node1.example/".into()),
        ..NodeConfig::default()
    });
    let (doctor, read) = doctor_with_report(&node).await;
    let base = node.listen().await;
    let client = reqwest::Client::new();
    let form = |aud: &str| {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_assertion_type", ASSERTION_TYPE)
            .append_pair("client_assertion", &assertion(&doctor, aud, 0, 120))
            .append_pair("scope", "system/*.read purpose/TREAT")
            .finish()
    };
    let post = |body: String| {
        client
            .post(format!("{base}/v1/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let wrong = post(form(&audience())).await.expect("request");
    assert_eq!(wrong.status(), 401);
    let r = post(form("https://node1.example/v1/token"))
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scope"], "system/*.read purpose/TREAT");
    let token = body["access_token"].as_str().expect("token");
    let resp = client
        .get(format!("{base}{read}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("read");
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    // Without a token the same read is refused.
    let anonymous = client
        .get(format!("{base}{read}"))
        .send()
        .await
        .expect("read");
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn bad_token_requests_get_their_rfc6749_errors() {
    let node = start();
    let doctor = node.doctor().await;
    let aud = audience();
    let expect = |r: Resp, status: u16, error: &str| {
        assert_eq!(
            (
                r.status,
                r.json()["error"].as_str().unwrap_or("").to_owned()
            ),
            (status, error.to_owned()),
            "{}",
            r.text()
        );
    };
    // The assertion itself.
    let expired = assertion(&doctor, &aud, 600, 60);
    expect(node.token_with(&expired, None).await, 401, "invalid_client");
    let too_long = assertion(&doctor, &aud, 0, 3600);
    expect(
        node.token_with(&too_long, None).await,
        401,
        "invalid_client",
    );
    let elsewhere = assertion(&doctor, "http://elsewhere.example/v1/token", 0, 60);
    expect(
        node.token_with(&elsewhere, None).await,
        401,
        "invalid_client",
    );
    let stranger = new_key();
    let unregistered = assertion(&stranger, &aud, 0, 60);
    expect(
        node.token_with(&unregistered, None).await,
        401,
        "invalid_client",
    );
    let once = assertion(&doctor, &aud, 0, 60);
    expect(node.token_with(&once, None).await, 200, "");
    expect(node.token_with(&once, None).await, 401, "invalid_client");
    // A signature by another key over the doctor's claims.
    let good = assertion(&doctor, &aud, 0, 60);
    let forged = assertion(&stranger, &aud, 0, 60);
    let (head_claims, _) = good.rsplit_once('.').unwrap();
    let (_, sig) = forged.rsplit_once('.').unwrap();
    expect(
        node.token_with(&format!("{head_claims}.{sig}"), None).await,
        401,
        "invalid_client",
    );
    // iss and sub must agree.
    let now = now_ms() / 1000;
    let claims = json!({"iss": keys::public_key(&doctor).to_hex(), "sub": keys::public_key(&stranger).to_hex(), "aud": aud, "exp": now + 60, "jti": "x"});
    let der = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der(&doctor).unwrap();
    let mixed = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
    )
    .unwrap();
    expect(node.token_with(&mixed, None).await, 401, "invalid_client");
    // An HMAC token is not an EdDSA one.
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"secret").unwrap(),
    )
    .unwrap();
    expect(node.token_with(&hs, None).await, 401, "invalid_client");
    for garbage in ["", "x", "a.b.c", "..", "e30.e30.", "\u{0}\u{7f}é€.{}.[]"] {
        let r = node.token_with(garbage, None).await;
        assert!(matches!(r.status, 400 | 401), "{garbage:?}: {}", r.text());
    }
    // The request around it.
    let fresh = || assertion(&doctor, &aud, 0, 60);
    let a = fresh();
    expect(
        node.token_form(&[
            ("grant_type", "password"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &a),
        ])
        .await,
        400,
        "unsupported_grant_type",
    );
    let a = fresh();
    expect(
        node.token_form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:other"),
            ("client_assertion", &a),
        ])
        .await,
        400,
        "invalid_request",
    );
    expect(
        node.token_form(&[("grant_type", "client_credentials")])
            .await,
        400,
        "invalid_request",
    );
    let a = fresh();
    expect(
        node.token_form(&[
            ("grant_type", "client_credentials"),
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &a),
        ])
        .await,
        400,
        "invalid_request",
    );
    let json_body = node
        .call(
            request(Method::POST, "/v1/token", None)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{\"grant_type\":\"client_credentials\"}"))
                .unwrap(),
        )
        .await;
    expect(json_body, 400, "invalid_request");
    let mut rng = Rng(0x746f_6b65_6e73);
    for _ in 0..40 {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let r = node
            .call(
                request(Method::POST, "/v1/token", None)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(bytes))
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.text());
    }
    // Scopes.
    for bad in [
        "purpose/PUBHLTH",
        "purpose/NOPE",
        "system/*.write",
        "openid",
    ] {
        let r = node.request_token(&doctor, Some(bad)).await;
        expect(r, 400, "invalid_scope");
    }
    let r = node.request_token(&doctor, None).await;
    assert_eq!(
        r.json()["scope"],
        "purpose/TREAT purpose/ETREAT purpose/HOPERAT"
    );
    // A revoked participant holds the key but no longer the grant.
    node.submit_ok(&[revoke_tx(&node.admin, &doctor)]).await;
    expect(
        node.request_token(&doctor, None).await,
        400,
        "invalid_grant",
    );
}

#[tokio::test]
async fn revoking_the_participant_ends_its_access_tokens() {
    let node = start();
    let (doctor, read) = doctor_with_report(&node).await;
    let token = node.access_token(&doctor, None).await;
    node.get(&read, Some(&token)).await.expect(200, "");
    node.submit_ok(&[revoke_tx(&node.admin, &doctor)]).await;
    node.get(&read, Some(&token))
        .await
        .expect(401, "unauthorized");
}

#[tokio::test]
async fn expired_or_foreign_access_tokens_are_refused() {
    let node = start();
    let (doctor, read) = doctor_with_report(&node).await;
    let now = now_ms() / 1000;
    let fresh = access_token_by(&node.node_key, &doctor, now + 60, &["TREAT"]);
    node.get(&read, Some(&fresh)).await.expect(200, "");
    let expired = access_token_by(&node.node_key, &doctor, now - 120, &["TREAT"]);
    node.get(&read, Some(&expired))
        .await
        .expect(401, "unauthorized");
    // Signed by a key that is not a node of this ledger, or by a doctor.
    let stranger = access_token_by(&new_key(), &doctor, now + 60, &["TREAT"]);
    node.get(&read, Some(&stranger))
        .await
        .expect(401, "unauthorized");
    let by_doctor = access_token_by(&doctor, &doctor, now + 60, &["TREAT"]);
    node.get(&read, Some(&by_doctor))
        .await
        .expect(401, "unauthorized");
    // A token altered after signing.
    let (rest, sig) = fresh.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let altered = format!("{rest}.{flipped}{}", &sig[1..]);
    node.get(&read, Some(&altered))
        .await
        .expect(401, "unauthorized");
    for garbage in ["a.b.c", "..", "e30.e30.e30"] {
        node.get(&read, Some(garbage))
            .await
            .expect(401, "unauthorized");
    }
}

#[tokio::test]
async fn a_token_reads_only_for_the_purposes_it_carries() {
    let node = start();
    let (doctor, read) = doctor_with_report(&node).await;
    let treat = node.access_token(&doctor, Some("purpose/TREAT")).await;
    let with_purpose = |token: &str, purpose: &str| {
        request(Method::GET, &read, Some(token))
            .header("x-purpose-of-use", purpose)
            .body(Body::empty())
            .unwrap()
    };
    node.get(&read, Some(&treat)).await.expect(200, "");
    node.call(with_purpose(&treat, "TREAT"))
        .await
        .expect(200, "");
    // HOPERAT is the doctor role's, but not this token's.
    node.call(with_purpose(&treat, "HOPERAT"))
        .await
        .expect(403, "purpose_not_allowed");
    // A token's default purpose is its first.
    let hoperat = node.access_token(&doctor, Some("purpose/HOPERAT")).await;
    node.get(&read, Some(&hoperat)).await.expect(200, "");
    node.call(with_purpose(&hoperat, "TREAT"))
        .await
        .expect(403, "purpose_not_allowed");
}

#[tokio::test]
async fn a_token_from_one_node_is_accepted_by_another_node_of_the_ledger() {
    // A and C hold the same ledger, each with its own registered node key.
    let a_dir = tempfile::tempdir().expect("tempdir");
    Ledger::init(a_dir.path(), ORIGIN, "Test").expect("init");
    let admin = read_key_file(&a_dir.path().join("admin.key")).expect("admin key");
    let c_key = new_key();
    let doctor = new_key();
    let tx = report(&doctor);
    let seq = Sequencer::start(
        Ledger::open(a_dir.path()).expect("open"),
        SequencerConfig::default(),
    );
    for txs in [
        vec![
            register_tx(&admin, &c_key, Role::Node),
            register_tx(&admin, &doctor, Role::Doctor),
        ],
        vec![tx.clone()],
    ] {
        let outcome = seq.enqueue(txs).done().await;
        assert!(outcome.iter().all(Result::is_ok), "{outcome:?}");
    }
    seq.shutdown().expect("shutdown");
    let c_dir = tempfile::tempdir().expect("tempdir");
    copy_dir(a_dir.path(), c_dir.path());
    std::fs::remove_file(c_dir.path().join("node.key")).expect("remove node.key");
    medledger_ledger::write_secret_file(
        &c_dir.path().join("node.key"),
        &keys::encode_key_file(&c_key),
    )
    .expect("write node.key");
    let a = open_node(a_dir, NodeConfig::default());
    let c = open_node(c_dir, NodeConfig::default());
    let read = format!("/v1/transactions/{}", id_hex(&tx));
    let from_a = a.access_token(&doctor, None).await;
    let from_c = c.access_token(&doctor, None).await;
    for node in [&a, &c] {
        node.get(&read, Some(&from_a)).await.expect(200, "");
        node.get(&read, Some(&from_c)).await.expect(200, "");
    }
    // A node key the ledger does not hold signs nothing it accepts.
    let now = now_ms() / 1000;
    let stranger = access_token_by(&new_key(), &doctor, now + 60, &["TREAT"]);
    c.get(&read, Some(&stranger))
        .await
        .expect(401, "unauthorized");
}

// ---- witnessed break-glass --------------------------------------------------

/// The officer's review of the break-glass entry `entry` (hex id) about
/// `patients`, with a reason code that fits `outcome`.
fn review_payload(entry: &str, patients: &[&str], outcome: &str) -> Value {
    let reason = match outcome {
        "justified" => "emergency-confirmed",
        _ => "no-emergency",
    };
    json!({"entry": entry, "patients": patients, "outcome": outcome, "reason": reason})
}

impl Node {
    /// A doctor breaks the glass on a report about `patient` after the
    /// patient denied every read; returns the flagged entry's id.
    async fn break_glass(
        &self,
        keys: &BTreeMap<&'static str, (Role, SigningKey)>,
        patient: &str,
    ) -> String {
        let doctor = &keys["doctor"].1;
        let rec = report_about(doctor, patient);
        self.submit_ok(std::slice::from_ref(&rec)).await;
        self.submit_ok(&[directive(doctor, patient, json!({"type": "deny"}))])
            .await;
        let uri = format!("/v1/transactions/{}", id_hex(&rec));
        self.read(
            &uri,
            &self.token(doctor),
            "ETREAT",
            Some("unconscious on arrival"),
        )
        .await
        .expect(200, "");
        let dpo = self.token(&keys["data_protection_officer"].1);
        let log = self.access_log(&dpo, patient).await;
        let last = log.last().expect("the read is logged");
        assert_eq!(entry_summary(last).1, "break-glass");
        last["id"].as_str().unwrap().to_owned()
    }

    /// `/metrics`' value of `name`.
    async fn gauge(&self, name: &str) -> u64 {
        let text = self.get("/metrics", None).await.text();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{name} missing from /metrics: {text}"))
            .parse()
            .unwrap()
    }

    /// Verifies the receipt `receipt` of the transaction `id` against the
    /// node's key.
    async fn verify_receipt(&self, id: &str, receipt: &str) {
        let verifier = NoteVerifier::parse(self.status().await["vkey"].as_str().unwrap()).unwrap();
        let proof = TlogProof::parse(receipt).unwrap();
        let id = Hex32Bytes::<32>::parse_hex(id).unwrap();
        proof
            .verify(&id.0, Some(ORIGIN), std::slice::from_ref(&verifier))
            .expect("the receipt verifies");
    }
}

#[tokio::test]
async fn a_break_glass_read_is_listed_until_the_officer_reviews_it_once() {
    let node = start();
    let keys = role_keys(&node);
    register_roles(&node, &keys).await;
    assert_eq!(node.gauge("medledger_break_glass_unreviewed").await, 0);
    let before = now_ms();
    let entry = node.break_glass(&keys, PATIENT_P).await;
    let after = now_ms();
    let dpo_key = &keys["data_protection_officer"].1;
    let dpo = node.token(dpo_key);
    assert_eq!(node.gauge("medledger_break_glass_unreviewed").await, 1);
    assert_eq!(
        node.gauge("medledger_break_glass_unreviewed_overdue").await,
        0
    );

    let open = node
        .get("/v1/break-glass?unreviewed=true", Some(&dpo))
        .await;
    open.expect(200, "");
    let open = open.json();
    assert_eq!(open["review_deadline_ms"], 259_200_000, "{open}");
    assert_eq!(open["next_after"], Value::Null);
    let [e] = open["entries"].as_array().unwrap().as_slice() else {
        panic!("one entry awaits review: {open}");
    };
    assert_eq!(e["id"], entry);
    let doctor_key = keys::public_key(&keys["doctor"].1).to_hex();
    assert_eq!(e["reader"], doctor_key);
    assert_eq!(e["patients"], json!([PATIENT_P]));
    assert_eq!(e["purpose"], "ETREAT");
    assert_eq!(e["reason"], "unconscious on arrival");
    assert_eq!(e["review"], Value::Null);
    assert_eq!(e["overdue"], false);
    let time = e["time"].as_u64().unwrap();
    assert!((before..=after).contains(&time));
    assert_eq!(e["due"].as_u64().unwrap(), time + 72 * 3_600_000);
    node.verify_receipt(&entry, e["receipt"].as_str().unwrap())
        .await;

    // Only the officer lists them, and only with a well-formed query.
    for role in ["auditor", "doctor", "admin"] {
        let t = node.token(&keys[role].1);
        node.get("/v1/break-glass", Some(&t))
            .await
            .expect(403, "forbidden");
    }
    for q in ["unreviewed=yes", "unreviewed=", "limit=x", "after=-1"] {
        node.get(&format!("/v1/break-glass?{q}"), Some(&dpo))
            .await
            .expect(400, "bad_query");
    }

    // Reviews that the ledger refuses, each with its code.
    let doctor = &keys["doctor"].1;
    // The officer's own read of P's history is logged, withheld, unflagged.
    node.read(
        &format!("/v1/patients/{PATIENT_P}/history"),
        &dpo,
        "HOPERAT",
        None,
    )
    .await
    .expect(200, "");
    let log = node.access_log(&dpo, PATIENT_P).await;
    let last = log.last().unwrap();
    assert_eq!(entry_summary(last).1, "deny");
    let plain = last["id"].as_str().unwrap().to_owned();
    let refused = [
        (
            signed(
                doctor,
                kind::ACCESS_REVIEW,
                &review_payload(&entry, &[PATIENT_P], "justified"),
            ),
            403,
            "role_not_allowed",
        ),
        (
            signed(
                dpo_key,
                kind::ACCESS_REVIEW,
                &review_payload(&plain, &[PATIENT_P], "justified"),
            ),
            422,
            "not_break_glass",
        ),
        (
            signed(
                dpo_key,
                kind::ACCESS_REVIEW,
                &review_payload(&"0f".repeat(32), &[PATIENT_P], "justified"),
            ),
            422,
            "not_break_glass",
        ),
        (
            signed(
                dpo_key,
                kind::ACCESS_REVIEW,
                &review_payload(&entry, &[PATIENT_Q], "justified"),
            ),
            422,
            "review_patients",
        ),
    ];
    for (tx, status, code) in refused {
        node.post_json(&wire(&tx)).await.expect(status, code);
    }

    let review = signed(
        dpo_key,
        kind::ACCESS_REVIEW,
        &review_payload(&entry, &[PATIENT_P], "not-justified"),
    );
    node.submit_ok(std::slice::from_ref(&review)).await;
    let again = signed(
        dpo_key,
        kind::ACCESS_REVIEW,
        &review_payload(&entry, &[PATIENT_P], "justified"),
    );
    node.post_json(&wire(&again))
        .await
        .expect(422, "already_reviewed");

    let open = node
        .get("/v1/break-glass?unreviewed=true", Some(&dpo))
        .await;
    assert_eq!(open.json()["entries"], json!([]));
    let all = node.get("/v1/break-glass", Some(&dpo)).await.json();
    let [e] = all["entries"].as_array().unwrap().as_slice() else {
        panic!("the reviewed entry is still listed: {all}");
    };
    assert_eq!(e["id"], entry);
    assert_eq!(e["overdue"], false);
    let r = &e["review"];
    assert_eq!(r["id"], id_hex(&review));
    assert_eq!(r["outcome"], "not-justified");
    assert_eq!(r["reason"], "no-emergency");
    assert_eq!(r["author"], keys::public_key(dpo_key).to_hex());
    node.verify_receipt(&id_hex(&review), r["receipt"].as_str().unwrap())
        .await;
    // The patient's access log shows the review after the read it judges
    // (and the officer's own read in between).
    let log = node.access_log(&dpo, PATIENT_P).await;
    let ids: Vec<&str> = log.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids[ids.len() - 3..],
        [entry.as_str(), &plain, &id_hex(&review)]
    );
    assert_eq!(log.last().unwrap()["kind"], "access.review");
    assert_eq!(node.gauge("medledger_break_glass_unreviewed").await, 0);
    assert_eq!(
        node.gauge("medledger_break_glass_unreviewed_overdue").await,
        0
    );
}

#[tokio::test]
async fn the_break_glass_list_pages_like_the_access_log() {
    let node = start();
    let keys = role_keys(&node);
    register_roles(&node, &keys).await;
    let first = node.break_glass(&keys, PATIENT_P).await;
    let second = node.break_glass(&keys, PATIENT_Q).await;
    let dpo = node.token(&keys["data_protection_officer"].1);
    let page = node.get("/v1/break-glass?limit=1", Some(&dpo)).await.json();
    assert_eq!(page["entries"].as_array().unwrap().len(), 1);
    assert_eq!(page["entries"][0]["id"], first);
    let next = page["next_after"].as_u64().expect("a next page");
    assert_eq!(next, page["entries"][0]["index"].as_u64().unwrap());
    let rest = node
        .get(&format!("/v1/break-glass?limit=1&after={next}"), Some(&dpo))
        .await
        .json();
    assert_eq!(rest["entries"][0]["id"], second);
    assert_eq!(rest["next_after"], Value::Null);
    let none = node
        .get(&format!("/v1/break-glass?after={}", u64::MAX), Some(&dpo))
        .await
        .json();
    assert_eq!(none["entries"], json!([]));
}

// ---- FHIR search, errors, SMART discovery and conditional create ----------------

impl Node {
    /// A GET with extra headers.
    async fn get_with(&self, uri: &str, token: Option<&str>, headers: &[(&str, &str)]) -> Resp {
        let mut b = request(Method::GET, uri, token);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.call(b.body(Body::empty()).unwrap()).await
    }

    /// A FHIR create with extra headers.
    async fn fhir_post_with(
        &self,
        uri: &str,
        token: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut b = request(Method::POST, uri, Some(token))
            .header(header::CONTENT_TYPE, "application/fhir+json");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.call(b.body(Body::from(body.to_string())).unwrap())
            .await
    }

    async fn log_size(&self) -> u64 {
        self.status().await["log_size"].as_u64().unwrap()
    }
}

/// An Observation of `code` (heart or respiratory rate) on `day`.
fn rate(code: &str, day: &str) -> Value {
    let mut o = observation();
    o["code"]["coding"][0]["code"] = json!(code);
    o["effectiveDateTime"] = json!(format!("{day}T08:00:00Z"));
    o
}

fn ids_of(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect()
}

fn next_of(bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")
        .map(|l| {
            let url = l["url"].as_str().unwrap();
            format!("/fhir{}", url.split_once("/fhir").unwrap().1)
        })
}

#[tokio::test]
async fn fhir_search_or_and_tokens_dates_totals_sort_and_pinned_pages() {
    let node = start();
    let doctor = node.doctor().await;
    node.hold_key(&doctor);
    let token = node.token(&doctor);
    let seeded = [
        ("8867-4", "2026-11-20"),
        ("8867-4", "2026-11-21"),
        ("8867-4", "2026-11-22"),
        ("9279-1", "2026-11-21"),
        ("9279-1", "2026-11-23"),
    ];
    let mut ids = Vec::new();
    for (code, day) in seeded {
        let r = node
            .fhir_post_with("/fhir/Observation", &token, &rate(code, day), &[])
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        ids.push(r.json()["id"].as_str().unwrap().to_owned());
    }
    let subject = "subject=Patient/MFRGGZDFMZTWQ2LKNNWG23TPOA";
    let search = |q: String| {
        let node = &node;
        let token = &token;
        async move {
            let r = node
                .get(&format!("/fhir/Observation?{q}"), Some(token))
                .await;
            assert_eq!(r.status, 200, "{q}: {}", r.text());
            r.json()
        }
    };
    for (q, want) in [
        ("code=8867-4,9279-1", 5),
        ("code=8867-4&code=9279-1", 0),
        ("code=http://loinc.org|8867-4", 3),
        ("code=http://snomed.info/sct|8867-4", 0),
        ("code=|8867-4", 0),
        ("code=http://loinc.org|", 5),
        ("code:not=8867-4", 2),
        ("code:missing=false", 5),
        ("identifier:missing=true", 5),
        ("category=vital-signs", 5),
        ("category=laboratory", 0),
        ("date=ge2026-11-21&date=lt2026-11-23", 3),
        ("date=2026-11-20,2026-11-23", 2),
        ("date=ne2026-11-21", 3),
        ("date=sa2026-11-21", 2),
        ("date=eb2026-11-21", 1),
    ] {
        let b = search(format!("{subject}&{q}")).await;
        assert_eq!(b["total"], want, "{q}");
        assert_eq!(ids_of(&b).len(), want, "{q}");
    }
    // `ap` widens by a tenth of the distance to now (pinned exactly in the
    // health crate's tests): at least the day before and after match here,
    // and nothing a year away.
    let ap = search(format!("{subject}&date=ap2026-11-21")).await;
    assert!(ap["total"].as_u64().unwrap() >= 4, "{ap}");
    assert_eq!(
        search(format!("{subject}&date=ap2025-11-21")).await["total"],
        0
    );
    // Without a subject the same holds (the kind and code indexes).
    assert_eq!(search("code=9279-1".into()).await["total"], 2);
    assert_eq!(search("code=8867-4,9279-1".into()).await["total"], 5);

    // _count=0 and _summary=count give the total only; _total=none omits it.
    for q in ["_count=0", "_summary=count", "_count=0&_totalMethod=count"] {
        let b = search(format!("{subject}&{q}")).await;
        assert_eq!(b["total"], 5, "{q}");
        assert!(b.get("entry").is_none(), "{q}");
        assert!(next_of(&b).is_none(), "{q}");
    }
    let b = search(format!("{subject}&_total=none")).await;
    assert!(b.get("total").is_none());
    assert_eq!(ids_of(&b).len(), 5);

    // _sort on the clinical date, both ways; log order by default.
    assert_eq!(ids_of(&search(subject.into()).await), ids);
    let asc = ids_of(&search(format!("{subject}&_sort=date")).await);
    assert_eq!(asc, [&*ids[0], &ids[1], &ids[3], &ids[2], &ids[4]]);
    let desc = ids_of(&search(format!("{subject}&_sort=-date")).await);
    assert_eq!(desc, [&*ids[4], &ids[2], &ids[1], &ids[3], &ids[0]]);

    // Pages stay put while records arrive: the links pin the log size.
    let first = search(format!("{subject}&_count=2&_sort=-date")).await;
    let mut found = ids_of(&first);
    let mut next = next_of(&first);
    let late = node
        .fhir_post_with(
            "/fhir/Observation",
            &token,
            &rate("8867-4", "2026-11-30"),
            &[],
        )
        .await;
    assert_eq!(late.status, 201);
    while let Some(uri) = next {
        let page = node.get(&uri, Some(&token)).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        assert_eq!(page["total"], 5, "the total of the pinned search");
        found.extend(ids_of(&page));
        next = next_of(&page);
    }
    assert_eq!(found, desc, "the pages as the first one began them");
    assert_eq!(
        search(subject.into()).await["total"],
        6,
        "a new search sees it"
    );

    // Unknown parameters: refused, or ignored and reported when lenient.
    let r = node
        .get(
            &format!("/fhir/Observation?{subject}&bogus=1"),
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["issue"][0]["code"], "not-supported");
    let r = node
        .get_with(
            &format!("/fhir/Observation?{subject}&bogus=1"),
            Some(&token),
            &[("prefer", "handling=lenient")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let b = r.json();
    assert_eq!(b["total"], 6);
    let outcome = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["search"]["mode"] == "outcome")
        .expect("an outcome entry reports what was ignored");
    assert!(
        outcome["resource"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("bogus")
    );
    assert!(!b["link"][0]["url"].as_str().unwrap().contains("bogus"));
    // A bad modifier or value is refused even when lenient.
    for q in ["date:not=2026", "code:exact=1", "date=xx2026", "_sort=code"] {
        let r = node
            .get_with(
                &format!("/fhir/Observation?{q}"),
                Some(&token),
                &[("prefer", "handling=lenient")],
            )
            .await;
        assert_eq!(r.status, 400, "{q}");
    }
}

#[tokio::test]
async fn fhir_searches_are_logged_and_patients_see_only_their_own() {
    let node = start();
    let doctor = node.doctor().await;
    node.hold_key(&doctor);
    let token = node.token(&doctor);
    for day in ["2026-11-20", "2026-11-21"] {
        let r = node
            .fhir_post_with("/fhir/Observation", &token, &rate("8867-4", day), &[])
            .await;
        assert_eq!(r.status, 201);
    }
    let before = node.log_size().await;
    let r = node
        .get("/fhir/Observation?code=8867-4", Some(&token))
        .await;
    assert_eq!(r.json()["total"], 2);
    assert_eq!(node.log_size().await, before + 1, "one access entry");
    let r = node
        .get("/fhir/Observation?code=8867-4&_summary=count", Some(&token))
        .await;
    assert_eq!(r.json()["total"], 2);
    assert_eq!(
        node.log_size().await,
        before + 2,
        "a count of a patient's records is logged too"
    );
    let r = node
        .get("/fhir/Observation?code=0000-0", Some(&token))
        .await;
    assert_eq!(r.json()["total"], 0);
    assert_eq!(
        node.log_size().await,
        before + 2,
        "nothing touched, nothing logged"
    );
}

#[tokio::test]
async fn fhir_errors_are_operation_outcomes_and_xml_is_406() {
    let node = start();
    let doctor = node.doctor().await;
    let token = node.token(&doctor);
    for (method, uri, status) in [
        (Method::PUT, "/fhir/Observation/abc", 405),
        (Method::DELETE, "/fhir/Observation/abc", 405),
        (Method::PUT, "/fhir/Observation", 405),
        (Method::GET, "/fhir/", 404),
        (Method::GET, "/fhir/Observation/abc/_history/1/x", 404),
    ] {
        let r = node
            .call(
                request(method.clone(), uri, Some(&token))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, status, "{method} {uri}");
        assert!(
            r.content_type().starts_with("application/fhir+json"),
            "{method} {uri}"
        );
        assert_eq!(
            r.json()["resourceType"],
            "OperationOutcome",
            "{method} {uri}"
        );
    }
    for accept in ["application/fhir+xml", "application/xml, text/xml"] {
        let r = node
            .get_with("/fhir/metadata", None, &[("accept", accept)])
            .await;
        assert_eq!(r.status, 406, "{accept}");
        assert_eq!(r.json()["resourceType"], "OperationOutcome");
    }
    let r = node.get("/fhir/metadata?_format=xml", None).await;
    assert_eq!(r.status, 406);
    for accept in [
        "application/fhir+json",
        "application/json",
        "*/*",
        "application/fhir+xml;q=0.9, application/fhir+json",
    ] {
        let r = node
            .get_with("/fhir/metadata", None, &[("accept", accept)])
            .await;
        assert_eq!(r.status, 200, "{accept}");
    }
    // Outside /fhir, problems stay problems.
    let r = node.get("/v1/nothing-here", None).await;
    assert_eq!(r.code(), "not_found");
}

#[tokio::test]
async fn smart_configuration_names_the_token_endpoint_and_the_capability_statement_its_security() {
    let node = start();
    for path in [
        "/.well-known/smart-configuration",
        "/fhir/.well-known/smart-configuration",
    ] {
        let r = node.get_with(path, None, &[("host", "node.example")]).await;
        assert_eq!(r.status, 200, "{path}");
        let c = r.json();
        assert_eq!(c["token_endpoint"], "http://node.example/v1/token");
        assert_eq!(c["grant_types_supported"], json!(["client_credentials"]));
        assert_eq!(
            c["token_endpoint_auth_methods_supported"],
            json!(["private_key_jwt"])
        );
        assert_eq!(
            c["token_endpoint_auth_signing_alg_values_supported"],
            json!(["EdDSA"])
        );
        assert_eq!(c["capabilities"], json!(["client-confidential-asymmetric"]));
        let scopes = c["scopes_supported"].as_array().unwrap();
        assert!(scopes.contains(&json!("system/*.read")));
        assert!(scopes.contains(&json!("purpose/TREAT")));
    }
    let m = node
        .get_with("/fhir/metadata", None, &[("host", "node.example")])
        .await
        .json();
    let security = &m["rest"][0]["security"];
    assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
    assert_eq!(
        security["extension"][0]["extension"][0]["valueUri"],
        "http://node.example/v1/token"
    );
    let imm = m["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Immunization")
        .unwrap()
        .clone();
    let names: Vec<&str> = imm["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"date") && names.contains(&"vaccine-code"),
        "{names:?}"
    );
}

/// The heart rate with a business identifier of the source system.
fn identified(value: &str) -> Value {
    let mut o = observation();
    o["identifier"] = json!([{"system": "https://his.example/observation-id", "value": value}]);
    o
}

#[tokio::test]
async fn fhir_conditional_create_writes_a_retry_once() {
    let node = start();
    let doctor = node.doctor().await;
    node.hold_key(&doctor);
    let token = node.token(&doctor);
    let cond = [(
        "if-none-exist",
        "identifier=https://his.example/observation-id|A-1",
    )];
    let first = node
        .fhir_post_with("/fhir/Observation", &token, &identified("A-1"), &cond)
        .await;
    assert_eq!(first.status, 201, "{}", first.text());
    let id = first.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        first.json()["identifier"][0]["value"],
        "A-1",
        "the business identifier is stored"
    );
    let size = node.log_size().await;
    for _ in 0..2 {
        let again = node
            .fhir_post_with("/fhir/Observation", &token, &identified("A-1"), &cond)
            .await;
        assert_eq!(again.status, 200, "{}", again.text());
        assert_eq!(again.json()["id"], json!(id));
        assert!(
            again.headers[header::LOCATION]
                .to_str()
                .unwrap()
                .contains(&id)
        );
    }
    assert_eq!(node.log_size().await, size, "a retry writes nothing");
    let found = node
        .get(
            "/fhir/Observation?identifier=https://his.example/observation-id|A-1",
            Some(&token),
        )
        .await
        .json();
    assert_eq!(ids_of(&found), std::slice::from_ref(&id));

    // A plain create is not conditional; then the criteria match two: 412.
    let dup = node
        .fhir_post_with("/fhir/Observation", &token, &identified("A-1"), &[])
        .await;
    assert_eq!(dup.status, 201);
    let size = node.log_size().await;
    let r = node
        .fhir_post_with("/fhir/Observation", &token, &identified("A-1"), &cond)
        .await;
    assert_eq!(r.status, 412, "{}", r.text());
    assert_eq!(node.log_size().await, size);

    // A transaction Bundle retried: the second run writes nothing.
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{
            "resource": identified("B-7"),
            "request": {"method": "POST", "url": "Observation",
                        "ifNoneExist": "identifier=https://his.example/observation-id|B-7"}
        }]
    });
    let r = node.fhir_post_with("/fhir", &token, &bundle, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["entry"][0]["response"]["status"], "201 Created");
    let size = node.log_size().await;
    let r = node.fhir_post_with("/fhir", &token, &bundle, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(
        node.log_size().await,
        size,
        "the retried Bundle wrote nothing"
    );

    // Another writer's resource is neither matched nor revealed.
    let other = node.doctor().await;
    node.hold_key(&other);
    let other_token = node.token(&other);
    let r = node
        .fhir_post_with(
            "/fhir/Observation",
            &other_token,
            &identified("B-7"),
            &[(
                "if-none-exist",
                "identifier=https://his.example/observation-id|B-7",
            )],
        )
        .await;
    assert_eq!(r.status, 201);
}

#[tokio::test]
async fn business_identifiers_are_accepted_but_persons_identifiers_are_not() {
    let node = start();
    let doctor = node.doctor().await;
    node.hold_key(&doctor);
    let token = node.token(&doctor);
    for (identifier, why) in [
        (
            json!({"system": "urn:oid:1.2.3.jmbg", "value": "X1"}),
            "a JMBG system",
        ),
        (
            json!({"system": "https://kc.example/lbo", "value": "X1"}),
            "an LBO system",
        ),
        (
            json!({"system": "https://kc.example/mrn", "value": "X1"}),
            "an MRN system",
        ),
        (
            json!({"system": "https://kc.example/patient-ids", "value": "X1"}),
            "a patient id system",
        ),
        (
            json!({"system": "https://his.example/obs", "value": "12345678901"}),
            "an LBO-shaped value",
        ),
        (
            json!({"system": "https://his.example/obs", "value": "0101990710008"}),
            "a JMBG-shaped value",
        ),
        (
            json!({"system": "https://his.example/obs", "value": "ana@kc.rs"}),
            "an e-mail",
        ),
        (
            json!({"system": "https://his.example/obs", "value": "X1",
                   "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}}),
            "a medical record number type",
        ),
    ] {
        let mut o = observation();
        o["identifier"] = json!([identifier]);
        let r = node
            .fhir_post_with("/fhir/Observation", &token, &o, &[])
            .await;
        assert_eq!(r.status, 422, "{why}: {}", r.text());
        assert_eq!(r.json()["issue"][0]["code"], "security", "{why}");
    }
    // Elsewhere `identifier` is refused as before.
    let mut o = observation();
    o["subject"]["identifier"] = json!({"system": "https://his.example/obs", "value": "X1"});
    let r = node
        .fhir_post_with("/fhir/Observation", &token, &o, &[])
        .await;
    assert_eq!(r.status, 422);
    // A source system's own id is accepted.
    let mut o = observation();
    o["identifier"] = json!([{"system": "https://his.example/observation-id", "value": "ORD-2026-0042", "use": "official"}]);
    let r = node
        .fhir_post_with("/fhir/Observation", &token, &o, &[])
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

#[tokio::test]
async fn a_redacted_fhir_record_reads_410_leaves_the_alerts_and_shows_in_everything() {
    let node = start();
    let integration = new_key();
    let dpo = new_key();
    node.submit_ok(&[
        register_tx(&node.admin, &integration, Role::Institution),
        register_tx(&node.admin, &dpo, Role::DataProtectionOfficer),
    ])
    .await;
    node.hold_key(&integration);
    let token = node.token(&integration);
    // A heart rate of 135 raises a NEWS2 alert on its own. Its code's free
    // text carries a marker found nowhere else.
    let mut hr = observation();
    hr["valueQuantity"]["value"] = json!(135);
    let marker = hex::encode(keys::random_bytes::<32>().unwrap());
    hr["code"]["text"] = json!(format!("pulse {marker}"));
    let scan = |dir: &std::path::Path| -> usize {
        let mut found = 0;
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if std::fs::read(&p)
                    .unwrap()
                    .windows(marker.len())
                    .any(|w| w == marker.as_bytes())
                {
                    found += 1;
                }
            }
        }
        found
    };
    let r = node
        .post_to(
            "/fhir/Observation",
            Some(&token),
            hr.to_string().into_bytes(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    node.views_caught_up(&token).await;
    assert_eq!(
        node.get("/v1/alerts", Some(&token)).await.json()["total"],
        1
    );

    let patient = "MFRGGZDFMZTWQ2LKNNWG23TPOA";
    let order = signed(
        &dpo,
        kind::REDACTION,
        &json!({"targets": [id], "basis": "gdpr-art-17", "reason": "subject-request",
                "patient": patient}),
    );
    assert_eq!(scan(node.dir.path()), 1, "the marker is in the segments");
    node.submit_ok(std::slice::from_ref(&order)).await;
    let order_id = id_hex(&order);
    assert_eq!(scan(node.dir.path()), 0, "no file holds the marker");

    let read = node
        .get(&format!("/fhir/Observation/{id}"), Some(&token))
        .await;
    assert_eq!(read.status, 410, "{}", read.text());
    let outcome = read.json();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "deleted");
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains(&order_id),
        "{outcome}"
    );
    let gone = node
        .get(&format!("/v1/transactions/{id}"), Some(&token))
        .await;
    assert_eq!(gone.status, 410, "{}", gone.text());
    assert_eq!(gone.json()["code"], "redacted");
    assert_eq!(gone.json()["redaction"]["id"], order_id.as_str());
    // Its receipt, a header-only proof, is served as before.
    node.get(&format!("/v1/transactions/{id}/receipt"), None)
        .await
        .expect(200, "");

    // The alert it raised is gone: the views were rebuilt without it.
    node.views_caught_up(&token).await;
    let alerts = node.get("/v1/alerts", Some(&token)).await.json();
    assert_eq!(alerts["total"], 0, "{alerts}");

    // $everything shows that it existed and was redacted, nothing more.
    let all = node
        .get(
            &format!("/fhir/Patient/{patient}/$everything"),
            Some(&token),
        )
        .await;
    assert_eq!(all.status, 200, "{}", all.text());
    let entries = all.json()["entry"].as_array().cloned().unwrap_or_default();
    let tomb = entries
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["id"] == id.as_str())
        .expect("the redacted Observation is listed");
    assert_eq!(tomb["resourceType"], "OperationOutcome");
    assert_eq!(tomb["issue"][0]["code"], "deleted");
    assert!(tomb.get("valueQuantity").is_none(), "{tomb}");
    assert!(
        entries
            .iter()
            .all(|e| e["resource"]["resourceType"] != "Observation"),
        "{entries:?}"
    );
}
