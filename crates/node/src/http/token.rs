//! `POST /v1/token`: the client-credentials grant of SMART Backend
//! Services. A participant signs a JWT assertion with its registered key
//! (RFC 7523); the node answers with an access token signed by its node
//! key, which every node of the ledger accepts until it expires or the
//! participant is revoked. Errors are OAuth 2.0's (RFC 6749 section 5.2),
//! not problem details: token clients expect nothing else.

use crate::http::request::{AppState, Shared};
use crate::oauth::{self, ASSERTION_TYPE, AccessClaims, TokenError};
use crate::tokens::JtiRefusal;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use medledger_formats::keys;
use medledger_ledger::{now_ms, purposes};
use serde_json::json;
use std::collections::HashMap;

/// The grant type of SMART Backend Services.
const GRANT_TYPE: &str = "client_credentials";
/// Largest form body read, bytes: an assertion is well under 1 KiB.
const MAX_FORM: usize = 16 << 10;

/// An OAuth 2.0 error response (RFC 6749 section 5.2).
#[derive(Debug)]
pub(crate) struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
        }
    }

    fn request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }
}

impl From<TokenError> for OAuthError {
    fn from(e: TokenError) -> Self {
        let status = match e.oauth_code() {
            "invalid_client" => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        };
        OAuthError::new(status, e.oauth_code(), e.to_string())
    }
}

/// RFC 6749 section 5.1: token responses, and errors, are never cached.
fn no_store(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "error_description": self.description});
        let mut resp = (self.status, axum::Json(body)).into_response();
        no_store(&mut resp);
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 9110 section 15.5.2: a 401 names a scheme.
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"medledger\""),
            );
        }
        resp
    }
}

/// The parameters of a form body, each given at most once (RFC 6749
/// section 3.2).
fn form(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(OAuthError::request(
            "send the token request as application/x-www-form-urlencoded",
        ));
    }
    if body.len() > MAX_FORM {
        return Err(OAuthError::request(format!(
            "a token request holds at most {MAX_FORM} bytes"
        )));
    }
    let mut params = HashMap::new();
    for (k, v) in form_urlencoded::parse(body) {
        if params.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(OAuthError::request(format!("parameter {k} is given twice")));
        }
    }
    Ok(params)
}

fn required<'a>(params: &'a HashMap<String, String>, name: &str) -> Result<&'a str, OAuthError> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| OAuthError::request(format!("parameter {name} is required")))
}

/// Handles `POST /v1/token`.
pub(crate) async fn token(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return OAuthError::request(e.body_text()).into_response(),
    };
    match grant(&state, &headers, &body) {
        Ok(mut resp) => {
            no_store(&mut resp);
            resp
        }
        Err(e) => {
            metrics::counter!("medledger_token_requests_refused_total", "error" => e.error)
                .increment(1);
            e.into_response()
        }
    }
}

fn grant(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Response, OAuthError> {
    let params = form(headers, body)?;
    let grant_type = required(&params, "grant_type")?;
    if grant_type != GRANT_TYPE {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("only grant_type={GRANT_TYPE} is supported"),
        ));
    }
    if required(&params, "client_assertion_type")? != ASSERTION_TYPE {
        return Err(OAuthError::request(format!(
            "client_assertion_type must be {ASSERTION_TYPE}"
        )));
    }
    let assertion = required(&params, "client_assertion")?;
    let key = oauth::assertion_key(assertion)?;
    let store = state.log.store();
    let participant = store
        .participant(&key.0)
        .map_err(|e| {
            tracing::error!(error = %e, "participant lookup failed");
            OAuthError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the ledger could not be read; try again",
            )
        })?
        .ok_or_else(|| TokenError::Unknown(key.to_hex()))?;
    let now_s = now_ms() / 1000;
    let audience = state.config.token_audience();
    let asserted = oauth::verify_assertion(assertion, &key, &audience, now_s)?;
    // Only a holder of the key learns that it was revoked.
    if participant.revoked_at.is_some() {
        return Err(TokenError::Revoked(key.to_hex()).into());
    }
    let (granted, scope) = oauth::grant_scope(
        params.get("scope").map(String::as_str),
        purposes(participant.role),
    )?;
    match state
        .tokens
        .take_jti(key, &asserted.jti, asserted.exp, now_s)
    {
        Ok(()) => {}
        Err(JtiRefusal::Replayed) => return Err(TokenError::Replayed.into()),
        Err(JtiRefusal::Full) => {
            return Err(OAuthError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "too many token requests at once; try again shortly",
            ));
        }
    }
    let server_error = |what: String| {
        tracing::error!(error = %what, "issuing an access token failed");
        OAuthError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the node could not issue a token",
        )
    };
    let jti = keys::random_bytes::<16>().map_err(|e| server_error(e.to_string()))?;
    let ttl = state.config.access_token_ttl_s;
    let claims = AccessClaims {
        iss: keys::public_key(&state.node_key).to_hex(),
        sub: key.to_hex(),
        aud: store.origin().to_owned(),
        iat: now_s,
        exp: now_s + ttl,
        jti: hex::encode(jti),
        scope: scope.clone(),
        purpose_of_use: granted.iter().map(|p| p.code().to_owned()).collect(),
    };
    let token = oauth::sign_access_token(&state.node_key, &claims).map_err(server_error)?;
    metrics::counter!("medledger_tokens_issued_total").increment(1);
    Ok((
        StatusCode::OK,
        axum::Json(json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": ttl,
            "scope": scope,
        })),
    )
        .into_response())
}
