//! The sequencer: admits transactions from many concurrent callers and cuts
//! blocks the way group commit does.
//!
//! ```text
//! callers ──(signatures checked, in batches, on the caller's thread)──►
//!   sequencer thread: dedupe, roles, skew → appends to the open block
//!     ──(block cut when the committer is free, or at the size cap)──►
//!   committer thread: write + fsync, subtree hashes, index, checkpoint,
//!     receipts → callers
//! ```
//! While one block is being made durable the next one fills, so the fsync
//! rate sets the block rate, not the transaction rate.

use super::core::{Command, Core, Limits, Sealed};
use super::outcome::{Receipt, SubmitError};
use super::sink::{BlockSink, LocalSink, SinkError, Written};
use crossbeam_channel::{Receiver, Sender, bounded, select};
use ed25519_dalek::SigningKey;
use medledger_formats::keys::KeyCache;
use medledger_formats::merkle::Hash;
use medledger_formats::note::Note;
use medledger_formats::tx::Transaction;
use medledger_ledger::{
    Checked, CommitFeed, Followers, IndexSeen, Ledger, LedgerState, Pending, Rejection, Store,
    now_ms, payload_rules,
};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Sequencer tuning.
#[derive(Clone, Debug)]
pub struct SequencerConfig {
    /// Most transactions in one block.
    pub max_block_txs: usize,
    /// Most payload and header bytes in one block.
    pub max_block_bytes: usize,
    /// Submissions that may wait for the sequencer thread.
    pub queue: usize,
    /// Fault injection for the cluster's failure tests only: admit every
    /// transaction unchecked, so that only the state machines stand in the
    /// way of a faulty proposer.
    pub fault_unchecked: bool,
}

impl Default for SequencerConfig {
    fn default() -> Self {
        Self {
            max_block_txs: 8192,
            max_block_bytes: 64 << 20,
            queue: 1024,
            fault_unchecked: false,
        }
    }
}

type Outcome = Result<Receipt, SubmitError>;

/// Outcome slots of one submission and how many are still empty.
type Slots = Arc<Mutex<(Vec<Option<Outcome>>, usize)>>;

/// Fills a submission's results as its transactions are committed. Only
/// the sequencer side holds collectors: the caller waits on a oneshot that
/// fires when the last slot is filled, or when the last collector drops
/// (the sequencer's threads died), so a caller never hangs.
struct Collector {
    slots: Slots,
    done: Mutex<Option<oneshot::Sender<()>>>,
}

impl Collector {
    /// Wakes the caller.
    fn finish(&self) {
        if let Some(done) = self.done.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = done.send(());
        }
    }

    fn set(&self, i: usize, outcome: Outcome) {
        let mut g = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if g.0[i].is_none() {
            g.0[i] = Some(outcome);
            g.1 -= 1;
            if g.1 == 0 {
                self.finish();
            }
        }
    }
}

/// A submission on its way: wait for it with [`Waiting::wait`] on a plain
/// thread or `.await` it on the async runtime (no thread parked per request).
pub struct Waiting {
    slots: Slots,
    done: oneshot::Receiver<()>,
    started: std::time::Instant,
}

impl Waiting {
    /// Blocks the current (non-async) thread until every result is in.
    pub fn wait(self) -> Vec<Outcome> {
        let Waiting {
            slots,
            done,
            started,
        } = self;
        let _ = done.blocking_recv();
        finish(&slots, started)
    }

    /// Waits on the async runtime until every result is in.
    pub async fn done(self) -> Vec<Outcome> {
        let Waiting {
            slots,
            done,
            started,
        } = self;
        let _ = done.await;
        finish(&slots, started)
    }
}

fn finish(slots: &Slots, started: std::time::Instant) -> Vec<Outcome> {
    let mut g = slots.lock().unwrap_or_else(|e| e.into_inner());
    let results: Vec<Outcome> = std::mem::take(&mut g.0)
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(SubmitError::Unavailable("lost".into()))))
        .collect();
    metrics::histogram!("medledger_commit_latency_seconds").record(started.elapsed().as_secs_f64());
    for r in &results {
        match r {
            Ok(_) => metrics::counter!("medledger_transactions_accepted_total").increment(1),
            Err(e) => {
                metrics::counter!("medledger_transactions_rejected_total", "reason" => e.code())
                    .increment(1)
            }
        }
    }
    results
}

/// Authors whose decompressed keys are kept for signature checks.
const KEY_CACHE: usize = 100_000;

