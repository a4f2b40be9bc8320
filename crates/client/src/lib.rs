//! A blocking client for the medledger node API.
//!
//! Reads are verified: the client is built with the node keys it trusts
//! ([`Trust`]), and every receipt, transaction, checkpoint and block it
//! returns has been checked against them. A receipt proves the id of the
//! transaction it is for, the transaction's payload matches its commitment,
//! and checkpoints move only forward ([`Client::compare`]).
//!
//! ```no_run
//! # fn main() -> Result<(), medledger_client::Error> {
//! use medledger_client::Client;
//! let vkey = "hospital.example/ledger+4a5c7b1e+AQ...";
//! let client = Client::from_vkey("http://127.0.0.1:7878", vkey)?;
//! let cp = client.checkpoint()?; // signature checked
//! println!("log size {}", cp.checkpoint.size);
//! # Ok(()) }
//! ```

mod error;
mod verify;

pub use error::{Error, Problem, VerifyError};
pub use verify::{SignedCheckpoint, Trust, VerifiedReceipt};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use medledger_formats::block::SealedHeader;
use medledger_formats::bytes::Bytes;
use medledger_formats::keys::PublicKey;
use medledger_formats::merkle::{self, Hash};
use medledger_formats::tx::{Transaction, TxHeader, TxWire};
use reqwest::blocking::{RequestBuilder, Response};
use reqwest::header::CONTENT_TYPE;
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// How long one request may take, end to end.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A client of one node.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::blocking::Client,
    base: String,
    trust: Trust,
    retry: Retry,
}

/// How submissions are retried: after a connection error, `429` or `503`,
/// a submission is sent again after a jittered, exponentially growing
/// delay. Resending is safe, since a transaction's id is the hash of its
/// signed bytes: a node that already holds it answers `409 duplicate`, and
/// a `409 duplicate` after a retry is taken as success, with the receipt
/// fetched and verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Resends after the first attempt (0: none).
    pub retries: usize,
    /// The first delay; each next one doubles, with jitter.
    pub min_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
}

