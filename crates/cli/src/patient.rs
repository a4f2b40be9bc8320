//! `medledger patient`: what a patient runs on their own machine.
//!
//! `patient access-log` reads who read the patient's records, when and why,
//! and trusts none of it until it verifies: every entry's receipt must lead
//! to one checkpoint signed by the ledger's key, every entry's payload must
//! open its proven header's commitment, and that checkpoint must be
//! consistent with the last one this patient saw (kept in `--state`), so a
//! node cannot quietly drop an entry it showed before.
//!
//! `patient erasure-receipt get` fetches the proof that a record about the
//! patient was erased, and `patient erasure-receipt verify` checks it
//! offline (docs/ERASURE.md, "The erasure receipt").

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use medledger_client::{AccessLog, Client, Trust, Verdict, VerifiedRecord};
use medledger_ledger::{kind, read_key_file};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code when the node's history contradicts the last checkpoint seen.
const EXIT_INCONSISTENT: u8 = 3;

#[derive(Subcommand)]
pub enum PatientCommand {
    /// Who read my records, when and why: every access entry (and each
    /// break-glass review), each proven in the ledger.
    AccessLog(AccessLogArgs),
    /// Proof that a record about me was erased: the redaction, proven in
    /// the log, and the erased record's unchanged header, proven too.
    #[command(subcommand)]
    ErasureReceipt(ErasureCommand),
}

/// `patient erasure-receipt` subcommands.
#[derive(Subcommand)]
pub enum ErasureCommand {
    /// Fetch the erasure receipt of a redacted record, verify it, and write
    /// it to --out.
    Get(ErasureGetArgs),
    /// Verify an erasure receipt offline.
    Verify(ErasureVerifyArgs),
}

