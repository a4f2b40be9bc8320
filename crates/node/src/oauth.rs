//! Tokens of the token endpoint, after SMART Backend Services: a client
//! proves a registered key with a signed assertion (RFC 7523, alg EdDSA),
//! and the node answers with an access token that is itself a JWT signed by
//! its node key, so that every node of the ledger can check it.
//!
//! This module does no I/O and reads no clock: the caller passes the time
//! and looks the keys up on the ledger.
//!
//! Client assertion (header `{"alg":"EdDSA"}`, `typ` and `kid` optional):
//! `iss` = `sub` = the participant's public key in hex (64 digits, as the
//! ledger writes it), `aud` = the token endpoint's URL (a string, or an
//! array holding it), `exp` at most [`MAX_ASSERTION_S`] ahead, `jti`
//! unique per key until `exp`, `iat` optional.
//!
//! Access token (header `{"alg":"EdDSA","typ":"JWT","kid":NODE_KEY_HEX}`):
//! `iss` = the issuing node's key in hex, `sub` = the participant's key,
//! `aud` = the ledger's origin, `iat`, `exp`, `jti`, `scope`, and
//! `purpose_of_use`, the HL7 PurposeOfUse codes it may read for.

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use medledger_formats::keys::{self, PublicKey};
use medledger_ledger::Purpose;
use serde::{Deserialize, Serialize};

/// The `client_assertion_type` of a JWT assertion (RFC 7523 section 2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The path of the token endpoint; an assertion's `aud` is the node's URL
/// followed by it.
pub const TOKEN_PATH: &str = "/v1/token";
/// Longest lifetime of an assertion: its `exp` is at most this far ahead.
pub const MAX_ASSERTION_S: u64 = 300;
/// Clock skew allowed between clients and nodes, and between nodes.
pub const LEEWAY_S: u64 = 30;
/// The scope prefix that names a purpose of use, as in `purpose/TREAT`.
pub const PURPOSE_SCOPE: &str = "purpose/";
/// SMART system scopes a client may ask for: reads of every resource
/// (SMART v1 and v2 spellings). Tokens serve reads only; what a participant
/// reads is its role's, on the ledger.
pub const SYSTEM_SCOPES: [&str; 2] = ["system/*.read", "system/*.rs"];

/// Claims of a client assertion, as a client signs them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AssertionClaims {
    /// The participant's key in hex.
    pub iss: String,
    /// The participant's key in hex, again.
    pub sub: String,
    /// The token endpoint's URL.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issue time, seconds since the epoch.
    pub iat: u64,
    /// A value the client never reuses.
    pub jti: String,
}

/// The claims of an assertion that the node reads (`aud` is checked by
/// the JWT library, as a string or an array).
#[derive(Deserialize)]
struct Asserted {
    iss: String,
    sub: String,
    exp: u64,
    jti: String,
}

/// Claims of an access token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The issuing node's key in hex.
    pub iss: String,
    /// The participant's key in hex.
    pub sub: String,
    /// The ledger's origin: the token is valid on every node of it.
    pub aud: String,
    /// Issue time, seconds since the epoch.
    pub iat: u64,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// The token's id.
    pub jti: String,
    /// The scope granted, space-separated.
    pub scope: String,
    /// The purposes of use the token reads for, HL7 codes, in the role's order.
    pub purpose_of_use: Vec<String>,
}

/// Why an assertion, a scope or an access token was refused. Each variant
/// names the OAuth 2.0 error it answers with ([`TokenError::oauth_code`]).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, or not one signed with EdDSA.
    #[error("not a well-formed EdDSA JWT: {0}")]
    Malformed(String),
    /// `iss` or `sub` is not a key, or they differ.
    #[error("iss and sub must both be the participant's public key in hex")]
    Subject,
    /// The key is not a registered participant's (or, for an access
    /// token, not an active node's).
    #[error("key {0} is not registered on this ledger")]
    Unknown(String),
    /// The signature does not verify under the key.
    #[error("the signature does not verify under the key")]
    Signature,
    /// `aud` is not the expected one.
    #[error("aud must be {0}")]
    Audience(String),
    /// `exp` has passed.
    #[error("the token expired at {0}")]
    Expired(u64),
    /// `exp` is further ahead than allowed.
    #[error("exp is more than {MAX_ASSERTION_S} s ahead")]
    TooLong,
    /// The `jti` was seen before, and its assertion has not expired.
    #[error("jti was already used")]
    Replayed,
    /// The participant was revoked on the ledger.
    #[error("participant {0} was revoked on the ledger")]
    Revoked(String),
    /// A scope that is not understood, or a purpose the role may not use.
    #[error("{0}")]
    Scope(String),
}

