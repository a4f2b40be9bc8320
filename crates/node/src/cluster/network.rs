//! Node-to-node traffic: Raft RPCs as postcard bodies over HTTP under
//! `/raft/`, and block fetches for catching up.

use super::{Cluster, ClusterError, Proposal, TypeConfig};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use medledger_formats::block::Block;
use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

/// Most bytes of blocks served by one fetch.
const FETCH_BYTES: usize = 32 << 20;

/// Largest Raft or fetch message accepted.
const MAX_MESSAGE: usize = 512 << 20;

/// The mutual-TLS client: hyper with rustls (ring), presenting the node key.
type TlsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<Bytes>,
>;

/// Makes connections to peers; one HTTP client (and its pool) for all.
#[derive(Clone)]
pub struct Network {
    plain: reqwest::Client,
    tls: Option<TlsClient>,
}

/// Why a peer did not answer.
enum Failure {
    /// No connection (or no answer in time).
    Unreachable(String),
    /// It answered with an error status.
    Status(u16),
}

impl Network {
    /// A network of plain HTTP whose connections leave from `local` (the
    /// address the node listens on, so peers and firewalls see one address
    /// per node).
    pub fn new(local: Option<std::net::IpAddr>) -> Self {
        Network {
            plain: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(2))
                .local_address(local)
                .build()
                .unwrap_or_default(),
            tls: None,
        }
    }

    /// A network that speaks only mutual TLS (`https://` peers) with
    /// `config` (see [`super::tls::configs`]).
    pub fn with_tls(local: Option<std::net::IpAddr>, config: &rustls::ClientConfig) -> Self {
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_local_address(local);
        http.set_connect_timeout(Some(Duration::from_secs(2)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config.clone())
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https);
        Network {
            plain: Self::new(local).plain,
            tls: Some(client),
        }
    }

    /// Sends a request and reads the whole answer within `timeout`.
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Bytes, Failure> {
        let unreachable = |e: &dyn std::fmt::Display| Failure::Unreachable(e.to_string());
        match &self.tls {
            None => {
                let resp = self
                    .plain
                    .request(method, url)
                    .timeout(timeout)
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| unreachable(&e))?;
                if !resp.status().is_success() {
                    return Err(Failure::Status(resp.status().as_u16()));
                }
                resp.bytes().await.map_err(|e| unreachable(&e))
            }
            Some(client) => {
                let req = axum::http::Request::builder()
                    .method(method)
                    .uri(url)
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .body(http_body_util::Full::new(Bytes::from(body)))
                    .map_err(|e| unreachable(&e))?;
                let call = async {
                    let resp = client.request(req).await.map_err(|e| unreachable(&e))?;
                    if !resp.status().is_success() {
                        return Err(Failure::Status(resp.status().as_u16()));
                    }
                    use http_body_util::BodyExt;
                    let body = resp
                        .into_body()
                        .collect()
                        .await
                        .map_err(|e| unreachable(&e))?;
                    Ok(body.to_bytes())
                };
                tokio::time::timeout(timeout, call)
                    .await
                    .map_err(|e| unreachable(&e))?
            }
        }
    }
}

/// A connection to one peer.
pub struct Connection {
    network: Network,
    target: u64,
    addr: String,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Connection {
        Connection {
            network: self.clone(),
            target,
            addr: node.addr.trim_end_matches('/').to_owned(),
        }
    }
}

type RpcResult<T, E> = Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>;

