//! Crash safety: `medledger import` is killed with SIGKILL at random moments
//! while it commits a stream of transactions. Every transaction it
//! acknowledged before dying must be in the reopened ledger, at the index it
//! was acknowledged with, and the data directory must verify.

mod common;

use common::*;
use ed25519_dalek::SigningKey;
use medledger_formats::tx::Transaction;
use medledger_ledger::{Ledger, now_ms};
use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// Transactions offered to each run: more than a run can commit in 300 ms at
/// the batch sizes used, so it is still writing when it is killed.
const STREAM: usize = 3000;
/// Batch sizes; small batches make each block one fsync, which keeps the
/// ledger (and so each cycle's verify) small.
const BATCHES: [usize; 4] = [1, 2, 4, 8];
/// Transactions older than this are re-signed, staying inside the skew window.
const MAX_AGE_MS: u64 = 120_000;

/// An acknowledgement printed by `import`.
struct Ack {
    index: u64,
    height: u64,
}

/// Runs `import` over `input`, kills it after `delay`, and returns the
/// acknowledgements it printed, whether it was still running when killed,
/// and its stderr.
fn import_and_kill(
    dir: &Path,
    input: &Path,
    batch: usize,
    delay: Duration,
) -> (Vec<(String, Ack)>, bool, String) {
    let stderr_path = input.with_extension("stderr");
    let mut child = bin()
        .arg("import")
        .arg("--data-dir")
        .arg(dir)
        .arg(input)
        .args(["--batch", &batch.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("spawn import");
    let mut stdout = child.stdout.take().expect("stdout");
    // Drain stdout as it comes so the pipe never blocks the writer.
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    std::thread::sleep(delay);
    let running = child.try_wait().expect("try_wait").is_none();
    child.kill().expect("SIGKILL import");
    child.wait().expect("reap import");
    let out = reader.join().expect("reader thread");
    let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
    let _ = fs::remove_file(&stderr_path);
    assert!(!stderr.contains("panicked"), "import panicked:\n{stderr}");

    // Only whole lines count: a line cut by the kill was never printed.
    let text = String::from_utf8_lossy(&out);
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    let mut acks = Vec::new();
    for l in complete.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("bad output line {l:?}: {e}"));
        let Some(id) = v["id"].as_str() else {
            panic!("import refused a fresh transaction: {l}");
        };
        acks.push((
            id.to_owned(),
            Ack {
                index: v["index"].as_u64().expect("index"),
                height: v["height"].as_u64().expect("height"),
            },
        ));
    }
    (acks, running, stderr)
}

fn id_bytes(hex_id: &str) -> [u8; 32] {
    let mut id = [0u8; 32];
    hex::decode_to_slice(hex_id, &mut id).expect("hex id");
    id
}

/// Tops `pool` up to `STREAM` fresh reports, dropping stale ones.
fn refill(pool: &mut Vec<(u64, Transaction)>, doctor: &SigningKey, serial: &mut u64) {
    let now = now_ms();
    pool.retain(|(t, _)| now - t < MAX_AGE_MS);
    while pool.len() < STREAM {
        *serial += 1;
        pool.push((now, report_tx(doctor, *serial)));
    }
}

