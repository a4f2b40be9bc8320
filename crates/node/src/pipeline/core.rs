//! The sequencer's decisions, without threads, channels, clocks or disks:
//! what to admit, what is a duplicate, which epoch a block belongs to, and
//! when and how a block is sealed. It takes events and returns commands,
//! which the sequencer's threads carry out; so it is tested by feeding it
//! events, one after the other.

use super::outcome::SubmitError;
use ed25519_dalek::SigningKey;
use medledger_formats::block::Block;
use medledger_formats::merkle::Hash;
use medledger_formats::tx::Transaction;
use medledger_ledger::{Admitted, Checked, LedgerState, Rejection};
use std::collections::HashSet;

/// Bytes a transaction adds to a block beyond its payload and header: its
/// signature, author and framing.
const TX_OVERHEAD: usize = 84;

/// A block's limits.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    /// Most transactions in one block.
    pub txs: usize,
    /// Most payload and header bytes in one block.
    pub bytes: usize,
}

/// What the threads must do. `W` names a caller's slot.
#[derive(Debug)]
pub(super) enum Command<W> {
    /// Answer the caller with a refusal.
    Refuse(W, SubmitError),
    /// These ids were admitted: duplicates of them must be refused until
    /// they are committed or released.
    Hold(Vec<Hash>),
    /// These ids will not be committed.
    Release(Vec<Hash>),
    /// Make this block durable.
    Commit(Box<Sealed<W>>),
    /// Storage failed: nothing more may be built on the tip.
    Fail(String),
}

/// A sealed block, what admission learned for its index, and who waits for
/// each transaction.
#[derive(Debug)]
pub(super) struct Sealed<W> {
    /// The block.
    pub block: Block,
    /// Its payload verdicts and directory records.
    pub admitted: Admitted,
    /// The callers, one per transaction, in order.
    pub waiters: Vec<W>,
    /// The epoch it was sealed in (0 for a single node).
    pub epoch: u64,
}

struct OpenBlock<W> {
    time: u64,
    bytes: usize,
    txs: Vec<Transaction>,
    verdicts: Vec<Checked>,
    waiters: Vec<W>,
    ids: HashSet<Hash>,
}

/// The sequencer's state and rules.
pub(super) struct Core<W> {
    state: LedgerState,
    key: SigningKey,
    limits: Limits,
    open: Option<OpenBlock<W>>,
    /// The epoch `state` belongs to (always 0 for a single node).
    epoch: u64,
    failed: bool,
    /// Admit without any check (fault injection for the cluster's tests).
    unchecked: bool,
}

impl<W> Core<W> {
    /// A core that seals blocks on `state`, signed with `key`.
    pub(super) fn new(
        state: LedgerState,
        key: SigningKey,
        limits: Limits,
        unchecked: bool,
    ) -> Self {
        Core {
            state,
            key,
            limits,
            open: None,
            epoch: 0,
            failed: false,
            unchecked,
        }
    }

    /// The epoch the state belongs to.
    pub(super) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Transactions in the open block.
    pub(super) fn open_len(&self) -> usize {
        self.open.as_ref().map_or(0, |b| b.txs.len())
    }

    /// Payload and header bytes in the open block.
    pub(super) fn open_bytes(&self) -> usize {
        self.open.as_ref().map_or(0, |b| b.bytes)
    }

    /// True when the open block may take no more transactions.
    pub(super) fn full(&self) -> bool {
        self.open_len() >= self.limits.txs || self.open_bytes() >= self.limits.bytes
    }

    /// The limits.
    pub(super) fn limits(&self) -> Limits {
        self.limits
    }

    /// The sink's epoch is `epoch` (or this node may not seal). A new epoch
    /// (new leadership, or a block that was not committed) drops the open
    /// block, whose transactions were admitted against a state that no
    /// longer holds, and goes on from `applied`, the state every node has
    /// applied (`None`: the own state stays right).
    pub(super) fn on_epoch(
        &mut self,
        epoch: &Result<u64, SubmitError>,
        applied: Option<LedgerState>,
        out: &mut Vec<Command<W>>,
    ) {
        if epoch.as_ref().ok() != Some(&self.epoch)
            && let Some(block) = self.open.take()
        {
            let why = SubmitError::NotCommitted("leadership changed".into());
            abandon(block.ids, block.waiters, &why, out);
        }
        if let Ok(e) = epoch
            && *e != self.epoch
        {
            if let Some(state) = applied {
                self.state = state;
            }
            self.epoch = *e;
        }
    }

