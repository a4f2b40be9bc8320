//! Research exports with real processes: `medledger export` from a stopped
//! node's data directory and from a served node, in every format, and
//! `medledger export verify` against both. A changed byte, a dropped row
//! and a forged checkpoint are each caught and named.

mod common;

use common::*;
use ed25519_dalek::SigningKey;
use medledger_formats::checkpoint::Checkpoint;
use medledger_formats::keys;
use medledger_formats::note::NoteSigner;
use medledger_formats::tx::Transaction;
use medledger_ledger::{RegisterPayload, Role, kind, now_ms, read_key_file};
use serde_json::{Value, json};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

/// Days the records are spread over.
const DAYS: [&str; 8] = [
    "2026-11-20",
    "2026-11-21",
    "2026-11-22",
    "2026-11-23",
    "2026-11-24",
    "2026-11-25",
    "2026-11-26",
    "2026-11-27",
];
/// The range exported: four of the days.
const FROM: &str = "2026-11-22";
const TO: &str = "2026-11-25";
const REPORTS: u64 = 320;

// ---- the ledger -----------------------------------------------------------------

fn register(admin: &SigningKey, key: &SigningKey, role: Role, institution: &str) -> Transaction {
    let p = RegisterPayload {
        key: keys::public_key(key),
        role,
        institution: institution.into(),
        label: role.as_str().into(),
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

fn signed(key: &SigningKey, kind: &str, payload: &Value) -> Transaction {
    Transaction::sign(key, kind, now_ms(), payload).expect("sign")
}

fn report(i: u64) -> Value {
    json!({
        "patient": medledger_health::pseudonym::synthetic(i % 97),
        "institution": "Klinicki centar Nis",
        "encounter_date": DAYS[(i % 8) as usize],
        "diagnoses": ["J10.1", "I10"],
        "anamnesis": format!("Visit {i}: fever, \"dry\" cough,\nmyalgia for two days."),
        "findings": "Pharynx hyperaemic, lungs clear.",
        "therapy": "Rest; fluids.",
    })
}

fn observation(i: u64) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/{}", medledger_health::pseudonym::synthetic(i))},
        "effectiveDateTime": format!("{}T09:{:02}:00Z", DAYS[(i % 8) as usize], i % 60),
        "valueQuantity": {"value": 60 + i % 40, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}
    })
}

/// What was written: (kind, day, leaf) per record.
struct Ledger {
    vkey: String,
    researcher: SigningKey,
    doctor: SigningKey,
    records: Vec<(String, String, u64)>,
}

impl Ledger {
    /// Leaves of `kind` records dated in FROM..=TO, in log order.
    fn selected(&self, kind: &str) -> Vec<u64> {
        self.records
            .iter()
            .filter(|(k, d, _)| k == kind && d.as_str() >= FROM && d.as_str() <= TO)
            .map(|(_, _, l)| *l)
            .collect()
    }
}

/// Imports `txs` (recording kind and day of each) in batches of 50.
fn add(dir: &Path, records: &mut Vec<(String, String, u64)>, txs: Vec<(Transaction, &str)>) {
    for chunk in txs.chunks(50) {
        let lines: Vec<String> = chunk.iter().map(|(t, _)| line(t)).collect();
        let imp = import_args(dir, &lines, 50, &["--format", "signed"]);
        assert!(
            imp.output.status.success(),
            "import: {}\n{:?}",
            text(&imp.output).1,
            imp.results.iter().take(3).collect::<Vec<_>>()
        );
        for ((tx, day), r) in chunk.iter().zip(&imp.results) {
            assert_eq!(r["id"], hex::encode(tx.id()), "{r}");
            let leaf = r["index"].as_u64().expect("index");
            records.push((tx.header().kind.clone(), (*day).to_owned(), leaf));
        }
    }
}

