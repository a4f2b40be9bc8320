//! The client against real nodes served in-process: every read is verified,
//! and a tampered answer, a wrong key or a forked history is refused.

use axum::Router;
use axum::routing::get;
use ed25519_dalek::SigningKey;
use medledger_client::{Client, Error, Inconsistency, Trust, Verdict, VerifyError};
use medledger_formats::keys;
use medledger_formats::note::NoteSigner;
use medledger_formats::receipt::TlogProof;
use medledger_formats::tx::Transaction;
use medledger_ledger::{Ledger, RegisterPayload, Role, kind, now_ms, read_key_file};
use medledger_node::http::{AppState, router};
use medledger_node::{NodeConfig, Sequencer, SequencerConfig, Tokens, issue_token};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const ORIGIN: &str = "medledger.test/client";

/// A node serving `dir` on an ephemeral port until dropped; dropping it
/// stops the server, then shuts the sequencer down so the ledger is closed.
struct Node {
    url: String,
    rt: Option<tokio::runtime::Runtime>,
    seq: Option<Arc<Sequencer>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(10));
        }
        if let Some(seq) = self.seq.take().and_then(|s| Arc::try_unwrap(s).ok()) {
            let _ = seq.shutdown();
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn serve_router(app: Router, seq: Option<Arc<Sequencer>>) -> Node {
    let rt = runtime();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(async move { axum::serve(listener, app).await });
    Node {
        url,
        rt: Some(rt),
        seq,
    }
}

fn serve(dir: &Path) -> Node {
    serve_with(dir, |app| app)
}

/// Like [`serve`], with the router wrapped by `wrap`.
fn serve_with(dir: &Path, wrap: impl FnOnce(Router) -> Router) -> Node {
    let ledger = Ledger::open(dir).unwrap();
    let cosigner =
        medledger_node::http::node_cosigner(ledger.store.origin(), &ledger.node_key, None).unwrap();
    let node_key = ledger.node_key.clone();
    let (seq, log) = Sequencer::local(ledger, SequencerConfig::default());
    let seq = Arc::new(seq);
    let state = Arc::new(AppState {
        views: medledger_node::Views::follow(&log, 60),
        seq: seq.clone(),
        log,
        tokens: Tokens::new(dir),
        config: NodeConfig::default(),
        metrics: None,
        cluster: None,
        health: Default::default(),
        cosigner: Arc::new(cosigner),
        peers: Arc::default(),
        budgets: medledger_node::http::Budgets::new(NodeConfig::default().max_concurrency),
        node_key,
    });
    serve_router(wrap(router(state)), Some(seq))
}

/// A fresh ledger directory; returns it and the node's vkey.
fn ledger() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let report = Ledger::init(dir.path(), ORIGIN, "Test").unwrap();
    (dir, report.vkey)
}

fn admin(dir: &Path) -> SigningKey {
    read_key_file(&dir.join("admin.key")).unwrap()
}

fn register(admin: &SigningKey, doctor: &SigningKey) -> Transaction {
    let p = RegisterPayload {
        key: keys::public_key(doctor),
        role: Role::Doctor,
        institution: "Test".into(),
        label: String::new(),
        patient: None,
        cluster: None,
    };
    Transaction::sign(
        admin,
        kind::REGISTER,
        now_ms(),
        &serde_json::to_value(p).unwrap(),
    )
    .unwrap()
}

fn report(doctor: &SigningKey, i: usize) -> Transaction {
    Transaction::sign(
        doctor,
        kind::MEDICAL_REPORT,
        now_ms(),
        &json!({
            "patient": medledger_health::pseudonym::synthetic(i as u64),
            "institution": "Test",
            "encounter_date": "2026-11-24",
            "diagnoses": ["J10.1"],
        }),
    )
    .unwrap()
}

