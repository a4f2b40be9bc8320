//! Benchmarks of the formats crate: Merkle hashing and proofs, transaction
//! signing and verification, record decoding, checkpoints and receipts.
//!
//! Run with `cargo bench -p medledger-formats --bench formats`. Every input
//! (including the 1M-leaf tree) is built once, outside the timed closures.
//! `main` asks for 100 samples, at least 0.2 s and at most 2 s per benchmark,
//! so a full run stays well under a minute; `--sample-count`, `--min-time`
//! and `--max-time` override that.

use divan::counter::{BytesCount, ItemsCount};
use divan::{Bencher, black_box};
use ed25519_dalek::SigningKey;
use medledger_formats::block::{BLOCK_VERSION, Block, BlockHeader, SealedHeader};
use medledger_formats::bytes::Bytes;
use medledger_formats::checkpoint::Checkpoint;
use medledger_formats::keys;
use medledger_formats::merkle::{self, Hash, MemTree};
use medledger_formats::note::{NoteSigner, NoteVerifier};
use medledger_formats::receipt::TlogProof;
use medledger_formats::record;
use medledger_formats::tx::{Transaction, TxWire};
use serde_json::{Value, json};
use std::sync::LazyLock;
use std::time::Duration;

fn main() {
    divan::Divan::default()
        .sample_count(100)
        .min_time(Duration::from_millis(200))
        .max_time(Duration::from_secs(2))
        .config_with_args()
        .main();
}

/// Leaves in the large tree (not a power of two, so proofs cross its ragged right edge).
const BIG: u64 = 1_000_000;
/// Where the large tree holds a real transaction id, for the receipt benchmarks.
const RECEIPT_LEAF: u64 = 777_777;
const ORIGIN: &str = "bench.medledger.example/log";
const TIME: u64 = 1_700_000_000_000;

/// Distinct synthetic leaf hashes `0..n`.
fn leaves(n: u64) -> Vec<Hash> {
    (0..n)
        .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
        .collect()
}

/// A cheap deterministic index stream (xorshift64), so proof benchmarks do
/// not hit the same path every iteration.
fn indices(bound: u64) -> impl FnMut() -> u64 {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % bound
    }
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// A medical report payload whose JCS form is about 300 bytes.
fn report_payload(i: u64) -> Value {
    json!({
        "patient": "K7QW2MZP4XN3VB6TRD5HJ8CL2E",
        "institution": "KBC Zvezdara",
        "diagnosis": {"system": "ICD-10", "code": "J18.9"},
        "anamnesis": "Three days of productive cough, fever up to 38.9 C and right-sided pleuritic pain; crackles over the right lower lobe. SpO2 94% on air.",
        "encounter": i,
        "follow_up_days": 7
    })
}

/// The fixed medical report signed by the key of seed 1.
static REPORT: LazyLock<Transaction> = LazyLock::new(|| {
    Transaction::sign(&key(1), "medical_report", TIME, &report_payload(0)).expect("sign report")
});

/// The 1M-leaf tree, with [`REPORT`]'s id at [`RECEIPT_LEAF`].
static TREE: LazyLock<MemTree> = LazyLock::new(|| {
    let mut ls = leaves(BIG);
    ls[RECEIPT_LEAF as usize] = *REPORT.id();
    MemTree::from_leaves(&ls)
});

static LOG_SIGNER: LazyLock<NoteSigner> =
    LazyLock::new(|| NoteSigner::new(ORIGIN, key(42)).expect("valid key name"));

fn checkpoint_of(tree: &MemTree) -> Checkpoint {
    Checkpoint {
        origin: ORIGIN.into(),
        size: tree.size(),
        root: tree.root(),
        extensions: Vec::new(),
    }
}

mod merkle_tree {
    use super::*;

    /// MTH over `n` leaf hashes (a block's `txs_root`, or a log rebuild).
    #[divan::bench(args = [1024, 65536])]
    fn root(bencher: Bencher, n: u64) {
        let ls = leaves(n);
        bencher
            .counter(ItemsCount::new(n))
            .bench(|| merkle::root(black_box(&ls)));
    }

