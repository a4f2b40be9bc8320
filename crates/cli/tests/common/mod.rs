//! Shared helpers for the CLI integration tests: running the binary,
//! signing transactions, a seeded PRNG and segment-file surgery.
#![allow(dead_code)]

use ed25519_dalek::SigningKey;
use medledger_formats::keys;
use medledger_formats::tx::Transaction;
use medledger_ledger::{RegisterPayload, RevokePayload, Role, kind, now_ms, read_key_file};
use serde_json::{Value, json};
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Origin line used by every test ledger.
pub const ORIGIN: &str = "medledger.test/log";

/// The binary under test.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_medledger"));
    c.env("RUST_LOG", "warn").env_remove("RUST_BACKTRACE");
    c
}

/// A count from the environment, or `default`.
pub fn env_count(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The seed from `MEDLEDGER_TEST_SEED`, else one derived from the clock;
/// printed so that a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("MEDLEDGER_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| now_ms() ^ u64::from(std::process::id()).rotate_left(32));
    eprintln!("{test}: seed {seed} (replay with MEDLEDGER_TEST_SEED={seed})");
    seed
}

/// SplitMix64: small, seedable, good enough to pick offsets and delays.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Panics with the command's output if it printed a Rust panic.
pub fn assert_no_panic(out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "the binary panicked:\n{stderr}"
    );
}

/// stdout and stderr as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `medledger init`; returns the node's verifier key.
pub fn init(dir: &Path) -> String {
    init_with_origin(dir, ORIGIN)
}

/// `medledger init` with a given origin; returns the node's verifier key.
pub fn init_with_origin(dir: &Path, origin: &str) -> String {
    let out = bin()
        .arg("init")
        .arg("--data-dir")
        .arg(dir)
        .args(["--origin", origin])
        .output()
        .expect("run medledger init");
    assert_no_panic(&out);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "init failed: {stderr}");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("node vkey:"))
        .map(|v| v.trim().to_owned())
        .expect("init prints the node vkey")
}

/// The ledger's admin key.
pub fn admin_key(dir: &Path) -> SigningKey {
    read_key_file(&dir.join("admin.key")).expect("read admin.key")
}

/// A `participant.register` of `key` as a doctor, signed by `admin`.
pub fn register_tx(admin: &SigningKey, key: &SigningKey) -> Transaction {
    register_role(admin, key, Role::Doctor, None)
}

/// A `participant.register` of `key` with `role`, bound to `patient` if
/// given, signed by `by`.
pub fn register_role(
    by: &SigningKey,
    key: &SigningKey,
    role: Role,
    patient: Option<&str>,
) -> Transaction {
    let p = RegisterPayload {
        key: keys::public_key(key),
        role,
        institution: "Klinicki centar Nis".into(),
        label: format!("test {role}"),
        patient: patient.map(str::to_owned),
        cluster: None,
    };
    Transaction::sign(
        by,
        kind::REGISTER,
        now_ms(),
        &serde_json::to_value(p).expect("payload"),
    )
    .expect("sign register")
}

/// A `participant.revoke` of `key`, signed by `admin`.
pub fn revoke_tx(admin: &SigningKey, key: &SigningKey) -> Transaction {
    let p = RevokePayload {
        key: keys::public_key(key),
        reason: "left the institution".into(),
    };
    Transaction::sign(
        admin,
        kind::REVOKE,
        now_ms(),
        &serde_json::to_value(p).expect("payload"),
    )
    .expect("sign revoke")
}

/// A medical report payload of about 300 bytes.
pub fn report_payload(i: u64) -> Value {
    json!({
        "patient": medledger_health::pseudonym::synthetic(i),
        "institution": "Klinicki centar Nis",
        "encounter_date": "2026-11-24",
        "diagnoses": ["J10.1", "I10"],
        "anamnesis": "Fever 38.5 C for two days, dry cough, myalgia.",
        "findings": "Pharynx hyperaemic, lungs clear, BP 150/95.",
        "therapy": "Oseltamivir 75 mg twice daily for 5 days; rest; fluids.",
    })
}