/// A node with one registered doctor; returns the client, doctor and dir.
fn node_with_doctor() -> (tempfile::TempDir, Node, Client, SigningKey) {
    let (dir, vkey) = ledger();
    let node = serve(dir.path());
    let client = Client::from_vkey(&node.url, &vkey).unwrap();
    let doctor = keys::generate().unwrap();
    client
        .submit(&register(&admin(dir.path()), &doctor))
        .unwrap();
    (dir, node, client, doctor)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target: PathBuf = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn submitted_transactions_come_back_with_verified_receipts() {
    let (_dir, _node, client, doctor) = node_with_doctor();
    let tx = report(&doctor, 0);
    let r = client.submit(&tx).unwrap();
    assert_eq!(r.id, *tx.id());
    assert_eq!(r.index, 2, "genesis and the registration come first");
    assert!(r.height.is_some());
    assert!(r.index < r.checkpoint.size);

    // A batch: two new transactions and one already logged.
    let batch = vec![report(&doctor, 1), tx.clone(), report(&doctor, 2)];
    let results = client.submit_batch(&batch).unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].as_ref().unwrap().id, *batch[0].id());
    let dup = results[1].as_ref().unwrap_err().problem().unwrap();
    assert_eq!((dup.status, dup.code.as_str()), (409, "duplicate"));
    assert_eq!(results[2].as_ref().unwrap().id, *batch[2].id());

    // A single refused transaction is a typed problem, not a transport error.
    let stranger = keys::generate().unwrap();
    let err = client.submit(&report(&stranger, 3)).unwrap_err();
    let p = err.problem().expect("a problem");
    assert_eq!(p.status, 403);
    assert!(!p.code.is_empty() && !p.detail.is_empty());
}

/// `tx` re-signed with the identity point as R and S = k·a, where a is the
/// author's secret scalar and k = SHA-512(R || A || message): then
/// `[S]B = R + [k]A` holds exactly. Only the author can make it (it reveals
/// a = S/k). The strict rule refused it, a cofactorless batch accepted it.
fn identity_r(author: &SigningKey, tx: &Transaction) -> Transaction {
    use sha2::Digest;
    let mut r = [0u8; 32];
    r[0] = 1;
    let k = curve25519_dalek::Scalar::from_hash(
        sha2::Sha512::new()
            .chain_update(r)
            .chain_update(author.verifying_key().as_bytes())
            .chain_update(tx.signing_message()),
    );
    let mut wire = tx.to_wire().unwrap();
    wire.signature.0[..32].copy_from_slice(&r);
    wire.signature.0[32..].copy_from_slice((k * author.to_scalar()).as_bytes());
    Transaction::from_wire(wire).unwrap()
}

/// Issue 13: such signatures used to pass admission in a batch of four and
/// then fail `medledger receipt verify`. Every path now applies ZIP-215,
/// under which they are valid: single check, batch check, the node's
/// admission (one batch of four, and one alone) and the receipt check.
#[test]
fn identity_r_signature_gets_one_verdict_from_admission_to_receipt() {
    let (_dir, _node, client, doctor) = node_with_doctor();
    let crafted: Vec<Transaction> = (0..5)
        .map(|i| identity_r(&doctor, &report(&doctor, 10 + i)))
        .collect();
    for tx in &crafted {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(tx.signature()[..32], identity, "R is the identity point");
        assert_eq!(tx.verify_signature(), Ok(()), "single path");
    }
    let batch: Vec<&Transaction> = crafted[..4].iter().collect();
    for _ in 0..50 {
        assert!(
            Transaction::verify_signatures(&batch)
                .iter()
                .all(Result::is_ok),
            "batch path"
        );
    }

    // Admission: four in one request (one batch equation), then one alone.
    let results = client.submit_batch(&crafted[..4]).unwrap();
    let mut admitted: Vec<&Transaction> = Vec::new();
    for (r, tx) in results.iter().zip(&crafted) {
        assert_eq!(r.as_ref().expect("admitted in a batch").id, *tx.id());
        admitted.push(tx);
    }
    assert_eq!(client.submit(&crafted[4]).unwrap().id, *crafted[4].id());
    admitted.push(&crafted[4]);

    // The receipt the node issued verifies with the author's signature, as
    // `medledger receipt verify` checks it.
    for tx in admitted {
        let r = client.receipt(tx.id()).unwrap();
        assert_eq!(r.id, *tx.id());
        let proof = TlogProof::parse(&r.text).unwrap();
        assert_eq!(proof.extra.as_deref(), Some(tx.leaf_preimage().as_slice()));
    }
}

