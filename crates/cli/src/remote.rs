//! Commands that talk to a node over HTTP: `submit`, `get`, `receipt fetch`
//! and `checkpoint watch`. Every receipt and checkpoint they print or store
//! has been verified by `medledger-client` against the node's vkey.
//!
//! `checkpoint watch` follows one node or every node of a cluster: each
//! round, the checkpoints the nodes serve must all be states of one log
//! (else a split view) that extends the checkpoint stored last (else a
//! fork or rollback).

use crate::receipt;
use anyhow::{Context, Result, bail};
use base64::Engine as _;
use clap::{Args, Subcommand};
use medledger_client::{
    Client, Error as ClientError, Evidence, Inconsistency, SignedCheckpoint, Trust, Verdict,
    VerifiedReceipt,
};
use medledger_formats::checkpoint::Checkpoint;
use medledger_formats::cosignature::{CosignatureVerifier, Cosigner, verify_quorum};
use medledger_formats::note::{Note, NoteVerifier};
use medledger_formats::tx::{Transaction, TxWire};
use medledger_ledger::{now_ms, read_key_file};
use serde_json::{Value, json};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Exit code of `checkpoint watch` when it finds a fork, a rollback or a
/// split view.
pub const EXIT_INCONSISTENT: u8 = 3;

/// `medledger submit`.
#[derive(Args)]
pub struct SubmitArgs {
    /// Node URL, e.g. http://127.0.0.1:7878.
    #[arg(long)]
    url: String,
    /// The author's key file (not needed with --signed).
    #[arg(long, required_unless_present = "signed")]
    key: Option<PathBuf>,
    /// Transaction kind, e.g. medical_report (not needed with --signed).
    #[arg(long, required_unless_present = "signed")]
    kind: Option<String>,
    /// Input: one JSON payload, or many as JSON lines; stdin if absent or `-`.
    file: Option<PathBuf>,
    /// Transactions per request; 1 sends single-transaction bodies.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// The node's verifier key; if absent, the key from /v1/status is
    /// trusted on first use.
    #[arg(long)]
    vkey: Option<String>,
    /// The input is already signed transactions (wire JSON, one a line), as
    /// `medledger sign` or `medledger participant` print; send them as they are.
    #[arg(long, conflicts_with_all = ["key", "kind"])]
    signed: bool,
    /// Directory to write each verified receipt into, as <id>.tlog-proof.
    #[arg(long)]
    receipts: Option<PathBuf>,
}

/// `medledger get`.
#[derive(Args)]
pub struct GetArgs {
    /// Node URL.
    #[arg(long)]
    url: String,
    /// Bearer token (from `medledger token issue`).
    #[arg(long)]
    token: String,
    /// The node's verifier key.
    #[arg(long)]
    vkey: String,
    /// Transaction id (hex).
    id: String,
}

/// Receipt subcommands: the offline ones and `fetch`.
#[derive(Subcommand)]
pub enum ReceiptCommand {
    #[command(flatten)]
    Offline(receipt::ReceiptCommand),
    /// Fetch a transaction's receipt from a node, verify it and write it.
    Fetch {
        /// Node URL.
        #[arg(long)]
        url: String,
        /// Transaction id (hex).
        id: String,
        /// Where to write the .tlog-proof (default: <id>.tlog-proof; `-`: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The node's verifier key; if absent, trusted on first use from /v1/status.
        #[arg(long)]
        vkey: Option<String>,
    },
}

