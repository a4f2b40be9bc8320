//! `medledger import`: bulk loading of signed transactions, CSV medical
//! reports, FHIR NDJSON and FHIR Bundles, into a stopped node's data
//! directory or a running node.
//!
//! Every input row is checked here first, with the same rules the ledger
//! applies (the PII guard, the report schema, the FHIR rules), so a refused
//! row never leaves this machine. The import writes a report, one JSON line
//! per row: accepted (with id and log index) or refused (with the reason).
//! The report is also the import's journal: before a batch is sent, its rows
//! are written as `pending` with their transaction ids and synced; a re-run
//! with the same report skips accepted rows, looks up pending ones in the
//! ledger (a crash can come between the commit and the report line), and
//! sends the rest again.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use ed25519_dalek::SigningKey;
use medledger_client::Client;
use medledger_formats::merkle::Hash;
use medledger_formats::tx::{Transaction, TxWire};
use medledger_health::fhir;
use medledger_health::pseudonym::{Identifier, PseudonymKey};
use medledger_health::records::{self, MEDICAL_REPORT, PayloadError};
use medledger_ledger::{Ledger, now_ms, read_key_file};
use medledger_node::{Sequencer, SequencerConfig};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Input formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Decide from the file name and its first bytes.
    Auto,
    /// Signed transactions, one wire JSON per line.
    Signed,
    /// Medical reports as CSV with a header row.
    Csv,
    /// FHIR resources (or Bundles), one JSON per line.
    FhirNdjson,
    /// One FHIR Bundle per file.
    Bundle,
}

/// `medledger import`.
#[derive(Args)]
pub struct ImportArgs {
    /// Input files; stdin (signed transactions) if none.
    files: Vec<PathBuf>,
    /// Input format.
    #[arg(long, value_enum, default_value = "auto")]
    format: Format,
    /// Data directory of a stopped node (ignored with --url).
    #[arg(long, default_value = "medledger-data")]
    data_dir: PathBuf,
    /// A running node's URL, instead of a data directory.
    #[arg(long)]
    url: Option<String>,
    /// The node's verifier key (with --url; trusted on first use if absent).
    #[arg(long, requires = "url")]
    vkey: Option<String>,
    /// Key file of the author who signs CSV and FHIR rows (a doctor, or an
    /// institution's integration account).
    #[arg(long)]
    key: Option<PathBuf>,
    /// The pseudonymization authority's key: replaces LBO/JMBG columns and
    /// FHIR Patient resources by pseudonyms. Without it such rows are refused.
    #[arg(long)]
    pseudonym_key: Option<PathBuf>,
    /// The report (and journal) file; a re-run with it resumes.
    /// Default: the first input file's name with `.import.jsonl` appended;
    /// none for stdin (a pipe cannot be resumed), where stdout is the report.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Transactions per submission.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Directory to write each receipt into, as <id>.tlog-proof.
    #[arg(long)]
    receipts: Option<PathBuf>,
    /// Do not print one JSON result per row on stdout (the report has them).
    #[arg(long)]
    quiet: bool,
}

/// One input row, made into a transaction or refused.
struct Row {
    /// Where it came from: `file:line` or `file#entry`.
    at: String,
    /// Its line, for line-oriented inputs.
    line: Option<usize>,
    /// SHA-256 of the row's bytes: a resumed import refuses changed input.
    digest: String,
    tx: Result<Transaction, Refusal>,
}

/// Why a row was refused, before or by the ledger.
#[derive(Clone, Debug)]
pub(crate) struct Refusal {
    /// Stable code.
    pub(crate) code: String,
    /// Explanation.
    pub(crate) detail: String,
}

fn refuse(code: &str, detail: impl Into<String>) -> Refusal {
    Refusal {
        code: code.into(),
        detail: detail.into(),
    }
}

fn digest(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..16])
}

/// What the journal knows about a row.
#[derive(Clone, Debug, PartialEq)]
enum Known {
    Pending { digest: String, id: String },
    Accepted { digest: String },
    Refused,
}

struct Journal {
    file: File,
    known: HashMap<String, Known>,
}