#[derive(Args)]
pub struct ErasureGetArgs {
    /// The node's base URL.
    #[arg(long)]
    url: String,
    /// The patient's pseudonym.
    #[arg(long)]
    patient: String,
    /// The id (hex) of the erased record.
    #[arg(long)]
    record: String,
    /// The patient's key file: a token is obtained with it.
    #[arg(long, required_unless_present = "token", conflicts_with = "token")]
    key: Option<PathBuf>,
    /// A bearer token instead of --key.
    #[arg(long)]
    token: Option<String>,
    /// The ledger's verifier key.
    #[arg(long)]
    vkey: String,
    /// Where to write the erasure receipt (JSON).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
pub struct ErasureVerifyArgs {
    /// The erasure receipt file.
    file: PathBuf,
    /// A trusted key; repeat for several. The ledger's verifier key (type
    /// 0x01) is required; cosigner keys (type 0x04) count towards --quorum.
    #[arg(long = "key", required = true)]
    keys: Vec<String>,
    /// Require cosignatures of at least this many distinct trusted
    /// cosigners on every proof (default 1 when any cosigner key is given).
    #[arg(long)]
    quorum: Option<usize>,
}

/// Format version of an erasure receipt file.
const ERASURE_RECEIPT_VERSION: u32 = 1;

/// An erasure receipt: the redaction transaction whole (its payload names
/// what was erased and why) with its receipt, and the receipt of every
/// transaction it erased. Receipts carry the checkpoint with whatever
/// cosignatures the node gathered.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ErasureReceipt {
    v: u32,
    patient: String,
    redaction: ProvenTx,
    erased: Vec<ProvenId>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvenTx {
    transaction: medledger_formats::tx::TxWire,
    receipt: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvenId {
    id: String,
    receipt: String,
}

#[derive(Args)]
pub struct AccessLogArgs {
    /// The node's base URL.
    #[arg(long)]
    url: String,
    /// The patient's pseudonym.
    #[arg(long)]
    patient: String,
    /// The patient's key file: a token is obtained with it
    /// (`POST /v1/token`).
    #[arg(long, required_unless_present = "token", conflicts_with = "token")]
    key: Option<PathBuf>,
    /// A bearer token instead of --key.
    #[arg(long)]
    token: Option<String>,
    /// The ledger's verifier key (from `medledger info` or the operator).
    /// Without it, the key the node announces is trusted on first use and
    /// pinned in --state.
    #[arg(long)]
    vkey: Option<String>,
    /// File keeping the last checkpoint seen (and the key it verified
    /// with); created on first use. Each run checks the new checkpoint is
    /// consistent with it.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Print the entries as JSON lines instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: PatientCommand) -> Result<ExitCode> {
    match cmd {
        PatientCommand::AccessLog(a) => access_log(a),
        PatientCommand::ErasureReceipt(ErasureCommand::Get(a)) => erasure_get(a),
        PatientCommand::ErasureReceipt(ErasureCommand::Verify(a)) => erasure_verify(a),
    }
}

/// What `--state` keeps.
#[derive(serde::Serialize, serde::Deserialize)]
struct State {
    vkey: String,
    checkpoint: String,
}

fn access_log(a: AccessLogArgs) -> Result<ExitCode> {
    let saved: Option<State> = match &a.state {
        Some(p) if p.exists() => Some(
            serde_json::from_str(
                &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            )
            .with_context(|| format!("{} is not a patient state file", p.display()))?,
        ),
        _ => None,
    };
    let vkey = match (&a.vkey, &saved) {
        (Some(v), Some(s)) if v.trim() != s.vkey => {
            bail!("--vkey differs from the key pinned in the state file")
        }
        (Some(v), _) => v.trim().to_owned(),
        (None, Some(s)) => s.vkey.clone(),
        (None, None) => {
            let (_, status) = Client::trust_on_first_use(&a.url)
                .with_context(|| format!("reading {}/v1/status", a.url))?;
            eprintln!(
                "trusting the key the node announces, on first use: {}",
                status.vkey
            );
            status.vkey
        }
    };
    let trust = Trust::from_vkey(&vkey).context("--vkey")?;
    let client = Client::new(&a.url, trust.clone())?;
    let token = match (&a.token, &a.key) {
        (Some(t), _) => t.clone(),
        (None, Some(k)) => {
            crate::request_token(&read_key_file(k)?, &a.url, Some("purpose/PATRQT"), None)?
        }
        (None, None) => bail!("give --key or --token"),
    };
    let log = client
        .access_log(&a.patient, &token)
        .context("the access log does not verify")?;
    let mut consistent = "first checkpoint seen".to_owned();
    if let Some(s) = &saved {
        let old = trust
            .checkpoint(&s.checkpoint)
            .context("the checkpoint in the state file")?;
        match client.compare(&old, &log.checkpoint)? {
            Verdict::Unchanged => consistent = "the same as the last one seen".into(),
            Verdict::Extends(_) => {
                consistent = format!(
                    "consistent with the last one seen (size {})",
                    old.checkpoint.size
                )
            }
            Verdict::Inconsistent(ev) => {
                eprintln!(
                    "error: the ledger's history contradicts the last checkpoint seen: {}",
                    ev.failed
                );
                return Ok(ExitCode::from(EXIT_INCONSISTENT));
            }
        }
    }
    print(&log, a.json)?;
    let cp = &log.checkpoint.checkpoint;
    eprintln!(
        "{} entries, each proven in {} size {} (root {}), {consistent}",
        log.entries.len(),
        cp.origin,
        cp.size,
        hex::encode(cp.root)
    );
    if let Some(p) = &a.state {
        let state = State {
            vkey,
            checkpoint: log.checkpoint.note.clone(),
        };
        crate::remote::write_atomic(p, &serde_json::to_string_pretty(&state)?)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print(log: &AccessLog, json: bool) -> Result<()> {
    for e in &log.entries {
        let line = describe(e);
        if json {
            println!("{}", serde_json::to_string(&line)?);
        } else {
            println!("{}", text(&line));
        }
    }
    Ok(())
}

/// One entry as the patient sees it.
fn describe(e: &VerifiedRecord) -> Value {
    let p = &e.payload;
    let base = serde_json::json!({
        "id": hex::encode(e.receipt.id),
        "index": e.receipt.index,
        "kind": e.header.kind,
        "signed_by": e.header.author.to_hex(),
    });
    let mut v = base;
    if e.header.kind == kind::ACCESS_REVIEW {
        v["review_of"] = p["entry"].clone();
        v["outcome"] = p["outcome"].clone();
        v["reason"] = p["reason"].clone();
        return v;
    }
    let ext = |url: &str| {
        p["extension"]
            .as_array()
            .and_then(|xs| xs.iter().find(|x| x["url"] == url))
            .cloned()
            .unwrap_or(Value::Null)
    };
    v["recorded"] = p["recorded"].clone();
    v["reader"] = p["agent"][0]["who"]["reference"].clone();
    v["role"] = p["agent"][0]["role"][0]["coding"][0]["code"].clone();
    v["purpose"] = p["purposeOfEvent"][0]["coding"][0]["code"].clone();
    v["decision"] = ext("urn:medledger:access-decision")["valueCode"].clone();
    v["returned"] = ext("urn:medledger:records-returned")["valueUnsignedInt"].clone();
    v["withheld"] = ext("urn:medledger:records-withheld")["valueUnsignedInt"].clone();
    v["break_glass_reason"] = ext("urn:medledger:break-glass-reason")["valueString"].clone();
    v["query"] = p["entity"]
        .as_array()
        .and_then(|xs| xs.iter().find_map(|x| x["description"].as_str()))
        .map_or(Value::Null, Value::from);
    v
}

fn text(v: &Value) -> String {
    let s = |k: &str| match &v[k] {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    if v["kind"] == kind::ACCESS_REVIEW {
        return format!(
            "review    of {}: {} ({}), by the data-protection officer (leaf {})",
            s("review_of"),
            s("outcome"),
            s("reason"),
            s("index")
        );
    }
    let mut line = format!(
        "{}  {} {} read for {}: {} (returned {}, withheld {})",
        s("recorded"),
        s("role"),
        s("reader"),
        s("purpose"),
        s("decision"),
        s("returned"),
        s("withheld")
    );
    if v["query"].is_string() {
        line.push_str(&format!(", query {}", s("query")));
    }
    if v["break_glass_reason"].is_string() {
        line.push_str(&format!(", BREAK-GLASS: {}", s("break_glass_reason")));
    }
    line.push_str(&format!(" (leaf {})", s("index")));
    line
}

fn hash_of(hex_id: &str) -> Result<medledger_formats::merkle::Hash> {
    let bytes = hex::decode(hex_id).with_context(|| format!("{hex_id:?} is not hex"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("{hex_id:?} is not a transaction id (64 hex digits)"))
}

fn erasure_get(a: ErasureGetArgs) -> Result<ExitCode> {
    let trust = Trust::from_vkey(&a.vkey).context("--vkey")?;
    let client = Client::new(&a.url, trust)?;
    let token = match (&a.token, &a.key) {
        (Some(t), _) => t.clone(),
        (None, Some(k)) => {
            crate::request_token(&read_key_file(k)?, &a.url, Some("purpose/PATRQT"), None)?
        }
        (None, None) => bail!("give --key or --token"),
    };
    let record = hash_of(&a.record)?;
    // The node names the redaction in the 410 it answers for the record.
    let redaction_id = match client.transaction(&record, &token) {
        Ok(_) => bail!("record {} is not redacted: the node returns it", a.record),
        Err(e) => match e.problem().and_then(|p| p.redaction.as_ref()) {
            Some(r) => r["id"]
                .as_str()
                .context("the node's 410 names no redaction id")?
                .to_owned(),
            None => return Err(anyhow::Error::new(e).context(format!("reading {}", a.record))),
        },
    };
    let redaction = client
        .transaction(&hash_of(&redaction_id)?, &token)
        .context("reading the redaction")?;
    let targets = medledger_health::redaction::redaction(redaction.tx.payload_jcs())
        .map_err(|e| anyhow::anyhow!("the redaction's payload: {e}"))?
        .targets;
    let redaction_receipt = client
        .receipt_cosigned(redaction.tx.id())
        .context("the redaction's receipt")?;
    let mut erased = Vec::new();
    for t in &targets {
        let r = client
            .receipt_cosigned(&hash_of(t)?)
            .with_context(|| format!("the receipt of {t}"))?;
        erased.push(ProvenId {
            id: t.clone(),
            receipt: r.text,
        });
    }
    let receipt = ErasureReceipt {
        v: ERASURE_RECEIPT_VERSION,
        patient: a.patient.clone(),
        redaction: ProvenTx {
            transaction: redaction.tx.to_wire()?,
            receipt: redaction_receipt.text,
        },
        erased,
    };
    let trusted = crate::receipt::Trusted::parse(std::slice::from_ref(&a.vkey), None)?;
    let summary =
        check_erasure(&receipt, &trusted).context("the erasure receipt does not verify")?;
    if !receipt.erased.iter().any(|e| e.id == a.record) {
        bail!("the redaction the node names does not erase {}", a.record);
    }
    crate::remote::write_atomic(&a.out, &serde_json::to_string_pretty(&receipt)?)?;
    println!("{summary}");
    eprintln!("wrote {}", a.out.display());
    Ok(ExitCode::SUCCESS)
}

fn erasure_verify(a: ErasureVerifyArgs) -> Result<ExitCode> {
    let trusted = crate::receipt::Trusted::parse(&a.keys, a.quorum)?;
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    let checked = serde_json::from_str::<ErasureReceipt>(&text)
        .map_err(|e| anyhow::anyhow!("not an erasure receipt: {e}"))
        .and_then(|r| check_erasure(&r, &trusted));
    match checked {
        Ok(summary) => {
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("erasure receipt INVALID: {e:#}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Checks an erasure receipt against the trusted keys alone: the
/// redaction's payload opens its proven header's commitment and names this
/// patient and exactly the transactions whose receipts follow; each of
/// those is proven in the same log, with its author's signature over its
/// unchanged header, at an entry before the redaction's. Returns a summary.
fn check_erasure(r: &ErasureReceipt, trusted: &crate::receipt::Trusted) -> Result<String> {
    use crate::receipt::check;
    if r.v != ERASURE_RECEIPT_VERSION {
        bail!("version {} is not {ERASURE_RECEIPT_VERSION}", r.v);
    }
    let tx = medledger_formats::tx::Transaction::from_wire(r.redaction.transaction.clone())
        .context("the redaction transaction")?;
    let id = hex::encode(tx.id());
    // The receipt's leaf is the header the author signed, and the header
    // commits to this payload: `from_wire` checked the commitment.
    let red =
        check(&r.redaction.receipt, trusted, None, Some(&id)).context("the redaction's receipt")?;
    if red.header.kind != kind::REDACTION {
        bail!("transaction {id} is a {}, not a redaction", red.header.kind);
    }
    let payload = medledger_health::redaction::redaction(tx.payload_jcs())
        .map_err(|e| anyhow::anyhow!("the redaction's payload: {e}"))?;
    if payload.patient.as_deref() != Some(r.patient.as_str()) {
        bail!("the redaction is not about patient {}", r.patient);
    }
    let mut named: Vec<&str> = payload.targets.iter().map(String::as_str).collect();
    let mut given: Vec<&str> = r.erased.iter().map(|e| e.id.as_str()).collect();
    named.sort_unstable();
    given.sort_unstable();
    if named != given {
        bail!("the receipt's records are not exactly the ones the redaction erases");
    }
    let origin = red.checkpoint.origin.clone();
    let mut lines = Vec::new();
    for e in &r.erased {
        let p = check(&e.receipt, trusted, Some(&origin), Some(&e.id))
            .with_context(|| format!("the receipt of {}", e.id))?;
        if p.index >= red.index {
            bail!(
                "{} (entry {}) does not precede its redaction (entry {})",
                e.id,
                p.index,
                red.index
            );
        }
        lines.push(format!(
            "  erased: {} ({} by {}, time {}), entry {}, header unchanged and proven at size {}",
            e.id, p.header.kind, p.header.author, p.header.time, p.index, p.checkpoint.size
        ));
    }
    let cosigned = if red.cosigners.is_empty() {
        String::new()
    } else {
        format!("; cosigned by {}", red.cosigners.join(", "))
    };
    Ok(format!(
        "ok: erasure receipt for patient {patient}: redaction {id} ({basis}, {reason}) by {author} at time {time} is entry {index} of {origin} at size {size}, root {root}{cosigned}\n{lines}",
        patient = r.patient,
        basis = serde_json::to_value(payload.basis)?
            .as_str()
            .unwrap_or_default(),
        reason = serde_json::to_value(payload.reason)?
            .as_str()
            .unwrap_or_default(),
        author = red.header.author,
        time = red.header.time,
        index = red.index,
        size = red.checkpoint.size,
        root = hex::encode(red.checkpoint.root),
        lines = lines.join("\n"),
    ))
}
