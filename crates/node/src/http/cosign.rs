//! Every node is a C2SP tlog-cosignature cosigner (Ed25519, type `0x04`)
//! with its node key: it cosigns a checkpoint of the ledger's origin only
//! if its own log, at that size, has that root.
//!
//! - `GET /v1/cosignature?size=N&root=HEX`: this node's cosignature line
//!   over the checkpoint body `(origin, N, root)`.
//! - `GET /v1/transactions/{id}/receipt?cosigned=true`: the receipt with
//!   this node's cosignature and those of its peers that agree.
//!
//! The node key also signs checkpoints and blocks. A cosignature message
//! starts with `cosignature/v1\ntime `, which neither can: a checkpoint's
//! second line is a bare number, and block messages start with
//! `medledger/block/v1\n`. So one key serves both without ambiguity.

use crate::http::problem::Problem;
use crate::http::request::{Shared, blocking, ledger_err, parse_u64, query};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ed25519_dalek::SigningKey;
use medledger_formats::bytes::Bytes as Hex;
use medledger_formats::checkpoint::Checkpoint;
use medledger_formats::cosignature::{CosignatureError, CosignatureVerifier, Cosigner};
use medledger_formats::merkle::{self, Hash};
use medledger_formats::note::{MAX_SIGNATURES, Note, NoteError, NoteSignature};
use medledger_ledger::{Store, now_ms};
use serde::Deserialize;
use std::time::Duration;

/// How long one peer may take to answer, status and cosignature together.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest answer read from a peer's `/v1/cosignature` (one line is ~150 bytes).
const MAX_LINE_BYTES: usize = 4 << 10;

/// Largest answer read from a peer's `/v1/status` (it holds one checkpoint).
const MAX_STATUS_BYTES: usize = 64 << 10;

/// Why the node's cosigner cannot be set up.
#[derive(Debug, thiserror::Error)]
#[error("cosigner name {name:?}: {source}")]
pub struct CosignerNameError {
    /// The name that was refused.
    pub name: String,
    /// Why.
    pub source: CosignatureError,
}

/// The cosigner name a node uses unless `cosigner_name` is configured:
/// `<origin>/cosigner/<first 16 hex digits of the node public key>`.
pub(crate) fn default_name(origin: &str, key: &SigningKey) -> String {
    let public = hex::encode(key.verifying_key().as_bytes());
    format!("{origin}/cosigner/{}", &public[..16])
}

/// The node's cosigner: its node key under `name`, or under the default
/// name (`<origin>/cosigner/<key prefix>`) if `name` is `None`. Refuses a
/// name that is not a valid note key name (empty, or with whitespace or `+`).
pub fn node_cosigner(
    origin: &str,
    key: &SigningKey,
    name: Option<&str>,
) -> Result<Cosigner, CosignerNameError> {
    let name = name.map_or_else(|| default_name(origin, key), str::to_owned);
    Cosigner::new(&name, key.clone()).map_err(|source| CosignerNameError { name, source })
}

/// The root of this node's log at `size`, or `None` if the log is smaller.
///
/// At the current size this is the root in the last block header, which the
/// node checked when it applied the block. Below it, the stored subtree
/// hashes give the root, and a consistency proof to the last header's root
/// must verify before it is believed: derived files can rot.
pub(crate) fn root_at(store: &Store, size: u64) -> Result<Option<Hash>, Problem> {
    let Some(last) = store.last() else {
        return Ok(None);
    };
    let head = last.header();
    if size > head.log_size {
        return Ok(None);
    }
    if size == head.log_size {
        return Ok(Some(head.log_root.0));
    }
    let proof = store.consistency(size, head.log_size).map_err(ledger_err)?;
    let root = merkle::range_root(&*store.tree(), size)
        .map_err(|e| Problem::unavailable(format!("log root at size {size}: {e}")))?;
    merkle::verify_consistency(size, head.log_size, &proof, &root, &head.log_root.0).map_err(
        |e| {
            Problem::unavailable(format!(
                "stored subtree hashes disagree with the last block at size {size}: {e}"
            ))
        },
    )?;
    Ok(Some(root))
}

/// The unsigned checkpoint note `(origin, size, root)` that cosigners sign.
fn checkpoint_note(origin: &str, size: u64, root: Hash) -> Note {
    Note {
        text: Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions: Vec::new(),
        }
        .to_text(),
        sigs: Vec::new(),
    }
}

/// The current time as a cosignature timestamp (POSIX seconds).
fn now_secs() -> u64 {
    now_ms() / 1000
}