/// A ledger with reports over eight days, interleaved with vital signs,
/// epidemic counts and FHIR Observations.
fn build(dir: &Path) -> Ledger {
    let vkey = init(dir);
    let admin = admin_key(dir);
    let doctor = keys::generate().unwrap();
    let officer = keys::generate().unwrap();
    let researcher = keys::generate().unwrap();
    let mut records = Vec::new();
    add(
        dir,
        &mut records,
        vec![
            (register_tx(&admin, &doctor), ""),
            (
                register(&admin, &officer, Role::PublicHealth, "IJZ Srbije"),
                "",
            ),
            (
                register(&admin, &researcher, Role::Researcher, "Medicinski fakultet"),
                "",
            ),
        ],
    );
    let mut txs = Vec::new();
    for i in 0..REPORTS {
        let day = DAYS[(i % 8) as usize];
        txs.push((signed(&doctor, kind::MEDICAL_REPORT, &report(i)), day));
        if i % 8 == 3 {
            let vitals = json!({"patient": medledger_health::pseudonym::synthetic(i),
                "time": format!("{day}T08:30:00Z"), "pulse": 72, "temperature": 36.8});
            txs.push((signed(&doctor, kind::VITAL_SIGNS, &vitals), day));
        }
        if i % 16 == 5 {
            let counts = json!({"date": day, "region": "Nisavski", "disease": "U07.1",
                "new_cases": i, "hospitalised": 3, "on_respirator": 1, "deaths": 0});
            txs.push((signed(&officer, kind::EPIDEMIC_REPORT, &counts), day));
        }
        if i % 4 == 1 {
            txs.push((
                signed(&doctor, kind::FHIR_OBSERVATION, &observation(i)),
                day,
            ));
        }
    }
    add(dir, &mut records, txs);
    Ledger {
        vkey,
        researcher,
        doctor,
        records,
    }
}

