//! Accountable access on the read path. Every record-level read names a
//! purpose, goes through the one decision (`medledger_ledger::decide`)
//! record by record, and is logged on the ledger as an access entry signed
//! by this node. The answer leaves only once its entry is durable: if the
//! entry cannot be committed, the read is refused and returns no data.

use crate::http::problem::Problem;
use crate::http::record::Record;
use crate::http::request::{ApiResult, AppState, Caller, authenticate, ledger_err};
use crate::pipeline::SubmitError;
use axum::http::{HeaderMap, StatusCode};
use medledger_formats::keys;
use medledger_formats::tx::Transaction;
use medledger_health::access::{self as rules, Access, Consent, Verdict};
use medledger_ledger::{
    Decision, Denial, Participant, Purpose, RECORD_READERS, Role, Store, decide, kind, now_ms,
    payload_rules, purposes,
};
use medledger_store::By;
use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;
use std::time::Duration;

/// The request header that names the purpose of use (an HL7 PurposeOfUse
/// code); without it, the first purpose of the reader's role applies.
pub(crate) const PURPOSE_HEADER: &str = "x-purpose-of-use";
/// The request header that states the reason of a break-glass read.
pub(crate) const REASON_HEADER: &str = "x-break-glass-reason";
/// Most patients one access entry names; a read of more logs several.
const PATIENTS_PER_ENTRY: usize = 1000;
/// Most directives of one patient a read considers.
const MAX_DIRECTIVES: usize = 10_000;

/// Who reads, and why.
pub(crate) struct Reader {
    /// The participant behind the token.
    pub(crate) participant: Participant,
    /// The purpose of use.
    pub(crate) purpose: Purpose,
    /// The break-glass reason, when one was stated.
    pub(crate) reason: Option<String>,
}

/// The reader of a record-level read: a token whose role reads records,
/// and a purpose that role may use and, for an access token, that the
/// token carries (by default its first).
pub(crate) fn reader(state: &AppState, headers: &HeaderMap) -> ApiResult<Reader> {
    let Caller {
        participant,
        purposes: carried,
    } = authenticate(state, headers, RECORD_READERS)?;
    let role_purposes = purposes(participant.role);
    let allowed: Vec<Purpose> = match &carried {
        None => role_purposes.to_vec(),
        Some(carried) => role_purposes
            .iter()
            .copied()
            .filter(|p| carried.contains(p))
            .collect(),
    };
    let purpose = match headers.get(PURPOSE_HEADER) {
        None => allowed.first().copied(),
        Some(v) => v.to_str().ok().and_then(|v| Purpose::parse(v.trim())),
    }
    .filter(|p| allowed.contains(p))
    .ok_or_else(|| {
        let names: Vec<&str> = allowed.iter().map(|p| p.code()).collect();
        let whose = match carried {
            None => format!("role {}", participant.role),
            Some(_) => format!("this access token (role {})", participant.role),
        };
        Problem::new(
            StatusCode::FORBIDDEN,
            "purpose_not_allowed",
            format!(
                "{whose} reads records only for {} (the {PURPOSE_HEADER} header)",
                match names.is_empty() {
                    true => "no purpose".to_owned(),
                    false => names.join(", "),
                }
            ),
        )
    })?;
    let reason = headers
        .get(REASON_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    Ok(Reader {
        participant,
        purpose,
        reason,
    })
}

/// Whether `reader` may ask about `patient` at all: a patient, only about
/// themselves; every other record reader, about anyone (record by record,
/// the decision still applies).
pub(crate) fn may_read_patient(reader: &Reader, patient: &str) -> bool {
    let p = &reader.participant;
    p.role != Role::Patient || p.patient.as_deref() == Some(patient)
}

/// Records judged for one read: those returned, and the entries to log.
pub(crate) struct Judged {
    /// The records the reader may see, in the order given.
    pub(crate) records: Vec<Record>,
    /// Records withheld under their patients' directives.
    pub(crate) withheld: u64,
    /// The access entries to commit before answering.
    pub(crate) entries: Vec<Transaction>,
}

/// The patient a record is about, as its payload rules read it.
fn patient_of(tx: &Transaction) -> Option<String> {
    payload_rules(tx).ok()?.into_terms().patient
}

/// `patient`'s directives, oldest first.
fn directives(store: &Store, patient: &str) -> ApiResult<Vec<Consent>> {
    let code = rules::directive_code(patient);
    let leaves = store
        .index()
        .leaves_by(By::Code(&code), 0, MAX_DIRECTIVES)
        .map_err(|e| Problem::unavailable(e.to_string()))?;
    let txs = store.transactions_at(&leaves).map_err(ledger_err)?;
    Ok(txs
        .iter()
        .filter(|(tx, ..)| tx.header().kind == kind::CONSENT_DIRECTIVE)
        .filter_map(|(tx, ..)| rules::consent(tx.payload_jcs()).ok())
        .collect())
}

/// Judges the records of one read, one by one, and then writes its access
/// entries. Records the role may not read at all (the donor registry's)
/// are left out silently, as before; records whose patients deny the
/// purpose are withheld and counted.
pub(crate) struct Judge<'a> {
    state: &'a AppState,
    reader: &'a Reader,
    key: String,
    now: u64,
    consents: HashMap<String, Vec<Consent>>,
    patients: BTreeSet<String>,
    /// Ids of the records returned, while few enough to name in the entry.
    returned: Vec<String>,
    count: u64,
    withheld: u64,
    glass: bool,
}

