//! Append-only segment files of length-prefixed, checksummed records.
//!
//! ```text
//! segment file = header | record*
//! header       = "MLSEG\0\0\x01" | first_height u64 LE                 (16 bytes)
//! record       = len u32 LE | kind u8 | crc32c u32 LE | body[len]
//!                crc32c covers len, kind and body
//! ```
//! Each block is written as a payloads record followed by its block record,
//! in one write, and acknowledged only after `fdatasync`. A crash can
//! therefore only leave a partial last pair; opening cuts it off. Damage
//! anywhere else is corruption and opening refuses instead of cutting.

use crate::backend::{Backend, BackendFactory, FileFactory, sync_dir};
use medledger_formats::record::{KIND_BLOCK, KIND_PAYLOADS, decode_block_header};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Magic bytes at the start of every segment file (format version 1).
const SEGMENT_MAGIC: &[u8; 8] = b"MLSEG\0\0\x01";
/// Bytes in a segment file header.
pub const SEGMENT_HEADER: u64 = 16;
/// Bytes in a record header.
pub const RECORD_HEADER: usize = 9;
/// Largest record accepted (a block's payloads).
const MAX_RECORD: usize = 256 << 20;
/// A segment is closed once it grows past this size.
const SEGMENT_TARGET: u64 = 128 << 20;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// The file system failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A record in the middle of the log is damaged.
    #[error("segment {path} is corrupt at byte {offset}: {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A record is too large to write.
    #[error("record of {0} bytes exceeds the {MAX_RECORD}-byte limit")]
    TooLarge(usize),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SegmentError + '_ {
    move |source| SegmentError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where a block's record pair starts: segment (by first height) and byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// First height of the segment file.
    pub segment: u64,
    /// Offset of the payloads record.
    pub offset: u64,
}

/// One block as stored: its location and both record bodies.
#[derive(Clone, Debug)]
pub struct StoredBlock {
    /// Where it starts.
    pub location: Location,
    /// Payloads record body.
    pub payloads: Vec<u8>,
    /// Block record body.
    pub block: Vec<u8>,
}

/// Frames one record into `out`.
fn frame(kind: u8, body: &[u8], out: &mut Vec<u8>) -> Result<(), SegmentError> {
    if body.len() > MAX_RECORD {
        return Err(SegmentError::TooLarge(body.len()));
    }
    let len = (body.len() as u32).to_le_bytes();
    let mut crc = crc32c::crc32c(&len);
    crc = crc32c::crc32c_append(crc, &[kind]);
    crc = crc32c::crc32c_append(crc, body);
    out.extend_from_slice(&len);
    out.push(kind);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(body);
    Ok(())
}

/// A record parsed from a byte buffer.
struct Parsed<'a> {
    kind: u8,
    body: &'a [u8],
    end: usize,
}

/// Why a record could not be read at some offset.
enum Bad {
    /// The record extends past the end of the data.
    Short,
    /// The record is complete but wrong.
    Invalid(&'static str),
}

fn parse_at(data: &[u8], at: usize) -> Result<Parsed<'_>, Bad> {
    let head = data
        .get(at..at + RECORD_HEADER)
        .and_then(|h| <&[u8; RECORD_HEADER]>::try_from(h).ok())
        .ok_or(Bad::Short)?;
    let (kind, len) = record_head(head)?;
    let end = at + RECORD_HEADER + len;
    let body = data.get(at + RECORD_HEADER..end).ok_or(Bad::Short)?;
    check_crc(head, body)?;
    Ok(Parsed { kind, body, end })
}

/// A record header's kind and body length, each checked.
fn record_head(head: &[u8; RECORD_HEADER]) -> Result<(u8, usize), Bad> {
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let kind = head[4];
    if kind != KIND_PAYLOADS && kind != KIND_BLOCK {
        return Err(Bad::Invalid("unknown record kind"));
    }
    if len > MAX_RECORD {
        return Err(Bad::Invalid("record length out of range"));
    }
    Ok((kind, len))
}

/// Checks a record's checksum, over its kind, length and body.
fn check_crc(head: &[u8; RECORD_HEADER], body: &[u8]) -> Result<(), Bad> {
    let crc = u32::from_le_bytes([head[5], head[6], head[7], head[8]]);
    let c = crc32c::crc32c_append(crc32c::crc32c(&head[..5]), body);
    if c != crc {
        return Err(Bad::Invalid("checksum mismatch"));
    }
    Ok(())
}

/// Result of walking one segment's bytes pair by pair.
pub struct Walk {
    /// Offset just past the last complete pair.
    pub good_end: u64,
    /// The first problem after `good_end`, if any: (offset, what, whether a
    /// valid record follows it, i.e. it is not a torn tail).
    pub damage: Option<(u64, &'static str, bool)>,
}

/// A complete record pair seen by [`walk`].
pub struct PairRef<'a> {
    /// Where the pair starts.
    pub location: Location,
    /// Payloads record body.
    pub payloads: &'a [u8],
    /// Block record body.
    pub block: &'a [u8],
}

