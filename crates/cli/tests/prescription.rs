//! e-Prescriptions through the binary: `medledger import` refuses a second
//! dispense of a single-fill prescription, and `medledger verify` refuses a
//! ledger whose block was forged (sealed with the node key, never admitted)
//! to hold one, whether the two dispenses share a block or not.

mod common;

use common::*;
use ed25519_dalek::SigningKey;
use medledger_formats::keys;
use medledger_formats::tx::Transaction;
use medledger_ledger::{Admitted, Ledger, Role, kind, now_ms, payload_rules};
use std::path::Path;

/// A ledger with a doctor and two pharmacies, and the doctor's single-fill
/// prescription committed: the keys and the prescription.
fn with_prescription(dir: &Path) -> (SigningKey, SigningKey, Transaction) {
    init(dir);
    let admin = admin_key(dir);
    let doctor = keys::generate().expect("key");
    let (a, b) = (
        keys::generate().expect("key"),
        keys::generate().expect("key"),
    );
    import_ok(
        dir,
        &[
            register_tx(&admin, &doctor),
            register_role(&admin, &a, Role::Pharmacy, None),
            register_role(&admin, &b, Role::Pharmacy, None),
        ],
        3,
    );
    let rx = Transaction::sign(
        &doctor,
        kind::PRESCRIPTION,
        now_ms(),
        &prescription_payload(0),
    )
    .expect("sign");
    import_ok(dir, std::slice::from_ref(&rx), 1);
    (a, b, rx)
}

fn dispense(pharmacy: &SigningKey, rx: &Transaction) -> Transaction {
    let id = hex::encode(rx.id());
    Transaction::sign(
        pharmacy,
        kind::DISPENSE,
        now_ms(),
        &dispense_payload(&id, 20),
    )
    .expect("sign")
}

/// Seals `txs` into the next block with the node's key and commits it,
/// without admitting them: what a faulty or hostile proposer could write.
fn forge(dir: &Path, txs: Vec<Transaction>) {
    let mut ledger = Ledger::open(dir).expect("open");
    let time = ledger.state.block_time(now_ms());
    let verdicts = txs
        .iter()
        .map(|t| payload_rules(t).expect("payload rules"))
        .collect();
    let admitted = Admitted::of(&ledger.state, &txs, verdicts);
    let block = ledger
        .state
        .seal_block(txs, time, &ledger.node_key)
        .expect("seal");
    ledger.store.commit(&block, admitted).expect("commit");
}

#[test]
fn a_second_dispense_of_a_single_fill_prescription_is_refused_on_import() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ledger");
    let (a, b, rx) = with_prescription(&dir);
    // Two pharmacies in one batch: judged in order, the second refused.
    let imp = import(
        &dir,
        &[line(&dispense(&a, &rx)), line(&dispense(&b, &rx))],
        2,
    );
    assert!(imp.for_line(1)["id"].is_string(), "{:?}", imp.results);
    let refused = imp.for_line(2);
    assert_eq!(refused["error"], "fills_exhausted", "{:?}", imp.results);
    assert_verifies(&dir);
}

#[test]
fn verify_refuses_a_forged_block_holding_a_second_dispense() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ledger");
    let (a, b, rx) = with_prescription(&dir);
    let same_block = tmp.path().join("same-block");
    copy_dir(&dir, &same_block);

    // The first fill is admitted honestly; the second is forged into the
    // next block.
    import_ok(&dir, &[dispense(&a, &rx)], 1);
    assert_verifies(&dir);
    forge(&dir, vec![dispense(&b, &rx)]);
    let stderr = assert_verify_fails(&dir);
    assert!(
        stderr.contains("the prescription allows 1 fill(s), and all have been dispensed"),
        "{stderr}"
    );

    // Both fills forged into one block: the second is refused, by position.
    forge(&same_block, vec![dispense(&a, &rx), dispense(&b, &rx)]);
    let stderr = assert_verify_fails(&same_block);
    assert!(stderr.contains("transaction 1 ("), "{stderr}");
    assert!(stderr.contains("all have been dispensed"), "{stderr}");
}
