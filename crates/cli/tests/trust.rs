//! `verify --key/--checkpoint`: a ledger that checks out on its own must also
//! be the one the auditor trusts, with nothing cut from its end.

mod common;

use common::*;
use medledger_ledger::Ledger;
use std::fs;
use std::path::Path;

fn verify_trusting(dir: &Path, key: &str, checkpoint: Option<&Path>) -> std::process::Output {
    let mut cmd = bin();
    cmd.arg("verify").arg(dir).args(["--key", key]);
    if let Some(cp) = checkpoint {
        cmd.arg("--checkpoint").arg(cp);
    }
    let out = cmd.output().expect("run verify");
    assert_no_panic(&out);
    out
}

#[test]
fn verify_against_a_trusted_key_and_checkpoint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ledger");
    let vkey = init(&dir);
    let doctor = new_doctor(&dir);
    import_ok(&dir, &[report_tx(&doctor, 1)], 1);
    let earlier = tmp.path().join("earlier");
    copy_dir(&dir, &earlier);
    import_ok(&dir, &[report_tx(&doctor, 2)], 1);
    let cp_path = tmp.path().join("cp.note");
    {
        let ledger = Ledger::open(&dir).expect("open");
        fs::write(
            &cp_path,
            ledger.store.checkpoint().expect("checkpoint").render(),
        )
        .expect("write");
    }

    let ok = verify_trusting(&dir, &vkey, Some(&cp_path));
    assert!(ok.status.success(), "{:?}", text(&ok));

    // The same ledger cut back before that checkpoint: it verifies alone, not against it.
    assert!(verify(&earlier).status.success());
    let cut = verify_trusting(&earlier, &vkey, Some(&cp_path));
    assert_eq!(cut.status.code(), Some(1));
    assert!(
        text(&cut)
            .1
            .contains("does not contain the trusted checkpoint"),
        "{:?}",
        text(&cut)
    );

    // A whole new ledger under the same origin: its own key, not the trusted one.
    let other = tmp.path().join("other");
    let other_vkey = init(&other);
    assert!(verify(&other).status.success());
    let forged = verify_trusting(&other, &vkey, None);
    assert_eq!(forged.status.code(), Some(1));
    assert!(
        text(&forged).1.contains("not an active node"),
        "{:?}",
        text(&forged)
    );
    let ok = verify_trusting(&other, &other_vkey, None);
    assert!(ok.status.success(), "{:?}", text(&ok));
}
