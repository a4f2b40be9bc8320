//! `GET /v1/export`: a research export of one kind of record, streamed.
//!
//! The export answers as of one checkpoint, pinned when the request starts:
//! the latest signed checkpoint (size N), sent base64-encoded in the
//! `Medledger-Checkpoint` header with N in `Medledger-Log-Size`. The rows
//! are the records of the kind below leaf N whose date lies in the query's
//! days, in log order, rendered by [`medledger_health::export`]. They are
//! read from the kind index a page at a time and handed to the response
//! body through a bounded channel, so the node holds a few pages whatever
//! the size of the export, and a client that stops reading stops the walk.
//!
//! A row carries the payload's fields and the transaction's leaf, id and
//! time: never the author's key, salt or signature.
//!
//! An export is a record-level read of many patients. Before a byte of it
//! leaves, a first walk over the same rows puts each through the read
//! decision and the read's access entries are committed; the rows whose
//! patients' directives deny the purpose are then left out of the stream,
//! and their number is sent in the `Medledger-Withheld` header (never
//! whose they are).

use crate::http::access;
use crate::http::problem::Problem;
use crate::http::request::{AppState, blocking, query};
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{OriginalUri, Query as QueryParams, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use medledger_formats::checkpoint::Checkpoint;
use medledger_formats::note::Note;
use medledger_formats::tx::Transaction;
use medledger_health::export::{Export, ExportError, Format, Query};
use medledger_health::records::MEDICAL_REPORT;
use medledger_ledger::{LedgerError, Role, Store};
use medledger_store::{By, IndexError};
use serde::Deserialize;
use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The header carrying the pinned checkpoint (the signed note, base64).
pub const CHECKPOINT_HEADER: &str = "medledger-checkpoint";
/// The header carrying the pinned checkpoint's log size.
pub const LOG_SIZE_HEADER: &str = "medledger-log-size";
/// The header carrying how many rows were withheld under their patients'
/// consent directives.
pub const WITHHELD_HEADER: &str = "medledger-withheld";
/// Kind exported when the query names none.
pub(crate) const DEFAULT_KIND: &str = MEDICAL_REPORT;
/// Format of an export whose query names none.
pub(crate) const DEFAULT_FORMAT: Format = Format::Csv;

/// Leaves read from the kind index per page.
const INDEX_PAGE: usize = 16_384;
/// Transactions read from the segments at a time.
const READ_CHUNK: usize = 256;
/// Bytes of rows gathered before they are handed to the response body.
const SEND_BYTES: usize = 64 << 10;
/// Messages waiting for the client, at most.
const CHANNEL: usize = 8;
/// How long to wait for the index to catch up with a fresh checkpoint.
const INDEX_WAIT: Duration = Duration::from_secs(10);

/// Why an export could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ExportFailure {
    /// No block has been committed.
    #[error("no checkpoint yet")]
    NoCheckpoint,
    /// The stored checkpoint does not parse.
    #[error("stored checkpoint: {0}")]
    Checkpoint(String),
    /// The index has not caught up with the checkpoint.
    #[error("the index does not cover the checkpoint's {0} leaves yet")]
    IndexBehind(u64),
    /// Reading the index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Reading the ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The index lists a leaf under a kind its transaction does not have.
    #[error("the kind index lists leaf {leaf} as {kind}, but it holds a {found}")]
    WrongKind {
        /// The leaf.
        leaf: u64,
        /// The kind asked for.
        kind: &'static str,
        /// The transaction's kind.
        found: String,
    },
    /// A stored record cannot be rendered.
    #[error("leaf {leaf}: {error}")]
    Render {
        /// The leaf.
        leaf: u64,
        /// Why.
        error: ExportError,
    },
}

/// The checkpoint an export answers as of: the latest signed one, with its
/// log size, once the index covers every leaf below that size (the
/// checkpoint moves before the index does when a block commits).
pub fn pin(store: &Store) -> Result<(Note, u64), ExportFailure> {
    let note = store.checkpoint().ok_or(ExportFailure::NoCheckpoint)?;
    let size = Checkpoint::from_text(&note.text)
        .map_err(|e| ExportFailure::Checkpoint(e.to_string()))?
        .size;
    let deadline = Instant::now() + INDEX_WAIT;
    while !indexed(store, size)? {
        if Instant::now() > deadline {
            return Err(ExportFailure::IndexBehind(size));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok((note, size))
}

/// Whether the index holds every block below log size `size`.
fn indexed(store: &Store, size: u64) -> Result<bool, IndexError> {
    let Some(last) = size.checked_sub(1) else {
        return Ok(true);
    };
    let index = store.index();
    let Some(height) = index.height_of_leaf(last)? else {
        return Ok(false);
    };
    Ok(index
        .block(height)?
        .is_some_and(|b| b.first_leaf + b.tx_count >= size))
}

/// Renders the rows `export` selects among the leaves below `size`, in log
/// order, handing each to `emit` with its leaf; `emit` may stop the walk.
/// Memory stays bounded: one index page and one chunk of transactions.
pub fn rows(
    store: &Store,
    export: &Export,
    size: u64,
    mut emit: impl FnMut(u64, Vec<u8>) -> ControlFlow<()>,
) -> Result<(), ExportFailure> {
    selected(store, export, size, |tx, leaf| {
        let row = export
            .row(
                leaf,
                &hex::encode(tx.id()),
                tx.header().time,
                tx.payload_jcs(),
            )
            .map_err(|error| ExportFailure::Render { leaf, error })?;
        Ok(emit(leaf, row))
    })
}

/// Walks the transactions `export` selects among the leaves below `size`,
/// in log order, handing each to `visit` with its leaf.
fn selected(
    store: &Store,
    export: &Export,
    size: u64,
    mut visit: impl FnMut(&Transaction, u64) -> Result<ControlFlow<()>, ExportFailure>,
) -> Result<(), ExportFailure> {
    let kind = export.kind();
    let mut from = 0;
    loop {
        let page = store.index().leaves_by(By::Kind(kind), from, INDEX_PAGE)?;
        let full = page.len() == INDEX_PAGE;
        let below: Vec<u64> = page.iter().copied().take_while(|&l| l < size).collect();
        let past_end = below.len() < page.len();
        for chunk in below.chunks(READ_CHUNK) {
            for (tx, leaf, _) in store.transactions_at(chunk)? {
                let h = tx.header();
                if h.kind != kind {
                    return Err(ExportFailure::WrongKind {
                        leaf,
                        kind,
                        found: h.kind.clone(),
                    });
                }
                // A redacted record has nothing left to export.
                if tx.is_redacted() || !export.selects(tx.payload_jcs()) {
                    continue;
                }
                if visit(&tx, leaf)?.is_break() {
                    return Ok(());
                }
            }
        }
        match below.last() {
            Some(&last) if full && !past_end => from = last + 1,
            _ => return Ok(()),
        }
    }
}

/// Query of an export.
#[derive(Deserialize)]
pub(crate) struct ExportParams {
    kind: Option<String>,
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
}

fn bad_query(e: ExportError) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "bad_query", e.to_string())
}

