//! `medledger export`: research exports with a manifest, and their
//! verification.
//!
//! An export is written as of one signed checkpoint (size N): the records of
//! one kind below leaf N whose date lies in the query's days, in log order.
//! Beside FILE it writes `FILE.manifest.json`: the query, the checkpoint
//! note and N, the row count, the SHA-256 of FILE and the leaf of every row
//! in row order. Both are streamed to disk (the leaves through a temporary
//! file), so memory stays flat whatever the size.
//!
//! `medledger export verify` proves an export against a ledger at hand (a
//! stopped node's data directory or a running node): the manifest's
//! checkpoint is signed by the trusted key; the ledger is consistent with
//! it; every row is the ledger's record at its leaf, re-rendered byte for
//! byte; and nothing is missing: every record of the kind below N that the
//! query selects is in the export, and nothing else is, but for exactly as
//! many as the manifest says the node withheld under the patients' consent
//! directives (`withheld`: the node names how many, never whose).

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use clap::{Args, Subcommand};
use medledger_client::{Client, Error as ClientError, Trust, Verdict};
use medledger_formats::checkpoint::Checkpoint;
use medledger_formats::merkle::{self, Frontier, Hash};
use medledger_formats::note::{Note, NoteVerifier};
use medledger_health::export::{Export, Format, ParsedRow, Query};
use medledger_ledger::{Ledger, Store};
use medledger_node::http::{CHECKPOINT_HEADER, LOG_SIZE_HEADER, WITHHELD_HEADER};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Version of the manifest format.
pub const MANIFEST_VERSION: u32 = 1;
/// Exit code when the ledger at hand contradicts the manifest's checkpoint.
pub const EXIT_INCONSISTENT: u8 = crate::remote::EXIT_INCONSISTENT;
/// Exit code of `export verify` when the export checks out but holds rows
/// whose records were redacted since it was made.
const EXIT_REDACTED_SINCE: u8 = 4;
/// Blocks asked for per `/v1/blocks` page.
const BLOCKS_PAGE: u64 = 100;
/// How long one read from a node may wait.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
        .map_err(|e: medledger_health::export::ExportError| e.to_string())
}

/// `medledger export`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ExportArgs {
    #[command(subcommand)]
    command: Option<ExportCommand>,
    /// Kind to export: medical_report, vital_signs, epidemic_report,
    /// vaccination_report, organ_donor_decision, fhir.observation,
    /// fhir.condition or fhir.immunization.
    #[arg(long, required = true)]
    kind: Option<String>,
    /// First day, YYYY-MM-DD (UTC), inclusive.
    #[arg(long)]
    from: Option<String>,
    /// Last day, YYYY-MM-DD (UTC), inclusive.
    #[arg(long)]
    to: Option<String>,
    /// Output format: csv, ndjson or fhir-ndjson (FHIR kinds only).
    #[arg(long, required = true, value_parser = parse_format)]
    format: Option<Format>,
    /// Data directory of a stopped node.
    #[arg(long, conflicts_with = "url", required_unless_present = "url")]
    data_dir: Option<PathBuf>,
    /// A running node's URL (with --token).
    #[arg(long, requires = "token")]
    url: Option<String>,
    /// Bearer token of a record reader (with --url).
    #[arg(long, requires = "url")]
    token: Option<String>,
    /// The node's verifier key (with --url): the checkpoint the node pins
    /// must verify with it.
    #[arg(long, requires = "url")]
    vkey: Option<String>,
    /// The export file; the manifest is written to FILE.manifest.json.
    #[arg(long, required = true)]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ExportCommand {
    /// Prove an export complete and unchanged against a ledger.
    ///
    /// Checks the manifest checkpoint's signature, the ledger's consistency
    /// with it, every row byte for byte against the ledger's record at its
    /// leaf, and that no record the query selects is missing. Exits 0 on
    /// success, 1 when the export does not verify, 3 when the ledger
    /// contradicts the checkpoint.
    Verify(VerifyArgs),
}

#[derive(Args)]
struct VerifyArgs {
    /// The export file.
    file: PathBuf,
    /// The manifest (default: FILE.manifest.json).
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Data directory of a stopped node holding the ledger.
    #[arg(long, conflicts_with = "url", required_unless_present = "url")]
    data_dir: Option<PathBuf>,
    /// A running node's URL (with --token).
    #[arg(long, requires = "token")]
    url: Option<String>,
    /// Bearer token of a record reader (with --url).
    #[arg(long, requires = "url")]
    token: Option<String>,
    /// The node's verifier key: the manifest's checkpoint must be signed by it.
    #[arg(long)]
    vkey: String,
}