fn token(dir: &Path, key: &SigningKey) -> String {
    let out = bin()
        .args(["token", "issue", "--data-dir"])
        .arg(dir)
        .args(["--participant", &keys::public_key(key).to_hex()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    text(&out).0.trim().to_owned()
}

// ---- running the commands -----------------------------------------------------

fn run(args: &[&str]) -> Output {
    let out = bin()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run medledger");
    assert_no_panic(&out);
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `medledger export` of FROM..=TO; requires success.
fn export(source: &[&str], kind: &str, format: &str, out: &Path) {
    let mut args = vec![
        "export", "--kind", kind, "--from", FROM, "--to", TO, "--format", format, "--out",
    ];
    args.push(s(out));
    args.extend_from_slice(source);
    let o = run(&args);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "export failed: {stdout}{stderr}");
    assert!(stdout.starts_with("exported "), "{stdout}");
}

/// `medledger export verify`; returns the exit code and output.
fn verify(file: &Path, manifest: Option<&Path>, source: &[&str], vkey: &str) -> (i32, String) {
    let mut args = vec!["export", "verify", s(file), "--vkey", vkey];
    if let Some(m) = manifest {
        args.extend_from_slice(&["--manifest", s(m)]);
    }
    args.extend_from_slice(source);
    let o = run(&args);
    let (stdout, stderr) = text(&o);
    (o.status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
}

fn verify_ok(file: &Path, source: &[&str], vkey: &str) {
    let (code, out) = verify(file, None, source, vkey);
    assert_eq!(code, 0, "verify must pass: {out}");
    assert!(out.starts_with("ok: "), "{out}");
    assert_eq!(out.lines().count(), 1, "one line: {out}");
}

fn manifest_of(file: &Path) -> PathBuf {
    PathBuf::from(format!("{}.manifest.json", file.display()))
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&fs::read(p).unwrap()).unwrap()
}

fn leaves(manifest: &Value) -> Vec<u64> {
    manifest["leaves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_u64().unwrap())
        .collect()
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// Copies an export and its manifest under a new name.
fn copy_export(file: &Path, to: &Path) {
    fs::copy(file, to).unwrap();
    fs::copy(manifest_of(file), manifest_of(to)).unwrap();
}

/// Byte offset of the start of the row holding `leaf` (CSV or NDJSON).
fn row_start(bytes: &[u8], leaf: u64, ndjson: bool) -> usize {
    let needle = if ndjson {
        format!("\n{{\"leaf\":{leaf},")
    } else {
        format!("\n{leaf},")
    };
    bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .map(|p| p + 1)
        .unwrap_or_else(|| panic!("no row for leaf {leaf}"))
}

/// Line number (1-based) of byte `at`.
fn line_of(bytes: &[u8], at: usize) -> usize {
    bytes[..at].iter().filter(|b| **b == b'\n').count() + 1
}

// ---- the tests ----------------------------------------------------------------------

#[test]
fn exports_verify_and_tampering_is_caught_by_row() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let ledger = build(&dir);
    let vkey = ledger.vkey.as_str();
    let token = token(&dir, &ledger.researcher);
    let data_dir = ["--data-dir", s(&dir)];
    let out = |name: &str| root.path().join(name);

    // From the data directory, in each format.
    let cases = [
        ("report.csv", kind::MEDICAL_REPORT, "csv"),
        ("report.ndjson", kind::MEDICAL_REPORT, "ndjson"),
        ("obs.ndjson", kind::FHIR_OBSERVATION, "fhir-ndjson"),
        ("vitals.csv", kind::VITAL_SIGNS, "csv"),
        ("counts.ndjson", kind::EPIDEMIC_REPORT, "ndjson"),
    ];
    for (name, k, format) in cases {
        export(&data_dir, k, format, &out(name));
        let m = read_json(&manifest_of(&out(name)));
        let want = ledger.selected(k);
        assert!(!want.is_empty(), "{k}");
        assert_eq!(leaves(&m), want, "{name}: exactly the selected leaves");
        assert_eq!(m["rows"], want.len(), "{name}");
        assert_eq!(m["query"]["kind"], k);
        assert_eq!(m["query"]["format"], format);
        let bytes = fs::read(out(name)).unwrap();
        assert_eq!(m["sha256"], sha256_hex(&bytes), "{name}");
        let size = m["log_size"].as_u64().unwrap();
        assert!(leaves(&m).iter().all(|l| *l < size));
        assert!(
            m["checkpoint"]
                .as_str()
                .unwrap()
                .contains(&format!("\n{size}\n"))
        );
        verify_ok(&out(name), &data_dir, vkey);
    }
    let reports = ledger.selected(kind::MEDICAL_REPORT);
    assert_eq!(reports.len() as u64, REPORTS / 2, "four of eight days");

    // CSV: a header and quoted free text; rows parse back with the csv crate.
    let csv_bytes = fs::read(out("report.csv")).unwrap();
    let mut r = csv::Reader::from_reader(csv_bytes.as_slice());
    assert_eq!(
        r.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "leaf",
            "id",
            "recorded",
            "patient",
            "institution",
            "encounter_date",
            "diagnoses",
            "anamnesis",
            "findings",
            "therapy"
        ]
    );
    let parsed: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(parsed.len(), reports.len());
    for (rec, leaf) in parsed.iter().zip(&reports) {
        assert_eq!(rec[0].parse::<u64>().unwrap(), *leaf);
        assert!((FROM..=TO).contains(&&rec[5]), "{rec:?}");
        assert_eq!(&rec[6], "J10.1;I10");
        assert!(rec[7].contains("\"dry\" cough,\nmyalgia"), "{rec:?}");
    }
    // No author key anywhere in an export.
    let doctor_hex = keys::public_key(&ledger.doctor).to_hex();
    for (name, _, _) in cases {
        let text = fs::read_to_string(out(name)).unwrap();
        assert!(!text.contains(&doctor_hex), "{name} leaks the author key");
    }

    // Through a served node: the same files, byte for byte.
    let node = Server::start(&dir, &[]);
    let url = node.base.clone();
    let remote = ["--url", url.as_str(), "--token", token.as_str()];
    let mut remote_vkey = remote.to_vec();
    remote_vkey.extend_from_slice(&["--vkey", vkey]);
    for (name, k, format) in cases {
        let via = out(&format!("served-{name}"));
        export(&remote_vkey, k, format, &via);
        assert_eq!(
            fs::read(&via).unwrap(),
            fs::read(out(name)).unwrap(),
            "{name}: the node's export equals the data directory's"
        );
        // The manifests agree but for the checkpoint pinned: the node logs
        // every record-level read on the ledger, so its log has grown.
        let (mut served, mut local) = (
            read_json(&manifest_of(&via)),
            read_json(&manifest_of(&out(name))),
        );
        let sizes = (served["log_size"].as_u64(), local["log_size"].as_u64());
        assert!(sizes.0 >= sizes.1, "{name}: {sizes:?}");
        for m in [&mut served, &mut local] {
            let m = m.as_object_mut().unwrap();
            m.remove("log_size");
            m.remove("checkpoint");
        }
        assert_eq!(served, local, "{name}");
        // The endpoint itself renders each format the same way, streamed
        // (no length known in advance), with the pinned checkpoint.
        let resp = reqwest::blocking::Client::new()
            .get(format!("{url}/v1/export"))
            .query(&[("kind", k), ("from", FROM), ("to", TO), ("format", format)])
            .bearer_auth(&token)
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.content_length(), None, "{name}: a streamed body");
        let m = read_json(&manifest_of(&via));
        // Every export of patients' records is logged on the ledger, so the
        // log may have grown by the access entries of the exports before
        // (counts name no patient); the rows have not.
        let size: u64 = resp.headers()["medledger-log-size"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(size >= m["log_size"].as_u64().unwrap(), "{name}");
        assert_eq!(resp.headers()["medledger-withheld"], "0", "{name}");
        use base64::Engine;
        let note = base64::engine::general_purpose::STANDARD
            .decode(resp.headers()["medledger-checkpoint"].as_bytes())
            .unwrap();
        let note = String::from_utf8(note).unwrap();
        assert_eq!(note.lines().nth(1), Some(size.to_string().as_str()));
        assert_eq!(resp.bytes().unwrap(), fs::read(&via).unwrap(), "{name}");
        verify_ok(&via, &remote, vkey);
    }

    // Refusals: 400 for a bad query, 401 without a token.
    let http = reqwest::blocking::Client::new();
    for q in [
        vec![("kind", "participant.register")],
        vec![("kind", "medical_report"), ("format", "fhir-ndjson")],
        vec![("kind", "medical_report"), ("format", "xml")],
        vec![("from", "2026-02-30")],
        vec![("from", "2026-11-25"), ("to", "2026-11-24")],
    ] {
        let resp = http
            .get(format!("{url}/v1/export"))
            .query(&q)
            .bearer_auth(&token)
            .send()
            .unwrap();
        assert_eq!(resp.status(), 400, "{q:?}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{q:?}"
        );
        let p: Value = resp.json().unwrap();
        assert_eq!(p["code"], "bad_query", "{q:?}");
    }
    let anonymous = http.get(format!("{url}/v1/export")).send().unwrap();
    assert_eq!(anonymous.status(), 401);

    // The ledger grows; an export pinned earlier still verifies (through a
    // consistency proof to the node's newer checkpoint).
    let more: Vec<String> = (0..20)
        .map(|i| {
            line(&signed(
                &ledger.doctor,
                kind::MEDICAL_REPORT,
                &report(1000 + i),
            ))
        })
        .collect();
    let input = root.path().join("more.ndjson");
    fs::write(&input, more.join("\n") + "\n").unwrap();
    let o = run(&[
        "submit",
        "--url",
        &url,
        "--signed",
        "--vkey",
        vkey,
        s(&input),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    verify_ok(&out("report.csv"), &remote, vkey);

    // (a) One byte of one row changed: the row is named, through the node
    // and through the data directory.
    let csv_bad = out("bad.csv");
    copy_export(&out("report.csv"), &csv_bad);
    let mut bytes = fs::read(&csv_bad).unwrap();
    let victim = reports[9];
    let at = row_start(&bytes, victim, false);
    let id_at = at + victim.to_string().len() + 1 + 5;
    bytes[id_at] = if bytes[id_at] == b'a' { b'b' } else { b'a' };
    fs::write(&csv_bad, &bytes).unwrap();
    let line = line_of(&bytes, at);
    let named = format!("row 10 (line {line}, leaf {victim})");
    let (code, msg) = verify(&csv_bad, None, &remote, vkey);
    assert_eq!(code, 1, "{msg}");
    assert!(msg.contains(&named) && msg.contains("differs"), "{msg}");

    let nd_bad = out("bad.ndjson");
    copy_export(&out("report.ndjson"), &nd_bad);
    let mut bytes = fs::read(&nd_bad).unwrap();
    let victim = reports[41];
    let at = row_start(&bytes, victim, true);
    let therapy = at + bytes[at..].windows(5).position(|w| w == b"Rest;").unwrap();
    bytes[therapy] = b'B';
    fs::write(&nd_bad, &bytes).unwrap();
    drop(node);
    let (code, msg) = verify(&nd_bad, None, &data_dir, vkey);
    assert_eq!(code, 1, "{msg}");
    assert!(
        msg.contains(&format!("row 42 (line 42, leaf {victim})")),
        "{msg}"
    );

    // (b) A row and its leaf dropped (the manifest's count and hash made to
    // match): the export is incomplete, and the missing leaf is named.
    let short = out("short.ndjson");
    copy_export(&out("report.ndjson"), &short);
    let text_rows = fs::read_to_string(&short).unwrap();
    let mut lines: Vec<&str> = text_rows.lines().collect();
    let dropped = reports[17];
    assert!(lines[17].starts_with(&format!("{{\"leaf\":{dropped},")));
    lines.remove(17);
    let kept = lines.join("\n") + "\n";
    fs::write(&short, &kept).unwrap();
    let mut m = read_json(&manifest_of(&short));
    let mut l = leaves(&m);
    l.retain(|x| *x != dropped);
    m["leaves"] = json!(l);
    m["rows"] = json!(l.len());
    m["sha256"] = json!(sha256_hex(kept.as_bytes()));
    fs::write(manifest_of(&short), serde_json::to_vec(&m).unwrap()).unwrap();
    let (code, msg) = verify(&short, None, &data_dir, vkey);
    assert_eq!(code, 1, "{msg}");
    assert!(
        msg.contains("incomplete") && msg.contains(&format!("leaf {dropped}")),
        "{msg}"
    );
    // A row added that the query does not select is refused too.
    let mut m = read_json(&manifest_of(&out("report.ndjson")));
    let outside = ledger
        .records
        .iter()
        .find(|(k, d, _)| k == kind::MEDICAL_REPORT && d.as_str() < FROM)
        .map(|r| r.2)
        .unwrap();
    let mut l = leaves(&m);
    l.push(outside);
    l.sort_unstable();
    m["leaves"] = json!(l);
    let extra_manifest = out("extra.manifest.json");
    fs::write(&extra_manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    let (code, msg) = verify(
        &out("report.ndjson"),
        Some(&extra_manifest),
        &data_dir,
        vkey,
    );
    assert_eq!(code, 1, "{msg}");
    assert!(
        msg.contains(&format!("leaf {outside})")) && msg.contains("outside the query"),
        "{msg}"
    );

    // (c) Forged checkpoints. A changed root under the original signature,
    // and a checkpoint signed by another key under the ledger's origin, do
    // not verify with the trusted key.
    let m = read_json(&manifest_of(&out("report.csv")));
    let note = m["checkpoint"].as_str().unwrap().to_owned();
    let (body, sig_lines) = note.split_once("\n\n").unwrap();
    let cp = Checkpoint::from_text(&format!("{body}\n")).unwrap();
    let forged_root = Checkpoint {
        root: [7; 32],
        ..cp.clone()
    };
    let stolen_signature = format!("{}\n{sig_lines}", forged_root.to_text());
    let impostor = NoteSigner::new(&cp.origin, keys::generate().unwrap()).unwrap();
    let other_key = forged_root.sign(&impostor).unwrap().render();
    for (name, forged) in [("root", stolen_signature), ("key", other_key)] {
        let file = out(&format!("forged-{name}.csv"));
        copy_export(&out("report.csv"), &file);
        let mut m = read_json(&manifest_of(&file));
        m["checkpoint"] = json!(forged);
        fs::write(manifest_of(&file), serde_json::to_vec(&m).unwrap()).unwrap();
        let (code, msg) = verify(&file, None, &data_dir, vkey);
        assert_eq!(code, 1, "{name}: {msg}");
        assert!(msg.contains("checkpoint does not verify"), "{name}: {msg}");
    }
    // A checkpoint that verifies (signed with the node's own key) but that
    // the ledger never had: the ledger at hand contradicts it (exit 3).
    let node_key = read_key_file(&dir.join("node.key")).unwrap();
    let signer = NoteSigner::new(&cp.origin, node_key).unwrap();
    let file = out("fork.csv");
    copy_export(&out("report.csv"), &file);
    let mut m = read_json(&manifest_of(&file));
    m["checkpoint"] = json!(forged_root.sign(&signer).unwrap().render());
    fs::write(manifest_of(&file), serde_json::to_vec(&m).unwrap()).unwrap();
    let (code, msg) = verify(&file, None, &data_dir, vkey);
    assert_eq!(code, 3, "{msg}");
    assert!(msg.contains("INCONSISTENT"), "{msg}");
    let node = Server::start(&dir, &[]);
    let remote = ["--url", node.base.as_str(), "--token", token.as_str()];
    let (code, msg) = verify(&file, None, &remote, vkey);
    assert_eq!(code, 3, "{msg}");
    assert!(msg.contains("FORK"), "{msg}");
    // The untouched export still verifies after all that.
    verify_ok(&out("obs.ndjson"), &remote, vkey);
}

#[test]
fn export_refuses_bad_queries_and_leaves_no_partial_files() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let vkey = init(&dir);
    let out = root.path().join("x.csv");
    for (args, want) in [
        (
            vec!["--kind", "participant.register", "--format", "csv"],
            "cannot be exported",
        ),
        (
            vec!["--kind", "medical_report", "--format", "fhir-ndjson"],
            "only FHIR kinds",
        ),
        (
            vec![
                "--kind",
                "medical_report",
                "--format",
                "csv",
                "--from",
                "2026-13-01",
            ],
            "from must be a date",
        ),
        (
            vec!["--kind", "medical_report", "--format", "xml"],
            "not one of csv",
        ),
    ] {
        let mut a = vec!["export", "--data-dir", s(&dir), "--out", s(&out)];
        a.extend(args);
        let o = run(&a);
        assert_eq!(o.status.code(), Some(2), "{a:?}");
        assert!(text(&o).1.contains(want), "{a:?}: {}", text(&o).1);
        assert!(!out.exists() && !manifest_of(&out).exists());
    }
    // An empty export of an empty range is still an export, and verifies.
    let o = run(&[
        "export",
        "--data-dir",
        s(&dir),
        "--out",
        s(&out),
        "--kind",
        "vital_signs",
        "--format",
        "ndjson",
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert_eq!(fs::read(&out).unwrap(), b"");
    let m = read_json(&manifest_of(&out));
    assert_eq!(m["rows"], 0);
    assert_eq!(m["leaves"], json!([]));
    verify_ok(&out, &["--data-dir", s(&dir)], &vkey);
    // A stray byte after the last row is caught.
    fs::OpenOptions::new()
        .append(true)
        .open(&out)
        .unwrap()
        .write_all(b"x")
        .unwrap();
    let (code, msg) = verify(&out, None, &["--data-dir", s(&dir)], &vkey);
    assert_eq!(code, 1, "{msg}");
    assert!(msg.contains("follow the last row"), "{msg}");
}
