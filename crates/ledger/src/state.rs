//! The deterministic state machine. Its state is a function of the ordered
//! blocks alone: the same blocks give the same participants, log and tip on
//! every node, whether they were sequenced here or received from a leader.
//!
//! It does no I/O. Whether a transaction id was already committed is asked
//! through [`Seen`], which storage answers from its index.

use crate::roles::{Role, allowed_roles, kind, may_redact};
use ed25519_dalek::SigningKey;
use medledger_formats::block::{BLOCK_VERSION, Block, BlockHeader, SealedHeader};
use medledger_formats::bytes::Bytes;
use medledger_formats::keys::{self, PublicKey};
use medledger_formats::merkle::{self, Frontier, Hash};
use medledger_formats::tx::Transaction;
use medledger_health::access::Verdict;
use medledger_health::fhir::FhirError;
use medledger_health::pii::PiiFinding;
use medledger_health::prescription::Amount;
pub use medledger_health::records::Checked;
use medledger_health::records::{self, PayloadError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet};

/// Default tolerated difference between a transaction's time and its block's.
pub const DEFAULT_MAX_SKEW_MS: u64 = 5 * 60 * 1000;

/// Default time the data-protection officer has to review a break-glass
/// read: 72 hours.
pub const DEFAULT_BREAK_GLASS_REVIEW_MS: u64 = 72 * 60 * 60 * 1000;

/// Smallest and largest review deadline a genesis may set: a minute to 90
/// days.
const REVIEW_RANGE_MS: std::ops::RangeInclusive<u64> = 60_000..=90 * 86_400_000;

/// A break-glass read as the ledger tracks it: the flagged access entry,
/// and its review once the data-protection officer has submitted one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakGlass {
    /// The access entry's id.
    pub id: Bytes<32>,
    /// Its log index.
    pub leaf: u64,
    /// Its time (the serving node's clock), ms since the epoch.
    pub time: u64,
    /// The patients whose records it read.
    pub patients: Vec<String>,
    /// The log index of its review, once reviewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<u64>,
}

impl BreakGlass {
    /// Whether the entry is unreviewed past its deadline at `now_ms`:
    /// `deadline_ms` after its time, the deadline itself still on time.
    pub fn overdue(&self, deadline_ms: u64, now_ms: u64) -> bool {
        self.review.is_none() && now_ms > self.time.saturating_add(deadline_ms)
    }
}

/// An e-prescription as the dispensing rules track it: what it allows, and
/// what has been dispensed against it so far, summed over every pharmacy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrescriptionRecord {
    /// The prescription's transaction id.
    pub id: Bytes<32>,
    /// Its log index.
    pub leaf: u64,
    /// The prescribing doctor (the transaction's author).
    pub prescriber: PublicKey,
    /// The patient's pseudonym.
    pub patient: String,
    /// The ATC code of the substance.
    pub atc: String,
    /// The amount of one fill, and its UCUM unit.
    pub per_fill: Amount,
    /// Fills allowed: 1 + `numberOfRepeatsAllowed`.
    pub fills_allowed: u32,
    /// Fills dispensed so far.
    pub fills_used: u32,
    /// Amount dispensed so far, in thousandths of `per_fill.unit`.
    pub dispensed_milli: u64,
    /// Start of the validity period, ms since the epoch.
    pub valid_from_ms: i64,
    /// End of the validity period (exclusive), ms since the epoch.
    pub valid_until_ms: i64,
    /// The log index of its cancellation, once cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<u64>,
}

impl PrescriptionRecord {
    /// What may still be dispensed, in thousandths of the unit.
    pub fn remaining_milli(&self) -> u64 {
        self.per_fill
            .milli
            .saturating_mul(u64::from(self.fills_allowed))
            .saturating_sub(self.dispensed_milli)
    }
}

/// A registered participant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Participant {
    /// Public key (also the participant id).
    pub key: PublicKey,
    /// Role.
    pub role: Role,
    /// Institution it belongs to.
    pub institution: String,
    /// Human-readable label (never a patient's name).
    #[serde(default)]
    pub label: String,
    /// Log index of the registering transaction.
    pub registered_at: u64,
    /// Log index of the revoking transaction, if revoked.
    #[serde(default)]
    pub revoked_at: Option<u64>,
    /// For a device: the one patient (pseudonym) it may write about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// For a node of a cluster: its Raft id and address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterMember>,
}

/// A node's place in a cluster: its Raft id and the base URL other nodes
/// reach it at. Registering a node with one adds it to the cluster;
/// revoking it removes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterMember {
    /// Raft node id, unique among the ledger's active nodes, at least 1.
    pub id: u64,
    /// Base URL other nodes reach it at for Raft and block fetches, e.g.
    /// `http://10.0.0.2:7878`, or `https://10.0.0.2:7879` for its mutual-TLS
    /// cluster listener.
    pub addr: String,
    /// Base URL of its public API when that is not `addr` (clients are
    /// redirected there, and peers ask it for cosignatures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
}

fn check_url(what: &str, url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(r)
            if !r.is_empty()
                && url.len() <= 200
                && !url.contains(|c: char| c.is_whitespace() || c.is_control()) =>
        {
            Ok(())
        }
        _ => Err(format!("{what} must be an http:// or https:// base URL")),
    }
}

impl ClusterMember {
    /// Checks the id and the addresses.
    pub fn check(&self) -> Result<(), String> {
        if self.id == 0 {
            return Err("cluster id must be at least 1".into());
        }
        check_url("cluster addr", &self.addr)?;
        match &self.api {
            Some(api) => check_url("cluster api", api),
            None => Ok(()),
        }
    }

    /// Where its public API is.
    pub fn api(&self) -> &str {
        self.api.as_deref().unwrap_or(&self.addr)
    }
}

/// Payload of `participant.register`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterPayload {
    /// The new participant's public key.
    pub key: PublicKey,
    /// Its role.
    pub role: Role,
    /// Its institution.
    pub institution: String,
    /// Optional label.
    #[serde(default)]
    pub label: String,
    /// For a device: the one patient (pseudonym) it may write about;
    /// required for devices, refused for every other role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// For a node: its place in the cluster (refused for other roles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterMember>,
}

/// Payload of `participant.revoke`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokePayload {
    /// The participant to revoke.
    pub key: PublicKey,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

/// Payload of `ledger.genesis`, the first transaction of block 0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GenesisPayload {
    /// The checkpoint origin line.
    pub origin: String,
    /// The first admin's key; it also signs this transaction.
    pub admin: PublicKey,
    /// The node key that proposes blocks and signs checkpoints.
    pub node: PublicKey,
    /// The institution running the ledger.
    pub institution: String,
    /// Allowed distance between a transaction's time and its block's time.
    /// A rule of the ledger, so it lives in genesis: every node and every
    /// verifier judges the same blocks the same way.
    pub max_skew_ms: u64,
    /// The first node's place in the cluster, for a ledger run by a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterMember>,
    /// How long after a break-glass read its review is due. Left out when
    /// it is the default, so genesis payloads written before it existed
    /// still read, and hash, as they did.
    #[serde(
        default = "default_review_ms",
        skip_serializing_if = "is_default_review_ms"
    )]
    pub break_glass_review_ms: u64,
}

fn default_review_ms() -> u64 {
    DEFAULT_BREAK_GLASS_REVIEW_MS
}

fn is_default_review_ms(ms: &u64) -> bool {
    *ms == DEFAULT_BREAK_GLASS_REVIEW_MS
}

/// Smallest and largest skew a genesis may set.
const SKEW_RANGE_MS: std::ops::RangeInclusive<u64> = 1_000..=86_400_000;

/// Why a transaction is not admitted. Each has a stable code.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rejection {
    /// The author is not registered.
    #[error("author is not a registered participant")]
    UnknownAuthor,
    /// The author was revoked.
    #[error("author was revoked")]
    RevokedAuthor,
    /// The author's role may not submit this kind.
    #[error("role {role} may not submit {kind}")]
    RoleNotAllowed {
        /// Author's role.
        role: Role,
        /// Transaction kind.
        kind: String,
    },
    /// The kind is not one the ledger knows.
    #[error("unknown transaction kind {0}")]
    UnknownKind(String),
    /// The id was already committed, or appears twice.
    #[error("duplicate transaction")]
    Duplicate,
    /// Too far in the past.
    #[error("transaction time is more than {max_skew_ms} ms before the ledger's clock")]
    Stale {
        /// Allowed skew.
        max_skew_ms: u64,
    },
    /// Too far in the future.
    #[error("transaction time is more than {max_skew_ms} ms after the ledger's clock")]
    Future {
        /// Allowed skew.
        max_skew_ms: u64,
    },
    /// The payload does not fit the kind's schema.
    #[error("invalid payload: {0}")]
    Schema(String),
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// A device wrote about another patient than the one it is bound to.
    #[error("a device or patient may write only about the patient it is registered for")]
    DevicePatient,
    /// A doctor recorded an organ-donor decision for a patient who has not
    /// chosen them.
    #[error("only the patient's chosen doctor or a registry officer may record this")]
    NotChosenDoctor,
    /// The payload holds a direct identifier (the value is never repeated).
    #[error("{0}")]
    Pii(PiiFinding),
    /// A FHIR resource breaks a rule.
    #[error("{0}")]
    Fhir(FhirError),
    /// A genesis transaction anywhere but the ledger's first leaf.
    #[error("genesis is only valid as the first transaction")]
    GenesisNotFirst,
    /// A genesis not signed by the admin key it names.
    #[error("genesis must be signed by its admin key")]
    GenesisNotByAdmin,
    /// A genesis whose ledger rules are out of bounds.
    #[error("invalid genesis: {0}")]
    GenesisInvalid(String),
    /// A medical report for another institution than its author's.
    #[error("institution must be the doctor's registered institution, {institution}")]
    WrongInstitution {
        /// The author's registered institution.
        institution: String,
    },
    /// A chosen doctor who is not an active doctor of the author's
    /// institution.
    #[error("doctor must be an active doctor of {institution}")]
    DoctorNotEligible {
        /// The author's registered institution.
        institution: String,
    },
    /// A field that must hold an Ed25519 public key does not.
    #[error("{field} is not a valid Ed25519 public key, 64 lowercase hex digits")]
    BadKey {
        /// The payload field.
        field: &'static str,
    },
    /// The key is a participant already.
    #[error("key is already registered")]
    AlreadyRegistered,
    /// A participant registered without an institution.
    #[error("institution is required")]
    InstitutionRequired,
    /// A device without its one patient, or a patient given to another role.
    #[error("{0}")]
    PatientBinding(&'static str),
    /// A cluster place that is malformed, taken, or not a node's.
    #[error("invalid cluster place: {0}")]
    ClusterPlace(String),
    /// Revoking a key that is not registered.
    #[error("key is not registered")]
    NotRegistered,
    /// Revoking a participant twice.
    #[error("participant is already revoked")]
    AlreadyRevoked,
    /// Revoking the last cluster node, which would leave no proposer.
    #[error("a node key can be revoked only while another cluster node remains")]
    LastNode,
    /// The pseudonymization authority registering or revoking anything but
    /// a patient, or anyone else registering a patient.
    #[error(
        "only the pseudonymization authority registers patients, and it registers nothing else"
    )]
    RegistrarNotAllowed,
    /// A doctor's consent directive that does not reference the signed form
    /// it was taken from.
    #[error(
        "a directive submitted on a patient's behalf must reference the signed form (sourceReference)"
    )]
    ConsentFormRequired,
    /// A review of an id that is no committed break-glass access entry.
    #[error("entry names no committed access entry flagged break-glass")]
    NotBreakGlass,
    /// A second review of the same break-glass entry.
    #[error("this break-glass entry has been reviewed already")]
    AlreadyReviewed,
    /// A review whose patients are not exactly its entry's.
    #[error("a review names exactly the patients of the entry it reviews")]
    ReviewPatients,
    /// A redaction target that is no committed transaction (or is still in
    /// flight: a redaction names only what an earlier block committed).
    #[error("redaction target {0} is not a committed transaction")]
    RedactionTargetUnknown(String),
    /// A redaction target of a kind the ledger needs whole.
    #[error("redaction target {id} is a {kind}, which may not be redacted")]
    RedactionTargetKind {
        /// The target, hex.
        id: String,
        /// Its kind.
        kind: String,
    },
    /// A redaction target that an earlier redaction erased already.
    #[error("redaction target {0} is already redacted")]
    AlreadyRedacted(String),
    /// A redaction whose patient is not its targets' patient.
    #[error("redaction target {0} is not about the patient the redaction names")]
    RedactionPatient(String),
    /// A redacted payload where none may be: a kind that may not be redacted.
    #[error("a {0} transaction may not be redacted")]
    RedactedKind(String),
    /// A redaction naming as its request no committed erasure request of
    /// its patient.
    #[error("request names no committed erasure request of the redaction's patient")]
    RedactionRequest,
    /// A dispense or cancellation naming no committed prescription.
    #[error("prescription {0} is not a committed prescription")]
    PrescriptionUnknown(String),
    /// A dispense before the prescription's validity period starts.
    #[error("the prescription is not valid yet")]
    PrescriptionNotYetValid,
    /// A dispense (or a prescription) after the validity period ended.
    #[error("the prescription has expired")]
    PrescriptionExpired,
    /// A dispense or cancellation of a cancelled prescription.
    #[error("the prescription was cancelled")]
    PrescriptionCancelled,
    /// A dispense or cancellation about another patient than the
    /// prescription's.
    #[error("the patient is not the prescription's patient")]
    PrescriptionPatient,
    /// A dispense of another substance than the one prescribed.
    #[error("the medication is not the prescribed substance, {atc}")]
    DispenseMedication {
        /// The prescribed ATC code.
        atc: String,
    },
    /// A dispense in another unit than the prescription's quantity.
    #[error("the quantity must be given in the prescription's unit, {unit}")]
    DispenseUnit {
        /// The prescribed UCUM unit.
        unit: String,
    },
    /// A fill beyond the fills the prescription allows (a second fill of a
    /// single-fill prescription).
    #[error("the prescription allows {allowed} fill(s), and all have been dispensed")]
    FillsExhausted {
        /// Fills allowed: 1 + repeats.
        allowed: u32,
    },
    /// A dispense of more than remains of the prescription, summed over
    /// every pharmacy.
    #[error("the quantity exceeds what remains of the prescription, {remaining}")]
    DispenseOverQuantity {
        /// What remains, with its unit.
        remaining: String,
    },
    /// A cancellation by anyone but the prescription's prescriber.
    #[error("only the prescriber may cancel a prescription")]
    NotPrescriber,
    /// A dispense handed over later than the ledger's clock allows.
    #[error("whenHandedOver is more than {max_skew_ms} ms after the ledger's clock")]
    HandedOverFuture {
        /// Allowed skew.
        max_skew_ms: u64,
    },
}

