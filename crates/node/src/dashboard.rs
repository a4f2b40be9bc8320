//! The web dashboard: plain HTML, JavaScript and CSS compiled into the
//! binary, so a node serves it with no build step and no network access.
//! The pages read the public API and, with a token the user pastes, the
//! gated parts; they add no endpoint of their own.

use crate::problem::Problem;
use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::header;
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../dashboard/index.html");
const APP_JS: &str = include_str!("../dashboard/app.js");
const APP_CSS: &str = include_str!("../dashboard/app.css");

/// Pages may load only what the node serves: no CDN, no inline script.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the dashboard.
pub(crate) async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

/// `GET /dashboard/{asset}`: its script and style sheet.
pub(crate) async fn file(name: Result<Path<String>, PathRejection>) -> Result<Response, Problem> {
    let Ok(Path(name)) = name else {
        return Err(Problem::not_found("no such dashboard file"));
    };
    match name.as_str() {
        "app.js" => Ok(asset(APP_JS, "text/javascript; charset=utf-8")),
        "app.css" => Ok(asset(APP_CSS, "text/css; charset=utf-8")),
        _ => Err(Problem::not_found(format!("no dashboard file {name}"))),
    }
}
