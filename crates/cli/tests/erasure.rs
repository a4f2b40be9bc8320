//! Verifiable erasure, end to end on a real `medledger serve`: a redaction
//! by the data-protection officer erases a record's payload from every file
//! of the data directory, while every receipt given before it still verifies
//! and `medledger verify` accepts exactly the erased payloads it covers.

mod common;

use common::*;
use ed25519_dalek::SigningKey;
use medledger_formats::keys;
use medledger_formats::tx::Transaction;
use medledger_ledger::{Role, kind, now_ms};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn wire(tx: &Transaction) -> Value {
    serde_json::to_value(tx.to_wire().expect("wire")).expect("json")
}

/// Submits `txs` as one batch; each item's status and body.
fn submit(s: &Server, txs: &[&Transaction]) -> Vec<(u16, Value)> {
    let body = Value::Array(txs.iter().map(|t| wire(t)).collect());
    let r = client()
        .post(s.url("/v1/transactions"))
        .json(&body)
        .send()
        .expect("POST /v1/transactions");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().expect("json");
    v["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| (r["status"].as_u64().unwrap_or(0) as u16, r.clone()))
        .collect()
}

fn submit_ok(s: &Server, tx: &Transaction) {
    let (status, body) = submit(s, &[tx]).remove(0);
    assert_eq!(status, 200, "{body}");
}

/// The code of a refused item.
fn refused(s: &Server, tx: &Transaction) -> (u16, String) {
    let (status, body) = submit(s, &[tx]).remove(0);
    let code = body["problem"]["code"].as_str().unwrap_or("").to_owned();
    (status, code)
}

fn redaction(dpo: &SigningKey, targets: &[&Transaction], patient: Option<&str>) -> Transaction {
    let mut p = json!({
        "targets": targets.iter().map(|t| hex::encode(t.id())).collect::<Vec<_>>(),
        "basis": "gdpr-art-17",
        "reason": "direct-identifier",
    });
    if let Some(pt) = patient {
        p["patient"] = json!(pt);
    }
    Transaction::sign(dpo, kind::REDACTION, now_ms(), &p).expect("sign redaction")
}

fn get(s: &Server, path: &str, token: &str) -> (u16, Value, String) {
    let r = client()
        .get(s.url(path))
        .bearer_auth(token)
        .send()
        .expect("GET");
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = r.text().expect("body");
    let v = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, v, ct)
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The files among `files` that hold `needle` anywhere in their bytes.
fn holding(files: &[PathBuf], needle: &[u8]) -> Vec<PathBuf> {
    files
        .iter()
        .filter(|f| {
            let data = std::fs::read(f).expect("read file");
            data.windows(needle.len()).any(|w| w == needle)
        })
        .cloned()
        .collect()
}

fn receipt_text(s: &Server, id: &str) -> String {
    let r = client()
        .get(s.url(&format!("/v1/transactions/{id}/receipt")))
        .send()
        .expect("GET receipt");
    assert_eq!(r.status(), 200);
    r.text().expect("receipt")
}

fn receipt_verifies(file: &Path, vkey: &str, id: &str) -> bool {
    let out = bin()
        .args(["receipt", "verify"])
        .arg(file)
        .args(["--key", vkey, "--origin", ORIGIN, "--id", id])
        .output()
        .expect("run receipt verify");
    assert_no_panic(&out);
    out.status.success()
}

/// A medical report about `patient` whose anamnesis holds `secret`.
fn report_holding(doctor: &SigningKey, patient: &str, secret: &str) -> Transaction {
    let mut p = report_payload(1);
    p["patient"] = json!(patient);
    p["anamnesis"] = json!(secret);
    Transaction::sign(doctor, kind::MEDICAL_REPORT, now_ms(), &p).expect("sign report")
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    vkey: String,
    doctor: SigningKey,
    dpo: SigningKey,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("node");
    let vkey = init(&dir);
    let admin = admin_key(&dir);
    let doctor = keys::generate().expect("key");
    let dpo = keys::generate().expect("key");
    import_ok(
        &dir,
        &[
            register_role(&admin, &doctor, Role::Doctor, None),
            register_role(&admin, &dpo, Role::DataProtectionOfficer, None),
        ],
        2,
    );
    Setup {
        _tmp: tmp,
        dir,
        vkey,
        doctor,
        dpo,
    }
}

#[test]
fn a_redacted_payload_leaves_every_file_and_every_earlier_receipt_still_verifies() {
    let t = setup();
    let marker = hex::encode(keys::random_bytes::<32>().expect("random"));
    let name = format!("Radmila Kostadinovic {}", &marker[..8]);
    let patient = medledger_health::pseudonym::synthetic(41);
    let secret = report_holding(
        &t.doctor,
        &patient,
        &format!("Patient {name} says: {marker}"),
    );
    let kept: Vec<Transaction> = (0..3)
        .map(|i| report_holding(&t.doctor, &patient, &format!("kept record {i}")))
        .collect();

    let server = Server::start(&t.dir, &[]);
    submit_ok(&server, &kept[0]);
    submit_ok(&server, &secret);
    submit_ok(&server, &kept[1]);
    let doctor_token = issue_token(&t.dir, &t.doctor);
    let secret_id = hex::encode(secret.id());
    let (status, before, _) = get(
        &server,
        &format!("/v1/transactions/{secret_id}"),
        &doctor_token,
    );
    assert_eq!(status, 200, "{before}");
    assert!(before.to_string().contains(&marker));

    // Receipts given before the redaction, kept as files.
    let receipts = t._tmp.path().join("receipts");
    std::fs::create_dir_all(&receipts).unwrap();
    let mut earlier = Vec::new();
    for tx in [&kept[0], &secret, &kept[1]] {
        let id = hex::encode(tx.id());
        let file = receipts.join(format!("{id}.tlog-proof"));
        std::fs::write(&file, receipt_text(&server, &id)).unwrap();
        earlier.push((file, id));
    }

    // Authority: only the data-protection officer redacts.
    let by_doctor = redaction(&t.doctor, &[&secret], Some(&patient));
    assert_eq!(
        refused(&server, &by_doctor),
        (403, "role_not_allowed".into())
    );
    // The state rules: the patient must be the targets', the target must
    // be committed, and a registration may not be redacted.
    let other = medledger_health::pseudonym::synthetic(42);
    assert_eq!(
        refused(&server, &redaction(&t.dpo, &[&secret], Some(&other))),
        (422, "redaction_patient".into())
    );
    let never = report_holding(&t.doctor, &patient, "never submitted");
    assert_eq!(
        refused(&server, &redaction(&t.dpo, &[&never], Some(&patient))),
        (422, "redaction_target_unknown".into())
    );
    let admin_reg = register_role(
        &admin_key(&t.dir),
        &keys::generate().unwrap(),
        Role::Doctor,
        None,
    );
    submit_ok(&server, &admin_reg);
    assert_eq!(
        refused(&server, &redaction(&t.dpo, &[&admin_reg], None)),
        (422, "redaction_target_kind".into())
    );

    // The patient's request, filed by their doctor; the order grants it.
    let request = Transaction::sign(
        &t.doctor,
        kind::ERASURE_REQUEST,
        now_ms(),
        &json!({"targets": [secret_id], "basis": "gdpr-art-17", "patient": patient}),
    )
    .expect("sign request");
    submit_ok(&server, &request);
    let grant = |request: &Transaction| {
        let mut order = redaction(&t.dpo, &[&secret], Some(&patient));
        let mut p: Value = serde_json::from_slice(order.payload_jcs()).unwrap();
        p["request"] = json!(hex::encode(request.id()));
        order = Transaction::sign(&t.dpo, kind::REDACTION, now_ms(), &p).expect("sign");
        order
    };
    // A request must be an erasure request.
    assert_eq!(
        refused(&server, &grant(&kept[0])),
        (422, "redaction_request".into())
    );
    let order = grant(&request);
    submit_ok(&server, &order);
    let order_id = hex::encode(order.id());
    assert_eq!(
        refused(&server, &redaction(&t.dpo, &[&secret], Some(&patient))),
        (422, "already_redacted".into())
    );
    submit_ok(&server, &kept[2]);

    // Reads: 410 with the redaction's id and receipt.
    let (status, gone, ct) = get(
        &server,
        &format!("/v1/transactions/{secret_id}"),
        &doctor_token,
    );
    assert_eq!(status, 410, "{gone}");
    assert_eq!(ct, "application/problem+json");
    assert_eq!(gone["code"], "redacted");
    assert_eq!(gone["redaction"]["id"], order_id.as_str());
    let redaction_receipt = receipts.join("redaction.tlog-proof");
    std::fs::write(
        &redaction_receipt,
        gone["redaction"]["receipt"].as_str().expect("receipt"),
    )
    .unwrap();
    assert!(receipt_verifies(&redaction_receipt, &t.vkey, &order_id));
    assert!(!gone.to_string().contains(&marker));
    // A record that was not redacted reads as before.
    let kept_id = hex::encode(kept[1].id());
    let (status, _, _) = get(
        &server,
        &format!("/v1/transactions/{kept_id}"),
        &doctor_token,
    );
    assert_eq!(status, 200);

    // History shows that the record existed and was redacted, not what it held.
    let (status, history, _) = get(
        &server,
        &format!("/v1/patients/{patient}/history"),
        &doctor_token,
    );
    assert_eq!(status, 200, "{history}");
    let records = history["records"].as_array().expect("records");
    let tomb = records
        .iter()
        .find(|r| r["id"] == secret_id.as_str())
        .expect("the redacted record is listed");
    assert_eq!(tomb["kind"], "medical_report");
    assert_eq!(tomb["redacted"]["id"], order_id.as_str());
    assert!(tomb.get("payload").is_none(), "{tomb}");
    assert!(records.iter().any(|r| r["id"] == order_id.as_str()));
    let request_id = hex::encode(request.id());
    assert!(records.iter().any(|r| r["id"] == request_id.as_str()));
    assert_eq!(
        records
            .iter()
            .filter(|r| r["kind"] == "medical_report" && r.get("payload").is_some())
            .count(),
        3
    );
    assert!(!history.to_string().contains(&marker));
    let serve_log = server.log.clone();
    server.stop();

    // Every byte of every file of the data directory, and the node's log.
    let mut files = Vec::new();
    files_under(&t.dir, &mut files);
    files.push(serve_log);
    assert!(files.iter().any(|f| f.ends_with("index.redb")));
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "seg"))
    );
    assert_eq!(holding(&files, marker.as_bytes()), Vec::<PathBuf>::new());
    assert_eq!(holding(&files, name.as_bytes()), Vec::<PathBuf>::new());
    // The scan can find what is there: the kept records' text is.
    assert!(!holding(&files, b"kept record 2").is_empty());

    // Every receipt given before the redaction still verifies offline.
    for (file, id) in &earlier {
        assert!(receipt_verifies(file, &t.vkey, id), "receipt of {id}");
    }
    // verify passes and counts the erased payload and its redaction.
    let out = verify(&t.dir);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("redactions: 1 committed, 1 payloads erased"),
        "{stdout}"
    );

    // The node opens again on the redacted ledger, and a rebuilt index
    // gives the same answers.
    std::fs::remove_file(t.dir.join("index.redb")).unwrap();
    let server = Server::start(&t.dir, &[]);
    let (status, gone, _) = get(
        &server,
        &format!("/v1/transactions/{secret_id}"),
        &doctor_token,
    );
    assert_eq!(status, 410, "{gone}");
    assert_eq!(gone["redaction"]["id"], order_id.as_str());
    let (_, history, _) = get(
        &server,
        &format!("/v1/patients/{patient}/history"),
        &doctor_token,
    );
    assert!(
        history["records"]
            .as_array()
            .expect("records")
            .iter()
            .any(|r| r["id"] == secret_id.as_str() && r["redacted"]["id"] == order_id.as_str()),
        "{history}"
    );
    server.stop();
}