    /// RFC 9162 inclusion proof for a random leaf of the 1M-leaf MemTree.
    #[divan::bench]
    fn inclusion_proof(bencher: Bencher) {
        let tree = &*TREE;
        bencher
            .with_inputs(indices(BIG))
            .bench_local_values(|i| merkle::inclusion_proof(tree, i, BIG));
    }

    struct Inclusion {
        leaf: Hash,
        index: u64,
        proof: Vec<Hash>,
    }

    /// Checks a precomputed inclusion proof against the 1M-leaf root.
    #[divan::bench]
    fn verify_inclusion(bencher: Bencher) {
        let tree = &*TREE;
        let root = tree.root();
        let mut next = indices(BIG);
        let cases: Vec<Inclusion> = (0..256)
            .map(|_| {
                let index = next();
                Inclusion {
                    leaf: tree.get(0, index).expect("leaf is stored"),
                    index,
                    proof: merkle::inclusion_proof(tree, index, BIG).expect("proof"),
                }
            })
            .collect();
        let mut pick = indices(cases.len() as u64);
        bencher
            .with_inputs(|| &cases[pick() as usize])
            .bench_local_values(|c| {
                merkle::verify_inclusion(&c.leaf, c.index, BIG, &c.proof, &root)
            });
    }

    /// RFC 9162 consistency proof from a random earlier size to 1M.
    #[divan::bench]
    fn consistency_proof(bencher: Bencher) {
        let tree = &*TREE;
        let mut next = indices(BIG - 1);
        bencher
            .with_inputs(|| next() + 1)
            .bench_local_values(|size1| merkle::consistency_proof(tree, size1, BIG));
    }

    struct Consistency {
        size1: u64,
        root1: Hash,
        proof: Vec<Hash>,
    }

    /// Checks a precomputed consistency proof between a random size and 1M.
    #[divan::bench]
    fn verify_consistency(bencher: Bencher) {
        let tree = &*TREE;
        let root2 = tree.root();
        let mut next = indices(BIG - 1);
        let cases: Vec<Consistency> = (0..256)
            .map(|_| {
                let size1 = next() + 1;
                Consistency {
                    size1,
                    root1: merkle::range_root(tree, size1).expect("root"),
                    proof: merkle::consistency_proof(tree, size1, BIG).expect("proof"),
                }
            })
            .collect();
        let mut pick = indices(cases.len() as u64);
        bencher
            .with_inputs(|| &cases[pick() as usize])
            .bench_local_values(|c| {
                merkle::verify_consistency(c.size1, BIG, &c.proof, &c.root1, &root2)
            });
    }

    /// A transaction id: `SHA-256(0x00 || JCS(header) || signature)`.
    #[divan::bench]
    fn leaf_hash_parts(bencher: Bencher) {
        let tx = &*REPORT;
        let header = tx.header_jcs();
        let sig = &tx.signature()[..];
        bencher
            .counter(BytesCount::new(header.len() + sig.len()))
            .bench(|| merkle::leaf_hash_parts(&[black_box(header), black_box(sig)]));
    }
}

mod transaction {
    use super::*;

    /// Client side: canonicalize, commit, sign (includes 32 bytes of OS randomness).
    #[divan::bench]
    fn sign(bencher: Bencher) {
        let k = key(1);
        let payload = report_payload(0);
        bencher.bench(|| Transaction::sign(&k, "medical_report", TIME, black_box(&payload)));
    }

    /// One signature check under the rule of `sig` (ZIP-215).
    #[divan::bench]
    fn verify_signature(bencher: Bencher) {
        let tx = &*REPORT;
        bencher
            .counter(ItemsCount::new(1usize))
            .bench(|| black_box(tx).verify_signature());
    }

