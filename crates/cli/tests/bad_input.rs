//! Bad input and damaged data directories: each gets a clear error with the
//! right exit code, never a panic, and never a silently wrong ledger.

mod common;

use common::*;
use ed25519_dalek::SigningKey;
use medledger_formats::block::Block;
use medledger_formats::checkpoint::Checkpoint;
use medledger_formats::keys;
use medledger_formats::merkle;
use medledger_formats::note::NoteVerifier;
use medledger_formats::tx::Transaction;
use medledger_ledger::{Admitted, Ledger, LedgerError, now_ms, payload_rules};
use serde_json::json;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// A ledger built through the binary, and what was acknowledged into it.
struct Built {
    dir: PathBuf,
    vkey: String,
    doctor: SigningKey,
    /// (id, log index, height) of each acknowledged transaction, in order.
    acked: Vec<([u8; 32], u64, u64)>,
}

impl Built {
    /// Genesis, a registration and `blocks` blocks of two reports each.
    fn new(root: &Path, blocks: u64) -> Built {
        let dir = root.join("ledger");
        let vkey = init(&dir);
        let doctor = keys::generate().expect("key");
        let mut b = Built {
            dir,
            vkey,
            doctor,
            acked: Vec::new(),
        };
        let reg = register_tx(&admin_key(&b.dir), &b.doctor);
        b.import(&[reg], 1);
        // One import run per block: a run keeps a batch in flight while it
        // reads the next, so two batches of one run may share a block.
        for k in 0..blocks {
            b.import(
                &[report_tx(&b.doctor, 2 * k), report_tx(&b.doctor, 2 * k + 1)],
                2,
            );
        }
        b
    }

    fn import(&mut self, txs: &[Transaction], batch: usize) {
        let imp = import(&self.dir, &txs.iter().map(line).collect::<Vec<_>>(), batch);
        assert!(imp.output.status.success(), "{:?}", text(&imp.output));
        for r in imp.results {
            self.acked.push((
                id_bytes(r["id"].as_str().expect("id")),
                r["index"].as_u64().expect("index"),
                r["height"].as_u64().expect("height"),
            ));
        }
    }

    fn segment(&self) -> PathBuf {
        let segs = segment_files(&self.dir);
        assert_eq!(segs.len(), 1, "one segment file");
        segs[0].clone()
    }

    fn last_height(&self) -> u64 {
        self.acked.last().expect("acknowledged").2
    }

    /// Every acknowledged transaction is found at its index, except those of
    /// block `lost`, which are not found at all.
    fn assert_found(&self, ledger: &Ledger, lost: Option<u64>) {
        for (id, leaf, height) in &self.acked {
            let found = ledger.store.transaction(id).expect("lookup");
            if Some(*height) == lost {
                assert!(
                    found.is_none(),
                    "leaf {leaf} of the cut block is still found"
                );
            } else {
                let (tx, at, h) = found.unwrap_or_else(|| panic!("leaf {leaf} is lost"));
                assert_eq!((tx.id(), at, h), (id, *leaf, *height));
            }
        }
    }
}

/// What admission would have learned of a block forced past it: the
/// payloads are valid, the state rules are not applied.
fn forced(block: &Block) -> Admitted {
    Admitted {
        verdicts: block
            .txs
            .iter()
            .map(|tx| payload_rules(tx).expect("valid payload"))
            .collect(),
        directory: Default::default(),
    }
}

fn id_bytes(hex_id: &str) -> [u8; 32] {
    let mut id = [0u8; 32];
    hex::decode_to_slice(hex_id, &mut id).expect("hex id");
    id
}