impl TokenError {
    /// The OAuth 2.0 error code (RFC 6749 section 5.2; RFC 7523 section
    /// 3.2 for the assertion): a revoked participant is `invalid_grant`,
    /// a refused scope `invalid_scope`, every other `invalid_client`.
    pub fn oauth_code(&self) -> &'static str {
        match self {
            TokenError::Revoked(_) => "invalid_grant",
            TokenError::Scope(_) => "invalid_scope",
            _ => "invalid_client",
        }
    }
}

fn jwt_error(e: jsonwebtoken::errors::Error, audience: &str) -> TokenError {
    match e.kind() {
        ErrorKind::InvalidSignature => TokenError::Signature,
        ErrorKind::InvalidAudience => TokenError::Audience(audience.to_owned()),
        ErrorKind::InvalidIssuer | ErrorKind::InvalidSubject => TokenError::Subject,
        _ => TokenError::Malformed(e.to_string()),
    }
}

/// The header of an EdDSA JWT, or why it is not one.
fn eddsa_header(jwt: &str) -> Result<Header, TokenError> {
    let header =
        jsonwebtoken::decode_header(jwt).map_err(|e| TokenError::Malformed(e.to_string()))?;
    if header.alg != Algorithm::EdDSA {
        return Err(TokenError::Malformed(format!(
            "alg must be EdDSA, not {:?}",
            header.alg
        )));
    }
    Ok(header)
}

fn parse_key(hex: &str) -> Result<PublicKey, TokenError> {
    let key = PublicKey::parse_hex(hex).map_err(|_| TokenError::Subject)?;
    keys::verifying_key(&key).map_err(|_| TokenError::Subject)?;
    Ok(key)
}

fn validation(audience: &str, required: &[&str]) -> Validation {
    let mut v = Validation::new(Algorithm::EdDSA);
    // Expiry is checked against the caller's clock, below.
    v.validate_exp = false;
    v.set_required_spec_claims(required);
    v.set_audience(&[audience]);
    v
}

fn signed(key: &SigningKey, header: &Header, claims: &impl Serialize) -> Result<String, String> {
    let der = key.to_pkcs8_der().map_err(|e| e.to_string())?;
    jsonwebtoken::encode(header, claims, &EncodingKey::from_ed_der(der.as_bytes()))
        .map_err(|e| e.to_string())
}

/// Signs a client assertion for the participant with `key`, valid for
/// `lifetime_s` from `now_s`, to the token endpoint at `token_url`.
pub fn sign_assertion(
    key: &SigningKey,
    token_url: &str,
    now_s: u64,
    lifetime_s: u64,
    jti: &str,
) -> Result<String, String> {
    let me = keys::public_key(key).to_hex();
    let claims = AssertionClaims {
        iss: me.clone(),
        sub: me,
        aud: token_url.to_owned(),
        exp: now_s + lifetime_s,
        iat: now_s,
        jti: jti.to_owned(),
    };
    signed(key, &Header::new(Algorithm::EdDSA), &claims)
}

/// A client assertion whose signature verified.
#[derive(Debug)]
pub(crate) struct Assertion {
    /// Its `jti`.
    pub(crate) jti: String,
    /// Its `exp`, seconds since the epoch.
    pub(crate) exp: u64,
}

/// The key an assertion claims to be from, read before its signature is
/// checked (to look the key up on the ledger).
pub(crate) fn assertion_key(jwt: &str) -> Result<PublicKey, TokenError> {
    eddsa_header(jwt)?;
    let claims: Asserted = jsonwebtoken::dangerous::insecure_decode_claims(jwt)
        .map_err(|e| TokenError::Malformed(e.to_string()))?;
    if claims.iss != claims.sub {
        return Err(TokenError::Subject);
    }
    parse_key(&claims.iss)
}