#[test]
fn reads_are_verified_transaction_receipt_checkpoint_blocks() {
    let (dir, _node, client, doctor) = node_with_doctor();
    let tx = report(&doctor, 0);
    client.submit(&tx).unwrap();
    let token = issue_token(dir.path(), keys::public_key(&doctor), now_ms()).unwrap();

    let got = client.transaction(tx.id(), &token).unwrap();
    assert_eq!(got.tx, tx);
    assert_eq!(got.receipt.id, *tx.id());
    let err = client.transaction(tx.id(), "mlt_nope").unwrap_err();
    assert_eq!(err.problem().map(|p| p.status), Some(401));

    let r = client.receipt(tx.id()).unwrap();
    assert_eq!(r.index, got.receipt.index);
    let missing = client.receipt(&[0x42; 32]).unwrap_err();
    assert_eq!(missing.problem().map(|p| p.status), Some(404));

    // Genesis, the registration, the report, and the access entry of the
    // one read that reached it.
    let cp = client.checkpoint().unwrap();
    assert_eq!(cp.checkpoint.size, 4);
    assert_eq!(client.status().unwrap().log_size, 4);

    let page = client.blocks(0, 100).unwrap();
    let txs: usize = page.blocks.iter().map(|(b, _)| b.transactions.len()).sum();
    assert_eq!(txs, 4);
    assert_eq!(page.next, None);
    let (b, sealed) = client.block(0).unwrap();
    assert_eq!(b.height, 0);
    assert_eq!(sealed.header().log_size, 1);

    let people = client.participants(&token).unwrap();
    assert!(people.iter().any(|p| p.key == keys::public_key(&doctor)));
}

#[test]
fn trust_on_first_use_takes_the_status_key() {
    let (_dir, vkey) = ledger();
    let dir = _dir;
    let node = serve(dir.path());
    let (client, status) = Client::trust_on_first_use(&node.url).unwrap();
    assert_eq!(status.vkey, vkey);
    assert_eq!(client.trust().origin(), ORIGIN);
    client.checkpoint().unwrap();
}

#[test]
fn a_wrong_vkey_is_refused() {
    let (dir, _vkey) = ledger();
    let node = serve(dir.path());
    // Same origin name, another key.
    let impostor = NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[7; 32])).unwrap();
    let client = Client::new(&node.url, Trust::new(ORIGIN, vec![impostor.verifier()])).unwrap();
    assert!(matches!(client.checkpoint(), Err(Error::Verify(_))));
    assert!(matches!(client.status(), Err(Error::Verify(_))));
    let doctor = keys::generate().unwrap();
    let err = client
        .submit(&register(&admin(dir.path()), &doctor))
        .unwrap_err();
    assert!(
        matches!(err, Error::Verify(VerifyError::Receipt(_))),
        "{err}"
    );
    // And a client trusting another origin refuses the right key's notes too.
    let real = Trust::from_vkey(&_vkey).unwrap();
    let other = Client::new(
        &node.url,
        Trust::new("medledger.test/other", real.verifiers().to_vec()),
    )
    .unwrap();
    assert!(matches!(other.checkpoint(), Err(Error::Verify(_))));
}

/// Serves canned bodies for one transaction's receipt and record.
fn fake_node(receipt: String, record: serde_json::Value) -> Node {
    let app = Router::new()
        .route(
            "/v1/transactions/{id}/receipt",
            get(move || {
                let r = receipt.clone();
                async move { r }
            }),
        )
        .route(
            "/v1/transactions/{id}",
            get(move || {
                let v = record.clone();
                async move { axum::Json(v) }
            }),
        );
    serve_router(app, None)
}