/// Runs `medledger export` or `medledger export verify`.
pub fn run(a: ExportArgs) -> Result<ExitCode> {
    if let Some(ExportCommand::Verify(v)) = a.command {
        return verify(v);
    }
    let (Some(kind), Some(format), Some(out)) = (a.kind, a.format, a.out) else {
        bail!("--kind, --format and --out are required");
    };
    let query = Query {
        kind,
        from: a.from,
        to: a.to,
        format,
    };
    let export = query.check()?;
    let manifest = manifest_path(&out);
    let mut w = ExportWriter::create(&out, &manifest)?;
    let (note, size) = match (&a.data_dir, &a.url, &a.token) {
        (Some(dir), None, _) => export_dir(dir, &export, &mut w)?,
        (None, Some(url), Some(token)) => {
            export_url(url, token, a.vkey.as_deref(), &query, &export, &mut w)?
        }
        _ => bail!("give --data-dir DIR, or --url URL with --token TOKEN"),
    };
    let (rows, withheld) = (w.rows, w.withheld);
    w.finish(&query, &note, size)?;
    println!(
        "exported {rows} {} rows as of log size {size} to {} (manifest {}); {withheld} withheld \
         under the patients' consent",
        query.kind,
        out.display(),
        manifest.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `FILE.manifest.json`.
fn manifest_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".manifest.json");
    PathBuf::from(name)
}

/// `PATH` with `suffix` appended to its name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

// ---- writing ------------------------------------------------------------------

/// Writes an export and its manifest through temporary files, renamed into
/// place once complete; dropped unfinished, it removes them.
struct ExportWriter {
    out: PathBuf,
    manifest: PathBuf,
    tmp: PathBuf,
    leaves_tmp: PathBuf,
    file: BufWriter<File>,
    leaves: BufWriter<File>,
    sha: Sha256,
    rows: u64,
    /// Records the node withheld under consent.
    withheld: u64,
    done: bool,
}

impl ExportWriter {
    fn create(out: &Path, manifest: &Path) -> Result<Self> {
        let tmp = sibling(out, ".tmp");
        let leaves_tmp = sibling(manifest, ".leaves.tmp");
        let open = |p: &Path| -> Result<BufWriter<File>> {
            Ok(BufWriter::new(
                File::create(p).with_context(|| format!("creating {}", p.display()))?,
            ))
        };
        Ok(ExportWriter {
            out: out.to_path_buf(),
            manifest: manifest.to_path_buf(),
            file: open(&tmp)?,
            leaves: open(&leaves_tmp)?,
            tmp,
            leaves_tmp,
            sha: Sha256::new(),
            rows: 0,
            withheld: 0,
            done: false,
        })
    }

    fn bytes(&mut self, b: &[u8]) -> Result<()> {
        self.sha.update(b);
        self.file
            .write_all(b)
            .with_context(|| format!("writing {}", self.tmp.display()))
    }

    fn row(&mut self, leaf: u64, row: &[u8]) -> Result<()> {
        self.bytes(row)?;
        self.leaves.write_all(&leaf.to_le_bytes())?;
        self.rows += 1;
        Ok(())
    }

    fn finish(mut self, query: &Query, note: &str, size: u64) -> Result<()> {
        self.leaves.flush()?;
        self.file.flush()?;
        self.file.get_ref().sync_all()?;
        let sha256 = hex::encode(std::mem::take(&mut self.sha).finalize());
        let manifest_tmp = sibling(&self.manifest, ".tmp");
        {
            let mut m = BufWriter::new(
                File::create(&manifest_tmp)
                    .with_context(|| format!("creating {}", manifest_tmp.display()))?,
            );
            let manifest = ManifestOut {
                v: MANIFEST_VERSION,
                query,
                checkpoint: note,
                log_size: size,
                rows: self.rows,
                withheld: self.withheld,
                sha256,
                leaves: LeafFile(&self.leaves_tmp, self.rows),
            };
            serde_json::to_writer(&mut m, &manifest)?;
            m.write_all(b"\n")?;
            m.flush()?;
            m.get_ref().sync_all()?;
        }
        std::fs::rename(&self.tmp, &self.out)
            .with_context(|| format!("renaming onto {}", self.out.display()))?;
        std::fs::rename(&manifest_tmp, &self.manifest)
            .with_context(|| format!("renaming onto {}", self.manifest.display()))?;
        let _ = std::fs::remove_file(&self.leaves_tmp);
        if let Some(dir) = self.out.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).ok();
        }
        self.done = true;
        Ok(())
    }
}

impl Drop for ExportWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
            let _ = std::fs::remove_file(&self.leaves_tmp);
        }
    }
}

/// The manifest as written.
#[derive(Serialize)]
struct ManifestOut<'a> {
    v: u32,
    query: &'a Query,
    checkpoint: &'a str,
    log_size: u64,
    rows: u64,
    withheld: u64,
    sha256: String,
    leaves: LeafFile<'a>,
}

/// The leaves gathered in a temporary file (little-endian u64s), serialized
/// as a JSON array as they are read back.
struct LeafFile<'a>(&'a Path, u64);

impl Serialize for LeafFile<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let f = File::open(self.0).map_err(S::Error::custom)?;
        let mut r = BufReader::new(f);
        let mut seq = s.serialize_seq(Some(self.1 as usize))?;
        let mut b = [0u8; 8];
        for _ in 0..self.1 {
            r.read_exact(&mut b).map_err(S::Error::custom)?;
            seq.serialize_element(&u64::from_le_bytes(b))?;
        }
        seq.end()
    }
}

