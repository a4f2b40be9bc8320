//! medledger ledger: the deterministic state machine ([`LedgerState`]) that
//! turns an ordered sequence of blocks into participants and a Merkle log,
//! and the durable [`Ledger`] that stores it. The modules are private; what
//! other crates use is re-exported here.

// Everything public is re-exported below, and nothing else is public.
#![warn(unreachable_pub, unnameable_types)]

mod access;
mod feed;
mod ledger;
mod roles;
mod state;
mod verify;

// The read policy: purposes of use and the one decision for record reads.
pub use access::{Decision, Denial, ProvisionType, Purpose, decide, purposes};
// The commit feed that views follow.
pub use feed::{CommitFeed, Followers};
// The durable ledger, its store and key files.
pub use ledger::{
    Admitted, Committed, IndexSeen, InitReport, Ledger, LedgerError, Pending, Store, now_ms,
    participants_from_segments, read_key_file, write_secret_file,
};
// Roles, transaction kinds and who may write or read each kind.
pub use roles::{
    ACCESS_LOG_READERS, ALERT_READERS, BREAK_GLASS_READERS, DIRECTORY_READERS, DONOR_READERS,
    FHIR_WRITERS, PSEUDONYM_MAKERS, RECORD_READERS, Role, allowed_roles, kind, may_read_kind,
    may_redact,
};
// The deterministic state machine: participants, payloads and the rules.
pub use state::{
    BlockFault, BreakGlass, Checked, ClusterMember, DEFAULT_BREAK_GLASS_REVIEW_MS,
    DEFAULT_MAX_SKEW_MS, LedgerState, Participant, PrescriptionRecord, RegisterPayload, Rejection,
    RevokePayload, Seen, Tip, payload_rules,
};
// What a redaction's target is, as the index knows it.
pub use medledger_store::TxFacts;
// Offline verification of a data directory.
pub use verify::{VerifyError, VerifyReport, segment_bytes, verify_dir};
