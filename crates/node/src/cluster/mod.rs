//! Cluster mode: institutions' nodes order blocks with Raft (openraft 0.9,
//! storage-v2). Everything that touches openraft's traits lives in this
//! module, because openraft 0.10 rewrites them.
//!
//! ```text
//! leader:   sequencer (admits, seals a block) ─► Raft entry ─► quorum ─┐
//! every node, leader too:                                              ▼
//!   state machine: re-validate the whole block ─► commit to segments ─► checkpoint
//! ```
//! A Raft entry is one sealed block. Every node applies committed entries
//! through the same deterministic ledger state machine as single-node mode
//! and re-validates each block first, so a leader that proposes an invalid
//! transaction gets its block refused identically everywhere; the leader's
//! sequencer then rebuilds its state from what was applied.
//!
//! Membership lives on the ledger: an active node participant registered
//! with a cluster place is a voter. The leader reconciles Raft's membership
//! with the ledger's (adding a learner, promoting it once it has caught up,
//! removing revoked nodes).

// openraft's `StorageError` and axum's `Response` are what the traits and
// handlers return; boxing them would only add an allocation per call.
#![allow(clippy::result_large_err)]

mod error;
mod log_store;
mod network;
mod sink;
mod state_machine;
pub(crate) mod tls;

pub use error::{ClusterError, Refusal};
pub use log_store::{LogStore, RaftDb};
pub(crate) use network::routes;
pub use network::{Connection, Network, fetch_blocks};
pub(crate) use sink::RaftSink;
pub use state_machine::{Builder, Ledgerside, StateMachine};

use crate::pipeline::SubmitError;
use medledger_formats::block::Block;
use medledger_formats::record::{self, RecordError};
use openraft::{BasicNode, ChangeMembers, Raft, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

openraft::declare_raft_types!(
    /// The Raft types of a medledger cluster.
    pub TypeConfig:
        D = Proposal,
        R = Outcome,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The openraft handle of a node.
pub(crate) type RaftHandle = Raft<TypeConfig>;

/// A Raft entry's data: one sealed block in the segment record encoding.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Proposal {
    /// The block record body (header, signature, transaction headers).
    #[serde(with = "serde_bytes")]
    pub block: Vec<u8>,
    /// The payloads record body.
    #[serde(with = "serde_bytes")]
    pub payloads: Vec<u8>,
}

impl Proposal {
    /// Encodes `block`.
    pub fn of(block: &Block) -> Self {
        let mut b = Vec::new();
        record::encode_block(block, &mut b);
        let mut p = Vec::new();
        record::encode_payloads(block, &mut p);
        Proposal {
            block: b,
            payloads: p,
        }
    }

    /// Decodes the block (its transactions' canonical form and commitments
    /// are checked; signatures are the state machine's job).
    pub fn block(&self) -> Result<Block, RecordError> {
        record::decode_block(&self.block, &self.payloads)
    }
}

/// What applying an entry did.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Outcome {
    /// A blank or membership entry.
    Nothing,
    /// The block was committed.
    Committed {
        /// Its height.
        height: u64,
        /// The log size after it.
        log_size: u64,
    },
    /// The block was refused by the state machine, on every node alike.
    Refused(String),
}

/// A node's cluster settings, `cluster.json` in its data directory.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// This node's Raft id.
    pub id: u64,
    /// Node keys accepted on mutual-TLS connections besides the ledger's
    /// active cluster nodes: a joining node has no ledger yet.
    #[serde(default)]
    pub trust: Vec<medledger_formats::keys::PublicKey>,
}

impl ClusterFile {
    /// File name in the data directory.
    pub const NAME: &'static str = "cluster.json";

    /// Reads the settings, `None` for a single node's directory.
    pub fn read(dir: &Path) -> Result<Option<Self>, ClusterError> {
        let path = dir.join(Self::NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|source| ClusterError::Settings { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ClusterError::File { path, source }),
        }
    }

