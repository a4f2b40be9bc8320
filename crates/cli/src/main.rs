//! `medledger`: the command line.

mod backup;
mod bench;
mod bench_http;
mod bench_read;
mod demo;
mod demo_data;
mod export;
mod import;
mod patient;
mod pseudonym;
mod receipt;
mod remote;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use medledger_formats::keys;
use medledger_formats::keys::PublicKey;
use medledger_formats::tx::Transaction;
use medledger_ledger::{
    ClusterMember, Ledger, LedgerError, RegisterPayload, RevokePayload, Role, VerifyError,
    VerifyReport, kind, now_ms, read_key_file, segment_bytes, verify_dir, write_secret_file,
};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// A progress bar on a terminal, else nothing: `total` items (or a
/// spinner when the total is not known), with the rate as a whole count
/// ("4,500/s") and, given a total, the time left.
pub(crate) fn progress(total: Option<u64>, what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let (bar, template) = match total {
        Some(n) => (
            indicatif::ProgressBar::new(n),
            format!("{{bar:40}} {{human_pos}}/{{human_len}} {what}  {{rate}}  eta {{eta}}"),
        ),
        None => (
            indicatif::ProgressBar::new_spinner(),
            format!("{{spinner}} {{human_pos}} {what}  {{rate}}  {{elapsed}}"),
        ),
    };
    let rate = |st: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = write!(w, "{}/s", indicatif::HumanCount(st.per_sec() as u64));
    };
    bar.with_style(
        indicatif::ProgressStyle::with_template(&template)
            .map(|s| s.with_key("rate", rate))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    )
}

