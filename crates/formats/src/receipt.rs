//! C2SP transparency log proofs (<https://c2sp.org/tlog-proof>, v1): an
//! offline-verifiable receipt that a leaf is in a log, made of an optional
//! unauthenticated `extra` blob, the leaf index, an RFC 6962 inclusion proof
//! and the log's signed checkpoint (with any witness cosignatures).
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64>            (optional)
//! index <decimal>
//! <base64 hash>             (zero or more)
//!
//! <checkpoint note, verbatim>
//! ```
//!
//! Parsing is strict and canonical: `TlogProof::parse(s)?.render() == s`.

use crate::checkpoint::{Checkpoint, CheckpointError, decode_hash, parse_decimal_u64};
use crate::merkle::{self, ProofError};
use crate::note::{MAX_NOTE_SIZE, Note, NoteVerifier};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// First line of every v1 proof.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// Maximum number of inclusion proof hashes: a tree of at most 2^64 leaves
/// is at most 64 levels deep.
pub const MAX_PROOF_HASHES: usize = 64;

/// Maximum size in bytes of a rendered proof: the largest checkpoint note we
/// accept plus generous room for the header, index, hashes and extra data.
pub const MAX_TLOG_PROOF_SIZE: usize = 2 * MAX_NOTE_SIZE;

/// Errors from parsing or verifying a tlog proof.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    /// The input exceeds [`MAX_TLOG_PROOF_SIZE`].
    #[error("tlog proof is {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Size of the input in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A line before the checkpoint is malformed.
    #[error("malformed tlog proof, line {line}: {what} {reason}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// Which part is wrong (e.g. "index").
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The embedded checkpoint is malformed, not trusted or for another log.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The leaf index is not inside the checkpointed tree.
    #[error("leaf index {index} is out of range for tree size {size}")]
    IndexOutOfRange {
        /// The proof's leaf index.
        index: u64,
        /// The checkpoint's tree size.
        size: u64,
    },
    /// The inclusion proof does not bind the leaf to the checkpoint's root.
    #[error(transparent)]
    Proof(#[from] ProofError),
}

/// A parsed `c2sp.org/tlog-proof@v1` receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// Optional opaque extra data. Not authenticated: never trust it
    /// without checking it against the verified leaf.
    pub extra: Option<Vec<u8>>,
    /// Zero-based index of the leaf in the log.
    pub index: u64,
    /// RFC 6962 inclusion proof, from the leaf's sibling up to the root's child.
    pub proof: Vec<[u8; 32]>,
    /// The log's signed checkpoint, including any cosignatures.
    pub checkpoint: Note,
}

/// Splits off the next newline-terminated line of `rest`, or `None` if no
/// newline is left.
fn next_line<'a>(rest: &mut &'a str) -> Option<&'a str> {
    let (line, tail) = rest.split_once('\n')?;
    *rest = tail;
    Some(line)
}

impl TlogProof {
    /// Renders the proof text. Does not validate; for values from
    /// [`TlogProof::parse`] the result is the parsed input.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(TLOG_PROOF_HEADER);
        out.push('\n');
        if let Some(extra) = &self.extra {
            out.push_str("extra ");
            out.push_str(&BASE64.encode(extra));
            out.push('\n');
        }
        out.push_str(&format!("index {}\n", self.index));
        for hash in &self.proof {
            out.push_str(&BASE64.encode(hash));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint.render());
        out
    }

    /// Parses a proof strictly: the exact header line, an optional
    /// `extra <base64>` line, `index N` (decimal, no leading zeros), up to
    /// [`MAX_PROOF_HASHES`] lines of 32-byte canonical base64, an empty line,
    /// and a signed note whose text is a well-formed checkpoint.
    ///
    /// Nothing is verified here; see [`TlogProof::verify`].
    pub fn parse(s: &str) -> Result<Self, ReceiptError> {
        if s.len() > MAX_TLOG_PROOF_SIZE {
            return Err(ReceiptError::TooLarge {
                len: s.len(),
                max: MAX_TLOG_PROOF_SIZE,
            });
        }
        let malformed = |line, what, reason| ReceiptError::Malformed { line, what, reason };
        let mut rest = s;
        let mut line_no = 1;

        let header = next_line(&mut rest).ok_or(malformed(line_no, "header", "is missing"))?;
        if header != TLOG_PROOF_HEADER {
            return Err(malformed(
                line_no,
                "header",
                "is not c2sp.org/tlog-proof@v1",
            ));
        }

        line_no += 1;
        let mut line =
            next_line(&mut rest).ok_or(malformed(line_no, "index line", "is missing"))?;
        let mut extra = None;
        if let Some(b64) = line.strip_prefix("extra ") {
            // The empty string is the valid encoding of empty extra data;
            // it stays distinct from an absent line so rendering round-trips.
            let data = BASE64
                .decode(b64)
                .map_err(|_| malformed(line_no, "extra data", "is not canonical base64"))?;
            extra = Some(data);
            line_no += 1;
            line = next_line(&mut rest).ok_or(malformed(line_no, "index line", "is missing"))?;
        }

        let digits = line.strip_prefix("index ").ok_or(malformed(
            line_no,
            "index line",
            "does not start with \"index \"",
        ))?;
        let index = parse_decimal_u64(digits).map_err(|r| malformed(line_no, "index", r))?;

        let mut proof = Vec::new();
        loop {
            line_no += 1;
            let line = next_line(&mut rest).ok_or(malformed(
                line_no,
                "proof",
                "has no empty line before the checkpoint",
            ))?;
            if line.is_empty() {
                break;
            }
            if proof.len() >= MAX_PROOF_HASHES {
                return Err(malformed(line_no, "proof", "has more than 64 hashes"));
            }
            proof.push(decode_hash(line).map_err(|r| malformed(line_no, "proof hash", r))?);
        }

        // The rest is the checkpoint note verbatim. Check its text is a
        // checkpoint now, so a receipt that parses is structurally complete.
        let checkpoint = Note::parse(rest).map_err(CheckpointError::from)?;
        Checkpoint::from_text(&checkpoint.text)?;
        Ok(Self {
            extra,
            index,
            proof,
            checkpoint,
        })
    }

    /// Verifies the receipt offline and returns the verified checkpoint:
    ///
    /// 1. the checkpoint is signed by a trusted log key named after its
    ///    origin and, if `origin` is given, is for that origin (see
    ///    [`Checkpoint::verify_note`]);
    /// 2. `index` is below the tree size;
    /// 3. the inclusion proof binds `leaf` at `index` to the root.
    ///
    /// `leaf` is the RFC 6962 leaf hash (for example
    /// [`merkle::leaf_hash`] of the entry); computing it from the entry and
    /// `extra` is the caller's job. Witness cosignatures are not checked
    /// here.
    pub fn verify(
        &self,
        leaf: &[u8; 32],
        origin: Option<&str>,
        verifiers: &[NoteVerifier],
    ) -> Result<Checkpoint, ReceiptError> {
        let checkpoint = Checkpoint::verify_note(&self.checkpoint, origin, verifiers)?;
        if self.index >= checkpoint.size {
            return Err(ReceiptError::IndexOutOfRange {
                index: self.index,
                size: checkpoint.size,
            });
        }
        merkle::verify_inclusion(
            leaf,
            self.index,
            checkpoint.size,
            &self.proof,
            &checkpoint.root,
        )?;
        Ok(checkpoint)
    }
}