    /// Writes the settings (synced).
    pub fn write(&self, dir: &Path) -> Result<(), ClusterError> {
        let path = dir.join(Self::NAME);
        let text = serde_json::to_string_pretty(self).map_err(|source| ClusterError::Settings {
            path: path.clone(),
            source,
        })?;
        Ok(medledger_ledger::write_secret_file(&path, &(text + "\n"))?)
    }
}

/// Raft timing and log retention.
#[derive(Clone, Debug)]
pub(crate) struct RaftSettings {
    /// Heartbeat interval, ms; elections time out after 3 to 6 of them.
    pub heartbeat_ms: u64,
    /// Entries between snapshots.
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot.
    pub keep_logs: u64,
}

impl RaftSettings {
    fn config(&self) -> Result<openraft::Config, ClusterError> {
        openraft::Config {
            cluster_name: "medledger".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.heartbeat_ms * 3,
            election_timeout_max: self.heartbeat_ms * 6,
            // Entries are whole blocks: a few per message.
            max_payload_entries: 16,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.keep_logs,
            install_snapshot_timeout: 600_000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ClusterError::Raft(e.to_string()))
    }
}

/// Whether this node may seal blocks now, shared by the Raft metrics
/// watcher and the sequencer.
#[derive(Default)]
pub(crate) struct Leadership {
    /// `Some(term)` while this node leads and has applied every entry
    /// before its term: its applied state is then the whole ledger.
    ready: Mutex<Option<u64>>,
    /// The current leader's base URL, if known and not this node.
    leader: Mutex<Option<String>>,
    /// Bumped when a sealed block was refused or lost: blocks sealed on
    /// the state before it must not be proposed.
    generation: AtomicU64,
}