/// Checks an assertion from `key` (a registered participant's) for the
/// token endpoint `audience` at `now_s`; the caller then checks its `jti`.
pub(crate) fn verify_assertion(
    jwt: &str,
    key: &PublicKey,
    audience: &str,
    now_s: u64,
) -> Result<Assertion, TokenError> {
    eddsa_header(jwt)?;
    let mut v = validation(audience, &["exp", "iss", "sub", "aud", "jti"]);
    v.set_issuer(&[key.to_hex()]);
    v.sub = Some(key.to_hex());
    let data = jsonwebtoken::decode::<Asserted>(jwt, &DecodingKey::from_ed_der(&key.0), &v)
        .map_err(|e| jwt_error(e, audience))?;
    let claims = data.claims;
    if claims.exp + LEEWAY_S < now_s {
        return Err(TokenError::Expired(claims.exp));
    }
    if claims.exp > now_s + MAX_ASSERTION_S + LEEWAY_S {
        return Err(TokenError::TooLong);
    }
    if claims.jti.is_empty() || claims.jti.len() > 256 {
        return Err(TokenError::Malformed("jti must hold 1 to 256 bytes".into()));
    }
    Ok(Assertion {
        jti: claims.jti,
        exp: claims.exp,
    })
}

/// The purposes a `scope` asks for, out of those the role may use
/// (`allowed`, in the role's order), and the scope to grant. Without a
/// `purpose/…` item, every purpose of the role is granted.
pub(crate) fn grant_scope(
    scope: Option<&str>,
    allowed: &[Purpose],
) -> Result<(Vec<Purpose>, String), TokenError> {
    let mut asked = Vec::new();
    let mut system = Vec::new();
    for item in scope.unwrap_or("").split_ascii_whitespace() {
        if let Some(code) = item.strip_prefix(PURPOSE_SCOPE) {
            let p = Purpose::parse(code).ok_or_else(|| {
                TokenError::Scope(format!("{code} is not an HL7 PurposeOfUse code we accept"))
            })?;
            if !allowed.contains(&p) {
                return Err(TokenError::Scope(format!(
                    "this participant's role may not read for {p}"
                )));
            }
            asked.push(p);
        } else if SYSTEM_SCOPES.contains(&item) {
            if !system.contains(&item) {
                system.push(item);
            }
        } else {
            return Err(TokenError::Scope(format!(
                "unknown scope {item:?}: ask for purpose/CODE and {}",
                SYSTEM_SCOPES.join(" or ")
            )));
        }
    }
    let granted: Vec<Purpose> = if asked.is_empty() {
        allowed.to_vec()
    } else {
        allowed
            .iter()
            .copied()
            .filter(|p| asked.contains(p))
            .collect()
    };
    let scope = system
        .into_iter()
        .map(str::to_owned)
        .chain(granted.iter().map(|p| format!("{PURPOSE_SCOPE}{p}")))
        .collect::<Vec<_>>()
        .join(" ");
    Ok((granted, scope))
}

/// Signs an access token with the node key.
pub fn sign_access_token(node_key: &SigningKey, claims: &AccessClaims) -> Result<String, String> {
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some("JWT".into());
    header.kid = Some(keys::public_key(node_key).to_hex());
    signed(node_key, &header, claims)
}

/// Whether a bearer token is an access token (a JWT) rather than a token
/// of the node's token file.
pub(crate) fn is_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

/// The node an access token names as its signer (`kid`), read before its
/// signature is checked (to look the node up on the ledger).
pub(crate) fn access_token_issuer(jwt: &str) -> Result<PublicKey, TokenError> {
    let header = eddsa_header(jwt)?;
    let kid = header
        .kid
        .ok_or_else(|| TokenError::Malformed("the header has no kid".into()))?;
    parse_key(&kid)
}

/// A verified access token: who holds it and what it reads for.
#[derive(Debug)]
pub(crate) struct Access {
    /// The participant.
    pub(crate) key: PublicKey,
    /// Its purposes of use, in the role's order.
    pub(crate) purposes: Vec<Purpose>,
}