fn open_err(dir: &Path) -> String {
    match Ledger::open(dir) {
        Ok(_) => panic!("open of {} must fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

/// Runs `import` of one fresh line on `dir` and requires it to fail to start
/// (exit 2) with `needle` in its error.
fn assert_import_refused(dir: &Path, doctor: &SigningKey, needle: &str) -> String {
    let imp = import(dir, &[line(&report_tx(doctor, 999))], 1);
    let (stdout, stderr) = text(&imp.output);
    assert_eq!(imp.output.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in {stderr}");
    assert!(stdout.is_empty(), "nothing acknowledged: {stdout}");
    stderr
}

#[test]
fn truncated_acknowledged_tail_is_refused_then_cut_when_derived_files_are_removed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let b = Built::new(tmp.path(), 5);
    let seg = b.segment();
    let offsets = Segment::read(&seg).pair_offsets();
    let before = Ledger::open(&b.dir).expect("open").state.tip().log.size();
    let len = fs::metadata(&seg).expect("stat").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .and_then(|f| f.set_len(len - 3))
        .expect("truncate");

    let stderr = assert_verify_fails(&b.dir);
    assert!(stderr.contains("torn tail"), "{stderr}");

    // The block was acknowledged, so the derived files remember it: opening
    // refuses to cut it silently.
    let e = open_err(&b.dir);
    assert!(e.contains("acknowledged data is missing"), "{e}");
    // An operator who accepts the loss removes the derived files.
    fs::remove_file(b.dir.join("index.redb")).expect("remove index");
    fs::remove_dir_all(b.dir.join("merkle")).expect("remove subtree files");

    let last = b.last_height();
    let ledger = Ledger::open(&b.dir).expect("open cuts the torn tail");
    assert_eq!(
        ledger.state.tip().next_height,
        last,
        "the last block is gone"
    );
    assert_eq!(
        ledger.state.tip().log.size(),
        before - 2,
        "its two entries too"
    );
    b.assert_found(&ledger, Some(last));
    drop(ledger);
    assert_eq!(
        fs::metadata(&seg).expect("stat").len(),
        offsets[offsets.len() - 2],
        "cut exactly at the end of the previous block"
    );
    assert_verifies(&b.dir);

    // The ledger goes on from there.
    let imp = import(&b.dir, &[line(&report_tx(&b.doctor, 1000))], 1);
    assert!(imp.output.status.success(), "{:?}", text(&imp.output));
    assert_eq!(imp.results[0]["height"], json!(last));
    assert_verifies(&b.dir);
}

#[test]
fn truncated_segment_in_middle_is_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let b = Built::new(tmp.path(), 6);
    let seg = b.segment();
    let offsets = Segment::read(&seg).pair_offsets();
    // Cut 5 bytes out of the middle of block 4's payloads record.
    let mut data = fs::read(&seg).expect("read");
    let at = offsets[4];
    data.drain(at as usize + 40..at as usize + 45);
    fs::write(&seg, &data).expect("write");

    let stderr = assert_verify_fails(&b.dir);
    assert!(
        stderr.contains(&format!("is corrupt at byte {at}")),
        "{stderr}"
    );
    assert!(!stderr.contains("torn tail"), "{stderr}");
    let name = seg.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(stderr.contains(name), "{stderr}");

    // Opening must refuse rather than cut the blocks after the damage.
    let e = open_err(&b.dir);
    assert!(e.contains(&format!("is corrupt at byte {at}")), "{e}");
    assert_import_refused(&b.dir, &b.doctor, "corrupt");
    assert_eq!(fs::read(&seg).expect("read"), data, "nothing was cut");
}

#[test]
fn truncated_non_last_segment_is_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let b = Built::new(tmp.path(), 6);
    // Split the log into two segment files at height 4, as a long-lived
    // ledger would have, and drop the derived files that name locations.
    let seg = b.segment();
    let pairs = Segment::read(&seg).pairs();
    let first = seg.with_file_name(segment_name(0));
    let second = seg.with_file_name(segment_name(4));
    Segment::from_pairs(0, &pairs[..4]).write(&first);
    Segment::from_pairs(4, &pairs[4..]).write(&second);
    fs::remove_file(b.dir.join("index.redb")).expect("remove index");
    fs::remove_dir_all(b.dir.join("merkle")).expect("remove merkle");
    assert_verifies(&b.dir);
    b.assert_found(&Ledger::open(&b.dir).expect("open split"), None);
    fs::remove_file(b.dir.join("index.redb")).expect("remove index");

    let len = fs::metadata(&first).expect("stat").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .and_then(|f| f.set_len(len - 3))
        .expect("truncate");
    let stderr = assert_verify_fails(&b.dir);
    assert!(stderr.contains(&segment_name(0)), "{stderr}");
    assert!(stderr.contains("is corrupt at byte"), "{stderr}");

    let e = open_err(&b.dir);
    assert!(e.contains(&segment_name(0)) && e.contains("corrupt"), "{e}");
    assert!(!e.contains("torn tail"), "{e}");
    assert_import_refused(&b.dir, &b.doctor, &segment_name(0));
    assert_eq!(
        fs::metadata(&first).expect("stat").len(),
        len - 3,
        "not cut"
    );
    // Only the last segment can have a torn tail, and opening never cuts
    // an earlier one: verify must not call this damage a torn tail.
    assert!(!stderr.contains("torn tail"), "{stderr}");
}

#[test]
fn missing_index_is_rebuilt() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let b = Built::new(tmp.path(), 8);
    let (root, size) = {
        let l = Ledger::open(&b.dir).expect("open");
        (l.state.tip().log.root(), l.state.tip().log.size())
    };
    let verifier = NoteVerifier::parse(&b.vkey).expect("vkey");
    for (case, remove) in [
        ("index", &["index.redb"][..]),
        ("subtrees", &["merkle"][..]),
        ("both", &["index.redb", "merkle"][..]),
    ] {
        let dir = tmp.path().join(case);
        copy_dir(&b.dir, &dir);
        for r in remove {
            let p = dir.join(r);
            if p.is_dir() {
                fs::remove_dir_all(&p).expect("remove");
            } else {
                fs::remove_file(&p).expect("remove");
            }
        }
        let ledger = Ledger::open(&dir).unwrap_or_else(|e| panic!("{case}: open: {e}"));
        assert_eq!(ledger.state.tip().log.root(), root, "{case}");
        assert_eq!(ledger.state.tip().log.size(), size, "{case}");
        let cp = Checkpoint::verify_note(
            &ledger.store.checkpoint().expect("checkpoint"),
            Some(ORIGIN),
            std::slice::from_ref(&verifier),
        )
        .expect("checkpoint verifies");
        assert_eq!((cp.size, cp.root), (size, root), "{case}");
        let rebuilt = Built {
            dir: dir.clone(),
            vkey: b.vkey.clone(),
            doctor: b.doctor.clone(),
            acked: b.acked.clone(),
        };
        rebuilt.assert_found(&ledger, None);
        for (id, leaf, _) in &b.acked {
            let r = ledger.store.receipt(*leaf, None).expect("receipt");
            merkle::verify_inclusion(id, *leaf, size, &r.proof, &root)
                .unwrap_or_else(|e| panic!("{case}: receipt for leaf {leaf}: {e}"));
        }
        let doctor = ledger
            .state
            .participant(&keys::public_key(&b.doctor))
            .expect("the doctor is registered");
        assert_eq!(doctor.revoked_at, None);
        drop(ledger);
        assert_verifies(&dir);
        // The rebuilt index still refuses duplicates and admits the doctor.
        let again = report_tx(&b.doctor, 77);
        let imp = import(&dir, &[line(&again), line(&again)], 1);
        assert!(
            imp.for_line(1)["id"].is_string(),
            "{case}: {:?}",
            imp.results
        );
        assert_eq!(imp.for_line(2)["error"], json!("duplicate"), "{case}");
        assert_verifies(&dir);
    }
}