impl Journal {
    fn open(path: &Path) -> Result<Self> {
        let mut known = HashMap::new();
        if path.exists() {
            let text =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            // A torn last line (a crash mid-write) is ignored: the row is
            // simply not known and is looked up again.
            for line in text.split(|&b| b == b'\n') {
                let Ok(v) = serde_json::from_slice::<Value>(line) else {
                    continue;
                };
                let (Some(row), Some(d)) = (v["row"].as_str(), v["digest"].as_str()) else {
                    continue;
                };
                let k = if let Some(id) = v["pending"].as_str() {
                    Known::Pending {
                        digest: d.into(),
                        id: id.into(),
                    }
                } else if v["id"].is_string() {
                    Known::Accepted { digest: d.into() }
                } else {
                    Known::Refused
                };
                known.insert(row.to_owned(), k);
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening report {}", path.display()))?;
        Ok(Journal { file, known })
    }

    fn write(&mut self, lines: &[Value], sync: bool) -> Result<()> {
        let mut buf = Vec::new();
        for l in lines {
            serde_json::to_writer(&mut buf, l)?;
            buf.push(b'\n');
        }
        self.file.write_all(&buf)?;
        if sync {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

/// Where transactions go: a stopped node's data directory, or a running node.
pub(crate) enum Sink {
    Local(Box<Sequencer>),
    Remote(Client),
}

/// A transaction's fate: id, log index, height and receipt, or why not.
pub(crate) type Outcome = Result<(Hash, u64, u64, String), Refusal>;

impl Sink {
    /// The node at `url` (its key `vkey`, or trusted on first use), or the
    /// ledger in `data_dir`.
    pub(crate) fn open(url: Option<&str>, vkey: Option<&str>, data_dir: &Path) -> Result<Self> {
        Ok(match url {
            Some(url) => Sink::Remote(match vkey {
                Some(v) => Client::from_vkey(url, v)?,
                None => Client::trust_on_first_use(url)?.0,
            }),
            None => Sink::Local(Box::new(Sequencer::start(
                Ledger::open(data_dir)?,
                SequencerConfig::default(),
            ))),
        })
    }

    /// Commits what is admitted and releases the ledger.
    pub(crate) fn close(self) -> Result<()> {
        if let Sink::Local(seq) = self
            && let Err(e) = seq.shutdown()
        {
            bail!("shutdown: {e}");
        }
        Ok(())
    }

    /// Submits `txs`; one outcome each.
    pub(crate) fn submit(&self, txs: Vec<Transaction>) -> Vec<Outcome> {
        self.send(txs).wait()
    }

    /// Sends `txs` without waiting: the next batch can be prepared while
    /// this one is admitted and committed.
    pub(crate) fn send(&self, txs: Vec<Transaction>) -> Ticket {
        if txs.is_empty() {
            return Ticket::Nothing;
        }
        match self {
            Sink::Local(seq) => Ticket::Local(seq.enqueue(txs)),
            Sink::Remote(client) => {
                let client = client.clone();
                Ticket::Remote(std::thread::spawn(move || remote_submit(&client, &txs)))
            }
        }
    }

    /// Where a transaction is in the ledger, if it is (for pending rows):
    /// its log index and block height.
    fn find(&self, id: &Hash) -> Result<Option<(u64, u64)>> {
        match self {
            Sink::Local(seq) => {
                let index = seq.store().index();
                let Some(leaf) = index.leaves_of(&[id])?[0] else {
                    return Ok(None);
                };
                Ok(Some((leaf, index.height_of_leaf(leaf)?.unwrap_or(0))))
            }
            Sink::Remote(client) => match client.receipt(id) {
                Ok(r) => Ok(Some((r.index, r.height.unwrap_or(0)))),
                Err(medledger_client::Error::Problem(p)) if p.status == 404 => Ok(None),
                Err(e) => Err(e.into()),
            },
        }
    }
}

/// A batch on its way.
pub(crate) enum Ticket {
    Nothing,
    Local(medledger_node::Waiting),
    Remote(std::thread::JoinHandle<Vec<Outcome>>),
}

impl Ticket {
    /// Blocks until every outcome is in.
    pub(crate) fn wait(self) -> Vec<Outcome> {
        match self {
            Ticket::Local(w) => w
                .wait()
                .into_iter()
                .map(|o| {
                    o.map(|r| (r.id, r.leaf, r.height, r.proof.render()))
                        .map_err(|e| refuse(e.code(), e.to_string()))
                })
                .collect(),
            Ticket::Remote(h) => h.join().unwrap_or_default(),
            Ticket::Nothing => Vec::new(),
        }
    }
}

fn remote_submit(client: &Client, txs: &[Transaction]) -> Vec<Outcome> {
    match client.submit_batch(txs) {
        Ok(items) => items
            .into_iter()
            .map(|i| {
                i.map(|r| (r.id, r.index, r.height.unwrap_or(0), r.text))
                    .map_err(|e| refuse(&client_code(&e), e.to_string()))
            })
            .collect(),
        Err(e) => txs
            .iter()
            .map(|_| Err(refuse("unavailable", e.to_string())))
            .collect(),
    }
}

fn client_code(e: &medledger_client::Error) -> String {
    match e {
        medledger_client::Error::Problem(p) => p.code.clone(),
        _ => "unavailable".into(),
    }
}

/// What a row needs to become a transaction.
struct Signer {
    key: Option<SigningKey>,
    pseudonyms: Option<PseudonymKey>,
}

impl Signer {
    fn sign(&self, kind: &str, payload: &Value) -> Result<Transaction, Refusal> {
        let key = self
            .key
            .as_ref()
            .ok_or_else(|| refuse("no_key", "unsigned rows need --key (the author's key file)"))?;
        // The ledger's own rules, here first: a row that breaks them never
        // leaves this machine.
        records::check(kind, payload).map_err(|e| match e {
            PayloadError::Pii(f) => refuse("pii_detected", f.to_string()),
            PayloadError::Fhir(f) => refuse("fhir_invalid", f.diagnostics),
            PayloadError::Schema(m) => refuse("schema_violation", m),
        })?;
        Transaction::sign(key, kind, now_ms(), payload)
            .map_err(|e| refuse("malformed", e.to_string()))
    }

    fn pseudonymize(&self, id: &Identifier) -> Result<String, Refusal> {
        let key = self.pseudonyms.as_ref().ok_or_else(|| {
            refuse(
                "identifier_without_key",
                "the row carries a patient identifier; pseudonymize it first \
                 (medledger pseudonym) or pass --pseudonym-key",
            )
        })?;
        Ok(key.pseudonym(id))
    }
}

/// CSV columns of a medical report.
const CSV_COLUMNS: [&str; 9] = [
    "patient",
    "lbo",
    "jmbg",
    "institution",
    "encounter_date",
    "diagnoses",
    "anamnesis",
    "findings",
    "therapy",
];

/// A CSV of medical reports, row by row.
fn csv_rows<'a>(
    path: &Path,
    signer: &'a Signer,
) -> Result<Box<dyn Iterator<Item = Result<Row>> + 'a>> {
    let mut rd = csv::ReaderBuilder::new()
        .flexible(false)
        .from_path(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let header: Vec<String> = rd
        .headers()
        .with_context(|| format!("{}: no header row", path.display()))?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    for h in &header {
        if !CSV_COLUMNS.contains(&h.as_str()) {
            bail!(
                "{}: unknown column {h:?}; a report CSV has the columns {}",
                path.display(),
                CSV_COLUMNS.join(", ")
            );
        }
    }
    let name = path.display().to_string();
    Ok(Box::new(rd.into_byte_records().enumerate().map(
        move |(i, rec)| {
            let line = i + 2;
            let at = format!("{name}:{line}");
            let col = |n: &str| header.iter().position(|h| h == n);
            Ok(match rec {
                Err(e) => Row {
                    at,
                    line: Some(line),
                    digest: String::new(),
                    tx: Err(refuse("malformed", e.to_string())),
                },
                Ok(rec) => {
                    let raw: Vec<u8> = rec
                        .iter()
                        .flat_map(|f| f.iter().copied().chain([0]))
                        .collect();
                    Row {
                        at,
                        line: Some(line),
                        digest: digest(&raw),
                        tx: csv_report(&rec, &col, signer)
                            .and_then(|p| signer.sign(MEDICAL_REPORT, &p)),
                    }
                }
            })
        },
    )))
}

fn csv_report(
    rec: &csv::ByteRecord,
    col: &dyn Fn(&str) -> Option<usize>,
    signer: &Signer,
) -> Result<Value, Refusal> {
    let field = |name: &str| -> Result<String, Refusal> {
        match col(name).and_then(|i| rec.get(i)) {
            Some(b) => String::from_utf8(b.to_vec())
                .map(|s| s.trim().to_owned())
                .map_err(|_| refuse("malformed", format!("column {name} is not UTF-8"))),
            None => Ok(String::new()),
        }
    };
    let patient = match (field("patient")?, field("lbo")?, field("jmbg")?) {
        (p, l, j) if !p.is_empty() && l.is_empty() && j.is_empty() => p,
        (p, l, j) if p.is_empty() && (l.is_empty() != j.is_empty()) => {
            let raw = if l.is_empty() { j } else { l };
            let id =
                Identifier::parse(&raw).map_err(|e| refuse("invalid_identifier", e.to_string()))?;
            signer.pseudonymize(&id)?
        }
        _ => {
            return Err(refuse(
                "schema_violation",
                "give exactly one of patient (a pseudonym), lbo or jmbg",
            ));
        }
    };
    let diagnoses: Vec<String> = field("diagnoses")?
        .split([';', ',', ' '])
        .filter(|d| !d.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(json!({
        "patient": patient,
        "institution": field("institution")?,
        "encounter_date": field("encounter_date")?,
        "diagnoses": diagnoses,
        "anamnesis": field("anamnesis")?,
        "findings": field("findings")?,
        "therapy": field("therapy")?,
    }))
}

/// References a stored resource may keep; bundle-local ones are rewritten
/// (the patient) or dropped (encounters, practitioners, other entries).
const DROPPED_REFERENCES: [&str; 8] = [
    "encounter",
    "performer",
    "requester",
    "recorder",
    "asserter",
    "basedOn",
    "hasMember",
    "derivedFrom",
];

/// The pseudonym of a FHIR Patient: from an LBO or JMBG among its
/// identifiers, else from its first identifier as `system|value`.
fn patient_pseudonym(resource: &Value, signer: &Signer) -> Result<String, Refusal> {
    let ids = resource["identifier"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let national = ids
        .iter()
        .find_map(|i| i["value"].as_str().and_then(|v| Identifier::parse(v).ok()));
    let id = national
        .or_else(|| {
            ids.iter()
                .find_map(|i| Identifier::external(i["system"].as_str()?, i["value"].as_str()?))
        })
        .ok_or_else(|| {
            refuse(
                "identifier_missing",
                "a Patient without an identifier cannot be pseudonymized",
            )
        })?;
    signer.pseudonymize(&id)
}

/// Rewrites a resource from a bundle for storage: the patient reference
/// becomes `Patient/<pseudonym>`, other bundle-local references are
/// dropped, and an ICD-10-CM-only Condition gains the WHO ICD-10 coding of
/// its category.
fn rewrite(resource: &Value, patients: &HashMap<String, String>) -> Value {
    let mut r = fhir::for_storage(resource);
    let Some(obj) = r.as_object_mut() else {
        return r;
    };
    for field in ["subject", "patient"] {
        if let Some(reference) = obj
            .get(field)
            .and_then(|s| s["reference"].as_str())
            .and_then(|s| patients.get(s))
        {
            obj.insert(
                field.into(),
                json!({ "reference": format!("Patient/{reference}") }),
            );
        }
    }
    for field in DROPPED_REFERENCES {
        let local = |v: &Value| {
            v["reference"]
                .as_str()
                .is_some_and(|s| s.starts_with("urn:"))
        };
        let drop = match obj.get(field) {
            Some(Value::Array(a)) => a.iter().any(local),
            Some(v) => local(v),
            None => false,
        };
        if drop {
            obj.remove(field);
        }
    }
    if obj.get("resourceType") == Some(&json!("Condition")) {
        add_who_coding(obj);
    }
    r
}

fn add_who_coding(obj: &mut Map<String, Value>) {
    const WHO: &str = "http://hl7.org/fhir/sid/icd-10";
    let Some(codings) = obj
        .get_mut("code")
        .and_then(|c| c.get_mut("coding"))
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    if codings.iter().any(|c| c["system"] == WHO) {
        return;
    }
    let who = codings.iter().find_map(|c| {
        let code = c["code"].as_str()?;
        (c["system"] == "http://hl7.org/fhir/sid/icd-10-cm")
            .then(|| {
                code.get(..5)
                    .unwrap_or(code)
                    .trim_end_matches('.')
                    .to_owned()
            })
            .filter(|w| fhir::is_icd10(w))
    });
    if let Some(code) = who {
        codings.push(json!({"system": WHO, "code": code}));
    }
}

/// Patients of FHIR inputs, by the names resources use for them (a
/// Bundle entry's fullUrl, or `Patient/<id>`): their pseudonyms, or why
/// they cannot have one.
#[derive(Default)]
struct Patients {
    known: HashMap<String, String>,
    refused: HashMap<String, Refusal>,
}

/// Resources of one FHIR input unit (a line or a file), each with where it
/// came from and the name other resources use for it.
fn resources(at: &str, v: Value) -> Result<Vec<(String, Option<String>, Value)>, Refusal> {
    if v["resourceType"] == "Bundle" {
        let b = fhir::parse_bundle(&v).map_err(|e| refuse("fhir_invalid", e.diagnostics))?;
        Ok(b.entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| (format!("{at}#{i}"), e.full_url, e.resource))
            .collect())
    } else {
        let name = v["id"]
            .as_str()
            .map(|id| format!("{}/{id}", v["resourceType"].as_str().unwrap_or("")));
        Ok(vec![(at.to_owned(), name, v)])
    }
}

/// One FHIR input unit: where it is, its line, its bytes.
type Unit = (String, Option<usize>, Vec<u8>);

/// The input units of a FHIR file: its lines, or the whole file.
fn fhir_units(path: &Path, format: Format) -> Result<Box<dyn Iterator<Item = Result<Unit>>>> {
    let name = path.display().to_string();
    if format == Format::Bundle {
        let bytes = std::fs::read(path).with_context(|| format!("reading {name}"))?;
        return Ok(Box::new(std::iter::once(Ok((name, None, bytes)))));
    }
    Ok(Box::new(lines(path)?.map(move |l| {
        l.map(|(n, bytes)| (format!("{name}:{n}"), Some(n), bytes))
    })))
}

/// First pass over the FHIR inputs: every Patient's pseudonym.
fn patients(inputs: &[(PathBuf, Format)], signer: &Signer) -> Result<Patients> {
    let mut p = Patients::default();
    for (path, format) in inputs {
        if !matches!(format, Format::FhirNdjson | Format::Bundle) {
            continue;
        }
        for unit in fhir_units(path, *format)? {
            let (at, _, bytes) = unit?;
            let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            for (_, name, r) in resources(&at, v).unwrap_or_default() {
                let Some(name) = name.filter(|_| r["resourceType"] == "Patient") else {
                    continue;
                };
                match patient_pseudonym(&r, signer) {
                    Ok(ps) => p.known.insert(name, ps),
                    Err(why) => p.refused.insert(name, why).map(|_| String::new()),
                };
            }
        }
    }
    Ok(p)
}

/// One FHIR resource made into a transaction, or refused.
fn fhir_tx(
    name: Option<&str>,
    resource: &Value,
    patients: &Patients,
    signer: &Signer,
) -> Result<Transaction, Refusal> {
    let ty = resource["resourceType"].as_str().unwrap_or("");
    if ty == "Patient" {
        return Err(match name.and_then(|n| patients.refused.get(n)) {
            Some(r) => r.clone(),
            None => refuse(
                "pseudonymized",
                "Patient replaced by its pseudonym in the resources that refer to it; not stored",
            ),
        });
    }
    if ty == "Practitioner" {
        return Err(refuse(
            "not_stored",
            "Practitioner resources carry names; practitioners are registered participants, not records",
        ));
    }
    let kind = fhir::kind_of(ty).ok_or_else(|| {
        refuse(
            "not_stored",
            format!(
                "{ty} resources are not stored (accepted: Observation, Condition, Immunization, MedicationRequest, MedicationDispense)"
            ),
        )
    })?;
    for field in ["subject", "patient"] {
        if let Some(r) = resource[field]["reference"].as_str()
            && let Some(why) = patients.refused.get(r)
        {
            return Err(refuse(
                &why.code,
                format!("its patient was refused: {}", why.detail),
            ));
        }
    }
    signer.sign(kind, &rewrite(resource, &patients.known))
}

/// Rows of a FHIR input unit (a line or a file).
fn fhir_unit_rows(
    at: String,
    line: Option<usize>,
    bytes: &[u8],
    patients: &Patients,
    signer: &Signer,
) -> Vec<Row> {
    let v = match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => v,
        Err(e) => {
            return vec![Row {
                at,
                line,
                digest: digest(bytes),
                tx: Err(refuse("malformed", e.to_string())),
            }];
        }
    };
    match resources(&at, v) {
        Err(r) => vec![Row {
            at,
            line,
            digest: digest(bytes),
            tx: Err(r),
        }],
        Ok(list) => list
            .into_iter()
            .map(|(at, name, r)| Row {
                digest: digest(&serde_json::to_vec(&r).unwrap_or_default()),
                tx: fhir_tx(name.as_deref(), &r, patients, signer),
                at,
                line,
            })
            .collect(),
    }
}

/// The non-blank lines of a file, numbered from 1, as they are read.
fn lines(path: &Path) -> Result<impl Iterator<Item = Result<(usize, Vec<u8>)>> + use<>> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(numbered(BufReader::new(f)))
}

fn numbered(r: impl BufRead) -> impl Iterator<Item = Result<(usize, Vec<u8>)>> {
    r.split(b'\n')
        .enumerate()
        .map(|(n, l)| l.map(|l| (n + 1, l)).map_err(anyhow::Error::from))
        .filter(|l| !matches!(l, Ok((_, b)) if b.iter().all(u8::is_ascii_whitespace)))
}

/// How many rows the input files hold, when that is cheap to know: signed
/// lines and CSV records are counted in a pass over the files (much faster
/// than checking and signing them). FHIR inputs, where one line may be a
/// Bundle of many rows, and stdin have no total.
fn total_rows(args: &ImportArgs) -> Result<Option<u64>> {
    let mut total = 0u64;
    for path in &args.files {
        let format = match args.format {
            Format::Auto => detect(path)?,
            f => f,
        };
        total += match format {
            Format::Signed => lines(path)?.count() as u64,
            Format::Csv => csv::Reader::from_path(path)
                .with_context(|| format!("opening {}", path.display()))?
                .byte_records()
                .count() as u64,
            _ => return Ok(None),
        };
    }
    Ok((!args.files.is_empty()).then_some(total))
}

fn detect(path: &Path) -> Result<Format> {
    let name = path.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".csv") {
        return Ok(Format::Csv);
    }
    let mut head = [0u8; 4096];
    let n = File::open(path)
        .with_context(|| format!("opening {}", path.display()))?
        .read(&mut head)?;
    let text = String::from_utf8_lossy(&head[..n]);
    let first_line = text.lines().next().unwrap_or("");
    // Signed transactions unless it is plainly FHIR: a line that fails to
    // parse is then refused on its own, as it always was. A signed
    // transaction may carry a FHIR resource as its payload (a
    // prescription): only a resourceType at the top of a line is FHIR.
    Ok(if !text.contains("\"resourceType\"") {
        Format::Signed
    } else {
        match serde_json::from_str::<Value>(first_line) {
            Ok(v) if v.get("resourceType").is_some() => Format::FhirNdjson,
            Ok(_) => Format::Signed,
            Err(_) => Format::Bundle,
        }
    })
}

fn signed_row(at: &str, n: usize, line: &[u8]) -> Row {
    let tx = serde_json::from_slice::<TxWire>(line)
        .map_err(|e| e.to_string())
        .and_then(|w| Transaction::from_wire(w).map_err(|e| e.to_string()))
        .map_err(|e| refuse("malformed", e));
    Row {
        at: format!("{at}:{n}"),
        line: Some(n),
        digest: digest(line),
        tx,
    }
}

/// Every input as a stream of rows. Signed lines and CSV rows are read as
/// they come (stdin can be a live pipe); FHIR inputs are read twice, first
/// for their Patients, whose pseudonyms replace references everywhere.
fn rows<'a>(
    args: &ImportArgs,
    signer: &'a Signer,
) -> Result<Box<dyn Iterator<Item = Result<Row>> + 'a>> {
    if args.files.is_empty() {
        let stdin = std::io::stdin().lock();
        return Ok(Box::new(
            numbered(stdin).map(|l| l.map(|(n, line)| signed_row("-", n, &line))),
        ));
    }
    let inputs = args
        .files
        .iter()
        .map(|p| {
            Ok((
                p.clone(),
                match args.format {
                    Format::Auto => detect(p)?,
                    f => f,
                },
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let patients = std::rc::Rc::new(patients(&inputs, signer)?);
    let mut all: Box<dyn Iterator<Item = Result<Row>> + 'a> = Box::new(std::iter::empty());
    for (path, format) in inputs {
        let name = path.display().to_string();
        let next: Box<dyn Iterator<Item = Result<Row>> + 'a> = match format {
            Format::Signed => {
                Box::new(lines(&path)?.map(move |l| l.map(|(n, line)| signed_row(&name, n, &line))))
            }
            Format::Csv => csv_rows(&path, signer)?,
            Format::FhirNdjson | Format::Bundle => {
                let patients = patients.clone();
                Box::new(fhir_units(&path, format)?.flat_map(move |u| {
                    match u {
                        Ok((at, line, bytes)) => {
                            fhir_unit_rows(at, line, &bytes, &patients, signer)
                                .into_iter()
                                .map(Ok)
                                .collect::<Vec<_>>()
                        }
                        Err(e) => vec![Err(e)],
                    }
                }))
            }
            Format::Auto => bail!("{name}: format not detected"),
        };
        all = Box::new(all.chain(next));
    }
    Ok(all)
}

fn with_line(mut v: Value, line: Option<usize>) -> Value {
    if let Some(n) = line {
        v["line"] = json!(n);
    }
    v
}

/// Waits for a batch and turns its rows into report lines, in input order.
fn settle(
    items: Vec<Item>,
    ticket: Ticket,
    lines: &mut Vec<Value>,
    tally: &mut Tally,
    receipts: Option<&Path>,
) -> Result<()> {
    let mut outcomes = ticket.wait().into_iter();
    for item in items {
        let (at, line, d) = match item {
            Item::Line(v) => {
                lines.push(v);
                continue;
            }
            Item::Tx(p) => {
                let (at, line, d, _) = *p;
                (at, line, d)
            }
        };
        let result = match outcomes.next() {
            Some(Ok((id, index, height, receipt))) => {
                tally.accepted += 1;
                if let Some(dir) = receipts {
                    std::fs::write(dir.join(format!("{}.tlog-proof", hex::encode(id))), receipt)?;
                }
                json!({"row": at, "digest": d, "id": hex::encode(id), "index": index, "height": height})
            }
            Some(Err(r)) => {
                tally.refused += 1;
                json!({"row": at, "digest": d, "error": r.code, "detail": r.detail})
            }
            None => bail!("the node returned fewer results than transactions"),
        };
        lines.push(with_line(result, line));
    }
    Ok(())
}

/// A row on its way: where, its line, its digest, its transaction.
type Pending = (String, Option<usize>, String, Transaction);

/// A row of a batch: a transaction to send, or a report line already known.
enum Item {
    Tx(Box<Pending>),
    Line(Value),
}

/// Counts of a finished import.
#[derive(Default)]
struct Tally {
    accepted: u64,
    already: u64,
    refused: u64,
}

/// Runs `medledger import`.
pub fn run(args: ImportArgs) -> Result<ExitCode> {
    let signer = Signer {
        key: args.key.as_deref().map(read_key_file).transpose()?,
        pseudonyms: args
            .pseudonym_key
            .as_deref()
            .map(medledger_node::load_pseudonym_key)
            .transpose()?,
    };
    let report = match (&args.report, args.files.first()) {
        (Some(r), _) => Some(r.clone()),
        (None, Some(f)) => Some(PathBuf::from(format!("{}.import.jsonl", f.display()))),
        (None, None) => None,
    };
    if let Some(dir) = &args.receipts {
        std::fs::create_dir_all(dir)?;
    }
    let mut journal = report.as_deref().map(Journal::open).transpose()?;
    let sink = Sink::open(args.url.as_deref(), args.vkey.as_deref(), &args.data_dir)?;
    let bar = crate::progress(total_rows(&args)?, "rows");
    let mut tally = Tally::default();
    let mut out = std::io::stdout().lock();
    let batch = args.batch.max(1);
    let mut todo: Vec<Item> = Vec::with_capacity(batch);
    let mut rows = rows(&args, &signer)?.peekable();
    let mut in_flight: Option<(Vec<Item>, Ticket)> = None;
    while rows.peek().is_some() || !todo.is_empty() || in_flight.is_some() {
        let mut done_lines = Vec::new();
        let mut due = Vec::new();
        // Take rows until a batch is full or the input ends.
        while todo.len() < batch {
            let Some(row) = rows.next() else { break };
            let row = row?;
            bar.inc(1);
            match journal.as_ref().and_then(|j| j.known.get(&row.at)) {
                Some(Known::Accepted { digest } | Known::Pending { digest, .. })
                    if !row.digest.is_empty() && *digest != row.digest =>
                {
                    bail!(
                        "{} changed since the report was written; remove it to import from scratch",
                        row.at
                    );
                }
                Some(Known::Accepted { .. }) => {
                    tally.already += 1;
                    continue;
                }
                Some(Known::Pending { id, digest }) => {
                    let id_bytes: Hash = hex::decode(id)
                        .ok()
                        .and_then(|b| b.try_into().ok())
                        .with_context(|| format!("{}: bad id in the report", row.at))?;
                    if let Some((index, height)) = sink.find(&id_bytes)? {
                        todo.push(Item::Line(with_line(
                            json!({"row": row.at, "digest": digest, "id": id, "index": index, "height": height}),
                            row.line,
                        )));
                        tally.already += 1;
                        continue;
                    }
                }
                _ => {}
            }
            match row.tx {
                Ok(tx) => todo.push(Item::Tx(Box::new((row.at, row.line, row.digest, tx)))),
                Err(r) => {
                    tally.refused += 1;
                    todo.push(Item::Line(with_line(
                        json!({"row": row.at, "digest": row.digest, "error": r.code, "detail": r.detail}),
                        row.line,
                    )));
                }
            }
        }
        if !todo.is_empty() {
            let txs: Vec<&Pending> = todo
                .iter()
                .filter_map(|i| match i {
                    Item::Tx(p) => Some(p.as_ref()),
                    Item::Line(_) => None,
                })
                .collect();
            let pending: Vec<Value> = txs
                .iter()
                .map(|(at, _, d, tx)| json!({"row": at, "digest": d, "pending": hex::encode(tx.id())}))
                .collect();
            if let Some(j) = &mut journal {
                j.write(&pending, true)?;
            }
            let ticket = sink.send(txs.iter().map(|(.., t)| t.clone()).collect());
            // From files, one batch is in flight while the next is read and
            // signed. From stdin the next line may be long in coming, so each
            // batch is acknowledged before reading on.
            due.extend(in_flight.replace((std::mem::take(&mut todo), ticket)));
        }
        if args.files.is_empty() || rows.peek().is_none() {
            due.extend(in_flight.take());
        }
        for (items, t) in due {
            settle(
                items,
                t,
                &mut done_lines,
                &mut tally,
                args.receipts.as_deref(),
            )?;
        }
        if let Some(j) = &mut journal {
            j.write(&done_lines, false)?;
        }
        if !args.quiet {
            for l in &done_lines {
                writeln!(out, "{l}")?;
            }
            out.flush()?;
        }
    }
    bar.finish_and_clear();
    if let Some(j) = &journal {
        j.file.sync_data()?;
    }
    sink.close()?;
    eprintln!(
        "imported {}, already in {}, refused {}{}",
        tally.accepted,
        tally.already,
        tally.refused,
        report
            .map(|r| format!("; report: {}", r.display()))
            .unwrap_or_default()
    );
    Ok(if tally.refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