impl Rejection {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::UnknownAuthor => "unknown_author",
            Rejection::RevokedAuthor => "revoked_author",
            Rejection::RoleNotAllowed { .. } => "role_not_allowed",
            Rejection::UnknownKind(_) => "unknown_kind",
            Rejection::Duplicate => "duplicate",
            Rejection::Stale { .. } => "stale_time",
            Rejection::Future { .. } => "future_time",
            Rejection::Schema(_) => "schema_violation",
            Rejection::BadSignature => "bad_signature",
            Rejection::DevicePatient => "device_patient_mismatch",
            Rejection::NotChosenDoctor => "not_chosen_doctor",
            Rejection::Pii(_) => "pii_detected",
            Rejection::Fhir(_) => "fhir_invalid",
            Rejection::GenesisNotFirst => "genesis_not_first",
            Rejection::GenesisNotByAdmin => "genesis_not_by_admin",
            Rejection::GenesisInvalid(_) => "genesis_invalid",
            Rejection::WrongInstitution { .. } => "wrong_institution",
            Rejection::DoctorNotEligible { .. } => "doctor_not_eligible",
            Rejection::BadKey { .. } => "bad_key",
            Rejection::AlreadyRegistered => "already_registered",
            Rejection::InstitutionRequired => "institution_required",
            Rejection::PatientBinding(_) => "patient_binding",
            Rejection::RegistrarNotAllowed => "registrar_not_allowed",
            Rejection::ClusterPlace(_) => "cluster_place",
            Rejection::NotRegistered => "not_registered",
            Rejection::AlreadyRevoked => "already_revoked",
            Rejection::LastNode => "last_node",
            Rejection::ConsentFormRequired => "consent_form_required",
            Rejection::NotBreakGlass => "not_break_glass",
            Rejection::AlreadyReviewed => "already_reviewed",
            Rejection::ReviewPatients => "review_patients",
            Rejection::RedactionTargetUnknown(_) => "redaction_target_unknown",
            Rejection::RedactionTargetKind { .. } => "redaction_target_kind",
            Rejection::AlreadyRedacted(_) => "already_redacted",
            Rejection::RedactionPatient(_) => "redaction_patient",
            Rejection::RedactedKind(_) => "redacted_kind",
            Rejection::RedactionRequest => "redaction_request",
            Rejection::PrescriptionUnknown(_) => "prescription_unknown",
            Rejection::PrescriptionNotYetValid => "prescription_not_yet_valid",
            Rejection::PrescriptionExpired => "prescription_expired",
            Rejection::PrescriptionCancelled => "prescription_cancelled",
            Rejection::PrescriptionPatient => "prescription_patient",
            Rejection::DispenseMedication { .. } => "dispense_medication",
            Rejection::DispenseUnit { .. } => "dispense_unit",
            Rejection::FillsExhausted { .. } => "fills_exhausted",
            Rejection::DispenseOverQuantity { .. } => "dispense_over_quantity",
            Rejection::NotPrescriber => "not_prescriber",
            Rejection::HandedOverFuture { .. } => "handed_over_future",
        }
    }
}

/// Why a block does not follow from the state.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlockFault {
    /// Wrong height.
    #[error("height {found}, expected {expected}")]
    Height {
        /// Next height.
        expected: u64,
        /// Height in the block.
        found: u64,
    },
    /// `prev_hash` does not name the previous block.
    #[error("prev_hash does not match the previous block's hash")]
    PrevHash,
    /// `first_leaf` or `log_size` is off.
    #[error(
        "log position mismatch: first_leaf {first_leaf}, log_size {log_size}, log had {expected} leaves"
    )]
    LogPosition {
        /// Block's first leaf.
        first_leaf: u64,
        /// Block's log size.
        log_size: u64,
        /// Leaves before the block.
        expected: u64,
    },
    /// `txs_root` does not match the transactions.
    #[error("txs_root does not match the block's transactions")]
    TxsRoot,
    /// `log_root` does not match the log.
    #[error("log_root does not match the log after this block")]
    LogRoot,
    /// Time went backwards.
    #[error("block time goes backwards")]
    Time,
    /// The proposer is not a registered, active node.
    #[error("proposer is not an active node")]
    Proposer,
    /// The proposer signature fails.
    #[error("proposer signature does not verify")]
    Signature,
    /// Genesis is malformed.
    #[error("invalid genesis: {0}")]
    Genesis(String),
    /// A transaction is not admissible.
    #[error("transaction {index} ({id}): {rejection}")]
    Tx {
        /// Position in the block.
        index: usize,
        /// Its id, hex.
        id: String,
        /// Why.
        rejection: Rejection,
    },
}

/// Answers whether an id was already committed.
pub trait Seen {
    /// True if `id` is in the log.
    fn seen(&self, id: &Hash) -> bool;
    /// What is known of the committed transaction `id` (for a redaction's
    /// targets); `None` if it is not committed, or not known here.
    fn facts(&self, _id: &Hash) -> Option<medledger_store::TxFacts> {
        None
    }
}

/// Knows of nothing: for admitting without the log at hand (genesis, tests).
struct NothingSeen;

impl Seen for NothingSeen {
    fn seen(&self, _id: &Hash) -> bool {
        false
    }
}

impl Seen for HashSet<Hash> {
    fn seen(&self, id: &Hash) -> bool {
        self.contains(id)
    }
}

/// The end of the chain: what the next block must build on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tip {
    /// Height of the next block.
    pub next_height: u64,
    /// Hash of the last block (zeros before genesis).
    pub prev_hash: Hash,
    /// The log's frontier.
    pub log: Frontier,
    /// Time of the last block.
    pub time: u64,
}

impl Default for Tip {
    fn default() -> Self {
        Tip {
            next_height: 0,
            prev_hash: [0u8; 32],
            log: Frontier::new(),
            time: 0,
        }
    }
}

/// The ledger's state.
#[derive(Clone, Debug, Default)]
pub struct LedgerState {
    participants: HashMap<PublicKey, Participant>,
    /// Patient pseudonym → the patient's chosen doctor.
    chosen: HashMap<String, PublicKey>,
    origin: Option<String>,
    tip: Tip,
    max_skew_ms: u64,
    /// Break-glass access entries by id, reviewed or not. They are rare:
    /// a read over a patient's denial.
    break_glass: HashMap<Hash, BreakGlass>,
    /// How long after a break-glass read its review is due.
    break_glass_review_ms: u64,
    /// Redacted transactions: id → (leaf, leaf of the redaction).
    redacted: HashMap<Hash, (u64, u64)>,
    /// e-Prescriptions by transaction id, with what was dispensed.
    prescriptions: HashMap<Hash, PrescriptionRecord>,
}

/// What an admitted transaction changes.
enum Effect {
    None,
    Genesis(GenesisPayload),
    Register(RegisterPayload),
    Revoke(PublicKey),
    Chosen(String, PublicKey),
    /// A flagged access entry: id, time, patients.
    BreakGlass(Hash, u64, Vec<String>),
    /// A review of the break-glass entry with this id.
    Review(Hash),
    /// A redaction of these transactions: id and leaf.
    Redact(Vec<(Hash, u64)>),
    /// A new prescription.
    Prescribe(Box<PrescriptionRecord>),
    /// One fill of the prescription with this id, of this many thousandths.
    Dispensed(Hash, u64),
    /// The cancellation of the prescription with this id.
    Cancelled(Hash),
}

fn parse<T: for<'de> Deserialize<'de>>(tx: &Transaction) -> Result<T, Rejection> {
    serde_json::from_slice(tx.payload_jcs()).map_err(|e| Rejection::Schema(e.to_string()))
}

/// The rules a transaction's payload must meet on its own: the PII guard and
/// its kind's schema. A pure function of the transaction, so it can run
/// before the state is at hand, on any thread; [`LedgerState::admit`] runs
/// it when not given its verdict.
pub fn payload_rules(tx: &Transaction) -> Result<Checked, Rejection> {
    records::check_bytes(&tx.header().kind, tx.payload_jcs()).map_err(|e| match e {
        PayloadError::Pii(f) => Rejection::Pii(f),
        PayloadError::Fhir(f) => Rejection::Fhir(f),
        PayloadError::Schema(m) => Rejection::Schema(m),
    })
}

