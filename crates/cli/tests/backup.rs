//! Online backup and restore against a real node under load: every
//! transaction acknowledged before the backup's checkpoint is in the
//! restored ledger, a second backup copies only what is new, and a backup
//! with a flipped byte or under another ledger's key is refused before
//! anything is written.

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// A `medledger serve` child, killed when dropped.
struct Served(Child, String);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &Path) -> Served {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let child = bin()
        .args(["serve", "--data-dir", dir.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let served = Served(child, url);
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::blocking::get(format!("{}/readyz", served.1)).map_or(true, |r| r.status() != 200)
    {
        assert!(Instant::now() < deadline, "the node did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    served
}

fn run(args: &[&str]) -> Output {
    let out = bin().args(args).output().unwrap();
    assert_no_panic(&out);
    out
}

/// Submits `lines` (signed transactions) to `url`, one request each;
/// returns the ids the node acknowledged with a verified receipt.
fn submit(url: &str, vkey: &str, lines: &[String]) -> Vec<String> {
    let mut child = bin()
        .args([
            "submit", "--url", url, "--vkey", vkey, "--signed", "--batch", "1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for l in lines {
        writeln!(stdin, "{l}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["id"].as_str()?.to_owned(), v["index"].as_u64()?)))
        .map(|(id, _)| id)
        .collect()
}

/// `medledger backup` of `dir` into `b`, with `extra` arguments.
fn backup(dir: &Path, b: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "backup",
        "--data-dir",
        dir.to_str().unwrap(),
        "--out",
        b.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    json(&run(&args))
}

/// `medledger restore` of `b` into `target`, trusting `key`.
fn restore(b: &Path, target: &Path, key: &str) -> Output {
    run(&[
        "restore",
        "--from",
        b.to_str().unwrap(),
        "--data-dir",
        target.to_str().unwrap(),
        "--key",
        key,
    ])
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{:?}", text(out));
    serde_json::from_str(text(out).0.trim()).unwrap()
}

#[test]
fn a_backup_taken_under_load_restores_everything_acknowledged_before_its_checkpoint() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let vkey = init(&dir);
    let doctor = new_doctor(&dir);
    let node = serve(&dir);
    let first: Vec<String> = (0..40).map(|i| line(&report_tx(&doctor, i))).collect();
    let acked_first = submit(&node.1, &vkey, &first);
    assert_eq!(acked_first.len(), 40);

    // Writes go on while the backup is taken.
    let more: Vec<String> = (40..240).map(|i| line(&report_tx(&doctor, i))).collect();
    let (url, vk) = (node.1.clone(), vkey.clone());
    let load = std::thread::spawn(move || submit(&url, &vk, &more));
    let b = root.path().join("backup");
    let online = ["--url", &node.1, "--vkey", &vkey, "--include-node-key"];
    let first_backup = backup(&dir, &b, &online);
    let acked_more = load.join().unwrap();
    assert_eq!(acked_more.len(), 200);
    let size = first_backup["log_size"].as_u64().unwrap();
    // The genesis leaf, the doctor's registration and the first 40.
    assert!(size >= 42, "{first_backup}");

    // A second backup copies only what was written since.
    let second = backup(&dir, &b, &online);
    let segment_bytes: u64 = segment_files(&b)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    let copied =
        second["bytes_copied"].as_u64().unwrap() + first_backup["bytes_copied"].as_u64().unwrap();
    assert_eq!(
        copied, segment_bytes,
        "every byte was copied once: {first_backup} {second}"
    );
    let final_size = second["log_size"].as_u64().unwrap();
    assert_eq!(final_size, 42 + 200, "{second}");
    drop(node);

    // Restore, verified against the node's key and the kept checkpoint.
    let restored = root.path().join("restored");
    let r = json(&restore(&b, &restored, &vkey));
    assert_eq!(r["log_size"].as_u64().unwrap(), final_size, "{r}");
    assert_eq!(r["checkpoint_checked"], true);
    assert!(verify(&restored).status.success());
    // The restored node serves, and proves every acknowledged transaction.
    let node = serve(&restored);
    let http = reqwest::blocking::Client::new();
    for id in acked_first.iter().chain(&acked_more) {
        let r = http
            .get(format!("{}/v1/transactions/{id}/receipt", node.1))
            .send()
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "acknowledged {id} is missing from the restored ledger"
        );
    }
    let status: serde_json::Value = reqwest::blocking::get(format!("{}/v1/status", node.1))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(status["log_size"].as_u64(), Some(final_size));
}

#[test]
fn a_damaged_backup_or_another_ledgers_key_is_refused_before_anything_is_written() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let vkey = init(&dir);
    let doctor = new_doctor(&dir);
    import_ok(
        &dir,
        &(0..20).map(|i| report_tx(&doctor, i)).collect::<Vec<_>>(),
        5,
    );
    let b = root.path().join("backup");
    json(&run(&[
        "backup",
        "--data-dir",
        dir.to_str().unwrap(),
        "--out",
        b.to_str().unwrap(),
    ]));

    let other_vkey = init_with_origin(&root.path().join("other"), "medledger.test/other");
    let target = root.path().join("r1");
    let out = restore(&b, &target, &other_vkey);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("not the ledger you trust"),
        "{:?}",
        text(&out)
    );
    assert!(!target.exists());

    let seg = &segment_files(&b)[0];
    let len = fs::metadata(seg).unwrap().len();
    flip_bit(seg, len / 2, 3);
    let out = restore(&b, &target, &vkey);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("does not verify"), "{:?}", text(&out));
    assert!(!target.exists());
}