/// Zeroes the salt and payload of transaction `index` of the block at
/// `height`, in the segment file, with a correct record checksum: what an
/// operator who erased a record without a redaction would leave.
fn erase_without_redaction(dir: &Path, height: u64, index: usize) {
    let path = segment_files(dir)[0].clone();
    let mut seg = Segment::read(&path);
    let mut pairs = seg.pairs();
    let pair = pairs
        .iter_mut()
        .find(|p| pair_height(p) == height)
        .expect("block");
    let body = &mut pair[0].body;
    let count = u32::from_le_bytes(body[8..12].try_into().unwrap()) as usize;
    assert!(index < count);
    let mut at = 12;
    for i in 0..count {
        let len = u32::from_le_bytes(body[at + 16..at + 20].try_into().unwrap()) as usize;
        if i == index {
            body[at..at + 16].fill(0);
            body[at + 20..at + 20 + len].fill(0);
        }
        at += 20 + len;
    }
    seg = Segment::from_pairs(seg.first_height, &pairs);
    seg.write(&path);
}

#[test]
fn an_erased_payload_that_no_redaction_names_fails_verify() {
    let t = setup();
    let patient = medledger_health::pseudonym::synthetic(7);
    let txs: Vec<Transaction> = (0..2)
        .map(|i| report_holding(&t.doctor, &patient, &format!("record {i}")))
        .collect();
    // One import each, so that each report has a block of its own.
    for tx in &txs {
        assert_eq!(import_ok(&t.dir, std::slice::from_ref(tx), 1).len(), 1);
    }
    assert_verifies(&t.dir);
    // Blocks: 0 genesis, 1 registrations, 2 and 3 the reports.
    erase_without_redaction(&t.dir, 3, 0);
    let stderr = assert_verify_fails(&t.dir);
    let id = hex::encode(txs[1].id());
    assert!(
        stderr.contains("no redaction names it") && stderr.contains(&id),
        "{stderr}"
    );
    assert!(stderr.contains("block 3"), "{stderr}");
}

