//! File access behind a trait, so tests can lose unsynced writes the way a
//! power cut does.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// An append-only file.
pub trait Backend: Send + Sync {
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// True if the file holds no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Appends `data` at the end.
    fn append(&self, data: &[u8]) -> io::Result<()>;
    /// Overwrites bytes already in the file at `offset` (for redaction; the
    /// file never grows through it).
    fn overwrite_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Makes every appended byte durable.
    fn sync(&self) -> io::Result<()>;
    /// Cuts the file to `len` bytes and makes that durable.
    fn truncate(&self, len: u64) -> io::Result<()>;
}

/// Opens backends by path.
pub trait BackendFactory: Send + Sync {
    /// Opens (creating if asked) the file at `path`.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn Backend>>;
}

/// A real file.
pub struct FileBackend {
    file: File,
    len: Mutex<u64>,
}

impl Backend for FileBackend {
    fn len(&self) -> io::Result<u64> {
        Ok(*lock(&self.len))
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn append(&self, data: &[u8]) -> io::Result<()> {
        let mut len = lock(&self.len);
        self.file.write_all_at(data, *len)?;
        *len += data.len() as u64;
        Ok(())
    }
    fn overwrite_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let len = lock(&self.len);
        if offset + data.len() as u64 > *len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "overwrite past the end of the file",
            ));
        }
        self.file.write_all_at(data, offset)
    }
    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn truncate(&self, new_len: u64) -> io::Result<()> {
        let mut len = lock(&self.len);
        self.file.set_len(new_len)?;
        self.file.sync_all()?;
        *len = new_len;
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned length is still the last value written; keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Opens real files.
pub struct FileFactory;

impl BackendFactory for FileFactory {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn Backend>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len();
        Ok(Arc::new(FileBackend {
            file,
            len: Mutex::new(len),
        }))
    }
}

/// Makes a directory entry (a new or removed file) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