#[derive(Parser)]
#[command(
    name = "medledger",
    version,
    about = "A tamper-evident, durable ledger of pseudonymized health data"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: the HTTP API over a ledger (created on first start).
    Serve {
        /// Data directory; created with a fresh ledger if it holds none.
        #[arg(long, default_value = "medledger-data")]
        data_dir: PathBuf,
        /// Address to listen on (overrides the config file and MEDLEDGER_LISTEN).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// TOML config file (default: DATA_DIR/medledger.toml if present).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Origin for a ledger created by this start.
        #[arg(long)]
        origin: Option<String>,
    },
    /// Bearer tokens for record-level reads.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Create a ledger: node key, admin key (0600 files) and genesis block.
    Init {
        /// Data directory.
        #[arg(long, default_value = "medledger-data")]
        data_dir: PathBuf,
        /// Checkpoint origin line (a schema-less URL), fixed for the ledger's life.
        #[arg(long)]
        origin: Option<String>,
        /// Institution that runs this node.
        #[arg(long, default_value = "medledger")]
        institution: String,
        /// Start a cluster (or, with `--join`, join one) as the node with
        /// this Raft id.
        #[arg(long)]
        cluster_id: Option<u64>,
        /// The base URL the other nodes reach this node at, e.g.
        /// http://127.0.0.1:7001 (for the first node of a cluster), or
        /// https://… for its mutual-TLS `cluster_listen` address.
        #[arg(long, conflicts_with = "join")]
        cluster_addr: Option<String>,
        /// The base URL of this node's public API, when it is not
        /// `--cluster-addr` (for the first node of a cluster).
        #[arg(long, requires = "cluster_addr")]
        cluster_api: Option<String>,
        /// With `--join` and mutual TLS: the node key (hex) of a node of
        /// the cluster, trusted before this node has the ledger that lists
        /// the cluster's nodes. Repeat for several.
        #[arg(long = "trust", requires = "join")]
        trust: Vec<String>,
        /// Join an existing cluster: create only this node's key; an admin
        /// then registers it (`participant register --role node
        /// --cluster-id --cluster-addr`) and the cluster adds it.
        #[arg(long, requires = "cluster_id", requires = "origin")]
        join: bool,
    },
    /// Print a ledger's origin, node verifier key, height and latest signed checkpoint.
    Info {
        /// Data directory.
        #[arg(long, default_value = "medledger-data")]
        data_dir: PathBuf,
    },
    /// Generate an Ed25519 key file (0600) and print its public key.
    Keygen {
        /// Where to write the key file; it must not exist.
        #[arg(long)]
        out: PathBuf,
    },
    /// Recompute every hash, root, link, signature and commitment in a data directory.
    Verify {
        /// Data directory.
        #[arg(default_value = "medledger-data")]
        dir: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// The node verifier key you trust: the ledger's genesis must name
        /// this origin and node key (a rewritten history with a new genesis fails).
        #[arg(long)]
        key: Option<String>,
        /// A signed checkpoint you saw earlier (needs --key): the ledger must
        /// contain it, so blocks cut from the end or a rewritten past fail.
        #[arg(long, requires = "key")]
        checkpoint: Option<PathBuf>,
    },
    /// Receipts (C2SP tlog-proof): verify offline, or fetch from a node.
    Receipt {
        #[command(subcommand)]
        command: remote::ReceiptCommand,
    },
    /// Sign payloads (or take signed transactions) and submit them to a node;
    /// prints one JSON line per verified result.
    Submit(remote::SubmitArgs),
    /// Copy a ledger's segments to a backup directory while the node runs:
    /// incremental, cut at a block boundary (at the node's signed checkpoint
    /// with --url) and verified.
    Backup(backup::BackupArgs),
    /// Make a new data directory from a backup, after verifying it against
    /// a key (and checkpoint) you trust.
    Restore(backup::RestoreArgs),
    /// Read a transaction from a node with a bearer token; prints it with its verified receipt.
    Get(remote::GetArgs),
    /// Follow a node's signed checkpoints.
    Checkpoint {
        #[command(subcommand)]
        command: remote::CheckpointCommand,
    },
    /// Bulk import: signed transactions, CSV medical reports, FHIR NDJSON or
    /// Bundles, into a stopped node's data directory or a running node.
    /// Resumable; writes a report of accepted and refused rows.
    Import(import::ImportArgs),
    /// Research export of one kind of record as CSV, NDJSON or FHIR NDJSON,
    /// with a manifest (`export verify` proves it complete and unchanged).
    Export(export::ExportArgs),
    /// The pseudonymization authority's tool: LBO/JMBG to keyed pseudonyms.
    Pseudonym(pseudonym::PseudonymArgs),
    /// Fill a node with synthetic data of a primary-care health centre.
    Demo(demo::DemoArgs),
    /// Sign a transaction with a key file; prints it as one JSON line (for `import`).
    Sign {
        /// The author's key file.
        #[arg(long)]
        key: PathBuf,
        /// Transaction kind, e.g. medical_report.
        #[arg(long)]
        kind: String,
        /// JSON payload file; stdin if absent.
        payload: Option<PathBuf>,
    },
    /// A patient's own tools: who read my records, proven.
    Patient {
        #[command(subcommand)]
        command: patient::PatientCommand,
    },
    /// Build signed admin transactions that register or revoke participants.
    Participant {
        #[command(subcommand)]
        command: ParticipantCommand,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Issue a token bound to a registered participant; prints it once.
    Issue {
        /// Data directory.
        #[arg(long, default_value = "medledger-data")]
        data_dir: PathBuf,
        /// The participant's public key (hex).
        #[arg(long)]
        participant: String,
    },
    /// Obtain an access token from a node's token endpoint with a client
    /// assertion signed by a participant's key (SMART Backend Services);
    /// prints the token.
    Request {
        /// The participant's key file.
        #[arg(long)]
        key: PathBuf,
        /// The node's base URL, e.g. http://127.0.0.1:7878.
        #[arg(long)]
        url: String,
        /// Scope, e.g. "purpose/TREAT"; the role's purposes if absent.
        #[arg(long)]
        scope: Option<String>,
        /// The assertion's audience, when the node's public URL differs
        /// from --url; by default --url followed by /v1/token.
        #[arg(long)]
        aud: Option<String>,
    },
    /// Revoke a token (the token itself or its SHA-256 hex).
    Revoke {
        /// Data directory.
        #[arg(long, default_value = "medledger-data")]
        data_dir: PathBuf,
        /// Token or hash.
        token: String,
    },
}