/// `medledger verify`'s redaction line: (committed, erased, unapplied).
fn redaction_counts(dir: &Path) -> (u64, u64, u64) {
    let out = verify(dir);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "verify: {stdout}{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("redactions: "))
        .unwrap_or_else(|| panic!("no redaction line: {stdout}"));
    let n: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    (n[0], n[1], n[2])
}

#[test]
fn a_node_killed_while_it_applies_a_large_redaction_completes_it_on_restart() {
    let mut rng = Rng::new(seed("a_node_killed_while_it_applies_a_large_redaction"));
    let rounds = env_count("MEDLEDGER_ERASURE_KILLS", 3);
    for round in 0..rounds {
        let t = setup();
        let patient = medledger_health::pseudonym::synthetic(9);
        // 1000 records (the most one redaction names) over 100 blocks.
        let txs: Vec<Transaction> = (0..1000)
            .map(|i| report_holding(&t.doctor, &patient, &format!("bulk record TAG{i:04}Z")))
            .collect();
        import_ok(&t.dir, &txs, 10);
        let refs: Vec<&Transaction> = txs.iter().collect();
        let order = redaction(&t.dpo, &refs, Some(&patient));
        let server = Server::start(&t.dir, &[]);
        let url = server.url("/v1/transactions");
        let body = Value::Array(vec![wire(&order)]);
        let sender = std::thread::spawn(move || client().post(url).json(&body).send());
        // Anywhere from before the request arrives to after it is answered.
        std::thread::sleep(std::time::Duration::from_micros(rng.below(60_000)));
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &server.pid()])
            .status()
            .expect("run kill");
        assert!(killed.success());
        let answered = sender.join().is_ok_and(|r| r.is_ok());
        drop(server);

        // Opening completes whatever the kill interrupted.
        Server::start(&t.dir, &[]).stop();
        let counts = redaction_counts(&t.dir);
        let mut files = Vec::new();
        files_under(&t.dir.join("segments"), &mut files);
        let left = (0..1000)
            .filter(|i| !holding(&files, format!("TAG{i:04}Z").as_bytes()).is_empty())
            .count();
        eprintln!(
            "round {round}: answered before the kill: {answered}; verify {counts:?}, {left} records left"
        );
        match counts {
            (1, 1000, 0) => assert_eq!(left, 0, "a committed redaction erased every target"),
            (0, 0, 0) => assert_eq!(left, 1000, "no redaction, nothing erased"),
            other => panic!("half a redaction: verify says {other:?}, {left} records left"),
        }
    }
}

