//! `medledger serve` as a real process over real sockets: concurrent clients
//! racing with fresh, duplicate and forged transactions; hostile bodies and
//! bytes; replays across a restart; revoked authors and tokens; and SIGTERM
//! while clients are writing. After each, every acknowledged transaction is
//! in the ledger, nothing refused is, and `medledger verify` passes.

mod common;

use common::*;
use ed25519_dalek::SigningKey;
use medledger_formats::keys;
use medledger_formats::tx::Transaction;
use medledger_ledger::{Role, kind, now_ms};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

/// Status and body (JSON when it parses, else a JSON string) of a response.
fn answer(r: reqwest::Result<reqwest::blocking::Response>) -> (u16, Value) {
    let r = r.expect("request");
    let status = r.status().as_u16();
    let is_problem = r
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes() == b"application/problem+json");
    let text = r.text().expect("body");
    if status >= 400 {
        assert!(is_problem, "status {status} is not a problem: {text}");
    }
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

fn post_raw(
    http: &reqwest::blocking::Client,
    s: &Server,
    body: impl Into<reqwest::blocking::Body>,
    content_type: Option<&str>,
) -> reqwest::Result<reqwest::blocking::Response> {
    let mut req = http.post(s.url("/v1/transactions")).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.send()
}

fn post(http: &reqwest::blocking::Client, s: &Server, v: &Value) -> (u16, Value) {
    answer(post_raw(
        http,
        s,
        serde_json::to_vec(v).unwrap(),
        Some("application/json"),
    ))
}

fn wire(tx: &Transaction) -> Value {
    serde_json::to_value(tx.to_wire().expect("wire")).expect("json")
}

fn id_hex(tx: &Transaction) -> String {
    hex::encode(tx.id())
}

/// The wire form with one signature digit changed, and the id it would have.
fn forged(tx: &Transaction) -> (Value, String) {
    let mut w = wire(tx);
    let sig = w["signature"].as_str().unwrap().to_owned();
    let first = if sig.starts_with('0') { "1" } else { "0" };
    w["signature"] = json!(format!("{first}{}", &sig[1..]));
    let id = id_hex(&Transaction::from_wire(serde_json::from_value(w.clone()).unwrap()).unwrap());
    (w, id)
}

fn register_as(admin: &SigningKey, key: &SigningKey, role: Role) -> Transaction {
    let payload =
        json!({"key": keys::public_key(key), "role": role, "institution": "Klinicki centar Nis"});
    Transaction::sign(admin, kind::REGISTER, now_ms(), &payload).expect("sign register")
}

/// Submits a batch that must be committed whole.
fn submit_ok(http: &reqwest::blocking::Client, s: &Server, txs: &[Transaction]) {
    let (status, body) = post(http, s, &Value::Array(txs.iter().map(wire).collect()));
    assert_eq!(status, 200, "{body}");
    for r in body["results"].as_array().unwrap() {
        assert_eq!(r["status"], 200, "{r}");
    }
}

fn get_tx(http: &reqwest::blocking::Client, s: &Server, id: &str, token: &str) -> u16 {
    let r = http
        .get(s.url(&format!("/v1/transactions/{id}")))
        .bearer_auth(token)
        .send();
    let (status, body) = answer(r);
    if status == 200 {
        assert_eq!(body["id"], id);
    }
    status
}

fn log_size(http: &reqwest::blocking::Client, s: &Server) -> u64 {
    let (status, body) = answer(http.get(s.url("/v1/status")).send());
    assert_eq!(status, 200);
    body["log_size"].as_u64().expect("log_size")
}

/// Access entries the node has logged: one per record-level read that
/// reached a record (from its `/metrics`).
fn access_entries(http: &reqwest::blocking::Client, s: &Server) -> u64 {
    let text = http
        .get(s.url("/metrics"))
        .send()
        .and_then(|r| r.text())
        .expect("metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("medledger_access_entries_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// `medledger verify --json`: passes, and returns the number of transactions.
fn verified_transactions(dir: &Path) -> u64 {
    let out = bin()
        .arg("verify")
        .arg(dir)
        .arg("--json")
        .output()
        .expect("run verify");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "verify must pass: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(text.trim()).expect("verify --json output");
    v["transactions"].as_u64().expect("transactions")
}

fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    (tmp, dir)
}

/// What many client threads saw, collected.
type Log<T> = Arc<Mutex<Vec<T>>>;

/// What one client sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sent {
    Fresh,
    Shared,
    Forged,
}