#[derive(Subcommand)]
enum ParticipantCommand {
    /// Register a participant (prints the signed transaction).
    Register {
        /// The admin's key file.
        #[arg(long)]
        admin_key: PathBuf,
        /// The participant's public key (hex), as printed by `keygen`.
        #[arg(long)]
        key: String,
        /// The participant's role (docs/ROLES.md says what each may do).
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(Role::ALL.map(Role::as_str)))]
        role: String,
        /// Institution the participant belongs to.
        #[arg(long)]
        institution: String,
        /// A label for people (never a patient's name).
        #[arg(long, default_value = "")]
        label: String,
        /// For a device: the pseudonym of the one patient it writes about.
        #[arg(long)]
        patient: Option<String>,
        /// For a node joining a cluster: its Raft id (with `--cluster-addr`).
        #[arg(long, requires = "cluster_addr")]
        cluster_id: Option<u64>,
        /// For a node joining a cluster: the base URL other nodes reach it
        /// at, e.g. http://127.0.0.2:7878 (https:// for mutual TLS).
        #[arg(long, requires = "cluster_id")]
        cluster_addr: Option<String>,
        /// For a node joining a cluster: its public API's base URL, when it
        /// is not `--cluster-addr`.
        #[arg(long, requires = "cluster_id")]
        cluster_api: Option<String>,
    },
    /// Revoke a participant (prints the signed transaction).
    Revoke {
        /// The admin's key file.
        #[arg(long)]
        admin_key: PathBuf,
        /// The participant's public key (hex).
        #[arg(long)]
        key: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        // Output piped into `head` and closed early ends a one-shot command
        // quietly, as for any Unix tool, instead of panicking on the write.
        // The node keeps Rust's default (ignored) so a vanished client
        // cannot kill it.
        // SAFETY: sets the disposition of one signal at startup, before any
        // thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // One-shot commands only warn; the node sets up its logging from its
    // configuration when it starts.
    if !matches!(cli.command, Command::Serve { .. }) {
        init_logging("warn", medledger_node::LogFormat::Text);
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Init {
            data_dir,
            origin,
            institution,
            cluster_id,
            cluster_addr,
            cluster_api,
            trust,
            join,
        } => {
            let origin = match origin {
                Some(o) => o,
                None => default_origin()?,
            };
            let trust = trust
                .iter()
                .map(|k| PublicKey::parse_hex(k).context("--trust must be 64 lowercase hex digits"))
                .collect::<Result<Vec<_>>>()?;
            let cluster_file = cluster_id.map(|id| medledger_node::ClusterFile { id, trust });
            if join {
                let key = Ledger::init_joining(&data_dir, &origin)?;
                if let Some(f) = &cluster_file {
                    f.write(&data_dir)?;
                }
                println!("initialised {} to join a cluster", data_dir.display());
                println!("origin:     {origin}");
                println!("node key:   {}", key.to_hex());
                return Ok(ExitCode::SUCCESS);
            }
            let member = match (cluster_id, cluster_addr) {
                (Some(id), Some(addr)) => {
                    let m = ClusterMember {
                        id,
                        addr,
                        api: cluster_api,
                    };
                    m.check().map_err(anyhow::Error::msg)?;
                    Some(m)
                }
                (None, None) => None,
                _ => anyhow::bail!(
                    "a cluster's first node needs both --cluster-id and --cluster-addr"
                ),
            };
            let report = Ledger::init_with(&data_dir, &origin, &institution, member)?;
            if cluster_file.is_some() {
                let key = medledger_ledger::read_key_file(&data_dir.join("node.key"))?;
                println!("node key:   {}", keys::public_key(&key).to_hex());
            }
            if let Some(f) = &cluster_file {
                f.write(&data_dir)?;
            }
            println!("initialised {}", data_dir.display());
            println!("origin:     {}", report.origin);
            println!("node vkey:  {}", report.vkey);
            println!(
                "admin key:  {} (keep it safe; mode 0600)",
                report.admin_key.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            data_dir,
            listen,
            config,
            origin,
        } => serve(data_dir, listen, config, origin),
        Command::Token { command } => token(command),
        Command::Info { data_dir } => {
            let ledger = medledger_node::open_ledger(&data_dir)?;
            let tip = ledger.state.tip();
            println!("origin:     {}", ledger.store.origin());
            println!("node vkey:  {}", ledger.store.verifier().to_vkey());
            println!("height:     {}", tip.next_height.saturating_sub(1));
            println!("log size:   {}", tip.log.size());
            println!("log root:   {}", hex::encode(tip.log.root()));
            if let Some(cp) = ledger.store.checkpoint() {
                print!("\n{}", cp.render());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Keygen { out } => {
            let key = keys::generate()?;
            write_secret_file(&out, &keys::encode_key_file(&key))?;
            println!("{}", keys::public_key(&key));
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            dir,
            json,
            key,
            checkpoint,
        } => verify_cmd(dir, json, key, checkpoint),
        Command::Receipt { command } => remote::receipt(command),
        Command::Submit(args) => remote::submit(args),
        Command::Backup(args) => backup::backup(args),
        Command::Restore(args) => backup::restore(args),
        Command::Get(args) => remote::get(args),
        Command::Checkpoint { command } => remote::checkpoint(command),
        Command::Import(args) => import::run(args),
        Command::Export(args) => export::run(args),
        Command::Pseudonym(args) => pseudonym::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Sign { key, kind, payload } => {
            let key = read_key_file(&key)?;
            let text = match payload {
                Some(p) => std::fs::read_to_string(&p)
                    .with_context(|| format!("reading {}", p.display()))?,
                None => std::io::read_to_string(std::io::stdin())?,
            };
            let payload: serde_json::Value =
                serde_json::from_str(&text).context("payload is not JSON")?;
            print_signed(&key, &kind, &payload)
        }
        Command::Patient { command } => patient::run(command),
        Command::Participant { command } => participant(command),
        Command::Bench { command } => bench::run(command),
    }
}

fn default_origin() -> Result<String> {
    Ok(format!(
        "medledger/{}",
        hex::encode(keys::random_bytes::<4>()?)
    ))
}

/// Sends log lines to stderr: `RUST_LOG`, if set, overrides `filter`.
fn init_logging(filter: &str, format: medledger_node::LogFormat) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|f| !f.trim().is_empty())
        .unwrap_or_else(|| filter.to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let lines = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        medledger_node::LogFormat::Json => lines.json().flatten_event(true).init(),
        medledger_node::LogFormat::Text => lines.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

fn serve(
    data_dir: PathBuf,
    listen: Option<std::net::SocketAddr>,
    config: Option<PathBuf>,
    origin: Option<String>,
) -> Result<ExitCode> {
    let mut cfg = medledger_node::NodeConfig::load(config.as_deref(), &data_dir)?;
    init_logging(&cfg.log, cfg.log_format);
    if let Some(l) = listen {
        cfg.listen = l;
    }
    let origin = match origin {
        Some(o) => o,
        None => default_origin()?,
    };
    let (ledger, created) = medledger_node::open_or_init_ledger(&data_dir, &origin)?;
    if let Some(admin) = created {
        println!("created a new ledger in {}", data_dir.display());
        println!("admin key: {} (mode 0600; keep it safe)", admin.display());
    }
    println!("origin:    {}", ledger.store.origin());
    println!("node vkey: {}", ledger.store.verifier().to_vkey());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(medledger_node::serve(
        &data_dir,
        ledger,
        cfg,
        medledger_node::shutdown_signal(),
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn token(cmd: TokenCommand) -> Result<ExitCode> {
    match cmd {
        TokenCommand::Issue {
            data_dir,
            participant,
        } => {
            anyhow::ensure!(
                data_dir.join("ledger.json").exists(),
                "{} holds no ledger",
                data_dir.display()
            );
            let key = PublicKey::parse_hex(&participant)
                .context("--participant must be 64 lowercase hex digits")?;
            // The ledger is open in the node while it runs: then read the
            // participants from the segments.
            let state = match Ledger::open(&data_dir) {
                Ok(l) => l.state,
                Err(LedgerError::Locked(_)) => {
                    medledger_ledger::participants_from_segments(&data_dir)?
                }
                Err(e) => return Err(e.into()),
            };
            match state.participant(&key) {
                None => bail!("{participant} is not a participant of this ledger"),
                Some(p) if p.revoked_at.is_some() => {
                    bail!("{participant} was revoked; it gets no token")
                }
                Some(_) => {}
            }
            let token = medledger_node::issue_token(&data_dir, key, now_ms())?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Request {
            key,
            url,
            scope,
            aud,
        } => {
            let key = read_key_file(&key)?;
            println!(
                "{}",
                request_token(&key, &url, scope.as_deref(), aud.as_deref())?
            );
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke { data_dir, token } => {
            medledger_node::revoke_token(&data_dir, &token)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// An access token from the node at `url` (SMART Backend Services: a
/// client-credentials grant with an assertion signed by `key`). `aud` is
/// the assertion's audience when the node's public URL differs from `url`.
pub(crate) fn request_token(
    key: &ed25519_dalek::SigningKey,
    url: &str,
    scope: Option<&str>,
    aud: Option<&str>,
) -> Result<String> {
    let endpoint = format!(
        "{}{}",
        url.trim_end_matches('/'),
        medledger_node::TOKEN_PATH
    );
    let aud = aud.unwrap_or(&endpoint);
    let jti = hex::encode(keys::random_bytes::<16>()?);
    // A short lifetime: the assertion is used at once.
    let assertion = medledger_node::sign_assertion(key, aud, now_ms() / 1000, 60, &jti)
        .map_err(|e| anyhow::anyhow!("signing the assertion: {e}"))?;
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials")
        .append_pair("client_assertion_type", medledger_node::ASSERTION_TYPE)
        .append_pair("client_assertion", &assertion);
    if let Some(scope) = scope {
        form.append_pair("scope", scope);
    }
    let resp = reqwest::blocking::Client::new()
        .post(&endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.finish())
        .send()
        .with_context(|| format!("POST {endpoint}"))?;
    let status = resp.status();
    let body: serde_json::Value = resp
        .json()
        .with_context(|| format!("POST {endpoint}: {status} without a JSON body"))?;
    match body["access_token"].as_str() {
        Some(token) if status.is_success() => Ok(token.to_owned()),
        _ => bail!(
            "{endpoint} refused: {status} {}: {}",
            body["error"].as_str().unwrap_or("no error code"),
            body["error_description"]
                .as_str()
                .or(body["detail"].as_str())
                .unwrap_or("")
        ),
    }
}

fn print_signed(
    key: &ed25519_dalek::SigningKey,
    kind: &str,
    payload: &serde_json::Value,
) -> Result<ExitCode> {
    let tx = Transaction::sign(key, kind, now_ms(), payload)?;
    println!("{}", serde_json::to_string(&tx.to_wire()?)?);
    Ok(ExitCode::SUCCESS)
}

fn participant(cmd: ParticipantCommand) -> Result<ExitCode> {
    match cmd {
        ParticipantCommand::Register {
            admin_key,
            key,
            role,
            institution,
            label,
            patient,
            cluster_id,
            cluster_addr,
            cluster_api,
        } => {
            let admin = read_key_file(&admin_key)?;
            let role: Role = serde_json::from_value(serde_json::Value::String(role.clone()))
                .map_err(|_| anyhow::anyhow!("unknown role {role:?}"))?;
            let payload = RegisterPayload {
                key: PublicKey::parse_hex(&key).context("--key must be 64 lowercase hex digits")?,
                role,
                institution,
                label,
                patient,
                cluster: cluster_id
                    .zip(cluster_addr)
                    .map(|(id, addr)| ClusterMember {
                        id,
                        addr,
                        api: cluster_api,
                    }),
            };
            print_signed(&admin, kind::REGISTER, &serde_json::to_value(payload)?)
        }
        ParticipantCommand::Revoke {
            admin_key,
            key,
            reason,
        } => {
            let admin = read_key_file(&admin_key)?;
            let payload = RevokePayload {
                key: PublicKey::parse_hex(&key).context("--key must be 64 lowercase hex digits")?,
                reason,
            };
            print_signed(&admin, kind::REVOKE, &serde_json::to_value(payload)?)
        }
    }
}

/// Checks a verified ledger against the trusted key and checkpoint.
pub(crate) fn check_trust(
    report: &VerifyReport,
    key: Option<&str>,
    checkpoint: Option<&std::path::Path>,
) -> Result<()> {
    let Some(key) = key else { return Ok(()) };
    let verifier = medledger_formats::note::NoteVerifier::parse(key)
        .with_context(|| format!("verifier key {key:?}"))?;
    if report.origin != verifier.name() {
        bail!(
            "the ledger's genesis names origin {:?}, the trusted key {:?}",
            report.origin,
            verifier.name()
        );
    }
    let node = PublicKey::from(verifier.key().to_bytes());
    if !report.nodes.contains(&node) {
        bail!("the trusted key is not an active node of this ledger: its genesis was replaced");
    }
    if let Some(path) = checkpoint {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let (cp, _) = medledger_formats::checkpoint::Checkpoint::open(
            &text,
            Some(verifier.name()),
            std::slice::from_ref(&verifier),
        )?;
        if !report.block_roots.contains(&(cp.size, cp.root)) {
            bail!(
                "the ledger does not contain the trusted checkpoint (size {}): blocks were removed or history rewritten",
                cp.size
            );
        }
    }
    Ok(())
}

fn verify_cmd(
    dir: PathBuf,
    json: bool,
    key: Option<String>,
    checkpoint: Option<PathBuf>,
) -> Result<ExitCode> {
    let total = segment_bytes(&dir)?;
    let bar = if std::io::stderr().is_terminal() && !json {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let start = std::time::Instant::now();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let result = verify_dir(&dir, threads, |b| bar.set_position(b)).and_then(|r| {
        check_trust(&r, key.as_deref(), checkpoint.as_deref())
            .map(|()| r)
            .map_err(|e| VerifyError::Untrusted(format!("{e:#}")))
    });
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    match result {
        Ok(r) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "ok": true,
                        "blocks": r.blocks,
                        "transactions": r.transactions,
                        "bytes": r.bytes,
                        "log_root": hex::encode(r.log_root),
                        "seconds": secs,
                        "tx_per_s": r.transactions as f64 / secs,
                        "mb_per_s": r.bytes as f64 / secs / 1e6,
                        "redactions": r.redactions,
                        "redacted": r.redacted,
                        "unapplied": r.unapplied,
                    })
                );
            } else {
                println!(
                    "ok: {} blocks, {} transactions, {:.1} MB in {:.2}s ({:.0} tx/s, {:.1} MB/s); log root {}",
                    r.blocks,
                    r.transactions,
                    r.bytes as f64 / 1e6,
                    secs,
                    r.transactions as f64 / secs,
                    r.bytes as f64 / secs / 1e6,
                    hex::encode(r.log_root)
                );
                println!(
                    "redactions: {} committed, {} payloads erased (each covered by a redaction), {} named but not yet erased here",
                    r.redactions, r.redacted, r.unapplied
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "error": e.to_string()})
                );
            } else {
                eprintln!("verification FAILED: {e}");
            }
            Ok(ExitCode::from(1))
        }
    }
}