/// A fresh medical report signed by `doctor`.
pub fn report_tx(doctor: &SigningKey, i: u64) -> Transaction {
    Transaction::sign(doctor, kind::MEDICAL_REPORT, now_ms(), &report_payload(i))
        .expect("sign report")
}

/// One NDJSON line for `tx`.
pub fn line(tx: &Transaction) -> String {
    serde_json::to_string(&tx.to_wire().expect("wire")).expect("json")
}

/// The result of one `medledger import` run.
pub struct Imported {
    /// One parsed JSON object per output line.
    pub results: Vec<Value>,
    /// The raw process output.
    pub output: Output,
}

impl Imported {
    /// Ids (hex) of the acknowledged transactions, in output order.
    pub fn ids(&self) -> Vec<String> {
        self.results
            .iter()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect()
    }
    /// The result line for input line `n` (1-based).
    pub fn for_line(&self, n: u64) -> &Value {
        self.results
            .iter()
            .find(|r| r["line"].as_u64() == Some(n))
            .unwrap_or_else(|| panic!("no result for input line {n}: {:?}", self.results))
    }
}

/// Runs `medledger import` over `lines` (written to a file in `dir`'s parent).
pub fn import(dir: &Path, lines: &[String], batch: usize) -> Imported {
    import_args(dir, lines, batch, &[])
}

/// Runs `medledger import` with extra arguments.
pub fn import_args(dir: &Path, lines: &[String], batch: usize, extra: &[&str]) -> Imported {
    let input = input_file(dir, lines);
    let output = bin()
        .arg("import")
        .arg("--data-dir")
        .arg(dir)
        .arg(&input)
        .args(["--batch", &batch.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("run medledger import");
    let _ = fs::remove_file(&input);
    assert_no_panic(&output);
    let results = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad output line {l:?}: {e}")))
        .collect();
    Imported { results, output }
}

/// Writes `lines` to a fresh NDJSON file next to `dir`.
pub fn input_file(dir: &Path, lines: &[String]) -> PathBuf {
    let name = format!(
        "{}-input-{}.ndjson",
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("ledger"),
        keys::random_bytes::<6>().map(hex::encode).expect("random")
    );
    let path = dir.parent().expect("data dir has a parent").join(name);
    let mut f = fs::File::create(&path).expect("create input file");
    for l in lines {
        writeln!(f, "{l}").expect("write input file");
    }
    f.sync_all().expect("sync input file");
    path
}

/// Imports and requires every line to be acknowledged.
pub fn import_ok(dir: &Path, txs: &[Transaction], batch: usize) -> Vec<String> {
    let lines: Vec<String> = txs.iter().map(line).collect();
    let imp = import(dir, &lines, batch);
    let (_, stderr) = text(&imp.output);
    assert!(
        imp.output.status.success(),
        "import failed: {stderr}\n{:?}",
        imp.results
    );
    let ids = imp.ids();
    assert_eq!(ids.len(), txs.len(), "every line acknowledged");
    for (id, tx) in ids.iter().zip(txs) {
        assert_eq!(id, &hex::encode(tx.id()));
    }
    ids
}

/// Registers a new doctor through the binary and returns its key.
pub fn new_doctor(dir: &Path) -> SigningKey {
    let doctor = keys::generate().expect("key");
    import_ok(dir, &[register_tx(&admin_key(dir), &doctor)], 1);
    doctor
}

/// `medledger verify DIR`.
pub fn verify(dir: &Path) -> Output {
    let out = bin()
        .arg("verify")
        .arg(dir)
        .output()
        .expect("run medledger verify");
    assert_no_panic(&out);
    out
}

/// Requires `medledger verify` to pass.
pub fn assert_verifies(dir: &Path) {
    let out = verify(dir);
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "verify must pass:\n{stdout}{stderr}"
    );
    assert!(stdout.starts_with("ok: "), "{stdout}");
}

/// Requires `medledger verify` to fail with exit 1; returns its stderr.
pub fn assert_verify_fails(dir: &Path) -> String {
    let out = verify(dir);
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "verify must fail:\n{stdout}{stderr}"
    );
    assert!(stderr.contains("verification FAILED"), "{stderr}");
    stderr
}