    /// 64 transactions through `verify_signatures` (one cofactored batch
    /// equation), by `authors` distinct keys; keys are decoded afresh each time.
    #[divan::bench(args = [1, 64])]
    fn verify_signatures_batch64(bencher: Bencher, authors: u8) {
        let keys: Vec<SigningKey> = (0..authors).map(|a| key(a.wrapping_add(100))).collect();
        let txs: Vec<Transaction> = (0..64u64)
            .map(|i| {
                let k = &keys[(i % u64::from(authors)) as usize];
                Transaction::sign(k, "medical_report", TIME + i, &report_payload(i)).expect("sign")
            })
            .collect();
        let refs: Vec<&Transaction> = txs.iter().collect();
        assert!(
            Transaction::verify_signatures(&refs)
                .iter()
                .all(Result::is_ok)
        );
        bencher
            .counter(ItemsCount::new(refs.len()))
            .bench(|| Transaction::verify_signatures(black_box(&refs)));
    }

    /// As admission runs it: 64 transactions by `authors` distinct keys
    /// through `verify_signatures_with` and a key cache that already holds
    /// every author.
    #[divan::bench(args = [1, 64])]
    fn verify_signatures_batch64_cached(bencher: Bencher, authors: u8) {
        let keys: Vec<SigningKey> = (0..authors).map(|a| key(a.wrapping_add(100))).collect();
        let txs: Vec<Transaction> = (0..64u64)
            .map(|i| {
                let k = &keys[(i % u64::from(authors)) as usize];
                Transaction::sign(k, "medical_report", TIME + i, &report_payload(i)).expect("sign")
            })
            .collect();
        let refs: Vec<&Transaction> = txs.iter().collect();
        let cache = keys::KeyCache::new(1024);
        assert!(
            Transaction::verify_signatures_with(&refs, &cache)
                .iter()
                .all(Result::is_ok)
        );
        bencher
            .counter(ItemsCount::new(refs.len()))
            .bench(|| Transaction::verify_signatures_with(black_box(&refs), &cache));
    }

    /// Admission of a ~300-byte medical report already parsed into [`TxWire`]:
    /// payload canonicalization, commitment check, header JCS and id.
    #[divan::bench]
    fn from_wire(bencher: Bencher) {
        let wire = REPORT.to_wire().expect("wire");
        let len = serde_json::to_vec(&wire).expect("json").len();
        bencher
            .counter(BytesCount::new(len))
            .with_inputs(|| wire.clone())
            .bench_local_values(Transaction::from_wire);
    }

    /// The same, starting from the JSON text of the request body.
    #[divan::bench]
    fn from_wire_json(bencher: Bencher) {
        let text = serde_json::to_string(&REPORT.to_wire().expect("wire")).expect("json");
        bencher.counter(BytesCount::of_str(&text)).bench(|| {
            let wire: TxWire = serde_json::from_str(black_box(&text)).expect("parse");
            Transaction::from_wire(wire)
        });
    }
}

mod block_record {
    use super::*;

    const TXS: u64 = 1000;

    /// Record bodies (block, payloads) of a sealed 1000-transaction block by 16 authors.
    static BODIES: LazyLock<(Vec<u8>, Vec<u8>)> = LazyLock::new(|| {
        let authors: Vec<SigningKey> = (0..16).map(|a| key(a + 10)).collect();
        let txs: Vec<Transaction> = (0..TXS)
            .map(|i| {
                let k = &authors[(i % 16) as usize];
                Transaction::sign(k, "medical_report", TIME + i, &report_payload(i)).expect("sign")
            })
            .collect();
        let ids: Vec<Hash> = txs.iter().map(|t| *t.id()).collect();
        let node = key(3);
        let header = BlockHeader {
            first_leaf: 5_000_000,
            height: 4242,
            log_root: Bytes([0xaa; 32]),
            log_size: 5_000_000 + TXS,
            prev_hash: Bytes([0xbb; 32]),
            proposer: keys::public_key(&node),
            time: TIME + TXS,
            tx_count: TXS,
            txs_root: Bytes(merkle::root(&ids)),
            v: BLOCK_VERSION,
        };
        let block = Block {
            header: SealedHeader::seal(header, &node).expect("seal"),
            txs,
        };
        let (mut body, mut payloads) = (Vec::new(), Vec::new());
        record::encode_block(&block, &mut body);
        record::encode_payloads(&block, &mut payloads);
        (body, payloads)
    });

