//! `medledger patient`: what a patient runs on their own machine.
//!
//! `patient access-log` reads who read the patient's records, when and why,
//! and trusts none of it until it verifies: every entry's receipt must lead
//! to one checkpoint signed by the ledger's key, every entry's payload must
//! open its proven header's commitment, and that checkpoint must be
//! consistent with the last one this patient saw (kept in `--state`), so a
//! node cannot quietly drop an entry it showed before.

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