#[test]
fn a_tampered_receipt_or_record_is_refused() {
    let (dir, _node, client, doctor) = node_with_doctor();
    let tx = report(&doctor, 0);
    let other = report(&doctor, 1);
    let good = client.submit(&tx).unwrap();
    client.submit(&other).unwrap();
    let token = issue_token(dir.path(), keys::public_key(&doctor), now_ms()).unwrap();
    let record = client
        .get_record_json(&tx, &token)
        .expect("record of the real node");
    let trust = client.trust().clone();

    let parsed = TlogProof::parse(&good.text).unwrap();
    let mut tampered = Vec::new();
    let mut p = parsed.clone();
    p.proof[0][0] ^= 1;
    tampered.push(("flipped proof hash", p.render()));
    let mut p = parsed.clone();
    p.index += 1;
    tampered.push(("moved index", p.render()));
    let mut p = parsed.clone();
    p.extra = Some(other.leaf_preimage());
    tampered.push(("another transaction's extra", p.render()));
    let mut p = parsed.clone();
    p.extra = None;
    tampered.push(("no extra", p.render()));
    tampered.push((
        "checkpoint signature changed",
        good.text.replacen(
            "\u{2014} medledger.test/client ",
            "\u{2014} medledger.test/client AAAA",
            1,
        ),
    ));

    for (what, text) in tampered {
        let fake = fake_node(text.clone(), record.clone());
        let c = Client::new(&fake.url, trust.clone()).unwrap();
        let err = c.receipt(tx.id()).unwrap_err();
        assert!(matches!(err, Error::Verify(_)), "{what}: {err}");
        let mut rec = record.clone();
        rec["receipt"] = json!(text);
        let fake = fake_node(String::new(), rec);
        let c = Client::new(&fake.url, trust.clone()).unwrap();
        let err = c.transaction(tx.id(), &token).unwrap_err();
        assert!(matches!(err, Error::Verify(_)), "{what}: {err}");
    }

    // The payload changed: the commitment no longer matches.
    let mut rec = record.clone();
    rec["transaction"]["payload"]["i"] = json!(99);
    let fake = fake_node(String::new(), rec);
    let err = Client::new(&fake.url, trust.clone())
        .unwrap()
        .transaction(tx.id(), &token)
        .unwrap_err();
    assert!(
        matches!(err, Error::Verify(VerifyError::Transaction(_))),
        "{err}"
    );

    // Another (genuine, verifiable) transaction served for the id asked.
    let mut rec = client.get_record_json(&other, &token).unwrap();
    rec["id"] = json!(hex::encode(tx.id()));
    let fake = fake_node(String::new(), rec);
    let err = Client::new(&fake.url, trust.clone())
        .unwrap()
        .transaction(tx.id(), &token)
        .unwrap_err();
    assert!(
        matches!(err, Error::Verify(VerifyError::IdMismatch { .. })),
        "{err}"
    );

    // The untouched record verifies through the fake node too.
    let fake = fake_node(good.text.clone(), record);
    let c = Client::new(&fake.url, trust).unwrap();
    c.receipt(tx.id()).unwrap();
    c.transaction(tx.id(), &token).unwrap();
}

/// Raw JSON of `GET /v1/transactions/{id}` for building fakes.
trait RawRecord {
    fn get_record_json(&self, tx: &Transaction, token: &str) -> Option<serde_json::Value>;
}

impl RawRecord for Client {
    fn get_record_json(&self, tx: &Transaction, token: &str) -> Option<serde_json::Value> {
        reqwest::blocking::Client::new()
            .get(format!(
                "{}/v1/transactions/{}",
                self.url(),
                hex::encode(tx.id())
            ))
            .bearer_auth(token)
            .send()
            .ok()?
            .json()
            .ok()
    }
}

