//! `medledger bench read`: single-record reads from a running node.
//!
//! Before the clock starts it registers a doctor with the node's admin key,
//! commits R medical reports by that doctor, and issues the doctor a bearer
//! token in the node's data directory. Then C threads, each with its own
//! keep-alive HTTP/1.1 connection, fetch `GET /v1/transactions/{id}`
//! round-robin over the R records and time each request. Where the node
//! logs record-level reads, every answer waits for its access entry to be
//! committed, so the run measures logged reads. After the clock stops, the
//! last answer of every thread is verified (transaction id and receipt),
//! and the growth of the log and of the data directory is reported per read.

use crate::bench_http::{Conn, bench_doctors, node_addr, percentile, sign_all};
use anyhow::{Context, Result, bail};
use clap::Args;
use medledger_client::Client;
use medledger_formats::keys;
use medledger_formats::tx::{Transaction, TxWire};
use medledger_ledger::{now_ms, read_key_file};
use serde_json::json;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

/// Records committed per setup request.
const SETUP_BATCH: usize = 1000;

/// `medledger bench read` options.
#[derive(Args)]
pub struct ReadArgs {
    /// Node URL, e.g. http://127.0.0.1:7878.
    #[arg(long)]
    url: String,
    /// The node's data directory: the reader's token is issued there, and
    /// its size is measured before and after the run.
    #[arg(long)]
    data_dir: PathBuf,
    /// Client threads, each with its own connection.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Reads to send in all.
    #[arg(long, default_value_t = 100_000)]
    count: usize,
    /// Distinct records, committed before the run and read round-robin.
    #[arg(long, default_value_t = 1000)]
    records: usize,
    /// The node's admin key file; DATA_DIR/admin.key if absent.
    #[arg(long)]
    admin_key: Option<PathBuf>,
    /// The node's verifier key; trusted on first use from /v1/status if absent.
    #[arg(long)]
    vkey: Option<String>,
    /// The purpose of use every read names (x-purpose-of-use).
    #[arg(long, default_value = "TREAT")]
    purpose: String,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Bytes of the files under `dir`: as their lengths add up, and as the
/// filesystem allocated them.
fn dir_bytes(dir: &Path) -> Result<(u64, u64)> {
    let (mut len, mut alloc) = (0, 0);
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            let (l, a) = dir_bytes(&entry.path())?;
            len += l;
            alloc += a;
        } else {
            len += meta.len();
            alloc += meta.blocks() * 512;
        }
    }
    Ok((len, alloc))
}

/// Bytes (lengths) under each top-level entry of `dir`, by name.
fn entry_bytes(dir: &Path) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        let len = if meta.is_dir() {
            dir_bytes(&entry.path())?.0
        } else {
            meta.len()
        };
        out.insert(entry.file_name().to_string_lossy().into_owned(), len);
    }
    Ok(out)
}

/// Checks that one answer of the run holds the record `id` and a receipt
/// that proves it.
fn verify_answer(client: &Client, id: &str, body: &[u8]) -> Result<()> {
    let v: serde_json::Value = serde_json::from_slice(body)?;
    let wire: TxWire = serde_json::from_value(v["transaction"].clone())?;
    let tx = Transaction::from_wire(wire)?;
    anyhow::ensure!(
        hex::encode(tx.id()) == id,
        "the answer holds another record"
    );
    let receipt = v["receipt"]
        .as_str()
        .context("an answer without a receipt")?;
    client.trust().receipt_for(receipt, &tx)?;
    Ok(())
}

