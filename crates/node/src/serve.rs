//! `medledger serve`: open (or create) a ledger, run the sequencer and the
//! HTTP API, and shut down gracefully on SIGTERM or Ctrl-C: in-flight
//! requests finish, every admitted block is committed, everything is fsynced.

use crate::cluster::tls::{self, TlsListener, Trust};
use crate::cluster::{Cluster, ClusterFile, Ledgerside, Network, RaftSettings};
use crate::config::NodeConfig;
use crate::http::request::AppState;
use crate::http::router::router;
use crate::pipeline::{Sequencer, SequencerConfig};
use crate::tokens::Tokens;
use medledger_ledger::{Followers, Ledger};
use std::path::Path;
use std::sync::Arc;

/// Why the node stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The ledger could not be opened or created.
    #[error(transparent)]
    Ledger(#[from] medledger_ledger::LedgerError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: std::net::SocketAddr,
        /// Error.
        source: std::io::Error,
    },
    /// The server failed.
    #[error("server: {0}")]
    Server(std::io::Error),
    /// Final flush failed.
    #[error("shutdown: {0}")]
    Shutdown(String),
    /// Cluster mode could not start, or Raft stopped.
    #[error("cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    /// The pseudonym key is unusable.
    #[error(transparent)]
    PseudonymKey(#[from] crate::secrets::SecretError),
    /// `cosigner_name` is not a valid key name.
    #[error(transparent)]
    Cosigner(#[from] crate::http::cosign::CosignerNameError),
}

/// Installs the Prometheus recorder (once per process).
pub(crate) fn install_metrics() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[
            0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
        ])
        .ok()?
        .install_recorder()
        .ok()
        .inspect(|_| describe_metrics())
}

/// The help text and unit of every series the node exports, so that
/// `/metrics` carries `# HELP` for each.
fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "medledger_http_requests_total",
        "HTTP requests served, by route template, method and status class."
    );
    describe_histogram!(
        "medledger_http_request_duration_seconds",
        Unit::Seconds,
        "Time from a request's arrival to its response head, by route template and method."
    );
    describe_counter!(
        "medledger_http_shed_total",
        "Requests refused with 429 because the node was serving its limit."
    );
    describe_counter!(
        "medledger_http_body_timeouts_total",
        "Requests whose body did not arrive in time (408)."
    );
    describe_counter!(
        "medledger_http_connections_refused_total",
        "Connections closed at once because their peer held too many."
    );
    describe_counter!(
        "medledger_transactions_accepted_total",
        "Transactions committed to the ledger by this node."
    );
    describe_counter!(
        "medledger_transactions_rejected_total",
        "Transactions refused, by rejection code."
    );
    describe_counter!(
        "medledger_blocks_refused_total",
        "Blocks a cluster follower refused to apply."
    );
    describe_counter!(
        "medledger_access_entries_total",
        "Access entries written for record-level reads."
    );
    describe_counter!(
        "medledger_access_log_failures_total",
        "Reads refused because their access entry could not be committed."
    );
    describe_counter!(
        "medledger_tokens_issued_total",
        "Access tokens issued by the token endpoint."
    );
    describe_counter!(
        "medledger_token_requests_refused_total",
        "Token requests refused, by OAuth error code."
    );
    describe_counter!(
        "medledger_raft_leader_changes_total",
        "Times this cluster node saw the leader change."
    );
    describe_gauge!(
        "medledger_block_height",
        "Height of the newest committed block."
    );
    describe_gauge!("medledger_log_size", "Leaves in the committed log.");
    describe_gauge!(
        "medledger_storage_failed",
        "1 once storage failed: writes stop until the node is restarted."
    );
    describe_histogram!(
        "medledger_block_transactions",
        "Transactions per committed block."
    );
    describe_histogram!(
        "medledger_commit_latency_seconds",
        Unit::Seconds,
        "Time from a submission reaching the sequencer to its outcome."
    );
    describe_histogram!(
        "medledger_fsync_seconds",
        Unit::Seconds,
        "Time the fsyncs of one block commit took."
    );
    // Counters without labels start at 0, so that rates and alerts on them
    // work before their first event.
    for name in [
        "medledger_http_shed_total",
        "medledger_http_body_timeouts_total",
        "medledger_http_connections_refused_total",
        "medledger_transactions_accepted_total",
        "medledger_blocks_refused_total",
        "medledger_access_entries_total",
        "medledger_access_log_failures_total",
        "medledger_tokens_issued_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
}

