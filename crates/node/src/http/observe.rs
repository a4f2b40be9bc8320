//! One access-log line and the request metrics for every request.
//!
//! The line (target `medledger::access`, level info) carries the request id,
//! method, route template, status, latency, response bytes where known, and
//! the key of the participant the bearer token authenticated, never the
//! token. `/metrics` counts requests by route template, method and status
//! class, and keeps a latency histogram per route template.

use axum::body::HttpBody as _;
use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The header that carries a request's id, taken from the client when it
/// sends a usable one and answered either way.
pub(crate) const REQUEST_ID: &str = "x-request-id";

/// Where a request notes the participant it authenticated as.
type CallerSlot = Arc<Mutex<Option<[u8; 32]>>>;

tokio::task_local! {
    /// The participant the request authenticated as, set by `authenticate`.
    static CALLER: CallerSlot;
}

/// Notes that the request being served authenticated as `key`.
pub(crate) fn note_caller(key: [u8; 32]) {
    // Outside a request (a test calling a handler directly) there is no
    // line to put it on.
    let _ = CALLER.try_with(|c| *c.lock().unwrap_or_else(|p| p.into_inner()) = Some(key));
}

/// Runs `f` on a blocking thread, where `authenticate` still notes the
/// caller on the request's line.
pub(crate) async fn spawn_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    match CALLER.try_with(Arc::clone) {
        Ok(slot) => tokio::task::spawn_blocking(move || CALLER.sync_scope(slot, f)).await,
        Err(_) => tokio::task::spawn_blocking(f).await,
    }
}

/// A client's request id if it is short printable ASCII, else a new one.
fn request_id(req: &Request) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let given = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()));
    match given {
        Some(v) => v.to_owned(),
        None => {
            let start = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            format!("{start:08x}{:08x}", NEXT.fetch_add(1, Ordering::Relaxed))
        }
    }
}

/// The status class label, e.g. `2xx`.
fn class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The middleware: serves the request, then logs and counts it.
pub(crate) async fn observe(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&req);
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let slot = CallerSlot::default();
    let mut resp = CALLER.scope(slot.clone(), next.run(req)).await;
    let caller = *slot.lock().unwrap_or_else(|p| p.into_inner());
    let latency = started.elapsed();
    let status = resp.status().as_u16();
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    let bytes = resp.body().size_hint().exact();
    let labels = [("route", route.clone()), ("method", method.to_string())];
    metrics::counter!(
        "medledger_http_requests_total",
        &[
            ("route", route.clone()),
            ("method", method.to_string()),
            ("status", class(status).to_owned()),
        ]
    )
    .increment(1);
    metrics::histogram!("medledger_http_request_duration_seconds", &labels)
        .record(latency.as_secs_f64());
    tracing::info!(
        target: "medledger::access",
        request_id = %id,
        method = %method,
        route = %route,
        status,
        latency_ms = latency.as_secs_f64() * 1e3,
        bytes,
        participant = caller.map(hex::encode),
        "request"
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(
            [100, 200, 204, 307, 404, 429, 500, 503].map(class),
            ["1xx", "2xx", "2xx", "3xx", "4xx", "4xx", "5xx", "5xx"]
        );
    }

    #[test]
    fn a_client_request_id_is_kept_only_when_printable_and_short() {
        let with = |v: &str| {
            let req = Request::builder()
                .header(REQUEST_ID, v)
                .body(axum::body::Body::empty())
                .unwrap();
            request_id(&req)
        };
        assert_eq!(with("engine-42"), "engine-42");
        for bad in ["", "has space", &"x".repeat(65)] {
            let id = with(bad);
            assert_ne!(id, bad);
            assert_eq!(id.len(), 16, "{id}");
        }
    }
}