/// Most transactions handed to the sequencer thread in one message, so that
/// one huge call cannot make one huge block. One message is admitted into
/// one block, so up to this many transactions are durable together or not
/// at all.
pub(crate) const SUBMISSION_CHUNK: usize = 1024;

struct Submission {
    txs: Vec<(usize, Transaction, Checked)>,
    collector: Arc<Collector>,
    /// False for submissions too small to batch on their own: the sequencer
    /// checks their signatures together with other such submissions.
    verified: bool,
}

/// Below this many transactions a caller does not batch-check signatures
/// itself; the sequencer batches them across submissions.
const BATCH_ALONE: usize = 4;

/// Most submissions gathered for one cross-submission signature batch.
const GATHER: usize = 256;

type Waiter = (Arc<Collector>, usize);

type Cut = Box<Sealed<Waiter>>;

/// A running sequencer over an open ledger.
pub struct Sequencer {
    submit: Option<Sender<Submission>>,
    keys: Arc<KeyCache>,
    store: Arc<Store>,
    failed: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Fault injection for cluster tests: admit without any check.
    unchecked: bool,
}

impl Sequencer {
    /// Starts the sequencer and committer threads of a single node, which
    /// commits its blocks to its own segments.
    pub fn start(ledger: Ledger, config: SequencerConfig) -> Self {
        Self::local(ledger, config).0
    }

    /// Starts a single node's sequencer, and returns with it the followers
    /// of its log: readers get the store and the commit feed from there,
    /// never from the writer.
    pub fn local(ledger: Ledger, config: SequencerConfig) -> (Self, Arc<Followers>) {
        let Ledger {
            store,
            state,
            node_key,
        } = ledger;
        let log = Arc::new(Followers::new(Arc::new(store), Arc::default()));
        let sink = Arc::new(LocalSink::new(log.store().clone()));
        (Self::start_on(&log, state, node_key, sink, config), log)
    }

    /// Starts a sequencer that seals blocks on `state`, signed with `key`,
    /// and hands them to `sink`; the committer publishes each committed log
    /// size on `log`'s feed. The sequencer does not know what the sink is.
    pub(crate) fn start_on(
        log: &Followers,
        state: LedgerState,
        key: SigningKey,
        sink: Arc<dyn BlockSink>,
        config: SequencerConfig,
    ) -> Self {
        let (store, commits) = (log.store().clone(), log.feed().clone());
        let pending = Arc::new(Pending::default());
        let failed = Arc::new(AtomicBool::new(false));
        let unchecked = config.fault_unchecked;
        if unchecked {
            tracing::warn!("fault injection: this node admits transactions unchecked");
        }
        let (submit_tx, submit_rx) = bounded::<Submission>(config.queue);
        // The committer says when it is idle; only then is a block cut, so
        // blocks grow while the previous one is being made durable.
        let (ready_tx, ready_rx) = bounded::<()>(1);
        let (cut_tx, cut_rx) = bounded::<Cut>(1);
        let keys = Arc::new(KeyCache::new(KEY_CACHE));
        let limits = Limits {
            txs: config.max_block_txs,
            bytes: config.max_block_bytes,
        };
        let seq = SequencerThread {
            core: Core::new(state, key, limits, unchecked),
            keys: keys.clone(),
            store: store.clone(),
            pending: pending.clone(),
            failed: failed.clone(),
            sink: sink.clone(),
        };
        let seq = std::thread::Builder::new()
            .name("sequencer".into())
            .spawn(move || seq.run(submit_rx, ready_rx, cut_tx));
        let mut committer = Committer {
            store: store.clone(),
            pending,
            failed: failed.clone(),
            commits,
            sink: sink.clone(),
            flight: None,
        };
        // A sink that takes blocks without waiting for the one before (a
        // cluster) has an answerer thread wait for their outcomes in order.
        let answerer = (sink.in_flight() > 1).then(|| {
            let (tx, rx) = bounded::<(Cut, Written)>(sink.in_flight() - 1);
            let answerer = committer.clone();
            committer.flight = Some(tx);
            std::thread::Builder::new()
                .name("answerer".into())
                .spawn(move || answerer.answer_in_order(rx))
        });
        let com = std::thread::Builder::new()
            .name("committer".into())
            .spawn(move || committer.run(ready_tx, cut_rx));
        let threads = [Some(seq), Some(com), answerer]
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .collect();
        Sequencer {
            submit: Some(submit_tx),
            keys,
            store,
            failed,
            threads,
            unchecked,
        }
    }