impl Default for Retry {
    /// Four resends, 200 ms to 5 s apart.
    fn default() -> Self {
        Retry {
            retries: 4,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl Retry {
    /// No retries: every answer is final.
    pub const NONE: Retry = Retry {
        retries: 0,
        min_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
    };

    /// The delays before each resend.
    fn delays(self) -> impl Iterator<Item = Duration> {
        use backon::BackoffBuilder as _;
        backon::ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.retries)
            .with_jitter()
            .build()
    }
}

/// Whether a failed submission may succeed if sent again.
fn transient(e: &Error) -> bool {
    match e {
        Error::Transport(t) => !(t.is_builder() || t.is_decode() || t.is_redirect()),
        Error::Problem(p) => p.status == 429 || p.status == 503,
        _ => false,
    }
}

/// Whether `e` is the node's answer that it already holds the transaction.
fn duplicate(e: &Error) -> bool {
    matches!(e, Error::Problem(p) if p.status == 409 && p.code == "duplicate")
}

/// One submitted transaction's outcome in a batch.
pub type ItemResult = Result<VerifiedReceipt, Error>;

/// A transaction read back from the node, verified.
#[derive(Clone, Debug)]
pub struct VerifiedTransaction {
    /// The transaction; its id, commitment and author signature were checked.
    pub tx: Transaction,
    /// Its verified receipt.
    pub receipt: VerifiedReceipt,
}

/// A record of a patient's access log or history, verified: its receipt
/// proves its header in the response's checkpoint, and its payload opens
/// the header's commitment.
#[derive(Clone, Debug)]
pub struct VerifiedRecord {
    /// The proven header (author, kind, time).
    pub header: TxHeader,
    /// The payload, as committed.
    pub payload: serde_json::Value,
    /// Its verified receipt.
    pub receipt: VerifiedReceipt,
}

/// A patient's access log, every entry verified against one checkpoint.
#[derive(Clone, Debug)]
pub struct AccessLog {
    /// The checkpoint every entry's receipt leads to.
    pub checkpoint: SignedCheckpoint,
    /// The entries, oldest first.
    pub entries: Vec<VerifiedRecord>,
}

#[derive(Deserialize)]
struct RecordJson {
    id: String,
    payload: serde_json::Value,
    salt: String,
    receipt: String,
}

#[derive(Deserialize)]
struct AccessLogPage {
    checkpoint: String,
    as_of: u64,
    entries: Vec<RecordJson>,
    next_after: Option<u64>,
}

/// `GET /v1/status`. Not signed: only `checkpoint` can be verified.
#[derive(Clone, Debug, Deserialize)]
pub struct NodeStatus {
    /// The ledger's origin.
    pub origin: String,
    /// The node's verifier key.
    pub vkey: String,
    /// Height of the last block.
    pub height: u64,
    /// Leaves in the log.
    pub log_size: u64,
    /// Root of the log (hex).
    pub log_root: String,
    /// The latest signed checkpoint.
    pub checkpoint: Option<String>,
    /// False once the node's storage has failed.
    pub writable: bool,
}

/// `GET /v1/proofs/consistency`: the hashes alone prove nothing until they are
/// checked against two roots (see [`Client::compare`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// The first tree size.
    pub from: u64,
    /// The second tree size.
    pub to: u64,
    /// RFC 9162 §2.1.4 proof hashes.
    pub proof: Vec<Hash>,
}

/// A transaction as listed in a block: header and signature, no payload.
#[derive(Clone, Debug, Deserialize)]
pub struct BlockTx {
    /// Transaction id (hex).
    pub id: String,
    /// The signed header.
    pub header: TxHeader,
    /// Author signature (hex).
    pub signature: String,
}

/// A block as `/v1/blocks` returns it.
#[derive(Clone, Debug, Deserialize)]
pub struct Block {
    /// Height.
    pub height: u64,
    /// Block hash (hex).
    pub hash: String,
    /// The header, as JSON.
    pub header: medledger_formats::block::BlockHeader,
    /// Proposer signature (hex).
    pub signature: String,
    /// Transactions in log order.
    pub transactions: Vec<BlockTx>,
}

/// A page of verified blocks.
#[derive(Clone, Debug)]
pub struct BlocksPage {
    /// The blocks, each checked with [`Trust::block`].
    pub blocks: Vec<(Block, SealedHeader)>,
    /// Height to ask for next, if there are more.
    pub next: Option<u64>,
}

/// A registered participant, as the node's directory lists it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Participant {
    /// Public key (also the participant id).
    pub key: PublicKey,
    /// Role name, e.g. `doctor`.
    pub role: String,
    /// Institution.
    pub institution: String,
    /// Label for people.
    #[serde(default)]
    pub label: String,
    /// Log index of the registration.
    pub registered_at: u64,
    /// Log index of the revocation, if revoked.
    #[serde(default)]
    pub revoked_at: Option<u64>,
    /// For a device: the patient it is registered for.
    #[serde(default)]
    pub patient: Option<String>,
}

/// How a newer checkpoint relates to a trusted older one.
#[derive(Clone, Debug)]
pub enum Verdict {
    /// Same size, same root.
    Unchanged,
    /// The new tree extends the old one: the consistency proof verified.
    Extends(ConsistencyProof),
    /// The node's history contradicts the trusted checkpoint.
    Inconsistent(Box<Evidence>),
}

/// What kind of inconsistency was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inconsistency {
    /// The two checkpoints cannot both be states of one append-only log.
    Fork,
    /// The log shrank: the new tree is a proven prefix of the old one.
    Rollback,
}

impl fmt::Display for Inconsistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Inconsistency::Fork => "FORK",
            Inconsistency::Rollback => "ROLLBACK",
        })
    }
}