/// Exports from a stopped node's data directory.
fn export_dir(dir: &Path, export: &Export, w: &mut ExportWriter) -> Result<(String, u64)> {
    let ledger = Ledger::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    let store = &ledger.store;
    let (note, size) = medledger_node::http::pin(store)?;
    w.bytes(&export.header())?;
    let mut failed = None;
    medledger_node::http::rows(store, export, size, |leaf, row| match w.row(leaf, &row) {
        Ok(()) => ControlFlow::Continue(()),
        Err(e) => {
            failed = Some(e);
            ControlFlow::Break(())
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    Ok((note.render(), size))
}

/// Exports through a running node. The node is asked for NDJSON, whose rows
/// carry each record's leaf and exact payload bytes; rows in the requested
/// format are rendered from them here, so the file is byte for byte what
/// the node would send in that format.
fn export_url(
    url: &str,
    token: &str,
    vkey: Option<&str>,
    query: &Query,
    export: &Export,
    w: &mut ExportWriter,
) -> Result<(String, u64)> {
    let http = reqwest::blocking::Client::builder()
        .timeout(READ_TIMEOUT)
        .connect_timeout(Duration::from_secs(30))
        .build()?;
    let mut params = vec![("kind", query.kind.as_str()), ("format", "ndjson")];
    if let Some(f) = &query.from {
        params.push(("from", f));
    }
    if let Some(t) = &query.to {
        params.push(("to", t));
    }
    let resp = http
        .get(format!("{}/v1/export", url.trim_end_matches('/')))
        .query(&params)
        .bearer_auth(token.trim())
        .send()
        .with_context(|| format!("requesting an export from {url}"))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().unwrap_or_default();
        let detail = serde_json::from_str::<medledger_client::Problem>(&body)
            .map(|p| format!("{} {}", p.code, p.detail))
            .unwrap_or(body);
        bail!("the node refused the export: HTTP {status}: {detail}");
    }
    let header = |name: &str| -> Result<String> {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("the node's answer lacks the {name} header"))
    };
    let note_bytes = base64::engine::general_purpose::STANDARD
        .decode(header(CHECKPOINT_HEADER)?)
        .context("the checkpoint header is not base64")?;
    let note_text = String::from_utf8(note_bytes).context("the checkpoint is not UTF-8")?;
    let note = Note::parse(&note_text).context("the checkpoint header is not a signed note")?;
    let cp = match vkey {
        Some(v) => {
            Trust::from_vkey(v)
                .context("--vkey")?
                .checkpoint(&note_text)
                .context("the node's checkpoint does not verify with --vkey")?
                .checkpoint
        }
        None => Checkpoint::from_text(&note.text).context("the node's checkpoint")?,
    };
    let size: u64 = header(LOG_SIZE_HEADER)?
        .parse()
        .context("the log size header is not a number")?;
    w.withheld = header(WITHHELD_HEADER)?
        .parse()
        .context("the withheld header is not a number")?;
    if size != cp.size {
        bail!(
            "the node says log size {size} but its checkpoint has size {}",
            cp.size
        );
    }
    w.bytes(&export.header())?;
    let mut last: Option<u64> = None;
    for (n, line) in BufReader::new(resp).split(b'\n').enumerate() {
        let line = line.context("reading the export from the node (the transfer broke off)")?;
        let row: ParsedRow = serde_json::from_slice(&line)
            .with_context(|| format!("row {} from the node is not an export row", n + 1))?;
        let payload = row.record.get().as_bytes();
        let sane = row.kind == query.kind
            && row.leaf < size
            && last.is_none_or(|l| l < row.leaf)
            && export.selects(payload);
        if !sane {
            bail!(
                "row {} from the node (leaf {}) is not a {} record of the query below size {size}",
                n + 1,
                row.leaf,
                query.kind
            );
        }
        last = Some(row.leaf);
        let bytes = export.row(row.leaf, &row.id, row.recorded, payload)?;
        w.row(row.leaf, &bytes)?;
    }
    Ok((note_text, size))
}

// ---- verifying ------------------------------------------------------------------

/// How a verification ends, short of success.
enum Outcome {
    /// The export does not verify (exit 1).
    Bad(String),
    /// The ledger at hand contradicts the manifest's checkpoint (exit 3).
    Inconsistent(String),
    /// Verification could not be carried out (exit 2).
    Error(anyhow::Error),
}

impl From<anyhow::Error> for Outcome {
    fn from(e: anyhow::Error) -> Self {
        Outcome::Error(e)
    }
}

impl From<medledger_ledger::LedgerError> for Outcome {
    fn from(e: medledger_ledger::LedgerError) -> Self {
        Outcome::Error(e.into())
    }
}

impl From<ClientError> for Outcome {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Verify(v) => {
                Outcome::Bad(format!("the node's answer does not verify: {v}"))
            }
            other => Outcome::Error(other.into()),
        }
    }
}