/// Opens the existing ledger in `dir`, as a cluster node's if it is one.
pub fn open(dir: &Path) -> Result<Ledger, medledger_ledger::LedgerError> {
    match dir.join(ClusterFile::NAME).exists() {
        true => Ledger::open_cluster(dir),
        false => Ledger::open(dir),
    }
}

/// Opens the ledger in `dir`, creating it first if there is none.
/// Returns the ledger and, if it was created, where the admin key is.
pub fn open_or_init(
    dir: &Path,
    origin: &str,
) -> Result<(Ledger, Option<std::path::PathBuf>), ServeError> {
    if dir.join("ledger.json").exists() {
        return Ok((open(dir)?, None));
    }
    let report = Ledger::init(dir, origin, "medledger")?;
    Ok((Ledger::open(dir)?, Some(report.admin_key)))
}

/// Environment variable that turns a cluster node into a faulty proposer
/// which admits every transaction unchecked (for failure tests only).
pub(crate) const FAULT_UNCHECKED: &str = "MEDLEDGER_FAULT_UNCHECKED_ADMISSION";

/// Directory of a data directory that holds integration accounts' keys.
pub const INTEGRATIONS_DIR: &str = "integrations";

/// Runs the node until `shutdown` resolves.
pub async fn serve(
    dir: &Path,
    ledger: Ledger,
    config: NodeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let started = std::time::Instant::now();
    let blocks = ledger.store.scrub()?;
    tracing::info!(
        blocks,
        seconds = started.elapsed().as_secs_f64(),
        "every stored block's checksum verified"
    );
    let cosigner = crate::http::cosign::node_cosigner(
        ledger.store.origin(),
        &ledger.node_key,
        config.cosigner_name.as_deref(),
    )?;
    let node_key = ledger.node_key.clone();
    let seq_config = SequencerConfig {
        max_block_txs: config.max_block_txs.max(1),
        ..SequencerConfig::default()
    };
    let (seq, log, cluster) = match ClusterFile::read(dir)? {
        None => {
            let (seq, log) = Sequencer::local(ledger, seq_config);
            (seq, log, None)
        }
        Some(file) => {
            let Ledger {
                store,
                state,
                node_key,
            } = ledger;
            let local = Some(config.listen.ip()).filter(|ip| !ip.is_unspecified());
            let trust = Arc::new(Trust::new(file.trust.iter().map(|k| k.0).collect()));
            let (network, tls) = match config.cluster_listen {
                None => (Network::new(local), None),
                Some(_) => {
                    let c = tls::configs(&node_key, trust.clone())?;
                    (Network::with_tls(local, &c.client), Some(c.server))
                }
            };
            let side = Arc::new(Ledgerside {
                store: Arc::new(store),
                state: std::sync::Mutex::new(state),
                commits: Arc::default(),
                own: std::sync::Mutex::default(),
                id: file.id,
                node: medledger_formats::keys::public_key(&node_key),
                network,
                redacted: Default::default(),
            });
            trust.attach(&side);
            let settings = RaftSettings {
                heartbeat_ms: config.raft_heartbeat_ms,
                snapshot_every: config.raft_snapshot_every,
                keep_logs: config.raft_keep_logs,
            };
            let cluster = Cluster::start(dir, file.id, side, &settings).await?;
            let sink = Arc::new(crate::cluster::RaftSink::new(
                cluster.clone(),
                tokio::runtime::Handle::current(),
            ));
            let state = cluster
                .side
                .state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let seq_config = SequencerConfig {
                // A faulty proposer, for the cluster's failure tests: its
                // sequencer admits anything, and only the state machines
                // stand in the way.
                fault_unchecked: std::env::var_os(FAULT_UNCHECKED).is_some(),
                ..seq_config
            };
            let log = Arc::new(Followers::new(
                cluster.side.store.clone(),
                cluster.side.commits.clone(),
            ));
            let seq = Sequencer::start_on(&log, state, node_key, sink, seq_config);
            (seq, log, Some((cluster, tls)))
        }
    };
    let seq = Arc::new(seq);
    let cluster_listen = config.cluster_listen;
    let (cluster, tls) = match cluster {
        Some((c, tls)) => (Some(c), tls),
        None => (None, None),
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(ServeError::Server)?;
    let limits = crate::http::edge::ConnLimits {
        per_peer: config.max_connections_per_peer.max(1),
        header_timeout: std::time::Duration::from_millis(config.header_read_timeout_ms.max(1)),
    };
    tracing::info!(%addr, dir = %dir.display(), "medledger node listening");
    let pseudonym_key = match &config.pseudonym_key {
        Some(path) => Some(crate::secrets::load_pseudonym_key(path)?),
        None => None,
    };
    let views = crate::views::Views::follow(&log, config.news2_window_minutes);
    let state = Arc::new(AppState {
        seq: seq.clone(),
        log: log.clone(),
        views,
        tokens: Tokens::new(dir),
        config: config.clone(),
        cluster: cluster.clone(),
        metrics: install_metrics(),
        health: crate::secrets::Health {
            pseudonym_key,
            signers: crate::secrets::Signers::new(Some(dir.join(INTEGRATIONS_DIR))),
        },
        cosigner: Arc::new(cosigner),
        peers: Arc::default(),
        budgets: crate::http::edge::Budgets::new(config.max_concurrency),
        node_key,
    });
    metrics::gauge!("medledger_storage_failed").set(0.0);
    if let Some(c) = &cluster {
        tokio::spawn(crate::cluster::follow_peers(c.clone(), state.peers.clone()));
    }
    let mut app = router(state.clone());
    if let Some(c) = &cluster {
        match (tls, cluster_listen) {
            // Node-to-node traffic only on its own mutual-TLS listener.
            (Some(tls), Some(at)) => {
                let tcp = tokio::net::TcpListener::bind(at)
                    .await
                    .map_err(|source| ServeError::Bind { addr: at, source })?;
                let tls = TlsListener::new(tcp, tls).map_err(ServeError::Server)?;
                tracing::info!(addr = %at, "cluster listener (mutual TLS)");
                tokio::spawn(axum::serve(tls, crate::cluster::routes(c.clone())).into_future());
            }
            _ => app = app.merge(crate::cluster::routes(c.clone())),
        }
    }
    let views = state.views.clone();
    let stopped = Arc::new(std::sync::Mutex::new(None));
    let raft_stopped = {
        let (cluster, stopped) = (cluster.clone(), stopped.clone());
        async move {
            match cluster {
                Some(c) => {
                    let why = crate::cluster::stopped(&c).await;
                    *stopped.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
                }
                None => std::future::pending().await,
            }
        }
    };
    let shutdown = async move {
        // A node whose Raft stopped (its storage failed) must not go on
        // serving as if it were part of the cluster: it shuts down, to be
        // restarted, and replays its Raft log on the way up.
        tokio::select! {
            () = shutdown => {}
            () = raft_stopped => {}
        }
        // Event streams never finish on their own; end them so that the
        // graceful shutdown does not wait for their clients.
        views.close();
    };
    crate::http::edge::serve(listener, app, limits, shutdown).await;
    drop(state);
    tracing::info!("draining: committing admitted transactions");
    // Connection tasks drop their router (and its clone of the state) just
    // after axum stops waiting for them, and a submission whose client went
    // away still runs on a blocking thread: wait for them, boundedly.
    let mut seq = seq;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let seq = loop {
        match Arc::try_unwrap(seq) {
            Ok(s) => break s,
            Err(still) if std::time::Instant::now() < deadline => {
                seq = still;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Err(_) => {
                return Err(ServeError::Shutdown(
                    "requests still hold the sequencer after 30 s".into(),
                ));
            }
        }
    };
    seq.shutdown().map_err(ServeError::Shutdown)?;
    log.stop();
    if let Some(c) = cluster
        && c.raft.shutdown().await.is_err()
    {
        return Err(ServeError::Shutdown("raft did not stop cleanly".into()));
    }
    if let Some(why) = stopped.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(crate::cluster::ClusterError::Raft(format!("stopped: {why}")).into());
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}