impl<'a> Judge<'a> {
    /// A judge for one read by `reader`.
    pub(crate) fn new(state: &'a AppState, reader: &'a Reader) -> Self {
        Judge {
            state,
            reader,
            key: reader.participant.key.to_string(),
            now: now_ms(),
            consents: HashMap::new(),
            patients: BTreeSet::new(),
            returned: Vec::new(),
            count: 0,
            withheld: 0,
            glass: false,
        }
    }

    /// Whether `tx` may be returned; a record returned must be, as it is
    /// logged as read.
    pub(crate) fn admit(&mut self, tx: &Transaction) -> ApiResult<bool> {
        let read = self.may_see(tx)?;
        if read {
            self.returned(tx);
        }
        Ok(read)
    }

    /// Records `tx`, which [`Judge::may_see`] let through, as returned.
    pub(crate) fn returned(&mut self, tx: &Transaction) {
        self.count += 1;
        if self.returned.len() <= PATIENTS_PER_ENTRY {
            self.returned.push(hex::encode(tx.id()));
        }
    }

    /// Whether `tx` may be seen (counted or returned): the decision, with
    /// its patient noted for the access entry and a consent denial counted
    /// as withheld, but not yet logged as returned ([`Judge::returned`]). A
    /// search judges every match so that its total counts only what the
    /// reader may see, and returns one page of them.
    pub(crate) fn may_see(&mut self, tx: &Transaction) -> ApiResult<bool> {
        let p = &self.reader.participant;
        let kind = tx.header().kind.as_str();
        let patient = patient_of(tx);
        let consent = match &patient {
            None => None,
            Some(pt) => {
                if !self.consents.contains_key(pt) {
                    let ds = directives(self.state.log.store(), pt)?;
                    self.consents.insert(pt.clone(), ds);
                }
                let ds = self.consents.get(pt).map_or(&[][..], Vec::as_slice);
                let (purpose, now) = (self.reader.purpose, self.now as i64);
                rules::in_force(ds, now, purpose, &self.key, &p.institution, kind)
                    .map(|d| d.provision.kind)
            }
        };
        let reason = self.reader.reason.is_some();
        let own = patient.is_some() && patient == p.patient;
        let decision = decide(p.role, self.reader.purpose, kind, consent, reason, own);
        if let Some(pt) = patient
            && decision != Decision::Deny(Denial::Role)
        {
            self.patients.insert(pt);
        }
        let read = match decision {
            Decision::Permit => true,
            Decision::BreakGlass => {
                self.glass = true;
                true
            }
            Decision::Deny(Denial::Consent) => {
                self.withheld += 1;
                false
            }
            Decision::Deny(_) => false,
        };
        Ok(read)
    }

    /// Records withheld so far.
    pub(crate) fn withheld(&self) -> u64 {
        self.withheld
    }

    /// The access entries of the read, signed by this node: none when it
    /// touched no patient's records. `query` is the request of a search or
    /// an export (`None` for a read of named records).
    pub(crate) fn entries(self, query: Option<String>) -> ApiResult<Vec<Transaction>> {
        let verdict = match (self.glass, self.count == 0 && self.withheld > 0) {
            (true, _) => Verdict::BreakGlass,
            (false, true) => Verdict::Deny,
            (false, false) => Verdict::Permit,
        };
        let node_key = &self.state.node_key;
        let node = keys::public_key(node_key).to_string();
        let patients: Vec<String> = self.patients.into_iter().collect();
        let mut entries = Vec::new();
        for chunk in patients.chunks(PATIENTS_PER_ENTRY) {
            // A read of many patients logs one entry per chunk; the first
            // carries the counts and the records returned.
            let first = entries.is_empty();
            let access = Access {
                reader: self.key.clone(),
                role: self.reader.participant.role.to_string(),
                node: node.clone(),
                patients: chunk.to_vec(),
                records: match first && self.count <= PATIENTS_PER_ENTRY as u64 {
                    true => self.returned.clone(),
                    false => Vec::new(),
                },
                query: query.clone(),
                returned: if first { self.count } else { 0 },
                withheld: if first { self.withheld } else { 0 },
                purpose: self.reader.purpose,
                verdict,
                reason: match verdict {
                    Verdict::BreakGlass => self.reader.reason.clone(),
                    _ => None,
                },
                time_ms: self.now as i64,
            };
            let event = access.to_audit_event();
            let tx = Transaction::sign(node_key, kind::ACCESS_ENTRY, self.now, &event)
                .map_err(|e| Problem::internal(e.to_string()))?;
            entries.push(tx);
        }
        Ok(entries)
    }
}

