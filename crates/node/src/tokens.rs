//! Bearer tokens for record-level reads. A token is bound to one registered
//! participant; only its SHA-256 is stored, in `DIR/tokens.jsonl` (0600), one
//! JSON object per line: `{"hash","participant","issued_ms"}` to issue,
//! `{"revoke": hash}` to revoke. The file is append-only, so the CLI can issue
//! or revoke while the node runs; the node rereads it when it changes.
//!
//! [`Tokens`] also remembers the `jti` of every client assertion the token
//! endpoint accepted, until the assertion expires, so none is used twice on
//! this node.

use medledger_formats::keys::{self, PublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// Prefix of every token, so a leaked one is recognisable in logs and scanners.
pub const TOKEN_PREFIX: &str = "mlt_";

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Line {
    Issue {
        hash: String,
        participant: PublicKey,
        issued_ms: u64,
    },
    Revoke {
        revoke: String,
    },
}

/// Path of the token file in a data directory.
pub(crate) fn token_file(dir: &Path) -> PathBuf {
    dir.join("tokens.jsonl")
}

/// Hex SHA-256 of a token.
pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn append(dir: &Path, line: &Line) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(token_file(dir))?;
    let mut text = serde_json::to_string(line).map_err(io::Error::other)?;
    text.push('\n');
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// Issues a token for `participant`; returns the token (shown once).
pub fn issue(dir: &Path, participant: PublicKey, now_ms: u64) -> io::Result<String> {
    let secret = keys::random_bytes::<32>().map_err(io::Error::other)?;
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
    append(
        dir,
        &Line::Issue {
            hash: token_hash(&token),
            participant,
            issued_ms: now_ms,
        },
    )?;
    Ok(token)
}

/// Revokes a token, given the token itself or its hash.
pub fn revoke(dir: &Path, token_or_hash: &str) -> io::Result<()> {
    let hash = if token_or_hash.starts_with(TOKEN_PREFIX) {
        token_hash(token_or_hash)
    } else {
        token_or_hash.to_owned()
    };
    append(dir, &Line::Revoke { revoke: hash })
}

/// Modification time and length of the token file when last read.
type Stamp = Option<(SystemTime, u64)>;

/// Most assertion ids remembered at once; past it, new assertions are
/// refused until old ones expire (at most [`crate::oauth::MAX_ASSERTION_S`]).
const MAX_SEEN: usize = 100_000;

/// The live token table, reloaded when the file changes, and the ids of
/// the assertions the token endpoint accepted.
pub struct Tokens {
    path: PathBuf,
    state: Mutex<(Stamp, HashMap<String, PublicKey>)>,
    /// `(participant, jti)` to the assertion's expiry, seconds.
    seen: Mutex<HashMap<(PublicKey, String), u64>>,
}

/// Why an assertion's `jti` was not taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum JtiRefusal {
    /// The same participant used it before, and that assertion is still valid.
    Replayed,
    /// Too many assertions are live at once.
    Full,
}

impl Tokens {
    /// Tokens of the data directory `dir`.
    pub fn new(dir: &Path) -> Self {
        Tokens {
            path: token_file(dir),
            state: Mutex::new((None, HashMap::new())),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Records the `jti` of an assertion by `key` that expires at `exp`
    /// (seconds), unless it was seen before and has not expired at `now`.
    pub(crate) fn take_jti(
        &self,
        key: PublicKey,
        jti: &str,
        exp: u64,
        now: u64,
    ) -> Result<(), JtiRefusal> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let id = (key, jti.to_owned());
        // An expired assertion is refused for its expiry anyway, so its id
        // can go once that is past, leeway included.
        let live = |until: u64| until + crate::oauth::LEEWAY_S >= now;
        if seen.get(&id).is_some_and(|until| live(*until)) {
            return Err(JtiRefusal::Replayed);
        }
        if seen.len() >= MAX_SEEN {
            seen.retain(|_, until| live(*until));
            if seen.len() >= MAX_SEEN {
                return Err(JtiRefusal::Full);
            }
        }
        seen.insert(id, exp);
        Ok(())
    }

    /// The participant a bearer token belongs to, if it is valid.
    pub fn lookup(&self, token: &str) -> Option<PublicKey> {
        let stamp = fs::metadata(&self.path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if stamp != st.0 {
            st.1 = fs::read_to_string(&self.path)
                .map(|t| parse(&t))
                .unwrap_or_default();
            st.0 = stamp;
        }
        st.1.get(&token_hash(token)).copied()
    }
}

fn parse(text: &str) -> HashMap<String, PublicKey> {
    let mut map = HashMap::new();
    for line in text.lines() {
        match serde_json::from_str::<Line>(line) {
            Ok(Line::Issue {
                hash, participant, ..
            }) => {
                map.insert(hash, participant);
            }
            Ok(Line::Revoke { revoke }) => {
                map.remove(&revoke);
            }
            // A torn last line from a crash while issuing: that token was never shown.
            Err(_) => {}
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_resolve_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let p = keys::public_key(&ed25519_dalek::SigningKey::from_bytes(&[1; 32]));
        let tokens = Tokens::new(dir.path());
        let t = issue(dir.path(), p, 1).unwrap();
        assert_eq!(tokens.lookup(&t), Some(p));
        assert_eq!(tokens.lookup("mlt_wrong"), None);
        let stored = fs::read_to_string(token_file(dir.path())).unwrap();
        assert!(
            !stored.contains(&t),
            "the token itself must never be stored"
        );
        revoke(dir.path(), &t).unwrap();
        assert_eq!(tokens.lookup(&t), None);
    }

    #[test]
    fn an_assertion_id_is_taken_once_until_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = Tokens::new(dir.path());
        let a = keys::public_key(&ed25519_dalek::SigningKey::from_bytes(&[1; 32]));
        let b = keys::public_key(&ed25519_dalek::SigningKey::from_bytes(&[2; 32]));
        assert_eq!(tokens.take_jti(a, "j", 100, 50), Ok(()));
        assert_eq!(tokens.take_jti(a, "j", 100, 60), Err(JtiRefusal::Replayed));
        // Another participant's ids are its own.
        assert_eq!(tokens.take_jti(b, "j", 100, 60), Ok(()));
        let later = 100 + crate::oauth::LEEWAY_S + 1;
        assert_eq!(tokens.take_jti(a, "j", later + 100, later), Ok(()));
    }
}