    /// Storage failed (the committer says so).
    pub(super) fn on_storage_failed(&mut self) {
        self.failed = true;
    }

    /// Admits transactions whose signatures and payload rules passed.
    /// `seen[k]` says that the k-th id is committed or in flight already;
    /// `now_ms` is the clock, for a new block's time.
    #[cfg(test)]
    pub(super) fn on_admit(
        &mut self,
        txs: Vec<(W, Transaction, Checked)>,
        seen: &[bool],
        now_ms: u64,
        out: &mut Vec<Command<W>>,
    ) {
        let nothing: std::collections::HashSet<medledger_formats::merkle::Hash> =
            std::collections::HashSet::new();
        self.on_admit_in(txs, seen, &nothing, now_ms, out);
    }

    /// [`Self::on_admit`], with `lookup` to find the committed transactions
    /// a redaction names.
    pub(super) fn on_admit_in(
        &mut self,
        txs: Vec<(W, Transaction, Checked)>,
        seen: &[bool],
        lookup: &dyn medledger_ledger::Seen,
        now_ms: u64,
        out: &mut Vec<Command<W>>,
    ) {
        if self.failed {
            let why = SubmitError::Unavailable("storage failed".into());
            out.extend(
                txs.into_iter()
                    .map(|(w, ..)| Command::Refuse(w, why.clone())),
            );
            return;
        }
        let time = self.state.block_time(now_ms);
        let block = self.open.get_or_insert_with(|| OpenBlock {
            time,
            bytes: 0,
            txs: Vec::new(),
            verdicts: Vec::new(),
            waiters: Vec::new(),
            ids: HashSet::new(),
        });
        let mut held = Vec::new();
        for (k, (w, tx, checked)) in txs.into_iter().enumerate() {
            if seen.get(k).copied().unwrap_or(true) || block.ids.contains(tx.id()) {
                out.push(Command::Refuse(w, Rejection::Duplicate.into()));
                continue;
            }
            let leaf = self.state.tip().log.size() + block.txs.len() as u64;
            let admitted = match self.unchecked {
                true => Ok(checked),
                false => self
                    .state
                    .admit_checked_in(&tx, checked, block.time, leaf, lookup),
            };
            match admitted {
                Ok(checked) => {
                    block.ids.insert(*tx.id());
                    block.bytes += tx.payload_jcs().len() + tx.header_jcs().len() + TX_OVERHEAD;
                    held.push(*tx.id());
                    block.txs.push(tx);
                    block.verdicts.push(checked);
                    block.waiters.push(w);
                }
                Err(r) => out.push(Command::Refuse(w, r.into())),
            }
        }
        if !held.is_empty() {
            out.push(Command::Hold(held));
        }
    }

    /// The committer is free: seal the open block, if there is one.
    pub(super) fn on_cut(&mut self, out: &mut Vec<Command<W>>) {
        let Some(block) = self.open.take() else {
            return;
        };
        if self.failed {
            let why = SubmitError::Unavailable("storage failed".into());
            abandon(block.ids, block.waiters, &why, out);
            return;
        }
        // An unchecked core judged no payload: it hands on no verdicts, so
        // every state machine, its own node's too, judges them itself.
        let verdicts = match self.unchecked {
            true => Vec::new(),
            false => block.verdicts,
        };
        let admitted = Admitted::of(&self.state, &block.txs, verdicts);
        match self.state.seal_block(block.txs, block.time, &self.key) {
            Ok(sealed) => out.push(Command::Commit(Box::new(Sealed {
                block: sealed,
                admitted,
                waiters: block.waiters,
                epoch: self.epoch,
            }))),
            Err(e) => {
                self.failed = true;
                out.push(Command::Fail(e.to_string()));
                let why = SubmitError::Unavailable(e.to_string());
                abandon(block.ids, block.waiters, &why, out);
            }
        }
    }
}

/// Gives a block up: its ids leave the in-flight set, and each of its
/// callers is told `why`.
fn abandon<W>(ids: HashSet<Hash>, waiters: Vec<W>, why: &SubmitError, out: &mut Vec<Command<W>>) {
    out.push(Command::Release(ids.into_iter().collect()));
    out.extend(waiters.into_iter().map(|w| Command::Refuse(w, why.clone())));
}