/// Checkpoint subcommands.
#[derive(Subcommand)]
pub enum CheckpointCommand {
    /// Follow the checkpoints of a node, or of every node of a cluster, and
    /// check they agree and each extends the last one seen. Exits 3 with
    /// the evidence on a fork, a rollback or a split view.
    Watch {
        /// Node URL; give one per node of the cluster (or use --url).
        urls: Vec<String>,
        /// Another node's URL; repeat for each.
        #[arg(long = "url")]
        more_urls: Vec<String>,
        /// File holding the last verified checkpoint (signed note); created
        /// on first use.
        #[arg(long)]
        state: PathBuf,
        /// A node's verifier key; repeat for each node. Every checkpoint
        /// must verify with one of them.
        #[arg(long = "vkey", required = true)]
        vkeys: Vec<String>,
        /// Write the evidence of a fork, rollback or split view here (JSON,
        /// replaced atomically).
        #[arg(long)]
        evidence: Option<PathBuf>,
        /// Seconds between checks.
        #[arg(long, default_value_t = 10)]
        interval: u64,
        /// Check once and exit: 0 if consistent.
        #[arg(long)]
        once: bool,
        /// Act as a witness: cosign (C2SP tlog-cosignature, Ed25519) every
        /// checkpoint this watch has verified, with this key file.
        #[arg(long, requires_all = ["cosigner", "cosigned"])]
        cosign_key: Option<PathBuf>,
        /// The witness's name (a schema-less URL), with --cosign-key.
        #[arg(long, requires = "cosign_key")]
        cosigner: Option<String>,
        /// Where the latest verified checkpoint is written with the
        /// witness's cosignature, with --cosign-key.
        #[arg(long, requires = "cosign_key")]
        cosigned: Option<PathBuf>,
    },
    /// Verify a checkpoint's log signature and a quorum of cosignatures.
    /// Exits 0 if they verify, 1 if not.
    Verify {
        /// File holding the cosigned checkpoint (a signed note).
        note: PathBuf,
        /// The log's verifier key.
        #[arg(long)]
        vkey: String,
        /// A trusted cosigner's verifier key (type 0x04); repeat for each.
        #[arg(long = "cosigner")]
        cosigners: Vec<String>,
        /// How many distinct trusted cosigners must have cosigned.
        #[arg(long, default_value_t = 1)]
        quorum: usize,
    },
}

/// A client for `url`: trusting `vkey`, or the node's own key on first use.
pub(crate) fn connect(url: &str, vkey: Option<&str>) -> Result<Client> {
    match vkey {
        Some(v) => Client::from_vkey(url, v).context("--vkey"),
        None => {
            let (client, status) = Client::trust_on_first_use(url)
                .context("reading the node's key from /v1/status")?;
            eprintln!(
                "warning: no --vkey given; trusting the key the node reports (trust on first use): {}",
                status.vkey
            );
            Ok(client)
        }
    }
}

fn receipt_line(n: usize, r: &VerifiedReceipt) -> Value {
    json!({
        "n": n,
        "status": 200,
        "id": hex::encode(r.id),
        "index": r.index,
        "height": r.height,
        "log_size": r.checkpoint.size,
    })
}

/// One JSON line for an item that was not committed with a verified
/// receipt; `Err` for failures of the request as a whole.
fn failure_line(n: usize, e: ClientError) -> Result<Value> {
    match e {
        ClientError::Problem(p) => Ok(json!({
            "n": n, "status": p.status, "code": p.code, "detail": p.detail,
        })),
        ClientError::Verify(v) => Ok(json!({
            "n": n, "error": "verification_failed", "detail": v.to_string(),
        })),
        other => Err(anyhow::Error::new(other)),
    }
}

struct Submitter<'a> {
    client: &'a Client,
    single: bool,
    receipts: Option<&'a Path>,
    failures: u64,
    out: std::io::StdoutLock<'static>,
}

impl Submitter<'_> {
    fn flush(&mut self, pending: &mut Vec<(usize, Transaction)>) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let items: Vec<(usize, Result<VerifiedReceipt, ClientError>)> = if self.single {
            pending
                .iter()
                .map(|(n, tx)| (*n, self.client.submit(tx)))
                .collect()
        } else {
            let txs: Vec<Transaction> = pending.iter().map(|(_, t)| t.clone()).collect();
            let results = self.client.submit_batch(&txs).map_err(|e| match e {
                ClientError::Problem(p) => anyhow::anyhow!("the node refused the batch: {p}"),
                other => anyhow::Error::new(other),
            })?;
            pending.iter().map(|(n, _)| *n).zip(results).collect()
        };
        pending.clear();
        for (n, item) in items {
            let line = match item {
                Ok(r) => {
                    if let Some(dir) = self.receipts {
                        let path = dir.join(format!("{}.tlog-proof", hex::encode(r.id)));
                        std::fs::write(&path, &r.text)
                            .with_context(|| format!("writing {}", path.display()))?;
                    }
                    receipt_line(n, &r)
                }
                Err(e) => {
                    self.failures += 1;
                    failure_line(n, e)?
                }
            };
            writeln!(self.out, "{line}")?;
        }
        self.out.flush()?;
        Ok(())
    }
}

