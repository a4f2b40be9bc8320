//! redb indexes over the log: transaction id, author, kind, patient
//! pseudonym and time, plus block locations and the participant registry.
//! Everything here is derived from the segments and rebuilt from them when it
//! is missing or behind.

use crate::segment::Location;
use medledger_formats::merkle::Hash;
use redb::{
    Database, Durability, MultimapTableDefinition, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition,
};
use std::path::Path;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// height → (segment, offset, first_leaf, tx_count)
const BLOCKS: TableDefinition<u64, (u64, u64, u64, u64)> = TableDefinition::new("blocks");
/// first_leaf → height, for leaf → block lookups.
const FIRST_LEAF: TableDefinition<u64, u64> = TableDefinition::new("first_leaf");
const TX_ID: TableDefinition<&[u8; 32], u64> = TableDefinition::new("tx_id");
const BY_AUTHOR: MultimapTableDefinition<&[u8; 32], u64> =
    MultimapTableDefinition::new("by_author");
const BY_KIND: MultimapTableDefinition<&str, u64> = MultimapTableDefinition::new("by_kind");
const BY_PATIENT: MultimapTableDefinition<&str, u64> = MultimapTableDefinition::new("by_patient");
/// (code, leaf): a plain table with a composite key rather than a multimap,
/// because a few codes (a common diagnosis, the heart-rate LOINC) hold most
/// entries, and a multimap's per-key value tree makes those inserts costly.
const BY_CODE: TableDefinition<(&str, u64), ()> = TableDefinition::new("by_code");
const BY_TIME: MultimapTableDefinition<u64, u64> = MultimapTableDefinition::new("by_time");
/// (patient, leaf) of each access entry that logs a read of the patient's
/// records: the patient's access log, in ledger order.
const BY_ACCESSED: TableDefinition<(&str, u64), ()> = TableDefinition::new("by_accessed");
const PARTICIPANTS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("participants");
/// Patient pseudonym → public key of the patient's chosen doctor.
const CHOSEN: TableDefinition<&str, &[u8; 32]> = TableDefinition::new("chosen_doctor");
/// Leaf of a break-glass access entry → its encoded record (the entry and
/// its review, once reviewed).
const BREAK_GLASS: TableDefinition<u64, &[u8]> = TableDefinition::new("break_glass");
/// Prescription transaction id → its encoded record (what it allows and
/// what was dispensed against it, cancelled or not).
const PRESCRIPTIONS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("prescriptions");
/// Leaf → (kind, patient pseudonym or "", whether its payload is erased):
/// what a redaction's target is.
const TX_META: TableDefinition<u64, (&str, &str, bool)> = TableDefinition::new("tx_meta");
/// Redacted leaf → (the leaf of the redaction that erased it, its id).
const REDACTED: TableDefinition<u64, (u64, &[u8; 32])> = TableDefinition::new("redacted");
/// Set while pages freed by a redaction's purge may still hold erased terms.
const COMPACT_DUE: &str = "compact_due";

const INDEXED_BLOCKS: &str = "indexed_blocks";

/// Index failures.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// redb reported an error.
    #[error("index database: {0}")]
    Db(String),
    /// Integrity check failed (redb repaired what it could; rebuild anyway).
    #[error("index failed its integrity check")]
    Damaged,
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for IndexError {
            fn from(e: $t) -> Self {
                IndexError::Db(e.to_string())
            }
        }
    )*};
}
db_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// A participant record: public key and its encoded record.
pub type ParticipantRecord = ([u8; 32], Vec<u8>);

/// A break-glass record: the entry's leaf and its encoded record.
pub type BreakGlassRecord = (u64, Vec<u8>);

/// A prescription record: the prescription's transaction id and its
/// encoded record.
pub type PrescriptionEntry = ([u8; 32], Vec<u8>);

/// The directory records a block changes: participants, chosen doctors and
/// break-glass entries, as they stand after the block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directory {
    /// Participant records: public key → encoded record.
    pub participants: Vec<ParticipantRecord>,
    /// Chosen doctors: patient pseudonym → doctor's public key.
    pub chosen: Vec<(String, [u8; 32])>,
    /// Break-glass entries opened or reviewed: leaf → encoded record.
    pub break_glass: Vec<BreakGlassRecord>,
    /// Transactions the block's redactions erase.
    pub redacted: Vec<RedactedEntry>,
    /// Prescriptions created, filled or cancelled: id → encoded record.
    pub prescriptions: Vec<PrescriptionEntry>,
}