#[cfg(test)]
mod tests {
    use super::*;
    use medledger_formats::keys;
    use medledger_ledger::{
        Ledger, RegisterPayload, Role, kind, now_ms, payload_rules, read_key_file,
    };
    use serde_json::json;

    struct World {
        _dir: tempfile::TempDir,
        core: Core<u32>,
        admin: SigningKey,
        state: LedgerState,
    }

    impl World {
        /// Admits a new registration of `key`, which the threads saw nowhere.
        fn admit_new(
            &mut self,
            waiter: u32,
            key: &SigningKey,
            t: u64,
            out: &mut Vec<Command<u32>>,
        ) {
            let tx = checked(waiter, register(&self.admin, key, t));
            self.core.on_admit(vec![tx], &[false], t, out);
        }
    }

    fn world(limits: Limits) -> World {
        let dir = tempfile::tempdir().unwrap();
        Ledger::init(dir.path(), "test.example/core", "Test").unwrap();
        let admin = read_key_file(&dir.path().join("admin.key")).unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        let state = ledger.state.clone();
        let core = Core::new(ledger.state, ledger.node_key, limits, false);
        World {
            _dir: dir,
            core,
            admin,
            state,
        }
    }

    const ROOMY: Limits = Limits {
        txs: 100,
        bytes: 1 << 20,
    };

    fn register(admin: &SigningKey, key: &SigningKey, t: u64) -> Transaction {
        let p = RegisterPayload {
            key: keys::public_key(key),
            role: Role::Doctor,
            institution: "Test".into(),
            label: String::new(),
            patient: None,
            cluster: None,
        };
        Transaction::sign(admin, kind::REGISTER, t, &serde_json::to_value(p).unwrap()).unwrap()
    }

    fn checked(w: u32, tx: Transaction) -> (u32, Transaction, Checked) {
        let c = payload_rules(&tx).unwrap();
        (w, tx, c)
    }

    fn refusals(out: &[Command<u32>]) -> Vec<(u32, &'static str)> {
        out.iter()
            .filter_map(|c| match c {
                Command::Refuse(w, e) => Some((*w, e.code())),
                _ => None,
            })
            .collect()
    }