impl Connection {
    async fn call<
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    >(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E> {
        let body =
            postcard::to_allocvec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let url = format!("{}/raft/{path}", self.addr);
        let bytes = match self
            .network
            .send(reqwest::Method::POST, &url, body, option.hard_ttl())
            .await
        {
            Ok(b) => b,
            Err(Failure::Unreachable(e)) => {
                return Err(RPCError::Unreachable(Unreachable::new(
                    &std::io::Error::other(e),
                )));
            }
            Err(Failure::Status(status)) => {
                return Err(RPCError::Network(NetworkError::new(
                    &std::io::Error::other(format!("{path}: HTTP {status}")),
                )));
            }
        };
        let answer: Result<Resp, RaftError<u64, E>> =
            postcard::from_bytes(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>, openraft::error::Infallible> {
        self.call("append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        self.call("snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>, openraft::error::Infallible> {
        self.call("vote", &rpc, &option).await
    }
}

/// The `/raft/` routes a cluster node serves to its peers.
pub(crate) fn routes(cluster: Arc<Cluster>) -> Router {
    Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/snapshot", post(snapshot))
        .route("/raft/blocks", get(blocks))
        .layer(DefaultBodyLimit::max(MAX_MESSAGE))
        .with_state(cluster)
}

fn binary<T: Serialize>(value: &T) -> Response {
    match postcard::to_allocvec(value) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    postcard::from_bytes(body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("undecodable message: {e}")).into_response())
}

async fn append(State(c): State<Arc<Cluster>>, body: Bytes) -> Response {
    match parse::<AppendEntriesRequest<TypeConfig>>(&body) {
        Ok(req) => binary(&c.raft.append_entries(req).await),
        Err(r) => r,
    }
}

async fn vote(State(c): State<Arc<Cluster>>, body: Bytes) -> Response {
    match parse::<VoteRequest<u64>>(&body) {
        Ok(req) => binary(&c.raft.vote(req).await),
        Err(r) => r,
    }
}

async fn snapshot(State(c): State<Arc<Cluster>>, body: Bytes) -> Response {
    match parse::<InstallSnapshotRequest<TypeConfig>>(&body) {
        Ok(req) => binary(&c.raft.install_snapshot(req).await),
        Err(r) => r,
    }
}

#[derive(serde::Deserialize)]
struct Range {
    from: u64,
    to: u64,
}

/// Committed blocks `from..to` (as many as fit in one answer), as postcard
/// [`Proposal`]s. Only blocks this node has applied, hence validated.
async fn blocks(State(c): State<Arc<Cluster>>, Query(r): Query<Range>) -> Response {
    let store = c.side.store.clone();
    let result = tokio::task::spawn_blocking(move || {
        let end = r.to.min(store.last().map_or(0, |h| h.header().height + 1));
        let mut out = Vec::new();
        let mut bytes = 0;
        for height in r.from..end {
            let block = store.block(height).map_err(|e| e.to_string())?;
            let p = Proposal::of(&block);
            bytes += p.block.len() + p.payloads.len();
            out.push(p);
            if bytes >= FETCH_BYTES {
                break;
            }
        }
        Ok::<_, String>(out)
    })
    .await;
    match result {
        Ok(Ok(blocks)) => binary(&blocks),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Fetches committed blocks from `from` up to `to` from whichever peer
/// answers, retrying for up to `patience` while none does. Runs on a
/// blocking thread of the runtime.
pub fn fetch_blocks(
    network: &Network,
    peers: &[String],
    from: u64,
    to: u64,
    patience: Duration,
) -> Result<Vec<Block>, ClusterError> {
    let handle =
        tokio::runtime::Handle::try_current().map_err(|e| ClusterError::Task(e.to_string()))?;
    let deadline = std::time::Instant::now() + patience;
    let mut last = String::from("no peers to fetch blocks from");
    loop {
        for peer in peers {
            let url = format!(
                "{}/raft/blocks?from={from}&to={to}",
                peer.trim_end_matches('/')
            );
            let got = handle
                .block_on(network.send(
                    reqwest::Method::GET,
                    &url,
                    Vec::new(),
                    Duration::from_secs(120),
                ))
                .map_err(|e| match e {
                    Failure::Unreachable(e) => e,
                    Failure::Status(s) => format!("HTTP {s}"),
                });
            let blocks = got.and_then(|bytes| {
                let proposals: Vec<Proposal> =
                    postcard::from_bytes(&bytes).map_err(|e| e.to_string())?;
                proposals
                    .iter()
                    .map(|p| p.block().map_err(|e| e.to_string()))
                    .collect::<Result<Vec<_>, _>>()
            });
            match blocks {
                Ok(b) if !b.is_empty() && b[0].header.header().height == from => return Ok(b),
                Ok(_) => last = format!("{peer} has no block {from} yet"),
                Err(e) => last = format!("{peer}: {e}"),
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(ClusterError::Fetch { height: from, last });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