#[test]
fn wrong_key_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = Built::new(tmp.path(), 1);
    // Another node with the same origin: same key name, different key.
    let other_vkey = init(&tmp.path().join("other"));
    assert_ne!(a.vkey, other_vkey);

    let receipts = tmp.path().join("receipts");
    let tx = report_tx(&a.doctor, 5);
    let imp = import_args(
        &a.dir,
        &[line(&tx)],
        1,
        &["--receipts", receipts.to_str().expect("utf-8 path")],
    );
    assert!(imp.output.status.success(), "{:?}", text(&imp.output));
    let id = hex::encode(tx.id());
    let receipt = receipts.join(format!("{id}.tlog-proof"));
    let check = |key: &str, extra: &[&str]| {
        let out = bin()
            .args(["receipt", "verify"])
            .arg(&receipt)
            .args(["--key", key])
            .args(extra)
            .output()
            .expect("run receipt verify");
        assert_no_panic(&out);
        out
    };
    let out = check(&a.vkey, &["--origin", ORIGIN, "--id", &id]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("ok: transaction {id}")),
        "{stdout}"
    );

    let out = check(&other_vkey, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("receipt INVALID"), "{stderr}");
    assert!(stdout.is_empty());

    let out = check("not-a-vkey", &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("verifier key"), "{stderr}");

    // node.key replaced by another valid key: opening refuses, naming the
    // file, because that key is not the ledger's registered node.
    let replaced = tmp.path().join("replaced");
    copy_dir(&a.dir, &replaced);
    fs::remove_file(replaced.join("node.key")).expect("remove node.key");
    let out = bin()
        .arg("keygen")
        .arg("--out")
        .arg(replaced.join("node.key"))
        .output()
        .expect("keygen");
    assert!(out.status.success());
    let e = open_err(&replaced);
    assert!(
        e.contains("node.key") && e.contains("not this ledger's active node key"),
        "{e}"
    );

    // A key file that is not one: a clear error naming the file.
    let garbage = tmp.path().join("garbage");
    copy_dir(&a.dir, &garbage);
    fs::write(garbage.join("node.key"), "garbage\n").expect("write");
    let e = open_err(&garbage);
    assert!(
        e.contains("node.key") && e.contains("malformed key file"),
        "{e}"
    );
    assert!(matches!(
        Ledger::open(&garbage),
        Err(LedgerError::Config { .. })
    ));
    assert_import_refused(&garbage, &a.doctor, "malformed key file");
    // One whose public half belongs to another secret key.
    let text = fs::read_to_string(a.dir.join("node.key")).expect("read");
    let public = keys::public_key(&keys::generate().expect("key")).to_hex();
    let v: serde_json::Value = serde_json::from_str(&text).expect("key json");
    let old = v["public_key"].as_str().expect("public key");
    fs::write(garbage.join("node.key"), text.replace(old, &public)).expect("write");
    assert_import_refused(&garbage, &a.doctor, "inconsistent");
}