type Checked<T> = std::result::Result<T, Outcome>;

/// The manifest's fields but the leaves.
#[derive(Deserialize)]
struct ManifestHead {
    v: u32,
    query: Query,
    checkpoint: String,
    log_size: u64,
    rows: u64,
    /// Selected records the node withheld under consent (older manifests
    /// have none).
    #[serde(default)]
    withheld: u64,
    sha256: String,
    #[serde(rename = "leaves")]
    _leaves: IgnoredAny,
}

/// A record of the exported kind in the ledger at hand.
struct Entry {
    leaf: u64,
    id: Hash,
    time: u64,
    payload: Vec<u8>,
    /// Its payload was erased by a redaction since (`payload` is empty).
    redacted: bool,
}

/// Walks every transaction below the checkpoint's size in a ledger,
/// recomputing the log's root from their ids, and yields those of one kind
/// with their payloads, each proven to be in the checkpoint's tree.
trait Source {
    /// The next transaction of the kind, in log order.
    fn next_entry(&mut self) -> Checked<Option<Entry>>;
    /// Once `next_entry` returned `None`: every leaf below the size was
    /// walked; their root must be the checkpoint's.
    fn finish(&self) -> Checked<()>;
}

/// The signed checkpoint a manifest names, verified.
struct Pinned {
    note: Note,
    cp: Checkpoint,
    verifier: NoteVerifier,
}

fn walked_root(frontier: &Frontier, p: &Pinned) -> Checked<()> {
    if frontier.size() != p.cp.size || frontier.root() != p.cp.root {
        return Err(Outcome::Inconsistent(format!(
            "the ledger's first {} transactions hash to root {}, not the checkpoint's {}",
            frontier.size(),
            hex::encode(frontier.root()),
            hex::encode(p.cp.root)
        )));
    }
    Ok(())
}

/// A stopped node's data directory.
struct DirSource<'a> {
    store: &'a Store,
    kind: &'static str,
    pinned: &'a Pinned,
    height: u64,
    frontier: Frontier,
    queue: VecDeque<Entry>,
}

impl Source for DirSource<'_> {
    fn next_entry(&mut self) -> Checked<Option<Entry>> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Ok(Some(e));
            }
            let size = self.pinned.cp.size;
            if self.frontier.size() >= size {
                return Ok(None);
            }
            let (header, stubs) = self.store.block_headers(self.height)?;
            let h = header.header();
            if h.height != self.height || h.first_leaf != self.frontier.size() || h.log_size > size
            {
                return Err(Outcome::Inconsistent(format!(
                    "block {} does not continue the log at leaf {} below size {size}",
                    self.height,
                    self.frontier.size()
                )));
            }
            let mut wanted = Vec::new();
            for (i, s) in stubs.iter().enumerate() {
                self.frontier.push(s.id, |_, _, _| {});
                if s.header.kind == self.kind {
                    wanted.push(i);
                }
            }
            if !wanted.is_empty() {
                let block = self.store.block(self.height)?;
                for i in wanted {
                    let leaf = h.first_leaf + i as u64;
                    let tx = block
                        .txs
                        .get(i)
                        .filter(|t| t.id() == &stubs[i].id)
                        .ok_or_else(|| {
                            Outcome::Error(anyhow!("block {} changed while read", self.height))
                        })?;
                    // An inclusion proof against the manifest's checkpoint.
                    let proof = self.store.receipt(leaf, Some(&self.pinned.note))?;
                    proof
                        .verify(
                            tx.id(),
                            Some(&self.pinned.cp.origin),
                            std::slice::from_ref(&self.pinned.verifier),
                        )
                        .map_err(|e| {
                            Outcome::Inconsistent(format!(
                                "leaf {leaf} is not proven in the checkpoint's tree: {e}"
                            ))
                        })?;
                    self.queue.push_back(Entry {
                        leaf,
                        id: *tx.id(),
                        time: tx.header().time,
                        payload: tx.payload_jcs().to_vec(),
                        redacted: tx.is_redacted(),
                    });
                }
            }
            self.height += 1;
        }
    }

    fn finish(&self) -> Checked<()> {
        walked_root(&self.frontier, self.pinned)
    }
}

/// A running node, read through the verifying client.
struct UrlSource<'a> {
    client: &'a Client,
    token: &'a str,
    kind: &'static str,
    pinned: &'a Pinned,
    next_height: u64,
    frontier: Frontier,
    page: VecDeque<(
        medledger_client::Block,
        medledger_formats::block::SealedHeader,
    )>,
    queue: VecDeque<Entry>,
    /// Checkpoints (size, root) proven to extend the manifest's.
    extended: Vec<(u64, Hash)>,
}

