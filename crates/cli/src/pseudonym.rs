//! `medledger pseudonym`: the pseudonymization authority's tool.
//!
//! It runs where the authority's key is (a 0600 file that never leaves the
//! authority) and turns LBOs and JMBGs into keyed pseudonyms: one at a time,
//! one per line (batch), or a whole CSV whose `lbo` or `jmbg` column becomes
//! a `patient` column, ready for `medledger import`.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use medledger_health::pseudonym::{Identifier, KEY_BYTES, PseudonymKey};
use medledger_ledger::write_secret_file;
use medledger_node::load_pseudonym_key;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// `medledger pseudonym`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct PseudonymArgs {
    #[command(subcommand)]
    command: Option<PseudonymCommand>,
    /// The authority's key file.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Identifiers (LBO or JMBG); one per line from stdin if none.
    ids: Vec<String>,
    /// Read a CSV on stdin and replace this column (lbo or jmbg) by a
    /// `patient` column of pseudonyms.
    #[arg(long)]
    csv: Option<String>,
}

/// Subcommands.
#[derive(Subcommand)]
pub enum PseudonymCommand {
    /// Create the authority's secret key: 256 random bits, hex, mode 0600.
    Keygen {
        /// Where to write it; it must not exist.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs `medledger pseudonym`.
pub fn run(args: PseudonymArgs) -> Result<ExitCode> {
    if let Some(PseudonymCommand::Keygen { out }) = args.command {
        let bytes = medledger_formats::keys::random_bytes::<KEY_BYTES>()?;
        write_secret_file(&out, &PseudonymKey::generate(bytes).to_file_text())?;
        eprintln!("wrote {} (keep it with the authority only)", out.display());
        return Ok(ExitCode::SUCCESS);
    }
    let Some(key_path) = args.key else {
        bail!("--key (the authority's key file) is required");
    };
    let key = load_pseudonym_key(&key_path)?;
    if let Some(column) = args.csv {
        return csv(&key, &column);
    }
    let mut out = std::io::stdout().lock();
    let mut bad = 0u64;
    let mut one = |n: usize, raw: &str, out: &mut dyn Write| -> Result<()> {
        match Identifier::parse(raw) {
            Ok(id) => writeln!(out, "{}", key.pseudonym(&id))?,
            Err(e) => {
                // The line keeps its place; the value is never printed.
                bad += 1;
                writeln!(out, "-")?;
                eprintln!("line {n}: {e}");
            }
        }
        Ok(())
    };
    if args.ids.is_empty() {
        for (n, line) in std::io::stdin().lock().lines().enumerate() {
            one(n + 1, &line?, &mut out)?;
        }
    } else {
        for (n, id) in args.ids.iter().enumerate() {
            one(n + 1, id, &mut out)?;
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn csv(key: &PseudonymKey, column: &str) -> Result<ExitCode> {
    let mut rd = csv::Reader::from_reader(std::io::stdin().lock());
    let mut wr = csv::Writer::from_writer(std::io::stdout().lock());
    let header = rd.byte_headers().context("reading the CSV header")?.clone();
    let at = header
        .iter()
        .position(|h| h.eq_ignore_ascii_case(column.as_bytes()))
        .with_context(|| format!("the CSV has no column {column:?}"))?;
    let renamed: Vec<&[u8]> = header
        .iter()
        .enumerate()
        .map(|(i, h)| if i == at { b"patient".as_slice() } else { h })
        .collect();
    wr.write_record(&renamed)?;
    let mut bad = 0u64;
    for (n, rec) in rd.byte_records().enumerate() {
        let rec = rec.with_context(|| format!("CSV row {}", n + 2))?;
        let value = String::from_utf8_lossy(rec.get(at).unwrap_or_default()).into_owned();
        let pseudonym = match Identifier::parse(&value) {
            Ok(id) => key.pseudonym(&id),
            Err(e) => {
                bad += 1;
                eprintln!("row {}: {e}; row left out", n + 2);
                continue;
            }
        };
        let fields: Vec<&[u8]> = rec
            .iter()
            .enumerate()
            .map(|(i, f)| if i == at { pseudonym.as_bytes() } else { f })
            .collect();
        wr.write_record(&fields)?;
    }
    wr.flush()?;
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
