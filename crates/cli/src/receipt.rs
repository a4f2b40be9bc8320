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
use medledger_formats::tx::{Transaction, TxError};
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
pub(crate) struct Trusted {
    /// Node keys: the checkpoint must be signed by one of them.
    log: Vec<NoteVerifier>,
    /// Cosigner keys.
    cosigners: Vec<CosignatureVerifier>,
    /// Distinct cosigners that must have cosigned.
    quorum: usize,
}

impl Trusted {
    /// Sorts `--key` values by type and checks that `--quorum` can be met.
    pub(crate) fn parse(keys: &[String], quorum: Option<usize>) -> Result<Self> {
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

/// What a receipt proved.
pub(crate) struct Proven {
    /// The transaction id (the leaf hash).
    pub(crate) id: String,
    /// Its entry in the log.
    pub(crate) index: u64,
    /// The header the author signed.
    pub(crate) header: medledger_formats::tx::TxHeader,
    /// The checkpoint the proof leads to.
    pub(crate) checkpoint: medledger_formats::checkpoint::Checkpoint,
    /// Names of the trusted cosigners that cosigned it (a quorum of them).
    pub(crate) cosigners: Vec<String>,
}

/// Checks a receipt: the proof to a checkpoint signed by a trusted node
/// key, the author's signature over the header it carries, the id if one
/// is required, and a quorum of trusted cosignatures if any cosigner key
/// is trusted.
pub(crate) fn check(
    text: &str,
    trusted: &Trusted,
    origin: Option<&str>,
    want_id: Option<&str>,
) -> Result<Proven> {
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
    let sig: &[u8; 64] = sig.try_into().context("signature is not 64 bytes")?;
    let header = match Transaction::verify_header_signature(header_jcs, sig) {
        Err(TxError::Header(e)) => {
            bail!("extra line does not hold a transaction header: {e}")
        }
        r => r.context("the author's signature over the header does not verify")?,
    };
    let mut cosigners = Vec::new();
    if !trusted.cosigners.is_empty() {
        let ok = verify_quorum(&proof.checkpoint, &trusted.cosigners, trusted.quorum)
            .context("cosignatures")?;
        cosigners = ok.iter().map(|(c, _)| c.name().to_owned()).collect();
    }
    Ok(Proven {
        id,
        index: proof.index,
        header,
        checkpoint,
        cosigners,
    })
}

fn verify(
    text: &str,
    trusted: &Trusted,
    origin: Option<&str>,
    want_id: Option<&str>,
) -> Result<String> {
    let p = check(text, trusted, origin, want_id)?;
    let mut summary = format!(
        "ok: transaction {id} ({kind} by {author}, time {time}) is entry {index} of {origin} at size {size}, root {root}",
        id = p.id,
        kind = p.header.kind,
        author = p.header.author,
        time = p.header.time,
        index = p.index,
        origin = p.checkpoint.origin,
        size = p.checkpoint.size,
        root = hex::encode(p.checkpoint.root),
    );
    if !trusted.cosigners.is_empty() {
        summary.push_str(&format!(
            "; cosigned by {} trusted cosigners (quorum {}): {}",
            p.cosigners.len(),
            trusted.quorum,
            p.cosigners.join(", ")
        ));
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use medledger_formats::checkpoint::Checkpoint;
    use medledger_formats::merkle::MemTree;
    use medledger_formats::note::NoteSigner;
    use sha2::Digest;

    const ORIGIN: &str = "medledger.example/cli";

    /// A receipt for a one-leaf log holding `JCS(header) || signature`.
    fn receipt(log: &NoteSigner, header_jcs: &[u8], sig: &[u8; 64]) -> String {
        let mut extra = header_jcs.to_vec();
        extra.extend_from_slice(sig);
        let tree = MemTree::from_leaves(&[merkle::leaf_hash(&extra)]);
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            size: 1,
            root: tree.root(),
            extensions: vec![],
        };
        TlogProof {
            extra: Some(extra),
            index: 0,
            proof: vec![],
            checkpoint: cp.sign(log).unwrap(),
        }
        .render()
    }

    /// Issue 13: a signature whose R is the identity point and S = k·a is
    /// valid under the ledger's rule (ZIP-215), so the receipt the node
    /// issued for it verifies here too; one flipped bit of S does not.
    #[test]
    fn receipt_with_identity_r_author_signature_verifies() {
        let log = NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[3; 32])).unwrap();
        let trusted = Trusted::parse(&[log.verifier().to_vkey()], None).unwrap();
        let author = SigningKey::from_bytes(&[4; 32]);
        let tx =
            Transaction::sign(&author, "medical_report", 1, &serde_json::json!({"a": 1})).unwrap();
        let mut r = [0u8; 32];
        r[0] = 1;
        let k = curve25519_dalek::Scalar::from_hash(
            sha2::Sha512::new()
                .chain_update(r)
                .chain_update(author.verifying_key().as_bytes())
                .chain_update(tx.signing_message()),
        );
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r);
        sig[32..].copy_from_slice((k * author.to_scalar()).as_bytes());

        let text = receipt(&log, tx.header_jcs(), &sig);
        let summary = verify(&text, &trusted, Some(ORIGIN), None).unwrap();
        assert!(summary.starts_with("ok: "), "{summary}");

        sig[40] ^= 1;
        let text = receipt(&log, tx.header_jcs(), &sig);
        let err = verify(&text, &trusted, Some(ORIGIN), None).unwrap_err();
        assert!(format!("{err:#}").contains("author's signature"), "{err:#}");
    }
}
