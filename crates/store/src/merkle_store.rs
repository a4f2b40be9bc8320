//! Stored hashes of every perfect subtree of the log, one append-only file
//! per level (`level-00` holds the leaf hashes, `level-01` the hashes of
//! pairs, ...). Entry `i` of level `k` is the root of leaves
//! `[i·2^k, (i+1)·2^k)`, 32 bytes, at byte offset `32·i`.
//!
//! Proofs read one node per level: levels at or above [`MEM_LEVEL`] are
//! small (n/256 nodes) and held in memory; lower levels keep a window of
//! recent nodes in memory (new receipts are for new leaves) and otherwise
//! read the file. The files are not fsynced on the commit path: they are
//! derived from the segments, and opening checks them against the last
//! block's root and repairs or rebuilds them.

use medledger_formats::merkle::{self, Frontier, Hash, ProofFetchError, SubtreeSource};
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Levels from here up are held entirely in memory.
const MEM_LEVEL: u8 = 8;
/// Leaves' worth of recent low-level nodes kept in memory.
const TAIL_LEAVES: u64 = 1 << 17;
const LEVELS: usize = 64;

/// The stored subtree hashes of a log.
pub struct MerkleStore {
    dir: PathBuf,
    files: Vec<Option<File>>,
    /// Levels >= MEM_LEVEL, complete.
    high: Vec<Vec<Hash>>,
    /// Levels < MEM_LEVEL: (index of first node held, recent nodes).
    low: Vec<(u64, VecDeque<Hash>)>,
    /// Leaves stored; set before the frontier while loading.
    size: u64,
    frontier: Frontier,
}

fn level_path(dir: &Path, level: usize) -> PathBuf {
    dir.join(format!("level-{level:02}"))
}

impl MerkleStore {
    /// Opens the store in `dir`, making the levels agree with each other
    /// (a crash may have left upper levels short or lower levels long).
    /// The caller must then [`Self::truncate`] or extend to the log size and
    /// compare [`Self::root`] with the last block.
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut files = Vec::with_capacity(LEVELS);
        let mut counts = Vec::with_capacity(LEVELS);
        for level in 0..LEVELS {
            let path = level_path(dir, level);
            match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(f) => {
                    counts.push(f.metadata()?.len() / 32);
                    files.push(Some(f));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    counts.push(0);
                    files.push(None);
                }
                Err(e) => return Err(e),
            }
        }
        let mut store = MerkleStore {
            dir: dir.to_path_buf(),
            files,
            high: vec![Vec::new(); LEVELS],
            low: vec![(0, VecDeque::new()); MEM_LEVEL as usize],
            size: 0,
            frontier: Frontier::new(),
        };
        let size = counts[0];
        // Make level k hold exactly size >> k nodes, rebuilding short levels
        // from the one below.
        for (level, &have) in counts.iter().enumerate().skip(1) {
            let want = size >> level;
            if have > want {
                store.file(level)?.set_len(want * 32)?;
            } else if have < want {
                for i in have..want {
                    let l = store.read_node(level - 1, 2 * i)?;
                    let r = store.read_node(level - 1, 2 * i + 1)?;
                    store
                        .file(level)?
                        .write_all_at(&merkle::node_hash(&l, &r), i * 32)?;
                }
            }
        }
        store.load_memory(size)?;
        Ok(store)
    }

    fn file(&mut self, level: usize) -> io::Result<&File> {
        if self.files[level].is_none() {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(level_path(&self.dir, level))?;
            self.files[level] = Some(f);
        }
        self.files[level]
            .as_ref()
            .ok_or_else(|| io::Error::other("level file missing"))
    }

    fn read_node(&self, level: usize, index: u64) -> io::Result<Hash> {
        let f = self.files[level]
            .as_ref()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "level file missing"))?;
        let mut h = [0u8; 32];
        f.read_exact_at(&mut h, index * 32)?;
        Ok(h)
    }

    /// Nodes `[from, to)` of a level, in one read.
    fn read_range(&self, level: usize, from: u64, to: u64) -> io::Result<Vec<Hash>> {
        if from >= to {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; ((to - from) * 32) as usize];
        self.files[level]
            .as_ref()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "level file missing"))?
            .read_exact_at(&mut buf, from * 32)?;
        Ok(buf
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect())
    }

    fn load_memory(&mut self, size: u64) -> io::Result<()> {
        self.size = size;
        for level in MEM_LEVEL as usize..LEVELS {
            let n = size >> level;
            self.high[level] = self.read_range(level, 0, n)?;
        }
        for level in 0..MEM_LEVEL as usize {
            let n = size >> level;
            let keep = (TAIL_LEAVES >> level).min(n);
            self.low[level] = (n - keep, self.read_range(level, n - keep, n)?.into());
        }
        self.frontier = Frontier::from_source(&*self, size).map_err(|e| match e {
            ProofFetchError::Source(e) => e,
            ProofFetchError::Invalid(e) => io::Error::new(io::ErrorKind::InvalidData, e),
        })?;
        Ok(())
    }

    /// Number of leaves stored.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Root of the whole stored tree.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// The current frontier (compact range).
    pub fn frontier(&self) -> &Frontier {
        &self.frontier
    }

    /// Appends leaves and every subtree they complete. The files are
    /// written first; memory changes only once every write succeeded, so a
    /// failed append leaves the store as it was.
    pub fn append(&mut self, leaves: &[Hash]) -> io::Result<()> {
        let mut added: Vec<Vec<u8>> = vec![Vec::new(); LEVELS];
        let mut firsts = [u64::MAX; LEVELS];
        let mut frontier = self.frontier.clone();
        for leaf in leaves {
            frontier.push(*leaf, |level, index, hash| {
                let l = level as usize;
                if firsts[l] == u64::MAX {
                    firsts[l] = index;
                }
                added[l].extend_from_slice(hash);
            });
        }
        for (level, bytes) in added.iter().enumerate() {
            if !bytes.is_empty() {
                self.file(level)?.write_all_at(bytes, firsts[level] * 32)?;
            }
        }
        for (level, bytes) in added.iter().enumerate() {
            for c in bytes.chunks_exact(32) {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                if level >= MEM_LEVEL as usize {
                    self.high[level].push(h);
                } else {
                    let cap = (TAIL_LEAVES >> level) as usize;
                    let (base, q) = &mut self.low[level];
                    q.push_back(h);
                    if q.len() > cap {
                        q.pop_front();
                        *base += 1;
                    }
                }
            }
        }
        self.frontier = frontier;
        self.size = self.frontier.size();
        Ok(())
    }

    /// Cuts the store back to `size` leaves (after a torn block was dropped).
    pub fn truncate(&mut self, size: u64) -> io::Result<()> {
        if size >= self.size() {
            return Ok(());
        }
        for level in 0..LEVELS {
            if self.files[level].is_some() {
                self.file(level)?.set_len((size >> level) * 32)?;
            }
        }
        self.load_memory(size)
    }

    /// Deletes everything (before a rebuild).
    pub fn clear(&mut self) -> io::Result<()> {
        self.truncate(0)?;
        for level in 0..LEVELS {
            if self.files[level].is_some() {
                self.file(level)?.set_len(0)?;
            }
        }
        self.load_memory(0)
    }

    /// Flushes the level files to disk.
    pub fn sync(&self) -> io::Result<()> {
        for f in self.files.iter().flatten() {
            f.sync_data()?;
        }
        Ok(())
    }
}