/// Runs the read load generator.
pub fn run(a: ReadArgs) -> Result<ExitCode> {
    let concurrency = a.concurrency.max(1);
    let count = a.count.max(1);
    let records = a.records.max(1);
    let client = crate::remote::connect(&a.url, a.vkey.as_deref())?;
    let admin_key = a
        .admin_key
        .clone()
        .unwrap_or_else(|| a.data_dir.join("admin.key"));
    let admin = read_key_file(&admin_key)
        .with_context(|| format!("the admin key {}", admin_key.display()))?;
    let (doctors, regs) = bench_doctors(&admin, 1)?;
    for r in client.submit_batch(&regs)? {
        r.context("registering the bench reader")?;
    }
    let txs = sign_all(&doctors, records)?;
    for chunk in txs.chunks(SETUP_BATCH) {
        for r in client.submit_batch(chunk)? {
            r.context("committing a record to read")?;
        }
    }
    let ids: Vec<String> = txs.iter().map(|t| hex::encode(t.id())).collect();
    drop(txs);
    let token = medledger_node::issue_token(&a.data_dir, keys::public_key(&doctors[0]), now_ms())
        .with_context(|| format!("issuing a token in {}", a.data_dir.display()))?;

    let (addr, host) = node_addr(client.url())?;
    let requests: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| {
            format!(
                "GET /v1/transactions/{id} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nX-Purpose-Of-Use: {}\r\n\r\n",
                a.purpose
            )
            .into_bytes()
        })
        .collect();
    let log_before = client.status()?.log_size;
    let (len_before, alloc_before) = dir_bytes(&a.data_dir)?;
    let entries_before = entry_bytes(&a.data_dir)?;

    let next = AtomicUsize::new(0);
    let served = AtomicUsize::new(0);
    let latencies = Mutex::new(Vec::with_capacity(count));
    let samples = Mutex::new(Vec::new());
    let first_error = Mutex::new(None::<String>);
    let note_error = |msg: String| {
        if let Ok(mut f) = first_error.lock() {
            f.get_or_insert(msg);
        }
    };
    let ready = Barrier::new(concurrency + 1);
    let start = std::thread::scope(|s| {
        for _ in 0..concurrency {
            s.spawn(|| {
                let conn = Conn::connect(addr, &host);
                ready.wait();
                let mut conn = match conn {
                    Ok(c) => c,
                    Err(e) => {
                        note_error(e.to_string());
                        return;
                    }
                };
                let mut mine = Vec::new();
                let mut last = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let r = i % records;
                    let t0 = Instant::now();
                    let result = conn.send(&requests[r]);
                    mine.push(t0.elapsed().as_secs_f64() * 1e3);
                    match result {
                        Ok((200, body)) => {
                            served.fetch_add(1, Ordering::Relaxed);
                            last = Some((r, body));
                        }
                        Ok((status, body)) => note_error(format!(
                            "{status}: {}",
                            String::from_utf8_lossy(&body[..body.len().min(300)])
                        )),
                        Err(e) => {
                            note_error(e.to_string());
                            match Conn::connect(addr, &host) {
                                Ok(c) => conn = c,
                                Err(_) => break,
                            }
                        }
                    }
                }
                if let Ok(mut l) = latencies.lock() {
                    l.extend(mine);
                }
                if let (Some(last), Ok(mut s)) = (last, samples.lock()) {
                    s.push(last);
                }
            });
        }
        ready.wait();
        Instant::now()
    });
    let secs = start.elapsed().as_secs_f64();

    // Outside the clock. Every answer was sent after its entry committed;
    // the index may trail by a moment, so let the node settle first.
    std::thread::sleep(Duration::from_secs(1));
    let log_growth = client.status()?.log_size.saturating_sub(log_before);
    let (len_after, alloc_after) = dir_bytes(&a.data_dir)?;
    let growth: BTreeMap<String, f64> = entry_bytes(&a.data_dir)?
        .into_iter()
        .map(|(name, after)| {
            let before = entries_before.get(&name).copied().unwrap_or(0);
            let per =
                after.saturating_sub(before) as f64 / served.load(Ordering::Relaxed).max(1) as f64;
            (name, per)
        })
        .filter(|(_, per)| *per > 0.0)
        .collect();
    let served = served.into_inner();
    let errors = count - served.min(count);
    let mut lat = latencies.into_inner().unwrap_or_default();
    lat.sort_by(f64::total_cmp);
    let mut verified = 0;
    for (r, body) in samples.into_inner().unwrap_or_default() {
        verify_answer(&client, &ids[r], &body).context("an answer from the run does not verify")?;
        verified += 1;
    }
    if let Some(e) = first_error.into_inner().ok().flatten() {
        eprintln!("first error: {e}");
    }
    let per_read = |bytes: u64| bytes as f64 / served.max(1) as f64;
    let fields = json!({
        "reads_per_s": served as f64 / secs,
        "p50_ms": percentile(&lat, 0.50),
        "p99_ms": percentile(&lat, 0.99),
        "max_ms": lat.last().copied().unwrap_or(0.0),
        "count": count,
        "served": served,
        "errors": errors,
        "seconds": secs,
        "concurrency": concurrency,
        "records": records,
        "log_growth": log_growth,
        "entries_per_read": log_growth as f64 / served.max(1) as f64,
        "dir_bytes_before": len_before,
        "dir_bytes_after": len_after,
        "dir_bytes_per_read": per_read(len_after.saturating_sub(len_before)),
        "dir_alloc_bytes_per_read": per_read(alloc_after.saturating_sub(alloc_before)),
        "bytes_per_read_by_entry": growth,
        "answers_verified": verified,
    });
    if a.json {
        println!("{fields}");
    } else {
        println!(
            "{:.0} reads/s  ({served} reads in {secs:.2} s, {concurrency} clients, {records} records)",
            served as f64 / secs
        );
        println!(
            "latency: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            percentile(&lat, 0.50),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or(0.0)
        );
        println!(
            "log grew by {log_growth} ({:.3} per read); data directory by {:.0} bytes per read \
             ({:.0} allocated)",
            log_growth as f64 / served.max(1) as f64,
            per_read(len_after.saturating_sub(len_before)),
            per_read(alloc_after.saturating_sub(alloc_before))
        );
        let by: Vec<String> = growth.iter().map(|(n, b)| format!("{n} {b:.0}")).collect();
        println!("bytes per read by entry: {}", by.join(", "));
        println!("errors: {errors}; answers verified after the run: {verified}");
    }
    if verified == 0 {
        bail!("no answer from the run could be verified");
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
