//! medledger storage. The segment files are the source of truth; the Merkle
//! subtree files and the redb indexes are derived from them and can always be
//! rebuilt. The modules are private; what other crates use is re-exported
//! here.

// Everything public is re-exported below, and nothing else is public.
#![warn(unreachable_pub, unnameable_types)]

mod backend;
mod index;
mod merkle_store;
mod segment;

// File I/O behind a trait, so tests can simulate lost writes and fsyncs.
pub use backend::{Backend, BackendFactory, FileBackend, FileFactory, sync_dir};
// The redb indexes: blocks, transactions, participants and lookups by term.
pub use index::{
    BlockEntry, BlockIndex, BreakGlassRecord, By, Directory, Index, IndexError, ParticipantRecord,
    PrescriptionEntry, RedactedEntry, TxEntry, TxFacts,
};
// The Merkle log's subtree files.
pub use merkle_store::MerkleStore;
// Append-only segment files of framed block records.
pub use segment::{
    Location, Opened, PairRef, RECORD_HEADER, REDACTION_JOURNAL, RedactionPlan, SEGMENT_HEADER,
    SegmentError, SegmentLog, StoredBlock, Walk, list_segments, read_segment, segment_name, walk,
};
