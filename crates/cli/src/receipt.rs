//! `medledger receipt`: offline receipt verification.
//!
//! A medledger receipt is a C2SP tlog-proof whose `extra` line carries the
//! leaf preimage, `JCS(tx header) || signature`, so the receipt alone shows
//! what was logged and by whom, and its leaf hash is bound by the proof.

use anyhow::{Context, Result};
use clap::Subcommand;
use medledger_formats::merkle;
use medledger_formats::note::NoteVerifier;
use medledger_formats::receipt::TlogProof;
use medledger_formats::tx::TxHeader;
use std::path::PathBuf;
use std::process::ExitCode;

/// Receipt subcommands.
#[derive(Subcommand)]
pub enum ReceiptCommand {
    /// Verify a receipt offline against trusted node keys.
    Verify {
        /// The .tlog-proof file.
        file: PathBuf,
        /// Trusted node verifier key (name+id+key); repeat for several.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
        /// Require this origin.
        #[arg(long)]
        origin: Option<String>,
        /// Require this transaction id (hex).
        #[arg(long)]
        id: Option<String>,
    },
}

/// Runs a receipt subcommand.
pub fn run(cmd: ReceiptCommand) -> Result<ExitCode> {
    match cmd {
        ReceiptCommand::Verify {
            file,
            keys,
            origin,
            id,
        } => {
            let verifiers = keys
                .iter()
                .map(|k| NoteVerifier::parse(k).with_context(|| format!("verifier key {k:?}")))
                .collect::<Result<Vec<_>>>()?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            match verify(&text, &verifiers, origin.as_deref(), id.as_deref()) {
                Ok(summary) => {
                    println!("{summary}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("receipt INVALID: {e:#}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

fn verify(
    text: &str,
    verifiers: &[NoteVerifier],
    origin: Option<&str>,
    want_id: Option<&str>,
) -> Result<String> {
    let proof = TlogProof::parse(text)?;
    let extra = proof
        .extra
        .as_deref()
        .context("receipt has no extra line with the transaction header")?;
    if extra.len() <= 64 {
        anyhow::bail!("extra line is too short to hold a header and signature");
    }
    let (header_jcs, sig) = extra.split_at(extra.len() - 64);
    let leaf = merkle::leaf_hash(extra);
    let id = hex::encode(leaf);
    if let Some(want) = want_id.filter(|w| *w != id) {
        anyhow::bail!("receipt is for transaction {id}, not {want}");
    }
    let checkpoint = proof.verify(&leaf, origin, verifiers)?;
    let header: TxHeader = serde_json::from_slice(header_jcs)
        .context("extra line does not hold a transaction header")?;
    let mut message = medledger_formats::canon::TX_TAG.to_vec();
    message.extend_from_slice(header_jcs);
    let key = medledger_formats::keys::verifying_key(&header.author)?;
    let mut s = [0u8; 64];
    s.copy_from_slice(sig);
    key.verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&s))
        .context("the author's signature over the header does not verify")?;
    Ok(format!(
        "ok: transaction {id} ({kind} by {author}, time {time}) is entry {index} of {origin} at size {size}, root {root}",
        kind = header.kind,
        author = header.author,
        time = header.time,
        index = proof.index,
        origin = checkpoint.origin,
        size = checkpoint.size,
        root = hex::encode(checkpoint.root),
    ))
}