#[test]
fn racing_clients_acknowledged_transactions_are_all_in_the_verified_ledger() {
    const CLIENTS: usize = 64;
    const ROUNDS: usize = 4;
    const SHARED: usize = 48;
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir, &[]);
    let http = client();
    let admin = admin_key(&dir);
    let doctors: Vec<SigningKey> = (0..8).map(|_| keys::generate().unwrap()).collect();
    let auditor = keys::generate().unwrap();
    let mut regs: Vec<Transaction> = doctors
        .iter()
        .map(|d| register_as(&admin, d, Role::Doctor))
        .collect();
    regs.push(register_as(&admin, &auditor, Role::Auditor));
    submit_ok(&http, &server, &regs);
    let token = issue_token(&dir, &auditor);

    // Transactions every client tries to get in: exactly one may win each.
    let shared: Arc<Vec<Transaction>> = Arc::new(
        (0..SHARED)
            .map(|i| report_tx(&doctors[i % doctors.len()], i as u64))
            .collect(),
    );
    let seen: Log<(String, Sent, u16, String)> = Arc::default();
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let (shared, seen, barrier) = (shared.clone(), seen.clone(), barrier.clone());
            let doctor = doctors[t % doctors.len()].clone();
            let base = server.base.clone();
            std::thread::spawn(move || {
                let http = client();
                let url = format!("{base}/v1/transactions");
                let mut out = Vec::new();
                barrier.wait();
                for round in 0..ROUNDS {
                    let n = (t * ROUNDS + round) as u64;
                    let fresh = report_tx(&doctor, 1_000_000 + n);
                    let fresh2 = report_tx(&doctor, 2_000_000 + n);
                    let (bad, bad_id) = forged(&report_tx(&doctor, 3_000_000 + n));
                    let a = &shared[(t + round) % SHARED];
                    let b = &shared[(t * 7 + round * 3) % SHARED];
                    let items: Vec<(Value, String, Sent)> = vec![
                        (wire(&fresh), id_hex(&fresh), Sent::Fresh),
                        (wire(a), id_hex(a), Sent::Shared),
                        (bad, bad_id, Sent::Forged),
                        (wire(b), id_hex(b), Sent::Shared),
                        (wire(&fresh2), id_hex(&fresh2), Sent::Fresh),
                    ];
                    if (t + round) % 2 == 0 {
                        // One batch.
                        let body = Value::Array(items.iter().map(|i| i.0.clone()).collect());
                        let r = http
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(serde_json::to_vec(&body).unwrap())
                            .send();
                        let (status, v) = answer(r);
                        assert_eq!(status, 200, "{v}");
                        let results = v["results"].as_array().unwrap();
                        assert_eq!(results.len(), items.len());
                        for ((_, id, sent), r) in items.iter().zip(results) {
                            let code = r["problem"]["code"].as_str().unwrap_or("").to_owned();
                            out.push((
                                id.clone(),
                                *sent,
                                r["status"].as_u64().unwrap() as u16,
                                code,
                            ));
                        }
                    } else {
                        // One request each.
                        for (w, id, sent) in items {
                            let r = http
                                .post(&url)
                                .header("content-type", "application/json")
                                .body(serde_json::to_vec(&w).unwrap())
                                .send();
                            let (status, v) = answer(r);
                            let code = v["code"].as_str().unwrap_or("").to_owned();
                            out.push((id, sent, status, code));
                        }
                    }
                }
                seen.lock().unwrap().extend(out);
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(seen.len(), CLIENTS * ROUNDS * 5);

    let mut wins: BTreeMap<&str, usize> = BTreeMap::new();
    let mut refused = BTreeSet::new();
    for (id, sent, status, code) in &seen {
        match (sent, *status, code.as_str()) {
            (Sent::Fresh, 200, _) | (Sent::Shared, 200, _) => {
                *wins.entry(id.as_str()).or_default() += 1;
            }
            (Sent::Shared, 409, "duplicate") => {
                wins.entry(id.as_str()).or_default();
            }
            (Sent::Forged, 401, "bad_signature") => {
                refused.insert(id.as_str());
            }
            other => panic!("{id}: unexpected outcome {other:?}"),
        }
    }
    for (id, n) in &wins {
        assert_eq!(*n, 1, "{id} must be acknowledged exactly once");
    }
    let shared_ids: BTreeSet<String> = shared.iter().map(id_hex).collect();
    let tried: BTreeSet<String> = seen
        .iter()
        .filter(|s| s.1 == Sent::Shared)
        .map(|s| s.0.clone())
        .collect();
    assert!(tried.is_subset(&shared_ids));

    // Every acknowledged id reads back; nothing refused does.
    for id in wins.keys() {
        assert_eq!(get_tx(&http, &server, id, &token), 200, "acknowledged {id}");
    }
    for id in &refused {
        assert_eq!(get_tx(&http, &server, id, &token), 404, "refused {id}");
    }
    let leaves = log_size(&http, &server);
    eprintln!(
        "{} submissions: {} acknowledged, {} forged refused, {leaves} leaves",
        seen.len(),
        wins.values().sum::<usize>(),
        refused.len()
    );
    // Each acknowledged id read back was logged as an access entry.
    assert_eq!(access_entries(&http, &server), wins.len() as u64);
    assert_eq!(leaves, 1 + regs.len() as u64 + 2 * wins.len() as u64);
    server.stop();
    assert_eq!(verified_transactions(&dir), leaves);
}

#[test]
fn hostile_bodies_over_a_real_socket_get_problems_and_the_node_stays_up() {
    let (_tmp, dir) = data_dir();
    let max = 64 * 1024;
    let server = Server::start(
        &dir,
        &[
            ("MEDLEDGER_MAX_BODY_BYTES", &max.to_string()),
            ("MEDLEDGER_MAX_BATCH", "16"),
        ],
    );
    // A fresh connection per request: the node answers an oversize body
    // before reading it and then closes the connection (it cannot find the
    // next request's start), so a pooled connection could be reused just as
    // it closes.
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .build()
        .expect("HTTP client");
    let admin = admin_key(&dir);
    let doctor = keys::generate().unwrap();
    submit_ok(
        &http,
        &server,
        &[register_as(&admin, &doctor, Role::Doctor)],
    );
    let code = |r: (u16, Value)| (r.0, r.1["code"].as_str().unwrap_or("").to_owned());
    let expect = |r: (u16, Value), status: u16, c: &str| {
        assert_eq!(code(r), (status, c.to_owned()));
    };

    // Garbage.
    let mut rng = Rng::new(seed("hostile_bodies"));
    for _ in 0..20 {
        let bytes: Vec<u8> = (0..1 + rng.below(2000))
            .map(|_| rng.next_u64() as u8)
            .collect();
        let bytes = if bytes[0] == b'[' || bytes[0] == b'{' {
            bytes[1..].to_vec()
        } else {
            bytes
        };
        let r = answer(post_raw(&http, &server, bytes, Some("application/json")));
        assert!(matches!(r.0, 400 | 422), "{r:?}");
    }
    for body in [&b"{"[..], b"", b"\xff\xfe", b"[1,2", b"nul"] {
        let r = answer(post_raw(
            &http,
            &server,
            body.to_vec(),
            Some("application/json"),
        ));
        expect(r, 400, "malformed_json");
    }
    expect(
        post(&http, &server, &json!({"header": 1})),
        422,
        "schema_violation",
    );
    expect(post(&http, &server, &json!([])), 422, "schema_violation");

    // Wrong content types.
    let good = || serde_json::to_vec(&wire(&report_tx(&doctor, 1))).unwrap();
    for ct in [
        None,
        Some("text/plain"),
        Some("application/xml"),
        Some("application/json-seq"),
    ] {
        expect(
            answer(post_raw(&http, &server, good(), ct)),
            415,
            "unsupported_media_type",
        );
    }

    // Oversize, with a Content-Length and chunked; an oversize batch.
    let mut big = b"[".to_vec();
    big.resize(max + 4096, b' ');
    expect(
        answer(post_raw(
            &http,
            &server,
            big.clone(),
            Some("application/json"),
        )),
        413,
        "body_too_large",
    );
    let chunked = reqwest::blocking::Body::new(std::io::Cursor::new(big));
    expect(
        answer(post_raw(&http, &server, chunked, Some("application/json"))),
        413,
        "body_too_large",
    );
    let batch: Vec<Value> = (0..17).map(|i| wire(&report_tx(&doctor, i))).collect();
    expect(
        post(&http, &server, &Value::Array(batch)),
        413,
        "batch_too_large",
    );

    // Bytes that are not HTTP, a truncated body, a client that goes away.
    let addr = server.base.trim_start_matches("http://").to_owned();
    let raw = |bytes: &[u8]| {
        let mut s = TcpStream::connect(&addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(bytes).expect("write");
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    let reply = raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage-not-http\r\n\r\n");
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 400"),
        "{reply}"
    );
    raw(b"POST /v1/transactions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"header\":");
    raw(format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200_000)
    )
    .as_bytes());
    drop(TcpStream::connect(&addr).expect("connect"));

    // Still healthy, still writing, and the ledger verifies.
    assert_eq!(answer(http.get(server.url("/readyz")).send()).0, 200);
    let tx = report_tx(&doctor, 99);
    assert_eq!(post(&http, &server, &wire(&tx)).0, 200);
    let leaves = log_size(&http, &server);
    assert_eq!(leaves, 3, "genesis, the registration, one report");
    server.stop();
    assert_eq!(verified_transactions(&dir), leaves);
}

