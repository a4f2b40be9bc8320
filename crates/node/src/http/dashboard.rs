//! The web dashboard: plain HTML, JavaScript and CSS compiled into the
//! binary, so a node serves it with no build step and no network access.
//! The pages read the public API and, with a token the user pastes, the
//! gated parts; they add no endpoint of their own.

use crate::http::problem::Problem;
use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::header;
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../../dashboard/index.html");
const APP_JS: &str = include_str!("../../dashboard/app.js");
const APP_CSS: &str = include_str!("../../dashboard/app.css");
/// `index.js` of the npm package @noble/ed25519 3.2.0 (MIT), unchanged: the
/// browser's Ed25519 verifier, with ZIP-215 semantics like
/// `medledger_formats::sig`. WebCrypto's Ed25519 follows RFC 8032's
/// cofactorless rule, which would disagree with the node on signatures
/// with a torsion component; noble's 2.x releases hash re-encoded points
/// and so disagree on non-canonical R (speccheck case 8 and 9).
const NOBLE_ED25519_JS: &str = include_str!("../../dashboard/noble-ed25519.js");

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

/// `GET /dashboard/{asset}`: its script, the Ed25519 library it imports and
/// its style sheet.
pub(crate) async fn file(name: Result<Path<String>, PathRejection>) -> Result<Response, Problem> {
    let Ok(Path(name)) = name else {
        return Err(Problem::not_found("no such dashboard file"));
    };
    match name.as_str() {
        "app.js" => Ok(asset(APP_JS, "text/javascript; charset=utf-8")),
        "app.css" => Ok(asset(APP_CSS, "text/css; charset=utf-8")),
        "noble-ed25519.js" => Ok(asset(NOBLE_ED25519_JS, "text/javascript; charset=utf-8")),
        _ => Err(Problem::not_found(format!("no dashboard file {name}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// The vendored library is byte for byte the published one (SHA-256 of
    /// `package/index.js` in the registry's tarball, whose integrity is
    /// sha512-criDgRlnUA09hchYrTy/JUWPIEap5rZxQe6wDWzRx51oWWpDRcUpuNzlgPxDJaOK6AsW9c0wKcj3rKRv6t+bPQ==),
    /// with its license header, and the dashboard imports it from here.
    #[test]
    fn vendored_noble_ed25519_is_the_published_file() {
        assert_eq!(
            hex::encode(Sha256::digest(NOBLE_ED25519_JS)),
            "a4f631d1876b5d9e43a86cd71194ca27b5e1451edf4ba4db9a418f40a475569a"
        );
        assert!(NOBLE_ED25519_JS.starts_with(
            "/*! noble-ed25519 - MIT License (c) 2019 Paul Miller (paulmillr.com) */"
        ));
        assert!(APP_JS.contains("from './noble-ed25519.js';"));
    }
}
