//! Views the node keeps of its committed log: current NEWS2 alerts and the
//! public-health counts behind the statistics.
//!
//! A view is derived data. One thread follows the log block by block, from
//! the first block on start-up and then as blocks are committed, so every
//! view is a function of the log alone and is rebuilt by restarting. Each
//! answer says up to which log size it has read.

use medledger_formats::block::Block;
use medledger_formats::merkle::Hash;
use medledger_formats::tx::Transaction;
use medledger_health::alerts::{Assessment, PatientVitals};
use medledger_health::calendar::instant_of_ms;
use medledger_health::news2::Risk;
use medledger_health::records::{self, VitalSigns};
use medledger_health::{fhir, registries};
use medledger_ledger::{CommitFeed, Followers, Store, kind};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;
use tokio::sync::broadcast;

/// Alert changes kept for subscribers that fall behind.
const EVENT_BUFFER: usize = 4096;

/// A current alert, rendered once when it changes.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Alert {
    /// Position in the stream of alert changes.
    pub seq: u64,
    /// The patient's pseudonym.
    pub patient: String,
    /// `low`, `low_medium`, `medium` or `high`.
    pub level: Risk,
    /// Aggregate NEWS2 score (a lower bound unless `complete`).
    pub score: u8,
    /// Whether every parameter had a reading in the window.
    pub complete: bool,
    /// Parameters without a usable reading in the window.
    pub missing: Vec<medledger_health::news2::Parameter>,
    /// The newest reading's time.
    pub time: String,
    /// The SpO2 scale that applied (1 or 2).
    pub spo2_scale: medledger_health::news2::SpO2Scale,
    /// Each scored parameter with its reading and source transaction.
    pub parameters: Vec<Value>,
    /// The transactions the alert rests on: leaf and id.
    pub transactions: Vec<Value>,
}

/// What subscribers of the alert stream receive.
#[derive(Clone, Debug)]
pub(crate) enum AlertEvent {
    /// A patient's alert appeared or changed.
    Raised(Arc<Alert>),
    /// A patient's alert ended (the score fell to 0).
    Cleared {
        /// Position in the stream of alert changes.
        seq: u64,
        /// The patient's pseudonym.
        patient: String,
    },
}

#[derive(Default)]
struct Tracked {
    vitals: PatientVitals,
    /// Transaction ids of the readings the patient's assessment may use.
    ids: HashMap<u64, Hash>,
    alert: Option<Arc<Alert>>,
}

#[derive(Default)]
struct AlertBook {
    patients: HashMap<String, Tracked>,
    seq: u64,
}

/// The public-health counts in force: for each report's identity (the
/// reporting institution with the report's day, region and code), its
/// latest version. A later version replaces the earlier one here; both stay
/// on the ledger.
#[derive(Default)]
pub(crate) struct Counts {
    /// Epidemic reports by (institution, date, region, disease).
    pub epidemic: HashMap<(String, String, String, String), registries::EpidemicReport>,
    /// Vaccination reports by (institution, date, region, vaccine, dose, age band).
    #[allow(clippy::type_complexity)]
    pub vaccination:
        HashMap<(String, String, String, String, u8, String), registries::VaccinationReport>,
}

/// One organ-donor decision on record.
#[derive(Clone, Debug)]
pub(crate) struct DonorEntry {
    /// Its leaf.
    pub leaf: u64,
    /// Its transaction id.
    pub id: Hash,
    /// The decision.
    pub decision: registries::DonorDecision,
}