#[test]
fn checkpoints_that_extend_pass_and_forks_are_caught_with_evidence() {
    let (dir_a, vkey) = ledger();
    let doctor = keys::generate().unwrap();
    let reg = register(&admin(dir_a.path()), &doctor);
    {
        // Both copies share genesis and the registration.
        let node = serve(dir_a.path());
        Client::from_vkey(&node.url, &vkey)
            .unwrap()
            .submit(&reg)
            .unwrap();
    }
    let dir_b = tempfile::tempdir().unwrap();
    copy_dir(dir_a.path(), dir_b.path());
    let a = serve(dir_a.path());
    let b = serve(dir_b.path());
    let ca = Client::from_vkey(&a.url, &vkey).unwrap();
    let cb = Client::from_vkey(&b.url, &vkey).unwrap();

    let base = ca.checkpoint().unwrap();
    assert_eq!(base.checkpoint.size, 2);
    assert!(matches!(
        ca.compare(&base, &base).unwrap(),
        Verdict::Unchanged
    ));

    ca.submit(&report(&doctor, 1)).unwrap();
    let a3 = ca.checkpoint().unwrap();
    match ca.compare(&base, &a3).unwrap() {
        Verdict::Extends(p) => assert_eq!((p.from, p.to), (2, 3)),
        other => panic!("expected Extends, got {other:?}"),
    }

    // B writes different transactions: same size, different root.
    cb.submit(&report(&doctor, 2)).unwrap();
    let b3 = cb.checkpoint().unwrap();
    let Verdict::Inconsistent(ev) = cb.compare(&a3, &b3).unwrap() else {
        panic!("equal sizes, different roots must be a fork");
    };
    assert_eq!(ev.kind, Inconsistency::Fork);
    assert!(ev.proof.is_none());

    // B grows past A: its proof from 3 cannot match A's root at 3.
    cb.submit(&report(&doctor, 3)).unwrap();
    let b4 = cb.checkpoint().unwrap();
    let Verdict::Inconsistent(ev) = cb.compare(&a3, &b4).unwrap() else {
        panic!("a longer fork must be caught");
    };
    assert_eq!(ev.kind, Inconsistency::Fork);
    let shown = ev.to_string();
    assert!(shown.starts_with("FORK DETECTED: consistency proof from 3 to 4 does not verify"));
    assert!(shown.contains(&a3.note) && shown.contains(&b4.note));
    assert!(ev.proof.as_ref().is_some_and(|p| !p.proof.is_empty()));

    // A node that went back in time cannot prove its tree is a prefix.
    let Verdict::Inconsistent(ev) = ca.compare(&b4, &a3).unwrap() else {
        panic!("a shrunken log must be caught");
    };
    assert_eq!(ev.kind, Inconsistency::Fork);
    assert_eq!(ev.asked, Some((3, 4)));
}

#[test]
fn a_proven_rollback_is_reported_as_rollback_and_a_bad_proof_as_fork() {
    use base64::Engine as _;
    use medledger_formats::checkpoint::Checkpoint;
    use medledger_formats::merkle::{self, MemTree};
    let log = NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[3; 32])).unwrap();
    let trust = Trust::new(ORIGIN, vec![log.verifier()]);
    let leaves: Vec<_> = (0..5u8).map(|i| merkle::leaf_hash(&[i])).collect();
    let signed = |n: usize| {
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            size: n as u64,
            root: MemTree::from_leaves(&leaves[..n]).root(),
            extensions: vec![],
        };
        trust.checkpoint(&cp.sign(&log).unwrap().render()).unwrap()
    };
    let (old, new) = (signed(5), signed(3));
    let proof = merkle::consistency_proof(&MemTree::from_leaves(&leaves), 3, 5).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let serve_proof = |hashes: Vec<String>| {
        let body = json!({"from": 3, "to": 5, "proof": hashes});
        serve_router(
            Router::new().route(
                "/v1/proofs/consistency",
                get(move || {
                    let b = body.clone();
                    async move { axum::Json(b) }
                }),
            ),
            None,
        )
    };

    let good = serve_proof(proof.iter().map(|h| b64.encode(h)).collect());
    let c = Client::new(&good.url, trust.clone()).unwrap();
    let Verdict::Inconsistent(ev) = c.compare(&old, &new).unwrap() else {
        panic!("a smaller tree is never consistent progress");
    };
    assert_eq!(ev.kind, Inconsistency::Rollback);
    assert!(ev.to_string().starts_with("ROLLBACK DETECTED"));

    let mut bad = proof.clone();
    bad[0][0] ^= 1;
    let forged = serve_proof(bad.iter().map(|h| b64.encode(h)).collect());
    let c = Client::new(&forged.url, trust).unwrap();
    let Verdict::Inconsistent(ev) = c.compare(&old, &new).unwrap() else {
        panic!("a bad proof must be caught");
    };
    assert_eq!(ev.kind, Inconsistency::Fork);
    assert!(ev.failed.contains("does not verify"), "{}", ev.failed);
}