#[test]
fn replays_stay_refused_across_a_restart_and_revoked_authors_and_tokens_lose_access() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir, &[]);
    let http = client();
    let admin = admin_key(&dir);
    let doctor = keys::generate().unwrap();
    let auditor = keys::generate().unwrap();
    submit_ok(
        &http,
        &server,
        &[
            register_as(&admin, &doctor, Role::Doctor),
            register_as(&admin, &auditor, Role::Auditor),
        ],
    );
    let doctor_token = issue_token(&dir, &doctor);
    let auditor_token = issue_token(&dir, &auditor);
    let tx = report_tx(&doctor, 1);
    let (status, first) = post(&http, &server, &wire(&tx));
    assert_eq!(status, 200, "{first}");
    let (status, again) = post(&http, &server, &wire(&tx));
    assert_eq!((status, &again["code"]), (409, &json!("duplicate")));

    server.stop();
    let server = Server::start(&dir, &[]);
    let (status, again) = post(&http, &server, &wire(&tx));
    assert_eq!(
        (status, &again["code"]),
        (409, &json!("duplicate")),
        "a replay after a restart is still a duplicate"
    );
    assert_eq!(get_tx(&http, &server, &id_hex(&tx), &doctor_token), 200);

    // Revoke the doctor on the ledger and the auditor's token.
    let revoke = revoke_tx(&admin, &doctor);
    submit_ok(&http, &server, &[revoke]);
    let (status, refused) = post(&http, &server, &wire(&report_tx(&doctor, 2)));
    assert_eq!((status, &refused["code"]), (403, &json!("revoked_author")));
    assert_eq!(get_tx(&http, &server, &id_hex(&tx), &doctor_token), 401);
    assert_eq!(get_tx(&http, &server, &id_hex(&tx), &auditor_token), 200);
    let out = bin()
        .args(["token", "revoke", "--data-dir"])
        .arg(&dir)
        .arg(&auditor_token)
        .output()
        .expect("run token revoke");
    assert!(out.status.success());
    assert_eq!(get_tx(&http, &server, &id_hex(&tx), &auditor_token), 401);
    // A stranger's transaction is refused, and its id never appears.
    let stranger = report_tx(&keys::generate().unwrap(), 3);
    let (status, body) = post(&http, &server, &wire(&stranger));
    assert_eq!((status, &body["code"]), (403, &json!("unknown_author")));

    let leaves = log_size(&http, &server);
    assert_eq!(
        leaves,
        1 + 2 + 1 + 1 + access_entries(&http, &server),
        "genesis, two registrations, a report, a revocation, the logged reads"
    );
    server.stop();
    assert_eq!(verified_transactions(&dir), leaves);
}

