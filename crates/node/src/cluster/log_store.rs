//! The Raft log and vote, in `raft.redb` beside the ledger. Entries are
//! postcard bytes keyed by index; every append and vote is a durable commit
//! before openraft is told it is flushed.
//!
//! Entries hold whole blocks, payloads included, so a redaction must reach
//! this file too: the entries up to it are purged and the file compacted
//! (see `super::erase_raft_log`), which is why the database sits behind a
//! lock that compaction takes alone.

use super::TypeConfig;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError,
    StorageIOError, Vote,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::{Arc, RwLock, RwLockReadGuard};

pub(super) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "last_purged";

/// A storage error on the log, as openraft wants it.
pub(super) fn log_err(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
    e: impl ToString,
) -> StorageError<u64> {
    StorageIOError::new(subject, verb, openraft::AnyError::error(e.to_string())).into()
}

fn read_err(e: impl ToString) -> StorageError<u64> {
    log_err(ErrorSubject::Logs, ErrorVerb::Read, e)
}

fn write_err(e: impl ToString) -> StorageError<u64> {
    log_err(ErrorSubject::Logs, ErrorVerb::Write, e)
}

/// `raft.redb`, shared by the log and the state machine. Every use holds
/// the read side from its transaction's start to its end; compaction,
/// which needs no transaction to be live, takes the write side.
pub type RaftDb = Arc<RwLock<Database>>;

/// The read side of `db`: the database, for one transaction.
pub(super) fn shared(db: &RaftDb) -> RwLockReadGuard<'_, Database> {
    db.read().unwrap_or_else(|p| p.into_inner())
}

/// The Raft log store; clones share the database.
#[derive(Clone)]
pub struct LogStore {
    db: RaftDb,
}

impl LogStore {
    /// Opens the log in `db` (creating its tables).
    pub fn new(db: RaftDb) -> Result<Self, StorageError<u64>> {
        {
            let db = shared(&db);
            let tx = db.begin_write().map_err(write_err)?;
            tx.open_table(LOG).map_err(write_err)?;
            tx.open_table(META).map_err(write_err)?;
            tx.commit().map_err(write_err)?;
        }
        Ok(LogStore { db })
    }

    fn meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError<u64>> {
        let db = shared(&self.db);
        let tx = db.begin_read().map_err(read_err)?;
        let table = tx.open_table(META).map_err(read_err)?;
        match table.get(key).map_err(read_err)? {
            Some(v) => postcard::from_bytes(v.value()).map(Some).map_err(read_err),
            None => Ok(None),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), StorageError<u64>> {
        let bytes = postcard::to_allocvec(value).map_err(write_err)?;
        let db = shared(&self.db);
        let tx = db.begin_write().map_err(write_err)?;
        {
            let mut table = tx.open_table(META).map_err(write_err)?;
            table.insert(key, bytes.as_slice()).map_err(write_err)?;
        }
        tx.commit().map_err(write_err)
    }

    fn last_purged(&self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        Ok(self.meta::<Option<LogId<u64>>>(PURGED)?.flatten())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        let db = shared(&self.db);
        let tx = db.begin_read().map_err(read_err)?;
        let table = tx.open_table(LOG).map_err(read_err)?;
        let mut out = Vec::new();
        for item in table.range(range).map_err(read_err)? {
            let (_, v) = item.map_err(read_err)?;
            out.push(postcard::from_bytes(v.value()).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let last_purged = self.last_purged()?;
        let db = shared(&self.db);
        let tx = db.begin_read().map_err(read_err)?;
        let table = tx.open_table(LOG).map_err(read_err)?;
        let last = match table.last().map_err(read_err)? {
            Some((_, v)) => {
                let e: Entry<TypeConfig> = postcard::from_bytes(v.value()).map_err(read_err)?;
                Some(e.log_id)
            }
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        self.put_meta(VOTE, vote)
            .map_err(|e| log_err(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        self.meta(VOTE)
            .map_err(|e| log_err(ErrorSubject::Vote, ErrorVerb::Read, e))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        self.put_meta(COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        Ok(self.meta::<Option<LogId<u64>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let db = shared(&self.db);
        let tx = db.begin_write().map_err(write_err)?;
        {
            let mut table = tx.open_table(LOG).map_err(write_err)?;
            for e in entries {
                let bytes = postcard::to_allocvec(&e).map_err(write_err)?;
                table
                    .insert(e.log_id.index, bytes.as_slice())
                    .map_err(write_err)?;
            }
        }
        // The commit is durable (fsynced) when it returns.
        let result = tx.commit().map_err(write_err);
        callback.log_io_completed(
            result
                .as_ref()
                .map(|_| ())
                .map_err(|e| std::io::Error::other(e.to_string())),
        );
        result
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let db = shared(&self.db);
        let tx = db.begin_write().map_err(write_err)?;
        {
            let mut table = tx.open_table(LOG).map_err(write_err)?;
            table
                .retain_in(log_id.index.., |_, _| false)
                .map_err(write_err)?;
        }
        tx.commit().map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let bytes = postcard::to_allocvec(&Some(log_id)).map_err(write_err)?;
        let db = shared(&self.db);
        let tx = db.begin_write().map_err(write_err)?;
        {
            let mut meta = tx.open_table(META).map_err(write_err)?;
            meta.insert(PURGED, bytes.as_slice()).map_err(write_err)?;
            let mut table = tx.open_table(LOG).map_err(write_err)?;
            table
                .retain_in(..=log_id.index, |_, _| false)
                .map_err(write_err)?;
        }
        tx.commit().map_err(write_err)
    }
}