    /// Full decode: header and every transaction re-checked for canonical
    /// JCS and commitment (signatures are not checked here).
    #[divan::bench]
    fn decode_block(bencher: Bencher) {
        let (body, payloads) = &*BODIES;
        bencher
            .counter(ItemsCount::new(TXS))
            .counter(BytesCount::new(body.len() + payloads.len()))
            .bench(|| record::decode_block(black_box(body), black_box(payloads)));
    }

    /// The log-rebuild path: transaction ids straight from the block record.
    #[divan::bench]
    fn block_tx_ids(bencher: Bencher) {
        let (body, _) = &*BODIES;
        bencher
            .counter(ItemsCount::new(TXS))
            .counter(BytesCount::new(body.len()))
            .bench(|| record::block_tx_ids(black_box(body)));
    }
}

mod checkpoint {
    use super::*;

    fn verifiers() -> Vec<NoteVerifier> {
        vec![LOG_SIGNER.verifier()]
    }

    /// Render and sign the checkpoint of the 1M-leaf log.
    #[divan::bench]
    fn sign(bencher: Bencher) {
        let cp = checkpoint_of(&TREE);
        let signer = &*LOG_SIGNER;
        bencher.bench(|| black_box(&cp).sign(signer));
    }

    /// Parse the signed note, verify its signature, parse the checkpoint.
    #[divan::bench]
    fn open(bencher: Bencher) {
        let text = checkpoint_of(&TREE)
            .sign(&LOG_SIGNER)
            .expect("sign")
            .render();
        let trusted = verifiers();
        bencher.bench(|| Checkpoint::open(black_box(&text), Some(ORIGIN), &trusted));
    }
}

mod receipt {
    use super::*;

    /// The receipt the sequencer hands out for [`REPORT`] in the 1M-leaf log:
    /// `extra` = JCS(header) || signature, 20 proof hashes.
    static TEXT: LazyLock<String> = LazyLock::new(|| {
        let tree = &*TREE;
        TlogProof {
            extra: Some(REPORT.leaf_preimage()),
            index: RECEIPT_LEAF,
            proof: merkle::inclusion_proof(tree, RECEIPT_LEAF, BIG).expect("proof"),
            checkpoint: checkpoint_of(tree).sign(&LOG_SIGNER).expect("sign"),
        }
        .render()
    });

    /// `TlogProof::parse` alone.
    #[divan::bench]
    fn parse(bencher: Bencher) {
        let text = &*TEXT;
        bencher
            .counter(BytesCount::of_str(text))
            .bench(|| TlogProof::parse(black_box(text)));
    }

    /// `TlogProof::verify` of a parsed receipt: checkpoint signature and inclusion.
    #[divan::bench]
    fn verify(bencher: Bencher) {
        let proof = TlogProof::parse(&TEXT).expect("parse");
        let leaf = merkle::leaf_hash(proof.extra.as_deref().expect("extra"));
        let trusted = vec![LOG_SIGNER.verifier()];
        bencher.bench(|| black_box(&proof).verify(&leaf, Some(ORIGIN), &trusted));
    }

    /// The offline check end to end: parse, leaf hash from `extra`, verify.
    #[divan::bench]
    fn parse_and_verify(bencher: Bencher) {
        let text = &*TEXT;
        let trusted = vec![LOG_SIGNER.verifier()];
        bencher.bench(|| {
            let proof = TlogProof::parse(black_box(text))?;
            let leaf = merkle::leaf_hash(proof.extra.as_deref().unwrap_or_default());
            proof.verify(&leaf, Some(ORIGIN), &trusted)
        });
    }
}