/// Genesis comes first, is signed by the admin it names, and sets a sane
/// skew, origin and cluster place.
fn check_genesis(tx: &Transaction, leaf: u64) -> Result<Effect, Rejection> {
    if leaf != 0 {
        return Err(Rejection::GenesisNotFirst);
    }
    let g: GenesisPayload = parse(tx)?;
    if g.admin != tx.header().author {
        return Err(Rejection::GenesisNotByAdmin);
    }
    if !SKEW_RANGE_MS.contains(&g.max_skew_ms) {
        return Err(Rejection::GenesisInvalid(format!(
            "max_skew_ms must lie in {SKEW_RANGE_MS:?}"
        )));
    }
    if g.origin.is_empty() || g.origin.contains(char::is_whitespace) || g.origin.contains('+') {
        return Err(Rejection::GenesisInvalid(
            "origin must be non-empty without spaces or '+'".into(),
        ));
    }
    if !REVIEW_RANGE_MS.contains(&g.break_glass_review_ms) {
        return Err(Rejection::GenesisInvalid(format!(
            "break_glass_review_ms must lie in {REVIEW_RANGE_MS:?}"
        )));
    }
    if let Some(c) = &g.cluster {
        c.check().map_err(Rejection::ClusterPlace)?;
    }
    Ok(Effect::Genesis(g))
}

/// Devices and patients write only about the one patient they are
/// registered for, as the payload rules read it: a device its readings,
/// a patient their own consent directives.
fn check_device_patient(author: &Participant, checked: &Checked) -> Result<(), Rejection> {
    if matches!(author.role, Role::Device | Role::Patient)
        && (checked.patient().is_none() || checked.patient() != author.patient.as_deref())
    {
        return Err(Rejection::DevicePatient);
    }
    Ok(())
}

impl LedgerState {
    /// An empty state before genesis; `max_skew_ms` judges only the genesis
    /// transaction itself, which then sets the ledger's own skew.
    pub fn new(max_skew_ms: u64) -> Self {
        Self {
            max_skew_ms,
            break_glass_review_ms: DEFAULT_BREAK_GLASS_REVIEW_MS,
            ..Self::default()
        }
    }

    /// Restores a state from stored participants and tip, so opening a
    /// ledger never replays it.
    pub fn restore(
        max_skew_ms: u64,
        participants: Vec<Participant>,
        chosen: HashMap<String, PublicKey>,
        origin: Option<String>,
        tip: Tip,
    ) -> Self {
        Self {
            participants: participants.into_iter().map(|p| (p.key, p)).collect(),
            chosen,
            origin,
            tip,
            max_skew_ms,
            break_glass: HashMap::new(),
            break_glass_review_ms: DEFAULT_BREAK_GLASS_REVIEW_MS,
            redacted: HashMap::new(),
            prescriptions: HashMap::new(),
        }
    }

    /// A restored state with its prescriptions, as the index holds them.
    pub fn with_prescriptions(mut self, records: Vec<PrescriptionRecord>) -> Self {
        self.prescriptions = records.into_iter().map(|r| (r.id.0, r)).collect();
        self
    }

    /// The prescription with transaction id `id`.
    pub fn prescription(&self, id: &Hash) -> Option<&PrescriptionRecord> {
        self.prescriptions.get(id)
    }

    /// A restored state with its break-glass entries and the review
    /// deadline its genesis set.
    pub fn with_break_glass(mut self, review_ms: u64, entries: Vec<BreakGlass>) -> Self {
        self.break_glass_review_ms = review_ms;
        self.break_glass = entries.into_iter().map(|b| (b.id.0, b)).collect();
        self
    }

    /// The break-glass entry with access-entry id `id`.
    pub fn break_glass(&self, id: &Hash) -> Option<&BreakGlass> {
        self.break_glass.get(id)
    }

    /// How long after a break-glass read its review is due, as genesis set it.
    pub fn break_glass_review_ms(&self) -> u64 {
        self.break_glass_review_ms
    }

    /// The participant with `key`.
    pub fn participant(&self, key: &PublicKey) -> Option<&Participant> {
        self.participants.get(key)
    }

    /// The active nodes that have a place in the cluster, by key.
    pub fn cluster_members(&self) -> impl Iterator<Item = (&PublicKey, &ClusterMember)> {
        self.participants
            .iter()
            .filter(|(_, p)| p.role == Role::Node && p.revoked_at.is_none())
            .filter_map(|(k, p)| p.cluster.as_ref().map(|c| (k, c)))
    }

    /// The chosen doctor of the patient with pseudonym `patient`.
    pub fn chosen_doctor(&self, patient: &str) -> Option<&PublicKey> {
        self.chosen.get(patient)
    }

    /// All participants.
    pub fn participants(&self) -> impl Iterator<Item = &Participant> {
        self.participants.values()
    }

    /// The origin, once genesis is applied.
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    /// The tip.
    pub fn tip(&self) -> &Tip {
        &self.tip
    }

    /// The allowed clock skew.
    pub fn max_skew_ms(&self) -> u64 {
        self.max_skew_ms
    }

    /// Checks one transaction against the state for a block at `block_time`
    /// holding `leaf`: what it changes, and its payload verdict. Does not
    /// check the signature or duplicates, nor the payload rules when
    /// `verdict` holds their outcome already. The rules run in this order,
    /// which decides the code a transaction breaking several of them gets.
    fn check(
        &self,
        tx: &Transaction,
        block_time: u64,
        leaf: u64,
        verdict: Option<Checked>,
        seen: &dyn Seen,
    ) -> Result<(Effect, Checked), Rejection> {
        self.check_time(tx, block_time)?;
        if tx.is_redacted() {
            // Its payload rules held when it was committed, and its payload
            // is gone; whether a redaction covers it is verify's to check.
            // Only a kind that may be redacted can be.
            self.check_author(tx)?;
            if !may_redact(&tx.header().kind) {
                return Err(Rejection::RedactedKind(tx.header().kind.clone()));
            }
            return Ok((Effect::None, Checked::Other));
        }
        if tx.header().kind == kind::GENESIS {
            return Ok((check_genesis(tx, leaf)?, Checked::Other));
        }
        let author = self.check_author(tx)?;
        let checked = match verdict {
            Some(c) => c,
            None => payload_rules(tx)?,
        };
        check_device_patient(author, &checked)?;
        let effect = match self.check_medication(tx, author, &checked, block_time)? {
            Some(effect) => effect,
            None => match self.check_content(author, &checked)? {
                Some(effect) => effect,
                None => match tx.header().kind.as_str() {
                    kind::REGISTER => self.check_register(author, tx)?,
                    kind::REVOKE => self.check_revoke(author, tx)?,
                    kind::REDACTION => self.check_redaction(&checked, seen)?,
                    _ => self.check_break_glass(tx, &checked)?,
                },
            },
        };
        Ok((effect, checked))
    }

    /// The dispensing rules. A prescription is not expired at its block's
    /// time. A dispense names a committed prescription that is not
    /// cancelled, of the same patient, substance and unit, handed over no
    /// later than the block (within the skew), within its validity period
    /// (both the block's time and `whenHandedOver`), with a
    /// fill left, and hands over at most what remains of the prescribed
    /// total (one fill's quantity times the fills allowed), summed over
    /// every pharmacy. Only the prescriber cancels, once. Checked in this
    /// order, which decides the code a dispense breaking several gets.
    fn check_medication(
        &self,
        tx: &Transaction,
        author: &Participant,
        checked: &Checked,
        block_time: u64,
    ) -> Result<Option<Effect>, Rejection> {
        let now = i64::try_from(block_time).unwrap_or(i64::MAX);
        let lookup = |id: &str| -> Result<(Hash, &PrescriptionRecord), Rejection> {
            let unknown = || Rejection::PrescriptionUnknown(id.to_owned());
            let h = Bytes::<32>::parse_hex(id).map_err(|_| unknown())?.0;
            self.prescriptions
                .get(&h)
                .map(|r| (h, r))
                .ok_or_else(unknown)
        };
        match checked {
            Checked::Prescription(p) => {
                let (summary, rx) = (&p.0, &p.1);
                if now >= rx.valid_until_ms {
                    return Err(Rejection::PrescriptionExpired);
                }
                Ok(Some(Effect::Prescribe(Box::new(PrescriptionRecord {
                    id: Bytes(*tx.id()),
                    leaf: 0, // Set when applied, at its log index.
                    prescriber: author.key,
                    patient: summary.patient.clone(),
                    atc: rx.atc.clone(),
                    per_fill: rx.per_fill.clone(),
                    fills_allowed: rx.repeats.saturating_add(1),
                    fills_used: 0,
                    dispensed_milli: 0,
                    valid_from_ms: rx.valid_from_ms,
                    valid_until_ms: rx.valid_until_ms,
                    cancelled_at: None,
                }))))
            }
            Checked::Dispense(d) => {
                let (summary, d) = (&d.0, &d.1);
                let (id, rx) = lookup(&d.prescription)?;
                if rx.cancelled_at.is_some() {
                    return Err(Rejection::PrescriptionCancelled);
                }
                if summary.patient != rx.patient {
                    return Err(Rejection::PrescriptionPatient);
                }
                if d.atc != rx.atc {
                    return Err(Rejection::DispenseMedication {
                        atc: rx.atc.clone(),
                    });
                }
                if d.quantity.unit != rx.per_fill.unit {
                    return Err(Rejection::DispenseUnit {
                        unit: rx.per_fill.unit.clone(),
                    });
                }
                // A hand-over is recorded once it has happened: no later
                // than the block, within the ledger's skew.
                let latest =
                    now.saturating_add(i64::try_from(self.max_skew_ms).unwrap_or(i64::MAX));
                if d.handed_over_ms > latest {
                    return Err(Rejection::HandedOverFuture {
                        max_skew_ms: self.max_skew_ms,
                    });
                }
                for t in [now, d.handed_over_ms] {
                    if t < rx.valid_from_ms {
                        return Err(Rejection::PrescriptionNotYetValid);
                    }
                    if t >= rx.valid_until_ms {
                        return Err(Rejection::PrescriptionExpired);
                    }
                }
                if rx.fills_used >= rx.fills_allowed {
                    return Err(Rejection::FillsExhausted {
                        allowed: rx.fills_allowed,
                    });
                }
                let remaining = rx.remaining_milli();
                if d.quantity.milli > remaining {
                    return Err(Rejection::DispenseOverQuantity {
                        remaining: Amount {
                            milli: remaining,
                            unit: rx.per_fill.unit.clone(),
                        }
                        .to_string(),
                    });
                }
                Ok(Some(Effect::Dispensed(id, d.quantity.milli)))
            }
            Checked::PrescriptionCancel(c) => {
                let (id, rx) = lookup(&c.prescription)?;
                if rx.prescriber != author.key {
                    return Err(Rejection::NotPrescriber);
                }
                if c.patient != rx.patient {
                    return Err(Rejection::PrescriptionPatient);
                }
                if rx.cancelled_at.is_some() {
                    return Err(Rejection::PrescriptionCancelled);
                }
                Ok(Some(Effect::Cancelled(id)))
            }
            _ => Ok(None),
        }
    }

