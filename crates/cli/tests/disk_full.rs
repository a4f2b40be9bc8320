//! No unlogged read with the disk full. A node runs on a small tmpfs of its
//! own; once the filesystem is filled, the first access entry that cannot be
//! written makes the read fail with 503 `access_log_unavailable` and no
//! record data, every later read too (a node whose storage failed stays
//! closed until restarted), and every read that was answered has its access
//! entry in the ledger after a restart.

mod common;

use common::*;
use medledger_formats::keys;
use medledger_formats::tx::Transaction;
use medledger_ledger::{Role, kind, now_ms};
use serde_json::{Value, json};
use std::ffi::CString;
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A tmpfs of a fixed size, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` at `path`; the OS error where this process
    /// may not mount (it needs root, or CAP_SYS_ADMIN).
    fn mount(path: &Path, bytes: u64) -> std::io::Result<Tmpfs> {
        fs::create_dir_all(path).expect("mount point");
        let fstype = CString::new("tmpfs").unwrap();
        let target = CString::new(path.as_os_str().as_bytes()).expect("path without NUL");
        let data = CString::new(format!("size={bytes},mode=0700")).unwrap();
        // SAFETY: every pointer is a NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::mount(
                fstype.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Tmpfs {
            path: path.to_owned(),
        })
    }

    /// Fills the filesystem with one file until a write fails with ENOSPC;
    /// returns the file, to be removed to free the space again.
    fn fill(&self) -> PathBuf {
        let filler = self.path.join("filler");
        let mut f = fs::File::create(&filler).expect("filler");
        for chunk in [1 << 20, 4096, 1] {
            let block = vec![0u8; chunk];
            loop {
                match f.write_all(&block) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => panic!("filling the disk: {e}"),
                }
            }
        }
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Ok(target) = CString::new(self.path.as_os_str().as_bytes()) {
            // SAFETY: a NUL-terminated path; a lazy unmount cannot fail on a
            // busy mount.
            unsafe {
                libc::umount2(target.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}

fn submit(http: &reqwest::blocking::Client, s: &Server, txs: &[Transaction]) {
    let body: Vec<_> = txs.iter().map(|t| t.to_wire().unwrap()).collect();
    let r = http
        .post(s.url("/v1/transactions"))
        .json(&body)
        .send()
        .expect("submit");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().expect("json");
    for item in v["results"].as_array().expect("results") {
        assert_eq!(item["status"], 200, "{item}");
    }
}

/// What one read of the record answered.
#[derive(Debug, PartialEq)]
enum Read {
    /// 200 with the record.
    Served,
    /// 503 `access_log_unavailable`, with no record data.
    Refused,
}

/// Reads the record `id` with `token`; fails the test on any other answer,
/// and on a refusal that carries anything of the record.
fn read(http: &reqwest::blocking::Client, s: &Server, id: &str, token: &str) -> Read {
    let r = http
        .get(s.url(&format!("/v1/transactions/{id}")))
        .bearer_auth(token)
        .header("x-purpose-of-use", "TREAT")
        .send()
        .expect("read");
    let status = r.status().as_u16();
    let text = r.text().expect("body");
    match status {
        200 => {
            let v: Value = serde_json::from_str(&text).expect("json");
            assert_eq!(v["id"], id);
            assert!(v["transaction"].is_object(), "{v}");
            Read::Served
        }
        503 => {
            let v: Value = serde_json::from_str(&text).expect("a problem document");
            assert_eq!(v["code"], "access_log_unavailable", "{v}");
            for secret in [RECORD_PATIENT, "Oseltamivir", "anamnesis", "receipt"] {
                assert!(
                    !text.contains(secret),
                    "a refused read leaked {secret}: {text}"
                );
            }
            assert!(v.get("transaction").is_none(), "{v}");
            Read::Refused
        }
        other => panic!("a read answered {other}: {text}"),
    }
}

const RECORD_PATIENT: &str = "MFRGGZDFMZTWQ2LKNNWG23TPOA";

#[test]
fn no_read_is_answered_unlogged_with_the_disk_full() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A test that cannot fill a disk proves nothing, so a failed mount fails
    // the test; MEDLEDGER_SKIP_DISK_FULL=1 skips it, loudly, where mounting
    // is known to be impossible.
    let disk = match Tmpfs::mount(&tmp.path().join("disk"), 48 << 20) {
        Ok(disk) => disk,
        Err(e) if std::env::var_os("MEDLEDGER_SKIP_DISK_FULL").is_some() => {
            eprintln!(
                "SKIPPED (MEDLEDGER_SKIP_DISK_FULL): no tmpfs could be mounted ({e}); \
                 the no-unlogged-read rule with the disk full was NOT tested"
            );
            return;
        }
        Err(e) => panic!(
            "mounting a 48 MiB tmpfs failed ({e}): this test needs root (CAP_SYS_ADMIN) \
             to give the node a disk it can fill; set MEDLEDGER_SKIP_DISK_FULL=1 to skip it"
        ),
    };
    // The data directory is the mount point, so the server's log (beside
    // it) stays on a disk with room.
    let dir = disk.path.clone();
    init(&dir);
    let mut server = Server::start(&dir, &[]);
    let http = client();
    let admin = admin_key(&dir);
    let doctor = keys::generate().unwrap();
    let dpo = keys::generate().unwrap();
    submit(
        &http,
        &server,
        &[
            register_role(&admin, &doctor, Role::Doctor, None),
            register_role(&admin, &dpo, Role::DataProtectionOfficer, None),
        ],
    );
    let mut payload = report_payload(1);
    payload["patient"] = json!(RECORD_PATIENT);
    let report = Transaction::sign(&doctor, kind::MEDICAL_REPORT, now_ms(), &payload).unwrap();
    submit(&http, &server, std::slice::from_ref(&report));
    let id = hex::encode(report.id());
    let doctor_token = issue_token(&dir, &doctor);
    let dpo_token = issue_token(&dir, &dpo);

    let mut served = 0;
    assert_eq!(read(&http, &server, &id, &doctor_token), Read::Served);
    served += 1;

    let filler = disk.fill();
    // Some entries may still fit in pages the files already hold; within a
    // few hundred reads one must need a page the disk no longer has.
    let mut refused = 0;
    for _ in 0..400 {
        match read(&http, &server, &id, &doctor_token) {
            Read::Served => {
                assert_eq!(refused, 0, "a read was served after one was refused");
                served += 1;
            }
            Read::Refused => {
                refused += 1;
                if refused == 5 {
                    break;
                }
            }
        }
    }
    assert_eq!(refused, 5, "the full disk never stopped a read");
    eprintln!("{served} reads served, then refused with the disk full");

    // Space again: the node stays closed until it is restarted.
    fs::remove_file(&filler).expect("free the disk");
    assert_eq!(read(&http, &server, &id, &doctor_token), Read::Refused);
    server.signal_term();
    server.wait_exit();
    assert!(
        !server.log_text().contains("panicked"),
        "{}",
        server.log_text()
    );
    // The write that met the full disk may have left a torn record at the
    // segment's end: `verify` reports it until the next open cuts it off,
    // so the ledger is verified after the restart below.

    // Every answered read is in the access log; at most one refused read
    // (the one whose commit failed) may be there too, never more.
    let server = Server::start(&dir, &[]);
    let r = http
        .get(server.url(&format!(
            "/v1/patients/{RECORD_PATIENT}/access-log?limit=1000"
        )))
        .bearer_auth(&dpo_token)
        .send()
        .expect("access log");
    assert_eq!(r.status(), 200);
    let log: Value = r.json().expect("json");
    let reader = keys::public_key(&doctor).to_string();
    let logged = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["kind"] == "access.entry")
        .filter(|e| {
            let p = e["payload"].to_string();
            p.contains(&reader) && p.contains(&id)
        })
        .count();
    assert!(
        (served..=served + 1).contains(&logged),
        "{served} reads served, {logged} access entries of them in the log"
    );
    assert_eq!(read(&http, &server, &id, &doctor_token), Read::Served);
    server.stop();
    assert_verifies(&dir);
}