impl UrlSource<'_> {
    /// Proves the tree of `cp` extends the manifest's checkpoint.
    fn extends(&mut self, cp: &Checkpoint) -> Checked<()> {
        let (n, root) = (self.pinned.cp.size, self.pinned.cp.root);
        if (cp.size == n && cp.root == root) || self.extended.contains(&(cp.size, cp.root)) {
            return Ok(());
        }
        if cp.size <= n {
            return Err(Outcome::Inconsistent(format!(
                "the node proves a record against size {} root {}, which is not an extension of \
                 the manifest's size {n}",
                cp.size,
                hex::encode(cp.root)
            )));
        }
        let proof = self.client.consistency(n, Some(cp.size))?;
        merkle::verify_consistency(n, cp.size, &proof.proof, &root, &cp.root).map_err(|e| {
            Outcome::Inconsistent(format!(
                "the consistency proof from size {n} to {} does not verify: {e}",
                cp.size
            ))
        })?;
        self.extended.push((cp.size, cp.root));
        Ok(())
    }
}

impl Source for UrlSource<'_> {
    fn next_entry(&mut self) -> Checked<Option<Entry>> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Ok(Some(e));
            }
            let size = self.pinned.cp.size;
            if self.frontier.size() >= size {
                return Ok(None);
            }
            if self.page.is_empty() {
                let page = self.client.blocks(self.next_height, BLOCKS_PAGE)?;
                if page.blocks.is_empty() {
                    return Err(Outcome::Inconsistent(format!(
                        "the node's log ends at leaf {}, before the checkpoint's size {size}",
                        self.frontier.size()
                    )));
                }
                self.page.extend(page.blocks);
            }
            let Some((block, sealed)) = self.page.pop_front() else {
                continue;
            };
            let h = sealed.header();
            if h.height != self.next_height
                || h.first_leaf != self.frontier.size()
                || h.log_size > size
            {
                return Err(Outcome::Inconsistent(format!(
                    "block {} does not continue the log at leaf {} below size {size}",
                    self.next_height,
                    self.frontier.size()
                )));
            }
            for (i, t) in block.transactions.iter().enumerate() {
                let leaf = h.first_leaf + i as u64;
                let id: Hash = hex::decode(&t.id)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| Outcome::Bad(format!("block {}: bad id {}", h.height, t.id)))?;
                self.frontier.push(id, |_, _, _| {});
                if t.header.kind != self.kind {
                    continue;
                }
                // The client checks the id, the payload's commitment, the
                // author's signature and the receipt (an inclusion proof
                // against a checkpoint signed by the trusted key). A record
                // redacted since answers 410: its header is still proven.
                let (receipt, time, payload, redacted) =
                    match self.client.transaction(&id, self.token) {
                        Ok(got) => (
                            got.receipt,
                            got.tx.header().time,
                            got.tx.payload_jcs().to_vec(),
                            false,
                        ),
                        Err(e) if e.problem().is_some_and(|p| p.status == 410) => {
                            (self.client.receipt(&id)?, t.header.time, Vec::new(), true)
                        }
                        Err(e) => return Err(e.into()),
                    };
                if receipt.index != leaf {
                    return Err(Outcome::Inconsistent(format!(
                        "the node proves transaction {} at leaf {}, but block {} lists it at leaf {leaf}",
                        t.id, receipt.index, h.height
                    )));
                }
                self.extends(&receipt.checkpoint)?;
                self.queue.push_back(Entry {
                    leaf,
                    id,
                    time,
                    payload,
                    redacted,
                });
            }
            self.next_height += 1;
        }
    }

    fn finish(&self) -> Checked<()> {
        walked_root(&self.frontier, self.pinned)
    }
}

/// The export file, read row by row against the rows expected.
struct FileRows {
    reader: BufReader<File>,
    sha: Sha256,
    /// Line number where the next row starts (1-based).
    line: u64,
    buf: Vec<u8>,
}

impl FileRows {
    /// Reads `expected.len()` bytes (fewer at the end of the file); returns
    /// the offset of the first difference, if any.
    fn expect(&mut self, expected: &[u8]) -> Result<Option<usize>> {
        self.buf.clear();
        (&mut self.reader)
            .take(expected.len() as u64)
            .read_to_end(&mut self.buf)?;
        self.sha.update(&self.buf);
        self.line += self.buf.iter().filter(|b| **b == b'\n').count() as u64;
        Ok(if self.buf == expected {
            None
        } else {
            Some(
                self.buf
                    .iter()
                    .zip(expected)
                    .position(|(a, b)| a != b)
                    .unwrap_or(self.buf.len().min(expected.len())),
            )
        })
    }

    /// Reads one row whatever it holds (hashing it, as every byte is):
    /// one line, or for CSV as many lines as a quoted field spans (RFC 4180
    /// doubles a quote inside one, so a row ends at a newline after an even
    /// number of quotes).
    fn skip(&mut self, csv: bool) -> Result<Vec<u8>> {
        let mut row = Vec::new();
        loop {
            let n = self.reader.read_until(b'\n', &mut row)?;
            let quotes = row.iter().filter(|b| **b == b'"').count();
            if n == 0 || !csv || quotes % 2 == 0 {
                break;
            }
        }
        self.sha.update(&row);
        self.line += row.iter().filter(|b| **b == b'\n').count() as u64;
        Ok(row)
    }

