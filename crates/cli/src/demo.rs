//! `medledger demo`: fills a node with synthetic data for a Serbian
//! primary-care health centre (doctors, patients behind pseudonyms,
//! medical reports, vital-sign series, daily epidemic and vaccination
//! counts, organ-donor decisions), signed by the demo's doctors and the
//! centre's integration account.

use crate::demo_data::{self, Scale};
use crate::import::Sink;
use anyhow::{Context, Result, bail};
use clap::Args;
use ed25519_dalek::SigningKey;
use medledger_formats::keys;
use medledger_formats::tx::Transaction;
use medledger_health::calendar;
use medledger_ledger::{
    Ledger, RegisterPayload, Role, kind, now_ms, read_key_file, write_secret_file,
};
use medledger_node::INTEGRATIONS_DIR;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `medledger demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// A running node's URL (needs --admin-key); otherwise the data directory.
    #[arg(long, conflicts_with = "data_dir")]
    url: Option<String>,
    /// The node's verifier key (with --url; trusted on first use if absent).
    #[arg(long, requires = "url")]
    vkey: Option<String>,
    /// Data directory of a stopped node; created if it holds no ledger.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The admin's key file (default: DATA_DIR/admin.key).
    #[arg(long)]
    admin_key: Option<PathBuf>,
    /// Where the demo's keys are written, each run in a new `run-<ms>`
    /// directory under it, printed as `doctor_keys` (default: DATA_DIR/demo,
    /// or ./demo-keys with --url). With --url the FHIR integration account's
    /// key is written there too (`integration_key`): copy it into the node's
    /// DATA_DIR/integrations for the node to sign FHIR writes with it.
    #[arg(long)]
    keys_dir: Option<PathBuf>,
    /// Seed of the synthetic data (same seed, same data).
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Number of patients.
    #[arg(long, default_value_t = Scale::DEFAULT.patients)]
    patients: usize,
    /// Number of medical reports.
    #[arg(long, default_value_t = Scale::DEFAULT.reports)]
    reports: usize,
    /// Days of vital-sign series.
    #[arg(long, default_value_t = Scale::DEFAULT.vitals_days)]
    vitals_days: usize,
    /// Number of doctors.
    #[arg(long, default_value_t = Scale::DEFAULT.doctors)]
    doctors: usize,
}

/// The admin's signed registration of `key`.
pub(crate) fn register(
    admin: &SigningKey,
    key: &SigningKey,
    role: Role,
    institution: &str,
    label: &str,
) -> Result<Transaction> {
    sign_registration(
        admin,
        &RegisterPayload {
            key: keys::public_key(key),
            role,
            institution: institution.into(),
            label: label.into(),
            patient: None,
            cluster: None,
        },
    )
}

/// The admin's signed `participant.register` of `p`.
pub(crate) fn sign_registration(admin: &SigningKey, p: &RegisterPayload) -> Result<Transaction> {
    Ok(Transaction::sign(
        admin,
        kind::REGISTER,
        now_ms(),
        &serde_json::to_value(p)?,
    )?)
}

fn new_key_file(path: &Path) -> Result<SigningKey> {
    let key = keys::generate()?;
    write_secret_file(path, &keys::encode_key_file(&key))?;
    Ok(key)
}

/// Runs `medledger demo`.
pub fn run(args: DemoArgs) -> Result<ExitCode> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("medledger-data"));
    if args.url.is_none() && !data_dir.join("ledger.json").exists() {
        let r = Ledger::init(
            &data_dir,
            "demo.medledger.example/ledger",
            "Dom zdravlja Niš",
        )?;
        eprintln!(
            "created a ledger in {} (node vkey {})",
            data_dir.display(),
            r.vkey
        );
    }
    let admin_path = match (&args.admin_key, &args.url) {
        (Some(p), _) => p.clone(),
        (None, None) => data_dir.join("admin.key"),
        (None, Some(_)) => {
            bail!("--url needs --admin-key (the key that registers the demo's doctors)")
        }
    };
    let admin = read_key_file(&admin_path)?;
    let keys_dir = match (&args.keys_dir, &args.url) {
        (Some(d), _) => d.clone(),
        (None, None) => data_dir.join("demo"),
        (None, Some(_)) => PathBuf::from("demo-keys"),
    };
    let scale = Scale {
        doctors: args.doctors.max(1),
        patients: args.patients,
        reports: args.reports,
        vitals_days: args.vitals_days,
    };
    let today = calendar::date_of_ms(now_ms());
    let demo = demo_data::generate(args.seed, scale, &today);

    // A fresh directory of keys for each run: the doctors are new
    // participants every time, so a second run adds to the ledger.
    let run_dir = keys_dir.join(format!("run-{}", now_ms()));
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let mut doctors = Vec::new();
    let mut regs = Vec::new();
    for (i, label) in demo.doctors.iter().enumerate() {
        let key = new_key_file(&run_dir.join(format!("doctor-{}.key", i + 1)))?;
        regs.push(register(
            &admin,
            &key,
            Role::Doctor,
            &demo.institution,
            label,
        )?);
        doctors.push(key);
    }
    // The institution's integration account, for writes through /fhir. On a
    // data directory the node holds its key; with --url it stays in the run's
    // directory under keys_dir.
    let integration_path = match &args.url {
        None => {
            let dir = data_dir.join(INTEGRATIONS_DIR);
            std::fs::create_dir_all(&dir)?;
            dir.join(format!("demo-{}.key", now_ms()))
        }
        Some(_) => run_dir.join("integration.key"),
    };
    let integration = new_key_file(&integration_path)?;
    regs.push(register(
        &admin,
        &integration,
        Role::Institution,
        &demo.institution,
        "FHIR integration (demo)",
    )?);

    let sink = Sink::open(args.url.as_deref(), args.vkey.as_deref(), &data_dir)?;
    let mut refused = 0usize;
    for o in sink.submit(regs) {
        if let Err(r) = o {
            bail!(
                "registering the demo's participants: {}: {}",
                r.code,
                r.detail
            );
        }
    }
    // Every record with its signer: the patients' choices of doctor (made
    // at the health centre), the clinical records, the centre's daily
    // public-health counts, and organ-donor decisions taken with the chosen
    // doctor.
    let mut signed: Vec<(&SigningKey, &str, serde_json::Value)> = Vec::new();
    for (i, p) in demo.patients.iter().enumerate() {
        let doctor = keys::public_key(&doctors[i % doctors.len()]);
        signed.push((
            &integration,
            kind::CHOSEN_DOCTOR,
            json!({"patient": p, "doctor": doctor, "date": today}),
        ));
    }
    for r in &demo.records {
        signed.push((
            &doctors[r.doctor % doctors.len()],
            r.kind,
            r.payload.clone(),
        ));
    }
    let counts = demo_data::public_health(args.seed, &today);
    let n_counts = counts.len();
    for (k, payload) in counts {
        signed.push((&integration, k, payload));
    }
    let decisions = demo_data::donor_decisions(args.seed, demo.patients.len(), &today);
    let n_decisions = decisions.len();
    for (p, mut payload) in decisions {
        payload["patient"] = json!(demo.patients[p]);
        signed.push((
            &doctors[p % doctors.len()],
            kind::ORGAN_DONOR_DECISION,
            payload,
        ));
    }
    let mut accepted = 0usize;
    let bar = crate::progress(Some(signed.len() as u64), "records");
    for chunk in signed.chunks(1000) {
        let txs = chunk
            .iter()
            .map(|(key, k, payload)| Transaction::sign(key, k, now_ms(), payload))
            .collect::<Result<Vec<_>, _>>()?;
        for o in sink.submit(txs) {
            match o {
                Ok(_) => accepted += 1,
                Err(r) => {
                    refused += 1;
                    bar.suspend(|| eprintln!("refused: {}: {}", r.code, r.detail));
                }
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    sink.close()?;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "institution": demo.institution,
            "doctors": demo.doctors.len(),
            "patients": demo.patients.len(),
            "records": accepted,
            "public_health_reports": n_counts,
            "donor_decisions": n_decisions,
            "refused": refused,
            "doctor_keys": run_dir,
            "integration_key": integration_path,
            "integration_participant": keys::public_key(&integration),
            "example_patient": demo.patients.first(),
        }))?
    );
    Ok(if refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
