//! No raw identifier reaches the ledger, its indexes or any log.
//!
//! A large synthetic CSV of medical reports is seeded with raw identifiers:
//! valid JMBGs, LBOs next to insurance words, e-mail addresses and phone
//! numbers in the free text, and LBO/JMBG columns that the authority's key
//! turns into pseudonyms. It is imported, and more of the same is sent to a
//! running node over HTTP (signed reports and FHIR resources) with debug
//! logging on. Then every byte of the data directory, the import report,
//! the command output and the node's log is searched for every identifier.

mod common;

use common::*;
use medledger_formats::keys;
use medledger_formats::tx::Transaction;
use medledger_ledger::kind;
use serde_json::{Value, json};
use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A valid JMBG from `rng`: a real date, a region and the mod-11 check digit.
fn jmbg(rng: &mut Rng) -> String {
    loop {
        let day = 1 + rng.below(28);
        let month = 1 + rng.below(12);
        let year = 930 + rng.below(80); // 1930-2009
        let rest = rng.below(100_000);
        let first = format!("{day:02}{month:02}{:03}{rest:05}", year % 1000);
        let w = [7, 6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2];
        let sum: u64 = first
            .bytes()
            .zip(w)
            .map(|(b, w)| u64::from(b - b'0') * w)
            .sum();
        let m = 11 - sum % 11;
        let k = if m > 9 { 0 } else { m };
        let s = format!("{first}{k}");
        if medledger_health::ids::is_valid_jmbg(&s) {
            return s;
        }
    }
}

fn lbo(rng: &mut Rng) -> String {
    format!("{:011}", 10_000_000_000 + rng.below(89_999_999_999))
}

/// Free text with one raw identifier in it, and the identifier.
fn seeded_text(rng: &mut Rng, i: u64) -> (String, String) {
    match i % 5 {
        0 => {
            let id = jmbg(rng);
            (format!("Pacijent JMBG {id}, febrilan dva dana."), id)
        }
        1 => {
            let id = lbo(rng);
            (format!("Broj osiguranja (LBO) {id}; kašalj."), id)
        }
        2 => {
            let id = format!("pacijent.{}@posta.example.rs", rng.below(1_000_000));
            (format!("Rezultate poslati na {id} sutra."), id)
        }
        3 => {
            let id = format!("+381 64 {:03} {:04}", rng.below(1000), rng.below(10_000));
            (format!("Kontakt telefon {id}, zvati posle 16h."), id)
        }
        _ => {
            let id = format!("064/{:03}-{:04}", rng.below(1000), rng.below(10_000));
            (format!("Tel. {id}."), id)
        }
    }
}

fn csv_field(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Every file under `dir`, concatenated.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.extend(fs::read(&p).expect("read"));
            }
        }
    }
    out
}