fn cosign_now(cosigner: &Cosigner, note: &Note) -> Result<NoteSignature, Problem> {
    cosigner
        .cosign(note, now_secs())
        .map_err(|e| Problem::internal(format!("cosigning: {e}")))
}

fn bad_query(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "bad_query", detail)
}

/// The query of `GET /v1/cosignature`, parsed by hand for clear errors.
#[derive(Deserialize)]
pub(crate) struct CosignatureQuery {
    size: Option<String>,
    root: Option<String>,
}

/// `GET /v1/cosignature?size=N&root=HEX`.
pub(crate) async fn cosignature(
    State(state): State<Shared>,
    q: Result<Query<CosignatureQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let q = query(q)?;
    let size =
        parse_u64("size", q.size.as_deref())?.ok_or_else(|| bad_query("size is required"))?;
    if size == 0 {
        return Err(bad_query("size must be at least 1"));
    }
    let root = q.root.ok_or_else(|| bad_query("root is required"))?;
    let root = Hex::<32>::parse_hex(&root)
        .map_err(|e| bad_query(format!("root must be 64 lowercase hex digits: {e}")))?
        .0;
    let store = state.log.store().clone();
    let (ours, current) = blocking(move || {
        let current = store.last().map_or(0, |l| l.header().log_size);
        Ok((root_at(&store, size)?, current))
    })
    .await?;
    match ours {
        None => Err(Problem::new(
            StatusCode::NOT_FOUND,
            "not_yet",
            format!("this node's log has {current} entries, fewer than {size}; ask again later"),
        )),
        Some(ours) if ours != root => Err(Problem::new(
            StatusCode::CONFLICT,
            "split_view",
            format!(
                "at size {size} this node's log has root {}, not {}",
                hex::encode(ours),
                hex::encode(root)
            ),
        )),
        Some(_) => {
            let note = checkpoint_note(state.log.store().origin(), size, root);
            let line = cosign_now(&state.cosigner, &note)?.to_line();
            Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], line).into_response())
        }
    }
}

/// Adds this node's cosignature and its peers' to `note`, a checkpoint of
/// this node's log. A peer that is down, slow, disagrees (`404 not_yet`,
/// `409 split_view`) or answers something that does not verify is left
/// out; it never fails the caller.
pub(crate) async fn cosign_with_peers(state: &Shared, note: &mut Note) -> Result<(), Problem> {
    let cp = Checkpoint::from_text(&note.text)
        .map_err(|e| Problem::internal(format!("own checkpoint: {e}")))?;
    let own = cosign_now(&state.cosigner, note)?;
    add_once(note, own);
    let peers: Vec<String> = state
        .peers
        .read()
        .map(|p| p.clone())
        .unwrap_or_else(|poisoned| poisoned.into_inner().clone());
    if peers.is_empty() {
        return Ok(());
    }
    let http = match reqwest::Client::builder()
        .connect_timeout(PEER_TIMEOUT)
        .timeout(PEER_TIMEOUT)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "no HTTP client for peers; cosigning alone");
            return Ok(());
        }
    };
    let body = Note {
        text: note.text.clone(),
        sigs: Vec::new(),
    };
    let fetches = peers.iter().map(|peer| {
        let (http, body, cp) = (&http, &body, &cp);
        async move {
            let got = tokio::time::timeout(PEER_TIMEOUT, from_peer(http, peer, body, cp)).await;
            match got {
                Ok(Ok(sig)) => Some(sig),
                Ok(Err(e @ PeerError::Status { status: 409, .. })) => {
                    // The peer holds another root at this size.
                    tracing::warn!(
                        %peer,
                        size = cp.size,
                        error = %e,
                        "split view: the peer disagrees with this node's checkpoint"
                    );
                    None
                }
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "peer cosignature left out");
                    None
                }
                Err(_) => {
                    tracing::info!(%peer, "peer cosignature left out: no answer in time");
                    None
                }
            }
        }
    });
    for sig in futures_util::future::join_all(fetches)
        .await
        .into_iter()
        .flatten()
    {
        add_once(note, sig);
    }
    Ok(())
}

/// Appends `sig` unless the note already has a line of that key (a peer
/// list that names this node, or one node twice) or is full.
fn add_once(note: &mut Note, sig: NoteSignature) {
    let seen = note
        .sigs
        .iter()
        .any(|s| s.name == sig.name && s.key_id == sig.key_id);
    if !seen && note.sigs.len() < MAX_SIGNATURES {
        note.sigs.push(sig);
    }
}

