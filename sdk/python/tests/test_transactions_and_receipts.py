"""Transactions byte-identical to the Rust implementation, and receipts."""

import base64

import independent as ref
import pytest

from medledger import (FormatError, SignatureError, SigningKey, Transaction, Trust, VerificationError,
                       verify_receipt)
from medledger.errors import ProofError

ORIGIN = "medledger.example/client"


def test_transaction_known_answer():
    # Pinned by crates/formats/src/tx.rs and recomputed by docs/kat.py.
    k = SigningKey.from_seed(bytes([1]) * 32)
    t = Transaction.sign(k, "medical_report", {"a": 1}, 1_700_000_000_000, salt=bytes([2]) * 16, nonce=bytes([3]) * 16)
    assert t.header["commitment"] == "b1ec1b44f68debd9276727e3c98b063a35ae760bb1af99e387cbcf85f21ca1a3"
    assert t.signature.hex() == ("69b71797d4642181e85a84ecdbb57a7f8ce8de8555cf342a77510545e2096e08"
                                 "79bd323b90c41245d6d524e62ab5af64b02d968aec9ea2ba3b86b4a2a6a68b0b")
    assert t.id == "563a41f2b17a4d658fe159f7942dabff16177228e45a8a519e1a2ea3b713da98"


@pytest.mark.parametrize("payload", [
    {"b": 1, "a": [1.5, 1e21, 0.1, -0.0], "c": "\u00e9\u0001"},
    {"patient": "MFRGGZDFMZTWQ2LKNNWG23TPOA", "temperature": 38.25, "spo2": 91, "time": "2026-11-24T08:00:00Z"},
    {"nested": {"z": [True, None, {"y": "x"}]}, "\u20ac": 9007199254740991},
])
def test_signing_matches_the_independent_construction(payload):
    seed, salt, nonce = bytes([8]) * 32, bytes(range(16)), bytes(range(16, 32))
    want = ref.tx(seed, "vital_signs", payload, 5, salt, nonce)
    got = Transaction.sign(SigningKey.from_seed(seed), "vital_signs", payload, 5, salt=salt, nonce=nonce)
    assert got.to_wire() == want["wire"]
    assert got.leaf_preimage == want["preimage"]
    assert got.id == want["id"]
    assert Transaction.from_wire(want["wire"]).id == want["id"]


def test_jcs_number_forms_match_the_rust_known_answer():
    from medledger import canonical_payload

    v = {"b": 1, "a": [1.5, 1e21, 0.1, -0.0], "c": "\u00e9\u0001"}
    assert canonical_payload(v) == '{"a":[1.5,1e+21,0.1,0],"b":1,"c":"\u00e9\\u0001"}'.encode()


def test_tampered_wire_transactions_are_refused():
    w = ref.tx(bytes([9]) * 32, "vital_signs", {"hr": 72}, 5, bytes(16), bytes(16))["wire"]
    with pytest.raises(VerificationError, match="commitment"):
        Transaction.from_wire({**w, "payload": {"hr": 73}})
    with pytest.raises(SignatureError):
        Transaction.from_wire({**w, "header": {**w["header"], "time": 6}})
    with pytest.raises(FormatError):
        Transaction.from_wire({**w, "header": {**w["header"], "kind": "Vital"}})
    with pytest.raises(FormatError):
        Transaction.from_wire({**w, "header": {**w["header"], "v": 2}})
    with pytest.raises(FormatError):
        Transaction.from_wire({**w, "extra": 1})


def test_unsafe_payloads_are_refused():
    k = SigningKey.generate()
    for bad in [{"x": 2**53}, {"x": float("nan")}, [1], {"x": {"y": -(2**53)}}]:
        with pytest.raises(FormatError):
            Transaction.sign(k, "k", bad)


def _log(txid_preimage, n=5, at=2):
    ls = [ref.leaf(f"other {i}".encode()) for i in range(n)]
    ls[at] = ref.leaf(txid_preimage)
    return ls


def _setup():
    key, pub = ref.seed_key(bytes([1]) * 32)
    t = ref.tx(bytes([9]) * 32, "medical_report", {"a": 1}, 1_700_000_000_000, bytes(16), bytes([1]) * 16)
    ls = _log(t["preimage"])
    return key, pub, t, ls, Trust.from_vkey(ref.vkey(ORIGIN, pub))


def test_receipt_for_the_right_transaction_verifies():
    key, pub, t, ls, trust = _setup()
    text = ref.receipt(t["preimage"], 2, ls, ORIGIN, key, pub)
    r = verify_receipt(text, trust, expected_id=t["id"], expected_preimage=t["preimage"])
    assert (r.id, r.index, r.checkpoint.size) == (t["id"], 2, 5)
    assert r.header["kind"] == "medical_report"


def test_receipt_for_another_transaction_or_leaf_is_refused():
    key, pub, t, ls, trust = _setup()
    text = ref.receipt(t["preimage"], 2, ls, ORIGIN, key, pub)
    other = ref.tx(bytes([9]) * 32, "medical_report", {"a": 2}, 1, bytes(16), bytes(16))
    with pytest.raises(VerificationError):
        verify_receipt(text, trust, expected_id=other["id"])
    with pytest.raises(VerificationError):
        verify_receipt(text, trust, expected_preimage=other["preimage"])
    with pytest.raises(ProofError):
        verify_receipt(text.replace("index 2", "index 3"), trust)


def test_receipt_with_a_flipped_proof_hash_or_forged_checkpoint_is_refused():
    key, pub, t, ls, trust = _setup()
    text = ref.receipt(t["preimage"], 2, ls, ORIGIN, key, pub)
    lines = text.split("\n")
    for i in range(3, 6):
        h = bytearray(base64.b64decode(lines[i]))
        h[0] ^= 1
        bad = lines[:i] + [base64.b64encode(bytes(h)).decode()] + lines[i + 1:]
        with pytest.raises(ProofError):
            verify_receipt("\n".join(bad), trust)
    k2, p2 = ref.seed_key(bytes([2]) * 32)
    with pytest.raises(SignatureError):
        verify_receipt(ref.receipt(t["preimage"], 2, ls, ORIGIN, k2, p2), trust)


def test_receipt_whose_author_signature_is_forged_is_refused():
    key, pub, t, _, trust = _setup()
    forged = t["preimage"][:-64] + bytes(64)
    ls = _log(forged)
    with pytest.raises(SignatureError):
        verify_receipt(ref.receipt(forged, 2, ls, ORIGIN, key, pub), trust)
