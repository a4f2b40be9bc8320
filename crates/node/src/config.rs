//! Node configuration: a TOML file, then `MEDLEDGER_*` environment overrides.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Node settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Requests served at once, counted apart for writes (POST) and for
    /// reads; more get 429.
    pub max_concurrency: usize,
    /// Time allowed for a request's headers to arrive, ms.
    pub header_read_timeout_ms: u64,
    /// Time allowed for a whole request body to arrive, ms (else 408).
    pub body_read_timeout_ms: u64,
    /// Connections one IP address may hold open at once.
    pub max_connections_per_peer: usize,
    /// Most transactions in one POST.
    pub max_batch: usize,
    /// Most transactions in one block.
    pub max_block_txs: usize,
    /// Tracing filter, e.g. `info` or `medledger=debug`.
    pub log: String,
    /// Log lines as `text` (for people) or `json` (one object a line, for
    /// log collectors).
    pub log_format: LogFormat,
    /// The pseudonymization authority's key file; a node with one serves
    /// `POST /v1/pseudonyms`. Only the authority's own node sets it.
    pub pseudonym_key: Option<std::path::PathBuf>,
    /// NEWS2 scores a patient's latest reading of each parameter taken
    /// within this many minutes of the patient's newest reading.
    pub news2_window_minutes: u64,
    /// Statistics suppress counts from 1 to `stats_k - 1` (at least 2).
    pub stats_k: u64,
    /// Cluster: serve node-to-node traffic here over mutual TLS (node keys
    /// as raw public keys) instead of plain HTTP on `listen`.
    pub cluster_listen: Option<SocketAddr>,
    /// Cluster: Raft heartbeat interval in ms; an election starts after 3
    /// to 6 heartbeats without a leader.
    pub raft_heartbeat_ms: u64,
    /// Cluster: Raft entries (blocks) between snapshots, after which older
    /// entries are purged from the Raft log.
    pub raft_snapshot_every: u64,
    /// Cluster: Raft entries kept behind a snapshot for slow followers.
    pub raft_keep_logs: u64,
    /// The key name this node cosigns checkpoints under; by default
    /// `<origin>/cosigner/<first 16 hex digits of the node public key>`.
    pub cosigner_name: Option<String>,
    /// The base URL clients reach this node's API by (e.g.
    /// `https://node1.example`); the token endpoint accepts client
    /// assertions whose `aud` is this URL followed by `/v1/token`. Without
    /// it, `aud` must be `http://<listen>/v1/token`.
    pub public_url: Option<String>,
    /// Lifetime of the access tokens this node issues, seconds.
    pub access_token_ttl_s: u64,
    /// Longest a record-level read waits for its access entry to be
    /// committed, ms; past it the read is refused (503) and returns nothing.
    /// At most 60 s, the limit every request has anyway.
    pub access_log_timeout_ms: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            max_body_bytes: 16 << 20,
            max_concurrency: 512,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            max_connections_per_peer: 256,
            max_batch: 10_000,
            max_block_txs: 8192,
            log: "info".into(),
            log_format: LogFormat::Text,
            pseudonym_key: None,
            news2_window_minutes: 60,
            stats_k: 5,
            cluster_listen: None,
            raft_heartbeat_ms: 150,
            raft_snapshot_every: 2000,
            raft_keep_logs: 500,
            cosigner_name: None,
            public_url: None,
            access_token_ttl_s: 900,
            access_log_timeout_ms: 10_000,
        }
    }
}

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The error.
        source: toml::de::Error,
    },
    /// A setting is out of its range.
    #[error("{0}")]
    Invalid(String),
    /// An environment override does not parse.
    #[error("environment variable {name}: cannot parse {value:?}")]
    Env {
        /// Variable.
        name: &'static str,
        /// Value.
        value: String,
    },
}

