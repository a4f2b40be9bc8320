//! `medledger backup` and `medledger restore`.
//!
//! A backup is a directory holding the ledger's segment files and
//! `ledger.json`: everything else in a data directory (the index, the
//! stored subtrees) is derived and rebuilt when the ledger opens. It can
//! be taken while the node serves writes. Segments grow at their end and
//! change before it only where a redaction erased a payload, so each backup
//! writes, per segment, the bytes past what the backup already holds and
//! the ranges that differ, and stops at a block boundary: with `--url`, at the block that
//! ends the node's signed checkpoint (so nothing the node could still lose
//! in a crash is copied), else at the last whole block. The result is
//! verified, every hash and signature, before the command reports success.
//!
//! `restore` verifies a backup against a key (and a checkpoint) the
//! operator trusts before it writes anything, then lays it out as a new
//! data directory and opens it, which rebuilds the index.

use anyhow::{Context, Result, bail};
use clap::Args;
use medledger_client::Client;
use medledger_formats::record::decode_block_header;
use medledger_ledger::{Ledger, verify_dir};
use medledger_store::{SEGMENT_HEADER, list_segments, segment_name, walk};
use serde_json::json;
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The node's checkpoint the backup was cut at, as a signed note.
const CHECKPOINT_FILE: &str = "checkpoint";

#[derive(Args)]
pub struct BackupArgs {
    /// The node's data directory (the node may be running).
    #[arg(long, default_value = "medledger-data")]
    data_dir: PathBuf,
    /// The backup directory; created if missing, else brought up to date.
    #[arg(long)]
    out: PathBuf,
    /// The running node's URL: the backup stops at its signed checkpoint,
    /// which is kept in the backup.
    #[arg(long, requires = "vkey")]
    url: Option<String>,
    /// The node's verifier key, to check its checkpoint.
    #[arg(long)]
    vkey: Option<String>,
    /// Also copy the node's private key (node.key), so that the restored
    /// node is the same node. Keep such a backup as secret as the key.
    #[arg(long)]
    include_node_key: bool,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// The backup directory.
    #[arg(long)]
    from: PathBuf,
    /// The data directory to create; it must not exist or be empty.
    #[arg(long)]
    data_dir: PathBuf,
    /// The node verifier key you trust: the backup's genesis must name it.
    #[arg(long)]
    key: String,
    /// A signed checkpoint you trust: the backup must contain it. Without
    /// it, the checkpoint kept in the backup (if any) is checked.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
}

/// One segment as read and checked: its name and its whole blocks.
struct Cut {
    name: String,
    data: Vec<u8>,
}

/// The whole blocks of each segment in `dir`, up to the block whose log
/// size is `limit` (all whole blocks without one).
fn cuts(dir: &Path, limit: Option<u64>) -> Result<(Vec<Cut>, u64)> {
    let segments = list_segments(&dir.join("segments"))?;
    let count = segments.len();
    let mut out = Vec::new();
    let mut size = 0;
    for (i, (first, path)) in segments.into_iter().enumerate() {
        let data = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut end = SEGMENT_HEADER;
        let mut reached = false;
        let w = walk(first, &data, SEGMENT_HEADER as usize, |pair| {
            if reached {
                return;
            }
            let Ok(h) = decode_block_header(pair.block) else {
                reached = true;
                return;
            };
            let h = h.header();
            if limit.is_some_and(|l| h.log_size > l) {
                reached = true;
                return;
            }
            end = pair.location.offset
                + (pair.payloads.len() + pair.block.len()) as u64
                + 2 * medledger_store::RECORD_HEADER as u64;
            size = h.log_size;
            reached = limit == Some(h.log_size);
        });
        if let Some((offset, what, followed)) = w.damage
            && !reached
            && (followed || i + 1 < count)
        {
            bail!(
                "{} is damaged at byte {offset} ({what}): run `medledger verify` on the node",
                path.display()
            );
        }
        let mut data = data;
        data.truncate(end as usize);
        out.push(Cut {
            name: segment_name(first),
            data,
        });
        if reached {
            break;
        }
    }
    if let Some(l) = limit
        && size != l
    {
        bail!("the data directory holds {size} leaves, short of the node's checkpoint ({l})");
    }
    Ok((out, size))
}

/// Brings the backup's copy `to` in line with `cut`: the bytes past its
/// length are appended, and ranges of it that differ (payloads a redaction
/// erased since the last backup) are rewritten in place. Returns the bytes
/// written.
fn copy_segment(cut: &Cut, to: &Path) -> Result<u64> {
    const CHUNK: usize = 1 << 20;
    let have = fs::read(to).unwrap_or_default();
    if have.len() > cut.data.len() {
        bail!(
            "{} in the backup is longer than the node's segment: it belongs to another ledger",
            to.display()
        );
    }
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(to)
        .with_context(|| format!("opening {}", to.display()))?;
    let mut written = 0u64;
    for (n, (old, new)) in have.chunks(CHUNK).zip(cut.data.chunks(CHUNK)).enumerate() {
        let new = &new[..old.len()];
        if old != new {
            file.seek(SeekFrom::Start((n * CHUNK) as u64))?;
            file.write_all(new)?;
            written += old.len() as u64;
        }
    }
    file.seek(SeekFrom::Start(have.len() as u64))?;
    file.write_all(&cut.data[have.len()..])?;
    written += (cut.data.len() - have.len()) as u64;
    if written > 0 {
        file.sync_all()?;
    }
    Ok(written)
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    Ok(())
}