    /// Every target of a redaction is a transaction an earlier block
    /// committed, of a kind that may be redacted, not redacted yet, and
    /// about the patient the redaction names (or about none, if it names none).
    fn check_redaction(&self, checked: &Checked, seen: &dyn Seen) -> Result<Effect, Rejection> {
        let Checked::Redaction(r) = checked else {
            return Err(Rejection::Schema("not a redaction".into()));
        };
        if let Some(q) = &r.request {
            let id = Bytes::<32>::parse_hex(q).map_err(|_| Rejection::RedactionRequest)?;
            match seen.facts(&id.0) {
                Some(f)
                    if f.kind == kind::ERASURE_REQUEST
                        && f.patient.as_ref().is_none_or(|p| *p == r.patient) => {}
                _ => return Err(Rejection::RedactionRequest),
            }
        }
        let mut out = Vec::with_capacity(r.targets.len());
        for t in &r.targets {
            let id = Bytes::<32>::parse_hex(t)
                .map_err(|_| Rejection::RedactionTargetUnknown(t.clone()))?
                .0;
            if self.redacted.contains_key(&id) {
                return Err(Rejection::AlreadyRedacted(t.clone()));
            }
            let facts = seen
                .facts(&id)
                .ok_or_else(|| Rejection::RedactionTargetUnknown(t.clone()))?;
            if !may_redact(&facts.kind) {
                return Err(Rejection::RedactionTargetKind {
                    id: t.clone(),
                    kind: facts.kind,
                });
            }
            if facts.redacted_by.is_some() {
                return Err(Rejection::AlreadyRedacted(t.clone()));
            }
            // An erased target's patient is no longer known: it was checked
            // when the first redaction of it was admitted.
            if facts.patient.is_some_and(|p| p != r.patient) {
                return Err(Rejection::RedactionPatient(t.clone()));
            }
            out.push((id, facts.leaf));
        }
        Ok(Effect::Redact(out))
    }

    /// The redacted transactions: id → (leaf, leaf of the redaction).
    pub fn redacted(&self) -> &HashMap<Hash, (u64, u64)> {
        &self.redacted
    }

    /// The state with these redactions in force (id, leaf, redaction's
    /// leaf), as the index holds them, when restoring.
    pub fn with_redacted(mut self, entries: impl IntoIterator<Item = (Hash, u64, u64)>) -> Self {
        self.redacted = entries
            .into_iter()
            .map(|(id, leaf, by)| (id, (leaf, by)))
            .collect();
        self
    }

    /// A transaction's time lies within the skew of its block's.
    fn check_time(&self, tx: &Transaction, block_time: u64) -> Result<(), Rejection> {
        let time = tx.header().time;
        if time + self.max_skew_ms < block_time {
            return Err(Rejection::Stale {
                max_skew_ms: self.max_skew_ms,
            });
        }
        if time > block_time.saturating_add(self.max_skew_ms) {
            return Err(Rejection::Future {
                max_skew_ms: self.max_skew_ms,
            });
        }
        Ok(())
    }

    /// The author is registered, not revoked, and its role may write the kind.
    fn check_author(&self, tx: &Transaction) -> Result<&Participant, Rejection> {
        let h = tx.header();
        let author = self
            .participants
            .get(&h.author)
            .ok_or(Rejection::UnknownAuthor)?;
        if author.revoked_at.is_some() {
            return Err(Rejection::RevokedAuthor);
        }
        let roles = allowed_roles(&h.kind).ok_or_else(|| Rejection::UnknownKind(h.kind.clone()))?;
        if !roles.contains(&author.role) {
            return Err(Rejection::RoleNotAllowed {
                role: author.role,
                kind: h.kind.clone(),
            });
        }
        Ok(author)
    }

    /// Rules between a payload and the state: a report names its author's
    /// institution; a doctor records a donor decision only as the patient's
    /// chosen doctor; a chosen doctor is an active doctor of the author's
    /// institution. `Some` is the effect of a payload that changes the state.
    fn check_content(
        &self,
        author: &Participant,
        checked: &Checked,
    ) -> Result<Option<Effect>, Rejection> {
        match checked {
            Checked::Report(r) if r.institution != author.institution => {
                Err(Rejection::WrongInstitution {
                    institution: author.institution.clone(),
                })
            }
            Checked::Donor(d)
                if author.role == Role::Doctor
                    && self.chosen.get(&d.patient) != Some(&author.key) =>
            {
                Err(Rejection::NotChosenDoctor)
            }
            // A patient signs their own directive; a doctor's on their
            // behalf names the signed form.
            Checked::Consent(c) if author.role != Role::Patient && c.source_reference.is_none() => {
                Err(Rejection::ConsentFormRequired)
            }
            Checked::ChosenDoctor(c) => {
                let key = PublicKey::parse_hex(&c.doctor)
                    .map_err(|_| Rejection::BadKey { field: "doctor" })?;
                match self.participants.get(&key) {
                    Some(d)
                        if d.role == Role::Doctor
                            && d.revoked_at.is_none()
                            && d.institution == author.institution =>
                    {
                        Ok(Some(Effect::Chosen(c.patient.clone(), key)))
                    }
                    _ => Err(Rejection::DoctorNotEligible {
                        institution: author.institution.clone(),
                    }),
                }
            }
            _ => Ok(None),
        }
    }

    /// A flagged access entry opens a break-glass entry; a review names one
    /// that is open, with exactly its patients.
    fn check_break_glass(&self, tx: &Transaction, checked: &Checked) -> Result<Effect, Rejection> {
        match checked {
            Checked::Access(a) if a.verdict == Verdict::BreakGlass => Ok(Effect::BreakGlass(
                *tx.id(),
                tx.header().time,
                a.patients.clone(),
            )),
            Checked::Review(r) => {
                let id = Bytes::<32>::parse_hex(&r.entry).map_err(|_| Rejection::NotBreakGlass)?;
                let entry = self
                    .break_glass
                    .get(&id.0)
                    .ok_or(Rejection::NotBreakGlass)?;
                if entry.review.is_some() {
                    return Err(Rejection::AlreadyReviewed);
                }
                let named: BTreeSet<&str> = r.patients.iter().map(String::as_str).collect();
                let read: BTreeSet<&str> = entry.patients.iter().map(String::as_str).collect();
                if named != read {
                    return Err(Rejection::ReviewPatients);
                }
                Ok(Effect::Review(id.0))
            }
            _ => Ok(Effect::None),
        }
    }

    /// A registration names a new, valid key; a device or a patient is
    /// bound to one patient, only the pseudonymization authority registers
    /// patients (and nothing else), and only a node holds a free place in
    /// the cluster.
    fn check_register(&self, author: &Participant, tx: &Transaction) -> Result<Effect, Rejection> {
        let r: RegisterPayload = parse(tx)?;
        let by_authority = author.role == Role::PseudonymizationAuthority;
        if by_authority != (r.role == Role::Patient) {
            return Err(Rejection::RegistrarNotAllowed);
        }
        keys::verifying_key(&r.key).map_err(|_| Rejection::BadKey { field: "key" })?;
        if self.participants.contains_key(&r.key) {
            return Err(Rejection::AlreadyRegistered);
        }
        if r.institution.is_empty() {
            return Err(Rejection::InstitutionRequired);
        }
        match (&r.patient, r.role) {
            (Some(p), Role::Device | Role::Patient)
                if medledger_health::pseudonym::is_well_formed(p) => {}
            (_, Role::Device | Role::Patient) => {
                return Err(Rejection::PatientBinding(
                    "a device or patient is registered for one patient: patient must be a pseudonym",
                ));
            }
            (Some(_), _) => {
                return Err(Rejection::PatientBinding(
                    "only devices and patients are registered for a patient",
                ));
            }
            (None, _) => {}
        }
        if let Some(c) = &r.cluster {
            if r.role != Role::Node {
                return Err(Rejection::ClusterPlace(
                    "only nodes are registered with a cluster place".into(),
                ));
            }
            c.check().map_err(Rejection::ClusterPlace)?;
            if self.cluster_members().any(|(_, m)| m.id == c.id) {
                return Err(Rejection::ClusterPlace(format!(
                    "cluster id {} is already an active node's",
                    c.id
                )));
            }
        }
        Ok(Effect::Register(r))
    }

    /// A revocation names an active participant, and never the last node;
    /// the pseudonymization authority revokes patients only.
    fn check_revoke(&self, author: &Participant, tx: &Transaction) -> Result<Effect, Rejection> {
        let r: RevokePayload = parse(tx)?;
        match self.participants.get(&r.key) {
            None => Err(Rejection::NotRegistered),
            Some(p) if p.revoked_at.is_some() => Err(Rejection::AlreadyRevoked),
            Some(p)
                if author.role == Role::PseudonymizationAuthority && p.role != Role::Patient =>
            {
                Err(Rejection::RegistrarNotAllowed)
            }
            // Revoking the last node would leave no valid proposer for the
            // next block; another cluster node must remain.
            Some(p)
                if p.role == Role::Node && !self.cluster_members().any(|(k, _)| *k != r.key) =>
            {
                Err(Rejection::LastNode)
            }
            Some(_) => Ok(Effect::Revoke(r.key)),
        }
    }

    fn apply(&mut self, effect: Effect, leaf: u64) {
        match effect {
            Effect::None => {}
            Effect::Genesis(g) => {
                self.origin = Some(g.origin);
                self.max_skew_ms = g.max_skew_ms;
                self.break_glass_review_ms = g.break_glass_review_ms;
                for (key, role, cluster) in [
                    (g.admin, Role::Admin, None),
                    (g.node, Role::Node, g.cluster.clone()),
                ] {
                    self.participants.insert(
                        key,
                        Participant {
                            key,
                            role,
                            institution: g.institution.clone(),
                            label: role.as_str().into(),
                            registered_at: leaf,
                            revoked_at: None,
                            patient: None,
                            cluster,
                        },
                    );
                }
            }
            Effect::Register(r) => {
                self.participants.insert(
                    r.key,
                    Participant {
                        key: r.key,
                        role: r.role,
                        institution: r.institution,
                        label: r.label,
                        registered_at: leaf,
                        revoked_at: None,
                        patient: r.patient,
                        cluster: r.cluster,
                    },
                );
            }
            Effect::Revoke(key) => {
                if let Some(p) = self.participants.get_mut(&key) {
                    p.revoked_at = Some(leaf);
                }
            }
            Effect::Chosen(patient, doctor) => {
                self.chosen.insert(patient, doctor);
            }
            Effect::BreakGlass(id, time, patients) => {
                let entry = BreakGlass {
                    id: Bytes(id),
                    leaf,
                    time,
                    patients,
                    review: None,
                };
                self.break_glass.insert(id, entry);
            }
            Effect::Review(id) => {
                if let Some(entry) = self.break_glass.get_mut(&id) {
                    entry.review = Some(leaf);
                }
            }
            Effect::Redact(targets) => {
                for (id, target) in targets {
                    self.redacted.insert(id, (target, leaf));
                }
            }
            Effect::Prescribe(mut record) => {
                record.leaf = leaf;
                self.prescriptions.insert(record.id.0, *record);
            }
            Effect::Dispensed(id, milli) => {
                if let Some(r) = self.prescriptions.get_mut(&id) {
                    r.fills_used = r.fills_used.saturating_add(1);
                    r.dispensed_milli = r.dispensed_milli.saturating_add(milli);
                }
            }
            Effect::Cancelled(id) => {
                if let Some(r) = self.prescriptions.get_mut(&id) {
                    r.cancelled_at = Some(leaf);
                }
            }
        }
    }

