//! The node's HTTP edge: connections and request bodies are bounded in
//! time and number before a request may hold any of the node's capacity,
//! so a slow or hostile client ties up only its own connections.
//!
//! - A peer (IP address) may hold at most `max_connections_per_peer`
//!   connections; more are closed at once.
//! - Request headers must arrive within `header_read_timeout_ms`.
//! - A `Content-Length` above the body limit is answered 413 at once; a
//!   body must arrive whole within `body_read_timeout_ms` (else 408).
//! - Only then does a request take a permit from its budget: writes and
//!   reads have one each, so a write flood never starves reads of
//!   checkpoints and proofs. With no permit left the answer is 429.

use crate::http::problem::Problem;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// The concurrency budgets: permits for requests that write and for
/// requests that read, counted apart.
#[derive(Clone)]
pub struct Budgets {
    /// Permits for writes (every POST).
    pub writes: Arc<Semaphore>,
    /// Permits for everything else.
    pub reads: Arc<Semaphore>,
}

impl Budgets {
    /// `each` permits for writes and `each` for reads.
    pub fn new(each: usize) -> Self {
        Budgets {
            writes: Arc::new(Semaphore::new(each.max(1))),
            reads: Arc::new(Semaphore::new(each.max(1))),
        }
    }
}

/// What the request edge needs to know.
#[derive(Clone)]
pub(crate) struct Edge {
    /// The budgets.
    pub budgets: Budgets,
    /// Largest request body, bytes.
    pub max_body: usize,
    /// Time allowed for a whole request body to arrive.
    pub body_timeout: Duration,
    /// Renders a problem as a FHIR OperationOutcome, for requests under
    /// `/fhir`, whose clients expect nothing else.
    pub fhir_errors: fn(Problem) -> Response,
}

impl Edge {
    fn reply(&self, fhir: bool, p: Problem) -> Response {
        if fhir {
            (self.fhir_errors)(p)
        } else {
            p.into_response()
        }
    }
}

fn too_large(max: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("request body exceeds {max} bytes"),
    )
}

/// Reads the whole body within the time allowed, then takes a permit of
/// the request's budget and runs it.
pub(crate) async fn admit(State(edge): State<Edge>, req: Request, next: Next) -> Response {
    let fhir = req.uri().path().starts_with("/fhir");
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > edge.max_body as u64) {
        return edge.reply(fhir, too_large(edge.max_body));
    }
    let (parts, body) = req.into_parts();
    let read = axum::body::to_bytes(body, edge.max_body);
    let bytes = match tokio::time::timeout(edge.body_timeout, read).await {
        Err(_) => {
            metrics::counter!("medledger_http_body_timeouts_total").increment(1);
            let p = Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the request body did not arrive within {} s",
                    edge.body_timeout.as_secs()
                ),
            );
            return edge.reply(fhir, p);
        }
        Ok(Err(_)) => return edge.reply(fhir, too_large(edge.max_body)),
        Ok(Ok(b)) => b,
    };
    let budget = if parts.method == Method::POST {
        &edge.budgets.writes
    } else {
        &edge.budgets.reads
    };
    let Ok(_permit) = budget.clone().try_acquire_owned() else {
        metrics::counter!("medledger_http_shed_total").increment(1);
        let p = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "the node is at its concurrency limit; retry later",
        );
        return edge.reply(fhir, p);
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Limits on connections.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnLimits {
    /// Connections one IP address may hold at once.
    pub per_peer: usize,
    /// Time allowed for a request's headers to arrive.
    pub header_timeout: Duration,
}

/// One peer's place among the open connections; freed when dropped.
struct Slot {
    peers: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Slot {
    fn take(peers: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, max: usize) -> Option<Slot> {
        let mut map = peers.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot {
            peers: peers.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets open
/// requests finish.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let peers = Arc::new(Mutex::new(HashMap::new()));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, for instance: wait, never spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = Slot::take(&peers, peer.ip(), limits.per_peer) else {
            metrics::counter!("medledger_http_connections_refused_total").increment(1);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