impl PairRef<'_> {
    /// An owned copy.
    pub fn to_owned(&self) -> StoredBlock {
        StoredBlock {
            location: self.location,
            payloads: self.payloads.to_vec(),
            block: self.block.to_vec(),
        }
    }
}

/// Walks the records of a segment held in memory, starting at `from`,
/// calling `visit` for each complete (payloads, block) pair.
pub fn walk(segment: u64, data: &[u8], from: usize, mut visit: impl FnMut(PairRef<'_>)) -> Walk {
    let mut at = from;
    let mut last_block: Option<&[u8]> = None;
    loop {
        if at == data.len() {
            return Walk {
                good_end: at as u64,
                damage: None,
            };
        }
        let problem: Result<(), &'static str> = match parse_at(data, at) {
            Ok(p) if p.kind != KIND_PAYLOADS => Err("block record without its payloads record"),
            Ok(p) => match parse_at(data, p.end) {
                Ok(b) if b.kind == KIND_BLOCK => {
                    last_block = Some(b.body);
                    visit(PairRef {
                        location: Location {
                            segment,
                            offset: at as u64,
                        },
                        payloads: p.body,
                        block: b.body,
                    });
                    at = b.end;
                    continue;
                }
                Ok(_) => Err("payloads record not followed by its block record"),
                Err(Bad::Short) => Err("incomplete block record"),
                Err(Bad::Invalid(w)) => Err(w),
            },
            Err(Bad::Short) => Err("incomplete record"),
            Err(Bad::Invalid(w)) => Err(w),
        };
        let what = problem.err().unwrap_or("damaged record");
        // Damage followed by a later block is corruption; damage with nothing
        // after it is a torn tail. Only a whole pair whose block header
        // decodes and continues the chain counts as "a later block": a
        // client-chosen salt or payload can imitate one record, not that.
        let next_height = last_block
            .and_then(|b| decode_block_header(b).ok())
            .map_or(segment, |h| h.header().height + 1);
        let followed = (at + 1..data.len()).any(|o| pair_at(data, o, next_height));
        return Walk {
            good_end: at as u64,
            damage: Some((at as u64, what, followed)),
        };
    }
}

/// True if a whole (payloads, block) pair starts at `at` and its block
/// header decodes with a height of at least `min_height`.
fn pair_at(data: &[u8], at: usize, min_height: u64) -> bool {
    let Ok(p) = parse_at(data, at) else {
        return false;
    };
    if p.kind != KIND_PAYLOADS {
        return false;
    }
    match parse_at(data, p.end) {
        Ok(b) if b.kind == KIND_BLOCK => {
            decode_block_header(b.body).is_ok_and(|h| h.header().height >= min_height)
        }
        _ => false,
    }
}

/// Name of the segment file starting at `first_height`.
pub fn segment_name(first_height: u64) -> String {
    format!("{first_height:020}.seg")
}