/// Checks an access token signed by the node `issuer` (an active node of
/// the ledger `origin`) at `now_s`.
pub(crate) fn verify_access_token(
    jwt: &str,
    issuer: &PublicKey,
    origin: &str,
    now_s: u64,
) -> Result<Access, TokenError> {
    eddsa_header(jwt)?;
    let mut v = validation(origin, &["exp", "iss", "sub", "aud", "iat"]);
    v.set_issuer(&[issuer.to_hex()]);
    let data = jsonwebtoken::decode::<AccessClaims>(jwt, &DecodingKey::from_ed_der(&issuer.0), &v)
        .map_err(|e| jwt_error(e, origin))?;
    let claims = data.claims;
    if claims.exp + LEEWAY_S < now_s {
        return Err(TokenError::Expired(claims.exp));
    }
    let key = parse_key(&claims.sub)?;
    let purposes = claims
        .purpose_of_use
        .iter()
        .map(|c| {
            Purpose::parse(c)
                .ok_or_else(|| TokenError::Malformed(format!("unknown purpose of use {c}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(Access { key, purposes })
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://127.0.0.1:7878/v1/token";

    fn key(b: u8) -> SigningKey {
        SigningKey::from_bytes(&[b; 32])
    }

    #[test]
    fn an_assertion_verifies_once_signed_and_not_after_expiry_or_elsewhere() {
        let k = key(1);
        let me = keys::public_key(&k);
        let jwt = sign_assertion(&k, URL, 1_000, 60, "a").unwrap();
        assert_eq!(assertion_key(&jwt).unwrap(), me);
        let a = verify_assertion(&jwt, &me, URL, 1_000).unwrap();
        assert_eq!((a.jti.as_str(), a.exp), ("a", 1_060));
        assert!(matches!(
            verify_assertion(&jwt, &me, URL, 1_060 + LEEWAY_S + 1),
            Err(TokenError::Expired(1_060))
        ));
        assert!(matches!(
            verify_assertion(&jwt, &me, "http://other/v1/token", 1_000),
            Err(TokenError::Audience(_))
        ));
        let other = keys::public_key(&key(2));
        assert!(matches!(
            verify_assertion(&jwt, &other, URL, 1_000),
            Err(TokenError::Signature | TokenError::Subject)
        ));
        let long = sign_assertion(&k, URL, 1_000, MAX_ASSERTION_S + LEEWAY_S + 1, "b").unwrap();
        assert!(matches!(
            verify_assertion(&long, &me, URL, 1_000),
            Err(TokenError::TooLong)
        ));
    }

    #[test]
    fn garbage_is_malformed_never_a_panic() {
        for jwt in ["", ".", "..", "a.b.c", "eyJhbGciOiJFZERTQSJ9..", "x.y"] {
            assert!(assertion_key(jwt).is_err(), "{jwt}");
            assert!(access_token_issuer(jwt).is_err(), "{jwt}");
        }
    }

    #[test]
    fn scope_grants_the_asked_purposes_in_the_roles_order_or_all_of_them() {
        use Purpose::*;
        let allowed = [Treat, Etreat, Hresch];
        let (p, s) = grant_scope(None, &allowed).unwrap();
        assert_eq!(
            (p, s.as_str()),
            (
                allowed.to_vec(),
                "purpose/TREAT purpose/ETREAT purpose/HRESCH"
            )
        );
        let (p, s) =
            grant_scope(Some("purpose/ETREAT system/*.read purpose/TREAT"), &allowed).unwrap();
        assert_eq!(
            (p, s.as_str()),
            (
                vec![Treat, Etreat],
                "system/*.read purpose/TREAT purpose/ETREAT"
            )
        );
        for bad in [
            "purpose/PATRQT",
            "purpose/NOPE",
            "system/*.write",
            "patient/*.read",
        ] {
            let e = grant_scope(Some(bad), &allowed).unwrap_err();
            assert_eq!(e.oauth_code(), "invalid_scope", "{bad}");
        }
    }

    #[test]
    fn an_access_token_carries_its_purposes_and_verifies_only_under_its_node() {
        let node = key(9);
        let claims = AccessClaims {
            iss: keys::public_key(&node).to_hex(),
            sub: keys::public_key(&key(1)).to_hex(),
            aud: "ledger.test".into(),
            iat: 1_000,
            exp: 1_900,
            jti: "t".into(),
            scope: "purpose/TREAT".into(),
            purpose_of_use: vec!["TREAT".into()],
        };
        let jwt = sign_access_token(&node, &claims).unwrap();
        assert!(is_jwt(&jwt));
        let issuer = access_token_issuer(&jwt).unwrap();
        assert_eq!(issuer, keys::public_key(&node));
        let a = verify_access_token(&jwt, &issuer, "ledger.test", 1_500).unwrap();
        assert_eq!(a.key, keys::public_key(&key(1)));
        assert_eq!(a.purposes, vec![Purpose::Treat]);
        assert!(matches!(
            verify_access_token(&jwt, &issuer, "ledger.test", 1_900 + LEEWAY_S + 1),
            Err(TokenError::Expired(_))
        ));
        assert!(verify_access_token(&jwt, &issuer, "other.test", 1_500).is_err());
        let stranger = keys::public_key(&key(3));
        assert!(verify_access_token(&jwt, &stranger, "ledger.test", 1_500).is_err());
    }
}
