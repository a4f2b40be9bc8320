//! openraft's storage conformance suite, run against the cluster's Raft
//! log (redb) and the ledger state machine.

use medledger_ledger::Ledger;
use medledger_node::{Ledgerside, LogStore, Network, StateMachine, TypeConfig};
use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use std::sync::{Arc, Mutex};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let node = Ledger::init_joining(dir.path(), "test.example/suite").expect("init");
        let ledger = Ledger::open_cluster(dir.path()).expect("open");
        let side = Arc::new(Ledgerside {
            store: Arc::new(ledger.store),
            state: Mutex::new(ledger.state),
            commits: Arc::default(),
            own: Mutex::default(),
            id: 1,
            node,
            network: Network::new(None),
            redacted: Default::default(),
        });
        let db = Arc::new(std::sync::RwLock::new(
            redb::Database::create(dir.path().join("raft.redb")).expect("redb"),
        ));
        let log = LogStore::new(db.clone())?;
        let sm = StateMachine::new(side, db)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn raft_log_and_state_machine_pass_openraft_suite() {
    Suite::test_all(Builder).expect("openraft storage suite");
}
