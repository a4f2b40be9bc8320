//! `medledger bench http`: a load generator for a running node.
//!
//! Everything is signed and serialised before the clock starts. Then C
//! threads, each with its own keep-alive HTTP/1.1 connection, send
//! `POST /v1/transactions` bodies of B transactions (B = 1: a single object)
//! and time each request. The HTTP client is a few lines over `TcpStream`
//! rather than `reqwest::blocking`, whose runtime hop per request would take
//! CPU from the node when both share a small machine. After the clock stops,
//! the last response of every thread is verified with `medledger-client`.

use crate::bench::report_payload;
use anyhow::{Context, Result, bail};
use clap::Args;
use medledger_client::Client;
use medledger_formats::keys;
use medledger_formats::tx::{Transaction, TxWire};
use medledger_health::pseudonym::synthetic;
use medledger_ledger::{Role, kind, now_ms, read_key_file};
use serde::Deserialize;
use serde_json::json;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

/// `medledger bench http` options.
#[derive(Args)]
pub struct HttpArgs {
    /// Node URL, e.g. http://127.0.0.1:7878.
    #[arg(long)]
    url: String,
    /// Client threads, each with its own connection.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Transactions per request (1: single-transaction bodies).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Transactions to send in all.
    #[arg(long, default_value_t = 100_000)]
    count: usize,
    /// Distinct signing doctors, registered before the run.
    #[arg(long, default_value_t = 16)]
    signers: usize,
    /// The node's admin key file (DATA_DIR/admin.key), to register the doctors.
    #[arg(long)]
    admin_key: Option<PathBuf>,
    /// The node's verifier key; trusted on first use from /v1/status if absent.
    #[arg(long)]
    vkey: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Send full NEWS2 vital-sign records from wearables (one device per
    /// signer, each bound to its patient) to `POST /v1/vitals` instead of
    /// medical reports to `POST /v1/transactions`.
    #[arg(long)]
    vitals: bool,
}

/// A keep-alive HTTP/1.1 connection that sends requests and reads whole
/// responses.
pub(crate) struct Conn {
    stream: TcpStream,
    host: String,
    buf: Vec<u8>,
    req: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl Conn {
    pub(crate) fn connect(addr: SocketAddr, host: &str) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Conn {
            stream,
            host: host.to_owned(),
            buf: Vec::with_capacity(64 << 10),
            req: Vec::with_capacity(4096),
        })
    }

    /// Sends one request and returns the status and body.
    fn post(&mut self, path: &str, body: &[u8]) -> io::Result<(u16, Vec<u8>)> {
        self.req.clear();
        write!(
            self.req,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        )?;
        self.req.extend_from_slice(body);
        self.stream.write_all(&self.req)?;
        self.read_response()
    }

    /// Sends `request`, a whole request already written out, and returns
    /// the status and body.
    pub(crate) fn send(&mut self, request: &[u8]) -> io::Result<(u16, Vec<u8>)> {
        self.stream.write_all(request)?;
        self.read_response()
    }

    fn fill(&mut self) -> io::Result<()> {
        let len = self.buf.len();
        self.buf.resize(len + (64 << 10), 0);
        let n = self.stream.read(&mut self.buf[len..])?;
        self.buf.truncate(len + n);
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        Ok(())
    }

    fn read_response(&mut self) -> io::Result<(u16, Vec<u8>)> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            self.fill()?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).map_err(|_| bad("head"))?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("status line"))?;
        let mut length = None;
        let mut chunked = false;
        for l in lines {
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                length = Some(v.parse::<usize>().map_err(|_| bad("content-length"))?);
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.eq_ignore_ascii_case("chunked");
            }
        }
        self.buf.drain(..head_end + 4);
        let body = if chunked {
            self.read_chunked()?
        } else {
            let len = length.ok_or_else(|| bad("response without length"))?;
            while self.buf.len() < len {
                self.fill()?;
            }
            self.buf.drain(..len).collect()
        };
        Ok((status, body))
    }

    fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n") {
                    break i;
                }
                self.fill()?;
            };
            let size_text = std::str::from_utf8(&self.buf[..line_end]).map_err(|_| bad("chunk"))?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("chunk size"))?;
            while self.buf.len() < line_end + 2 + size + 2 {
                self.fill()?;
            }
            body.extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
            self.buf.drain(..line_end + 2 + size + 2);
            if size == 0 {
                return Ok(body);
            }
        }
    }
}

#[derive(Deserialize)]
struct BatchStatus {
    results: Vec<ItemStatus>,
}

#[derive(Deserialize)]
struct ItemStatus {
    status: u16,
}

/// Transactions the response to `body` says were committed.
fn committed(status: u16, body: &[u8], batch: usize) -> usize {
    match (status, batch) {
        (200, 1) => 1,
        (200, _) => serde_json::from_slice::<BatchStatus>(body)
            .map(|b| b.results.iter().filter(|r| r.status == 200).count())
            .unwrap_or(0),
        _ => 0,
    }
}