/// Replacing node.key must not let the ledger acknowledge blocks that
/// verification then rejects.
#[test]
fn replaced_node_key_never_commits_an_invalid_block() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = Built::new(tmp.path(), 1);
    fs::remove_file(a.dir.join("node.key")).expect("remove node.key");
    let out = bin()
        .arg("keygen")
        .arg("--out")
        .arg(a.dir.join("node.key"))
        .output()
        .expect("keygen");
    assert!(out.status.success());
    let imp = import(&a.dir, &[line(&report_tx(&a.doctor, 7))], 1);
    let acknowledged = !imp.ids().is_empty();
    let out = verify(&a.dir);
    let (_, stderr) = text(&out);
    assert!(
        !acknowledged || out.status.success(),
        "import with an unregistered node key acknowledged {:?}, then verify failed: {stderr}",
        imp.ids()
    );
}

/// The record pairs of `b`'s only segment, rewritten by `edit`.
fn rewrite_pairs(b: &Built, edit: impl FnOnce(&mut Vec<[SegRecord; 2]>)) {
    let seg = b.segment();
    let s = Segment::read(&seg);
    let mut pairs = s.pairs();
    edit(&mut pairs);
    Segment::from_pairs(s.first_height, &pairs).write(&seg);
    // Locations in the derived files no longer hold; opening must rebuild.
    fs::remove_file(b.dir.join("index.redb")).expect("remove index");
}

#[test]
fn reordered_blocks_are_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();

    let b = Built::new(&root.join("pairs"), 6);
    rewrite_pairs(&b, |p| {
        assert_eq!((pair_height(&p[4]), pair_height(&p[5])), (4, 5));
        p.swap(4, 5);
    });
    let stderr = assert_verify_fails(&b.dir);
    assert!(stderr.contains("block 5: height 5, expected 4"), "{stderr}");
    let e = open_err(&b.dir);
    assert!(e.contains("block 5: height 5, expected 4"), "{e}");
    assert_import_refused(&b.dir, &b.doctor, "block 5");

    // Payloads swapped between two blocks, block records left in place.
    let b = Built::new(&root.join("payloads"), 6);
    rewrite_pairs(&b, |p| {
        let (x, y) = (p[3][0].clone(), p[4][0].clone());
        p[3][0] = y;
        p[4][0] = x;
    });
    let stderr = assert_verify_fails(&b.dir);
    assert!(
        stderr.contains("(height 3)") && stderr.contains("payloads record is for height 4"),
        "{stderr}"
    );
    let e = open_err(&b.dir);
    assert!(e.contains("payloads record is for height 4"), "{e}");
}