impl Leadership {
    /// The epoch blocks are sealed in, if this node may seal now.
    pub(crate) fn epoch(&self) -> Result<u64, SubmitError> {
        match *self.ready.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(term) => Ok(term << 32 | (self.generation.load(Ordering::SeqCst) & 0xffff_ffff)),
            None => Err(SubmitError::NotLeader(self.leader())),
        }
    }

    /// Starts a new epoch after a block was refused or lost.
    pub(crate) fn bump(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// [`Leadership::bump`], unless the epoch has already moved on from
    /// `epoch`: the blocks proposed on top of a lost one are lost with it,
    /// and only the first loss starts a new epoch.
    pub(crate) fn bump_from(&self, epoch: u64) {
        if self.epoch().ok() == Some(epoch) {
            self.bump();
        }
    }

    /// The leader's base URL when another node leads.
    pub(crate) fn leader(&self) -> Option<String> {
        self.leader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A running cluster node's Raft side.
pub struct Cluster {
    /// The Raft handle.
    pub(crate) raft: RaftHandle,
    /// This node's id.
    pub(crate) id: u64,
    /// Whether this node may seal.
    pub(crate) leadership: Arc<Leadership>,
    /// The ledger side.
    pub(crate) side: Arc<Ledgerside>,
}

impl Cluster {
    /// Starts Raft over `side`, with its log in `dir/raft.redb`.
    pub(crate) async fn start(
        dir: &Path,
        id: u64,
        side: Arc<Ledgerside>,
        settings: &RaftSettings,
    ) -> Result<Arc<Self>, ClusterError> {
        let path = dir.join("raft.redb");
        let db: RaftDb = Arc::new(std::sync::RwLock::new(
            redb::Database::create(&path).map_err(|e| ClusterError::RaftLog {
                path,
                source: Box::new(e),
            })?,
        ));
        let raft_err = |e: &dyn ToString| ClusterError::Raft(e.to_string());
        let log = LogStore::new(db.clone()).map_err(|e| raft_err(&e))?;
        let sm = StateMachine::new(side.clone(), db.clone()).map_err(|e| raft_err(&e))?;
        let config = Arc::new(settings.config()?);
        let raft = Raft::new(id, config, side.network.clone(), log, sm)
            .await
            .map_err(|e| raft_err(&e))?;
        let cluster = Arc::new(Cluster {
            raft,
            id,
            leadership: Arc::new(Leadership::default()),
            side,
        });
        cluster.bootstrap().await;
        // A crash may have come between a redaction and the Raft log's
        // purge: a ledger that holds any redaction has its log purged and
        // compacted once at start.
        let any_redaction = {
            let state = cluster.side.state.lock().unwrap_or_else(|p| p.into_inner());
            !state.redacted().is_empty()
        };
        if any_redaction {
            cluster.side.redacted.note();
        }
        tokio::spawn(erase_raft_log(cluster.clone(), db));
        tokio::spawn(watch_leadership(cluster.clone()));
        tokio::spawn(reconcile_membership(cluster.clone()));
        Ok(cluster)
    }

    /// A node whose ledger's genesis names it as the first cluster node
    /// initializes Raft with itself as the only voter, once: while its
    /// ledger holds the genesis block alone. A ledger with more blocks took
    /// them from a running cluster, so a node that lost its Raft log
    /// (restored from a backup, or `raft.redb` gone) waits for that
    /// cluster's leader instead; a Raft of its own would hold entries that
    /// conflict with the cluster's at the same term and index.
    async fn bootstrap(&self) {
        let first = {
            let state = self.side.state.lock().unwrap_or_else(|p| p.into_inner());
            let me = self.side.node;
            let fresh = state.tip().next_height <= 1;
            state
                .cluster_members()
                .find(|(k, m)| fresh && **k == me && m.id == self.id)
                .map(|(_, m)| m.addr.clone())
        };
        let Some(addr) = first else { return };
        if self.raft.is_initialized().await.unwrap_or(true) {
            return;
        }
        let members = BTreeMap::from([(self.id, BasicNode { addr })]);
        if let Err(e) = self.raft.initialize(members).await {
            tracing::info!(error = %e, "raft already initialized");
        }
    }

    /// The public API of node `id`, as the ledger records it.
    fn api_of(&self, id: u64) -> Option<String> {
        let state = self.side.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .cluster_members()
            .find(|(_, m)| m.id == id)
            .map(|(_, m)| m.api().to_owned())
    }

    /// The public APIs of the other members.
    pub(crate) fn peers(&self) -> Vec<String> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        m.membership()
            .nodes()
            .filter(|(id, _)| **id != self.id)
            .map(|(id, n)| self.api_of(*id).unwrap_or_else(|| n.addr.clone()))
            .collect()
    }

    /// Raft's view, for `/v1/status`.
    pub(crate) fn status(&self) -> serde_json::Value {
        let m = self.raft.metrics().borrow().clone();
        let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
        let learners: Vec<u64> = m.membership_config.membership().learner_ids().collect();
        serde_json::json!({
            "id": self.id,
            "state": format!("{:?}", m.state).to_lowercase(),
            "term": m.current_term,
            "leader": m.current_leader,
            "voters": voters,
            "learners": learners,
            "last_log_index": m.last_log_index,
            "last_applied": m.last_applied.map(|l| l.index),
            "snapshot": m.snapshot.map(|l| l.index),
            "purged": m.purged.map(|l| l.index),
        })
    }

    /// Raft's gauges in the Prometheus text format, read when scraped:
    /// the term, whether this node leads, the last applied entry and, on
    /// the leader, each follower's replication lag in entries.
    pub(crate) fn gauges(&self) -> String {
        use std::fmt::Write as _;
        let m = self.raft.metrics().borrow().clone();
        let mut out = String::new();
        let leads = u8::from(m.state == ServerState::Leader && m.current_leader == Some(self.id));
        for (name, help, value) in [
            (
                "medledger_raft_term",
                "The Raft term this node is in.",
                m.current_term,
            ),
            (
                "medledger_raft_leader",
                "1 while this node leads the cluster.",
                u64::from(leads),
            ),
            (
                "medledger_raft_last_applied",
                "Index of the last Raft entry this node applied.",
                m.last_applied.map_or(0, |l| l.index),
            ),
        ] {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
            );
        }
        if let Some(replication) = &m.replication {
            let name = "medledger_raft_replication_lag_entries";
            let _ = write!(
                out,
                "# HELP {name} Raft entries the leader has that a follower has not acknowledged.\n# TYPE {name} gauge\n"
            );
            let last = m.last_log_index.unwrap_or(0);
            for (peer, matched) in replication.iter().filter(|(p, _)| **p != self.id) {
                let lag = last.saturating_sub(matched.map_or(0, |l| l.index));
                let _ = writeln!(out, "{name}{{peer=\"{peer}\"}} {lag}");
            }
        }
        out
    }
}