impl NodeConfig {
    /// The `aud` a client assertion must carry: the token endpoint's URL,
    /// from `public_url` or else from `listen`.
    pub fn token_audience(&self) -> String {
        let base = match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        };
        format!("{base}{}", crate::oauth::TOKEN_PATH)
    }

    /// Loads `file` if given (or `DIR/medledger.toml` if it exists), then
    /// applies environment overrides.
    pub fn load(file: Option<&Path>, data_dir: &Path) -> Result<Self, ConfigError> {
        let default_file = data_dir.join("medledger.toml");
        let path = match file {
            Some(f) => Some(f.to_path_buf()),
            None if default_file.exists() => Some(default_file),
            None => None,
        };
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(&p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: p.display().to_string(),
                    source,
                })?
            }
            None => NodeConfig::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        Ok(cfg)
    }

    fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(name: &'static str, v: String) -> Result<T, ConfigError> {
            v.parse().map_err(|_| ConfigError::Env { name, value: v })
        }
        if let Some(v) = get("MEDLEDGER_LISTEN") {
            self.listen = parse("MEDLEDGER_LISTEN", v)?;
        }
        if let Some(v) = get("MEDLEDGER_MAX_BODY_BYTES") {
            self.max_body_bytes = parse("MEDLEDGER_MAX_BODY_BYTES", v)?;
        }
        if let Some(v) = get("MEDLEDGER_MAX_CONCURRENCY") {
            self.max_concurrency = parse("MEDLEDGER_MAX_CONCURRENCY", v)?;
        }
        if let Some(v) = get("MEDLEDGER_HEADER_READ_TIMEOUT_MS") {
            self.header_read_timeout_ms = parse("MEDLEDGER_HEADER_READ_TIMEOUT_MS", v)?;
        }
        if let Some(v) = get("MEDLEDGER_BODY_READ_TIMEOUT_MS") {
            self.body_read_timeout_ms = parse("MEDLEDGER_BODY_READ_TIMEOUT_MS", v)?;
        }
        if let Some(v) = get("MEDLEDGER_MAX_CONNECTIONS_PER_PEER") {
            self.max_connections_per_peer = parse("MEDLEDGER_MAX_CONNECTIONS_PER_PEER", v)?;
        }
        if let Some(v) = get("MEDLEDGER_MAX_BATCH") {
            self.max_batch = parse("MEDLEDGER_MAX_BATCH", v)?;
        }
        if let Some(v) = get("MEDLEDGER_MAX_BLOCK_TXS") {
            self.max_block_txs = parse("MEDLEDGER_MAX_BLOCK_TXS", v)?;
        }
        if let Some(v) = get("MEDLEDGER_LOG") {
            self.log = v;
        }
        if let Some(v) = get("MEDLEDGER_LOG_FORMAT") {
            self.log_format = match v.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => {
                    return Err(ConfigError::Env {
                        name: "MEDLEDGER_LOG_FORMAT",
                        value: v,
                    });
                }
            };
        }
        if let Some(v) = get("MEDLEDGER_PSEUDONYM_KEY") {
            self.pseudonym_key = Some(v.into());
        }
        if let Some(v) = get("MEDLEDGER_NEWS2_WINDOW_MINUTES") {
            self.news2_window_minutes = parse("MEDLEDGER_NEWS2_WINDOW_MINUTES", v)?;
        }
        if let Some(v) = get("MEDLEDGER_STATS_K") {
            self.stats_k = parse("MEDLEDGER_STATS_K", v)?;
        }
        if let Some(v) = get("MEDLEDGER_CLUSTER_LISTEN") {
            self.cluster_listen = Some(parse("MEDLEDGER_CLUSTER_LISTEN", v)?);
        }
        if let Some(v) = get("MEDLEDGER_RAFT_HEARTBEAT_MS") {
            self.raft_heartbeat_ms = parse("MEDLEDGER_RAFT_HEARTBEAT_MS", v)?;
        }
        if let Some(v) = get("MEDLEDGER_RAFT_SNAPSHOT_EVERY") {
            self.raft_snapshot_every = parse("MEDLEDGER_RAFT_SNAPSHOT_EVERY", v)?;
        }
        if let Some(v) = get("MEDLEDGER_RAFT_KEEP_LOGS") {
            self.raft_keep_logs = parse("MEDLEDGER_RAFT_KEEP_LOGS", v)?;
        }
        if !(20..=10_000).contains(&self.raft_heartbeat_ms) {
            return Err(ConfigError::Invalid(
                "raft_heartbeat_ms must lie in 20..=10000".into(),
            ));
        }
        if self.raft_snapshot_every == 0 {
            return Err(ConfigError::Invalid(
                "raft_snapshot_every must be at least 1".into(),
            ));
        }
        if let Some(v) = get("MEDLEDGER_COSIGNER_NAME") {
            self.cosigner_name = Some(v);
        }
        if let Some(v) = get("MEDLEDGER_PUBLIC_URL") {
            self.public_url = Some(v);
        }
        if let Some(v) = get("MEDLEDGER_ACCESS_TOKEN_TTL_S") {
            self.access_token_ttl_s = parse("MEDLEDGER_ACCESS_TOKEN_TTL_S", v)?;
        }
        if !(60..=3600).contains(&self.access_token_ttl_s) {
            return Err(ConfigError::Invalid(
                "access_token_ttl_s must lie in 60..=3600".into(),
            ));
        }
        if let Some(v) = get("MEDLEDGER_ACCESS_LOG_TIMEOUT_MS") {
            self.access_log_timeout_ms = parse("MEDLEDGER_ACCESS_LOG_TIMEOUT_MS", v)?;
        }
        if !(100..=60_000).contains(&self.access_log_timeout_ms) {
            return Err(ConfigError::Invalid(
                "access_log_timeout_ms must lie in 100..=60000".into(),
            ));
        }
        if let Some(u) = &self.public_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(ConfigError::Invalid(
                "public_url must start with http:// or https://".into(),
            ));
        }
        if self.stats_k < 2 {
            return Err(ConfigError::Invalid(
                "stats_k must be at least 2: k = 1 would publish every small count".into(),
            ));
        }
        if !(1..=7 * 24 * 60).contains(&self.news2_window_minutes) {
            return Err(ConfigError::Invalid(
                "news2_window_minutes must lie in 1..=10080 (a week)".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment() {
        let mut cfg: NodeConfig =
            toml::from_str("listen = \"0.0.0.0:9000\"\nmax_batch = 5\n").unwrap();
        assert_eq!(cfg.max_batch, 5);
        assert_eq!(cfg.max_concurrency, NodeConfig::default().max_concurrency);
        cfg.apply_env(|k| (k == "MEDLEDGER_MAX_BATCH").then(|| "7".to_string()))
            .unwrap();
        assert_eq!(cfg.max_batch, 7);
        assert_eq!(cfg.listen.port(), 9000);
        assert!(
            cfg.apply_env(|k| (k == "MEDLEDGER_LISTEN").then(|| "nope".into()))
                .is_err()
        );
        assert!(toml::from_str::<NodeConfig>("bogus = 1").is_err());
        assert_eq!(cfg.cosigner_name, None);
        let mut cfg: NodeConfig = toml::from_str("cosigner_name = \"n1.example/c\"\n").unwrap();
        assert_eq!(cfg.cosigner_name.as_deref(), Some("n1.example/c"));
        cfg.apply_env(|k| (k == "MEDLEDGER_COSIGNER_NAME").then(|| "n2.example/c".into()))
            .unwrap();
        assert_eq!(cfg.cosigner_name.as_deref(), Some("n2.example/c"));
        let mut cfg = NodeConfig::default();
        assert!(
            cfg.apply_env(|k| (k == "MEDLEDGER_STATS_K").then(|| "1".into()))
                .is_err()
        );
    }

    #[test]
    fn access_log_timeout_is_bounded() {
        let set = |v: &str| {
            let mut cfg = NodeConfig::default();
            let v = v.to_owned();
            cfg.apply_env(|k| (k == "MEDLEDGER_ACCESS_LOG_TIMEOUT_MS").then(|| v.clone()))
                .map(|()| cfg.access_log_timeout_ms)
        };
        assert_eq!(NodeConfig::default().access_log_timeout_ms, 10_000);
        assert_eq!(set("100").unwrap(), 100);
        assert_eq!(set("60000").unwrap(), 60_000);
        for bad in ["99", "60001", "0", "ten"] {
            assert!(set(bad).is_err(), "{bad}");
        }
    }
}
