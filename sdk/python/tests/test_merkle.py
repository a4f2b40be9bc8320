"""RFC 6962 proofs against the RFC's own recursive definitions and against
transparency-dev's known-answer vectors."""

import base64
import json

import independent as ref
import pytest

from medledger import ProofError
from medledger import merkle


def leaves(n):
    return [ref.leaf(f"entry {i}".encode()) for i in range(n)]


def test_hashes_are_rfc6962():
    assert merkle.leaf_hash(b"") .hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert merkle.empty_root().hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    for n in range(0, 40):
        assert merkle.root(leaves(n)) == ref.mth(leaves(n)), n


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 9, 16, 17, 31])
def test_every_inclusion_proof_verifies_and_every_flip_is_refused(n):
    ls = leaves(n)
    root = ref.mth(ls)
    for m in range(n):
        proof = ref.path(m, ls)
        merkle.verify_inclusion(m, n, ls[m], proof, root)
        for i in range(len(proof)):
            bad = list(proof)
            bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
            with pytest.raises(ProofError):
                merkle.verify_inclusion(m, n, ls[m], bad, root)
        with pytest.raises(ProofError):
            merkle.verify_inclusion(m, n, ls[(m + 1) % n] if n > 1 else ref.leaf(b"x"), proof, root)
        with pytest.raises(ProofError):
            merkle.verify_inclusion(m, n, ls[m], proof + [root], root)
        if proof:
            with pytest.raises(ProofError):
                merkle.verify_inclusion(m, n, ls[m], proof[:-1], root)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(n, n, ls[0], [], root)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 7, 8, 9, 13, 16, 20])
def test_every_consistency_proof_verifies_and_tampering_is_refused(n):
    ls = leaves(n)
    for m in range(1, n + 1):
        proof = ref.consistency(m, ls)
        merkle.verify_consistency(m, n, proof, ref.mth(ls[:m]), ref.mth(ls))
        other = ref.mth(ls[: m - 1] + [ref.leaf(b"forged")])
        if m < n:
            with pytest.raises(ProofError):
                merkle.verify_consistency(m, n, proof, other, ref.mth(ls))
            for i in range(len(proof)):
                bad = list(proof)
                bad[i] = bytes([bad[i][0] ^ 0x80]) + bad[i][1:]
                with pytest.raises(ProofError):
                    merkle.verify_consistency(m, n, bad, ref.mth(ls[:m]), ref.mth(ls))


def test_frontier_matches_mth_as_it_grows():
    f = merkle.Frontier()
    ls = leaves(70)
    for i, x in enumerate(ls):
        f.push(x)
        assert f.root() == ref.mth(ls[: i + 1])


def _b64(s):
    return base64.b64decode(s) if s else b""


def _cases(testdata, what):
    files = sorted((testdata / "rfc6962" / what).rglob("*.json"))
    assert files, f"no {what} vectors"
    return files


def test_transparency_dev_inclusion_vectors(testdata):
    n = 0
    for f in _cases(testdata, "inclusion"):
        c = json.loads(f.read_text())
        args = (c["leafIdx"], c["treeSize"], _b64(c["leafHash"]), [_b64(p) for p in c["proof"] or []], _b64(c["root"]))
        if c["wantErr"]:
            with pytest.raises(ProofError):
                merkle.verify_inclusion(*args)
        else:
            merkle.verify_inclusion(*args)
        n += 1
    assert n > 40


def test_transparency_dev_consistency_vectors(testdata):
    n = 0
    for f in _cases(testdata, "consistency"):
        c = json.loads(f.read_text())
        args = (c["size1"], c["size2"], [_b64(p) for p in c["proof"] or []], _b64(c["root1"]), _b64(c["root2"]))
        if c["wantErr"]:
            with pytest.raises(ProofError):
                merkle.verify_consistency(*args)
        else:
            merkle.verify_consistency(*args)
        n += 1
    assert n > 40