/// `medledger submit`: sign (unless --signed) and send, in batches.
pub fn submit(a: SubmitArgs) -> Result<ExitCode> {
    let key = match &a.key {
        Some(k) if !a.signed => Some(read_key_file(k)?),
        _ => None,
    };
    let kind = a.kind.clone().unwrap_or_default();
    let input: Box<dyn Read> = match &a.file {
        Some(f) if f.as_os_str() != "-" => {
            Box::new(std::fs::File::open(f).with_context(|| format!("opening {}", f.display()))?)
        }
        _ => Box::new(std::io::stdin().lock()),
    };
    if let Some(dir) = &a.receipts {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let client = connect(&a.url, a.vkey.as_deref())?;
    let batch = a.batch.max(1);
    let mut s = Submitter {
        client: &client,
        single: batch == 1,
        receipts: a.receipts.as_deref(),
        failures: 0,
        out: std::io::stdout().lock(),
    };
    // A stream of JSON values: one pretty-printed object or JSON lines.
    let values = serde_json::Deserializer::from_reader(BufReader::new(input)).into_iter::<Value>();
    let mut pending = Vec::with_capacity(batch);
    let mut seen = 0;
    for (i, value) in values.enumerate() {
        let n = i + 1;
        seen = n;
        let value = value.with_context(|| format!("input item {n} is not JSON"))?;
        let tx = match &key {
            Some(key) => Transaction::sign(key, &kind, now_ms(), &value).map_err(|e| e.to_string()),
            None => serde_json::from_value::<TxWire>(value)
                .map_err(|e| e.to_string())
                .and_then(|w| Transaction::from_wire(w).map_err(|e| e.to_string())),
        };
        match tx {
            Ok(tx) => pending.push((n, tx)),
            Err(e) => {
                s.failures += 1;
                writeln!(
                    s.out,
                    "{}",
                    json!({"n": n, "error": "malformed", "detail": e})
                )?;
            }
        }
        if pending.len() >= batch {
            s.flush(&mut pending)?;
        }
    }
    s.flush(&mut pending)?;
    if seen == 0 {
        bail!("the input holds no transaction: nothing was submitted");
    }
    Ok(if s.failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `medledger get`: a transaction and its verified receipt, as JSON.
pub fn get(a: GetArgs) -> Result<ExitCode> {
    let client = Client::from_vkey(&a.url, &a.vkey).context("--vkey")?;
    let id = parse_id(&a.id)?;
    let got = client.transaction(&id, &a.token)?;
    let out = json!({
        "id": hex::encode(got.tx.id()),
        "index": got.receipt.index,
        "height": got.receipt.height,
        "transaction": got.tx.to_wire()?,
        "receipt": got.receipt.text,
        "checkpoint": {
            "origin": got.receipt.checkpoint.origin,
            "size": got.receipt.checkpoint.size,
            "root": hex::encode(got.receipt.checkpoint.root),
        },
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

fn parse_id(id: &str) -> Result<[u8; 32]> {
    let bytes = hex::decode(id.trim()).context("the id must be hex")?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("the id must be 32 bytes (64 hex digits)"))
}

/// `medledger receipt ...`.
pub fn receipt(cmd: ReceiptCommand) -> Result<ExitCode> {
    match cmd {
        ReceiptCommand::Offline(c) => receipt::run(c),
        ReceiptCommand::Fetch { url, id, out, vkey } => {
            let id = parse_id(&id)?;
            let client = connect(&url, vkey.as_deref())?;
            let r = client.receipt(&id)?;
            let summary = format!(
                "verified: transaction {} is entry {} of {} at size {}",
                hex::encode(r.id),
                r.index,
                r.checkpoint.origin,
                r.checkpoint.size
            );
            match out {
                Some(p) if p.as_os_str() == "-" => {
                    print!("{}", r.text);
                    eprintln!("{summary}");
                }
                other => {
                    let path = other.unwrap_or_else(|| {
                        PathBuf::from(format!("{}.tlog-proof", hex::encode(r.id)))
                    });
                    std::fs::write(&path, &r.text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    println!("{summary}; wrote {}", path.display());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Replaces `path` with `text` atomically: temp file, fsync, rename, fsync dir.
pub(crate) fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{} must name a file", path.display()))?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("renaming onto {}", path.display()))?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

/// Writes `note` (a checkpoint this witness verified) to `out` with the
/// witness's cosignature added.
fn cosign(cosigner: &Cosigner, out: &Path, note: &str) -> Result<()> {
    let mut note = Note::parse(note)?;
    let now = now_ms() / 1000;
    note.sigs.push(cosigner.cosign(&note, now)?);
    write_atomic(out, &note.render())
}

/// `medledger checkpoint verify`.
fn verify_cosigned(
    note: &Path,
    vkey: &str,
    cosigners: &[String],
    quorum: usize,
) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(note).with_context(|| format!("reading {}", note.display()))?;
    let verifier = NoteVerifier::parse(vkey).context("--vkey")?;
    let cosigners = cosigners
        .iter()
        .map(|c| CosignatureVerifier::parse(c).with_context(|| format!("--cosigner {c}")))
        .collect::<Result<Vec<_>>>()?;
    let parsed = Note::parse(&text)?;
    let outcome = Checkpoint::verify_note(&parsed, None, std::slice::from_ref(&verifier))
        .map_err(anyhow::Error::from)
        .and_then(|cp| Ok((cp, verify_quorum(&parsed, &cosigners, quorum)?)));
    match outcome {
        Ok((cp, ok)) => {
            let by: Vec<Value> = ok
                .iter()
                .map(|(c, t)| json!({"cosigner": c.name(), "time": t}))
                .collect();
            println!(
                "{}",
                json!({"status": "verified", "origin": cp.origin, "size": cp.size,
                    "root": hex::encode(cp.root), "cosignatures": by})
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(1))
        }
    }
}

/// One watched node.
struct Watched {
    url: String,
    client: Client,
}

/// What one watch round found.
enum Round {
    /// The nodes agree and extend the stored checkpoint (or it was just
    /// trusted); the line to print.
    Ok(Value),
    /// Two nodes serve checkpoints that cannot both be states of one log:
    /// the evidence (one entry per conflicting pair).
    SplitView(Vec<Value>),
    /// The largest checkpoint served does not extend the stored one, and
    /// the node serving it.
    Inconsistent(Box<Evidence>, String),
}

/// A checkpoint and where it came from, for evidence.
fn checkpoint_json(source: Value, cp: &SignedCheckpoint) -> Value {
    let mut v = source;
    v["size"] = json!(cp.checkpoint.size);
    v["root"] = json!(hex::encode(cp.checkpoint.root));
    v["note"] = json!(cp.note);
    v
}

/// One conflict of the evidence: both signed checkpoints with their
/// sources, the check that failed, and the consistency proof `prover` gave
/// (or the sizes it was asked for), if one was needed.
fn conflict_json(ev: &Evidence, old: Value, new: Value, prover: &str) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    json!({
        "failed": ev.failed,
        "checkpoints": [checkpoint_json(old, &ev.old), checkpoint_json(new, &ev.new)],
        "proof": ev.proof.as_ref().map(|p| json!({
            "from": p.from,
            "to": p.to,
            "by": prover,
            "hashes": p.proof.iter().map(|h| b64.encode(h)).collect::<Vec<_>>(),
        })),
        "asked": ev.asked.map(|(from, to)| json!({"from": from, "to": to, "by": prover})),
    })
}

/// The evidence file: what was found, for which log, when, and the conflicts.
fn evidence_json(kind: &str, origin: &str, conflicts: Vec<Value>) -> Value {
    json!({
        "kind": kind,
        "origin": origin,
        "time": now_ms() / 1000,
        "conflicts": conflicts,
    })
}

/// One round: fetch every node's checkpoint, compare them with the largest,
/// then check the largest against the stored one. A node that does not
/// answer (or serves a checkpoint no trusted key signed) is reported and
/// skipped; the round fails only if none answers.
fn watch_round(
    nodes: &[Watched],
    state: &Path,
    trusted: &mut Option<SignedCheckpoint>,
) -> Result<Round> {
    let mut seen: Vec<(&Watched, SignedCheckpoint)> = Vec::new();
    let mut listed = Vec::new();
    let mut failure = None;
    for node in nodes {
        match node.client.checkpoint() {
            Ok(cp) => {
                listed.push(json!({
                    "url": node.url,
                    "size": cp.checkpoint.size,
                    "root": hex::encode(cp.checkpoint.root),
                }));
                seen.push((node, cp));
            }
            Err(e) => {
                if nodes.len() > 1 {
                    eprintln!("warning: {}: {e}; skipped this round", node.url);
                }
                listed.push(json!({"url": node.url, "error": e.to_string()}));
                failure = Some(e);
            }
        }
    }
    let Some(head_at) =
        (0..seen.len()).max_by_key(|&i| (seen[i].1.checkpoint.size, usize::MAX - i))
    else {
        return Err(match failure {
            Some(e) if nodes.len() == 1 => e.into(),
            Some(e) => anyhow::Error::new(e).context("no node answered"),
            None => anyhow::anyhow!("no node to watch"),
        });
    };
    let (head_node, head) = (seen[head_at].0, seen[head_at].1.clone());

    // Every other checkpoint must be the head's or a prefix of it, proven by
    // the node serving the head.
    let mut conflicts = Vec::new();
    for (i, (node, cp)) in seen.iter().enumerate() {
        if i == head_at {
            continue;
        }
        match head_node.client.compare(cp, &head) {
            Ok(Verdict::Unchanged | Verdict::Extends(_)) => {}
            Ok(Verdict::Inconsistent(ev)) => {
                eprintln!(
                    "error: SPLIT VIEW: {} serves size {} and {} serves size {}: {}",
                    node.url, cp.checkpoint.size, head_node.url, head.checkpoint.size, ev.failed
                );
                conflicts.push(conflict_json(
                    &ev,
                    json!({"url": node.url}),
                    json!({"url": head_node.url}),
                    &head_node.url,
                ));
            }
            Err(e) => eprintln!(
                "warning: cannot compare {} with {}: {e}; skipped this round",
                node.url, head_node.url
            ),
        }
    }
    if !conflicts.is_empty() {
        return Ok(Round::SplitView(conflicts));
    }

    let with_nodes = |mut line: Value| {
        if nodes.len() > 1 {
            line["nodes"] = Value::Array(listed.clone());
        }
        line
    };
    let Some(old) = trusted.as_ref() else {
        write_atomic(state, &head.note)?;
        eprintln!(
            "note: {} held no checkpoint; trusting {}'s current one (size {})",
            state.display(),
            head_node.url,
            head.checkpoint.size
        );
        let line = with_nodes(json!({
            "status": "trusted_first",
            "size": head.checkpoint.size,
            "root": hex::encode(head.checkpoint.root),
        }));
        *trusted = Some(head);
        return Ok(Round::Ok(line));
    };
    if head.checkpoint.size < old.checkpoint.size && seen.len() < nodes.len() {
        // A node that did not answer may hold the stored size: only when
        // every node is behind it has the log shrunk.
        eprintln!(
            "warning: the nodes that answered serve at most size {}, the stored checkpoint has {}; checking again next round",
            head.checkpoint.size, old.checkpoint.size
        );
        return Ok(Round::Ok(with_nodes(json!({
            "status": "deferred",
            "size": old.checkpoint.size,
            "root": hex::encode(old.checkpoint.root),
        }))));
    }
    match head_node.client.compare(old, &head)? {
        Verdict::Unchanged => Ok(Round::Ok(with_nodes(json!({
            "status": "unchanged",
            "size": head.checkpoint.size,
            "root": hex::encode(head.checkpoint.root),
        })))),
        Verdict::Extends(p) => {
            write_atomic(state, &head.note)?;
            let line = with_nodes(json!({
                "status": "consistent",
                "from": p.from,
                "to": p.to,
                "root": hex::encode(head.checkpoint.root),
            }));
            *trusted = Some(head);
            Ok(Round::Ok(line))
        }
        Verdict::Inconsistent(ev) => Ok(Round::Inconsistent(ev, head_node.url.clone())),
    }
}

/// The trust of `checkpoint watch`: every vkey must be named after the same
/// origin, because a checkpoint is signed under its origin's name.
fn watch_trust(vkeys: &[String]) -> Result<Trust> {
    let verifiers = vkeys
        .iter()
        .map(|k| NoteVerifier::parse(k.trim()).with_context(|| format!("--vkey {k}")))
        .collect::<Result<Vec<_>>>()?;
    let origin = verifiers
        .first()
        .map(|v| v.name().to_owned())
        .context("--vkey is required")?;
    if let Some(other) = verifiers.iter().find(|v| v.name() != origin) {
        bail!(
            "every --vkey must be named after the ledger's origin: {origin:?} and {:?} differ",
            other.name()
        );
    }
    Ok(Trust::new(origin, verifiers))
}

/// Settings of `checkpoint watch`.
struct WatchArgs {
    urls: Vec<String>,
    state: PathBuf,
    vkeys: Vec<String>,
    evidence: Option<PathBuf>,
    interval: u64,
    once: bool,
    witness: Option<(Cosigner, PathBuf)>,
}

/// `medledger checkpoint ...`.
pub fn checkpoint(cmd: CheckpointCommand) -> Result<ExitCode> {
    match cmd {
        CheckpointCommand::Verify {
            note,
            vkey,
            cosigners,
            quorum,
        } => verify_cosigned(&note, &vkey, &cosigners, quorum),
        CheckpointCommand::Watch {
            urls,
            more_urls,
            state,
            vkeys,
            evidence,
            interval,
            once,
            cosign_key,
            cosigner,
            cosigned,
        } => {
            let witness = match (cosign_key, cosigner, cosigned) {
                (Some(key), Some(name), Some(out)) => {
                    let c = Cosigner::new(&name, read_key_file(&key)?)
                        .context("--cosigner and --cosign-key")?;
                    eprintln!("cosigner vkey: {}", c.verifier().to_vkey());
                    Some((c, out))
                }
                _ => None,
            };
            watch(WatchArgs {
                urls: urls.into_iter().chain(more_urls).collect(),
                state,
                vkeys,
                evidence,
                interval,
                once,
                witness,
            })
        }
    }
}

/// `medledger checkpoint watch`.
fn watch(a: WatchArgs) -> Result<ExitCode> {
    if a.urls.is_empty() {
        bail!("give at least one node URL");
    }
    let trust = watch_trust(&a.vkeys)?;
    let nodes = a
        .urls
        .iter()
        .map(|url| {
            Ok(Watched {
                url: url.clone(),
                client: Client::new(url, trust.clone()).with_context(|| format!("node {url}"))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let state = &a.state;
    let mut trusted = match std::fs::read_to_string(state) {
        Ok(note) => Some(trust.checkpoint(&note).with_context(|| {
            format!(
                "{} does not hold a checkpoint signed by a --vkey key",
                state.display()
            )
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => bail!("reading {}: {e}", state.display()),
    };
    let write_evidence = |evidence: &Value| -> Result<()> {
        if let Some(path) = &a.evidence {
            write_atomic(path, &format!("{evidence:#}\n"))?;
            eprintln!("evidence written to {}", path.display());
        }
        Ok(())
    };
    loop {
        match watch_round(&nodes, state, &mut trusted) {
            Ok(Round::Ok(line)) => {
                if let (Some((cosigner, out)), Some(cp)) = (&a.witness, &trusted) {
                    cosign(cosigner, out, &cp.note)?;
                }
                println!("{line}");
            }
            Ok(Round::SplitView(conflicts)) => {
                let evidence = evidence_json("split_view", trust.origin(), conflicts);
                println!("{evidence}");
                let _ = std::io::stdout().flush();
                write_evidence(&evidence)?;
                eprintln!(
                    "error: SPLIT VIEW: the nodes serve checkpoints of different logs; {} kept unchanged",
                    state.display()
                );
                return Ok(ExitCode::from(EXIT_INCONSISTENT));
            }
            Ok(Round::Inconsistent(ev, url)) => {
                print!("{ev}");
                let _ = std::io::stdout().flush();
                let kind = match ev.kind {
                    Inconsistency::Fork => "fork",
                    Inconsistency::Rollback => "rollback",
                };
                let conflict = conflict_json(
                    &ev,
                    json!({"state": state.display().to_string()}),
                    json!({"url": url}),
                    &url,
                );
                write_evidence(&evidence_json(kind, trust.origin(), vec![conflict]))?;
                eprintln!(
                    "error: {} on {url}: {}; {} kept unchanged",
                    ev.kind,
                    ev.failed,
                    state.display()
                );
                return Ok(ExitCode::from(EXIT_INCONSISTENT));
            }
            Err(e) if a.once => return Err(e),
            Err(e) => eprintln!("warning: check failed, retrying: {e:#}"),
        }
        if a.once {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_secs(a.interval.max(1)));
    }
}