/// `n` fresh doctor keys and the admin's transactions registering them.
pub(crate) fn bench_doctors(
    admin: &ed25519_dalek::SigningKey,
    n: usize,
) -> Result<(Vec<ed25519_dalek::SigningKey>, Vec<Transaction>)> {
    let doctors: Vec<_> = (0..n).map(|_| keys::generate()).collect::<Result<_, _>>()?;
    let regs = doctors
        .iter()
        .map(|d| {
            crate::demo::register(
                admin,
                d,
                Role::Doctor,
                "Klinicki centar Nis",
                "bench doctor",
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((doctors, regs))
}

/// `n` fresh wearable keys, each bound to its own patient, and the admin's
/// transactions registering them.
fn bench_devices(
    admin: &ed25519_dalek::SigningKey,
    n: usize,
) -> Result<(Vec<ed25519_dalek::SigningKey>, Vec<Transaction>)> {
    let devices: Vec<_> = (0..n).map(|_| keys::generate()).collect::<Result<_, _>>()?;
    let regs = devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            crate::demo::sign_registration(
                admin,
                &medledger_ledger::RegisterPayload {
                    key: keys::public_key(d),
                    role: Role::Device,
                    institution: "Klinicki centar Nis".into(),
                    label: "bench wearable".into(),
                    patient: Some(synthetic(i as u64)),
                    cluster: None,
                },
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((devices, regs))
}

/// A full set of NEWS2 readings from wearable `device` (about 230 bytes).
fn vitals_payload(device: usize, i: usize) -> serde_json::Value {
    let time = 1_795_478_400_000 + i as i64 * 1000;
    json!({
        "patient": synthetic(device as u64),
        "time": medledger_health::calendar::instant_of_ms(time),
        "respiratory_rate": 14 + i % 12,
        "spo2": 90 + i % 10,
        "on_oxygen": i.is_multiple_of(7),
        "systolic_bp": 95 + i % 40,
        "pulse": 55 + i % 70,
        "consciousness": "alert",
        "temperature": 36.0 + (i % 30) as f64 / 10.0,
    })
}

/// Signs `count` ~300-byte medical reports (or, with `vitals`, vital-sign
/// records), round-robin over `signers`, on every core (before any clock
/// starts).
pub(crate) fn sign_all(
    doctors: &[ed25519_dalek::SigningKey],
    count: usize,
) -> Result<Vec<Transaction>> {
    sign_round_robin(doctors, count, false)
}

fn sign_round_robin(
    doctors: &[ed25519_dalek::SigningKey],
    count: usize,
    vitals: bool,
) -> Result<Vec<Transaction>> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = count.div_ceil(threads);
    let time = now_ms();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t * per..((t + 1) * per).min(count))
                        .map(|i| {
                            let signer = i % doctors.len();
                            if vitals {
                                Transaction::sign(
                                    &doctors[signer],
                                    kind::VITAL_SIGNS,
                                    time,
                                    &vitals_payload(signer, i),
                                )
                            } else {
                                Transaction::sign(
                                    &doctors[signer],
                                    kind::MEDICAL_REPORT,
                                    time,
                                    &report_payload(i),
                                )
                            }
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(count);
        for h in handles {
            all.extend(
                h.join()
                    .map_err(|_| anyhow::anyhow!("signing thread panicked"))??,
            );
        }
        Ok(all)
    })
}

/// Request bodies of `batch` transactions each.
fn bodies(txs: &[Transaction], batch: usize) -> Result<Vec<Vec<u8>>> {
    txs.chunks(batch)
        .map(|chunk| {
            let wires = chunk
                .iter()
                .map(|t| t.to_wire())
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if batch == 1 {
                serde_json::to_vec(&wires[0])?
            } else {
                serde_json::to_vec(&wires)?
            })
        })
        .collect()
}

/// Verifies every receipt in `resp` for the transactions in `body`; for
/// `/v1/vitals`, whose answers carry ids only, fetches each receipt.
fn verify_response(client: &Client, body: &[u8], resp: &[u8], batch: usize) -> Result<usize> {
    let wires: Vec<TxWire> = if batch == 1 {
        vec![serde_json::from_slice(body)?]
    } else {
        serde_json::from_slice(body)?
    };
    let items: Vec<serde_json::Value> = if batch == 1 {
        vec![serde_json::from_slice(resp)?]
    } else {
        let v: serde_json::Value = serde_json::from_slice(resp)?;
        v["results"].as_array().cloned().unwrap_or_default()
    };
    anyhow::ensure!(items.len() == wires.len(), "result count differs");
    let mut n = 0;
    for (w, item) in wires.into_iter().zip(items) {
        let tx = Transaction::from_wire(w)?;
        match (item["receipt"].as_str(), item["id"].as_str()) {
            (Some(text), _) => {
                client.trust().receipt_for(text, &tx)?;
            }
            (None, Some(id)) if item["status"] == 200 => {
                let fetched = client.receipt_hex(id)?;
                anyhow::ensure!(&fetched.id == tx.id(), "receipt of another transaction");
            }
            _ => continue,
        }
        n += 1;
    }
    Ok(n)
}

/// The socket address and `host:port` of an `http://` base URL.
pub(crate) fn node_addr(base: &str) -> Result<(SocketAddr, String)> {
    let hostport = base
        .strip_prefix("http://")
        .context("only http:// URLs are supported")?
        .split('/')
        .next()
        .unwrap_or("");
    let addr = hostport
        .to_socket_addrs()
        .with_context(|| format!("resolving {hostport}"))?
        .next()
        .with_context(|| format!("{hostport} has no address"))?;
    Ok((addr, hostport.to_owned()))
}

/// The `p` quantile of `sorted` (0 when empty).
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0)
}

