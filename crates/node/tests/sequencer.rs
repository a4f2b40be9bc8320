//! The sequencer under concurrent callers: every acknowledged transaction has
//! a receipt that verifies offline, duplicates are refused even while in
//! flight, and everything survives a restart.

use ed25519_dalek::SigningKey;
use medledger_formats::keys;
use medledger_formats::tx::Transaction;
use medledger_ledger::{Ledger, RegisterPayload, Rejection, Role, kind, now_ms, read_key_file};
use medledger_node::{Sequencer, SequencerConfig, SubmitError};
use serde_json::json;

fn setup() -> (tempfile::TempDir, Sequencer, Vec<SigningKey>) {
    let dir = tempfile::tempdir().unwrap();
    Ledger::init(dir.path(), "example.org/seq", "Test").unwrap();
    let admin = read_key_file(&dir.path().join("admin.key")).unwrap();
    let seq = Sequencer::start(
        Ledger::open(dir.path()).unwrap(),
        SequencerConfig::default(),
    );
    let doctors: Vec<SigningKey> = (0..4).map(|_| keys::generate().unwrap()).collect();
    let regs = doctors
        .iter()
        .map(|d| {
            let p = RegisterPayload {
                key: keys::public_key(d),
                role: Role::Doctor,
                institution: "Test".into(),
                label: String::new(),
                patient: None,
                cluster: None,
            };
            Transaction::sign(
                &admin,
                kind::REGISTER,
                now_ms(),
                &serde_json::to_value(p).unwrap(),
            )
            .unwrap()
        })
        .collect();
    for r in seq.submit(regs) {
        r.unwrap();
    }
    (dir, seq, doctors)
}

fn report(key: &SigningKey, i: usize) -> Transaction {
    Transaction::sign(
        key,
        kind::MEDICAL_REPORT,
        now_ms(),
        &json!({
            "patient": medledger_health::pseudonym::synthetic(i as u64),
            "institution": "Test",
            "encounter_date": "2026-11-24",
            "diagnoses": ["J10.1"],
        }),
    )
    .unwrap()
}

#[test]
fn concurrent_submissions_all_get_verifying_receipts() {
    let (dir, seq, doctors) = setup();
    let verifier = seq.store().verifier();
    let receipts: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let seq = &seq;
                let doctors = &doctors;
                s.spawn(move || {
                    let mut out = Vec::new();
                    for round in 0..20 {
                        let txs = (0..10)
                            .map(|i| report(&doctors[t % 4], t * 1000 + round * 10 + i))
                            .collect();
                        out.extend(seq.submit(txs));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(receipts.len(), 1600);
    let mut leaves = std::collections::HashSet::new();
    for r in &receipts {
        let r = r.as_ref().unwrap();
        assert!(leaves.insert(r.leaf), "leaf {} handed out twice", r.leaf);
        let cp = r
            .proof
            .verify(
                &r.id,
                Some("example.org/seq"),
                std::slice::from_ref(&verifier),
            )
            .unwrap();
        assert!(cp.size > r.leaf);
        // The receipt text round-trips and still verifies.
        let text = r.proof.render();
        let parsed = medledger_formats::receipt::TlogProof::parse(&text).unwrap();
        parsed
            .verify(&r.id, None, std::slice::from_ref(&verifier))
            .unwrap();
    }
    let blocks = seq.store().last().unwrap().header().height;
    assert!(
        blocks < 1600,
        "group commit should share blocks between transactions"
    );
    seq.shutdown().unwrap();

    let ledger = Ledger::open(dir.path()).unwrap();
    assert_eq!(ledger.state.tip().log.size(), 1 + 4 + 1600);
    for r in receipts.iter().take(50) {
        let r = r.as_ref().unwrap();
        let (tx, leaf, _) = ledger.store.transaction(&r.id).unwrap().unwrap();
        assert_eq!(leaf, r.leaf);
        assert_eq!(tx.id(), &r.id);
    }
}

#[test]
fn duplicate_is_refused_even_while_in_flight() {
    let (_dir, seq, doctors) = setup();
    let tx = report(&doctors[0], 1);
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| seq.submit(vec![tx.clone()])))
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert_eq!(
        results
            .iter()
            .filter(|r| matches!(r, Err(SubmitError::Rejected(Rejection::Duplicate))))
            .count(),
        3
    );
    // And after it is committed.
    let again = seq.submit(vec![tx]);
    assert!(matches!(
        again[0],
        Err(SubmitError::Rejected(Rejection::Duplicate))
    ));
    seq.shutdown().unwrap();
}

#[test]
fn each_transaction_in_a_batch_gets_its_own_result() {
    let (_dir, seq, doctors) = setup();
    let stranger = keys::generate().unwrap();
    let mut forged = report(&doctors[1], 7).to_wire().unwrap();
    forged.signature.0[3] ^= 1;
    let txs = vec![
        report(&doctors[0], 1),
        Transaction::from_wire(forged).unwrap(),
        report(&stranger, 2),
        report(&doctors[2], 3),
    ];
    let r = seq.submit(txs);
    assert!(r[0].is_ok());
    assert!(matches!(
        r[1],
        Err(SubmitError::Rejected(Rejection::BadSignature))
    ));
    assert!(matches!(
        r[2],
        Err(SubmitError::Rejected(Rejection::UnknownAuthor))
    ));
    assert!(r[3].is_ok());
    seq.shutdown().unwrap();
}

#[test]
fn small_submissions_are_signature_checked_together_and_apart() {
    let (_dir, seq, doctors) = setup();
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..16)
            .map(|i| {
                let seq = &seq;
                let doctors = &doctors;
                s.spawn(move || {
                    let tx = report(&doctors[i % 4], 100 + i);
                    let tx = if i % 5 == 0 {
                        let mut w = tx.to_wire().unwrap();
                        w.signature.0[0] ^= 1;
                        Transaction::from_wire(w).unwrap()
                    } else {
                        tx
                    };
                    (i, seq.submit(vec![tx]).remove(0))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, r) in results {
        if i % 5 == 0 {
            assert!(
                matches!(r, Err(SubmitError::Rejected(Rejection::BadSignature))),
                "{i}: {r:?}"
            );
        } else {
            assert!(r.is_ok(), "{i}: {r:?}");
        }
    }
    seq.shutdown().unwrap();
}
