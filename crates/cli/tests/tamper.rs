//! Tampering with stored bytes: every flip in a segment (the source of
//! truth) is reported by `verify`; flips in derived files (subtree hashes,
//! index) are repaired or ignored and never change what the ledger answers.

mod common;

use common::*;
use ed25519_dalek::SigningKey;
use medledger_formats::checkpoint::Checkpoint;
use medledger_formats::keys;
use medledger_formats::merkle;
use medledger_formats::note::NoteVerifier;
use medledger_ledger::{Ledger, Role, VerifyReport, verify_dir};
use std::fs;
use std::path::{Path, PathBuf};

/// A small ledger and what is known to be in it.
struct Built {
    dir: PathBuf,
    vkey: String,
    doctor: SigningKey,
    /// (id, log index) of every acknowledged transaction.
    acked: Vec<([u8; 32], u64)>,
    report: VerifyReport,
}

/// Up to 30 blocks: genesis, a registration, then 28 batches of 1-3
/// reports from four import runs (a batch is committed while the next is
/// signed, so two batches can share a block).
fn build(root: &Path) -> Built {
    let dir = root.join("ledger");
    let vkey = init(&dir);
    let doctor = keys::generate().expect("key");
    let mut acked = Vec::new();
    let mut record = |imp: &Imported| {
        for r in &imp.results {
            let id = r["id"].as_str().expect("acknowledged");
            let mut h = [0u8; 32];
            hex::decode_to_slice(id, &mut h).expect("hex id");
            acked.push((h, r["index"].as_u64().expect("index")));
        }
    };
    let reg = import(&dir, &[line(&register_tx(&admin_key(&dir), &doctor))], 1);
    record(&reg);
    let mut n = 0;
    for run in 0..4usize {
        let batch = run % 3 + 1;
        let lines: Vec<String> = (0..7 * batch)
            .map(|_| {
                n += 1;
                line(&report_tx(&doctor, n))
            })
            .collect();
        let imp = import(&dir, &lines, batch);
        assert!(imp.output.status.success(), "{:?}", text(&imp.output));
        record(&imp);
    }
    let report = verify_dir(&dir, 2, |_| {}).expect("fresh ledger verifies");
    assert!(
        (16..=30).contains(&report.blocks),
        "{} blocks",
        report.blocks
    );
    assert_eq!(report.transactions, acked.len() as u64 + 1);
    Built {
        dir,
        vkey,
        doctor,
        acked,
        report,
    }
}

/// Offset of the record pair holding byte `off` (0 inside the file header).
fn pair_start(offsets: &[u64], off: u64) -> u64 {
    if off < 16 {
        return 0;
    }
    offsets
        .iter()
        .copied()
        .filter(|&o| o <= off)
        .max()
        .unwrap_or(0)
}