#[test]
fn duplicated_blocks_are_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();

    // A block repeated in place.
    let b = Built::new(&root.join("middle"), 6);
    rewrite_pairs(&b, |p| {
        let dup = p[3].clone();
        p.insert(4, dup);
    });
    let stderr = assert_verify_fails(&b.dir);
    assert!(stderr.contains("block 3: height 3, expected 4"), "{stderr}");
    let e = open_err(&b.dir);
    assert!(e.contains("block 3: height 3, expected 4"), "{e}");

    // The last block repeated at the end.
    let b = Built::new(&root.join("tail"), 3);
    let last = b.last_height();
    rewrite_pairs(&b, |p| {
        let dup = p[p.len() - 1].clone();
        p.push(dup);
    });
    let stderr = assert_verify_fails(&b.dir);
    let want = format!("block {last}: height {last}, expected {}", last + 1);
    assert!(stderr.contains(&want), "{stderr}");

    // A correctly chained, node-signed block that repeats a committed
    // transaction: only the duplicate rule catches it.
    let b = Built::new(&root.join("forged"), 3);
    let (dup_id, _, _) = b.acked[2];
    {
        let mut ledger = Ledger::open(&b.dir).expect("open");
        let (tx, _, _) = ledger
            .store
            .transaction(&dup_id)
            .expect("lookup")
            .expect("found");
        let time = ledger.state.block_time(now_ms());
        let block = ledger
            .state
            .seal_block(vec![tx], time, &ledger.node_key)
            .expect("seal");
        ledger.store.commit(&block, forced(&block)).expect("commit");
    }
    let stderr = assert_verify_fails(&b.dir);
    let want = format!(
        "block {}: transaction 0 ({}): duplicate transaction",
        b.last_height() + 1,
        hex::encode(dup_id)
    );
    assert!(stderr.contains(&want), "{stderr}");
}

#[test]
fn revoked_author_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut b = Built::new(tmp.path(), 1);
    let admin = admin_key(&b.dir);
    b.import(&[revoke_tx(&admin, &b.doctor)], 1);

    let late = report_tx(&b.doctor, 42);
    let imp = import(&b.dir, &[line(&late)], 1);
    assert_eq!(imp.output.status.code(), Some(1));
    let r = imp.for_line(1);
    assert_eq!(r["error"], json!("revoked_author"), "{r}");
    assert!(
        r["detail"].as_str().unwrap_or("").contains("revoked"),
        "{r}"
    );
    assert_verifies(&b.dir);

    // The same report forced into a block past admission.
    let height = {
        let mut ledger = Ledger::open(&b.dir).expect("open");
        let time = ledger.state.block_time(now_ms());
        let block = ledger
            .state
            .seal_block(vec![late.clone()], time, &ledger.node_key)
            .expect("seal");
        ledger.store.commit(&block, forced(&block)).expect("commit");
        block.header.header().height
    };
    let stderr = assert_verify_fails(&b.dir);
    let want = format!(
        "block {height}: transaction 0 ({}): author was revoked",
        hex::encode(late.id())
    );
    assert!(stderr.contains(&want), "{stderr}");
    fs::remove_file(b.dir.join("index.redb")).expect("remove index");
    let e = open_err(&b.dir);
    assert!(e.contains(&want), "{e}");
}