    /// The store, for the writer's own checks (an importer's duplicates);
    /// readers follow the log through [`Followers`].
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// True once storage has failed.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Submits transactions and waits until each is committed or refused.
    /// Signatures are checked here, on the caller's thread, in one batch.
    pub fn submit(&self, txs: Vec<Transaction>) -> Vec<Outcome> {
        self.enqueue(txs).wait()
    }

    /// Checks the signatures (in one batch, on this thread) and hands the
    /// transactions to the sequencer; the returned [`Waiting`] yields their
    /// results once each is committed or refused.
    pub fn enqueue(&self, txs: Vec<Transaction>) -> Waiting {
        let n = txs.len();
        let started = std::time::Instant::now();
        let refs: Vec<&Transaction> = txs.iter().collect();
        // One or two signatures gain nothing from a batch of their own; they
        // are checked together with other small submissions in the sequencer.
        let verified = n >= BATCH_ALONE;
        let checks = if verified {
            Transaction::verify_signatures_with(&refs, &self.keys)
        } else {
            vec![Ok(()); n]
        };
        let (done_tx, done_rx) = oneshot::channel();
        let slots: Slots = Arc::new(Mutex::new(((0..n).map(|_| None).collect(), n)));
        let collector = Arc::new(Collector {
            slots: slots.clone(),
            done: Mutex::new(Some(done_tx)),
        });
        if n == 0 {
            collector.finish();
        }
        // The payload rules (PII guard, schemas) need no state: they run
        // here, on the caller's thread, not on the sequencer's.
        let mut good = Vec::with_capacity(n);
        for (i, (tx, check)) in txs.into_iter().zip(checks).enumerate() {
            match check
                .map_err(|_| Rejection::BadSignature)
                .and_then(|()| match self.unchecked {
                    true => Ok(Checked::Other),
                    false => payload_rules(&tx),
                }) {
                Ok(checked) => good.push((i, tx, checked)),
                Err(r) => collector.set(i, Err(r.into())),
            }
        }
        let mut good = good.into_iter().peekable();
        while good.peek().is_some() {
            let chunk: Vec<_> = good.by_ref().take(SUBMISSION_CHUNK).collect();
            let sent = match &self.submit {
                Some(s) if !self.failed() => s
                    .send(Submission {
                        txs: chunk,
                        collector: collector.clone(),
                        verified,
                    })
                    .map_err(|e| e.into_inner().txs),
                _ => Err(chunk),
            };
            if let Err(txs) = sent {
                for (i, ..) in txs {
                    collector.set(i, Err(SubmitError::Unavailable("sequencer stopped".into())));
                }
            }
        }
        // From here on only the sequencer side holds the collector: if it
        // goes away unfinished, the oneshot's sender drops and the wait ends.
        Waiting {
            slots,
            done: done_rx,
            started,
        }
    }

    /// Stops accepting, commits everything admitted, flushes, and returns.
    pub fn shutdown(mut self) -> Result<(), String> {
        self.submit = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.store.flush().map_err(|e| e.to_string())
    }
}