/// The only segment file of a ledger (fails if there are several).
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir.join("segments"))
        .expect("segments dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// Copies a data directory (files and one level of subdirectories).
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create copy");
    for entry in fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// Flips bit `bit` of byte `offset` in `path`.
pub fn flip_bit(path: &Path, offset: u64, bit: u8) {
    let mut data = fs::read(path).expect("read file");
    data[offset as usize] ^= 1 << bit;
    fs::write(path, data).expect("write file");
}

// ---- segment files --------------------------------------------------------

/// Segment file magic (format version 1).
pub const SEGMENT_MAGIC: &[u8; 8] = b"MLSEG\0\0\x01";
/// Record kind of a block's payloads.
pub const KIND_PAYLOADS: u8 = 1;
/// Record kind of a block.
pub const KIND_BLOCK: u8 = 2;

/// CRC-32C (Castagnoli), bitwise: the tests must not trust the code under test.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// One record of a segment file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegRecord {
    /// 1 = payloads, 2 = block.
    pub kind: u8,
    /// The body.
    pub body: Vec<u8>,
}

impl SegRecord {
    /// `len | kind | crc32c | body`.
    pub fn frame(&self, out: &mut Vec<u8>) {
        let len = (self.body.len() as u32).to_le_bytes();
        let mut covered = len.to_vec();
        covered.push(self.kind);
        covered.extend_from_slice(&self.body);
        out.extend_from_slice(&len);
        out.push(self.kind);
        out.extend_from_slice(&crc32c(&covered).to_le_bytes());
        out.extend_from_slice(&self.body);
    }
}

/// A parsed segment file: its first height and its records.
#[derive(Clone, Debug)]
pub struct Segment {
    /// First height from the header.
    pub first_height: u64,
    /// The records, in order.
    pub records: Vec<SegRecord>,
}

impl Segment {
    /// Parses a well-formed segment file, checking every CRC.
    pub fn read(path: &Path) -> Segment {
        let data = fs::read(path).expect("read segment");
        assert_eq!(&data[..8], SEGMENT_MAGIC, "segment magic");
        let first_height = u64::from_le_bytes(data[8..16].try_into().expect("8 bytes"));
        let mut records = Vec::new();
        let mut at = 16;
        while at < data.len() {
            let len = u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
            let kind = data[at + 4];
            let crc = u32::from_le_bytes(data[at + 5..at + 9].try_into().expect("4 bytes"));
            let body = data[at + 9..at + 9 + len].to_vec();
            let r = SegRecord { kind, body };
            let mut framed = Vec::new();
            r.frame(&mut framed);
            assert_eq!(
                u32::from_le_bytes(framed[5..9].try_into().expect("4 bytes")),
                crc,
                "record at {at}: the test's crc32c must agree with the file"
            );
            records.push(r);
            at += 9 + len;
        }
        Segment {
            first_height,
            records,
        }
    }

    /// The file bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = SEGMENT_MAGIC.to_vec();
        out.extend_from_slice(&self.first_height.to_le_bytes());
        for r in &self.records {
            r.frame(&mut out);
        }
        out
    }

    /// Writes the file.
    pub fn write(&self, path: &Path) {
        fs::write(path, self.encode()).expect("write segment");
    }

    /// (payloads, block) record pairs, one per block.
    pub fn pairs(&self) -> Vec<[SegRecord; 2]> {
        assert!(self.records.len().is_multiple_of(2), "whole pairs");
        self.records
            .chunks(2)
            .map(|c| {
                assert_eq!((c[0].kind, c[1].kind), (KIND_PAYLOADS, KIND_BLOCK));
                [c[0].clone(), c[1].clone()]
            })
            .collect()
    }

    /// A segment made of `pairs`.
    pub fn from_pairs(first_height: u64, pairs: &[[SegRecord; 2]]) -> Segment {
        Segment {
            first_height,
            records: pairs.iter().flat_map(|p| p.iter().cloned()).collect(),
        }
    }

    /// Byte offset where each pair starts (and the end of the file last).
    pub fn pair_offsets(&self) -> Vec<u64> {
        let mut out = Vec::new();
        let mut at = 16u64;
        for (i, r) in self.records.iter().enumerate() {
            if i % 2 == 0 {
                out.push(at);
            }
            at += 9 + r.body.len() as u64;
        }
        out.push(at);
        out
    }
}