/// A block's entry in the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockEntry {
    /// Block height.
    pub height: u64,
    /// Where its records are.
    pub location: Location,
    /// Log index of its first transaction.
    pub first_leaf: u64,
    /// Number of transactions.
    pub tx_count: u64,
}

/// A transaction's entries in the index.
#[derive(Clone, Debug)]
pub struct TxEntry {
    /// Transaction id.
    pub id: Hash,
    /// Log index.
    pub leaf: u64,
    /// Author public key.
    pub author: [u8; 32],
    /// Kind.
    pub kind: String,
    /// Patient pseudonym, when the payload names one.
    pub patient: Option<String>,
    /// Codes the payload carries (ICD-10, LOINC, vaccine codes).
    pub codes: Vec<String>,
    /// For an access entry: the patients whose records it logs a read of.
    pub accessed: Vec<String>,
    /// Author's timestamp, ms.
    pub time: u64,
    /// Its payload was found erased (indexed from a redacted record).
    pub erased: bool,
}

/// A transaction a block's redaction erases: its index entries that hold
/// payload terms are removed; its kind, time and author (header fields)
/// stay, and so does its patient link, so the patient's history shows that
/// it existed and was redacted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedactedEntry {
    /// The erased transaction's id.
    pub id: Hash,
    /// The erased transaction's leaf.
    pub leaf: u64,
    /// The leaf of the redaction.
    pub by: u64,
    /// The patient the redaction names, if any.
    pub patient: Option<String>,
}

/// Facts the index keeps of a committed transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxFacts {
    /// Log index.
    pub leaf: u64,
    /// Kind.
    pub kind: String,
    /// Patient pseudonym the payload names: `Some(None)` for none, `None`
    /// when that is not known (the payload is erased already).
    pub patient: Option<Option<String>>,
    /// Leaf of the redaction that erased it, if it is redacted.
    pub redacted_by: Option<u64>,
}

/// Everything one block adds to the index.
#[derive(Clone, Debug)]
pub struct BlockIndex {
    /// The block.
    pub block: BlockEntry,
    /// Its transactions.
    pub txs: Vec<TxEntry>,
    /// Participant records it writes: public key → encoded record.
    pub participants: Vec<ParticipantRecord>,
    /// Chosen doctors it sets: patient pseudonym → doctor's public key.
    pub chosen: Vec<(String, [u8; 32])>,
    /// Break-glass entries it opens or reviews: leaf → encoded record.
    pub break_glass: Vec<BreakGlassRecord>,
    /// Transactions its redactions erase.
    pub redacted: Vec<RedactedEntry>,
    /// Prescriptions it creates, fills or cancels: id → encoded record.
    pub prescriptions: Vec<PrescriptionEntry>,
}