    /// Hashes the rest of the file; returns how many bytes were left.
    fn rest(&mut self) -> Result<u64> {
        let mut n = 0;
        loop {
            let chunk = self.reader.fill_buf()?;
            if chunk.is_empty() {
                return Ok(n);
            }
            let len = chunk.len();
            self.sha.update(chunk);
            self.reader.consume(len);
            n += len as u64;
        }
    }
}

/// Checks the rows one manifest leaf at a time against the ledger's walk.
struct Checker<'a> {
    export: &'a Export,
    size: u64,
    source: &'a mut dyn Source,
    pending: Option<Entry>,
    file: FileRows,
    rows: u64,
    last: Option<u64>,
    /// Absent records the manifest accounts for as withheld.
    allowed: u64,
    /// Absent records met so far.
    withheld: u64,
    /// Rows whose records were redacted since the export: leaf and id.
    redacted: Vec<(u64, String)>,
}

fn day_of(export: &Export, payload: &[u8]) -> String {
    medledger_health::export::record_date_ms(export.kind(), payload)
        .map(|ms| medledger_health::calendar::date_of_ms(ms.max(0) as u64))
        .unwrap_or_else(|| "undated".into())
}

impl Checker<'_> {
    /// A selected record absent from the export: one of those the node
    /// said it withheld, or a gap.
    fn absent(&mut self, e: &Entry, before: &str) -> Checked<()> {
        if self.withheld < self.allowed {
            self.withheld += 1;
            return Ok(());
        }
        Err(self.missing(e, before))
    }

    fn missing(&self, e: &Entry, before: &str) -> Outcome {
        Outcome::Bad(format!(
            "incomplete: the ledger's {} at leaf {} (id {}, dated {}) is selected by the query \
             but is not in the export ({before})",
            self.export.kind(),
            e.leaf,
            hex::encode(e.id),
            day_of(self.export, &e.payload)
        ))
    }

    fn row(&mut self, leaf: u64) -> Checked<()> {
        self.rows += 1;
        let (n, line) = (self.rows, self.file.line);
        let at = format!("row {n} (line {line}, leaf {leaf})");
        if self.last.is_some_and(|l| l >= leaf) {
            return Err(Outcome::Bad(format!(
                "{at}: the manifest's leaves are not in increasing order"
            )));
        }
        self.last = Some(leaf);
        if leaf >= self.size {
            return Err(Outcome::Bad(format!(
                "{at}: the leaf is not below the checkpoint's size {}",
                self.size
            )));
        }
        loop {
            match self.pending.take() {
                Some(e) if e.leaf < leaf => {
                    if self.export.selects(&e.payload) {
                        self.absent(&e, &format!("it belongs before row {n}"))?;
                    }
                    self.pending = self.source.next_entry()?;
                }
                Some(e) if e.leaf == leaf && e.redacted => {
                    // The content is gone from the ledger, so the row cannot
                    // be checked against it; it must at least name the
                    // record, and the file's digest still covers it.
                    let id = hex::encode(e.id);
                    let row = self.file.skip(self.export.format() == Format::Csv)?;
                    if !row.windows(id.len()).any(|w| w == id.as_bytes()) {
                        return Err(Outcome::Bad(format!(
                            "{at}: the ledger's record there (id {id}) was redacted, and the row does not name it"
                        )));
                    }
                    self.redacted.push((leaf, id));
                    self.pending = self.source.next_entry()?;
                    return Ok(());
                }
                Some(e) if e.leaf == leaf => {
                    if !self.export.selects(&e.payload) {
                        return Err(Outcome::Bad(format!(
                            "{at}: the ledger's record there is dated {}, outside the query's days",
                            day_of(self.export, &e.payload)
                        )));
                    }
                    let expected = self
                        .export
                        .row(leaf, &hex::encode(e.id), e.time, &e.payload)
                        .map_err(|err| Outcome::Error(err.into()))?;
                    if let Some(byte) = self.file.expect(&expected)? {
                        return Err(Outcome::Bad(format!(
                            "{at}: differs from the ledger's record (id {}) at byte {} of the row",
                            hex::encode(e.id),
                            byte + 1
                        )));
                    }
                    self.pending = self.source.next_entry()?;
                    return Ok(());
                }
                other => {
                    self.pending = other;
                    return Err(Outcome::Bad(format!(
                        "{at}: the ledger holds no {} record at that leaf",
                        self.export.kind()
                    )));
                }
            }
        }
    }
}

/// Streams the manifest's `leaves` array into `f`, one leaf at a time; a
/// failure of `f` stops the parse and is kept in `stopped`.
struct Leaves<'a, F> {
    f: &'a mut F,
    stopped: &'a mut Option<Outcome>,
    seen: &'a mut bool,
}