/// Why a peer's cosignature was left out.
#[derive(Debug, thiserror::Error)]
enum PeerError {
    /// The request failed.
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The peer answered with an error status (404 `not_yet`, 409 `split_view`, ...).
    #[error("{what} answered {status}")]
    Status {
        /// Which endpoint.
        what: &'static str,
        /// The status.
        status: u16,
    },
    /// The answer is too large or not what the endpoint returns.
    #[error("{0}")]
    Malformed(String),
    /// The line is not a valid cosignature of the peer's advertised key.
    #[error(transparent)]
    Cosignature(#[from] CosignatureError),
    /// The line is not a note signature line.
    #[error("not a signature line: {0}")]
    Line(#[from] NoteError),
}

/// A peer's cosignature of `body`, checked against the cosigner vkey the
/// peer advertises in `/v1/status`.
///
/// The line is verified here, not just shaped, because a client that trusts
/// the peer's key rejects the whole receipt when a line under that key does
/// not verify (a bad line is a forgery, not an absence). The advertised key
/// is not authenticated, so this check only keeps broken lines out; whether
/// the key is trusted is for the receipt's verifier to decide.
async fn from_peer(
    http: &reqwest::Client,
    peer: &str,
    body: &Note,
    cp: &Checkpoint,
) -> Result<NoteSignature, PeerError> {
    let base = peer.trim().trim_end_matches('/');
    let status = http.get(format!("{base}/v1/status")).send();
    let line = http
        .get(format!("{base}/v1/cosignature"))
        .query(&[
            ("size", cp.size.to_string()),
            ("root", hex::encode(cp.root)),
        ])
        .send();
    let (status, line) = tokio::join!(status, line);
    let line = read_ok("cosignature", line?, MAX_LINE_BYTES).await?;
    let status = read_ok("status", status?, MAX_STATUS_BYTES).await?;
    let vkey = serde_json::from_slice::<serde_json::Value>(&status)
        .ok()
        .and_then(|s| s["cosigner_vkey"].as_str().map(str::to_owned))
        .ok_or_else(|| PeerError::Malformed("status has no cosigner_vkey".into()))?;
    let verifier = CosignatureVerifier::parse(&vkey)?;
    let line = std::str::from_utf8(&line)
        .map_err(|_| PeerError::Malformed("cosignature is not UTF-8".into()))?;
    let mut signed = Note::parse(&format!("{}\n{line}", body.text))?;
    if signed.sigs.len() != 1 {
        return Err(PeerError::Malformed(format!(
            "{} signature lines instead of one",
            signed.sigs.len()
        )));
    }
    match verifier.verify(&signed)? {
        Some(_) => Ok(signed.sigs.remove(0)),
        None => Err(PeerError::Malformed(format!(
            "the line is not from the advertised cosigner {}",
            verifier.name()
        ))),
    }
}

/// The body of a 2xx answer, at most `max` bytes.
async fn read_ok(
    what: &'static str,
    mut resp: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, PeerError> {
    if !resp.status().is_success() {
        return Err(PeerError::Status {
            what,
            status: resp.status().as_u16(),
        });
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if out.len() + chunk.len() > max {
            return Err(PeerError::Malformed(format!(
                "{what} answer exceeds {max} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[9; 32])
    }

    #[test]
    fn default_name_is_origin_and_key_prefix() {
        let public = hex::encode(key().verifying_key().as_bytes());
        let c = node_cosigner("example.org/log", &key(), None).unwrap();
        assert_eq!(
            c.verifier().name(),
            format!("example.org/log/cosigner/{}", &public[..16])
        );
        let named = node_cosigner("example.org/log", &key(), Some("node1.example.org")).unwrap();
        assert_eq!(named.verifier().name(), "node1.example.org");
        assert!(named.verifier().to_vkey().starts_with("node1.example.org+"));
    }

    #[test]
    fn invalid_cosigner_names_are_refused_by_name() {
        for bad in ["", "has space", "plus+sign"] {
            let Err(e) = node_cosigner("example.org/log", &key(), Some(bad)) else {
                panic!("{bad:?} was accepted");
            };
            assert_eq!(e.name, bad);
            assert!(e.to_string().starts_with("cosigner name "), "{e}");
        }
    }

    #[test]
    fn a_line_is_added_once_per_key() {
        let c = node_cosigner("example.org/log", &key(), None).unwrap();
        let mut note = checkpoint_note("example.org/log", 3, [1; 32]);
        let a = c.cosign(&note, 10).unwrap();
        let b = c.cosign(&note, 11).unwrap();
        add_once(&mut note, a.clone());
        add_once(&mut note, b);
        assert_eq!(note.sigs, vec![a]);
        assert_eq!(c.verifier().verify(&note).unwrap(), Some(10));
    }
}