impl ExportParams {
    fn check(self) -> Result<Export, Problem> {
        let format = match self.format.as_deref() {
            None => DEFAULT_FORMAT,
            Some(f) => f.parse().map_err(bad_query)?,
        };
        Query {
            kind: self.kind.unwrap_or_else(|| DEFAULT_KIND.to_owned()),
            from: self.from,
            to: self.to,
            format,
        }
        .check()
        .map_err(bad_query)
    }
}

fn failure_problem(e: ExportFailure) -> Problem {
    match e {
        ExportFailure::NoCheckpoint | ExportFailure::IndexBehind(_) => {
            Problem::unavailable(e.to_string())
        }
        ExportFailure::Index(e) => Problem::unavailable(e.to_string()),
        ExportFailure::Ledger(e) => crate::http::request::ledger_err(e),
        other => Problem::internal(other.to_string()),
    }
}

/// `GET /v1/export?kind=K&from=D&to=D&format=F`: the records of kind `K`
/// dated from day `from` to day `to` (both inclusive, both optional) as of
/// the latest checkpoint, streamed as CSV, NDJSON or FHIR NDJSON. Without a
/// kind it exports medical reports, without a format CSV.
pub(crate) async fn export(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    q: Result<QueryParams<ExportParams>, QueryRejection>,
) -> Result<Response, Problem> {
    let export = Arc::new(query(q)?.check()?);
    let kind = export.kind();
    let st = state.clone();
    let ex = export.clone();
    let (note, size, withheld, entries) = blocking(move || {
        let reader = access::reader(&st, &headers)?;
        match reader.participant.role {
            Role::Patient => {
                return Err(Problem::forbidden(
                    "a patient reads their own records through their history or $everything",
                ));
            }
            Role::Pharmacy => {
                return Err(Problem::forbidden(
                    "a pharmacy reads the prescriptions it fills one by one, never in bulk",
                ));
            }
            _ => {}
        }
        crate::http::request::may_read_kind(&reader.participant, kind)?;
        let store = st.log.store();
        let (note, size) = pin(store).map_err(failure_problem)?;
        let mut judge = access::Judge::new(&st, &reader);
        let mut withheld = HashSet::new();
        let mut failed = None;
        selected(store, &ex, size, |tx, leaf| match judge.admit(tx) {
            Ok(true) => Ok(ControlFlow::Continue(())),
            Ok(false) => {
                withheld.insert(leaf);
                Ok(ControlFlow::Continue(()))
            }
            Err(e) => {
                failed = Some(e);
                Ok(ControlFlow::Break(()))
            }
        })
        .map_err(failure_problem)?;
        if let Some(e) = failed {
            return Err(e);
        }
        let query = uri.path_and_query().map(|q| q.as_str().to_owned());
        Ok((note, size, withheld, judge.entries(query)?))
    })
    .await?;
    access::log(&state, entries).await?;
    let count = withheld.len();
    let store = state.log.store().clone();
    let format = export.format();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(CHANNEL);
    tokio::task::spawn_blocking(move || {
        let mut buf = export.header();
        let walked = rows(&store, &export, size, |leaf, row| {
            if withheld.contains(&leaf) {
                return ControlFlow::Continue(());
            }
            buf.extend_from_slice(&row);
            if buf.len() >= SEND_BYTES {
                let full = std::mem::replace(&mut buf, Vec::with_capacity(SEND_BYTES));
                if tx.blocking_send(Ok(full.into())).is_err() {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        match walked {
            Ok(()) if buf.is_empty() => {}
            Ok(()) => {
                let _ = tx.blocking_send(Ok(buf.into()));
            }
            Err(e) => {
                // The status is already sent: abort the body so the client
                // sees a broken transfer rather than a short export.
                tracing::error!(error = %e, "export failed while streaming");
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let b64 = base64::engine::general_purpose::STANDARD.encode(note.render());
    let mut resp = (StatusCode::OK, Body::from_stream(body)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.media_type()),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        HeaderName::from_static(CHECKPOINT_HEADER),
        HeaderValue::from_str(&b64).map_err(|e| Problem::internal(e.to_string()))?,
    );
    h.insert(HeaderName::from_static(LOG_SIZE_HEADER), size.into());
    h.insert(HeaderName::from_static(WITHHELD_HEADER), count.into());
    Ok(resp)
}