#[test]
fn acknowledged_tx_survives_kill_at_any_point() {
    let cycles = env_count("MEDLEDGER_CRASH_CYCLES", 50);
    let mut rng = Rng::new(seed("acknowledged_tx_survives_kill_at_any_point"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ledger");
    init(&dir);
    let doctor = new_doctor(&dir);
    // Genesis and the registration.
    let base = 2u64;

    let mut acked: HashMap<String, Ack> = HashMap::new();
    let mut pool: Vec<(u64, Transaction)> = Vec::new();
    let mut serial = 0;
    let mut last_size = base;
    let mut killed_mid_stream = 0;
    for cycle in 0..cycles {
        refill(&mut pool, &doctor, &mut serial);
        let lines: Vec<String> = pool.iter().map(|(_, tx)| line(tx)).collect();
        let input = input_file(&dir, &lines);
        let batch = BATCHES[rng.below(BATCHES.len() as u64) as usize];
        let delay = Duration::from_millis(rng.below(301));
        let (acks, running, _) = import_and_kill(&dir, &input, batch, delay);
        fs::remove_file(&input).expect("remove input");
        let ctx = format!("cycle {cycle} (batch {batch}, kill after {delay:?})");
        if running && !acks.is_empty() {
            killed_mid_stream += 1;
        }

        let ledger = Ledger::open(&dir).unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
        // This run's acknowledgements, read back from the segments.
        for (id, ack) in &acks {
            let found = ledger
                .store
                .transaction(&id_bytes(id))
                .unwrap_or_else(|e| panic!("{ctx}: lookup {id}: {e}"));
            let (tx, leaf, height) =
                found.unwrap_or_else(|| panic!("{ctx}: acknowledged {id} is lost"));
            assert_eq!(hex::encode(tx.id()), *id, "{ctx}");
            assert_eq!((leaf, height), (ack.index, ack.height), "{ctx}: {id} moved");
        }
        for (id, ack) in acks {
            assert!(
                acked.insert(id.clone(), ack).is_none(),
                "{ctx}: {id} acknowledged twice"
            );
        }
        // Earlier runs' acknowledgements are still where they were.
        let ids: Vec<[u8; 32]> = acked.keys().map(|id| id_bytes(id)).collect();
        let refs: Vec<&[u8; 32]> = ids.iter().collect();
        let leaves = ledger.store.index().leaves_of(&refs).expect("index lookup");
        for ((id, leaf), hex_id) in ids.iter().zip(leaves).zip(acked.keys()) {
            assert_eq!(
                leaf,
                Some(acked[hex_id].index),
                "{ctx}: {}",
                hex::encode(id)
            );
        }
        let size = ledger.state.tip().log.size();
        assert!(
            size >= base + acked.len() as u64,
            "{ctx}: log has {size} entries, {} were acknowledged",
            base + acked.len() as u64
        );
        assert!(
            size >= last_size,
            "{ctx}: log shrank from {last_size} to {size}"
        );
        last_size = size;
        // Drop what the ledger holds from the next run's stream, acknowledged or not.
        let pool_ids: Vec<&[u8; 32]> = pool.iter().map(|(_, tx)| tx.id()).collect();
        let held = ledger
            .store
            .index()
            .leaves_of(&pool_ids)
            .expect("index lookup");
        let mut held = held.into_iter();
        pool.retain(|_| held.next().flatten().is_none());
        drop(ledger);

        let out = verify(&dir);
        let (stdout, stderr) = text(&out);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{ctx}: verify:\n{stdout}{stderr}"
        );
    }
    eprintln!(
        "{cycles} cycles, {} transactions acknowledged, {killed_mid_stream} runs killed mid-stream, log size {last_size}",
        acked.len()
    );
    assert!(
        killed_mid_stream * 4 >= cycles,
        "too few runs were killed while writing ({killed_mid_stream} of {cycles}); the test is not testing"
    );

    // Final check: every acknowledgement, from the segments, then verify.
    let ledger = Ledger::open(&dir).expect("final open");
    for (id, ack) in &acked {
        let (tx, leaf, _) = ledger
            .store
            .transaction(&id_bytes(id))
            .expect("lookup")
            .unwrap_or_else(|| panic!("acknowledged {id} is lost"));
        assert_eq!((hex::encode(tx.id()), leaf), (id.clone(), ack.index));
    }
    drop(ledger);
    assert_verifies(&dir);
}

/// A CSV import killed with SIGKILL at random moments and run again with the
/// same report, until it finishes: every row ends up in the ledger exactly
/// once, whether the kill came before a batch was sent, while it was being
/// committed, or after its commit but before the report said so.
#[test]
fn a_killed_csv_import_resumes_from_its_report_without_losing_or_repeating_rows() {
    let rows = env_count("MEDLEDGER_RESUME_ROWS", 20_000);
    let mut rng = Rng::new(seed("a_killed_csv_import_resumes"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ledger");
    init(&dir);
    let doctor = new_doctor(&dir);
    let key = tmp.path().join("doctor.key");
    fs::write(&key, medledger_formats::keys::encode_key_file(&doctor)).expect("key");
    let mut csv = String::from("patient,institution,encounter_date,diagnoses,anamnesis\n");
    for i in 0..rows {
        csv.push_str(&format!(
            "{},Klinicki centar Nis,2026-11-24,J06.9,visit {i}\n",
            medledger_health::pseudonym::synthetic(i)
        ));
    }
    let input = tmp.path().join("reports.csv");
    fs::write(&input, csv).expect("csv");
    let report = tmp.path().join("reports.report.jsonl");
    let run = || {
        bin()
            .arg("import")
            .arg("--data-dir")
            .arg(&dir)
            .arg("--key")
            .arg(&key)
            .arg("--report")
            .arg(&report)
            .args(["--batch", "500", "--quiet"])
            .arg(&input)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn import")
    };
    let mut kills = 0;
    loop {
        let mut child = run();
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        if child.try_wait().expect("try_wait").is_some() || kills >= 8 {
            let out = child.wait_with_output().expect("wait");
            assert_no_panic(&out);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            break;
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        kills += 1;
    }
    // One more run finds everything in.
    let out = run().wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("imported 0, already in {rows}, refused 0")),
        "{stderr}"
    );

    // Each row's report, once, in the ledger.
    let ledger = Ledger::open(&dir).expect("open");
    let size = ledger.store.last().expect("blocks").header().log_size;
    let mut seen = std::collections::HashSet::new();
    let leaves: Vec<u64> = (2..size).collect();
    for (tx, _, _) in ledger.store.transactions_at(&leaves).expect("read") {
        let p: serde_json::Value = serde_json::from_slice(tx.payload_jcs()).expect("json");
        let visit = p["anamnesis"].as_str().expect("anamnesis").to_owned();
        assert!(seen.insert(visit.clone()), "{visit} is in the ledger twice");
    }
    eprintln!("{kills} kills");
    assert_eq!(
        seen.len() as u64,
        rows,
        "every row is in, after {kills} kills"
    );
    drop(ledger);
    assert_verifies(&dir);
}