/// Resolves when Raft stops on its own (a storage or state-machine error),
/// with the reason.
pub(crate) async fn stopped(cluster: &Cluster) -> String {
    let mut rx = cluster.raft.metrics();
    loop {
        if let Err(e) = &rx.borrow_and_update().running_state {
            tracing::error!(error = %e, "raft stopped");
            return e.to_string();
        }
        if rx.changed().await.is_err() {
            return "raft is gone".into();
        }
    }
}

/// Keeps `peers` equal to the base URLs of the other members, for
/// gathering their cosignatures.
pub(crate) async fn follow_peers(
    cluster: Arc<Cluster>,
    peers: Arc<std::sync::RwLock<Vec<String>>>,
) {
    let mut rx = cluster.raft.metrics();
    let mut seen = None;
    loop {
        // Metrics change with every entry; the peers only with membership.
        let membership = *rx.borrow_and_update().membership_config.log_id();
        if seen != Some(membership) {
            seen = Some(membership);
            *peers.write().unwrap_or_else(|p| p.into_inner()) = cluster.peers();
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Follows Raft's metrics: leadership, readiness and the leader's address.
/// Whether a block with a redaction was committed since the Raft log was
/// last purged and compacted, with a wake-up for the task that does it.
#[derive(Default)]
pub struct RedactedSince {
    dirty: AtomicBool,
    wake: tokio::sync::Notify,
}

impl RedactedSince {
    /// Notes that a redaction was committed.
    pub(crate) fn note(&self) {
        self.dirty.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

/// Takes redacted payloads out of `raft.redb`, whose entries hold whole
/// blocks: after a block with a redaction is applied, a snapshot is taken,
/// the log is purged up to the last applied entry (every entry that can
/// hold a target precedes its redaction), and the file is compacted so
/// that no page redb freed still holds the payload. A follower that lags
/// behind the purge gets the snapshot and fetches the blocks, already
/// redacted, from its peers' segments.
async fn erase_raft_log(cluster: Arc<Cluster>, db: RaftDb) {
    let flag = &cluster.side.redacted;
    loop {
        if !flag.dirty.swap(false, Ordering::SeqCst) {
            flag.wake.notified().await;
            continue;
        }
        match purge_and_compact(&cluster.raft, &db).await {
            Ok(Some(upto)) => {
                tracing::info!(upto, "Raft log purged and compacted after a redaction");
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "the Raft log still holds redacted payloads; retrying");
                flag.dirty.store(true, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
        }
    }
}

/// Snapshot, purge and compaction up to the last applied entry; the entry
/// index purged up to, if any was applied.
async fn purge_and_compact(raft: &RaftHandle, db: &RaftDb) -> Result<Option<u64>, String> {
    let applied = raft.metrics().borrow().last_applied;
    let Some(upto) = applied.map(|l| l.index) else {
        return Ok(None);
    };
    let patience = Some(std::time::Duration::from_secs(60));
    raft.trigger().snapshot().await.map_err(|e| e.to_string())?;
    raft.wait(patience)
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= upto),
            "a snapshot that covers the redaction",
        )
        .await
        .map_err(|e| e.to_string())?;
    raft.trigger()
        .purge_log(upto)
        .await
        .map_err(|e| e.to_string())?;
    raft.wait(patience)
        .metrics(
            |m| m.purged.is_some_and(|p| p.index >= upto),
            "the log purged up to the redaction",
        )
        .await
        .map_err(|e| e.to_string())?;
    let db = db.clone();
    tokio::task::spawn_blocking(move || {
        // Compaction moves live pages down and truncates the file; it needs
        // every transaction finished, so it takes the database alone.
        let mut db = db.write().unwrap_or_else(|p| p.into_inner());
        while db.compact().map_err(|e| e.to_string())? {}
        Ok::<(), String>(())
    })
    .await
    .map_err(|e| e.to_string())??;
    Ok(Some(upto))
}

async fn watch_leadership(cluster: Arc<Cluster>) {
    let mut rx = cluster.raft.metrics();
    // What was last published: metrics change with every entry, these
    // rarely, and the leader's URL takes the ledger's lock.
    let mut published = None;
    loop {
        let (ready, leader) = {
            let m = rx.borrow_and_update();
            let ready = (m.state == ServerState::Leader
                && m.current_leader == Some(cluster.id)
                && m.last_applied.map(|l| l.leader_id.term) == Some(m.current_term))
            .then_some(m.current_term);
            (ready, m.current_leader.filter(|l| *l != cluster.id))
        };
        // A leader the ledger does not list yet (a joining node) is looked
        // up again on the next change.
        if published.is_some_and(|(_, was)| was != leader) {
            metrics::counter!("medledger_raft_leader_changes_total").increment(1);
        }
        if published != Some((ready, leader)) {
            let url = leader.and_then(|l| cluster.api_of(l));
            published = (url.is_some() || leader.is_none()).then_some((ready, leader));
            *cluster
                .leadership
                .ready
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = ready;
            *cluster
                .leadership
                .leader
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = url;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// On the leader, brings Raft's membership in line with the ledger's
/// active cluster nodes: new ones join as learners and become voters once
/// they have caught up; revoked ones are removed.
async fn reconcile_membership(cluster: Arc<Cluster>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let m = cluster.raft.metrics().borrow().clone();
        if m.running_state.is_err() {
            return;
        }
        if m.state != ServerState::Leader || m.current_leader != Some(cluster.id) {
            continue;
        }
        let wanted: BTreeMap<u64, String> = {
            let state = cluster.side.state.lock().unwrap_or_else(|p| p.into_inner());
            state
                .cluster_members()
                .map(|(_, c)| (c.id, c.addr.clone()))
                .collect()
        };
        if wanted.is_empty() {
            continue;
        }
        let membership = m.membership_config.membership().clone();
        let known: BTreeSet<u64> = membership.nodes().map(|(id, _)| *id).collect();
        for (id, addr) in &wanted {
            if !known.contains(id) {
                tracing::info!(id, %addr, "adding a learner");
                if let Err(e) = cluster
                    .raft
                    .add_learner(*id, BasicNode { addr: addr.clone() }, false)
                    .await
                {
                    tracing::warn!(id, error = %e, "could not add learner");
                }
            }
        }
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let want: BTreeSet<u64> = wanted.keys().copied().collect();
        if voters == want {
            continue;
        }
        // Promote only learners that are close to the leader's log.
        let last = m.last_log_index.unwrap_or(0);
        let caught_up = |id: &u64| {
            voters.contains(id)
                || m.replication.as_ref().is_some_and(|r| {
                    r.get(id)
                        .and_then(|l| l.as_ref())
                        .is_some_and(|l| l.index + 16 >= last)
                })
        };
        if !want.iter().all(caught_up) {
            continue;
        }
        tracing::info!(?want, "changing voters");
        if let Err(e) = cluster
            .raft
            .change_membership(ChangeMembers::ReplaceAllVoters(want), false)
            .await
        {
            tracing::warn!(error = %e, "could not change membership");
        }
    }
}