/// `medledger backup`.
pub fn backup(a: BackupArgs) -> Result<ExitCode> {
    let checkpoint = match (&a.url, &a.vkey) {
        (Some(url), Some(vkey)) => {
            let client = Client::from_vkey(url, vkey).context("--vkey")?;
            Some(client.checkpoint().context("the node's checkpoint")?)
        }
        _ => None,
    };
    let limit = checkpoint.as_ref().map(|c| c.checkpoint.size);
    let (cuts, size) = cuts(&a.data_dir, limit)?;
    let segs = a.out.join("segments");
    fs::create_dir_all(&segs).with_context(|| format!("creating {}", segs.display()))?;
    let (mut copied, mut kept) = (0u64, 0usize);
    for cut in &cuts {
        let n = copy_segment(cut, &segs.join(&cut.name))?;
        copied += n;
        kept += usize::from(n == 0);
    }
    let meta = fs::read(a.data_dir.join("ledger.json")).context("reading ledger.json")?;
    write_file(&a.out.join("ledger.json"), &meta)?;
    if a.include_node_key {
        let key = fs::read(a.data_dir.join("node.key")).context("reading node.key")?;
        write_file(&a.out.join("node.key"), &key)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(a.out.join("node.key"), fs::Permissions::from_mode(0o600))?;
        }
    }
    // A cluster node's place (its id, address and trusted peers): the
    // restored node rejoins as itself.
    let place = a.data_dir.join(medledger_node::ClusterFile::NAME);
    if place.exists() {
        let text = fs::read(&place).with_context(|| format!("reading {}", place.display()))?;
        write_file(&a.out.join(medledger_node::ClusterFile::NAME), &text)?;
    }
    if let Some(c) = &checkpoint {
        write_file(&a.out.join(CHECKPOINT_FILE), c.note.as_bytes())?;
    }
    medledger_store::sync_dir(&segs)?;
    medledger_store::sync_dir(&a.out)?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let report = verify_dir(&a.out, threads, |_| {}).context("the backup does not verify")?;
    println!(
        "{}",
        json!({
            "log_size": size,
            "verified_transactions": report.transactions,
            "segments": cuts.len(),
            "segments_unchanged": kept,
            "bytes_copied": copied,
            "checkpoint": checkpoint.map(|c| c.note),
        })
    );
    Ok(ExitCode::SUCCESS)
}

/// `medledger restore`.
pub fn restore(a: RestoreArgs) -> Result<ExitCode> {
    if fs::read_dir(&a.data_dir).is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "{} is not empty: restore makes a new data directory",
            a.data_dir.display()
        );
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let report = verify_dir(&a.from, threads, |_| {}).context("the backup does not verify")?;
    let kept = a.from.join(CHECKPOINT_FILE);
    let checkpoint = a
        .checkpoint
        .clone()
        .or_else(|| kept.exists().then_some(kept));
    crate::check_trust(&report, Some(&a.key), checkpoint.as_deref())
        .context("the backup is not the ledger you trust")?;
    let segs = a.data_dir.join("segments");
    fs::create_dir_all(&segs)?;
    for (first, path) in list_segments(&a.from.join("segments"))? {
        fs::copy(&path, segs.join(segment_name(first)))
            .with_context(|| format!("copying {}", path.display()))?;
    }
    for name in ["ledger.json", "node.key", medledger_node::ClusterFile::NAME] {
        let from = a.from.join(name);
        if from.exists() {
            fs::copy(&from, a.data_dir.join(name))?;
        }
    }
    // Opening rebuilds the index; it needs the node's key, which a backup
    // holds only when taken with --include-node-key.
    let size = match a.data_dir.join("node.key").exists() {
        true => {
            // A cluster node's ledger opens as one: its key proposes only
            // once the ledger lists it as an active node.
            let cluster = a.data_dir.join(medledger_node::ClusterFile::NAME).exists();
            let ledger = if cluster {
                Ledger::open_cluster(&a.data_dir)
            } else {
                Ledger::open(&a.data_dir)
            }
            .context("opening the restored ledger")?;
            ledger.store.last().map_or(0, |h| h.header().log_size)
        }
        false => {
            eprintln!(
                "the backup holds no node key: put this node's key in {} before `serve`",
                a.data_dir.join("node.key").display()
            );
            report.block_roots.last().map_or(0, |(size, _)| *size)
        }
    };
    println!(
        "{}",
        json!({
            "data_dir": a.data_dir,
            "log_size": size,
            "verified_transactions": report.transactions,
            "checkpoint_checked": checkpoint.is_some(),
            "node_key": a.data_dir.join("node.key").exists(),
        })
    );
    Ok(ExitCode::SUCCESS)
}