/// Runs the HTTP load generator.
pub fn run(a: HttpArgs) -> Result<ExitCode> {
    let concurrency = a.concurrency.max(1);
    let batch = a.batch.max(1);
    let count = a.count.max(1);
    let client = crate::remote::connect(&a.url, a.vkey.as_deref())?;
    let admin_key = a
        .admin_key
        .context("bench http registers its own doctors: pass --admin-key DATA_DIR/admin.key")?;
    let admin = read_key_file(&admin_key)?;
    let (signers, regs) = if a.vitals {
        bench_devices(&admin, a.signers.max(1))?
    } else {
        bench_doctors(&admin, a.signers.max(1))?
    };
    for r in client.submit_batch(&regs)? {
        r.context("registering a bench signer")?;
    }
    let path = if a.vitals {
        "/v1/vitals"
    } else {
        "/v1/transactions"
    };

    let txs = sign_round_robin(&signers, count, a.vitals)?;
    let payload_bytes =
        txs.iter().map(|t| t.payload_jcs().len()).sum::<usize>() as f64 / count as f64;
    let bodies = bodies(&txs, batch)?;
    drop(txs);
    let body_bytes = bodies.iter().map(Vec::len).sum::<usize>() as f64 / count as f64;

    let (addr, host) = node_addr(client.url())?;
    let next = AtomicUsize::new(0);
    let committed_total = AtomicUsize::new(0);
    let failed_requests = AtomicUsize::new(0);
    let latencies = Mutex::new(Vec::with_capacity(bodies.len()));
    let samples = Mutex::new(Vec::new());
    let first_error = Mutex::new(None::<String>);
    let note_error = |msg: String| {
        if let Ok(mut f) = first_error.lock() {
            f.get_or_insert(msg);
        }
    };
    let ready = Barrier::new(concurrency + 1);
    let start = std::thread::scope(|s| -> Result<Instant> {
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
                    let Some(body) = bodies.get(i) else { break };
                    let t0 = Instant::now();
                    let result = conn.post(path, body);
                    mine.push(t0.elapsed().as_secs_f64() * 1e3);
                    match result {
                        Ok((status, resp)) => {
                            let ok = committed(status, &resp, batch);
                            committed_total.fetch_add(ok, Ordering::Relaxed);
                            if ok == 0 {
                                failed_requests.fetch_add(1, Ordering::Relaxed);
                                note_error(
                                    String::from_utf8_lossy(&resp[..resp.len().min(300)])
                                        .into_owned(),
                                );
                            }
                            last = Some((i, status, resp));
                        }
                        Err(e) => {
                            failed_requests.fetch_add(1, Ordering::Relaxed);
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
        Ok(Instant::now())
    })?;
    let secs = start.elapsed().as_secs_f64();

    let committed = committed_total.into_inner();
    let errors = count - committed.min(count);
    let mut lat = latencies.into_inner().unwrap_or_default();
    lat.sort_by(f64::total_cmp);
    // Outside the clock: the receipts really prove the transactions.
    let mut verified = 0;
    for (i, status, resp) in samples.into_inner().unwrap_or_default() {
        if status == 200 {
            verified += verify_response(&client, &bodies[i], &resp, batch)
                .context("a receipt from the run does not verify")?;
        }
    }
    if let Some(e) = first_error.into_inner().ok().flatten() {
        eprintln!("first error: {e}");
    }
    let fields = json!({
        "tx_per_s": committed as f64 / secs,
        "p50_ms": percentile(&lat, 0.50),
        "p99_ms": percentile(&lat, 0.99),
        "max_ms": lat.last().copied().unwrap_or(0.0),
        "count": count,
        "errors": errors,
        "failed_requests": failed_requests.into_inner(),
        "requests": lat.len(),
        "seconds": secs,
        "concurrency": concurrency,
        "batch": batch,
        "payload_bytes": payload_bytes,
        "body_bytes_per_tx": body_bytes,
        "receipts_verified": verified,
    });
    if a.json {
        println!("{fields}");
    } else {
        println!(
            "{:.0} tx/s  ({} tx in {:.2} s, {} requests of {}, {} clients)",
            committed as f64 / secs,
            committed,
            secs,
            lat.len(),
            batch,
            concurrency
        );
        println!(
            "request latency: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            percentile(&lat, 0.50),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or(0.0)
        );
        println!("errors: {errors}; receipts verified after the run: {verified}");
    }
    if verified == 0 {
        bail!("no receipt from the run could be verified");
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