/// Judges a read of `records` at once.
pub(crate) fn judge(
    state: &AppState,
    reader: &Reader,
    records: Vec<Record>,
    query: Option<String>,
) -> ApiResult<Judged> {
    let mut judge = Judge::new(state, reader);
    let mut kept = Vec::new();
    for r in records {
        if judge.admit(&r.tx)? {
            kept.push(r);
        }
    }
    let withheld = judge.withheld();
    Ok(Judged {
        records: kept,
        withheld,
        entries: judge.entries(query)?,
    })
}

/// Commits a read's access entries; only then may its answer leave. A
/// cluster follower hands them to the leader, whose acknowledgement means a
/// quorum holds them. Past `access_log_timeout_ms` (a leader without a
/// quorum never commits) the read is refused: an entry may still be
/// committed afterwards, a read logged but not served, never the reverse.
///
/// The follower does not wait until its own log holds the entry as well:
/// the quorum's copy is what makes it durable, and the follower's arrives
/// by replication like every other block. Waiting for it would add a
/// replication round to every follower read and make the read depend on
/// the follower keeping up, for no gain in what the ledger proves; a reader
/// of the access log on that follower may see the entry a moment later.
pub(crate) async fn log(state: &AppState, entries: Vec<Transaction>) -> ApiResult<()> {
    if entries.is_empty() {
        return Ok(());
    }
    metrics::counter!("medledger_access_entries_total").increment(entries.len() as u64);
    let limit = state.config.access_log_timeout_ms;
    let committed = tokio::time::timeout(Duration::from_millis(limit), commit(state, entries))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "the access entry was not committed within {limit} ms"
            ))
        });
    committed.map_err(|why| {
        metrics::counter!("medledger_access_log_failures_total").increment(1);
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "access_log_unavailable",
            format!("the read was not logged, so nothing is returned: {why}"),
        )
    })
}

/// Commits `entries` through this node's sequencer, or, on a cluster
/// follower, through the leader's API.
async fn commit(state: &AppState, entries: Vec<Transaction>) -> Result<(), String> {
    let copies = state.cluster.as_ref().map(|_| entries.clone());
    let outcomes = state.seq.enqueue(entries).done().await;
    let mut leader = None;
    let mut forward = Vec::new();
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match (outcome, &copies) {
            (Ok(_), _) => {}
            (Err(SubmitError::NotLeader(Some(url))), Some(copies)) => {
                leader = Some(url);
                forward.extend(copies.get(i).cloned());
            }
            (Err(e), _) => return Err(e.to_string()),
        }
    }
    match leader {
        None => Ok(()),
        Some(url) => forward_to_leader(&url, &forward).await,
    }
}

/// A client for the leader's API, built once.
fn leader_client() -> Result<&'static reqwest::Client, String> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    let c = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("no HTTP client for the leader: {e}"))?;
    Ok(CLIENT.get_or_init(|| c))
}

/// Submits `entries` to the leader at `leader`; succeeds only when every
/// one of them is acknowledged as committed.
async fn forward_to_leader(leader: &str, entries: &[Transaction]) -> Result<(), String> {
    let wires = entries
        .iter()
        .map(Transaction::to_wire)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let body = serde_json::to_vec(&wires).map_err(|e| e.to_string())?;
    let url = format!("{}/v1/transactions", leader.trim_end_matches('/'));
    let resp = leader_client()?
        .post(&url)
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("the leader at {leader}: {e}"))?;
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| format!("the leader at {leader}: {e}"))?;
    if !status.is_success() {
        return Err(format!("the leader at {leader} answered {status}"));
    }
    let answer: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("the leader at {leader} answered no JSON: {e}"))?;
    let results = answer["results"].as_array().map_or(&[][..], Vec::as_slice);
    let all = results.len() == entries.len()
        && results.iter().zip(entries).all(|(r, tx)| {
            r["status"] == 200 && r["id"].as_str() == Some(hex::encode(tx.id()).as_str())
        });
    if all {
        Ok(())
    } else {
        Err(format!(
            "the leader at {leader} did not commit every access entry"
        ))
    }
}

/// The problem for a read of one record that was not returned: its
/// patient's directive denies it (`withheld`, after its entry is logged),
/// or the reader may not read it at all (a patient, another's record).
pub(crate) fn refused(reader: &Reader, withheld: u64) -> Problem {
    match withheld {
        0 => Problem::forbidden(format!(
            "role {} may not read this record",
            reader.participant.role
        )),
        _ => consent_denied(reader.purpose),
    }
}

fn consent_denied(purpose: Purpose) -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "consent_denied",
        format!(
            "the patient's consent directive denies this read for {purpose}; a doctor may \
             read for ETREAT with a reason in {REASON_HEADER} (break-glass, reviewed)"
        ),
    )
}