#[test]
fn flipped_byte_is_reported_by_verify() {
    let trials = env_count("MEDLEDGER_TAMPER_TRIALS", 200);
    let mut rng = Rng::new(seed("flipped_byte_is_reported_by_verify"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let b = build(tmp.path());
    let segs = segment_files(&b.dir);
    let originals: Vec<Vec<u8>> = segs.iter().map(|p| fs::read(p).expect("read")).collect();
    let offsets: Vec<Vec<u64>> = segs
        .iter()
        .map(|p| Segment::read(p).pair_offsets())
        .collect();

    for trial in 0..trials {
        let s = rng.below(segs.len() as u64) as usize;
        let path = &segs[s];
        let off = rng.below(originals[s].len() as u64);
        let bit = rng.below(8) as u8;
        let mut data = originals[s].clone();
        data[off as usize] ^= 1 << bit;
        fs::write(path, &data).expect("write flipped segment");
        // The pair holding the flip is the first damage, whatever it hit.
        let at = pair_start(&offsets[s], off);
        let expect = format!("is corrupt at byte {at}");
        let ctx = format!(
            "trial {trial}: bit {bit} of byte {off} of {}",
            path.display()
        );
        if trial % 10 == 0 {
            let stderr = assert_verify_fails(&b.dir);
            assert!(stderr.contains(&expect), "{ctx}: {stderr}");
            let name = path.file_name().and_then(|n| n.to_str()).expect("name");
            assert!(stderr.contains(name), "{ctx}: {stderr}");
        } else {
            match verify_dir(&b.dir, 2, |_| {}) {
                Ok(r) => panic!("{ctx}: verify passed: {r:?}"),
                Err(e) => assert!(e.to_string().contains(&expect), "{ctx}: {e}"),
            }
        }
        fs::write(path, &originals[s]).expect("restore segment");
    }
    assert_verifies(&b.dir);
}

/// Derived files of a data directory: subtree levels and the index.
fn derived_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir.join("merkle"))
        .expect("merkle dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| fs::metadata(p).is_ok_and(|m| m.len() > 0))
        .collect();
    v.sort();
    v.push(dir.join("index.redb"));
    v
}

/// One bit to flip in a derived file, relative to the data directory.
struct Flip {
    file: PathBuf,
    offset: usize,
    bit: u8,
}

impl Flip {
    fn apply(&self, dir: &Path) -> String {
        let path = dir.join(&self.file);
        flip_bit(&path, self.offset as u64, self.bit);
        format!(
            "bit {} of byte {} of {}",
            self.bit,
            self.offset,
            self.file.display()
        )
    }
}

/// A random flip in one of `files`, half the time in a non-zero byte
/// (where the data is).
fn random_flip(rng: &mut Rng, dir: &Path, files: &[PathBuf]) -> Flip {
    let path = &files[rng.below(files.len() as u64) as usize];
    let data = fs::read(path).expect("read derived file");
    let nonzero: Vec<usize> = (0..data.len()).filter(|&i| data[i] != 0).collect();
    let offset = if rng.below(2) == 0 && !nonzero.is_empty() {
        nonzero[rng.below(nonzero.len() as u64) as usize]
    } else {
        rng.below(data.len() as u64) as usize
    };
    Flip {
        file: path.strip_prefix(dir).expect("inside dir").to_path_buf(),
        offset,
        bit: rng.below(8) as u8,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Flips aimed at live data: a leaf hash that is not on the frontier, one
/// that is, an inner node; in the index, the doctor's key, its participant
/// record and a transaction id.
fn targeted_flips(b: &Built) -> Vec<Flip> {
    let m = |level: u32| PathBuf::from(format!("merkle/level-{level:02}"));
    let size = b.report.transactions as usize;
    let mut flips = vec![
        Flip {
            file: m(0),
            offset: 0,
            bit: 0,
        },
        Flip {
            file: m(0),
            offset: (size - 1) * 32 + 5,
            bit: 3,
        },
        Flip {
            file: m(1),
            offset: 40,
            bit: 7,
        },
    ];
    let index = fs::read(b.dir.join("index.redb")).expect("read index");
    let doctor = keys::public_key(&b.doctor).0;
    let (mid_id, _) = b.acked[b.acked.len() / 2];
    let targets: [(&[u8], usize); 3] = [(&doctor, 0), (b"\"role\":\"doctor\"", 9), (&mid_id, 31)];
    for (needle, within) in targets {
        let at = find(&index, needle).expect("the index holds the needle");
        flips.push(Flip {
            file: "index.redb".into(),
            offset: at + within,
            bit: 0,
        });
    }
    flips
}

/// What a reopened ledger must answer despite the flip; the problems found.
fn check_open(b: &Built, dir: &Path, verifier: &NoteVerifier, receipts: bool) -> Vec<String> {
    let mut bad = Vec::new();
    match verify_dir(dir, 2, |_| {}) {
        Ok(r) if r == b.report => {}
        Ok(r) => bad.push(format!("verify reports {r:?}, not {:?}", b.report)),
        Err(e) => bad.push(format!("verify must ignore derived files: {e}")),
    }
    let ledger = match Ledger::open(dir) {
        Ok(l) => l,
        Err(e) => {
            bad.push(format!("open: {e}"));
            return bad;
        }
    };
    let tip = ledger.state.tip();
    if (tip.log.root(), tip.log.size(), tip.next_height)
        != (b.report.log_root, b.report.transactions, b.report.blocks)
    {
        bad.push("tip (root, size, height) differs".into());
    }
    match ledger
        .store
        .checkpoint()
        .map(|n| Checkpoint::verify_note(&n, Some(ORIGIN), std::slice::from_ref(verifier)))
    {
        Some(Ok(cp)) if (cp.size, cp.root) == (b.report.transactions, b.report.log_root) => {}
        other => bad.push(format!("checkpoint: {other:?}")),
    }
    match ledger.state.participant(&keys::public_key(&b.doctor)) {
        Some(p) if (p.role, p.revoked_at) == (Role::Doctor, None) => {}
        other => bad.push(format!("the doctor's participant record is {other:?}")),
    }
    for (id, leaf) in &b.acked {
        match ledger.store.transaction(id) {
            Ok(Some((tx, at, _))) if (tx.id(), at) == (id, *leaf) => {}
            Ok(Some((tx, at, _))) => bad.push(format!(
                "leaf {leaf} answered as {} at {at}",
                hex::encode(tx.id())
            )),
            Ok(None) => bad.push(format!("leaf {leaf} not found")),
            Err(e) => bad.push(format!("lookup of leaf {leaf}: {e}")),
        }
        if receipts {
            let r = ledger.store.receipt(*leaf, None).map_err(|e| e.to_string());
            let ok = r.and_then(|r| {
                merkle::verify_inclusion(
                    id,
                    *leaf,
                    b.report.transactions,
                    &r.proof,
                    &b.report.log_root,
                )
                .map_err(|e| e.to_string())
            });
            if let Err(e) = ok {
                bad.push(format!("receipt for leaf {leaf}: {e}"));
            }
        }
    }
    bad
}

/// Runs targeted and random flips over copies of a small ledger.
fn derived_trials(test: &str, files_of: fn(&Path) -> Vec<PathBuf>, receipts: bool) {
    let trials = env_count("MEDLEDGER_DERIVED_TRIALS", 40);
    let mut rng = Rng::new(seed(test));
    let tmp = tempfile::tempdir().expect("tempdir");
    let b = build(tmp.path());
    let verifier = NoteVerifier::parse(&b.vkey).expect("vkey");
    let allowed = files_of(&b.dir);
    let mut flips: Vec<Flip> = targeted_flips(&b)
        .into_iter()
        .filter(|f| allowed.contains(&b.dir.join(&f.file)))
        .collect();
    for _ in 0..trials {
        flips.push(random_flip(&mut rng, &b.dir, &allowed));
    }
    let mut failures = Vec::new();
    for (trial, flip) in flips.iter().enumerate() {
        let dir = tmp.path().join(format!("trial-{trial}"));
        copy_dir(&b.dir, &dir);
        let what = flip.apply(&dir);
        let bad = check_open(&b, &dir, &verifier, receipts);
        if !bad.is_empty() {
            let shown: Vec<&String> = bad.iter().take(3).collect();
            failures.push(format!("{what}: {} problems, e.g. {shown:?}", bad.len()));
        }
        fs::remove_dir_all(&dir).expect("remove trial dir");
    }
    assert!(
        failures.is_empty(),
        "{} of {} flips changed what the reopened ledger answers:\n{}",
        failures.len(),
        flips.len(),
        failures.join("\n")
    );
}

#[test]
fn flipped_byte_in_derived_files_is_repaired_on_open() {
    derived_trials(
        "flipped_byte_in_derived_files_is_repaired_on_open",
        derived_files,
        false,
    );
}

#[test]
fn flipped_byte_in_merkle_files_never_yields_a_bad_receipt() {
    fn merkle_files(dir: &Path) -> Vec<PathBuf> {
        let mut v = derived_files(dir);
        v.pop();
        v
    }
    derived_trials(
        "flipped_byte_in_merkle_files_never_yields_a_bad_receipt",
        merkle_files,
        true,
    );
}

/// Runs `medledger serve` on `dir` and returns its exit status and stderr
/// if it exits within 60 s (it is killed otherwise).
fn serve_exit(dir: &Path) -> Option<(std::process::ExitStatus, String)> {
    let log = dir.with_extension("serve.log");
    let mut child = bin()
        .arg("serve")
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn serve");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some((status, fs::read_to_string(&log).unwrap_or_default()));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn damage_inside_the_log_stops_serve_with_the_block_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let b = build(tmp.path());
    let segs = segment_files(&b.dir);
    let seg = Segment::read(&segs[0]);
    let offsets = seg.pair_offsets();
    // A block in the middle: not the last, so this is no torn tail.
    let k = offsets.len() / 2;
    let mut data = fs::read(&segs[0]).expect("read");
    data[offsets[k] as usize + 12] ^= 0x20;
    fs::write(&segs[0], &data).expect("write");
    let (status, stderr) = serve_exit(&b.dir).expect("serve refuses to run");
    assert!(!status.success(), "{stderr}");
    let height = seg.first_height + k as u64;
    assert!(
        stderr.contains(&format!("block {height} is damaged")),
        "{stderr}"
    );
}

#[test]
fn tampered_transaction_is_never_served_under_its_id() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let b = build(tmp.path());
    let (id, _) = b.acked[b.acked.len() / 2];
    let signature = {
        let ledger = Ledger::open(&b.dir).expect("open");
        let (tx, _, _) = ledger
            .store
            .transaction(&id)
            .expect("read")
            .expect("stored");
        *tx.signature()
    };
    // Change one signature byte in its block record and frame the record
    // again with a correct CRC: only hashing can tell.
    let segs = segment_files(&b.dir);
    let mut seg = Segment::read(&segs[0]);
    let (r, at) = seg
        .records
        .iter()
        .enumerate()
        .find_map(|(i, r)| find(&r.body, &signature).map(|at| (i, at)))
        .expect("the signature is stored");
    seg.records[r].body[at] ^= 0x01;
    seg.write(&segs[0]);
    let admin = admin_key(&b.dir);
    let token = issue_token(&b.dir, &admin);
    let server = Server::start(&b.dir, &[]);
    let http = client();
    let resp = http
        .get(server.url(&format!("/v1/transactions/{}", hex::encode(id))))
        .bearer_auth(&token)
        .send()
        .expect("request");
    assert_eq!(resp.status().as_u16(), 500);
    let body: serde_json::Value = resp.json().expect("problem");
    assert_eq!(body["code"], "corrupt", "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("block "), "{detail}");
    let root = tmp.path().to_string_lossy().into_owned();
    assert!(!detail.contains(&root), "no server path: {detail}");
    // The node now refuses writes and says so.
    let status: serde_json::Value = http
        .get(server.url("/v1/status"))
        .send()
        .expect("status")
        .json()
        .expect("json");
    assert_eq!(status["writable"], false, "{status}");
    let ready = http.get(server.url("/readyz")).send().expect("readyz");
    assert_eq!(ready.status().as_u16(), 500);
    let wire = report_tx(&b.doctor, 9_999).to_wire().expect("wire");
    let r = http
        .post(server.url("/v1/transactions"))
        .json(&wire)
        .send()
        .expect("post");
    assert_eq!(
        r.status().as_u16(),
        503,
        "a write on a damaged ledger is not acknowledged"
    );
}