/// Height of the block in a (payloads, block) pair.
pub fn pair_height(pair: &[SegRecord; 2]) -> u64 {
    medledger_formats::record::decode_block_header(&pair[1].body)
        .expect("block header")
        .header()
        .height
}

/// Segment file name for a first height.
pub fn segment_name(first_height: u64) -> String {
    format!("{first_height:020}.seg")
}

/// A running `medledger serve`; killed if a test panics with it still up.
pub struct Server {
    /// The process, until it is stopped.
    pub child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its stderr log.
    pub log: PathBuf,
}

/// A port nothing listens on.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// A blocking HTTP client with a 30 s timeout.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

impl Server {
    /// Starts the node on `dir` (creating a ledger if there is none) and
    /// waits until /healthz answers.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let log = dir.with_extension(format!("serve-{port}.log"));
        let stderr = std::fs::File::create(&log).expect("server log");
        let child = bin()
            .arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn medledger serve");
        let mut server = Server {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let http = client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = server.child.as_mut().unwrap().try_wait() {
                panic!("serve exited early ({status}):\n{}", server.log_text());
            }
            if let Ok(r) = http.get(server.url("/healthz")).send()
                && r.status() == 200
            {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not come up:\n{}",
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> String {
        self.child.as_ref().expect("running").id().to_string()
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_term(&self) {
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &self.pid()])
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit (after SIGTERM) and returns its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("serve did not stop after SIGTERM:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, and requires a clean exit 0.
    pub fn stop(mut self) {
        self.signal_term();
        let status = self.wait_exit();
        let log = self.log_text();
        assert_eq!(
            status.code(),
            Some(0),
            "serve must exit 0 on SIGTERM:\n{log}"
        );
        assert!(!log.contains("panicked"), "serve panicked:\n{log}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `medledger token issue` for `key`.
pub fn issue_token(dir: &Path, key: &SigningKey) -> String {
    let out = bin()
        .args(["token", "issue", "--data-dir"])
        .arg(dir)
        .args(["--participant", &keys::public_key(key).to_hex()])
        .output()
        .expect("run token issue");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The pseudonym the e-prescription tests prescribe for.
pub const RX_PATIENT: &str = "MFRGGZDFMZTWQ2LKNNWG23TPOA";

/// A MedicationRequest for [`RX_PATIENT`]: 20 tablets of morphine
/// (N02AA01) a fill with `repeats` repeats, valid from today (UTC) for 30
/// days.
pub fn prescription_payload(repeats: u32) -> Value {
    let day = |d: u64| medledger_health::calendar::date_of_ms(now_ms() + d * 86_400_000);
    json!({
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": format!("Patient/{RX_PATIENT}")},
        "authoredOn": day(0),
        "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": "N02AA01"}]},
        "dosageInstruction": [{
            "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": 1, "system": "http://unitsofmeasure.org", "code": "{tablet}"}}]
        }],
        "dispenseRequest": {
            "validityPeriod": {"start": day(0), "end": day(29)},
            "numberOfRepeatsAllowed": repeats,
            "quantity": {"value": 20, "system": "http://unitsofmeasure.org", "code": "{tablet}"}
        }
    })
}

/// A MedicationDispense of `qty` tablets against the prescription with
/// transaction id `rx` (hex), handed over now.
pub fn dispense_payload(rx: &str, qty: u32) -> Value {
    json!({
        "resourceType": "MedicationDispense",
        "status": "completed",
        "subject": {"reference": format!("Patient/{RX_PATIENT}")},
        "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": "N02AA01"}]},
        "authorizingPrescription": [{"reference": format!("MedicationRequest/{rx}")}],
        "quantity": {"value": qty, "system": "http://unitsofmeasure.org", "code": "{tablet}"},
        "whenHandedOver": medledger_health::calendar::instant_of_ms(now_ms() as i64)
    })
}