impl SubtreeSource for MerkleStore {
    type Error = io::Error;

    fn stored_size(&self) -> Option<u64> {
        Some(self.size)
    }

    fn subtree(&self, level: u8, index: u64) -> Result<Hash, io::Error> {
        let l = level as usize;
        if l >= LEVELS || index >= self.size() >> level {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no stored subtree at level {level} index {index}"),
            ));
        }
        if level >= MEM_LEVEL {
            return Ok(self.high[l][index as usize]);
        }
        let (base, q) = &self.low[l];
        if let Some(h) = index.checked_sub(*base).and_then(|i| q.get(i as usize)) {
            return Ok(*h);
        }
        self.read_node(l, index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medledger_formats::merkle::{MemTree, inclusion_proof, leaf_hash, verify_inclusion};

    #[test]
    fn stored_subtrees_serve_proofs_across_reopen_and_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = MerkleStore::open(dir.path()).unwrap();
        let mut mem = MemTree::new();
        let leaves: Vec<Hash> = (0u32..3000).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        for chunk in leaves.chunks(97) {
            store.append(chunk).unwrap();
            for l in chunk {
                mem.push(*l);
            }
        }
        assert_eq!(store.root(), mem.root());
        drop(store);
        let mut store = MerkleStore::open(dir.path()).unwrap();
        assert_eq!(store.size(), 3000);
        assert_eq!(store.root(), merkle::root(&leaves));
        for i in [0u64, 1, 255, 256, 1999, 2999] {
            let p = inclusion_proof(&store, i, 3000).unwrap();
            verify_inclusion(&leaves[i as usize], i, 3000, &p, &store.root()).unwrap();
        }
        store.truncate(1234).unwrap();
        assert_eq!(store.root(), merkle::root(&leaves[..1234]));
        store.append(&leaves[1234..1300]).unwrap();
        assert_eq!(store.root(), merkle::root(&leaves[..1300]));
    }

    #[test]
    fn short_upper_levels_are_rebuilt_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let leaves: Vec<Hash> = (0u32..1000).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let mut store = MerkleStore::open(dir.path()).unwrap();
        store.append(&leaves).unwrap();
        drop(store);
        // Lose the tail of level 3 and all of level 9, as a crash could.
        let f = OpenOptions::new()
            .write(true)
            .open(level_path(dir.path(), 3))
            .unwrap();
        f.set_len(40 * 32).unwrap();
        fs::remove_file(level_path(dir.path(), 9)).unwrap();
        let store = MerkleStore::open(dir.path()).unwrap();
        assert_eq!(store.root(), merkle::root(&leaves));
    }
}