    /// Admits `tx` as log entry `leaf` of a block at `block_time` and applies
    /// it, giving back its payload verdict. The signature must already have
    /// been checked.
    pub fn admit(
        &mut self,
        tx: &Transaction,
        block_time: u64,
        leaf: u64,
    ) -> Result<Checked, Rejection> {
        self.admit_with(tx, None, block_time, leaf, &NothingSeen)
    }

    /// [`Self::admit`] for a transaction whose [`payload_rules`] verdict the
    /// caller has already (on another thread, say).
    pub fn admit_checked(
        &mut self,
        tx: &Transaction,
        checked: Checked,
        block_time: u64,
        leaf: u64,
    ) -> Result<Checked, Rejection> {
        self.admit_with(tx, Some(checked), block_time, leaf, &NothingSeen)
    }

    /// [`Self::admit_checked`], with `seen` to look a redaction's targets up.
    pub fn admit_checked_in(
        &mut self,
        tx: &Transaction,
        checked: Checked,
        block_time: u64,
        leaf: u64,
        seen: &dyn Seen,
    ) -> Result<Checked, Rejection> {
        self.admit_with(tx, Some(checked), block_time, leaf, seen)
    }

    fn admit_with(
        &mut self,
        tx: &Transaction,
        verdict: Option<Checked>,
        block_time: u64,
        leaf: u64,
        seen: &dyn Seen,
    ) -> Result<Checked, Rejection> {
        let (effect, checked) = self.check(tx, block_time, leaf, verdict, seen)?;
        self.apply(effect, leaf);
        Ok(checked)
    }