/// Measures (prints, never asserts) how long a node takes to answer a
/// redaction of 1, 100 and 1000 records, in blocks of 10, on a ledger of
/// `MEDLEDGER_ERASURE_RECORDS` records (default 20 000). Run with
/// `--ignored --nocapture`; figures in BENCHMARKS.md.
#[test]
#[ignore]
fn measure_redaction_time() {
    let t = setup();
    let n = env_count("MEDLEDGER_ERASURE_RECORDS", 20_000) as usize;
    let patient = medledger_health::pseudonym::synthetic(10);
    let txs: Vec<Transaction> = (0..n)
        .map(|i| report_holding(&t.doctor, &patient, &format!("record {i}")))
        .collect();
    for chunk in txs.chunks(5_000) {
        import_ok(&t.dir, chunk, 10);
    }
    let server = Server::start(&t.dir, &[]);
    let mut next = 0;
    for size in [1usize, 100, 1000] {
        let targets: Vec<&Transaction> = txs[next..next + size].iter().collect();
        next += size;
        let order = redaction(&t.dpo, &targets, Some(&patient));
        let started = std::time::Instant::now();
        submit_ok(&server, &order);
        eprintln!(
            "MEASURE ledger of {n} records: redaction of {size} records answered in {:.1} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    server.stop();
    let started = std::time::Instant::now();
    let counts = redaction_counts(&t.dir);
    eprintln!(
        "MEASURE verify with {counts:?} (committed, erased, unapplied): {:.2} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_backup_refreshed_after_a_redaction_no_longer_holds_the_erased_payload() {
    let t = setup();
    let marker = hex::encode(keys::random_bytes::<32>().expect("random"));
    let patient = medledger_health::pseudonym::synthetic(43);
    let secret = report_holding(&t.doctor, &patient, &format!("typed by mistake: {marker}"));
    let kept = report_holding(&t.doctor, &patient, "kept record");
    let server = Server::start(&t.dir, &[]);
    submit_ok(&server, &secret);
    submit_ok(&server, &kept);
    let backup = t._tmp.path().join("backup");
    let take_backup = || {
        let out = bin()
            .args(["backup", "--data-dir", t.dir.to_str().unwrap()])
            .args(["--out", backup.to_str().unwrap(), "--url", &server.base])
            .args(["--vkey", &t.vkey, "--include-node-key"])
            .output()
            .expect("run backup");
        assert_no_panic(&out);
        assert!(out.status.success(), "{:?}", text(&out));
        let mut files = Vec::new();
        files_under(&backup, &mut files);
        files
    };
    let files = take_backup();
    assert!(
        !holding(&files, marker.as_bytes()).is_empty(),
        "the first backup holds the record"
    );

    submit_ok(&server, &redaction(&t.dpo, &[&secret], Some(&patient)));
    let files = take_backup();
    assert_eq!(holding(&files, marker.as_bytes()), Vec::<PathBuf>::new());
    assert!(!holding(&files, b"kept record").is_empty());

    // The refreshed backup restores, verified, with the redaction applied.
    let restored = t._tmp.path().join("restored");
    let out = bin()
        .args(["restore", "--from", backup.to_str().unwrap()])
        .args(["--data-dir", restored.to_str().unwrap(), "--key", &t.vkey])
        .output()
        .expect("run restore");
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(redaction_counts(&restored).1, 1);
}

#[test]
fn export_verify_flags_rows_redacted_since_the_export_and_still_checks_the_rest() {
    let t = setup();
    let patient = medledger_health::pseudonym::synthetic(43);
    // A quoted, multi-line field: the flagged CSV row spans two lines.
    let secret = report_holding(
        &t.doctor,
        &patient,
        "first line\nshe said \"call my sister\"",
    );
    let kept: Vec<Transaction> = (0..2)
        .map(|i| report_holding(&t.doctor, &patient, &format!("kept record {i}")))
        .collect();
    import_ok(
        &t.dir,
        &[kept[0].clone(), secret.clone(), kept[1].clone()],
        1,
    );
    let tmp = t._tmp.path();
    let dir = t.dir.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = bin().args(args).output().expect("run medledger");
        assert_no_panic(&out);
        out
    };
    let mut files = Vec::new();
    for format in ["csv", "ndjson"] {
        let file = tmp.join(format!("reports.{format}"));
        let out = run(&[
            "export",
            "--kind",
            "medical_report",
            "--format",
            format,
            "--data-dir",
            dir,
            "--out",
            file.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{:?}", text(&out));
        files.push(file);
    }
    let verify = |file: &Path| {
        run(&[
            "export",
            "verify",
            file.to_str().unwrap(),
            "--vkey",
            &t.vkey,
            "--data-dir",
            dir,
        ])
    };
    for file in &files {
        let out = verify(file);
        assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    }
    import_ok(&t.dir, &[redaction(&t.dpo, &[&secret], Some(&patient))], 1);
    let secret_id = hex::encode(secret.id());
    for file in &files {
        let out = verify(file);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(4), "{file:?}: {stdout}{stderr}");
        assert!(
            stdout.starts_with("ok: ") && stdout.contains("1 of them redacted since"),
            "{stdout}"
        );
        assert_eq!(
            stderr.matches("redacted since export").count(),
            1,
            "one row flagged: {stderr}"
        );
        assert!(stderr.contains(&secret_id), "{stderr}");
    }
    // A kept row changed after the redaction is still caught.
    let csv = std::fs::read_to_string(&files[0]).unwrap();
    std::fs::write(&files[0], csv.replace("kept record 1", "kept record 9")).unwrap();
    let out = verify(&files[0]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert!(text(&out).1.contains("export INVALID"), "{:?}", text(&out));
}
