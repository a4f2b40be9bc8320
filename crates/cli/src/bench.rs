//! `medledger bench`: in-process, durable load generators.

use anyhow::{Context, Result};
use clap::Subcommand;
use medledger_formats::keys;
use medledger_formats::merkle;
use medledger_formats::tx::Transaction;
use medledger_ledger::{Ledger, read_key_file};
use medledger_node::{Sequencer, SequencerConfig};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Benchmark subcommands.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Durable signed ingest: transactions are signed before the clock starts;
    /// admission (signature, roles, dedupe) and commit (fsync) are timed.
    Ingest {
        /// Data directory (initialised if empty).
        #[arg(long, default_value = "medledger-data")]
        data_dir: PathBuf,
        /// Transactions to submit.
        #[arg(long, default_value_t = 100_000)]
        count: usize,
        /// Distinct signing doctors.
        #[arg(long, default_value_t = 16)]
        signers: usize,
        /// Concurrent client threads.
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// Transactions per submission.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Time to open an existing ledger.
    Open {
        /// Data directory.
        #[arg(long, default_value = "medledger-data")]
        data_dir: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Load a running node over HTTP: signed before the clock starts, then C
    /// clients with keep-alive connections send batches of B.
    Http(crate::bench_http::HttpArgs),
    /// Single-record reads from a running node: C clients with keep-alive
    /// connections fetch `GET /v1/transactions/{id}` with a bearer token
    /// (each one a logged read where the node logs reads).
    Read(crate::bench_read::ReadArgs),
    /// Inclusion proofs served from stored subtrees, per second.
    Proofs {
        /// Data directory.
        #[arg(long, default_value = "medledger-data")]
        data_dir: PathBuf,
        /// Proofs to build and verify.
        #[arg(long, default_value_t = 100_000)]
        count: u64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a benchmark.
pub fn run(cmd: BenchCommand) -> Result<ExitCode> {
    match cmd {
        BenchCommand::Ingest {
            data_dir,
            count,
            signers,
            clients,
            batch,
            json,
        } => ingest(
            &data_dir,
            count,
            signers.max(1),
            clients.max(1),
            batch.max(1),
            json,
        ),
        BenchCommand::Http(args) => crate::bench_http::run(args),
        BenchCommand::Read(args) => crate::bench_read::run(args),
        BenchCommand::Open { data_dir, json } => {
            let start = Instant::now();
            let ledger = Ledger::open(&data_dir)?;
            let secs = start.elapsed().as_secs_f64();
            let size = ledger.state.tip().log.size();
            report(
                json,
                &[("open_ms", secs * 1e3), ("transactions", size as f64)],
            );
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Proofs {
            data_dir,
            count,
            json,
        } => {
            let ledger = Ledger::open(&data_dir)?;
            let size = ledger.state.tip().log.size();
            let root = ledger.state.tip().log.root();
            let start = Instant::now();
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            for _ in 0..count {
                // xorshift: spread the proofs over the whole log.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let leaf = x % size;
                let r = ledger.store.receipt(leaf, None)?;
                let id = merkle::root_from_inclusion(
                    &leaf_hash_at(&ledger, leaf)?,
                    leaf,
                    size,
                    &r.proof,
                )?;
                anyhow::ensure!(id == root, "proof for leaf {leaf} does not reach the root");
            }
            let secs = start.elapsed().as_secs_f64();
            report(
                json,
                &[
                    ("proofs_per_s", count as f64 / secs),
                    ("log_size", size as f64),
                ],
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn leaf_hash_at(ledger: &Ledger, leaf: u64) -> Result<merkle::Hash> {
    use medledger_formats::merkle::SubtreeSource;
    Ok(ledger.store.tree().subtree(0, leaf)?)
}

fn report(json: bool, fields: &[(&str, f64)]) {
    if json {
        let obj: serde_json::Map<String, serde_json::Value> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        println!("{}", serde_json::Value::Object(obj));
    } else {
        for (k, v) in fields {
            println!("{k}: {v:.2}");
        }
    }
}

/// A medical report of about 300 bytes.
pub(crate) fn report_payload(i: usize) -> serde_json::Value {
    json!({
        "patient": medledger_health::pseudonym::synthetic((i % 100_000) as u64),
        "institution": "Klinicki centar Nis",
        "encounter_date": "2026-11-24",
        "diagnoses": ["J10.1", "I10"],
        "anamnesis": "Fever 38.5 C for two days, dry cough, myalgia.",
        "findings": "Pharynx hyperaemic, lungs clear, BP 150/95.",
        "therapy": "Oseltamivir 75 mg twice daily for 5 days; rest; fluids.",
    })
}

fn ingest(
    dir: &Path,
    count: usize,
    signers: usize,
    clients: usize,
    batch: usize,
    json: bool,
) -> Result<ExitCode> {
    if !dir.join("ledger.json").exists() {
        Ledger::init(
            dir,
            &format!(
                "medledger/bench-{}",
                hex::encode(keys::random_bytes::<4>()?)
            ),
            "bench",
        )?;
    }
    let admin =
        read_key_file(&dir.join("admin.key")).context("bench needs the ledger's admin.key")?;
    let ledger = Ledger::open(dir)?;
    let seq = Sequencer::start(ledger, SequencerConfig::default());

    let (doctors, registrations) = crate::bench_http::bench_doctors(&admin, signers)?;
    for r in seq.submit(registrations) {
        r.map_err(|e| anyhow::anyhow!("registering a bench doctor: {e}"))?;
    }

    // Sign everything before the clock starts: clients sign, not the node.
    let txs = crate::bench_http::sign_all(&doctors, count)?;
    let payload_bytes =
        txs.iter().map(|t| t.payload_jcs().len()).sum::<usize>() as f64 / count.max(1) as f64;

    let batches: Vec<Vec<Transaction>> = {
        let mut it = txs.into_iter().peekable();
        let mut out = Vec::new();
        while it.peek().is_some() {
            out.push(it.by_ref().take(batch).collect());
        }
        out
    };
    let batches: Vec<Mutex<Option<Vec<Transaction>>>> =
        batches.into_iter().map(|b| Mutex::new(Some(b))).collect();
    let next = AtomicUsize::new(0);
    let latencies = Mutex::new(Vec::with_capacity(count));
    let errors = AtomicUsize::new(0);
    let seq = Arc::new(seq);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(slot) = batches.get(i) else { break };
                    let Some(b) = slot.lock().ok().and_then(|mut g| g.take()) else {
                        continue;
                    };
                    let n = b.len();
                    let t0 = Instant::now();
                    let results = seq.submit(b);
                    let ms = t0.elapsed().as_secs_f64() * 1e3;
                    errors.fetch_add(
                        results.iter().filter(|r| r.is_err()).count(),
                        Ordering::Relaxed,
                    );
                    mine.extend(std::iter::repeat_n(ms, n));
                }
                if let Ok(mut l) = latencies.lock() {
                    l.extend(mine);
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let seq = Arc::try_unwrap(seq).map_err(|_| anyhow::anyhow!("sequencer still shared"))?;
    seq.shutdown()
        .map_err(|e| anyhow::anyhow!("shutdown: {e}"))?;
    let mut lat = latencies.into_inner().unwrap_or_default();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let errors = errors.into_inner();
    report(
        json,
        &[
            ("tx_per_s", count as f64 / secs),
            ("p50_ms", pct(0.50)),
            ("p99_ms", pct(0.99)),
            ("count", count as f64),
            ("errors", errors as f64),
            ("seconds", secs),
            ("payload_bytes", payload_bytes),
            ("clients", clients as f64),
            ("batch", batch as f64),
        ],
    );
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