    /// Keys whose participant record changed through `txs` (for the index).
    pub fn touched_participants(txs: &[Transaction]) -> Vec<PublicKey> {
        let mut out = Vec::new();
        for tx in txs {
            match tx.header().kind.as_str() {
                kind::GENESIS => {
                    if let Ok(g) = parse::<GenesisPayload>(tx) {
                        out.push(g.admin);
                        out.push(g.node);
                    }
                }
                kind::REGISTER => {
                    if let Ok(r) = parse::<RegisterPayload>(tx) {
                        out.push(r.key);
                    }
                }
                kind::REVOKE => {
                    if let Ok(r) = parse::<RevokePayload>(tx) {
                        out.push(r.key);
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Ids of the break-glass entries that `txs`, with their payload
    /// `verdicts`, opened or reviewed (for the index).
    pub fn touched_break_glass(txs: &[Transaction], verdicts: &[Checked]) -> Vec<Hash> {
        txs.iter()
            .zip(verdicts)
            .filter_map(|(tx, checked)| match checked {
                Checked::Access(a) if a.verdict == Verdict::BreakGlass => Some(*tx.id()),
                Checked::Review(r) => Bytes::<32>::parse_hex(&r.entry).ok().map(|b| b.0),
                _ => None,
            })
            .collect()
    }

    /// Ids of the prescriptions that `txs`, with their payload `verdicts`,
    /// created, filled or cancelled (for the index).
    pub fn touched_prescriptions(txs: &[Transaction], verdicts: &[Checked]) -> Vec<Hash> {
        txs.iter()
            .zip(verdicts)
            .filter_map(|(tx, checked)| match checked {
                Checked::Prescription(_) => Some(*tx.id()),
                Checked::Dispense(d) => Bytes::<32>::parse_hex(&d.1.prescription).ok().map(|b| b.0),
                Checked::PrescriptionCancel(c) => {
                    Bytes::<32>::parse_hex(&c.prescription).ok().map(|b| b.0)
                }
                _ => None,
            })
            .collect()
    }

    /// Patients whose chosen doctor `txs` may have set (for the index).
    pub fn touched_patients(txs: &[Transaction]) -> Vec<String> {
        txs.iter()
            .filter(|tx| tx.header().kind == kind::CHOSEN_DOCTOR)
            .filter_map(|tx| medledger_health::registries::chosen_doctor(tx.payload_jcs()).ok())
            .map(|c| c.patient)
            .collect()
    }

    /// Seals a block of already admitted transactions on top of the tip and
    /// advances the tip. `time` must be the time they were admitted against.
    pub fn seal_block(
        &mut self,
        txs: Vec<Transaction>,
        time: u64,
        key: &SigningKey,
    ) -> Result<Block, medledger_formats::block::BlockError> {
        let ids: Vec<Hash> = txs.iter().map(|t| *t.id()).collect();
        let first_leaf = self.tip.log.size();
        let mut log = self.tip.log.clone();
        for id in &ids {
            log.push(*id, |_, _, _| {});
        }
        let header = BlockHeader {
            first_leaf,
            height: self.tip.next_height,
            log_root: Bytes(log.root()),
            log_size: log.size(),
            prev_hash: Bytes(self.tip.prev_hash),
            proposer: keys::public_key(key),
            time,
            tx_count: txs.len() as u64,
            txs_root: Bytes(merkle::root(&ids)),
            v: BLOCK_VERSION,
        };
        let sealed = SealedHeader::seal(header, key)?;
        self.tip = Tip {
            next_height: self.tip.next_height + 1,
            prev_hash: *sealed.hash(),
            log,
            time,
        };
        Ok(Block {
            header: sealed,
            txs,
        })
    }

    /// The time a new block would carry: the wall clock, never before the
    /// last block.
    pub fn block_time(&self, now_ms: u64) -> u64 {
        now_ms.max(self.tip.time)
    }

    /// Validates `block` completely (header chain, roots, proposer,
    /// signatures, admission rules, duplicates) and applies it, giving back
    /// each transaction's payload verdict. On error the state is unchanged.
    pub fn apply_block(
        &mut self,
        block: &Block,
        seen: &dyn Seen,
    ) -> Result<Vec<Checked>, BlockFault> {
        let refs: Vec<&Transaction> = block.txs.iter().collect();
        for (index, result) in Transaction::verify_signatures(&refs)
            .into_iter()
            .enumerate()
        {
            if result.is_err() {
                return Err(BlockFault::Tx {
                    index,
                    id: hex_id(block.txs[index].id()),
                    rejection: Rejection::BadSignature,
                });
            }
        }
        self.apply_block_checked(block, seen)
    }

    /// [`Self::apply_block`] for a block whose transaction signatures the
    /// caller has already verified (in parallel, say). Everything else is checked.
    pub fn apply_block_checked(
        &mut self,
        block: &Block,
        seen: &dyn Seen,
    ) -> Result<Vec<Checked>, BlockFault> {
        self.apply_block_with(block, seen, Vec::new())
    }

    /// [`Self::apply_block_checked`] for a block this node sealed itself:
    /// `verdicts` are its transactions' [`payload_rules`] verdicts from
    /// admission, in order, so the payloads are not judged again. Every rule
    /// that depends on the state is checked.
    pub fn apply_own_block(
        &mut self,
        block: &Block,
        seen: &dyn Seen,
        verdicts: Vec<Checked>,
    ) -> Result<Vec<Checked>, BlockFault> {
        self.apply_block_with(block, seen, verdicts)
    }

    fn apply_block_with(
        &mut self,
        block: &Block,
        seen: &dyn Seen,
        verdicts: Vec<Checked>,
    ) -> Result<Vec<Checked>, BlockFault> {
        let h = block.header.header();
        if h.height != self.tip.next_height {
            return Err(BlockFault::Height {
                expected: self.tip.next_height,
                found: h.height,
            });
        }
        if h.prev_hash.0 != self.tip.prev_hash {
            return Err(BlockFault::PrevHash);
        }
        let expected = self.tip.log.size();
        if h.first_leaf != expected || h.log_size != expected + block.txs.len() as u64 {
            return Err(BlockFault::LogPosition {
                first_leaf: h.first_leaf,
                log_size: h.log_size,
                expected,
            });
        }
        if h.time < self.tip.time {
            return Err(BlockFault::Time);
        }
        let ids: Vec<Hash> = block.txs.iter().map(|t| *t.id()).collect();
        if merkle::root(&ids) != h.txs_root.0 {
            return Err(BlockFault::TxsRoot);
        }
        let mut log = self.tip.log.clone();
        for id in &ids {
            log.push(*id, |_, _, _| {});
        }
        if log.root() != h.log_root.0 {
            return Err(BlockFault::LogRoot);
        }
        if h.height == 0 {
            let first = block.txs.first().map(|t| t.header().kind.as_str());
            if first != Some(kind::GENESIS) {
                return Err(BlockFault::Genesis(
                    "block 0 must start with ledger.genesis".into(),
                ));
            }
        }

        let mut next = self.clone();
        let tx_fault = |index: usize, tx: &Transaction, rejection| BlockFault::Tx {
            index,
            id: hex_id(tx.id()),
            rejection,
        };
        let mut in_block = HashSet::with_capacity(block.txs.len());
        let mut given = verdicts.into_iter();
        let mut out = Vec::with_capacity(block.txs.len());
        for (index, tx) in block.txs.iter().enumerate() {
            if seen.seen(tx.id()) || !in_block.insert(*tx.id()) {
                return Err(tx_fault(index, tx, Rejection::Duplicate));
            }
            let checked = next
                .admit_with(tx, given.next(), h.time, h.first_leaf + index as u64, seen)
                .map_err(|r| tx_fault(index, tx, r))?;
            out.push(checked);
        }
        // The proposer is judged after genesis registered the first node.
        match next.participants.get(&h.proposer) {
            Some(p) if p.role == Role::Node && p.revoked_at.is_none() => {}
            _ => return Err(BlockFault::Proposer),
        }
        block
            .header
            .verify_signature()
            .map_err(|_| BlockFault::Signature)?;
        next.tip = Tip {
            next_height: h.height + 1,
            prev_hash: *block.header.hash(),
            log,
            time: h.time,
        };
        *self = next;
        Ok(out)
    }
}

/// Lowercase hex of an id.
pub(crate) fn hex_id(id: &Hash) -> String {
    Bytes(*id).to_hex()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: u64 = 1_700_000_000_000;

    struct World {
        state: LedgerState,
        node: SigningKey,
        admin: SigningKey,
        seen: HashSet<Hash>,
        blocks: Vec<Block>,
    }

    impl World {
        fn new() -> Self {
            let node = SigningKey::from_bytes(&[1; 32]);
            let admin = SigningKey::from_bytes(&[2; 32]);
            let mut w = World {
                state: LedgerState::new(DEFAULT_MAX_SKEW_MS),
                node,
                admin,
                seen: HashSet::new(),
                blocks: Vec::new(),
            };
            let g = GenesisPayload {
                origin: "example.org/test".into(),
                admin: keys::public_key(&w.admin),
                node: keys::public_key(&w.node),
                institution: "Test".into(),
                max_skew_ms: DEFAULT_MAX_SKEW_MS,
                cluster: None,
                break_glass_review_ms: DEFAULT_BREAK_GLASS_REVIEW_MS,
            };
            let tx = Transaction::sign(
                &w.admin,
                kind::GENESIS,
                T0,
                &serde_json::to_value(g).unwrap(),
            )
            .unwrap();
            w.block(vec![tx], T0).unwrap();
            w
        }

        /// Seals `txs` without admission, then validates the block as a follower would.
        fn block(&mut self, txs: Vec<Transaction>, time: u64) -> Result<(), BlockFault> {
            let mut sealer = self.state.clone();
            let block = sealer.seal_block(txs, time, &self.node).unwrap();
            self.state.apply_block(&block, &self.seen)?;
            self.seen.extend(block.txs.iter().map(|t| *t.id()));
            self.blocks.push(block);
            Ok(())
        }

        fn register(&self, key: &SigningKey, role: Role) -> Transaction {
            let p = RegisterPayload {
                key: keys::public_key(key),
                role,
                institution: "Test".into(),
                label: String::new(),
                patient: (role == Role::Device).then(|| medledger_health::pseudonym::synthetic(7)),
                cluster: None,
            };
            Transaction::sign(
                &self.admin,
                kind::REGISTER,
                T0,
                &serde_json::to_value(p).unwrap(),
            )
            .unwrap()
        }
    }

    fn report(key: &SigningKey, time: u64) -> Transaction {
        Transaction::sign(
            key,
            kind::MEDICAL_REPORT,
            time,
            &json!({
                "patient": medledger_health::pseudonym::synthetic(time),
                "institution": "Test",
                "encounter_date": "2026-11-24",
                "diagnoses": ["J10.1"],
                "anamnesis": "fever",
            }),
        )
        .unwrap()
    }

    fn rejection(r: Result<(), BlockFault>) -> Rejection {
        match r {
            Err(BlockFault::Tx { rejection, .. }) => rejection,
            other => panic!("expected a transaction fault, got {other:?}"),
        }
    }

    const P: &str = "MFRGGZDFMZTWQ2LKNNWG23TPOA";
    const Q: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY";

    /// An access entry about `patients`, signed by the world's node.
    fn access_entry(w: &World, verdict: Verdict, patients: &[&str], time: u64) -> Transaction {
        use medledger_health::access::{Access, Purpose};
        let glass = verdict == Verdict::BreakGlass;
        let a = Access {
            reader: "ab".repeat(32),
            role: "doctor".into(),
            node: keys::public_key(&w.node).to_hex(),
            patients: patients.iter().map(|p| p.to_string()).collect(),
            records: vec!["01".repeat(32)],
            query: None,
            returned: 1,
            withheld: 0,
            purpose: if glass {
                Purpose::Etreat
            } else {
                Purpose::Treat
            },
            verdict,
            reason: glass.then(|| "unconscious on arrival".to_owned()),
            time_ms: time as i64,
        };
        Transaction::sign(&w.node, kind::ACCESS_ENTRY, time, &a.to_audit_event()).unwrap()
    }

    fn review(key: &SigningKey, entry: &Transaction, patients: &[&str], time: u64) -> Transaction {
        Transaction::sign(
            key,
            kind::ACCESS_REVIEW,
            time,
            &json!({"entry": hex_id(entry.id()), "patients": patients,
                    "outcome": "justified", "reason": "emergency-confirmed"}),
        )
        .unwrap()
    }

    #[test]
    fn a_break_glass_entry_is_reviewed_once_by_the_data_protection_officer_alone() {
        let mut w = World::new();
        let dpo = SigningKey::from_bytes(&[10; 32]);
        let doc = SigningKey::from_bytes(&[3; 32]);
        let regs = vec![
            w.register(&dpo, Role::DataProtectionOfficer),
            w.register(&doc, Role::Doctor),
        ];
        w.block(regs, T0).unwrap();
        // Leaves: genesis 0, registrations 1 and 2, then these at 3 and 4.
        let glass = access_entry(&w, Verdict::BreakGlass, &[Q, P], T0);
        let plain = access_entry(&w, Verdict::Permit, &[P], T0 + 1);
        w.block(vec![glass.clone(), plain.clone()], T0 + 1).unwrap();
        let open = w.state.break_glass(glass.id()).unwrap();
        assert_eq!((open.leaf, open.time, open.review), (3, T0, None));
        assert_eq!(open.patients, [Q, P]);
        assert!(w.state.break_glass(plain.id()).is_none());

        let t = T0 + 2;
        let cases = [
            (review(&doc, &glass, &[P, Q], t), "role_not_allowed"),
            (review(&dpo, &plain, &[P], t), "not_break_glass"),
            (review(&dpo, &report(&doc, t), &[P], t), "not_break_glass"),
            (review(&dpo, &glass, &[P], t), "review_patients"),
            (
                review(&dpo, &glass, &[P, Q, "AAAAAAAAAAAAAAAAAAAAAAAAAA"], t),
                "review_patients",
            ),
        ];
        for (tx, code) in cases {
            assert_eq!(rejection(w.block(vec![tx], t)).code(), code);
        }
        // The patients may come in any order; the review is leaf 5.
        w.block(vec![review(&dpo, &glass, &[P, Q], t)], t).unwrap();
        assert_eq!(w.state.break_glass(glass.id()).unwrap().review, Some(5));
        assert_eq!(
            rejection(w.block(vec![review(&dpo, &glass, &[Q, P], t + 1)], t + 1)),
            Rejection::AlreadyReviewed
        );
    }

    #[test]
    fn an_entry_and_its_review_may_share_a_block_but_not_in_reverse_order() {
        let mut w = World::new();
        let dpo = SigningKey::from_bytes(&[10; 32]);
        w.block(vec![w.register(&dpo, Role::DataProtectionOfficer)], T0)
            .unwrap();
        let glass = access_entry(&w, Verdict::BreakGlass, &[P], T0);
        let r = review(&dpo, &glass, &[P], T0);
        assert_eq!(
            rejection(w.block(vec![r.clone(), glass.clone()], T0)),
            Rejection::NotBreakGlass
        );
        w.block(vec![glass.clone(), r], T0).unwrap();
        // Leaves: genesis 0, registration 1, entry 2, review 3.
        let b = w.state.break_glass(glass.id()).unwrap();
        assert_eq!((b.leaf, b.review), (2, Some(3)));
    }

    #[test]
    fn an_entry_is_overdue_only_unreviewed_and_strictly_past_its_deadline() {
        // Flagged at 10:00:00.000 on 2026-12-03 (20,790 days after the epoch),
        // with the default deadline of 72 h: due at 10:00:00.000 on 2026-12-06.
        let at = 20_790 * 86_400_000 + 10 * 3_600_000;
        let due = 20_793 * 86_400_000 + 10 * 3_600_000;
        let mut b = BreakGlass {
            id: Bytes([1; 32]),
            leaf: 7,
            time: at,
            patients: vec![P.into()],
            review: None,
        };
        assert_eq!(DEFAULT_BREAK_GLASS_REVIEW_MS, 259_200_000);
        assert!(!b.overdue(259_200_000, at));
        assert!(!b.overdue(259_200_000, due));
        assert!(b.overdue(259_200_000, due + 1));
        b.review = Some(9);
        assert!(!b.overdue(259_200_000, due + 1));
        // A deadline reaching past the end of time is never overdue.
        b.review = None;
        assert!(!b.overdue(u64::MAX, u64::MAX));
    }

    #[test]
    fn genesis_review_deadline_defaults_to_72_hours_and_is_bounded() {
        let admin = SigningKey::from_bytes(&[2; 32]);
        let node = SigningKey::from_bytes(&[1; 32]);
        let genesis = |extra: Option<u64>| {
            let mut g = json!({
                "origin": "example.org/test",
                "admin": keys::public_key(&admin),
                "node": keys::public_key(&node),
                "institution": "Test",
                "max_skew_ms": 300_000,
            });
            if let Some(ms) = extra {
                g["break_glass_review_ms"] = json!(ms);
            }
            Transaction::sign(&admin, kind::GENESIS, T0, &g).unwrap()
        };
        // A genesis written before the field existed reads with the default,
        // and writing the default leaves the field out: the same canonical
        // payload, so the same commitment for the same salt.
        let old = genesis(None);
        let g: GenesisPayload = parse(&old).unwrap();
        assert_eq!(g.break_glass_review_ms, 259_200_000);
        let again = medledger_formats::canon::jcs(&g).unwrap();
        assert_eq!(again, old.payload_jcs());
        let mut state = LedgerState::new(DEFAULT_MAX_SKEW_MS);
        state.admit(&old, T0, 0).unwrap();
        assert_eq!(state.break_glass_review_ms(), 259_200_000);

        // One minute to 90 days (7,776,000,000 ms).
        for (ms, ok) in [
            (59_999, false),
            (60_000, true),
            (7_776_000_000, true),
            (7_776_000_001, false),
        ] {
            let mut state = LedgerState::new(DEFAULT_MAX_SKEW_MS);
            let r = state.admit(&genesis(Some(ms)), T0, 0);
            match ok {
                true => assert_eq!(state.break_glass_review_ms(), ms, "{ms}"),
                false => assert!(
                    matches!(&r, Err(Rejection::GenesisInvalid(m)) if m.contains("break_glass_review_ms")),
                    "{ms}: {r:?}"
                ),
            }
        }
    }

    #[test]
    fn genesis_registers_admin_and_node() {
        let w = World::new();
        assert_eq!(w.state.origin(), Some("example.org/test"));
        assert_eq!(
            w.state
                .participant(&keys::public_key(&w.admin))
                .unwrap()
                .role,
            Role::Admin
        );
        assert_eq!(
            w.state
                .participant(&keys::public_key(&w.node))
                .unwrap()
                .role,
            Role::Node
        );
        assert_eq!(w.state.tip().next_height, 1);
        assert_eq!(w.state.tip().log.size(), 1);
    }

    #[test]
    fn registered_doctor_may_report_in_the_same_block() {
        let mut w = World::new();
        let doc = SigningKey::from_bytes(&[3; 32]);
        let txs = vec![w.register(&doc, Role::Doctor), report(&doc, T0)];
        w.block(txs, T0).unwrap();
        assert_eq!(w.state.tip().log.size(), 3);
    }

    #[test]
    fn a_device_writes_only_about_its_patient() {
        let mut w = World::new();
        let device = SigningKey::from_bytes(&[5; 32]);
        // Registered by World::register with the pseudonym synthetic(7).
        w.block(vec![w.register(&device, Role::Device)], T0)
            .unwrap();
        let own = medledger_health::pseudonym::synthetic(7);
        let other = medledger_health::pseudonym::synthetic(8);
        let vitals = |p: &str, t| {
            Transaction::sign(
                &device,
                kind::VITAL_SIGNS,
                t,
                &json!({"patient": p, "time": "2026-11-24T08:30:00Z", "pulse": 72}),
            )
            .unwrap()
        };
        let observation = |p: &str, t| {
            let o = json!({
                "resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": format!("Patient/{p}")},
                "effectiveDateTime": "2026-11-24T09:00:00Z",
                "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
            });
            Transaction::sign(&device, kind::FHIR_OBSERVATION, t, &o).unwrap()
        };
        w.block(
            vec![vitals(&own, T0 + 1), observation(&own, T0 + 1)],
            T0 + 1,
        )
        .unwrap();
        for tx in [vitals(&other, T0 + 2), observation(&other, T0 + 2)] {
            assert_eq!(
                rejection(w.block(vec![tx], T0 + 2)),
                Rejection::DevicePatient
            );
        }
        let no_patient = Transaction::sign(
            &device,
            kind::VITAL_SIGNS,
            T0 + 3,
            &json!({"time": "2026-11-24T08:30:00Z", "pulse": 72}),
        )
        .unwrap();
        assert!(matches!(
            rejection(w.block(vec![no_patient], T0 + 3)),
            Rejection::Schema(_)
        ));
    }

    #[test]
    fn only_devices_are_registered_for_a_patient_and_devices_always_are() {
        let mut w = World::new();
        let reg = |key: &SigningKey, role: Role, patient: Option<String>| {
            let p = RegisterPayload {
                key: keys::public_key(key),
                role,
                institution: "Test".into(),
                label: String::new(),
                patient,
                cluster: None,
            };
            Transaction::sign(
                &w.admin,
                kind::REGISTER,
                T0,
                &serde_json::to_value(p).unwrap(),
            )
            .unwrap()
        };
        let bad = [
            reg(&SigningKey::from_bytes(&[6; 32]), Role::Device, None),
            reg(
                &SigningKey::from_bytes(&[6; 32]),
                Role::Device,
                Some("P1".into()),
            ),
            reg(
                &SigningKey::from_bytes(&[6; 32]),
                Role::Doctor,
                Some(medledger_health::pseudonym::synthetic(1)),
            ),
        ];
        for tx in bad {
            assert!(matches!(
                rejection(w.block(vec![tx], T0)),
                Rejection::PatientBinding(_)
            ));
        }
    }

    #[test]
    fn unknown_author_is_refused() {
        let mut w = World::new();
        let stranger = SigningKey::from_bytes(&[9; 32]);
        assert_eq!(
            rejection(w.block(vec![report(&stranger, T0)], T0)),
            Rejection::UnknownAuthor
        );
    }

    #[test]
    fn role_must_allow_the_kind() {
        let mut w = World::new();
        let researcher = SigningKey::from_bytes(&[4; 32]);
        w.block(vec![w.register(&researcher, Role::Researcher)], T0)
            .unwrap();
        assert!(matches!(
            rejection(w.block(vec![report(&researcher, T0)], T0)),
            Rejection::RoleNotAllowed {
                role: Role::Researcher,
                ..
            }
        ));
        let tx = Transaction::sign(&researcher, "made_up", T0, &json!({})).unwrap();
        assert_eq!(
            rejection(w.block(vec![tx], T0)),
            Rejection::UnknownKind("made_up".into())
        );
    }

    #[test]
    fn revoked_author_is_refused() {
        let mut w = World::new();
        let doc = SigningKey::from_bytes(&[3; 32]);
        w.block(vec![w.register(&doc, Role::Doctor)], T0).unwrap();
        let revoke = Transaction::sign(
            &w.admin,
            kind::REVOKE,
            T0,
            &serde_json::to_value(RevokePayload {
                key: keys::public_key(&doc),
                reason: "left".into(),
            })
            .unwrap(),
        )
        .unwrap();
        w.block(vec![revoke], T0).unwrap();
        assert_eq!(
            rejection(w.block(vec![report(&doc, T0)], T0)),
            Rejection::RevokedAuthor
        );
    }

    #[test]
    fn the_node_key_cannot_be_revoked() {
        let mut w = World::new();
        let revoke = Transaction::sign(
            &w.admin,
            kind::REVOKE,
            T0,
            &serde_json::to_value(RevokePayload {
                key: keys::public_key(&w.node),
                reason: "mistake".into(),
            })
            .unwrap(),
        )
        .unwrap();
        assert!(matches!(
            rejection(w.block(vec![revoke], T0)),
            Rejection::LastNode
        ));
        // The next block from the node is still valid.
        let doc = SigningKey::from_bytes(&[3; 32]);
        w.block(vec![w.register(&doc, Role::Doctor)], T0).unwrap();
    }

    #[test]
    fn genesis_sets_the_skew_for_every_replica() {
        let w = World::new();
        // The replica starts with another local default; genesis decides.
        let mut replica = LedgerState::new(1);
        replica.apply_block(&w.blocks[0], &HashSet::new()).unwrap();
        assert_eq!(replica.max_skew_ms(), DEFAULT_MAX_SKEW_MS);
    }

    #[test]
    fn time_outside_the_skew_is_refused() {
        let mut w = World::new();
        let doc = SigningKey::from_bytes(&[3; 32]);
        w.block(vec![w.register(&doc, Role::Doctor)], T0).unwrap();
        let skew = DEFAULT_MAX_SKEW_MS;
        assert!(matches!(
            rejection(w.block(vec![report(&doc, T0 - skew - 1)], T0)),
            Rejection::Stale { .. }
        ));
        assert!(matches!(
            rejection(w.block(vec![report(&doc, T0 + skew + 1)], T0)),
            Rejection::Future { .. }
        ));
        w.block(vec![report(&doc, T0 - skew), report(&doc, T0 + skew)], T0)
            .unwrap();
    }

    #[test]
    fn duplicates_are_refused_within_and_across_blocks() {
        let mut w = World::new();
        let doc = SigningKey::from_bytes(&[3; 32]);
        w.block(vec![w.register(&doc, Role::Doctor)], T0).unwrap();
        let tx = report(&doc, T0);
        assert_eq!(
            rejection(w.block(vec![tx.clone(), tx.clone()], T0)),
            Rejection::Duplicate
        );
        w.block(vec![tx.clone()], T0).unwrap();
        assert_eq!(rejection(w.block(vec![tx], T0)), Rejection::Duplicate);
    }

    #[test]
    fn a_failed_block_leaves_the_state_unchanged() {
        let mut w = World::new();
        let before = (w.state.tip().clone(), w.state.participants().count());
        let doc = SigningKey::from_bytes(&[3; 32]);
        let stranger = SigningKey::from_bytes(&[9; 32]);
        let r = w.block(
            vec![w.register(&doc, Role::Doctor), report(&stranger, T0)],
            T0,
        );
        assert!(r.is_err());
        assert_eq!(
            (w.state.tip().clone(), w.state.participants().count()),
            before
        );
    }

    #[test]
    fn tampered_headers_are_refused() {
        let w = World::new();
        let doc = SigningKey::from_bytes(&[3; 32]);
        let mut sealer = w.state.clone();
        let good = sealer
            .seal_block(vec![w.register(&doc, Role::Doctor)], T0, &w.node)
            .unwrap();

        let reseal = |f: &dyn Fn(&mut BlockHeader), key: &SigningKey| {
            let mut h = good.header.header().clone();
            f(&mut h);
            Block {
                header: SealedHeader::seal(h, key).unwrap(),
                txs: good.txs.clone(),
            }
        };
        let check = |b: Block| w.state.clone().apply_block(&b, &w.seen);
        assert!(check(good.clone()).is_ok());
        assert!(matches!(
            check(reseal(&|h| h.height += 1, &w.node)),
            Err(BlockFault::Height { .. })
        ));
        assert_eq!(
            check(reseal(&|h| h.prev_hash.0[0] ^= 1, &w.node)),
            Err(BlockFault::PrevHash)
        );
        assert_eq!(
            check(reseal(&|h| h.txs_root.0[0] ^= 1, &w.node)),
            Err(BlockFault::TxsRoot)
        );
        assert_eq!(
            check(reseal(&|h| h.log_root.0[0] ^= 1, &w.node)),
            Err(BlockFault::LogRoot)
        );
        assert!(matches!(
            check(reseal(&|h| h.first_leaf += 1, &w.node)),
            Err(BlockFault::LogPosition { .. })
        ));
        assert_eq!(
            check(reseal(&|h| h.time = 0, &w.node)),
            Err(BlockFault::Time)
        );
        // Signed by a key that is not a node.
        let rogue = SigningKey::from_bytes(&[7; 32]);
        assert_eq!(
            check(reseal(&|h| h.proposer = keys::public_key(&rogue), &rogue)),
            Err(BlockFault::Proposer)
        );
        // Claims the node as proposer but signed by another key.
        assert_eq!(check(reseal(&|_| {}, &rogue)), Err(BlockFault::Signature));
    }

    #[test]
    fn same_blocks_give_the_same_state() {
        let mut w = World::new();
        let doc = SigningKey::from_bytes(&[3; 32]);
        w.block(
            vec![w.register(&doc, Role::Doctor), report(&doc, T0)],
            T0 + 5,
        )
        .unwrap();
        // Replay the sealed blocks on a fresh state, as another node would.
        let mut replica = LedgerState::new(DEFAULT_MAX_SKEW_MS);
        let mut seen = HashSet::new();
        for b in &w.blocks {
            replica.apply_block(b, &seen).unwrap();
            seen.extend(b.txs.iter().map(|t| *t.id()));
        }
        assert_eq!(replica.tip(), w.state.tip());
        let mut a: Vec<_> = replica.participants().cloned().collect();
        let mut b: Vec<_> = w.state.participants().cloned().collect();
        a.sort_by_key(|p| p.key);
        b.sort_by_key(|p| p.key);
        assert_eq!(a, b);
    }

    // ---- e-prescriptions and dispensing ---------------------------------

    /// 2023-11-14T00:00:00Z, the start of T0's day (T0 is 22:13:20 that day).
    const NOV_14: u64 = 1_699_920_000_000;
    const DAY_MS: u64 = 86_400_000;
    /// The end of the validity period of [`rx`]'s prescriptions
    /// (2023-11-14 to 2023-12-13 inclusive): 00:00 on 2023-12-14, thirty
    /// days after NOV_14.
    const DEC_14: u64 = NOV_14 + 30 * DAY_MS;
    const MORPHINE: &str = "N02AA01";

    fn quantity(value: f64, unit: &str) -> serde_json::Value {
        json!({"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit})
    }

    /// A prescription of `per_fill` tablets of morphine for P, with
    /// `repeats` repeats, valid from `start` to 2023-12-13.
    fn rx_valid_from(doctor: &SigningKey, per_fill: f64, repeats: u32, start: &str) -> Transaction {
        let payload = json!({
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": format!("Patient/{P}")},
            "authoredOn": "2023-11-14",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": MORPHINE}]},
            "dosageInstruction": [{
                "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": quantity(1.0, "{tablet}")}]
            }],
            "dispenseRequest": {
                "validityPeriod": {"start": start, "end": "2023-12-13"},
                "numberOfRepeatsAllowed": repeats,
                "quantity": quantity(per_fill, "{tablet}")
            }
        });
        Transaction::sign(doctor, kind::PRESCRIPTION, T0, &payload).unwrap()
    }

    fn rx(doctor: &SigningKey, per_fill: f64, repeats: u32) -> Transaction {
        rx_valid_from(doctor, per_fill, repeats, "2023-11-14")
    }

    /// The dispense JSON of `qty` tablets of morphine for P against `rx`,
    /// handed over at `at` (signed at the same time).
    fn dispense_payload(rx: &Transaction, qty: f64, at: u64) -> serde_json::Value {
        json!({
            "resourceType": "MedicationDispense",
            "status": "completed",
            "subject": {"reference": format!("Patient/{P}")},
            "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": MORPHINE}]},
            "authorizingPrescription": [{"reference": format!("MedicationRequest/{}", hex_id(rx.id()))}],
            "quantity": quantity(qty, "{tablet}"),
            "whenHandedOver": medledger_health::calendar::instant_of_ms(at as i64)
        })
    }

    fn dispense_at(pharmacy: &SigningKey, rx: &Transaction, qty: f64, at: u64) -> Transaction {
        Transaction::sign(pharmacy, kind::DISPENSE, at, &dispense_payload(rx, qty, at)).unwrap()
    }

    fn dispense(pharmacy: &SigningKey, rx: &Transaction, qty: f64) -> Transaction {
        dispense_at(pharmacy, rx, qty, T0)
    }

    fn cancel(doctor: &SigningKey, rx: &Transaction, patient: &str) -> Transaction {
        let payload = json!({"prescription": hex_id(rx.id()), "patient": patient, "reason": "changed therapy"});
        Transaction::sign(doctor, kind::PRESCRIPTION_CANCEL, T0, &payload).unwrap()
    }

    /// A world with a doctor (key 3), a second doctor (4) and two
    /// pharmacies (5, 6), registered.
    fn pharmacy_world() -> (World, [SigningKey; 4]) {
        let mut w = World::new();
        let keys = [3u8, 4, 5, 6].map(|b| SigningKey::from_bytes(&[b; 32]));
        let regs = vec![
            w.register(&keys[0], Role::Doctor),
            w.register(&keys[1], Role::Doctor),
            w.register(&keys[2], Role::Pharmacy),
            w.register(&keys[3], Role::Pharmacy),
        ];
        w.block(regs, T0).unwrap();
        (w, keys)
    }

    #[test]
    fn a_single_fill_prescription_is_dispensed_once() {
        let (mut w, [doc, _, a, b]) = pharmacy_world();
        let p = rx(&doc, 20.0, 0);
        w.block(vec![p.clone()], T0).unwrap();
        w.block(vec![dispense(&a, &p, 20.0)], T0).unwrap();
        // The second pharmacy, and the first one again, are refused,
        // whatever the amount.
        for (who, qty) in [(&b, 1.0), (&a, 20.0)] {
            assert_eq!(
                rejection(w.block(vec![dispense(who, &p, qty)], T0 + 1)),
                Rejection::FillsExhausted { allowed: 1 }
            );
        }
        let r = w.state.prescription(p.id()).unwrap();
        assert_eq!((r.fills_used, r.dispensed_milli), (1, 20_000));
    }

    #[test]
    fn two_dispenses_of_one_fill_in_one_block_are_judged_in_order() {
        let (mut w, [doc, _, a, b]) = pharmacy_world();
        let p = rx(&doc, 20.0, 0);
        w.block(vec![p.clone()], T0).unwrap();
        let (first, second) = (dispense(&a, &p, 20.0), dispense(&b, &p, 20.0));
        // As the sequencer admits a batch: the state moves on between them.
        let mut admitting = w.state.clone();
        let leaf = admitting.tip().log.size();
        assert!(admitting.admit(&first, T0, leaf).is_ok());
        assert_eq!(
            admitting.admit(&second, T0, leaf + 1).unwrap_err(),
            Rejection::FillsExhausted { allowed: 1 }
        );
        // A block holding both (a faulty proposer's) fails at the second.
        match w.block(vec![first, second], T0) {
            Err(BlockFault::Tx {
                index: 1,
                rejection,
                ..
            }) => assert_eq!(rejection, Rejection::FillsExhausted { allowed: 1 }),
            other => panic!("{other:?}"),
        }
        assert_eq!(w.state.prescription(p.id()).unwrap().fills_used, 0);
    }

    #[test]
    fn dispensed_quantity_is_summed_over_every_pharmacy() {
        let (mut w, [doc, _, a, b]) = pharmacy_world();
        // 30 tablets a fill, two repeats: 90 tablets in at most 3 fills.
        let p = rx(&doc, 30.0, 2);
        w.block(vec![p.clone()], T0).unwrap();
        // 45 at A (a fill and a half at once), then 40 at B: 85 of 90.
        w.block(vec![dispense(&a, &p, 45.0)], T0).unwrap();
        w.block(vec![dispense(&b, &p, 40.0)], T0).unwrap();
        // 5 remain: 5.5 at A is too much, 5 is not.
        assert_eq!(
            rejection(w.block(vec![dispense(&a, &p, 5.5)], T0)),
            Rejection::DispenseOverQuantity {
                remaining: "5 {tablet}".into()
            }
        );
        w.block(vec![dispense(&a, &p, 5.0)], T0).unwrap();
        let r = w.state.prescription(p.id()).unwrap();
        assert_eq!((r.fills_used, r.dispensed_milli), (3, 90_000));
    }

    #[test]
    fn fills_beyond_one_plus_the_repeats_are_refused() {
        let (mut w, [doc, _, a, b]) = pharmacy_world();
        // 10 a fill, one repeat: two fills, however small.
        let p = rx(&doc, 10.0, 1);
        w.block(vec![p.clone()], T0).unwrap();
        w.block(vec![dispense(&a, &p, 2.0)], T0).unwrap();
        w.block(vec![dispense(&b, &p, 3.0)], T0).unwrap();
        assert_eq!(
            rejection(w.block(vec![dispense(&a, &p, 1.0)], T0)),
            Rejection::FillsExhausted { allowed: 2 }
        );
    }

    #[test]
    fn a_dispense_needs_a_committed_prescription() {
        let (mut w, [doc, _, a, _]) = pharmacy_world();
        // Never committed.
        let p = rx(&doc, 20.0, 0);
        assert_eq!(
            rejection(w.block(vec![dispense(&a, &p, 1.0)], T0)),
            Rejection::PrescriptionUnknown(hex_id(p.id()))
        );
        // A committed transaction that is not a prescription.
        let r = report(&doc, T0);
        w.block(vec![r.clone()], T0).unwrap();
        assert_eq!(
            rejection(w.block(vec![dispense(&a, &r, 1.0)], T0)),
            Rejection::PrescriptionUnknown(hex_id(r.id()))
        );
        // The prescription and its dispense may share a block, in that order.
        w.block(vec![p.clone(), dispense(&a, &p, 20.0)], T0)
            .unwrap();
    }

    #[test]
    fn a_prescription_is_dispensed_only_within_its_validity_period() {
        let (mut w, [doc, _, a, b]) = pharmacy_world();
        let p = rx(&doc, 20.0, 1);
        let later = rx_valid_from(&doc, 20.0, 0, "2023-11-20");
        w.block(vec![p.clone(), later.clone()], T0).unwrap();
        // 2023-11-20 starts six days after NOV_14; T0 is on the 14th.
        assert_eq!(
            rejection(w.block(vec![dispense(&a, &later, 1.0)], T0)),
            Rejection::PrescriptionNotYetValid
        );
        // The last millisecond of 2023-12-13 is still valid.
        w.block(vec![dispense_at(&a, &p, 1.0, DEC_14 - 1)], DEC_14 - 1)
            .unwrap();
        // 00:00 on 2023-12-14 is not, by the block's time...
        assert_eq!(
            rejection(w.block(vec![dispense_at(&b, &p, 1.0, DEC_14)], DEC_14)),
            Rejection::PrescriptionExpired
        );
        // ...nor by whenHandedOver, backdated or not.
        let mut out_of_range = dispense_payload(&p, 1.0, DEC_14);
        out_of_range["whenHandedOver"] = json!("2023-11-13T23:59:59Z");
        let tx = Transaction::sign(&b, kind::DISPENSE, DEC_14 - 1, &out_of_range).unwrap();
        assert_eq!(
            rejection(w.block(vec![tx], DEC_14 - 1)),
            Rejection::PrescriptionNotYetValid
        );
        // A hand-over later than the block's time and the skew (5 min) is
        // not recorded yet; at the skew's edge it is.
        let mut ahead = dispense_payload(&p, 1.0, T0);
        ahead["whenHandedOver"] = json!(medledger_health::calendar::instant_of_ms(
            (DEC_14 - 1 + DEFAULT_MAX_SKEW_MS + 1) as i64
        ));
        let tx = Transaction::sign(&b, kind::DISPENSE, DEC_14 - 1, &ahead).unwrap();
        assert_eq!(
            rejection(w.block(vec![tx], DEC_14 - 1)),
            Rejection::HandedOverFuture {
                max_skew_ms: DEFAULT_MAX_SKEW_MS
            }
        );
        // A prescription already expired when written is refused.
        let stale = Transaction::sign(&doc, kind::PRESCRIPTION, DEC_14, &{
            let mut v: serde_json::Value = serde_json::from_slice(p.payload_jcs()).unwrap();
            v["authoredOn"] = json!("2023-12-14");
            v
        })
        .unwrap();
        assert_eq!(
            rejection(w.block(vec![stale], DEC_14)),
            Rejection::PrescriptionExpired
        );
    }

    #[test]
    fn a_dispense_is_of_the_prescribed_patient_substance_and_unit() {
        let (mut w, [doc, _, a, _]) = pharmacy_world();
        let p = rx(&doc, 20.0, 0);
        w.block(vec![p.clone()], T0).unwrap();
        let cases: [(&str, serde_json::Value, Rejection); 3] = [
            (
                "/subject/reference",
                json!(format!("Patient/{Q}")),
                Rejection::PrescriptionPatient,
            ),
            (
                "/medicationCodeableConcept/coding/0/code",
                json!("N02AB03"),
                Rejection::DispenseMedication {
                    atc: MORPHINE.into(),
                },
            ),
            (
                "/quantity",
                quantity(20.0, "mg"),
                Rejection::DispenseUnit {
                    unit: "{tablet}".into(),
                },
            ),
        ];
        for (pointer, value, want) in cases {
            let mut v = dispense_payload(&p, 20.0, T0);
            *v.pointer_mut(pointer).unwrap() = value;
            let tx = Transaction::sign(&a, kind::DISPENSE, T0, &v).unwrap();
            assert_eq!(rejection(w.block(vec![tx], T0)), want, "{pointer}");
        }
        // Nothing was dispensed by the refused ones.
        w.block(vec![dispense(&a, &p, 20.0)], T0).unwrap();
    }

    #[test]
    fn only_doctors_prescribe_and_only_pharmacies_dispense() {
        let (mut w, [doc, _, a, _]) = pharmacy_world();
        let p = rx(&doc, 20.0, 0);
        let by_pharmacy = rx(&a, 20.0, 0);
        assert_eq!(
            rejection(w.block(vec![by_pharmacy], T0)),
            Rejection::RoleNotAllowed {
                role: Role::Pharmacy,
                kind: kind::PRESCRIPTION.into()
            }
        );
        w.block(vec![p.clone()], T0).unwrap();
        assert_eq!(
            rejection(w.block(vec![dispense(&doc, &p, 20.0)], T0)),
            Rejection::RoleNotAllowed {
                role: Role::Doctor,
                kind: kind::DISPENSE.into()
            }
        );
    }

    #[test]
    fn only_the_prescriber_cancels_and_a_cancelled_prescription_is_not_dispensed() {
        let (mut w, [doc, other, a, _]) = pharmacy_world();
        let p = rx(&doc, 20.0, 2);
        w.block(vec![p.clone(), dispense(&a, &p, 20.0)], T0)
            .unwrap();
        assert_eq!(
            rejection(w.block(vec![cancel(&other, &p, P)], T0)),
            Rejection::NotPrescriber
        );
        assert_eq!(
            rejection(w.block(vec![cancel(&doc, &p, Q)], T0)),
            Rejection::PrescriptionPatient
        );
        w.block(vec![cancel(&doc, &p, P)], T0).unwrap();
        assert_eq!(
            rejection(w.block(vec![dispense(&a, &p, 20.0)], T0)),
            Rejection::PrescriptionCancelled
        );
        // Once is enough.
        let again = Transaction::sign(
            &doc,
            kind::PRESCRIPTION_CANCEL,
            T0 + 1,
            &json!({
            "prescription": hex_id(p.id()), "patient": P}),
        )
        .unwrap();
        assert_eq!(
            rejection(w.block(vec![again], T0 + 1)),
            Rejection::PrescriptionCancelled
        );
        let r = w.state.prescription(p.id()).unwrap();
        assert_eq!((r.fills_used, r.cancelled_at.is_some()), (1, true));
    }

    #[test]
    fn prescriptions_and_dispenses_may_not_be_redacted() {
        for k in kind::MEDICATION {
            assert!(!may_redact(k), "{k}");
        }
    }
}