#[test]
fn garbage_input_lines_are_rejected_not_fatal() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let b = Built::new(tmp.path(), 1);
    let good_a = report_tx(&b.doctor, 1);
    let good_b = report_tx(&b.doctor, 2);

    let mut bad_sig = good_a.to_wire().expect("wire");
    bad_sig.signature.0[10] ^= 0x01;
    let mut bad_payload = report_tx(&b.doctor, 3).to_wire().expect("wire");
    bad_payload.payload["therapy"] = json!("none");
    let stranger = keys::generate().expect("key");
    let stale = Transaction::sign(
        &b.doctor,
        "medical_report",
        now_ms() - 3_600_000,
        &report_payload(4),
    )
    .expect("sign");
    let unknown_kind =
        Transaction::sign(&b.doctor, "no.such.kind", now_ms(), &json!({"a": 1})).expect("sign");
    let not_allowed = register_tx(&b.doctor, &stranger);

    let lines = vec![
        line(&good_a),                                      // 1
        "this is not json".into(),                          // 2
        r#"{"header": 1}"#.into(),                          // 3
        "[]".into(),                                        // 4
        serde_json::to_string(&bad_sig).expect("json"),     // 5
        serde_json::to_string(&bad_payload).expect("json"), // 6
        String::new(),                                      // 7: skipped
        line(&report_tx(&stranger, 5)),                     // 8
        line(&good_a),                                      // 9
        line(&not_allowed),                                 // 10
        line(&unknown_kind),                                // 11
        line(&stale),                                       // 12
        line(&good_b),                                      // 13
    ];
    let imp = import(&b.dir, &lines, 4);
    let (stdout, stderr) = text(&imp.output);
    assert_eq!(imp.output.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(
        imp.results.len(),
        12,
        "one result per non-empty line: {stdout}"
    );
    let expect = [
        (2, "malformed"),
        (3, "malformed"),
        (4, "malformed"),
        (5, "bad_signature"),
        (6, "malformed"),
        (8, "unknown_author"),
        (9, "duplicate"),
        (10, "role_not_allowed"),
        (11, "unknown_kind"),
        (12, "stale_time"),
    ];
    for (n, code) in expect {
        let r = imp.for_line(n);
        assert_eq!(r["error"], json!(code), "line {n}: {r}");
        assert!(r["detail"].is_string(), "line {n}: {r}");
    }
    assert!(
        imp.for_line(6)["detail"]
            .as_str()
            .unwrap_or("")
            .contains("commitment"),
        "{stdout}"
    );
    assert_eq!(imp.for_line(1)["id"], json!(hex::encode(good_a.id())));
    assert_eq!(imp.for_line(13)["id"], json!(hex::encode(good_b.id())));

    let ledger = Ledger::open(&b.dir).expect("open");
    for tx in [&good_a, &good_b] {
        assert!(ledger.store.transaction(tx.id()).expect("lookup").is_some());
    }
    for tx in [&stale, &unknown_kind, &not_allowed] {
        assert!(ledger.store.transaction(tx.id()).expect("lookup").is_none());
    }
    drop(ledger);
    assert_verifies(&b.dir);
}

#[test]
fn non_utf8_input_line_is_rejected_not_fatal() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let b = Built::new(tmp.path(), 1);
    let good_a = report_tx(&b.doctor, 1);
    let good_b = report_tx(&b.doctor, 2);
    let input = tmp.path().join("input.ndjson");
    let mut data = line(&good_a).into_bytes();
    data.extend_from_slice(b"\n\xff\xfe garbage \x80\n");
    data.extend_from_slice(line(&good_b).as_bytes());
    data.push(b'\n');
    fs::write(&input, data).expect("write input");
    let out = bin()
        .arg("import")
        .arg("--data-dir")
        .arg(&b.dir)
        .arg(&input)
        .args(["--batch", "1"])
        .output()
        .expect("run import");
    assert_no_panic(&out);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let results: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(results.len(), 3, "{stdout}{stderr}");
    assert_eq!(results[1]["line"], json!(2));
    assert_eq!(results[1]["error"], json!("malformed"));
    assert_eq!(
        results[2]["id"],
        json!(hex::encode(good_b.id())),
        "{stdout}"
    );
}

#[test]
fn second_process_cannot_open_ledger() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let b = Built::new(tmp.path(), 1);

    // Held in this process.
    let held = Ledger::open(&b.dir).expect("open");
    assert!(matches!(Ledger::open(&b.dir), Err(LedgerError::Locked(_))));
    assert_import_refused(&b.dir, &b.doctor, "in use by another process");
    drop(held);

    // Held by a running import that waits on stdin.
    let mut first = bin()
        .arg("import")
        .arg("--data-dir")
        .arg(&b.dir)
        .args(["--batch", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn import");
    let mut stdin = first.stdin.take().expect("stdin");
    writeln!(stdin, "{}", line(&report_tx(&b.doctor, 11))).expect("write");
    stdin.flush().expect("flush");
    let mut ack = String::new();
    BufReader::new(first.stdout.take().expect("stdout"))
        .read_line(&mut ack)
        .expect("read ack");
    assert!(ack.contains("\"id\""), "first import acknowledged: {ack}");
    let e = open_err(&b.dir);
    assert!(e.contains("in use by another process"), "{e}");
    assert_import_refused(&b.dir, &b.doctor, "in use by another process");
    drop(stdin);
    let out = first.wait_with_output().expect("first import exits");
    assert!(out.status.success(), "{:?}", text(&out));
    assert_no_panic(&out);
    drop(Ledger::open(&b.dir).expect("free again"));
    assert_verifies(&b.dir);
}