impl Drop for Sequencer {
    /// Dropping without [`Sequencer::shutdown`] still commits what was
    /// admitted and joins the threads, so the ledger's lock is free afterwards.
    fn drop(&mut self) {
        self.submit = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The sequencer thread: carries the [`Core`]'s decisions out. It looks
/// ids up, checks small submissions' signatures in batches, reads the clock
/// and the sink's epoch, and passes sealed blocks to the committer.
struct SequencerThread {
    core: Core<Waiter>,
    keys: Arc<KeyCache>,
    store: Arc<Store>,
    pending: Arc<Pending>,
    failed: Arc<AtomicBool>,
    /// Where sealed blocks go; it says whether this node may seal, and the
    /// state to seal on after an epoch change.
    sink: Arc<dyn BlockSink>,
}

impl SequencerThread {
    /// Carries out `commands`; returns the sealed blocks, for the committer.
    fn carry(&self, commands: Vec<Command<Waiter>>) -> Vec<Cut> {
        let mut cuts = Vec::new();
        for c in commands {
            match c {
                Command::Refuse((c, i), why) => c.set(i, Err(why)),
                Command::Hold(ids) => self.pending.add(ids),
                Command::Release(ids) => self.pending.remove(&ids),
                Command::Commit(cut) => cuts.push(cut),
                Command::Fail(e) => {
                    tracing::error!(error = %e, "sealing failed; refusing further writes");
                    self.failed.store(true, Ordering::SeqCst);
                    metrics::gauge!("medledger_storage_failed").set(1.0);
                }
            }
        }
        cuts
    }

    /// Tells the core of a storage failure the committer met.
    fn note_failure(&mut self) {
        if self.failed.load(Ordering::SeqCst) {
            self.core.on_storage_failed();
        }
    }

    /// Tells the core the sink's epoch; the error when this node may not
    /// seal now.
    fn sync(&mut self) -> Result<(), SubmitError> {
        let epoch = self.sink.epoch();
        let applied = match &epoch {
            Ok(e) if *e != self.core.epoch() => self.sink.applied(),
            _ => None,
        };
        let mut out = Vec::new();
        self.core.on_epoch(&epoch, applied, &mut out);
        self.carry(out);
        epoch.map(|_| ())
    }

    fn run(mut self, submissions: Receiver<Submission>, ready: Receiver<()>, cuts: Sender<Cut>) {
        let mut committer_ready = false;
        let mut closed = false;
        loop {
            let len = self.core.open_len();
            if len > 0 && committer_ready {
                // Take whatever is already queued, up to the cap, then cut.
                if let Ok(sub) = submissions.try_recv() {
                    self.take(sub, &submissions);
                }
                // A block admitted in an epoch that has ended is dropped here.
                let _ = self.sync();
                if self.core.open_len() == 0 {
                    continue;
                }
                committer_ready = false;
                self.note_failure();
                let mut out = Vec::new();
                self.core.on_cut(&mut out);
                for cut in self.carry(out) {
                    if cuts.send(cut).is_err() {
                        return;
                    }
                }
                continue;
            }
            if len == 0 && closed {
                return;
            }
            if self.core.full() || (closed && len > 0) {
                if ready.recv().is_err() {
                    return;
                }
                committer_ready = true;
                continue;
            }
            select! {
                recv(submissions) -> sub => match sub {
                    Ok(sub) => self.take(sub, &submissions),
                    Err(_) => closed = true,
                },
                recv(ready) -> r => match r {
                    Ok(()) => committer_ready = true,
                    Err(_) => return,
                },
            }
        }
    }

    /// Admits `first` and whatever else is already queued (up to the block's
    /// budget), checking the signatures of small submissions in one batch.
    fn take(&mut self, first: Submission, more: &Receiver<Submission>) {
        if let Err(e) = self.sync() {
            for (i, ..) in first.txs {
                first.collector.set(i, Err(e.clone()));
            }
            return;
        }
        let size = |s: &Submission| -> usize {
            s.txs
                .iter()
                .map(|(_, t, _)| t.payload_jcs().len() + t.header_jcs().len())
                .sum()
        };
        let limits = self.core.limits();
        let mut count = first.txs.len() + self.core.open_len();
        let mut bytes = size(&first) + self.core.open_bytes();
        let mut subs = vec![first];
        while subs.len() < GATHER && count < limits.txs && bytes < limits.bytes {
            match more.try_recv() {
                Ok(sub) => {
                    count += sub.txs.len();
                    bytes += size(&sub);
                    subs.push(sub);
                }
                Err(_) => break,
            }
        }
        let unchecked: Vec<(usize, usize)> = subs
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.verified)
            .flat_map(|(k, s)| (0..s.txs.len()).map(move |j| (k, j)))
            .collect();
        if !unchecked.is_empty() {
            let refs: Vec<&Transaction> =
                unchecked.iter().map(|&(k, j)| &subs[k].txs[j].1).collect();
            let checks = Transaction::verify_signatures_with(&refs, &self.keys);
            let mut bad = HashSet::new();
            for (&(k, j), check) in unchecked.iter().zip(checks) {
                if check.is_err() {
                    bad.insert((k, j));
                }
            }
            if !bad.is_empty() {
                for (k, sub) in subs.iter_mut().enumerate() {
                    let txs = std::mem::take(&mut sub.txs);
                    for (j, (i, tx, checked)) in txs.into_iter().enumerate() {
                        if bad.contains(&(k, j)) {
                            sub.collector.set(i, Err(Rejection::BadSignature.into()));
                        } else {
                            sub.txs.push((i, tx, checked));
                        }
                    }
                }
            }
        }
        for sub in subs {
            self.admit(sub);
        }
    }

    /// Looks the submission's ids up and lets the core admit it.
    fn admit(&mut self, sub: Submission) {
        self.note_failure();
        let ids: Vec<&Hash> = sub.txs.iter().map(|(_, t, _)| t.id()).collect();
        // Pending first, then the index: an id leaves `pending` only after it
        // is indexed, so one of the two reads must see a committed duplicate.
        let was_pending: Vec<bool> = ids.iter().map(|id| self.pending.contains(id)).collect();
        let known = self.store.index().leaves_of(&ids);
        let seen: Vec<bool> = was_pending
            .iter()
            .enumerate()
            .map(|(k, p)| *p || known.as_ref().map_or(true, |v| v[k].is_some()))
            .collect();
        let Submission { txs, collector, .. } = sub;
        let txs = txs
            .into_iter()
            .map(|(i, tx, checked)| ((collector.clone(), i), tx, checked))
            .collect();
        let mut out = Vec::new();
        let lookup = IndexSeen {
            index: self.store.index(),
            pending: &self.pending,
        };
        self.core
            .on_admit_in(txs, &seen, &lookup, now_ms(), &mut out);
        self.carry(out);
    }
}

/// The committer thread: hands each cut block to the sink and, as each
/// becomes durable, its callers their receipts.
#[derive(Clone)]
struct Committer {
    store: Arc<Store>,
    pending: Arc<Pending>,
    failed: Arc<AtomicBool>,
    commits: Arc<CommitFeed>,
    sink: Arc<dyn BlockSink>,
    /// With a sink that has blocks in flight: to the answerer thread.
    flight: Option<Sender<(Cut, Written)>>,
}

impl Committer {
    fn run(self, ready: Sender<()>, cuts: Receiver<Cut>) {
        loop {
            if ready.send(()).is_err() {
                return;
            }
            let Ok(mut cut) = cuts.recv() else { return };
            if self.failed.load(Ordering::SeqCst) {
                // A block after a failed one would chain to a block that is not there.
                self.refuse(cut, SubmitError::Unavailable("storage failed".into()));
                continue;
            }
            match self
                .sink
                .write(&cut.block, std::mem::take(&mut cut.admitted), cut.epoch)
            {
                Ok(written) => match &self.flight {
                    None => self.settle(cut, written()),
                    Some(flight) => {
                        if let Err(e) = flight.send((cut, written)) {
                            let why = SubmitError::Unavailable("node stopping".into());
                            self.refuse(e.into_inner().0, why);
                        }
                    }
                },
                Err(SinkError::Storage(e)) => {
                    tracing::error!(error = %e, "commit failed; refusing further writes");
                    self.failed.store(true, Ordering::SeqCst);
                    metrics::gauge!("medledger_storage_failed").set(1.0);
                    self.refuse(cut, SubmitError::Unavailable(e));
                }
                Err(SinkError::Refused(why)) => self.refuse(cut, why),
            }
        }
    }

