//! medledger node, in the order data flows through it: the write path
//! (`pipeline`: admission, the sequencer and its sinks), the cluster (a Raft
//! sink and state machine), the views that follow the committed log, and
//! the HTTP API that institutions run ([`http`]). `serve` wires them.
//!
//! The modules are private; what the CLI and the tests use is re-exported
//! here. [`http`] stays a public module because it is a facade of its own.

// Everything public is re-exported below, and nothing else is public.
#![warn(unreachable_pub, unnameable_types)]

mod cluster;
mod config;
pub mod http;
mod oauth;
mod pipeline;
mod secrets;
mod serve;
mod tokens;
mod views;

// Cluster mode: the Raft storage, network and TLS between nodes, and the
// types openraft names through `TypeConfig` and its traits.
pub use cluster::tls::{TlsConfigs, Trust, configs as tls_configs};
pub use cluster::{
    Builder as SnapshotBuilder, Cluster, ClusterError, ClusterFile, Connection as PeerConnection,
    Ledgerside, LogStore, Network, Outcome as ProposalOutcome, Proposal, RaftDb, RedactedSince,
    Refusal, StateMachine, TypeConfig, fetch_blocks,
};
// The node's configuration file.
pub use config::{ConfigError, LogFormat, NodeConfig};
// The write path: admission and the sequencer.
pub use pipeline::{Receipt, Sequencer, SequencerConfig, SubmitError, Waiting};
// Keys the node holds for integrations and the pseudonymization authority.
pub use secrets::{Health, SecretError, Signers, load_pseudonym_key};
// Opening the ledger and running the node.
pub use serve::{
    INTEGRATIONS_DIR, ServeError, open as open_ledger, open_or_init as open_or_init_ledger, serve,
    shutdown_signal,
};
// Tokens of the token endpoint: client assertions and access tokens.
pub use oauth::{
    ASSERTION_TYPE, AccessClaims, AssertionClaims, LEEWAY_S, MAX_ASSERTION_S, PURPOSE_SCOPE,
    SYSTEM_SCOPES, TOKEN_PATH, TokenError, sign_access_token, sign_assertion,
};
// Bearer tokens for participants.
pub use tokens::{TOKEN_PREFIX, Tokens, issue as issue_token, revoke as revoke_token};
// Read models that follow the committed log.
pub use views::Views;