/// The node's views of its log.
pub struct Views {
    window_ms: i64,
    applied: AtomicU64,
    alerts: Mutex<AlertBook>,
    counts: RwLock<Counts>,
    donors: RwLock<HashMap<String, Vec<DonorEntry>>>,
    events: broadcast::Sender<AlertEvent>,
    closed: tokio::sync::watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Views {
    fn new(window_minutes: u64) -> Arc<Self> {
        Arc::new(Views {
            window_ms: (window_minutes * 60_000) as i64,
            applied: AtomicU64::new(0),
            alerts: Mutex::default(),
            counts: RwLock::default(),
            donors: RwLock::default(),
            events: broadcast::channel(EVENT_BUFFER).0,
            closed: tokio::sync::watch::channel(false).0,
        })
    }

    /// Views of the log, kept up to date on a follower thread until the
    /// followers stop or the views are dropped.
    pub fn follow(log: &Followers, window_minutes: u64) -> Arc<Self> {
        let views = Self::new(window_minutes);
        let weak = Arc::downgrade(&views);
        let spawned = log.spawn("views", move |store, commits| {
            follow(&weak, &store, &commits);
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the views thread");
        }
        views
    }

    /// Log size the views have read up to.
    pub(crate) fn applied(&self) -> u64 {
        self.applied.load(Ordering::SeqCst)
    }

    /// The NEWS2 window, minutes.
    pub(crate) fn window_minutes(&self) -> u64 {
        (self.window_ms / 60_000) as u64
    }

    /// Current alerts, highest level and score first, then newest.
    pub(crate) fn alerts(&self) -> Vec<Arc<Alert>> {
        let book = lock(&self.alerts);
        let mut out: Vec<Arc<Alert>> = book
            .patients
            .values()
            .filter_map(|t| t.alert.clone())
            .collect();
        out.sort_by(|a, b| {
            (b.level, b.score, &b.time, &a.patient).cmp(&(a.level, a.score, &a.time, &b.patient))
        });
        out
    }

    /// Subscribes to alert changes, and to the node closing.
    pub(crate) fn subscribe(
        &self,
    ) -> (
        broadcast::Receiver<AlertEvent>,
        tokio::sync::watch::Receiver<bool>,
    ) {
        (self.events.subscribe(), self.closed.subscribe())
    }

    /// Ends every subscription: the node is shutting down.
    pub(crate) fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Reads the counts in force.
    pub(crate) fn counts(&self) -> std::sync::RwLockReadGuard<'_, Counts> {
        self.counts.read().unwrap_or_else(|p| p.into_inner())
    }

    /// A patient's organ-donor decisions, in ledger order.
    pub(crate) fn donor_decisions(&self, patient: &str) -> Vec<DonorEntry> {
        let donors = self.donors.read().unwrap_or_else(|p| p.into_inner());
        donors.get(patient).cloned().unwrap_or_default()
    }

    /// Forgets everything read, so that the log is read again from its
    /// first block: after a redaction, whose erased records must leave every
    /// view (alerts, counts, donor decisions) and every statistic they fed.
    fn reset(&self) {
        let mut book = lock(&self.alerts);
        let patients: Vec<String> = book
            .patients
            .iter()
            .filter(|(_, t)| t.alert.is_some())
            .map(|(p, _)| p.clone())
            .collect();
        book.patients.clear();
        for patient in patients {
            book.seq += 1;
            let _ = self.events.send(AlertEvent::Cleared {
                seq: book.seq,
                patient,
            });
        }
        *self.counts.write().unwrap_or_else(|p| p.into_inner()) = Counts::default();
        self.donors
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    fn apply(&self, block: &Block, directory: &mut Directory<'_>) {
        let first = block.header.header().first_leaf;
        let mut touched: Vec<String> = Vec::new();
        let mut book = lock(&self.alerts);
        for (i, tx) in block.txs.iter().enumerate() {
            let leaf = first + i as u64;
            match tx.header().kind.as_str() {
                kind::VITAL_SIGNS | kind::FHIR_OBSERVATION => {
                    let Some(v) = vital_signs(tx) else { continue };
                    let tracked = book.patients.entry(v.patient.clone()).or_default();
                    if tracked.vitals.record(&v, leaf) {
                        tracked.ids.insert(leaf, *tx.id());
                        touched.push(v.patient);
                    }
                }
                kind::ORGAN_DONOR_DECISION => {
                    if let Ok(decision) = registries::donor(tx.payload_jcs()) {
                        let mut donors = self.donors.write().unwrap_or_else(|p| p.into_inner());
                        donors
                            .entry(decision.patient.clone())
                            .or_default()
                            .push(DonorEntry {
                                leaf,
                                id: *tx.id(),
                                decision,
                            });
                    }
                }
                kind::EPIDEMIC_REPORT | kind::VACCINATION_REPORT => {
                    if let Some(institution) = directory.institution(tx) {
                        self.count(tx, institution);
                    }
                }
                _ => {}
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for patient in touched {
            self.reassess(&mut book, patient);
        }
        self.applied
            .store(block.header.header().log_size, Ordering::SeqCst);
    }

    fn reassess(&self, book: &mut AlertBook, patient: String) {
        let Some(tracked) = book.patients.get_mut(&patient) else {
            return;
        };
        let assessment = tracked
            .vitals
            .assess(self.window_ms)
            .filter(|a| a.level().is_some());
        let Some(a) = assessment else {
            tracked.ids.clear();
            if tracked.alert.take().is_some() {
                book.seq += 1;
                let _ = self.events.send(AlertEvent::Cleared {
                    seq: book.seq,
                    patient,
                });
            }
            return;
        };
        let leaves = a.leaves();
        tracked.ids.retain(|leaf, _| leaves.contains(leaf));
        if let Some(old) = &tracked.alert
            && same(old, &a, &leaves)
        {
            return;
        }
        book.seq += 1;
        let alert = Arc::new(render(book.seq, &patient, &a, &leaves, &tracked.ids));
        tracked.alert = Some(alert.clone());
        let _ = self.events.send(AlertEvent::Raised(alert));
    }

    fn count(&self, tx: &Transaction, institution: String) {
        let mut counts = self.counts.write().unwrap_or_else(|p| p.into_inner());
        let payload = tx.payload_jcs();
        if tx.header().kind == kind::EPIDEMIC_REPORT {
            let Ok(r) = registries::epidemic(payload) else {
                return;
            };
            let key = (
                institution,
                r.date.clone(),
                r.region.clone(),
                r.disease.clone(),
            );
            counts.epidemic.insert(key, r);
        } else {
            let Ok(r) = registries::vaccination(payload) else {
                return;
            };
            let key = (
                institution,
                r.date.clone(),
                r.region.clone(),
                r.vaccine.clone(),
                r.dose,
                r.age_band.clone(),
            );
            counts.vaccination.insert(key, r);
        }
    }
}

fn same(old: &Alert, a: &Assessment, leaves: &[u64]) -> bool {
    Some(old.level) == a.level()
        && old.score == a.total
        && old.transactions.len() == leaves.len()
        && old
            .transactions
            .iter()
            .zip(leaves)
            .all(|(t, l)| t["leaf"].as_u64() == Some(*l))
}

fn render(
    seq: u64,
    patient: &str,
    a: &Assessment,
    leaves: &[u64],
    ids: &HashMap<u64, Hash>,
) -> Alert {
    let id = |leaf: &u64| ids.get(leaf).map(hex::encode);
    Alert {
        seq,
        patient: patient.to_owned(),
        level: a.risk,
        score: a.total,
        complete: a.complete,
        missing: a.missing.clone(),
        time: instant_of_ms(a.time_ms),
        spo2_scale: a.spo2_scale,
        parameters: a
            .parameters
            .iter()
            .map(|s| {
                json!({
                    "parameter": s.parameter,
                    "value": s.value,
                    "points": s.points,
                    "time": instant_of_ms(s.time_ms),
                    "leaf": s.leaf,
                    "transaction": id(&s.leaf),
                })
            })
            .collect(),
        transactions: leaves
            .iter()
            .map(|l| json!({"leaf": l, "id": id(l)}))
            .collect(),
    }
}

/// The vital-sign readings of a committed `vital_signs` transaction or
/// FHIR vital-signs Observation.
fn vital_signs(tx: &Transaction) -> Option<VitalSigns> {
    let payload = tx.payload_jcs();
    if tx.header().kind == kind::VITAL_SIGNS {
        return serde_json::from_slice(payload).ok();
    }
    let v: Value = serde_json::from_slice(payload).ok()?;
    let summary = fhir::validate(&v).ok()?;
    (summary.kind == fhir::KIND_OBSERVATION).then_some(())?;
    records::vital_signs_of(&v, &summary)
}

/// Participants' institutions, read from the directory once each.
struct Directory<'a> {
    store: &'a Store,
    institutions: HashMap<[u8; 32], String>,
}

impl Directory<'_> {
    fn institution(&mut self, tx: &Transaction) -> Option<String> {
        let key = tx.header().author.0;
        if let Some(i) = self.institutions.get(&key) {
            return Some(i.clone());
        }
        let p = match self.store.participant(&key) {
            Ok(p) => p?,
            Err(e) => {
                tracing::error!(error = %e, "views: cannot read the author's record");
                return None;
            }
        };
        self.institutions.insert(key, p.institution.clone());
        Some(p.institution)
    }
}

/// True if `block` holds a redaction.
fn redacts(block: &Block) -> bool {
    block.txs.iter().any(|t| t.header().kind == kind::REDACTION)
}

/// Applies every committed block to the views, in order, until the views
/// are dropped or the sequencer stops.
fn follow(views: &Weak<Views>, store: &Store, commits: &CommitFeed) {
    let mut directory = Directory {
        store,
        institutions: HashMap::new(),
    };
    let mut next = 0u64;
    loop {
        let Some(v) = views.upgrade() else { return };
        let blocks = store.last().map_or(0, |h| h.header().height + 1);
        while next < blocks {
            match store.block(next) {
                Ok(block) if next > 0 && redacts(&block) => {
                    // Read the log again: its redacted payloads are gone now.
                    tracing::info!(height = next, "views: rebuilding after a redaction");
                    v.reset();
                    for h in 0..=next {
                        match store.block(h) {
                            Ok(b) => v.apply(&b, &mut directory),
                            Err(e) => {
                                tracing::error!(height = h, error = %e, "views cannot rebuild");
                                return;
                            }
                        }
                    }
                    next += 1;
                }
                Ok(block) => {
                    v.apply(&block, &mut directory);
                    next += 1;
                }
                Err(e @ medledger_ledger::LedgerError::Damaged { .. }) => {
                    // Retrying cannot mend it; the views stay at the block before.
                    tracing::error!(height = next, error = %e, "views stop at a damaged block");
                    return;
                }
                Err(e) => {
                    tracing::error!(height = next, error = %e, "views cannot read a block; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                    break;
                }
            }
        }
        let applied = v.applied();
        drop(v);
        if commits
            .wait_beyond(applied, Duration::from_millis(250))
            .is_none()
        {
            return;
        }
    }
}
