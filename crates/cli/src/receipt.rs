//! `medledger receipt`: offline receipt verification.
//!
//! A medledger receipt is a C2SP tlog-proof whose `extra` line carries the
//! leaf preimage, `JCS(tx header) || signature`, so the receipt alone shows
//! what was logged and by whom, and its leaf hash is bound by the proof.
//! Its checkpoint may also carry C2SP tlog-cosignatures, of which
//! `--quorum K` requires K from distinct trusted cosigners.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use medledger_formats::cosignature::{
    CosignatureVerifier, SIG_TYPE_COSIGNATURE_ED25519, verify_quorum,
};
use medledger_formats::merkle;
use medledger_formats::note::{NoteError, NoteVerifier};
use medledger_formats::receipt::TlogProof;
use medledger_formats::tx::TxHeader;
use std::path::PathBuf;
use std::process::ExitCode;

/// Receipt subcommands.
#[derive(Subcommand)]
pub enum ReceiptCommand {
    /// Verify a receipt offline against trusted node keys and, with
    /// --quorum, trusted cosigners.
    Verify {
        /// The .tlog-proof file.
        file: PathBuf,
        /// A trusted key (name+id+key); repeat for several. Node verifier
        /// keys (type 0x01) vouch for the log's signature; cosigner keys
        /// (type 0x04) count towards --quorum.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
        /// Require this origin.
        #[arg(long)]
        origin: Option<String>,
        /// Require this transaction id (hex).
        #[arg(long)]
        id: Option<String>,
        /// Require valid cosignatures from at least this many distinct
        /// cosigners among the cosigner keys (default 1 when any is given).
        #[arg(long)]
        quorum: Option<usize>,
    },
}

/// The keys a receipt is checked against.
struct Trusted {
    /// Node keys: the checkpoint must be signed by one of them.
    log: Vec<NoteVerifier>,
    /// Cosigner keys.
    cosigners: Vec<CosignatureVerifier>,
    /// Distinct cosigners that must have cosigned.
    quorum: usize,
}

impl Trusted {
    /// Sorts `--key` values by type and checks that `--quorum` can be met.
    fn parse(keys: &[String], quorum: Option<usize>) -> Result<Self> {
        let mut log = Vec::new();
        let mut cosigners: Vec<CosignatureVerifier> = Vec::new();
        for k in keys {
            match NoteVerifier::parse(k) {
                Ok(v) => log.push(v),
                Err(NoteError::UnsupportedKeyType(SIG_TYPE_COSIGNATURE_ED25519)) => cosigners.push(
                    CosignatureVerifier::parse(k).with_context(|| format!("cosigner key {k:?}"))?,
                ),
                Err(e) => return Err(anyhow::Error::new(e).context(format!("verifier key {k:?}"))),
            }
        }
        if log.is_empty() {
            bail!(
                "no node verifier key (type 0x01) among --key: the log's signature cannot be checked"
            );
        }
        let distinct = {
            let mut vkeys: Vec<String> = cosigners.iter().map(|c| c.to_vkey()).collect();
            vkeys.sort();
            vkeys.dedup();
            vkeys.len()
        };
        let quorum = quorum.unwrap_or(usize::from(distinct > 0));
        if quorum > distinct {
            bail!(
                "--quorum {quorum} cannot be met: {distinct} distinct cosigner keys (type 0x04) among --key"
            );
        }
        Ok(Trusted {
            log,
            cosigners,
            quorum,
        })
    }
}

/// Runs a receipt subcommand.
pub fn run(cmd: ReceiptCommand) -> Result<ExitCode> {
    match cmd {
        ReceiptCommand::Verify {
            file,
            keys,
            origin,
            id,
            quorum,
        } => {
            let trusted = Trusted::parse(&keys, quorum)?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            match verify(&text, &trusted, origin.as_deref(), id.as_deref()) {
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
    trusted: &Trusted,
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
    let checkpoint = proof.verify(&leaf, origin, &trusted.log)?;
    let header: TxHeader = serde_json::from_slice(header_jcs)
        .context("extra line does not hold a transaction header")?;
    let mut message = medledger_formats::canon::TX_TAG.to_vec();
    message.extend_from_slice(header_jcs);
    let key = medledger_formats::keys::verifying_key(&header.author)?;
    let mut s = [0u8; 64];
    s.copy_from_slice(sig);
    key.verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&s))
        .context("the author's signature over the header does not verify")?;
    let mut summary = format!(
        "ok: transaction {id} ({kind} by {author}, time {time}) is entry {index} of {origin} at size {size}, root {root}",
        kind = header.kind,
        author = header.author,
        time = header.time,
        index = proof.index,
        origin = checkpoint.origin,
        size = checkpoint.size,
        root = hex::encode(checkpoint.root),
    );
    if !trusted.cosigners.is_empty() {
        let ok = verify_quorum(&proof.checkpoint, &trusted.cosigners, trusted.quorum)
            .context("cosignatures")?;
        let names: Vec<&str> = ok.iter().map(|(c, _)| c.name()).collect();
        summary.push_str(&format!(
            "; cosigned by {} trusted cosigners (quorum {}): {}",
            ok.len(),
            trusted.quorum,
            names.join(", ")
        ));
    }
    Ok(summary)
}
