//! The secrets a node holds: the pseudonymization authority's key (on the
//! authority's own node only) and the signing keys of institutions'
//! integration accounts, with which the node signs their FHIR writes.

use ed25519_dalek::SigningKey;
use medledger_formats::keys::{self, PublicKey};
use medledger_health::pseudonym::PseudonymKey;
use medledger_ledger::read_key_file;
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Mutex;

/// Why a secret file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Unreadable.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Readable by others.
    #[error(
        "{0}: a secret key file must be readable by its owner only (chmod 600); refusing to use it"
    )]
    Permissions(String),
    /// Malformed.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Reads a pseudonym key file, refusing one that group or others can read.
pub fn load_pseudonym_key(path: &FsPath) -> Result<PseudonymKey, SecretError> {
    let shown = || path.display().to_string();
    let io = |source| SecretError::Io {
        path: shown(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(SecretError::Permissions(shown()));
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    PseudonymKey::from_file_text(&text).map_err(|e| SecretError::Format {
        path: shown(),
        reason: e.to_string(),
    })
}

/// Signing keys the node holds for integration accounts (participants that
/// write through `/fhir`), one key file each in a directory. The directory
/// is read again when a key is missing, so an account added while the node
/// runs works at once.
pub struct Signers {
    dir: Option<PathBuf>,
    keys: Mutex<HashMap<PublicKey, SigningKey>>,
}

impl Signers {
    /// Keys from `dir` (which may not exist yet).
    pub fn new(dir: Option<PathBuf>) -> Self {
        let s = Signers {
            dir,
            keys: Mutex::new(HashMap::new()),
        };
        s.reload();
        s
    }

    fn reload(&self) {
        let Some(dir) = &self.dir else { return };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut found = HashMap::new();
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some("key") {
                continue;
            }
            match read_key_file(&path) {
                Ok(k) => {
                    found.insert(keys::public_key(&k), k);
                }
                Err(err) => {
                    tracing::warn!(path = %path.display(), %err, "skipping integration key")
                }
            }
        }
        *self.keys.lock().unwrap_or_else(|e| e.into_inner()) = found;
    }

    /// The key of `participant`, if this node holds it.
    pub fn get(&self, participant: &PublicKey) -> Option<SigningKey> {
        let held = |s: &Self| {
            s.keys
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(participant)
                .cloned()
        };
        held(self).or_else(|| {
            self.reload();
            held(self)
        })
    }
}

/// The health services' part of the node's state.
pub struct Health {
    /// The authority's key, on a node that serves `POST /v1/pseudonyms`.
    pub pseudonym_key: Option<PseudonymKey>,
    /// Keys of integration accounts.
    pub signers: Signers,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            pseudonym_key: None,
            signers: Signers::new(None),
        }
    }
}