impl<'de, F: FnMut(u64) -> Checked<()>> DeserializeSeed<'de> for Leaves<'_, F> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F: FnMut(u64) -> Checked<()>> Visitor<'de> for Leaves<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a manifest object with a leaves array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "leaves" {
                *self.seen = true;
                map.next_value_seed(LeafArray {
                    f: &mut *self.f,
                    stopped: &mut *self.stopped,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct LeafArray<'a, F> {
    f: &'a mut F,
    stopped: &'a mut Option<Outcome>,
}

impl<'de, F: FnMut(u64) -> Checked<()>> DeserializeSeed<'de> for LeafArray<'_, F> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(u64) -> Checked<()>> Visitor<'de> for LeafArray<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of leaf indexes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(leaf) = seq.next_element::<u64>()? {
            if let Err(o) = (self.f)(leaf) {
                *self.stopped = Some(o);
                return Err(de::Error::custom("verification stopped"));
            }
        }
        Ok(())
    }
}

fn verify(a: VerifyArgs) -> Result<ExitCode> {
    let manifest = a.manifest.clone().unwrap_or_else(|| manifest_path(&a.file));
    match verify_export(&a, &manifest) {
        Ok((summary, redacted)) if redacted.is_empty() => {
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Ok((summary, redacted)) => {
            println!("{summary}");
            for (leaf, id) in &redacted {
                eprintln!(
                    "redacted since export: the row of leaf {leaf} (id {id}); its record was erased \
                     from the ledger, delete it from every copy of this export"
                );
            }
            Ok(ExitCode::from(EXIT_REDACTED_SINCE))
        }
        Err(Outcome::Bad(why)) => {
            eprintln!("export INVALID: {}: {why}", a.file.display());
            Ok(ExitCode::from(1))
        }
        Err(Outcome::Inconsistent(why)) => {
            eprintln!(
                "INCONSISTENT: the ledger at hand contradicts the manifest's checkpoint: {why}"
            );
            Ok(ExitCode::from(EXIT_INCONSISTENT))
        }
        Err(Outcome::Error(e)) => Err(e),
    }
}

/// Rows of an export whose records a redaction erased since: leaf and id.
type RedactedRows = Vec<(u64, String)>;

fn verify_export(a: &VerifyArgs, manifest: &Path) -> Checked<(String, RedactedRows)> {
    let open = |p: &Path| -> Checked<File> {
        File::open(p)
            .with_context(|| format!("opening {}", p.display()))
            .map_err(Outcome::Error)
    };
    let head: ManifestHead =
        serde_json::from_reader(BufReader::new(open(manifest)?)).map_err(|e| {
            Outcome::Bad(format!(
                "{} is not an export manifest: {e}",
                manifest.display()
            ))
        })?;
    if head.v != MANIFEST_VERSION {
        return Err(Outcome::Bad(format!(
            "manifest version {} is not {MANIFEST_VERSION}",
            head.v
        )));
    }
    let export = head
        .query
        .check()
        .map_err(|e| Outcome::Bad(format!("the manifest's query: {e}")))?;
    // The checkpoint must be signed by the trusted key.
    let trust = Trust::from_vkey(&a.vkey)
        .context("--vkey")
        .map_err(Outcome::Error)?;
    let signed = trust.checkpoint(&head.checkpoint).map_err(|e| {
        Outcome::Bad(format!(
            "the manifest's checkpoint does not verify with the trusted key: {e}"
        ))
    })?;
    if signed.checkpoint.size != head.log_size {
        return Err(Outcome::Bad(format!(
            "the manifest's log_size {} is not its checkpoint's size {}",
            head.log_size, signed.checkpoint.size
        )));
    }
    let pinned = Pinned {
        note: Note::parse(&head.checkpoint).map_err(|e| Outcome::Error(e.into()))?,
        cp: signed.checkpoint.clone(),
        verifier: trust.verifiers()[0].clone(),
    };
    let size = pinned.cp.size;
    let file = FileRows {
        reader: BufReader::new(open(&a.file)?),
        sha: Sha256::new(),
        line: 1,
        buf: Vec::new(),
    };
    let mode;
    let result = match (&a.data_dir, &a.url, &a.token) {
        (Some(dir), None, _) => {
            mode = "data directory";
            let ledger = Ledger::open(dir)
                .with_context(|| format!("opening {}", dir.display()))
                .map_err(Outcome::Error)?;
            let store = &ledger.store;
            // The ledger's checkpoint at that size must have the same root.
            let at = store.checkpoint_at(size).map_err(|e| {
                Outcome::Inconsistent(format!("the ledger has no checkpoint of size {size}: {e}"))
            })?;
            let mine = Checkpoint::from_text(&at.text).map_err(|e| Outcome::Error(e.into()))?;
            if mine.origin != pinned.cp.origin || mine.root != pinned.cp.root {
                return Err(Outcome::Inconsistent(format!(
                    "at size {size} the ledger ({}) has root {}, the manifest's checkpoint ({}) {}",
                    mine.origin,
                    hex::encode(mine.root),
                    pinned.cp.origin,
                    hex::encode(pinned.cp.root)
                )));
            }
            let mut source = DirSource {
                store,
                kind: export.kind(),
                pinned: &pinned,
                height: 0,
                frontier: Frontier::new(),
                queue: VecDeque::new(),
            };
            check_rows(manifest, &head, &export, size, &mut source, file)
        }
        (None, Some(url), Some(token)) => {
            mode = "node";
            let client = Client::new(url, trust.clone()).map_err(Outcome::from)?;
            // The node's current checkpoint must extend the manifest's.
            let current = client.checkpoint()?;
            match client.compare(&signed, &current)? {
                Verdict::Unchanged | Verdict::Extends(_) => {}
                Verdict::Inconsistent(ev) => return Err(Outcome::Inconsistent(ev.to_string())),
            }
            let mut source = UrlSource {
                client: &client,
                token,
                kind: export.kind(),
                pinned: &pinned,
                next_height: 0,
                frontier: Frontier::new(),
                page: VecDeque::new(),
                queue: VecDeque::new(),
                extended: vec![(current.checkpoint.size, current.checkpoint.root)],
            };
            check_rows(manifest, &head, &export, size, &mut source, file)
        }
        _ => {
            return Err(Outcome::Error(anyhow!(
                "give --data-dir DIR, or --url URL with --token TOKEN"
            )));
        }
    };
    let (rows, redacted) = result?;
    let days = match (&head.query.from, &head.query.to) {
        (None, None) => "every date".to_owned(),
        (f, t) => format!(
            "dated {}..{}",
            f.as_deref().unwrap_or(""),
            t.as_deref().unwrap_or("")
        ),
    };
    let since = if redacted.is_empty() {
        String::new()
    } else {
        format!(
            "; {} of them redacted since the export, so checked only for naming their records",
            redacted.len()
        )
    };
    Ok((
        format!(
            "ok: {}: {rows} {} rows ({days}) are exactly the ledger's selected records as of {} \
             size {size} (root {}) but the {} withheld under consent, each unchanged and proven in \
             that tree; checked against the {mode}{since}",
            a.file.display(),
            export.kind(),
            pinned.cp.origin,
            hex::encode(pinned.cp.root),
            head.withheld
        ),
        redacted,
    ))
}

/// Walks the manifest's leaves, the file's rows and the ledger together.
fn check_rows(
    manifest: &Path,
    head: &ManifestHead,
    export: &Export,
    size: u64,
    source: &mut dyn Source,
    mut file: FileRows,
) -> Checked<(u64, Vec<(u64, String)>)> {
    let header = export.header();
    if let Some(byte) = file.expect(&header)? {
        return Err(Outcome::Bad(format!(
            "the header row differs from the {} {} header at byte {}",
            export.kind(),
            export.format(),
            byte + 1
        )));
    }
    let first = source.next_entry()?;
    let mut checker = Checker {
        export,
        size,
        source,
        pending: first,
        file,
        rows: 0,
        last: None,
        allowed: head.withheld,
        withheld: 0,
        redacted: Vec::new(),
    };
    let mut stopped = None;
    let mut seen = false;
    // Verifying a large export through a node takes a while.
    let bar = crate::progress(Some(size), "leaves of the log");
    let parsed = {
        let reader = BufReader::new(
            File::open(manifest)
                .with_context(|| format!("opening {}", manifest.display()))
                .map_err(Outcome::Error)?,
        );
        let mut de = serde_json::Deserializer::from_reader(reader);
        let mut f = |leaf| {
            bar.set_position(leaf);
            checker.row(leaf)
        };
        Leaves {
            f: &mut f,
            stopped: &mut stopped,
            seen: &mut seen,
        }
        .deserialize(&mut de)
    };
    bar.finish_and_clear();
    if let Some(o) = stopped {
        return Err(o);
    }
    parsed.map_err(|e| Outcome::Bad(format!("{}: {e}", manifest.display())))?;
    if !seen {
        return Err(Outcome::Bad("the manifest lists no leaves".into()));
    }
    while let Some(e) = checker.pending.take() {
        if export.selects(&e.payload) {
            checker.absent(&e, "it belongs after the last row")?;
        }
        checker.pending = checker.source.next_entry()?;
    }
    checker.source.finish()?;
    let rows = checker.rows;
    let redacted = std::mem::take(&mut checker.redacted);
    let extra = checker.file.rest()?;
    if extra > 0 {
        return Err(Outcome::Bad(format!(
            "{extra} bytes follow the last row (row {rows}) that the manifest does not account for"
        )));
    }
    if checker.withheld != head.withheld {
        return Err(Outcome::Bad(format!(
            "the manifest says {} records were withheld, but {} selected records are absent",
            head.withheld, checker.withheld
        )));
    }
    if rows != head.rows {
        return Err(Outcome::Bad(format!(
            "the manifest says {} rows but lists {rows} leaves",
            head.rows
        )));
    }
    let sha = hex::encode(std::mem::take(&mut checker.file.sha).finalize());
    if sha != head.sha256 {
        return Err(Outcome::Bad(format!(
            "the file's SHA-256 is {sha}, the manifest says {}",
            head.sha256
        )));
    }
    Ok((rows, redacted))
}
