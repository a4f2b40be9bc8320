"""A SMART Backend Services client written from the specifications only
(SMART App Launch "Backend Services", RFC 6749 section 4.4, RFC 7523
section 2.2), not from medledger's code:

1. signs a client assertion (alg EdDSA) with a participant's Ed25519 key;
2. trades it at POST /v1/token for an access token;
3. decodes the access token with PyJWT and checks its claims, verifying
   its signature with the serving node's key from the participant
   directory;
4. reads records with it;
5. and checks that the token endpoint refuses a replayed jti and a wrong
   aud with RFC 6749 errors.

Usage: client.py BASE_URL KEY_FILE
"""

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def post_form(url, fields):
    body = urllib.parse.urlencode(fields).encode()
    req = urllib.request.Request(
        url,
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.load(e)


def get(url, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def assertion(key, client_id, token_url, jti=None, lifetime=240):
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "exp": now + lifetime,
        "iat": now,
        "jti": jti or str(uuid.uuid4()),
    }
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"typ": "JWT"})


def token_request(token_url, signed, scope):
    return post_form(
        token_url,
        {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed,
            "scope": scope,
        },
    )


def main():
    base, key_file = sys.argv[1], sys.argv[2]
    with open(key_file) as f:
        key_json = json.load(f)
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(key_json["secret_key"]))
    # The participant's id is its public key as the ledger writes it: hex.
    client_id = key_json["public_key"]
    token_url = f"{base}/v1/token"

    status, headers, body = token_request(
        token_url, assertion(key, client_id, token_url), "system/*.read purpose/TREAT"
    )
    assert status == 200, (status, body)
    assert body["token_type"].lower() == "bearer", body
    assert headers.get("Cache-Control") == "no-store", headers
    assert "purpose/TREAT" in body["scope"].split(), body
    expires_in = body["expires_in"]
    assert 0 < expires_in <= 3600, body
    access_token = body["access_token"]

    # The access token is a JWT; its signer is a node of the ledger.
    header = jwt.get_unverified_header(access_token)
    assert header["alg"] == "EdDSA", header
    status, directory = get(f"{base}/v1/participants", access_token)
    assert status == 200, (status, directory)
    participants = directory["participants"]
    nodes = {p["key"] for p in participants if p["role"] == "node"}
    assert header["kid"] in nodes, (header, nodes)
    node_key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(header["kid"]))
    status, origin = get(f"{base}/v1/status")
    claims = jwt.decode(
        access_token,
        node_key,
        algorithms=["EdDSA"],
        audience=origin["origin"],
        issuer=header["kid"],
        options={"require": ["exp", "iat", "sub", "iss", "aud"]},
    )
    assert claims["sub"] == client_id, claims
    now = time.time()
    assert now - 60 <= claims["iat"] <= now + 60, claims
    assert claims["exp"] - claims["iat"] == expires_in, claims
    assert claims["purpose_of_use"] == ["TREAT"], claims

    # Reads with it.
    status, bundle = get(f"{base}/fhir/Observation?_count=3", access_token)
    assert status == 200, (status, bundle)
    assert bundle["resourceType"] == "Bundle" and bundle.get("entry"), bundle

    # A replayed jti and a wrong aud are refused, as RFC 6749 section 5.2 says.
    jti = str(uuid.uuid4())
    first = token_request(token_url, assertion(key, client_id, token_url, jti), "")
    assert first[0] == 200, first
    again = token_request(token_url, assertion(key, client_id, token_url, jti), "")
    assert again[0] == 401 and again[2]["error"] == "invalid_client", again
    wrong = token_request(
        token_url, assertion(key, client_id, "https://elsewhere.example/token"), ""
    )
    assert wrong[0] == 401 and wrong[2]["error"] == "invalid_client", wrong
    bad_scope = token_request(
        token_url, assertion(key, client_id, token_url), "purpose/PUBHLTH"
    )
    assert bad_scope[0] == 400 and bad_scope[2]["error"] == "invalid_scope", bad_scope
    print(f"SMART client: token for {client_id[:16]}… from node {header['kid'][:16]}…, read ok")


if __name__ == "__main__":
    main()