/// Wraps a router so that the first `lose` POSTs are carried out but
/// answered `503`, as when an answer is lost after the node committed;
/// counts every POST in `posts`.
fn losing_answers(
    lose: usize,
    posts: Arc<std::sync::atomic::AtomicUsize>,
) -> impl FnOnce(Router) -> Router {
    use axum::http::{Method, StatusCode};
    use axum::response::IntoResponse;
    use std::sync::atomic::Ordering;
    move |app| {
        app.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let posts = posts.clone();
                async move {
                    let post = req.method() == Method::POST;
                    let n = if post {
                        posts.fetch_add(1, Ordering::SeqCst)
                    } else {
                        usize::MAX
                    };
                    let resp = next.run(req).await;
                    if post && n < lose {
                        return (StatusCode::SERVICE_UNAVAILABLE, "lost").into_response();
                    }
                    resp
                }
            },
        ))
    }
}

#[test]
fn a_submission_whose_answer_was_lost_is_resent_and_its_receipt_verified() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (dir, vkey) = ledger();
    let posts = Arc::new(AtomicUsize::new(0));
    let node = serve_with(dir.path(), losing_answers(2, posts.clone()));
    let quick = medledger_client::Retry {
        retries: 3,
        min_delay: std::time::Duration::from_millis(10),
        max_delay: std::time::Duration::from_millis(50),
    };
    let client = Client::from_vkey(&node.url, &vkey)
        .unwrap()
        .with_retry(quick);
    let doctor = keys::generate().unwrap();
    // Committed at the first POST, answered 503 twice: the third POST is
    // answered 409 duplicate, which after a resend means success.
    let reg = register(&admin(dir.path()), &doctor);
    let r = client.submit(&reg).unwrap();
    assert_eq!(posts.load(Ordering::SeqCst), 3);
    assert_eq!(r.id, *reg.id());
    assert_eq!(
        r.index, 1,
        "the genesis is leaf 0; the registration is in once"
    );
    assert_eq!(client.checkpoint().unwrap().checkpoint.size, 2);

    // A batch the same way: both answers lost, every item found committed.
    posts.store(0, Ordering::SeqCst);
    let txs = [report(&doctor, 1), report(&doctor, 2)];
    let items = client.submit_batch(&txs).unwrap();
    assert_eq!(posts.load(Ordering::SeqCst), 3);
    let indexes: Vec<u64> = items.iter().map(|i| i.as_ref().unwrap().index).collect();
    assert_eq!(indexes, [2, 3]);
    assert_eq!(client.checkpoint().unwrap().checkpoint.size, 4);

    // A duplicate on the first attempt is the caller's own, not a retry's.
    let again = client.submit(&txs[0]).unwrap_err();
    assert_eq!(again.problem().map(|p| p.code.as_str()), Some("duplicate"));

    // Without retries the lost answer is the caller's to handle.
    posts.store(0, Ordering::SeqCst);
    let client = client.with_retry(medledger_client::Retry::NONE);
    let lost = client.submit(&report(&doctor, 3)).unwrap_err();
    assert_eq!(lost.problem().map(|p| p.status), Some(503));
    assert_eq!(posts.load(Ordering::SeqCst), 1);
}

#[test]
fn a_refusal_is_not_retried() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (dir, vkey) = ledger();
    let posts = Arc::new(AtomicUsize::new(0));
    let node = serve_with(dir.path(), losing_answers(0, posts.clone()));
    let client = Client::from_vkey(&node.url, &vkey).unwrap();
    let stranger = keys::generate().unwrap();
    let e = client.submit(&report(&stranger, 0)).unwrap_err();
    assert_eq!(e.problem().map(|p| p.status), Some(403));
    assert_eq!(posts.load(Ordering::SeqCst), 1);
}