#[test]
fn sigterm_under_load_exits_zero_and_keeps_every_acknowledged_transaction() {
    const CLIENTS: usize = 16;
    let (_tmp, dir) = data_dir();
    let server = Server::start(&dir, &[]);
    let http = client();
    let admin = admin_key(&dir);
    let doctors: Vec<SigningKey> = (0..4).map(|_| keys::generate().unwrap()).collect();
    let auditor = keys::generate().unwrap();
    let mut regs: Vec<Transaction> = doctors
        .iter()
        .map(|d| register_as(&admin, d, Role::Doctor))
        .collect();
    regs.push(register_as(&admin, &auditor, Role::Auditor));
    submit_ok(&http, &server, &regs);
    let token = issue_token(&dir, &auditor);

    // (id, Some(status) or None when the connection failed, answered after SIGTERM)
    let seen: Log<(String, Option<u16>, bool)> = Arc::default();
    let acked = Arc::new(AtomicUsize::new(0));
    let termed = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let (seen, acked, termed) = (seen.clone(), acked.clone(), termed.clone());
            let doctor = doctors[t % doctors.len()].clone();
            let url = server.url("/v1/transactions");
            std::thread::spawn(move || {
                let http = client();
                let deadline = Instant::now() + Duration::from_secs(20);
                for i in 0u64.. {
                    let batch = 1 + (i as usize + t) % 3;
                    let txs: Vec<Transaction> = (0..batch)
                        .map(|k| report_tx(&doctor, (t as u64) << 32 | i << 4 | k as u64))
                        .collect();
                    let body = if batch == 1 {
                        wire(&txs[0])
                    } else {
                        Value::Array(txs.iter().map(wire).collect())
                    };
                    let r = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(serde_json::to_vec(&body).unwrap())
                        .send();
                    let late = termed.load(Ordering::SeqCst);
                    let statuses: Vec<Option<u16>> = match r {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let v: Value = r.json().unwrap_or(Value::Null);
                            if batch == 1 || status != 200 {
                                vec![Some(status); batch]
                            } else {
                                let results = v["results"].as_array().cloned().unwrap_or_default();
                                (0..batch)
                                    .map(|k| {
                                        let s = results.get(k).and_then(|r| r["status"].as_u64());
                                        s.map(|s| s as u16)
                                    })
                                    .collect()
                            }
                        }
                        // The node is going away: what happened to these is unknown.
                        Err(_) => vec![None; batch],
                    };
                    let gone = statuses.iter().all(Option::is_none);
                    let n = statuses.iter().filter(|s| **s == Some(200)).count();
                    acked.fetch_add(n, Ordering::SeqCst);
                    seen.lock().unwrap().extend(
                        txs.iter()
                            .zip(statuses)
                            .map(|(tx, s)| (id_hex(tx), s, late)),
                    );
                    if gone || Instant::now() > deadline {
                        return;
                    }
                }
            })
        })
        .collect();
    // Let the clients get going, then stop the node under their feet.
    let start = Instant::now();
    while acked.load(Ordering::SeqCst) < 200 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut server = server;
    termed.store(true, Ordering::SeqCst);
    server.signal_term();
    let status = server.wait_exit();
    let log = server.log_text();
    assert_eq!(
        status.code(),
        Some(0),
        "serve must exit 0 on SIGTERM under load:\n{log}"
    );
    for t in threads {
        t.join().expect("client thread");
    }
    drop(server);
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let acked: Vec<&String> = seen
        .iter()
        .filter(|s| s.1 == Some(200))
        .map(|s| &s.0)
        .collect();
    assert!(
        !acked.is_empty(),
        "no transaction was acknowledged before SIGTERM"
    );
    for (id, status, _) in &seen {
        assert!(
            matches!(status, None | Some(200)),
            "{id}: unexpected status {status:?}"
        );
    }

    // After a restart every acknowledged transaction is there.
    let server = Server::start(&dir, &[]);
    for id in &acked {
        assert_eq!(
            get_tx(&http, &server, id, &token),
            200,
            "acknowledged {id} lost"
        );
    }
    // Those whose answer was lost may or may not be in; count the ones that are.
    let mut unanswered_in = 0;
    for (id, status, _) in &seen {
        if status.is_none() && get_tx(&http, &server, id, &token) == 200 {
            unanswered_in += 1;
        }
    }
    let leaves = log_size(&http, &server);
    eprintln!(
        "{} sent: {} acknowledged ({} answered after SIGTERM), {} unanswered of which {unanswered_in} committed",
        seen.len(),
        acked.len(),
        seen.iter().filter(|s| s.1 == Some(200) && s.2).count(),
        seen.iter().filter(|s| s.1.is_none()).count()
    );
    assert_eq!(
        leaves,
        1 + regs.len() as u64 + acked.len() as u64 + unanswered_in + access_entries(&http, &server)
    );
    server.stop();
    assert_eq!(verified_transactions(&dir), leaves);
}

