//! The remote commands against a real `medledger serve`: submit, get,
//! receipt fetch and checkpoint watch. Receipts under a wrong key are
//! refused, and the watcher exits 3 with evidence when the node's history
//! forks from the checkpoint it stored.

mod common;

use common::*;
use ed25519_dalek::SigningKey;
use medledger_formats::keys;
use medledger_ledger::Role;
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// A `medledger serve` child, killed when dropped.
struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn healthy(url: &str) -> bool {
    let Some(addr) = url.strip_prefix("http://") else {
        return false;
    };
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut buf);
    buf.starts_with("HTTP/1.1 200")
}

/// Serves `dir` (an existing ledger) on a free port; waits for /healthz.
fn serve(dir: &Path) -> Served {
    for _ in 0..5 {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let child = bin()
            .arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve");
        let mut served = Served { child, url };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if healthy(&served.url) {
                return served;
            }
            if let Ok(Some(_)) = served.child.try_wait() {
                break; // port taken in the meantime: try another
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = served.child.kill();
    }
    panic!("medledger serve did not become healthy");
}

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = bin();
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn medledger");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    assert_no_panic(&out);
    out
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    text(out)
        .0
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// A ledger with a registered doctor (key file written); returns the vkey
/// and the doctor's key file.
fn ledger_with_doctor(root: &Path, dir: &Path) -> (String, PathBuf, ed25519_dalek::SigningKey) {
    let vkey = init(dir);
    let doctor = keys::generate().unwrap();
    let key_file = root.join(format!(
        "doctor-{}.key",
        dir.file_name().unwrap().to_string_lossy()
    ));
    fs::write(&key_file, keys::encode_key_file(&doctor)).unwrap();
    let reg = register_tx(&admin_key(dir), &doctor);
    let out = import(dir, &[line(&reg)], 1);
    assert!(out.output.status.success());
    (vkey, key_file, doctor)
}

#[test]
fn submit_get_fetch_and_watch_against_a_served_node() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let (vkey, key_file, doctor) = ledger_with_doctor(root.path(), &dir);
    let node = serve(&dir);
    let url = node.url.as_str();
    let key = key_file.to_str().unwrap();

    // JSON lines, batched; one bad item is reported on its own line.
    let input = format!(
        "{}\n{}\n[1]\n{}\n",
        report_payload(1),
        report_payload(2),
        report_payload(3)
    );
    let receipts = root.path().join("receipts");
    let out = run(
        &[
            "submit",
            "--url",
            url,
            "--key",
            key,
            "--kind",
            "medical_report",
            "--vkey",
            &vkey,
            "--batch",
            "2",
            "--receipts",
            receipts.to_str().unwrap(),
            "-",
        ],
        Some(&input),
    );
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4);
    let ok: Vec<_> = lines.iter().filter(|l| l["status"] == 200).collect();
    assert_eq!(ok.len(), 3);
    assert!(
        lines
            .iter()
            .any(|l| l["n"] == 3 && l["error"] == "malformed")
    );
    assert_eq!(fs::read_dir(&receipts).unwrap().count(), 3);

    // One pretty-printed object, single-transaction body, key trusted on first use.
    let one = root.path().join("one.json");
    fs::write(
        &one,
        serde_json::to_string_pretty(&report_payload(4)).unwrap(),
    )
    .unwrap();
    let out = run(
        &[
            "submit",
            "--url",
            url,
            "--key",
            key,
            "--kind",
            "medical_report",
            "--batch",
            "1",
            one.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out).1.contains("trust on first use"));
    let id = json_lines(&out)[0]["id"].as_str().unwrap().to_owned();

    // Already signed lines are sent as they are; a duplicate is a 409 line.
    let signed = line(&report_tx(&doctor, 7));
    let out = run(
        &["submit", "--url", url, "--vkey", &vkey, "--signed"],
        Some(&format!("{signed}\n{signed}\n")),
    );
    let lines = json_lines(&out);
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(
        (lines[1]["status"].as_u64(), lines[1]["code"].as_str()),
        (Some(409), Some("duplicate"))
    );

    // get: the transaction with its verified receipt.
    let out = run(
        &[
            "token",
            "issue",
            "--data-dir",
            dir.to_str().unwrap(),
            "--participant",
            &keys::public_key(&doctor).to_hex(),
        ],
        None,
    );
    let token = text(&out).0.trim().to_owned();
    // A key that is no participant gets no token, while the node runs (the
    // participants are read from the segments) as when it is stopped.
    let stranger = keys::public_key(&keys::generate().unwrap()).to_hex();
    let out = run(
        &[
            "token",
            "issue",
            "--data-dir",
            dir.to_str().unwrap(),
            "--participant",
            &stranger,
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("is not a participant"),
        "{:?}",
        text(&out)
    );
    let out = run(
        &["get", "--url", url, "--token", &token, "--vkey", &vkey, &id],
        None,
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let got: serde_json::Value = serde_json::from_str(&text(&out).0).unwrap();
    assert_eq!(got["id"], id.as_str());
    assert_eq!(got["transaction"]["payload"], report_payload(4));

    // receipt fetch, then the offline verifier accepts what was written.
    let proof = root.path().join("r.tlog-proof");
    let out = run(
        &[
            "receipt",
            "fetch",
            "--url",
            url,
            "--vkey",
            &vkey,
            "--out",
            proof.to_str().unwrap(),
            &id,
        ],
        None,
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let out = run(
        &[
            "receipt",
            "verify",
            proof.to_str().unwrap(),
            "--key",
            &vkey,
            "--id",
            &id,
        ],
        None,
    );
    assert!(out.status.success(), "{:?}", text(&out));

    // watch --once: trusts the first checkpoint, then checks growth.
    let state = root.path().join("watch.state");
    let watch = [
        "checkpoint",
        "watch",
        url,
        "--state",
        state.to_str().unwrap(),
        "--vkey",
        &vkey,
        "--once",
    ];
    let out = run(&watch, None);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(json_lines(&out)[0]["status"], "trusted_first");
    let first = fs::read_to_string(&state).unwrap();
    run(
        &[
            "submit",
            "--url",
            url,
            "--key",
            key,
            "--kind",
            "medical_report",
            "--vkey",
            &vkey,
        ],
        Some(&report_payload(5).to_string()),
    );
    let out = run(&watch, None);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(json_lines(&out)[0]["status"], "consistent");
    assert_ne!(fs::read_to_string(&state).unwrap(), first, "state advanced");
    let out = run(&watch, None);
    assert_eq!(json_lines(&out)[0]["status"], "unchanged");

    // Two witnesses cosign what their own watch verified; a verifier needs
    // a quorum of them, and a cosignature moved or altered fails.
    let mut witnesses = Vec::new();
    for name in ["witness.a.example/w", "witness.b.example/w"] {
        let wkey = root.path().join(format!("{}.key", &name[8..9]));
        fs::write(&wkey, keys::encode_key_file(&keys::generate().unwrap())).unwrap();
        let wstate = root.path().join(format!("{}.state", &name[8..9]));
        let out = run(
            &[
                "checkpoint",
                "watch",
                url,
                "--state",
                wstate.to_str().unwrap(),
                "--vkey",
                &vkey,
                "--once",
                "--cosign-key",
                wkey.to_str().unwrap(),
                "--cosigner",
                name,
                "--cosigned",
                root.path().join("cosigned").to_str().unwrap(),
            ],
            None,
        );
        assert!(out.status.success(), "{:?}", text(&out));
        let cosigner_vkey = text(&out)
            .1
            .lines()
            .find_map(|l| l.strip_prefix("cosigner vkey: "))
            .expect("the witness prints its vkey")
            .to_owned();
        let cosigned = fs::read_to_string(root.path().join("cosigned")).unwrap();
        witnesses.push((cosigner_vkey, cosigned));
    }
    // Both witnesses saw the same checkpoint: merge their cosignature lines.
    let (a, b) = (&witnesses[0].1, &witnesses[1].1);
    let b_line = b.lines().last().unwrap();
    let both = root.path().join("both");
    fs::write(&both, format!("{a}{b_line}\n")).unwrap();
    let verify = |note: &Path, quorum: &str| {
        run(
            &[
                "checkpoint",
                "verify",
                note.to_str().unwrap(),
                "--vkey",
                &vkey,
                "--cosigner",
                &witnesses[0].0,
                "--cosigner",
                &witnesses[1].0,
                "--quorum",
                quorum,
            ],
            None,
        )
    };
    let out = verify(&both, "2");
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(
        json_lines(&out)[0]["cosignatures"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let only_a = root.path().join("only-a");
    fs::write(&only_a, a).unwrap();
    assert!(verify(&only_a, "1").status.success());
    let out = verify(&only_a, "2");
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("1 of the required 2"),
        "{:?}",
        text(&out)
    );
    // Alter the cosignature's timestamp: base64 of id || time || signature.
    let forged: String = {
        let last = a.lines().last().unwrap();
        let (head, b64) = last.rsplit_once(' ').unwrap();
        let mut raw = base64_decode(b64);
        raw[11] ^= 1;
        let body = &a[..a.len() - last.len() - 1];
        format!("{body}{head} {}\n", base64_encode(&raw))
    };
    let forged_path = root.path().join("forged");
    fs::write(&forged_path, forged).unwrap();
    let out = verify(&forged_path, "1");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("does not verify"), "{:?}", text(&out));
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn a_wrong_vkey_refuses_every_receipt_and_checkpoint() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let (_vkey, key_file, _) = ledger_with_doctor(root.path(), &dir);
    // Another ledger with the same origin: same name, different node key.
    let other_vkey = init(&root.path().join("other"));
    let node = serve(&dir);
    let url = node.url.as_str();
    let out = run(
        &[
            "submit",
            "--url",
            url,
            "--key",
            key_file.to_str().unwrap(),
            "--kind",
            "medical_report",
            "--vkey",
            &other_vkey,
        ],
        Some(&report_payload(1).to_string()),
    );
    assert_eq!(out.status.code(), Some(1));
    let lines = json_lines(&out);
    assert_eq!(lines[0]["error"], "verification_failed", "{lines:?}");
    let id = "00".repeat(32);
    let out = run(
        &["receipt", "fetch", "--url", url, "--vkey", &other_vkey, &id],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let state = root.path().join("s");
    let out = run(
        &[
            "checkpoint",
            "watch",
            url,
            "--state",
            state.to_str().unwrap(),
            "--vkey",
            &other_vkey,
            "--once",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("verification failed"));
    assert!(!state.exists(), "nothing unverified is stored");
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn watcher_exits_3_with_evidence_when_the_node_forks() {
    let root = tempfile::tempdir().unwrap();
    let a = root.path().join("a");
    let (vkey, _, doctor) = ledger_with_doctor(root.path(), &a);
    // B starts as an exact copy: same origin, same node key, same history.
    let b = root.path().join("b");
    copy_dir(&a, &b);
    let lines_a: Vec<String> = (0..2).map(|i| line(&report_tx(&doctor, i))).collect();
    let lines_b: Vec<String> = (10..13).map(|i| line(&report_tx(&doctor, i))).collect();
    assert!(import(&a, &lines_a, 8).output.status.success());
    assert!(import(&b, &lines_b, 8).output.status.success());

    let state = root.path().join("watch.state");
    let watch = |url: &str| {
        run(
            &[
                "checkpoint",
                "watch",
                url,
                "--state",
                state.to_str().unwrap(),
                "--vkey",
                &vkey,
                "--once",
            ],
            None,
        )
    };
    let trusted = {
        let node_a = serve(&a);
        let out = watch(&node_a.url);
        assert!(out.status.success(), "{:?}", text(&out));
        fs::read_to_string(&state).unwrap()
    };
    assert!(
        trusted.contains("\n4\n"),
        "A holds genesis, registration and 2 reports"
    );

    // B has 5 entries; its proof from 4 cannot reach A's root at 4.
    let node_b = serve(&b);
    let out = watch(&node_b.url);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("FORK DETECTED: consistency proof from 4 to 5 does not verify"),
        "{stdout}"
    );
    assert!(stdout.contains(&trusted), "the trusted checkpoint in full");
    assert!(
        stdout.contains("\u{2014} medledger.test/log "),
        "signed notes in full"
    );
    assert!(
        stdout.contains("consistency proof from 4 to 5 ("),
        "{stdout}"
    );
    assert!(stderr.contains("FORK"));
    assert_eq!(fs::read_to_string(&state).unwrap(), trusted, "state kept");
    drop(node_b);

    // A node that lost entries (rolled back to a copy with fewer) cannot
    // prove its smaller tree is a prefix of the trusted one.
    let c = root.path().join("c");
    copy_dir(&a, &c);
    import(&a, &[line(&report_tx(&doctor, 20))], 1);
    let node_a = serve(&a);
    assert!(watch(&node_a.url).status.success());
    drop(node_a);
    let node_c = serve(&c);
    let out = watch(&node_c.url);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("the log shrank from 5 to 4"), "{stdout}");
}

/// `receipt verify` as a process.
fn receipt_verify(file: &Path, keys: &[&str], extra: &[&str]) -> Output {
    let mut args = vec!["receipt", "verify", file.to_str().unwrap()];
    for k in keys {
        args.extend(["--key", k]);
    }
    args.extend(extra);
    run(&args, None)
}

#[test]
fn receipt_verify_requires_a_quorum_of_distinct_trusted_cosigners() {
    use medledger_formats::cosignature::Cosigner;
    use medledger_formats::receipt::TlogProof;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let (vkey, _, doctor) = ledger_with_doctor(root.path(), &dir);
    let tx = report_tx(&doctor, 1);
    import_ok(&dir, std::slice::from_ref(&tx), 1);
    let id = hex::encode(tx.id());
    let (node_cosigner, cosigned) = {
        let node = serve(&dir);
        let http = client();
        let status: serde_json::Value = http
            .get(format!("{}/v1/status", node.url))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let receipt = http
            .get(format!(
                "{}/v1/transactions/{id}/receipt?cosigned=true",
                node.url
            ))
            .send()
            .unwrap()
            .text()
            .unwrap();
        (
            status["cosigner_vkey"].as_str().unwrap().to_owned(),
            receipt,
        )
    };
    // A witness cosigns the node's checkpoint; another trusted one does not.
    let witness = Cosigner::new("witness.example/w", keys::generate().unwrap()).unwrap();
    let absent = Cosigner::new("witness.example/absent", keys::generate().unwrap()).unwrap();
    let (w, gone) = (witness.verifier().to_vkey(), absent.verifier().to_vkey());
    let time = medledger_ledger::now_ms() / 1000;
    let with_lines = |name: &str, lines: &[medledger_formats::note::NoteSignature]| {
        let mut proof = TlogProof::parse(&cosigned).unwrap();
        proof.checkpoint.sigs.extend(lines.iter().cloned());
        let path = root.path().join(name);
        fs::write(&path, proof.render()).unwrap();
        path
    };
    let checkpoint = TlogProof::parse(&cosigned).unwrap().checkpoint;
    let good = witness.cosign(&checkpoint, time).unwrap();
    let both = with_lines("both", std::slice::from_ref(&good));
    let trusted = [vkey.as_str(), &node_cosigner, &w, &gone];

    // The node's cosignature and the witness's make a quorum of two.
    let out = receipt_verify(&both, &trusted, &["--quorum", "2", "--id", &id]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!("ok: transaction {id}"))
            && stdout.contains("cosigned by 2 trusted cosigners (quorum 2): ")
            && stdout.contains("witness.example/w"),
        "{stdout}"
    );
    // Three are not there.
    let out = receipt_verify(&both, &trusted, &["--quorum", "3"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("receipt INVALID: cosignatures: 2 of the required 3 cosignatures verify"),
        "{stderr}"
    );
    // The witness twice, by two lines and by two --key: still one cosigner.
    let again = witness.cosign(&checkpoint, time + 1).unwrap();
    let twice = with_lines("twice", &[good.clone(), again]);
    let out = receipt_verify(&twice, &[&vkey, &w, &w, &gone], &["--quorum", "2"]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("1 of the required 2"),
        "{:?}",
        text(&out)
    );
    // A forged line from a trusted cosigner fails, quorum or not.
    let mut forged = good.clone();
    forged.sig[20] ^= 1;
    let forged = with_lines("forged", &[forged]);
    let out = receipt_verify(&forged, &trusted, &["--quorum", "1"]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert!(
        text(&out)
            .1
            .contains("cosignature by witness.example/w does not verify"),
        "{:?}",
        text(&out)
    );
    // So does a cosignature of another checkpoint moved onto this one.
    let mut elsewhere = checkpoint.clone();
    elsewhere.text = elsewhere.text.replacen('\n', "\n9", 1);
    let moved = with_lines("moved", &[witness.cosign(&elsewhere, time).unwrap()]);
    let out = receipt_verify(&moved, &trusted, &["--quorum", "1"]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert!(text(&out).1.contains("does not verify"), "{:?}", text(&out));

    // Without cosigner keys the cosigned receipt verifies like any other.
    assert!(receipt_verify(&both, &[&vkey], &[]).status.success());
    // A quorum that no key could meet, or no log key at all, is a usage error.
    let out = receipt_verify(&both, &[&vkey], &["--quorum", "1"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("--quorum 1 cannot be met"));
    let out = receipt_verify(&both, &[&node_cosigner, &w], &["--quorum", "2"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("no node verifier key"));
}

/// `checkpoint watch --once` over `urls`, trusting `vkeys`.
fn watch_once(urls: &[&str], vkeys: &[&str], state: &Path, evidence: &Path) -> Output {
    let mut args = vec!["checkpoint", "watch", urls[0]];
    for u in &urls[1..] {
        args.extend(["--url", u]);
    }
    for k in vkeys {
        args.extend(["--vkey", k]);
    }
    args.extend([
        "--state",
        state.to_str().unwrap(),
        "--evidence",
        evidence.to_str().unwrap(),
        "--once",
    ]);
    run(&args, None)
}

#[test]
fn watching_nodes_of_different_ledgers_reports_a_split_view_with_evidence() {
    use medledger_formats::checkpoint::Checkpoint;
    use medledger_formats::note::NoteVerifier;
    let root = tempfile::tempdir().unwrap();
    // Three ledgers under one origin, each with its own genesis: A and C
    // have two entries, B one.
    let (a, b, c) = (
        root.path().join("a"),
        root.path().join("b"),
        root.path().join("c"),
    );
    let (vkey_a, _, _) = ledger_with_doctor(root.path(), &a);
    let vkey_b = init(&b);
    let (vkey_c, _, _) = ledger_with_doctor(root.path(), &c);
    let (node_a, node_b, node_c) = (serve(&a), serve(&b), serve(&c));
    let state = root.path().join("state");
    let evidence = root.path().join("evidence.json");
    let out = watch_once(
        &[&node_a.url, &node_b.url, &node_c.url],
        &[&vkey_a, &vkey_b, &vkey_c],
        &state,
        &evidence,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    assert!(stderr.contains("SPLIT VIEW"), "{stderr}");
    assert!(!state.exists(), "nothing is trusted from a split view");
    let ev: serde_json::Value = serde_json::from_str(&fs::read_to_string(&evidence).unwrap())
        .expect("the evidence is JSON");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(stdout.trim()).unwrap(),
        ev,
        "stdout carries the evidence too"
    );
    assert_eq!(
        (ev["kind"].as_str(), ev["origin"].as_str()),
        (Some("split_view"), Some(ORIGIN))
    );
    let conflicts = ev["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 2, "B and C each disagree with A: {ev:#}");
    let key_of = |url: &str| {
        let vkey = if url == node_a.url {
            &vkey_a
        } else if url == node_b.url {
            &vkey_b
        } else {
            &vkey_c
        };
        NoteVerifier::parse(vkey).unwrap()
    };
    for (conflict, other) in conflicts.iter().zip([&node_b.url, &node_c.url]) {
        let cps = conflict["checkpoints"].as_array().unwrap();
        assert_eq!(cps[0]["url"], other.as_str());
        assert_eq!(cps[1]["url"], node_a.url.as_str());
        // Both checkpoints are signed notes that verify with their node's key.
        for cp in cps {
            let url = cp["url"].as_str().unwrap();
            let (opened, _) =
                Checkpoint::open(cp["note"].as_str().unwrap(), Some(ORIGIN), &[key_of(url)])
                    .unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(Some(opened.size), cp["size"].as_u64());
            assert_eq!(hex::encode(opened.root), cp["root"].as_str().unwrap());
        }
    }
    // B is smaller: A's proof from 1 to 2 is there, and it fails.
    let proof = &conflicts[0]["proof"];
    assert_eq!(
        (
            proof["from"].as_u64(),
            proof["to"].as_u64(),
            proof["by"].as_str()
        ),
        (Some(1), Some(2), Some(node_a.url.as_str()))
    );
    let hashes: Vec<[u8; 32]> = proof["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| base64_decode(h.as_str().unwrap()).try_into().unwrap())
        .collect();
    let root_of = |i: usize| -> [u8; 32] {
        hex::decode(conflicts[0]["checkpoints"][i]["root"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap()
    };
    assert!(
        medledger_formats::merkle::verify_consistency(1, 2, &hashes, &root_of(0), &root_of(1))
            .is_err()
    );
    // C has A's size and another root: no proof could help.
    assert!(
        conflicts[1]["failed"]
            .as_str()
            .unwrap()
            .contains("two different roots signed for tree size 2")
    );
    assert_eq!(conflicts[1]["proof"], serde_json::Value::Null);
}

#[test]
fn watching_one_node_twice_or_with_a_dead_one_finds_no_split_view() {
    let root = tempfile::tempdir().unwrap();
    let a = root.path().join("a");
    let (vkey, _, doctor) = ledger_with_doctor(root.path(), &a);
    // An older copy of A, one entry behind.
    let behind = root.path().join("behind");
    copy_dir(&a, &behind);
    import_ok(&a, &[report_tx(&doctor, 1)], 1);
    let dead = format!("http://127.0.0.1:{}", free_port());
    let state = root.path().join("state");
    let evidence = root.path().join("evidence.json");

    let node_a = serve(&a);
    let out = watch_once(
        &[&node_a.url, &node_a.url, &dead],
        &[&vkey],
        &state,
        &evidence,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(!stderr.contains("SPLIT VIEW"), "{stderr}");
    assert!(stderr.contains(&format!("warning: {dead}")), "{stderr}");
    let line = &json_lines(&out)[0];
    assert_eq!(
        (line["status"].as_str(), line["size"].as_u64()),
        (Some("trusted_first"), Some(3))
    );
    let nodes = line["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert_eq!(nodes[0]["size"], 3);
    assert_eq!(nodes[1]["size"], 3);
    assert!(nodes[2]["error"].is_string(), "{line}");
    let trusted = fs::read_to_string(&state).unwrap();
    drop(node_a);

    // Only a node behind the stored checkpoint answers: another may hold it.
    let node_behind = serve(&behind);
    let out = watch_once(&[&node_behind.url, &dead], &[&vkey], &state, &evidence);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(json_lines(&out)[0]["status"], "deferred");
    assert_eq!(fs::read_to_string(&state).unwrap(), trusted);
    assert!(!evidence.exists());
    // Every node answers and all are behind: the log shrank.
    let out = watch_once(&[&node_behind.url], &[&vkey], &state, &evidence);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    assert!(stdout.contains("the log shrank from 3 to 2"), "{stdout}");
    let ev: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&evidence).unwrap()).unwrap();
    assert_eq!(ev["kind"], "fork");
    let cps = &ev["conflicts"][0]["checkpoints"];
    assert_eq!(cps[0]["state"], state.to_str().unwrap());
    assert_eq!(cps[0]["note"], trusted.as_str());
    assert_eq!(cps[1]["url"], node_behind.url.as_str());
    assert_eq!(fs::read_to_string(&state).unwrap(), trusted, "state kept");
    // No node answering is an error, not a verdict.
    let out = watch_once(&[&dead], &[&vkey], &state, &root.path().join("none"));
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
}

#[test]
fn serve_refuses_an_invalid_cosigner_name() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    init(&dir);
    let out = bin()
        .arg("serve")
        .arg("--data-dir")
        .arg(&dir)
        .args(["--listen", "127.0.0.1:0"])
        .env("MEDLEDGER_COSIGNER_NAME", "has space")
        .output()
        .expect("run serve");
    assert_no_panic(&out);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cosigner name \"has space\""), "{stderr}");
}

fn key_file(root: &Path, name: &str, key: &SigningKey) -> PathBuf {
    let f = root.join(format!("{name}.key"));
    fs::write(&f, keys::encode_key_file(key)).unwrap();
    f
}

/// A stopped node's ledger where a doctor writes about the patient with
/// `report_payload(0)`'s pseudonym, and that patient, registered by the
/// pseudonymization authority, holds a key.
struct PatientLedger {
    dir: PathBuf,
    vkey: String,
    admin: SigningKey,
    patient: SigningKey,
    doctor: SigningKey,
    pseudonym: String,
}

fn patient_ledger(root: &Path) -> PatientLedger {
    let dir = root.join("data");
    let vkey = init(&dir);
    let new_key = || keys::generate().unwrap();
    let (authority, patient, doctor) = (new_key(), new_key(), new_key());
    let admin = admin_key(&dir);
    let pseudonym = report_payload(0)["patient"].as_str().unwrap().to_owned();
    let regs = [
        line(&register_role(
            &admin,
            &authority,
            Role::PseudonymizationAuthority,
            None,
        )),
        line(&register_role(&admin, &doctor, Role::Doctor, None)),
    ];
    assert!(import(&dir, &regs, 8).output.status.success());
    let reg = line(&register_role(
        &authority,
        &patient,
        Role::Patient,
        Some(&pseudonym),
    ));
    assert!(import(&dir, &[reg], 1).output.status.success());
    PatientLedger {
        dir,
        vkey,
        admin,
        patient,
        doctor,
        pseudonym,
    }
}

#[test]
fn a_patient_sees_who_read_their_records_every_entry_proven_and_consistent() {
    let root = tempfile::tempdir().unwrap();
    let PatientLedger {
        dir,
        vkey,
        patient,
        doctor,
        pseudonym,
        ..
    } = patient_ledger(root.path());
    let report = report_tx(&doctor, 0);
    let ids = import(&dir, &[line(&report)], 1).ids();
    let patient_key = key_file(root.path(), "patient", &patient);
    let doctor_key = key_file(root.path(), "doctor", &doctor);

    let node = serve(&dir);
    let token = |key: &Path, scope: &str| {
        let out = run(
            &[
                "token",
                "request",
                "--key",
                key.to_str().unwrap(),
                "--url",
                &node.url,
                "--scope",
                scope,
            ],
            None,
        );
        assert!(out.status.success(), "{:?}", text(&out));
        text(&out).0.trim().to_owned()
    };
    let doctor_token = token(&doctor_key, "purpose/TREAT");
    let read = || {
        let r = reqwest::blocking::Client::new()
            .get(format!("{}/v1/transactions/{}", node.url, ids[0]))
            .bearer_auth(&doctor_token)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    };
    read();
    let state = root.path().join("patient.state");
    let access_log = |vkey: &str| {
        run(
            &[
                "patient",
                "access-log",
                "--url",
                &node.url,
                "--patient",
                &pseudonym,
                "--key",
                patient_key.to_str().unwrap(),
                "--vkey",
                vkey,
                "--state",
                state.to_str().unwrap(),
                "--json",
            ],
            None,
        )
    };
    let out = access_log(&vkey);
    assert!(out.status.success(), "{:?}", text(&out));
    let entries = json_lines(&out);
    let doctor_hex = keys::public_key(&doctor).to_hex();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    assert_eq!(
        (&e["role"], &e["reader"], &e["purpose"], &e["decision"]),
        (
            &serde_json::json!("doctor"),
            &serde_json::json!(doctor_hex),
            &serde_json::json!("TREAT"),
            &serde_json::json!("permit")
        )
    );
    assert_eq!(e["returned"], 1);
    assert!(text(&out).1.contains("first checkpoint seen"));
    let first_state = fs::read_to_string(&state).unwrap();

    // A second read; the next run proves the new checkpoint extends the
    // one kept.
    read();
    let out = access_log(&vkey);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(json_lines(&out).len(), 2);
    assert!(
        text(&out).1.contains("consistent with the last one seen"),
        "{:?}",
        text(&out)
    );
    assert_ne!(fs::read_to_string(&state).unwrap(), first_state);

    // Under another ledger's key nothing verifies, and the state is kept.
    let kept = fs::read_to_string(&state).unwrap();
    fs::remove_file(&state).unwrap();
    let other = root.path().join("other");
    let other_vkey = init_with_origin(&other, "medledger.test/other");
    let out = access_log(&other_vkey);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("does not verify"), "{:?}", text(&out));
    assert!(!state.exists());
    fs::write(&state, &kept).unwrap();
    // A patient reads only their own log: another pseudonym is refused.
    let out = run(
        &[
            "patient",
            "access-log",
            "--url",
            &node.url,
            "--patient",
            report_payload(1)["patient"].as_str().unwrap(),
            "--key",
            patient_key.to_str().unwrap(),
            "--vkey",
            &vkey,
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(text(&out).1.contains("403"), "{:?}", text(&out));
}

#[test]
fn serve_on_a_taken_port_says_so_and_never_claims_to_listen() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    init(&dir);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = bin()
        .args([
            "serve",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            &addr,
        ])
        .output()
        .unwrap();
    assert_no_panic(&out);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(!stdout.contains("listening") && !stderr.contains("listening"));
}

#[test]
fn submit_of_empty_input_is_an_error() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let vkey = init(&dir);
    let node = serve(&dir);
    for input in ["", "\n  \n"] {
        let out = run(
            &["submit", "--url", &node.url, "--vkey", &vkey, "--signed"],
            Some(input),
        );
        assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
        assert!(text(&out).1.contains("no transaction"), "{:?}", text(&out));
    }
}

#[test]
fn participant_register_help_lists_every_role() {
    let out = run(&["participant", "register", "--help"], None);
    assert!(out.status.success());
    let help = text(&out).0;
    for role in [
        "institution",
        "doctor",
        "device",
        "public_health",
        "researcher",
        "auditor",
        "pseudonymization_authority",
        "data_protection_officer",
        "admin",
        "node",
        "patient",
    ] {
        assert!(help.contains(role), "{role} missing from:\n{help}");
    }
}

#[test]
fn a_patient_gets_an_erasure_receipt_that_verifies_offline_and_any_change_to_it_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let PatientLedger {
        dir,
        vkey,
        admin,
        patient,
        doctor,
        pseudonym,
    } = patient_ledger(root.path());
    let dpo = keys::generate().unwrap();
    let reg = line(&register_role(
        &admin,
        &dpo,
        Role::DataProtectionOfficer,
        None,
    ));
    assert!(import(&dir, &[reg], 1).output.status.success());
    let (erased, kept) = (report_tx(&doctor, 0), report_tx(&doctor, 0));
    let ids = import(&dir, &[line(&erased), line(&kept)], 1).ids();
    let redaction = medledger_formats::tx::Transaction::sign(
        &dpo,
        medledger_ledger::kind::REDACTION,
        medledger_ledger::now_ms(),
        &serde_json::json!({
            "targets": [ids[0]],
            "basis": "gdpr-art-17",
            "reason": "direct-identifier",
            "patient": pseudonym,
        }),
    )
    .unwrap();
    let redaction_id = import(&dir, &[line(&redaction)], 1).ids()[0].clone();
    let patient_key = key_file(root.path(), "patient", &patient);
    let node = serve(&dir);
    let file = root.path().join("erasure.json");
    let get = |record: &str| {
        run(
            &[
                "patient",
                "erasure-receipt",
                "get",
                "--url",
                &node.url,
                "--patient",
                &pseudonym,
                "--record",
                record,
                "--key",
                patient_key.to_str().unwrap(),
                "--vkey",
                &vkey,
                "--out",
                file.to_str().unwrap(),
            ],
            None,
        )
    };
    let out = get(&ids[1]);
    assert!(
        !out.status.success(),
        "a record still held has no erasure receipt"
    );
    assert!(text(&out).1.contains("is not redacted"), "{:?}", text(&out));
    let out = get(&ids[0]);
    assert!(out.status.success(), "{:?}", text(&out));
    let (stdout, _) = text(&out);
    assert!(stdout.starts_with("ok: erasure receipt"), "{stdout}");
    assert!(
        stdout.contains(&redaction_id) && stdout.contains(&ids[0]),
        "{stdout}"
    );

    let verify = |path: &Path, key: &str| {
        run(
            &[
                "patient",
                "erasure-receipt",
                "verify",
                path.to_str().unwrap(),
                "--key",
                key,
            ],
            None,
        )
    };
    let out = verify(&file, &vkey);
    assert!(out.status.success(), "{:?}", text(&out));
    // Another ledger's key proves nothing.
    let other = init(&root.path().join("other"));
    assert!(!verify(&file, &other).status.success());

    // Any change to what the receipt says is refused.
    let original: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
    let tampered = root.path().join("tampered.json");
    type Edit = fn(&mut serde_json::Value);
    let edits: [(&str, Edit); 4] = [
        ("a reason the officer did not sign", |r| {
            r["redaction"]["transaction"]["payload"]["reason"] = "wrong-patient".into();
        }),
        ("another patient", |r| {
            r["patient"] = report_payload(1)["patient"].clone();
        }),
        ("an erased record left out", |r| {
            r["erased"] = serde_json::json!([]);
        }),
        ("the redaction's receipt given for the record", |r| {
            r["erased"][0]["receipt"] = r["redaction"]["receipt"].clone();
        }),
    ];
    for (what, edit) in edits {
        let mut r = original.clone();
        edit(&mut r);
        fs::write(&tampered, serde_json::to_string(&r).unwrap()).unwrap();
        let out = verify(&tampered, &vkey);
        assert!(!out.status.success(), "{what}: accepted");
        assert!(
            text(&out).1.contains("erasure receipt INVALID"),
            "{what}: {:?}",
            text(&out)
        );
    }
}