#[test]
fn no_raw_identifier_reaches_the_data_directory_or_any_log() {
    let rows = env_count("MEDLEDGER_PII_ROWS", 20_000);
    let mut rng = Rng::new(seed("pii_scan"));
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("data");
    init(&dir);
    let doctor = new_doctor(&dir);
    let doctor_file = root.path().join("doctor.key");
    fs::write(&doctor_file, keys::encode_key_file(&doctor)).expect("key file");
    let authority = root.path().join("authority.key");
    let out = bin()
        .args(["pseudonym", "keygen", "--out"])
        .arg(&authority)
        .output()
        .expect("keygen");
    assert!(out.status.success(), "{:?}", text(&out));

    // The CSV: clean rows, rows with an identifier in free text (refused),
    // and rows whose patient is an LBO or JMBG column (pseudonymized).
    let mut secrets = Vec::new();
    let mut csv = String::from(
        "patient,lbo,jmbg,institution,encounter_date,diagnoses,anamnesis,findings,therapy\n",
    );
    let (mut seeded, mut by_column) = (0u64, 0u64);
    for i in 0..rows {
        let p = medledger_health::pseudonym::synthetic(i);
        let (mut patient, mut lbo_col, mut jmbg_col) = (p, String::new(), String::new());
        let mut anamnesis = "Kašalj i temperatura 38.4 C tri dana.".to_owned();
        match i % 10 {
            0 => {
                let (text, id) = seeded_text(&mut rng, i / 10);
                anamnesis = text;
                secrets.push(id);
                seeded += 1;
            }
            1 => {
                lbo_col = lbo(&mut rng);
                secrets.push(lbo_col.clone());
                patient.clear();
                by_column += 1;
            }
            2 => {
                jmbg_col = jmbg(&mut rng);
                secrets.push(jmbg_col.clone());
                patient.clear();
                by_column += 1;
            }
            _ => {}
        }
        csv.push_str(&format!(
            "{patient},{lbo_col},{jmbg_col},Klinicki centar Nis,2026-11-2{},J06.9;I10,{},{},{}\n",
            i % 10,
            csv_field(&anamnesis),
            csv_field("Ždrelo hiperemično, TA 135/85 mmHg."),
            csv_field("Paracetamol 500 mg po potrebi."),
        ));
    }
    let input = root.path().join("reports.csv");
    fs::write(&input, csv).expect("write csv");
    let report = root.path().join("import-report.jsonl");
    let imported = bin()
        .arg("import")
        .arg("--data-dir")
        .arg(&dir)
        .arg("--key")
        .arg(&doctor_file)
        .arg("--pseudonym-key")
        .arg(&authority)
        .arg("--report")
        .arg(&report)
        .arg(&input)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .output()
        .expect("import");
    assert_no_panic(&imported);
    let (stdout, stderr) = text(&imported);
    assert_eq!(imported.status.code(), Some(1), "refusals exit 1: {stderr}");
    let results: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let refused: Vec<&Value> = results.iter().filter(|r| r["error"].is_string()).collect();
    assert_eq!(refused.len() as u64, seeded, "every seeded row is refused");
    assert!(
        refused.iter().all(|r| r["error"] == "pii_detected"),
        "{refused:?}"
    );
    assert_eq!(
        results.iter().filter(|r| r["id"].is_string()).count() as u64,
        rows - seeded,
        "clean and pseudonymized rows are in ({by_column} by column)"
    );

    // The same through a running node, logging at debug level.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let log_path = root.path().join("node.log");
    let mut node = bin()
        .arg("serve")
        .arg("--data-dir")
        .arg(&dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log_path).expect("log"))
        .spawn()
        .expect("serve");
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{url}/readyz")).send().is_err() {
        assert!(Instant::now() < deadline, "node did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut http_refused = 0;
    for i in 0..200u64 {
        let (text, id) = seeded_text(&mut rng, i);
        secrets.push(id);
        let mut p = report_payload(i);
        p["findings"] = json!(text);
        let tx = Transaction::sign(
            &doctor,
            kind::MEDICAL_REPORT,
            medledger_ledger::now_ms(),
            &p,
        )
        .expect("sign");
        let r = http
            .post(format!("{url}/v1/transactions"))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&tx.to_wire().expect("wire")).expect("json"))
            .send()
            .expect("post");
        assert_eq!(r.status().as_u16(), 422);
        let body = r.text().expect("body");
        assert!(body.contains("pii_detected"), "{body}");
        http_refused += 1;
    }
    // A FHIR Patient with a name and an identifier, sent without a token:
    // refused, and nothing of it is logged.
    let name = format!("Prezimenić{}", rng.below(1_000_000));
    let id = jmbg(&mut rng);
    secrets.push(name.clone());
    secrets.push(id.clone());
    let patient = json!({"resourceType": "Patient", "name": [{"family": name}], "identifier": [{"value": id}]});
    let r = http
        .post(format!("{url}/fhir/Patient"))
        .header("content-type", "application/fhir+json")
        .body(patient.to_string())
        .send()
        .expect("post fhir");
    assert_eq!(r.status().as_u16(), 401);
    // SAFETY: sends SIGTERM to the child this test spawned.
    unsafe {
        libc::kill(node.id() as i32, libc::SIGTERM);
    }
    assert!(node.wait().expect("wait").success());
    let mut log = Vec::new();
    fs::File::open(&log_path)
        .and_then(|mut f| f.read_to_end(&mut log))
        .expect("log");
    assert!(!log.is_empty(), "the node logged at debug level");

    // Search everything.
    let mut hay = all_bytes(&dir);
    hay.extend(fs::read(&report).expect("report"));
    hay.extend(&imported.stdout);
    hay.extend(&imported.stderr);
    hay.extend(&log);
    let search = aho_corasick::AhoCorasick::new(&secrets).expect("automaton");
    let found: std::collections::BTreeSet<&String> = search
        .find_overlapping_iter(&hay)
        .map(|m| &secrets[m.pattern().as_usize()])
        .collect();
    assert!(
        found.is_empty(),
        "{} of {} identifiers found, e.g. {:?}",
        found.len(),
        secrets.len(),
        found.iter().take(3).collect::<Vec<_>>()
    );
    eprintln!(
        "searched {} bytes for {} identifiers ({seeded} seeded rows, {by_column} pseudonymized, {http_refused} over HTTP): none found",
        hay.len(),
        secrets.len()
    );
    assert_verifies(&dir);
}