/// Opens a connection from 127.0.0.1 that sends a POST's headers and then
/// one byte of its body: a client that trickles.
fn trickler(s: &Server, declared: usize) -> Option<TcpStream> {
    let addr = s.base.trim_start_matches("http://");
    let mut c = TcpStream::connect(addr).ok()?;
    let head = format!(
        "POST /v1/transactions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\n\r\n["
    );
    c.write_all(head.as_bytes()).ok()?;
    Some(c)
}

/// True when the peer closed `c` (EOF or reset) within `wait`.
fn closed_within(c: &TcpStream, wait: Duration) -> bool {
    c.set_read_timeout(Some(wait)).unwrap();
    let mut c = c;
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

#[test]
fn slow_clients_cannot_starve_others_and_oversize_bodies_are_refused_at_once() {
    let (_tmp, dir) = data_dir();
    let server = Server::start(
        &dir,
        &[
            ("MEDLEDGER_MAX_CONCURRENCY", "16"),
            ("MEDLEDGER_MAX_CONNECTIONS_PER_PEER", "64"),
            ("MEDLEDGER_BODY_READ_TIMEOUT_MS", "3000"),
            ("MEDLEDGER_HEADER_READ_TIMEOUT_MS", "3000"),
        ],
    );
    let http = client();
    let admin = admin_key(&dir);
    let doctor = keys::generate().unwrap();
    submit_ok(
        &http,
        &server,
        &[register_as(&admin, &doctor, Role::Doctor)],
    );
    // Far more trickling bodies than the concurrency limit, from one peer.
    let mut slow: Vec<TcpStream> = (0..80).filter_map(|_| trickler(&server, 10_000)).collect();
    assert_eq!(
        slow.len(),
        80,
        "the connections are accepted before the limit bites"
    );
    std::thread::sleep(Duration::from_millis(300));
    // Ordinary clients from another address: reads and writes all served.
    let other = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("client");
    let mut statuses = Vec::new();
    for i in 0..15 {
        statuses.push(answer(other.get(server.url("/v1/checkpoint")).send()).0);
        statuses.push(post(&other, &server, &wire(&report_tx(&doctor, 9_000 + i))).0);
    }
    assert!(
        statuses.iter().all(|&s| s == 200),
        "ordinary requests beside 80 slow bodies: {statuses:?}"
    );
    // The 65th and later connections of the slow peer were closed at once.
    let closed = slow
        .iter()
        .skip(64)
        .filter(|c| closed_within(c, Duration::from_secs(2)))
        .count();
    assert_eq!(closed, 16, "connections over the per-peer limit are closed");
    // A slow body is answered 408 once its time is up, and frees its place.
    let mut first = slow.swap_remove(0);
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut text = String::new();
    let _ = first.read_to_string(&mut text);
    assert!(
        text.starts_with("HTTP/1.1 408"),
        "a body that never arrives: {text:?}"
    );
    drop(slow);
    // Headers that never finish: the connection is closed.
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut half = TcpStream::connect(&addr).unwrap();
    half.write_all(b"GET /v1/status HTTP/1.1\r\nhost: x\r\n")
        .unwrap();
    assert!(
        closed_within(&half, Duration::from_secs(10)),
        "headers that never finish are cut off"
    );
    // A Content-Length over the limit is answered 413 without waiting for
    // the body.
    let mut huge = TcpStream::connect(&addr).unwrap();
    huge.write_all(
        b"POST /v1/transactions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 10000000000\r\n\r\n",
    )
    .unwrap();
    huge.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 12];
    huge.read_exact(&mut buf)
        .expect("an answer before any body byte");
    assert_eq!(&buf, b"HTTP/1.1 413");
    // The node still serves.
    assert_eq!(answer(http.get(server.url("/v1/status")).send()).0, 200);
    drop(server);
}