    fn commits(out: Vec<Command<u32>>) -> Vec<Sealed<u32>> {
        out.into_iter()
            .filter_map(|c| match c {
                Command::Commit(s) => Some(*s),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn duplicates_in_flight_committed_or_in_the_same_block_are_refused() {
        let mut w = world(ROOMY);
        let t = now_ms();
        let a = register(&w.admin, &SigningKey::from_bytes(&[1; 32]), t);
        let b = register(&w.admin, &SigningKey::from_bytes(&[2; 32]), t);
        let c = register(&w.admin, &SigningKey::from_bytes(&[3; 32]), t);
        let mut out = Vec::new();
        let txs = vec![
            checked(1, a.clone()),
            checked(2, a),
            checked(3, b.clone()),
            checked(4, c),
        ];
        // b is in flight or committed already (the threads looked it up).
        w.core
            .on_admit(txs, &[false, false, true, false], t, &mut out);
        assert_eq!(refusals(&out), [(2, "duplicate"), (3, "duplicate")]);
        assert_eq!(w.core.open_len(), 2);
        let held: Vec<&Hash> = out
            .iter()
            .flat_map(|c| match c {
                Command::Hold(ids) => ids.iter().collect(),
                _ => vec![],
            })
            .collect();
        assert_eq!(held.len(), 2);
        assert!(!held.contains(&b.id()));
    }

    #[test]
    fn a_cut_seals_the_next_block_with_its_callers_in_order() {
        let mut w = world(ROOMY);
        let t = now_ms();
        let keys: Vec<SigningKey> = (1..=3).map(|i| SigningKey::from_bytes(&[i; 32])).collect();
        let txs: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| checked(10 + i as u32, register(&w.admin, k, t)))
            .collect();
        let ids: Vec<Hash> = txs.iter().map(|(_, tx, _)| *tx.id()).collect();
        let mut out = Vec::new();
        w.core.on_admit(txs, &[false; 3], t, &mut out);
        // Nothing is sealed before the committer is free.
        assert!(commits(std::mem::take(&mut out)).is_empty());
        w.core.on_cut(&mut out);
        let sealed = commits(out);
        assert_eq!(sealed.len(), 1);
        let s = &sealed[0];
        assert_eq!(s.waiters, [10, 11, 12]);
        let h = s.block.header.header();
        assert_eq!(h.height, w.state.tip().next_height);
        assert_eq!(h.first_leaf, w.state.tip().log.size());
        assert_eq!(h.tx_count, 3);
        assert_eq!(s.block.txs.iter().map(|t| *t.id()).collect::<Vec<_>>(), ids);
        assert_eq!(w.core.open_len(), 0);
        // The next block stacks on the sealed one: the same ids are refused
        // by the state now, whatever the threads saw.
        let mut out = Vec::new();
        w.admit_new(20, &keys[0], t + 1, &mut out);
        assert_eq!(refusals(&out), [(20, "already_registered")]);
    }

    #[test]
    fn a_block_is_full_at_either_limit() {
        let mut w = world(Limits {
            txs: 2,
            bytes: 1 << 20,
        });
        let t = now_ms();
        let mut out = Vec::new();
        w.admit_new(1, &SigningKey::from_bytes(&[1; 32]), t, &mut out);
        assert!(!w.core.full());
        w.admit_new(2, &SigningKey::from_bytes(&[2; 32]), t, &mut out);
        assert!(w.core.full());
        let mut w = world(Limits { txs: 100, bytes: 1 });
        w.admit_new(1, &SigningKey::from_bytes(&[1; 32]), t, &mut out);
        assert!(w.core.full());
    }

    #[test]
    fn a_new_epoch_drops_the_open_block_and_takes_the_applied_state() {
        let mut w = world(ROOMY);
        let t = now_ms();
        let key = SigningKey::from_bytes(&[1; 32]);
        let mut out = Vec::new();
        w.admit_new(1, &key, t, &mut out);
        let mut out = Vec::new();
        // Still epoch 0: nothing happens.
        w.core.on_epoch(&Ok(0), None, &mut out);
        assert!(out.is_empty());
        assert_eq!(w.core.open_len(), 1);
        // This node no longer leads: the open block is dropped.
        w.core
            .on_epoch(&Err(SubmitError::NotLeader(None)), None, &mut out);
        assert_eq!(refusals(&out), [(1, "not_committed")]);
        assert!(matches!(&out[0], Command::Release(ids) if ids.len() == 1));
        assert_eq!(w.core.open_len(), 0);
        // Epoch 2 with the state every node applied: the key that was
        // admitted into the dropped block is admitted again.
        let mut out = Vec::new();
        w.core.on_epoch(&Ok(2), Some(w.state.clone()), &mut out);
        assert!(out.is_empty());
        assert_eq!(w.core.epoch(), 2);
        w.admit_new(2, &key, t, &mut out);
        assert!(refusals(&out).is_empty());
        w.core.on_cut(&mut out);
        assert_eq!(commits(out)[0].epoch, 2);
    }

    #[test]
    fn after_a_storage_failure_everything_is_refused() {
        let mut w = world(ROOMY);
        let t = now_ms();
        let mut out = Vec::new();
        w.admit_new(1, &SigningKey::from_bytes(&[1; 32]), t, &mut out);
        w.core.on_storage_failed();
        let mut out = Vec::new();
        w.core.on_cut(&mut out);
        w.admit_new(2, &SigningKey::from_bytes(&[2; 32]), t, &mut out);
        assert_eq!(
            refusals(&out),
            [(1, "storage_unavailable"), (2, "storage_unavailable")]
        );
        assert!(commits(out).is_empty());
    }

    #[test]
    fn rules_of_the_state_refuse_with_their_code() {
        let mut w = world(ROOMY);
        let t = now_ms();
        let stranger = SigningKey::from_bytes(&[9; 32]);
        let report = Transaction::sign(
            &stranger,
            kind::MEDICAL_REPORT,
            t,
            &json!({"patient": "MFRGGZDFMZTWQ2LKNNWG23TPOA"}),
        )
        .unwrap();
        let mut out = Vec::new();
        // Fault injection aside, the core never admits what the state refuses.
        w.core
            .on_admit(vec![(1, report, Checked::Other)], &[false], t, &mut out);
        assert_eq!(refusals(&out), [(1, "unknown_author")]);
        assert_eq!(w.core.open_len(), 0);
    }
}