    fn refuse(&self, cut: Cut, why: SubmitError) {
        self.pending.remove(cut.block.txs.iter().map(|t| t.id()));
        for (c, i) in cut.waiters {
            c.set(i, Err(why.clone()));
        }
    }

    /// The answerer thread: waits for each written block's outcome, in the
    /// order they were written.
    fn answer_in_order(self, written: Receiver<(Cut, Written)>) {
        for (cut, outcome) in written {
            self.settle(cut, outcome());
        }
    }

    fn settle(&self, cut: Cut, outcome: Result<Note, SubmitError>) {
        match outcome {
            Ok(checkpoint) => self.answer(cut, &checkpoint),
            Err(why) => self.refuse(cut, why),
        }
    }

    /// Hands each waiter its receipt against `checkpoint`.
    fn answer(&self, cut: Cut, checkpoint: &Note) {
        let h = cut.block.header.header();
        metrics::histogram!("medledger_block_transactions").record(h.tx_count as f64);
        match self
            .store
            .receipts(h.first_leaf..h.log_size, Some(checkpoint))
        {
            Ok(proofs) => {
                for (((c, i), tx), (k, mut proof)) in cut
                    .waiters
                    .into_iter()
                    .zip(&cut.block.txs)
                    .zip(proofs.into_iter().enumerate())
                {
                    proof.extra = Some(tx.leaf_preimage());
                    let receipt = Receipt {
                        id: *tx.id(),
                        leaf: h.first_leaf + k as u64,
                        height: h.height,
                        proof,
                    };
                    c.set(i, Ok(receipt));
                }
            }
            Err(e) => {
                // Committed, but no receipt can be given: say so, never a wrong one.
                for (c, i) in cut.waiters {
                    c.set(i, Err(SubmitError::Unavailable(e.to_string())));
                }
            }
        }
        self.pending.remove(cut.block.txs.iter().map(|t| t.id()));
        self.commits.publish(h.log_size);
    }
}