/// Lists the segment files of `dir` by first height, ascending.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SegmentError> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
            continue;
        };
        if let Ok(h) = stem.parse::<u64>() {
            out.push((h, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads a whole segment file and checks its header.
pub fn read_segment(path: &Path, first_height: u64) -> Result<Vec<u8>, SegmentError> {
    let data = fs::read(path).map_err(io_err(path))?;
    check_header(path, &data, first_height)?;
    Ok(data)
}

fn check_header(path: &Path, data: &[u8], first_height: u64) -> Result<(), SegmentError> {
    let corrupt = |what: &str| SegmentError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        what: what.into(),
    };
    if data.len() < SEGMENT_HEADER as usize || &data[..8] != SEGMENT_MAGIC {
        return Err(corrupt("bad segment header"));
    }
    let mut h = [0u8; 8];
    h.copy_from_slice(&data[8..16]);
    if u64::from_le_bytes(h) != first_height {
        return Err(corrupt("segment header names another first height"));
    }
    Ok(())
}

/// What opening the log found.
pub struct Opened {
    /// The log, ready to append.
    pub log: SegmentLog,
    /// The last stored block, if any.
    pub last: Option<StoredBlock>,
    /// Bytes of torn tail that were cut off.
    pub cut: u64,
}

/// The segment log: closed segments plus one active segment for appends.
pub struct SegmentLog {
    dir: PathBuf,
    factory: Arc<dyn BackendFactory>,
    /// Write-locked only to add a segment; appends and reads share it.
    segments: RwLock<Vec<(u64, Arc<dyn Backend>)>>,
    /// Write-locked while a redaction rewrites records in place, so that no
    /// read sees a record half rewritten.
    rewriting: RwLock<()>,
}

/// Name of the redaction journal in the segments directory.
pub const REDACTION_JOURNAL: &str = "redacting.journal";
/// Magic bytes of the redaction journal (format version 1).
const JOURNAL_MAGIC: &[u8; 8] = b"MLRDJ\0\0\x01";

/// The payloads records one redaction rewrites: each block's location and
/// the positions (in the block) of the transactions it erases.
pub type RedactionPlan = Vec<(Location, Vec<u32>)>;

/// A record's new bytes: (segment, offset, bytes).
type Rewrite = (u64, u64, Vec<u8>);

/// Encodes a plan as the journal holds it:
/// ```text
/// magic [8] | count u32 | count × (segment u64 | offset u64 | n u32 | n × position u32) | crc32c u32
/// ```
fn encode_journal(plan: &[(Location, Vec<u32>)]) -> Vec<u8> {
    let mut out = JOURNAL_MAGIC.to_vec();
    out.extend_from_slice(&(plan.len() as u32).to_le_bytes());
    for (l, positions) in plan {
        out.extend_from_slice(&l.segment.to_le_bytes());
        out.extend_from_slice(&l.offset.to_le_bytes());
        out.extend_from_slice(&(positions.len() as u32).to_le_bytes());
        for p in positions {
            out.extend_from_slice(&p.to_le_bytes());
        }
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a journal; `None` if it is torn or damaged (then no record was
/// rewritten yet: rewriting starts only once the journal is durable).
fn decode_journal(data: &[u8]) -> Option<RedactionPlan> {
    let (body, crc) = data.split_at_checked(data.len().checked_sub(4)?)?;
    if crc32c::crc32c(body).to_le_bytes() != crc || body.get(..8)? != JOURNAL_MAGIC {
        return None;
    }
    let mut at = 8usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = body.get(at..at + n)?;
        at += n;
        Some(s)
    };
    let u32_of = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let u64_of = |b: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        u64::from_le_bytes(a)
    };
    let count = u32_of(take(4)?) as usize;
    let mut plan = Vec::new();
    for _ in 0..count {
        let segment = u64_of(take(8)?);
        let offset = u64_of(take(8)?);
        let n = u32_of(take(4)?) as usize;
        let mut positions = Vec::new();
        for _ in 0..n {
            positions.push(u32_of(take(4)?));
        }
        plan.push((Location { segment, offset }, positions));
    }
    Some(plan)
}

impl SegmentLog {
    /// Opens (creating) the log in `dir` with real files.
    pub fn open(dir: &Path) -> Result<Opened, SegmentError> {
        Self::open_with(dir, Arc::new(FileFactory))
    }

    /// Opens the log with the given backend factory. Only the last segment is
    /// read; its torn tail, if any, is cut back to the last whole block.
    pub fn open_with(dir: &Path, factory: Arc<dyn BackendFactory>) -> Result<Opened, SegmentError> {
        Self::open_hinted(dir, factory, None)
    }

    /// [`Self::open_with`], reading the last segment only from `hint` (a
    /// block known to be stored, e.g. the last one indexed) on. If anything
    /// after the hint looks wrong the whole segment is read and judged, so a
    /// stale or wrong hint can cost time but never cut data.
    pub fn open_hinted(
        dir: &Path,
        factory: Arc<dyn BackendFactory>,
        hint: Option<Location>,
    ) -> Result<Opened, SegmentError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let listed = list_segments(dir)?;
        let mut segments = Vec::with_capacity(listed.len());
        for (h, path) in &listed {
            segments.push((*h, factory.open(path, false).map_err(io_err(path))?));
        }
        let mut log = SegmentLog {
            dir: dir.to_path_buf(),
            factory,
            segments: RwLock::new(segments),
            rewriting: RwLock::new(()),
        };
        // A redaction interrupted mid-rewrite is finished before any record
        // is read, so its half-written records are never judged as damage.
        log.finish_redaction()?;
        let Some((first, backend)) = log.list().last().cloned() else {
            log.create_segment(0)?;
            return Ok(Opened {
                log,
                last: None,
                cut: 0,
            });
        };
        let path = log.path(first);
        let len = backend.len().map_err(io_err(&path))?;
        if let Some(h) =
            hint.filter(|h| h.segment == first && h.offset >= SEGMENT_HEADER && h.offset < len)
        {
            let mut data = vec![0u8; len as usize];
            backend
                .read_at(0, &mut data[..SEGMENT_HEADER as usize])
                .map_err(io_err(&path))?;
            backend
                .read_at(h.offset, &mut data[h.offset as usize..])
                .map_err(io_err(&path))?;
            let mut last = None;
            let w = walk(first, &data, h.offset as usize, |p| last = Some(p.location));
            if check_header(&path, &data, first).is_ok() && w.damage.is_none() && last.is_some() {
                let last = last.map(|l| Self::pair_at(first, &data, l));
                return Ok(Opened { log, last, cut: 0 });
            }
        }
        let mut data = vec![0u8; len as usize];
        backend.read_at(0, &mut data).map_err(io_err(&path))?;
        if len < SEGMENT_HEADER && log.list().len() > 1 {
            // Crash while creating the segment: nothing was ever written to it.
            log.segments
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .pop();
            fs::remove_file(&path).map_err(io_err(&path))?;
            sync_dir(dir).map_err(io_err(dir))?;
            return Self::open_hinted(dir, log.factory, None);
        }
        if len < SEGMENT_HEADER {
            backend.truncate(0).map_err(io_err(&path))?;
            log.segments
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            fs::remove_file(&path).map_err(io_err(&path))?;
            log.create_segment(0)?;
            return Ok(Opened {
                log,
                last: None,
                cut: len,
            });
        }
        check_header(&path, &data, first)?;
        let mut last = None;
        let w = walk(first, &data, SEGMENT_HEADER as usize, |p| {
            last = Some(p.location)
        });
        let mut last = last.map(|l| Self::pair_at(first, &data, l));
        let mut cut = 0;
        if let Some((offset, what, followed)) = w.damage {
            if followed {
                return Err(SegmentError::Corrupt {
                    path,
                    offset,
                    what: what.into(),
                });
            }
            cut = len - w.good_end;
            backend.truncate(w.good_end).map_err(io_err(&path))?;
        }
        let count = log.list().len();
        if last.is_none() && count > 1 {
            // An empty newest segment: the previous one ends the log.
            last = log.last_block_of(count - 2)?;
        }
        Ok(Opened { log, last, cut })
    }

    fn list(&self) -> std::sync::RwLockReadGuard<'_, Vec<(u64, Arc<dyn Backend>)>> {
        // A poisoned list is still the list; the panic that poisoned it is reported elsewhere.
        self.segments.read().unwrap_or_else(|e| e.into_inner())
    }

    fn last_block_of(&self, i: usize) -> Result<Option<StoredBlock>, SegmentError> {
        let first = self.list()[i].0;
        let path = self.path(first);
        let data = read_segment(&path, first)?;
        let mut last = None;
        let w = walk(first, &data, SEGMENT_HEADER as usize, |p| {
            last = Some(p.location)
        });
        if let Some((offset, what, _)) = w.damage {
            return Err(SegmentError::Corrupt {
                path,
                offset,
                what: what.into(),
            });
        }
        Ok(last.map(|l| Self::pair_at(first, &data, l)))
    }

    fn pair_at(segment: u64, data: &[u8], location: Location) -> StoredBlock {
        let mut out = None;
        walk(segment, data, location.offset as usize, |p| {
            if out.is_none() {
                out = Some(p.to_owned());
            }
        });
        // The pair was just seen whole at this offset, so the walk yields it.
        out.unwrap_or(StoredBlock {
            location,
            payloads: Vec::new(),
            block: Vec::new(),
        })
    }

    fn path(&self, first: u64) -> PathBuf {
        self.dir.join(segment_name(first))
    }

    fn create_segment(&self, first_height: u64) -> Result<(), SegmentError> {
        let path = self.path(first_height);
        let backend = self.factory.open(&path, true).map_err(io_err(&path))?;
        let mut header = Vec::with_capacity(SEGMENT_HEADER as usize);
        header.extend_from_slice(SEGMENT_MAGIC);
        header.extend_from_slice(&first_height.to_le_bytes());
        backend.append(&header).map_err(io_err(&path))?;
        backend.sync().map_err(io_err(&path))?;
        sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        self.segments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((first_height, backend));
        Ok(())
    }

    /// Appends one block's record pair (not yet durable; call [`Self::sync`]).
    /// Starts a new segment first when the active one is full.
    pub fn append(
        &self,
        height: u64,
        payloads: &[u8],
        block: &[u8],
    ) -> Result<Location, SegmentError> {
        let active = self.list().last().cloned();
        let full = match &active {
            Some((first, b)) => {
                let len = b.len().map_err(io_err(&self.path(*first)))?;
                len >= SEGMENT_TARGET && height > *first
            }
            None => true,
        };
        if full {
            self.create_segment(height)?;
        }
        let Some((first, backend)) = self.list().last().cloned() else {
            return Err(io_err(&self.dir)(io::Error::other("no active segment")));
        };
        let path = self.path(first);
        let offset = backend.len().map_err(io_err(&path))?;
        let mut buf = Vec::with_capacity(payloads.len() + block.len() + 2 * RECORD_HEADER);
        frame(KIND_PAYLOADS, payloads, &mut buf)?;
        frame(KIND_BLOCK, block, &mut buf)?;
        backend.append(&buf).map_err(io_err(&path))?;
        Ok(Location {
            segment: first,
            offset,
        })
    }

    /// Makes everything appended durable.
    pub fn sync(&self) -> Result<(), SegmentError> {
        let active = self.list().last().cloned();
        if let Some((first, backend)) = active {
            backend.sync().map_err(io_err(&self.path(first)))?;
        }
        Ok(())
    }

    /// Overwrites, in place, the salt and payload of the transactions at
    /// `positions` in each planned block's payloads record with 0x00, fixes
    /// the record's checksum and makes it durable. The plan is first written
    /// to a journal and synced; opening the log finishes a journal left by a
    /// crash, so a redaction is applied completely or (if the journal itself
    /// is torn) not at all. Doing it again changes nothing. Returns how many
    /// transactions were not redacted before.
    pub fn redact(&self, plan: &[(Location, Vec<u32>)]) -> Result<usize, SegmentError> {
        if plan.is_empty() {
            return Ok(0);
        }
        let journal = self.dir.join(REDACTION_JOURNAL);
        let bytes = encode_journal(plan);
        fs::write(&journal, &bytes).map_err(io_err(&journal))?;
        fs::File::open(&journal)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&journal))?;
        sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        let changed = self.rewrite(plan, false)?;
        fs::remove_file(&journal).map_err(io_err(&journal))?;
        sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        Ok(changed)
    }

    /// Finishes the redaction a journal describes, if one was interrupted.
    fn finish_redaction(&self) -> Result<(), SegmentError> {
        let journal = self.dir.join(REDACTION_JOURNAL);
        let data = match fs::read(&journal) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&journal)(e)),
        };
        if let Some(plan) = decode_journal(&data) {
            self.rewrite(&plan, true)?;
        }
        fs::remove_file(&journal).map_err(io_err(&journal))?;
        sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        Ok(())
    }

    /// Rewrites the planned payloads records. With `recovering`, a record
    /// whose checksum fails is rewritten anyway: a crash may have left it
    /// half rewritten, and its lengths, which locate every field, are the
    /// same in the old and the new bytes.
    fn rewrite(
        &self,
        plan: &[(Location, Vec<u32>)],
        recovering: bool,
    ) -> Result<usize, SegmentError> {
        let _guard = self.rewriting.write().unwrap_or_else(|e| e.into_inner());
        let (writes, changed) = self.rewrites(plan, recovering)?;
        self.write_all(&writes, usize::MAX)?;
        Ok(changed)
    }

    /// The new bytes of each planned record: (segment, offset, bytes), and
    /// how many transactions were not redacted before.
    fn rewrites(
        &self,
        plan: &[(Location, Vec<u32>)],
        recovering: bool,
    ) -> Result<(Vec<Rewrite>, usize), SegmentError> {
        let mut out = Vec::with_capacity(plan.len());
        let mut changed = 0;
        for (location, positions) in plan {
            let path = self.path(location.segment);
            let corrupt = |what: String| SegmentError::Corrupt {
                path: path.clone(),
                offset: location.offset,
                what,
            };
            let backend = self
                .backend(location.segment)
                .ok_or_else(|| corrupt("redaction names a segment that does not exist".into()))?;
            let mut head = [0u8; RECORD_HEADER];
            backend
                .read_at(location.offset, &mut head)
                .map_err(io_err(&path))?;
            let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
            if head[4] != KIND_PAYLOADS || len > MAX_RECORD {
                return Err(corrupt("redaction names no payloads record".into()));
            }
            let mut rec = head.to_vec();
            rec.resize(RECORD_HEADER + len, 0);
            backend
                .read_at(
                    location.offset + RECORD_HEADER as u64,
                    &mut rec[RECORD_HEADER..],
                )
                .map_err(io_err(&path))?;
            if !recovering && parse_at(&rec, 0).is_err() {
                return Err(corrupt("damaged payloads record".into()));
            }
            let positions: Vec<usize> = positions.iter().map(|&p| p as usize).collect();
            changed +=
                medledger_formats::record::redact_payloads(&mut rec[RECORD_HEADER..], &positions)
                    .map_err(|e| corrupt(format!("payloads record: {e}")))?;
            let mut crc = crc32c::crc32c(&rec[..5]);
            crc = crc32c::crc32c_append(crc, &rec[RECORD_HEADER..]);
            rec[5..9].copy_from_slice(&crc.to_le_bytes());
            out.push((location.segment, location.offset, rec));
        }
        Ok((out, changed))
    }

    /// Writes `writes` in order, stopping after `limit` bytes (a crash, in
    /// tests), then syncs every segment written to.
    fn write_all(&self, writes: &[Rewrite], limit: usize) -> Result<(), SegmentError> {
        let mut left = limit;
        let mut touched: Vec<u64> = Vec::new();
        for (segment, offset, bytes) in writes {
            let path = self.path(*segment);
            let Some(backend) = self.backend(*segment) else {
                return Err(io_err(&path)(io::Error::from(io::ErrorKind::NotFound)));
            };
            let n = bytes.len().min(left);
            backend
                .overwrite_at(*offset, &bytes[..n])
                .map_err(io_err(&path))?;
            left -= n;
            if !touched.contains(segment) {
                touched.push(*segment);
            }
            if left == 0 {
                break;
            }
        }
        for first in touched {
            if let Some(b) = self.backend(first) {
                b.sync().map_err(io_err(&self.path(first)))?;
            }
        }
        Ok(())
    }

    fn backend(&self, first: u64) -> Option<Arc<dyn Backend>> {
        self.list()
            .iter()
            .find(|(f, _)| *f == first)
            .map(|(_, b)| b.clone())
    }

    /// [`Self::redact`] cut short by a crash after `bytes` bytes of its
    /// record rewrites (or, with `journal_bytes`, while the journal itself
    /// is written, before any record is touched).
    #[cfg(test)]
    fn redact_crashing(
        &self,
        plan: &[(Location, Vec<u32>)],
        bytes: usize,
        journal_bytes: Option<usize>,
    ) {
        let journal = self.dir.join(REDACTION_JOURNAL);
        let encoded = encode_journal(plan);
        let cut = journal_bytes.unwrap_or(encoded.len()).min(encoded.len());
        fs::write(&journal, &encoded[..cut]).unwrap();
        if journal_bytes.is_some() {
            return;
        }
        let (writes, _) = self.rewrites(plan, false).unwrap();
        self.write_all(&writes, bytes).unwrap();
    }

    /// Reads the block stored at `location`.
    pub fn read(&self, location: Location) -> Result<StoredBlock, SegmentError> {
        let _guard = self.rewriting.read().unwrap_or_else(|e| e.into_inner());
        let path = self.path(location.segment);
        let found = self
            .list()
            .iter()
            .find(|(f, _)| *f == location.segment)
            .cloned();
        let Some((_, backend)) = found else {
            return Err(io_err(&path)(io::Error::new(
                io::ErrorKind::NotFound,
                "no such segment",
            )));
        };
        let corrupt = |what: &str| SegmentError::Corrupt {
            path: path.clone(),
            offset: location.offset,
            what: what.into(),
        };
        let mut head = [0u8; RECORD_HEADER];
        let mut read_record = |at: u64| -> Result<(Vec<u8>, u64), SegmentError> {
            backend.read_at(at, &mut head).map_err(io_err(&path))?;
            let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
            if len > MAX_RECORD {
                return Err(corrupt("record length out of range"));
            }
            // The body is read straight into the buffer that is returned:
            // a block record holds up to thousands of transactions, and a
            // read of one of them should not copy them all twice.
            let mut body = vec![0u8; len];
            backend
                .read_at(at + RECORD_HEADER as u64, &mut body)
                .map_err(io_err(&path))?;
            record_head(&head)
                .and_then(|_| check_crc(&head, &body))
                .map_err(|_| corrupt("damaged record"))?;
            Ok((body, at + (RECORD_HEADER + len) as u64))
        };
        let (payloads, next) = read_record(location.offset)?;
        let (block, _) = read_record(next)?;
        Ok(StoredBlock {
            location,
            payloads,
            block,
        })
    }

    /// The directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Segment first heights, ascending.
    pub fn segment_starts(&self) -> Vec<u64> {
        self.list().iter().map(|(f, _)| *f).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// A file whose unsynced bytes a simulated power cut may lose, keep in
    /// part, or replace with junk.
    #[derive(Default)]
    struct SimFile {
        state: Mutex<(Vec<u8>, usize)>,
    }

    impl Backend for SimFile {
        fn len(&self) -> io::Result<u64> {
            Ok(self.state.lock().unwrap().0.len() as u64)
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
            let s = self.state.lock().unwrap();
            let src =
                s.0.get(offset as usize..offset as usize + buf.len())
                    .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            buf.copy_from_slice(src);
            Ok(())
        }
        fn append(&self, data: &[u8]) -> io::Result<()> {
            self.state.lock().unwrap().0.extend_from_slice(data);
            Ok(())
        }
        fn overwrite_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
            let mut s = self.state.lock().unwrap();
            let at = offset as usize;
            s.0.get_mut(at..at + data.len())
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?
                .copy_from_slice(data);
            Ok(())
        }
        fn sync(&self) -> io::Result<()> {
            let mut s = self.state.lock().unwrap();
            s.1 = s.0.len();
            Ok(())
        }
        fn truncate(&self, len: u64) -> io::Result<()> {
            let mut s = self.state.lock().unwrap();
            s.0.truncate(len as usize);
            s.1 = s.0.len();
            Ok(())
        }
    }

    /// Keeps file contents in memory; the real directory only holds empty
    /// placeholders so that listing works.
    #[derive(Default)]
    struct SimFactory {
        files: Mutex<HashMap<PathBuf, Arc<SimFile>>>,
    }

    impl BackendFactory for SimFactory {
        fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn Backend>> {
            let mut files = self.files.lock().unwrap();
            if !files.contains_key(path) {
                if !create {
                    return Err(io::ErrorKind::NotFound.into());
                }
                fs::write(path, b"")?;
                files.insert(path.to_path_buf(), Arc::default());
            }
            Ok(files[path].clone())
        }
    }

    impl SimFactory {
        fn power_cut(&self, rng: &mut u64) {
            for f in self.files.lock().unwrap().values() {
                let mut s = f.state.lock().unwrap();
                let (len, synced) = (s.0.len(), s.1);
                let keep = synced + (next(rng) as usize) % (len - synced + 1);
                s.0.truncate(keep);
                match next(rng) % 3 {
                    0 => {}
                    1 => {
                        s.0.extend(std::iter::repeat_n(0u8, (next(rng) % 300) as usize))
                    }
                    _ => {
                        let junk: Vec<u8> = (0..next(rng) % 300).map(|_| next(rng) as u8).collect();
                        s.0.extend(junk);
                    }
                }
                s.1 = s.0.len().min(synced);
            }
        }
    }

    fn next(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    #[test]
    fn synced_blocks_survive_power_cuts_at_any_point() {
        let dir = tempfile::tempdir().unwrap();
        let factory = Arc::new(SimFactory::default());
        let mut rng = 0x5eed_u64;
        let mut acked: Vec<(Location, Vec<u8>, Vec<u8>)> = Vec::new();
        for _round in 0..200 {
            let opened = SegmentLog::open_with(dir.path(), factory.clone()).unwrap();
            let log = opened.log;
            // Everything acknowledged is still there, byte for byte.
            for (loc, p, b) in &acked {
                let s = log.read(*loc).unwrap();
                assert_eq!((&s.payloads, &s.block), (p, b));
            }
            let last = opened.last.map(|l| l.location);
            assert_eq!(last, acked.last().map(|a| a.0).or(last));
            let mut height = acked.len() as u64;
            for _ in 0..(next(&mut rng) % 4) {
                let p: Vec<u8> = (0..next(&mut rng) % 200)
                    .map(|_| next(&mut rng) as u8)
                    .collect();
                let b: Vec<u8> = (0..1 + next(&mut rng) % 200)
                    .map(|_| next(&mut rng) as u8)
                    .collect();
                let loc = log.append(height, &p, &b).unwrap();
                if next(&mut rng).is_multiple_of(2) {
                    log.sync().unwrap();
                    acked.push((loc, p, b));
                    height += 1;
                } else {
                    // Not acknowledged: the next power cut may drop it, so stop here.
                    break;
                }
            }
            factory.power_cut(&mut rng);
            // An unacknowledged pair that happened to survive is acknowledged
            // by the next open; record what is there now.
            let reopened = SegmentLog::open_with(dir.path(), factory.clone()).unwrap();
            if let Some(l) = reopened
                .last
                .filter(|l| acked.last().is_none_or(|a| a.0 != l.location))
            {
                acked.push((l.location, l.payloads, l.block));
            }
        }
        assert!(acked.len() > 100);
    }

    /// A real, signed block record body with no transactions.
    fn block_body(height: u64) -> Vec<u8> {
        use medledger_formats::block::{Block, BlockHeader, SealedHeader};
        use medledger_formats::bytes::Bytes;
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let header = BlockHeader {
            first_leaf: 0,
            height,
            log_root: Bytes([0; 32]),
            log_size: 0,
            prev_hash: Bytes([0; 32]),
            proposer: medledger_formats::keys::public_key(&key),
            time: 0,
            tx_count: 0,
            txs_root: Bytes([0; 32]),
            v: 1,
        };
        let block = Block {
            header: SealedHeader::seal(header, &key).unwrap(),
            txs: Vec::new(),
        };
        let mut out = Vec::new();
        medledger_formats::record::encode_block(&block, &mut out);
        out
    }

    #[test]
    fn damage_before_the_tail_is_corruption_not_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path()).unwrap().log;
        let mut locs = Vec::new();
        for h in 0..5u64 {
            locs.push(log.append(h, b"payload", &block_body(h)).unwrap());
        }
        log.sync().unwrap();
        drop(log);
        let path = dir.path().join(segment_name(0));
        let mut data = fs::read(&path).unwrap();
        data[locs[2].offset as usize + RECORD_HEADER + 1] ^= 0x10;
        fs::write(&path, &data).unwrap();
        match SegmentLog::open(dir.path()) {
            Err(SegmentError::Corrupt { offset, .. }) => assert_eq!(offset, locs[2].offset),
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("corruption before the tail was accepted"),
        }
    }

    #[test]
    fn records_hidden_in_client_bytes_do_not_make_a_torn_tail_look_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path()).unwrap().log;
        log.append(0, b"payload", &block_body(0)).unwrap();
        // A payload that carries whole, checksummed records of its own.
        let mut hidden = Vec::new();
        frame(KIND_PAYLOADS, b"", &mut hidden).unwrap();
        frame(KIND_BLOCK, b"not a block header", &mut hidden).unwrap();
        let last = log.append(1, &hidden, &block_body(1)).unwrap();
        log.sync().unwrap();
        drop(log);
        // Tear the last pair inside its payloads record's header.
        let path = dir.path().join(segment_name(0));
        let mut data = fs::read(&path).unwrap();
        data[last.offset as usize + 6] ^= 0xff;
        fs::write(&path, &data).unwrap();
        let opened = SegmentLog::open(dir.path()).unwrap();
        assert_eq!(opened.last.unwrap().location.offset, SEGMENT_HEADER);
        assert!(opened.cut > 0);
    }

    #[test]
    fn a_wrong_hint_costs_time_never_data() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path()).unwrap().log;
        let mut locs = Vec::new();
        for h in 0..4u64 {
            locs.push(log.append(h, b"payload", &block_body(h)).unwrap());
        }
        log.sync().unwrap();
        drop(log);
        let len = fs::metadata(dir.path().join(segment_name(0)))
            .unwrap()
            .len();
        let hints = [
            Some(locs[2]),
            Some(Location {
                segment: 0,
                offset: locs[2].offset + 3,
            }),
            Some(Location {
                segment: 7,
                offset: 16,
            }),
            None,
        ];
        for hint in hints {
            let opened = SegmentLog::open_hinted(dir.path(), Arc::new(FileFactory), hint).unwrap();
            assert_eq!(opened.cut, 0, "hint {hint:?}");
            assert_eq!(opened.last.unwrap().location, locs[3], "hint {hint:?}");
            assert_eq!(
                fs::metadata(dir.path().join(segment_name(0)))
                    .unwrap()
                    .len(),
                len
            );
        }
    }

    #[test]
    fn torn_tail_is_cut_back_to_the_last_whole_block() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path()).unwrap().log;
        for h in 0..3u64 {
            log.append(h, b"payload", &block_body(h)).unwrap();
        }
        log.sync().unwrap();
        drop(log);
        let path = dir.path().join(segment_name(0));
        let full = fs::read(&path).unwrap();
        let pair = 2 * RECORD_HEADER + b"payload".len() + block_body(2).len();
        // Every cut inside the last pair drops exactly that pair.
        for cut in 1..pair {
            fs::write(&path, &full[..full.len() - cut]).unwrap();
            let opened = SegmentLog::open(dir.path()).unwrap();
            assert_eq!(opened.cut, (pair - cut) as u64);
            assert_eq!(opened.last.unwrap().block, block_body(1));
            assert_eq!(
                fs::metadata(&path).unwrap().len() as usize,
                full.len() - pair
            );
        }
    }

    /// A payloads record body of `n` transactions with distinct payloads.
    fn payloads_body(height: u64, n: u32, seed: &mut u64) -> Vec<u8> {
        let mut b = height.to_le_bytes().to_vec();
        b.extend_from_slice(&n.to_le_bytes());
        for i in 0..n {
            b.extend((0..16).map(|_| 1 | next(seed) as u8));
            let payload = format!("{{\"h\":{height},\"i\":{i},\"x\":{}}}", next(seed) % 1000);
            b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            b.extend_from_slice(payload.as_bytes());
        }
        b
    }

    #[test]
    fn a_redaction_cut_short_at_any_byte_is_completed_on_open() {
        let mut seed = 0xe2a5e_u64;
        // Six blocks of four transactions; the plan erases some of three.
        let blocks: Vec<(Vec<u8>, Vec<u8>)> = (0..6)
            .map(|h| (payloads_body(h, 4, &mut seed), vec![h as u8 + 1; 40]))
            .collect();
        let positions: [(usize, Vec<u32>); 3] =
            [(1, vec![0, 3]), (2, vec![2]), (4, vec![0, 1, 2, 3])];
        let build = || {
            let dir = tempfile::tempdir().unwrap();
            let factory = Arc::new(SimFactory::default());
            let log = SegmentLog::open_with(dir.path(), factory.clone())
                .unwrap()
                .log;
            let locs: Vec<Location> = blocks
                .iter()
                .enumerate()
                .map(|(h, (p, b))| log.append(h as u64, p, b).unwrap())
                .collect();
            log.sync().unwrap();
            let plan: Vec<(Location, Vec<u32>)> = positions
                .iter()
                .map(|(h, ps)| (locs[*h], ps.clone()))
                .collect();
            (dir, factory, log, locs, plan)
        };
        // What each block's payloads must be once redacted, computed here
        // from the spans, independently of the code under test.
        let expected: Vec<Vec<u8>> = blocks
            .iter()
            .enumerate()
            .map(|(h, (p, _))| {
                let mut p = p.clone();
                let Some((_, erase)) = positions.iter().find(|(x, _)| *x == h) else {
                    return p;
                };
                let mut at = 12;
                for i in 0..4u32 {
                    let len = u32::from_le_bytes(p[at + 16..at + 20].try_into().unwrap()) as usize;
                    if erase.contains(&i) {
                        p[at..at + 16].fill(0);
                        p[at + 20..at + 20 + len].fill(0);
                    }
                    at += 20 + len;
                }
                p
            })
            .collect();
        let total: usize = positions
            .iter()
            .map(|(h, _)| blocks[*h].0.len() + RECORD_HEADER)
            .sum();
        let mut cuts: Vec<usize> = (0..=total).step_by(5).collect();
        cuts.push(total);
        for cut in cuts {
            let (dir, factory, log, locs, plan) = build();
            log.redact_crashing(&plan, cut, None);
            drop(log);
            let reopened = SegmentLog::open_with(dir.path(), factory).unwrap().log;
            assert!(!dir.path().join(REDACTION_JOURNAL).exists());
            for (h, loc) in locs.iter().enumerate() {
                let s = reopened
                    .read(*loc)
                    .unwrap_or_else(|e| panic!("cut {cut}, block {h}: {e}"));
                assert_eq!(s.payloads, expected[h], "cut {cut}, block {h}");
                assert_eq!(s.block, blocks[h].1);
            }
        }
        // A journal torn while it was written: no record was touched, and
        // none is.
        for journal_bytes in [0, 3, 11, 20] {
            let (dir, factory, log, locs, plan) = build();
            log.redact_crashing(&plan, 0, Some(journal_bytes));
            drop(log);
            let reopened = SegmentLog::open_with(dir.path(), factory).unwrap().log;
            assert!(!dir.path().join(REDACTION_JOURNAL).exists());
            for (h, loc) in locs.iter().enumerate() {
                assert_eq!(reopened.read(*loc).unwrap().payloads, blocks[h].0);
            }
        }
        // Done whole, and again: the same bytes.
        let (_dir, _factory, log, locs, plan) = build();
        assert_eq!(log.redact(&plan).unwrap(), 7);
        assert_eq!(log.redact(&plan).unwrap(), 0);
        for (h, loc) in locs.iter().enumerate() {
            assert_eq!(log.read(*loc).unwrap().payloads, expected[h]);
        }
    }
}