/// A secondary index to query.
#[derive(Clone, Copy, Debug)]
pub enum By<'a> {
    /// By author public key.
    Author(&'a [u8; 32]),
    /// By kind.
    Kind(&'a str),
    /// By patient pseudonym.
    Patient(&'a str),
    /// By code (ICD-10, LOINC, vaccine).
    Code(&'a str),
    /// Access entries that log a read of this patient's records.
    Accessed(&'a str),
}

/// Leaves under `key` in a (key, leaf) table, ascending from `from`, at
/// most `limit`.
fn pairs(
    t: &redb::ReadOnlyTable<(&'static str, u64), ()>,
    key: &str,
    from: u64,
    limit: usize,
) -> Result<Vec<u64>, IndexError> {
    let mut out = Vec::new();
    for item in t.range((key, from)..=(key, u64::MAX))?.take(limit) {
        out.push(item?.0.value().1);
    }
    Ok(out)
}

/// The index database.
pub struct Index {
    db: Database,
}

impl Index {
    /// Opens or creates the index at `path`, checking every page's checksum:
    /// the index is derived data, and a damaged one must be rebuilt rather
    /// than trusted.
    pub fn open(path: &Path) -> Result<Self, IndexError> {
        // Checking on open (rather than after a plain open) is what makes
        // redb report a file altered outside it as an error, not a panic;
        // the catch is a second line in case a damaged file still trips one.
        let opened = std::panic::catch_unwind(|| {
            Database::builder()
                .set_check_integrity_on_open(true)
                .create(path)
        });
        let db = match opened {
            Ok(db) => db?,
            Err(_) => return Err(IndexError::Damaged),
        };
        let w = db.begin_write()?;
        Self::create_tables(&w)?;
        w.commit()?;
        Ok(Self { db })
    }

    /// Number of blocks indexed (heights `0..n`).
    pub fn indexed_blocks(&self) -> Result<u64, IndexError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(META)?;
        Ok(t.get(INDEXED_BLOCKS)?.map(|v| v.value()).unwrap_or(0))
    }

    /// Adds consecutive blocks. `durable` forces an fsync; otherwise the
    /// write becomes durable with a later durable one, and a crash in between
    /// only leaves the index behind, which opening repairs.
    pub fn apply(&self, blocks: &[BlockIndex], durable: bool) -> Result<(), IndexError> {
        let Some(last) = blocks.last() else {
            return Ok(());
        };
        let mut w = self.db.begin_write()?;
        w.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })?;
        {
            let mut meta = w.open_table(META)?;
            let mut bl = w.open_table(BLOCKS)?;
            let mut fl = w.open_table(FIRST_LEAF)?;
            let mut ids = w.open_table(TX_ID)?;
            let mut by_author = w.open_multimap_table(BY_AUTHOR)?;
            let mut by_kind = w.open_multimap_table(BY_KIND)?;
            let mut by_patient = w.open_multimap_table(BY_PATIENT)?;
            let mut by_code = w.open_table(BY_CODE)?;
            let mut by_time = w.open_multimap_table(BY_TIME)?;
            let mut by_accessed = w.open_table(BY_ACCESSED)?;
            let mut parts = w.open_table(PARTICIPANTS)?;
            let mut chosen = w.open_table(CHOSEN)?;
            let mut glass = w.open_table(BREAK_GLASS)?;
            let mut meta_t = w.open_table(TX_META)?;
            let mut redacted = w.open_table(REDACTED)?;
            let mut rx = w.open_table(PRESCRIPTIONS)?;
            for b in blocks {
                let e = &b.block;
                bl.insert(
                    e.height,
                    (
                        e.location.segment,
                        e.location.offset,
                        e.first_leaf,
                        e.tx_count,
                    ),
                )?;
                if e.tx_count > 0 {
                    fl.insert(e.first_leaf, e.height)?;
                }
                for tx in &b.txs {
                    ids.insert(&tx.id, tx.leaf)?;
                    by_author.insert(&tx.author, tx.leaf)?;
                    by_kind.insert(tx.kind.as_str(), tx.leaf)?;
                    if let Some(p) = &tx.patient {
                        by_patient.insert(p.as_str(), tx.leaf)?;
                    }
                    for c in &tx.codes {
                        by_code.insert((c.as_str(), tx.leaf), ())?;
                    }
                    by_time.insert(tx.time, tx.leaf)?;
                    for p in &tx.accessed {
                        by_accessed.insert((p.as_str(), tx.leaf), ())?;
                    }
                    meta_t.insert(
                        tx.leaf,
                        (
                            tx.kind.as_str(),
                            tx.patient.as_deref().unwrap_or(""),
                            tx.erased,
                        ),
                    )?;
                }
                if !b.redacted.is_empty() {
                    // Terms taken from an erased payload go; the codes are
                    // found by their leaves, so this works when the payload
                    // is already gone (a redaction applied again on recovery).
                    let leaves: std::collections::HashSet<u64> =
                        b.redacted.iter().map(|r| r.leaf).collect();
                    let mut stale = Vec::new();
                    for item in by_code.iter()? {
                        let (k, _) = item?;
                        let (code, leaf) = k.value();
                        if leaves.contains(&leaf) {
                            stale.push((code.to_owned(), leaf));
                        }
                    }
                    for (code, leaf) in &stale {
                        by_code.remove((code.as_str(), *leaf))?;
                    }
                    meta.insert(COMPACT_DUE, 1)?;
                    for r in &b.redacted {
                        redacted.insert(r.leaf, (r.by, &r.id))?;
                        let kind = meta_t.get(r.leaf)?.map(|v| v.value().0.to_owned());
                        if let Some(kind) = kind {
                            let patient = r.patient.as_deref().unwrap_or("");
                            meta_t.insert(r.leaf, (kind.as_str(), patient, true))?;
                        }
                        if let Some(p) = &r.patient {
                            by_patient.insert(p.as_str(), r.leaf)?;
                        }
                    }
                }
                for (key, rec) in &b.participants {
                    parts.insert(key, rec.as_slice())?;
                }
                for (patient, doctor) in &b.chosen {
                    chosen.insert(patient.as_str(), doctor)?;
                }
                for (leaf, rec) in &b.break_glass {
                    glass.insert(leaf, rec.as_slice())?;
                }
                for (id, rec) in &b.prescriptions {
                    rx.insert(id, rec.as_slice())?;
                }
            }
            meta.insert(INDEXED_BLOCKS, last.block.height + 1)?;
        }
        w.commit()?;
        Ok(())
    }

    /// Forces everything written so far to disk.
    pub fn flush(&self) -> Result<(), IndexError> {
        let mut w = self.db.begin_write()?;
        w.set_durability(Durability::Immediate)?;
        w.commit()?;
        Ok(())
    }

    /// Removes every entry, before a rebuild.
    pub fn clear(&self) -> Result<(), IndexError> {
        let w = self.db.begin_write()?;
        w.delete_table(META)?;
        w.delete_table(BLOCKS)?;
        w.delete_table(FIRST_LEAF)?;
        w.delete_table(TX_ID)?;
        w.delete_multimap_table(BY_AUTHOR)?;
        w.delete_multimap_table(BY_KIND)?;
        w.delete_multimap_table(BY_PATIENT)?;
        w.delete_table(BY_CODE)?;
        w.delete_multimap_table(BY_TIME)?;
        w.delete_table(BY_ACCESSED)?;
        w.delete_table(PARTICIPANTS)?;
        w.delete_table(CHOSEN)?;
        w.delete_table(BREAK_GLASS)?;
        w.delete_table(TX_META)?;
        w.delete_table(REDACTED)?;
        w.delete_table(PRESCRIPTIONS)?;
        Self::create_tables(&w)?;
        w.commit()?;
        Ok(())
    }

    fn create_tables(w: &redb::WriteTransaction) -> Result<(), IndexError> {
        w.open_table(META)?;
        w.open_table(BLOCKS)?;
        w.open_table(FIRST_LEAF)?;
        w.open_table(TX_ID)?;
        w.open_multimap_table(BY_AUTHOR)?;
        w.open_multimap_table(BY_KIND)?;
        w.open_multimap_table(BY_PATIENT)?;
        w.open_table(BY_CODE)?;
        w.open_multimap_table(BY_TIME)?;
        w.open_table(BY_ACCESSED)?;
        w.open_table(PARTICIPANTS)?;
        w.open_table(CHOSEN)?;
        w.open_table(BREAK_GLASS)?;
        w.open_table(TX_META)?;
        w.open_table(REDACTED)?;
        w.open_table(PRESCRIPTIONS)?;
        Ok(())
    }

    /// Every prescription record, by id.
    pub fn prescriptions(&self) -> Result<Vec<PrescriptionEntry>, IndexError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(PRESCRIPTIONS)?;
        let mut out = Vec::with_capacity(t.len()? as usize);
        for item in t.iter()? {
            let (k, v) = item?;
            out.push((*k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// What the index knows of the transaction `id`, if it is indexed.
    pub fn facts(&self, id: &Hash) -> Result<Option<TxFacts>, IndexError> {
        let r = self.db.begin_read()?;
        let Some(leaf) = r.open_table(TX_ID)?.get(id)?.map(|v| v.value()) else {
            return Ok(None);
        };
        let meta = r.open_table(TX_META)?;
        let Some(m) = meta.get(leaf)? else {
            return Ok(None);
        };
        let (kind, patient, erased) = m.value();
        let redacted_by = r.open_table(REDACTED)?.get(leaf)?.map(|v| v.value().0);
        Ok(Some(TxFacts {
            leaf,
            kind: kind.to_owned(),
            patient: (!erased).then(|| (!patient.is_empty()).then(|| patient.to_owned())),
            redacted_by,
        }))
    }

    /// The leaf of the redaction that erased `leaf`, if one did.
    pub fn redacted_by(&self, leaf: u64) -> Result<Option<u64>, IndexError> {
        let r = self.db.begin_read()?;
        Ok(r.open_table(REDACTED)?.get(leaf)?.map(|v| v.value().0))
    }

    /// Every redacted transaction: id, leaf and the leaf of its redaction,
    /// by leaf ascending.
    pub fn redactions(&self) -> Result<Vec<(Hash, u64, u64)>, IndexError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(REDACTED)?;
        let mut out = Vec::with_capacity(t.len()? as usize);
        for item in t.iter()? {
            let (k, v) = item?;
            let (by, id) = v.value();
            out.push((*id, k.value(), by));
        }
        Ok(out)
    }

    /// If a redaction purged entries since the last compaction, rewrites the
    /// database file so that the pages those entries were on, which redb
    /// frees but does not overwrite, leave the file. Returns whether it did.
    pub fn compact_if_due(&mut self) -> Result<bool, IndexError> {
        let due = {
            let r = self.db.begin_read()?;
            let t = r.open_table(META)?;
            t.get(COMPACT_DUE)?.is_some()
        };
        if !due {
            return Ok(false);
        }
        // Compaction moves live pages down and truncates the file; run it
        // until it has nothing left to move. The flag goes only afterwards
        // (the page that held it holds no erased term), so an interrupted
        // compaction runs again on the next open.
        while self
            .db
            .compact()
            .map_err(|e| IndexError::Db(e.to_string()))?
        {}
        let mut w = self.db.begin_write()?;
        w.set_durability(Durability::Immediate)?;
        w.open_table(META)?.remove(COMPACT_DUE)?;
        w.commit()?;
        Ok(true)
    }

    /// The log index of each id, or `None` where it is not indexed.
    pub fn leaves_of(&self, ids: &[&Hash]) -> Result<Vec<Option<u64>>, IndexError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(TX_ID)?;
        ids.iter()
            .map(|id| Ok(t.get(*id)?.map(|v| v.value())))
            .collect()
    }

    /// A block's entry.
    pub fn block(&self, height: u64) -> Result<Option<BlockEntry>, IndexError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(BLOCKS)?;
        Ok(t.get(height)?.map(|v| {
            let (segment, offset, first_leaf, tx_count) = v.value();
            BlockEntry {
                height,
                location: Location { segment, offset },
                first_leaf,
                tx_count,
            }
        }))
    }

    /// The height of the block holding `leaf`.
    pub fn height_of_leaf(&self, leaf: u64) -> Result<Option<u64>, IndexError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(FIRST_LEAF)?;
        let found = t.range(..=leaf)?.next_back().transpose()?;
        Ok(found.map(|(_, h)| h.value()))
    }

    /// One participant record.
    pub fn participant(&self, key: &[u8; 32]) -> Result<Option<Vec<u8>>, IndexError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(PARTICIPANTS)?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Every stored participant record.
    pub fn participants(&self) -> Result<Vec<ParticipantRecord>, IndexError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(PARTICIPANTS)?;
        let mut out = Vec::with_capacity(t.len()? as usize);
        for item in t.iter()? {
            let (k, v) = item?;
            out.push((*k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Every patient's chosen doctor: pseudonym → the doctor's public key.
    pub fn chosen_doctors(&self) -> Result<Vec<(String, [u8; 32])>, IndexError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(CHOSEN)?;
        let mut out = Vec::with_capacity(t.len()? as usize);
        for item in t.iter()? {
            let (k, v) = item?;
            out.push((k.value().to_string(), *v.value()));
        }
        Ok(out)
    }

    /// Break-glass records, by the entry's leaf ascending from `from`; with
    /// `keep`, only those it keeps, at most `limit`.
    pub fn break_glass(
        &self,
        from: u64,
        limit: usize,
        keep: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<BreakGlassRecord>, IndexError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(BREAK_GLASS)?;
        let mut out = Vec::new();
        for item in t.range(from..)? {
            if out.len() == limit {
                break;
            }
            let (k, v) = item?;
            if keep(v.value()) {
                out.push((k.value(), v.value().to_vec()));
            }
        }
        Ok(out)
    }

    /// Leaves matching `by`, ascending from `from`, at most `limit`.
    pub fn leaves_by(&self, by: By<'_>, from: u64, limit: usize) -> Result<Vec<u64>, IndexError> {
        let r = self.db.begin_read()?;
        let collect = |vals: redb::MultimapValue<'_, u64>| -> Result<Vec<u64>, IndexError> {
            let mut out = Vec::new();
            for v in vals {
                let v = v?.value();
                if v >= from {
                    out.push(v);
                    if out.len() == limit {
                        break;
                    }
                }
            }
            Ok(out)
        };
        match by {
            By::Author(a) => collect(r.open_multimap_table(BY_AUTHOR)?.get(a)?),
            By::Kind(k) => collect(r.open_multimap_table(BY_KIND)?.get(k)?),
            By::Patient(p) => collect(r.open_multimap_table(BY_PATIENT)?.get(p)?),
            By::Code(c) => pairs(&r.open_table(BY_CODE)?, c, from, limit),
            By::Accessed(p) => pairs(&r.open_table(BY_ACCESSED)?, p, from, limit),
        }
    }

    /// Leaves whose author time lies in `[from_ms, to_ms)`, at most `limit`.
    pub fn leaves_in_time(
        &self,
        from_ms: u64,
        to_ms: u64,
        limit: usize,
    ) -> Result<Vec<u64>, IndexError> {
        let r = self.db.begin_read()?;
        let t = r.open_multimap_table(BY_TIME)?;
        let mut out = Vec::new();
        for item in t.range(from_ms..to_ms)? {
            let (_, vals) = item?;
            for v in vals {
                out.push(v?.value());
                if out.len() == limit {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(leaf: u64, author: u8, kind: &str, patient: Option<&str>, time: u64) -> TxEntry {
        TxEntry {
            id: [leaf as u8; 32],
            leaf,
            author: [author; 32],
            kind: kind.into(),
            patient: patient.map(Into::into),
            codes: vec![format!("C{author}")],
            // Every entry by author 2 logs a read of P's and Q's records.
            accessed: match author {
                2 => vec!["P".into(), "Q".into()],
                _ => Vec::new(),
            },
            time,
            erased: false,
        }
    }

    #[test]
    fn secondary_indexes_answer_by_author_kind_patient_code_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("i.redb")).unwrap();
        let block = |height, first_leaf, txs: Vec<TxEntry>| BlockIndex {
            block: BlockEntry {
                height,
                location: Location {
                    segment: 0,
                    offset: 16 + height,
                },
                first_leaf,
                tx_count: txs.len() as u64,
            },
            txs,
            participants: vec![([9; 32], b"{}".to_vec())],
            chosen: vec![("P".into(), [7; 32])],
            // A record per block, the later one rewriting leaf 1's.
            break_glass: vec![(1, format!("open {height}").into_bytes())],
            redacted: Vec::new(),
            // Likewise, the later block's record of prescription 5 wins.
            prescriptions: vec![([5; 32], format!("filled {height}").into_bytes())],
        };
        index
            .apply(
                &[
                    block(
                        0,
                        0,
                        vec![tx(0, 1, "a", Some("P"), 10), tx(1, 2, "b", None, 20)],
                    ),
                    block(
                        1,
                        2,
                        vec![tx(2, 1, "b", Some("P"), 30), tx(3, 1, "a", Some("Q"), 40)],
                    ),
                ],
                true,
            )
            .unwrap();
        assert_eq!(index.indexed_blocks().unwrap(), 2);
        assert_eq!(
            index.leaves_by(By::Author(&[1; 32]), 0, 10).unwrap(),
            vec![0, 2, 3]
        );
        assert_eq!(
            index.leaves_by(By::Author(&[1; 32]), 1, 1).unwrap(),
            vec![2]
        );
        assert_eq!(index.leaves_by(By::Kind("b"), 0, 10).unwrap(), vec![1, 2]);
        assert_eq!(index.leaves_by(By::Accessed("Q"), 0, 10).unwrap(), vec![1]);
        assert_eq!(
            index.leaves_by(By::Accessed("P"), 2, 10).unwrap(),
            Vec::<u64>::new()
        );
        assert_eq!(
            index.chosen_doctors().unwrap(),
            vec![("P".to_string(), [7; 32])]
        );
        assert_eq!(
            index.leaves_by(By::Patient("P"), 0, 10).unwrap(),
            vec![0, 2]
        );
        assert_eq!(
            index.leaves_by(By::Code("C1"), 0, 10).unwrap(),
            vec![0, 2, 3]
        );
        assert_eq!(index.leaves_by(By::Code("C2"), 0, 10).unwrap(), vec![1]);
        assert_eq!(index.leaves_in_time(20, 40, 10).unwrap(), vec![1, 2]);
        assert_eq!(
            index.leaves_of(&[&[3; 32], &[7; 32]]).unwrap(),
            vec![Some(3), None]
        );
        assert_eq!(index.height_of_leaf(3).unwrap(), Some(1));
        assert_eq!(index.height_of_leaf(1).unwrap(), Some(0));
        assert_eq!(index.block(1).unwrap().unwrap().first_leaf, 2);
        assert_eq!(index.participant(&[9; 32]).unwrap(), Some(b"{}".to_vec()));
        assert_eq!(
            index.break_glass(0, 10, |_| true).unwrap(),
            vec![(1, b"open 1".to_vec())]
        );
        assert_eq!(
            index.prescriptions().unwrap(),
            vec![([5; 32], b"filled 1".to_vec())]
        );
        assert!(index.break_glass(2, 10, |_| true).unwrap().is_empty());
        assert!(
            index
                .break_glass(0, 10, |r| r == b"open 0")
                .unwrap()
                .is_empty()
        );
        index.clear().unwrap();
        assert!(index.break_glass(0, 10, |_| true).unwrap().is_empty());
        assert_eq!(index.indexed_blocks().unwrap(), 0);
        assert_eq!(
            index.leaves_by(By::Kind("a"), 0, 10).unwrap(),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn a_redaction_drops_the_codes_of_its_targets_keeps_their_patient_and_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.redb");
        let mut index = Index::open(&path).unwrap();
        let entry = |height, first_leaf, txs: Vec<TxEntry>, redacted| BlockIndex {
            block: BlockEntry {
                height,
                location: Location {
                    segment: 0,
                    offset: 16 + height,
                },
                first_leaf,
                tx_count: txs.len() as u64,
            },
            txs,
            participants: Vec::new(),
            chosen: Vec::new(),
            break_glass: Vec::new(),
            redacted,
            prescriptions: Vec::new(),
        };
        let mut a = tx(0, 1, "medical_report", Some("P"), 10);
        a.codes = vec!["SECRETCODE".into(), "I10".into()];
        let b = tx(1, 1, "medical_report", Some("P"), 11);
        index
            .apply(&[entry(0, 0, vec![a, b], Vec::new())], true)
            .unwrap();
        assert_eq!(index.leaves_by(By::Code("SECRETCODE"), 0, 9).unwrap(), [0]);
        let facts = index.facts(&[0; 32]).unwrap().unwrap();
        assert_eq!(
            (
                facts.leaf,
                facts.kind.as_str(),
                facts.patient.clone(),
                facts.redacted_by
            ),
            (0, "medical_report", Some(Some("P".into())), None)
        );
        assert!(!index.compact_if_due().unwrap());
        let order = tx(2, 3, "record.redaction", Some("P"), 12);
        let erased = RedactedEntry {
            id: [0; 32],
            leaf: 0,
            by: 2,
            patient: Some("P".into()),
        };
        index
            .apply(&[entry(1, 2, vec![order], vec![erased])], true)
            .unwrap();
        assert!(
            index
                .leaves_by(By::Code("SECRETCODE"), 0, 9)
                .unwrap()
                .is_empty()
        );
        assert!(index.leaves_by(By::Code("I10"), 0, 9).unwrap().is_empty());
        assert_eq!(index.leaves_by(By::Code("C1"), 0, 9).unwrap(), [1]);
        assert_eq!(index.leaves_by(By::Patient("P"), 0, 9).unwrap(), [0, 1, 2]);
        assert_eq!(index.redacted_by(0).unwrap(), Some(2));
        assert_eq!(index.redactions().unwrap(), [([0; 32], 0, 2)]);
        let facts = index.facts(&[0; 32]).unwrap().unwrap();
        assert_eq!((facts.patient, facts.redacted_by), (None, Some(2)));
        // redb frees the pages the removed entries were on without
        // overwriting them (at redb 4 the code is still in the file here);
        // compaction is what takes it out.
        assert!(index.compact_if_due().unwrap());
        assert!(!index.compact_if_due().unwrap());
        drop(index);
        let data = std::fs::read(&path).unwrap();
        assert!(!data.windows(10).any(|w| w == b"SECRETCODE"));
    }
}