/// Everything needed to show a third party that the node misbehaved: two
/// checkpoints signed by the same trusted key and the proof that fails.
#[derive(Clone, Debug)]
pub struct Evidence {
    /// Fork or rollback.
    pub kind: Inconsistency,
    /// The check that failed, in words.
    pub failed: String,
    /// The trusted earlier checkpoint.
    pub old: SignedCheckpoint,
    /// The checkpoint the node serves now.
    pub new: SignedCheckpoint,
    /// The proof the node gave (sizes asked for and hashes), if it gave one.
    pub proof: Option<ConsistencyProof>,
    /// The sizes the proof was asked for, if one was needed.
    pub asked: Option<(u64, u64)>,
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} DETECTED: {}", self.kind, self.failed)?;
        writeln!(
            f,
            "old checkpoint (trusted, size {}):",
            self.old.checkpoint.size
        )?;
        write!(f, "{}", self.old.note)?;
        writeln!(
            f,
            "new checkpoint (served by the node, size {}):",
            self.new.checkpoint.size
        )?;
        write!(f, "{}", self.new.note)?;
        match (&self.proof, self.asked) {
            (Some(p), _) => {
                writeln!(
                    f,
                    "consistency proof from {} to {} ({} hashes, base64):",
                    p.from,
                    p.to,
                    p.proof.len()
                )?;
                for h in &p.proof {
                    writeln!(f, "{}", BASE64.encode(h))?;
                }
            }
            (None, Some((from, to))) => {
                writeln!(f, "consistency proof from {from} to {to}: none given")?
            }
            (None, None) => writeln!(f, "consistency proof: none needed (equal sizes)")?,
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct SubmitOk {
    id: String,
    index: u64,
    height: u64,
    receipt: String,
}

#[derive(Deserialize)]
struct BatchItem {
    status: u16,
    #[serde(flatten)]
    ok: Option<SubmitOk>,
    problem: Option<Problem>,
}

#[derive(Deserialize)]
struct BatchResponse {
    results: Vec<BatchItem>,
}

#[derive(Deserialize)]
struct GetResponse {
    id: String,
    index: u64,
    height: u64,
    transaction: TxWire,
    receipt: String,
}

#[derive(Deserialize)]
struct ConsistencyResponse {
    from: u64,
    to: u64,
    proof: Vec<String>,
}

#[derive(Deserialize)]
struct BlocksResponse {
    blocks: Vec<Block>,
    next: Option<u64>,
}

#[derive(Deserialize)]
struct ParticipantsResponse {
    participants: Vec<Participant>,
}

/// `http://` is assumed when the URL names no scheme.
fn normalize_base(url: &str) -> Result<String, Error> {
    let url = url.trim().trim_end_matches('/');
    if url.is_empty() {
        return Err(Error::Config("empty node URL".into()));
    }
    let url = if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    if !url.starts_with("http://") {
        return Err(Error::Config(format!(
            "{url}: only http:// URLs are supported in this version"
        )));
    }
    Ok(url)
}

fn http_client() -> Result<reqwest::blocking::Client, Error> {
    reqwest::blocking::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .tcp_nodelay(true)
        .build()
        .map_err(Error::Transport)
}

/// The problem in a non-2xx response (or one made up from its status).
fn problem_of(resp: Response) -> Problem {
    let status = resp.status().as_u16();
    let body = resp.text().unwrap_or_default();
    serde_json::from_str::<Problem>(&body).unwrap_or_else(|_| Problem {
        status,
        code: format!("http_{status}"),
        detail: body.chars().take(500).collect(),
        redaction: None,
    })
}

fn check_field<T: PartialEq + fmt::Display>(
    field: &'static str,
    expected: T,
    found: T,
) -> Result<(), VerifyError> {
    if expected == found {
        Ok(())
    } else {
        Err(VerifyError::FieldMismatch {
            field,
            expected: expected.to_string(),
            found: found.to_string(),
        })
    }
}

fn parse_id(id: &str) -> Result<Hash, Error> {
    let bytes = hex::decode(id).map_err(|_| Error::Config(format!("id {id:?} is not hex")))?;
    bytes
        .try_into()
        .map_err(|_| Error::Config(format!("id {id:?} is not 32 bytes")))
}

impl Client {
    /// A client of the node at `url` that trusts `trust`.
    pub fn new(url: &str, trust: Trust) -> Result<Self, Error> {
        Ok(Client {
            http: http_client()?,
            base: normalize_base(url)?,
            trust,
            retry: Retry::default(),
        })
    }

    /// A client that trusts one vkey string (origin = the key's name).
    pub fn from_vkey(url: &str, vkey: &str) -> Result<Self, Error> {
        Self::new(url, Trust::from_vkey(vkey)?)
    }

    /// Trust on first use: reads the node's vkey from `/v1/status` (which is
    /// not authenticated) and trusts it from then on. The status checkpoint
    /// must verify with that key. Returns the client and the status.
    pub fn trust_on_first_use(url: &str) -> Result<(Self, NodeStatus), Error> {
        let http = http_client()?;
        let base = normalize_base(url)?;
        let status: NodeStatus = Self::ok(http.get(format!("{base}/v1/status")))?
            .json()
            .map_err(|e| Error::Protocol(format!("status: {e}")))?;
        let trust = Trust::from_vkey(&status.vkey)?;
        if trust.origin() != status.origin {
            return Err(Error::Protocol(format!(
                "status vkey is named {:?} but the origin is {:?}",
                trust.origin(),
                status.origin
            )));
        }
        if let Some(note) = &status.checkpoint {
            trust.checkpoint(note)?;
        }
        let retry = Retry::default();
        Ok((
            Client {
                http,
                base,
                trust,
                retry,
            },
            status,
        ))
    }

    /// This client with another retry policy for submissions.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// What this client trusts.
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// The node's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn ok(req: RequestBuilder) -> Result<Response, Error> {
        let resp = req.send()?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(Error::Problem(problem_of(resp)))
        }
    }

    fn get(&self, path: &str) -> RequestBuilder {
        self.http.get(format!("{}{path}", self.base))
    }

    fn post_json(&self, body: Vec<u8>) -> RequestBuilder {
        self.http
            .post(format!("{}/v1/transactions", self.base))
            .header(CONTENT_TYPE, "application/json")
            .body(body)
    }

    fn check_submitted(&self, ok: SubmitOk, tx: &Transaction) -> Result<VerifiedReceipt, Error> {
        let mut r = self.trust.receipt_for(&ok.receipt, tx)?;
        check_field("id", hex::encode(r.id), ok.id)?;
        check_field("index", r.index, ok.index)?;
        r.height = Some(ok.height);
        Ok(r)
    }

    /// Submits one transaction (a single JSON object) and returns its
    /// verified receipt, or the node's problem. Transient failures are
    /// retried as [`Retry`] says.
    pub fn submit(&self, tx: &Transaction) -> Result<VerifiedReceipt, Error> {
        let wire = tx
            .to_wire()
            .map_err(|e| Error::Config(format!("transaction: {e}")))?;
        let body = serde_json::to_vec(&wire).map_err(|e| Error::Config(e.to_string()))?;
        let once = || -> Result<VerifiedReceipt, Error> {
            let ok: SubmitOk = Self::ok(self.post_json(body.clone()))?
                .json()
                .map_err(|e| Error::Protocol(format!("submit response: {e}")))?;
            self.check_submitted(ok, tx)
        };
        let mut delays = self.retry.delays();
        let mut outcome = once();
        while let Err(e) = &outcome
            && transient(e)
            && let Some(delay) = delays.next()
        {
            std::thread::sleep(delay);
            outcome = match once() {
                Err(e) if duplicate(&e) => self.resubmitted(tx),
                other => other,
            };
        }
        outcome
    }

    /// The verified receipt of `tx`, which a resend found already
    /// committed.
    fn resubmitted(&self, tx: &Transaction) -> Result<VerifiedReceipt, Error> {
        let text = Self::ok(self.get(&format!(
            "/v1/transactions/{}/receipt",
            hex::encode(tx.id())
        )))?
        .text()?;
        Ok(self.trust.receipt_for(&text, tx)?)
    }

    /// Submits transactions as one JSON array. The outer error is for the
    /// request as a whole; each item has its own verified receipt or problem.
    /// Transient failures are retried as [`Retry`] says: of the whole
    /// request, and of the items answered `429` or `503`, which are sent
    /// again on their own.
    pub fn submit_batch(&self, txs: &[Transaction]) -> Result<Vec<ItemResult>, Error> {
        let mut results: Vec<Option<ItemResult>> = (0..txs.len()).map(|_| None).collect();
        let mut pending: Vec<usize> = (0..txs.len()).collect();
        let mut delays = self.retry.delays();
        let mut resend = false;
        loop {
            let batch: Vec<Transaction> = pending.iter().map(|&i| txs[i].clone()).collect();
            let items = match self.submit_once(&batch) {
                Ok(items) => items,
                Err(e) if transient(&e) => match delays.next() {
                    Some(delay) => {
                        std::thread::sleep(delay);
                        resend = true;
                        continue;
                    }
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            };
            let mut again = Vec::new();
            for (i, item) in pending.iter().copied().zip(items) {
                match item {
                    Err(e) if resend && duplicate(&e) => {
                        results[i] = Some(self.resubmitted(&txs[i]));
                    }
                    Err(e) if transient(&e) => {
                        again.push(i);
                        results[i] = Some(Err(e));
                    }
                    other => results[i] = Some(other),
                }
            }
            pending = again;
            match (pending.is_empty(), delays.next()) {
                (false, Some(delay)) => {
                    std::thread::sleep(delay);
                    resend = true;
                }
                _ => break,
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::Protocol("no result".into()))))
            .collect())
    }

    /// One batch request, without retries.
    fn submit_once(&self, txs: &[Transaction]) -> Result<Vec<ItemResult>, Error> {
        let wires = txs
            .iter()
            .map(|t| t.to_wire())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Config(format!("transaction: {e}")))?;
        let body = serde_json::to_vec(&wires).map_err(|e| Error::Config(e.to_string()))?;
        let resp: BatchResponse = Self::ok(self.post_json(body))?
            .json()
            .map_err(|e| Error::Protocol(format!("batch response: {e}")))?;
        if resp.results.len() != txs.len() {
            return Err(Error::Protocol(format!(
                "{} results for {} transactions",
                resp.results.len(),
                txs.len()
            )));
        }
        Ok(resp
            .results
            .into_iter()
            .zip(txs)
            .map(|(item, tx)| match (item.status, item.ok, item.problem) {
                (200, Some(ok), _) => self.check_submitted(ok, tx),
                (_, _, Some(p)) => Err(Error::Problem(p)),
                (status, _, None) => Err(Error::Protocol(format!(
                    "result with status {status} has neither receipt nor problem"
                ))),
            })
            .collect())
    }

    /// Reads a transaction with a bearer token. Checks that the returned
    /// transaction has the requested id, that its payload matches its
    /// commitment, that the author's signature verifies and that the receipt
    /// proves it.
    pub fn transaction(&self, id: &Hash, token: &str) -> Result<VerifiedTransaction, Error> {
        let id_hex = hex::encode(id);
        let resp: GetResponse = Self::ok(
            self.get(&format!("/v1/transactions/{id_hex}"))
                .bearer_auth(token.trim()),
        )?
        .json()
        .map_err(|e| Error::Protocol(format!("transaction response: {e}")))?;
        let tx = Transaction::from_wire(resp.transaction).map_err(VerifyError::from)?;
        if tx.id() != id {
            return Err(VerifyError::IdMismatch {
                what: "returned transaction",
                expected: id_hex,
                found: hex::encode(tx.id()),
            }
            .into());
        }
        tx.verify_signature()
            .map_err(|_| VerifyError::AuthorSignature)?;
        let mut receipt = self.trust.receipt_for(&resp.receipt, &tx)?;
        check_field("id", id_hex, resp.id)?;
        check_field("index", receipt.index, resp.index)?;
        receipt.height = Some(resp.height);
        Ok(VerifiedTransaction { tx, receipt })
    }

    /// Reads `patient`'s whole access log with a bearer token (the
    /// patient's own, or the data-protection officer's), page by page as of
    /// one checkpoint, and verifies every entry: its receipt against that
    /// checkpoint and its payload against the proven header.
    pub fn access_log(&self, patient: &str, token: &str) -> Result<AccessLog, Error> {
        let path = format!("/v1/patients/{patient}/access-log");
        let mut entries = Vec::new();
        let mut after: Option<u64> = None;
        let mut pinned: Option<(u64, SignedCheckpoint)> = None;
        loop {
            let mut q: Vec<(&str, String)> = Vec::new();
            if let Some((size, _)) = &pinned {
                q.push(("as_of", size.to_string()));
            }
            if let Some(a) = after {
                q.push(("after", a.to_string()));
            }
            let page: AccessLogPage =
                Self::ok(self.get(&path).query(&q).bearer_auth(token.trim()))?
                    .json()
                    .map_err(|e| Error::Protocol(format!("access log response: {e}")))?;
            let cp = self.trust.checkpoint(&page.checkpoint)?;
            check_field("as_of", cp.checkpoint.size, page.as_of)?;
            if let Some((size, first)) = &pinned
                && (*size != cp.checkpoint.size || first.checkpoint.root != cp.checkpoint.root)
            {
                return Err(Error::Protocol(
                    "the access log's pages answer as of different checkpoints".into(),
                ));
            }
            for e in page.entries {
                let id = Bytes::<32>::parse_hex(&e.id)
                    .map_err(|err| Error::Protocol(format!("entry id: {err}")))?;
                let salt = Bytes::<16>::parse_hex(&e.salt)
                    .map_err(|err| Error::Protocol(format!("entry salt: {err}")))?;
                let (receipt, header) =
                    self.trust.record(&e.receipt, &id.0, &salt.0, &e.payload)?;
                if receipt.checkpoint != cp.checkpoint {
                    return Err(Error::Protocol(format!(
                        "entry {} is proven in another checkpoint than the page's",
                        e.id
                    )));
                }
                entries.push(VerifiedRecord {
                    header,
                    payload: e.payload,
                    receipt,
                });
            }
            pinned.get_or_insert((cp.checkpoint.size, cp));
            match page.next_after {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let checkpoint = match pinned {
            Some((_, cp)) => cp,
            None => return Err(Error::Protocol("the node sent no page".into())),
        };
        Ok(AccessLog {
            checkpoint,
            entries,
        })
    }

    /// Fetches the receipt of transaction `id` and verifies it, including
    /// the author's signature over the header it carries.
    pub fn receipt(&self, id: &Hash) -> Result<VerifiedReceipt, Error> {
        let text =
            Self::ok(self.get(&format!("/v1/transactions/{}/receipt", hex::encode(id))))?.text()?;
        Ok(self.trust.receipt_for_id(&text, id)?)
    }

    /// Like [`Client::receipt`], with the checkpoint cosigned by every
    /// cluster node that could be reached (`?cosigned=true`); the
    /// cosignatures are left for the caller to check against the cosigner
    /// keys it trusts.
    pub fn receipt_cosigned(&self, id: &Hash) -> Result<VerifiedReceipt, Error> {
        let path = format!("/v1/transactions/{}/receipt?cosigned=true", hex::encode(id));
        let text = Self::ok(self.get(&path))?.text()?;
        Ok(self.trust.receipt_for_id(&text, id)?)
    }

    /// Like [`Client::receipt`], with the id in hex.
    pub fn receipt_hex(&self, id: &str) -> Result<VerifiedReceipt, Error> {
        self.receipt(&parse_id(id)?)
    }

    /// The node's latest checkpoint, its signature verified.
    pub fn checkpoint(&self) -> Result<SignedCheckpoint, Error> {
        let note = Self::ok(self.get("/v1/checkpoint"))?.text()?;
        Ok(self.trust.checkpoint(&note)?)
    }

    /// `GET /v1/status`; its checkpoint, if any, is verified.
    pub fn status(&self) -> Result<NodeStatus, Error> {
        let status: NodeStatus = Self::ok(self.get("/v1/status"))?
            .json()
            .map_err(|e| Error::Protocol(format!("status: {e}")))?;
        if let Some(note) = &status.checkpoint {
            self.trust.checkpoint(note)?;
        }
        Ok(status)
    }

    /// The consistency proof between tree sizes `from` and `to` (the node's
    /// current size if `None`). Unverified: check it with
    /// `merkle::verify_consistency` or use [`Client::compare`].
    pub fn consistency(&self, from: u64, to: Option<u64>) -> Result<ConsistencyProof, Error> {
        let mut query = vec![("from", from)];
        if let Some(to) = to {
            query.push(("to", to));
        }
        let resp: ConsistencyResponse = Self::ok(self.get("/v1/proofs/consistency").query(&query))?
            .json()
            .map_err(|e| Error::Protocol(format!("consistency response: {e}")))?;
        if resp.from != from || to.is_some_and(|t| t != resp.to) {
            return Err(Error::Protocol(format!(
                "asked for a proof from {from} to {to:?}, got {} to {}",
                resp.from, resp.to
            )));
        }
        let proof = resp
            .proof
            .iter()
            .map(|h| {
                BASE64
                    .decode(h)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                    .ok_or_else(|| Error::Protocol(format!("proof hash {h:?} is not 32 bytes")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ConsistencyProof {
            from: resp.from,
            to: resp.to,
            proof,
        })
    }

    /// Decides whether `new` continues the history of `old` (both already
    /// verified). Equal sizes need equal roots. A larger new tree needs a
    /// consistency proof from the node that verifies. A smaller one is a
    /// rollback if the node proves new is a prefix of old, and a fork if not.
    /// Transport failures and 5xx answers are errors, not evidence.
    pub fn compare(
        &self,
        old: &SignedCheckpoint,
        new: &SignedCheckpoint,
    ) -> Result<Verdict, Error> {
        let (o, n) = (&old.checkpoint, &new.checkpoint);
        let evidence = |kind, failed: String, proof, asked| {
            Ok(Verdict::Inconsistent(Box::new(Evidence {
                kind,
                failed,
                old: old.clone(),
                new: new.clone(),
                proof,
                asked,
            })))
        };
        if o.size == n.size {
            return if o.root == n.root {
                Ok(Verdict::Unchanged)
            } else {
                evidence(
                    Inconsistency::Fork,
                    format!("two different roots signed for tree size {}", o.size),
                    None,
                    None,
                )
            };
        }
        // Prove the smaller tree is a prefix of the larger one.
        let (small, large) = if n.size > o.size { (o, n) } else { (n, o) };
        let asked = Some((small.size, large.size));
        let proof = match self.consistency(small.size, Some(large.size)) {
            Ok(p) => p,
            Err(Error::Problem(p)) if p.status < 500 => {
                let failed = if n.size > o.size {
                    format!(
                        "the node refused to prove size {} extends size {}: {p}",
                        n.size, o.size
                    )
                } else {
                    format!(
                        "the log shrank from {} to {} and the node cannot prove the new tree is a prefix of the old: {p}",
                        o.size, n.size
                    )
                };
                return evidence(Inconsistency::Fork, failed, None, asked);
            }
            Err(e) => return Err(e),
        };
        match merkle::verify_consistency(
            small.size,
            large.size,
            &proof.proof,
            &small.root,
            &large.root,
        ) {
            Ok(()) if n.size > o.size => Ok(Verdict::Extends(proof)),
            Ok(()) => evidence(
                Inconsistency::Rollback,
                format!(
                    "the log shrank from {} to {}; the proof shows the new tree is a prefix of the old",
                    o.size, n.size
                ),
                Some(proof),
                asked,
            ),
            Err(e) => evidence(
                Inconsistency::Fork,
                format!(
                    "consistency proof from {} to {} does not verify: {e}",
                    small.size, large.size
                ),
                Some(proof),
                asked,
            ),
        }
    }

    /// Up to `limit` blocks from height `from`, each verified with
    /// [`Trust::block`].
    pub fn blocks(&self, from: u64, limit: u64) -> Result<BlocksPage, Error> {
        let resp: BlocksResponse = Self::ok(
            self.get("/v1/blocks")
                .query(&[("from", from), ("limit", limit)]),
        )?
        .json()
        .map_err(|e| Error::Protocol(format!("blocks response: {e}")))?;
        let blocks = resp
            .blocks
            .into_iter()
            .enumerate()
            .map(|(k, b)| {
                check_field("height", from + k as u64, b.height)?;
                let sealed = self.trust.block(&b)?;
                Ok((b, sealed))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(BlocksPage {
            blocks,
            next: resp.next,
        })
    }

    /// One block, verified with [`Trust::block`].
    pub fn block(&self, height: u64) -> Result<(Block, SealedHeader), Error> {
        let b: Block = Self::ok(self.get(&format!("/v1/blocks/{height}")))?
            .json()
            .map_err(|e| Error::Protocol(format!("block response: {e}")))?;
        check_field("height", height, b.height)?;
        let sealed = self.trust.block(&b)?;
        Ok((b, sealed))
    }

    /// The participant directory (bearer token). It comes from the node's
    /// index and carries no proof.
    pub fn participants(&self, token: &str) -> Result<Vec<Participant>, Error> {
        let resp: ParticipantsResponse =
            Self::ok(self.get("/v1/participants").bearer_auth(token.trim()))?
                .json()
                .map_err(|e| Error::Protocol(format!("participants response: {e}")))?;
        Ok(resp.participants)
    }
}
