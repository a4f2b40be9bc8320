"""The consistency tracker and the submit retry rule, against a simulated node."""

import json

import httpx
import independent as ref
import pytest

from medledger import Client, ConsistencyError, ProblemError, Retry, SigningKey, Transaction, TransportError
from medledger.consistency import ConsistencyTracker
from medledger.note import Checkpoint, Trust

ORIGIN = "hospital.example/ledger"
KEY, PUB = ref.seed_key(bytes([3]) * 32)
VKEY = ref.vkey(ORIGIN, PUB)
TRUST = Trust.from_vkey(VKEY)
FAST = Retry(retries=4, min_delay=0.001, max_delay=0.002)


def leaves(n, tag="e"):
    return [ref.leaf(f"{tag} {i}".encode()) for i in range(n)]


def cp(ls):
    return Checkpoint.verify(ref.checkpoint(ORIGIN, len(ls), ref.mth(ls), KEY, PUB), TRUST)


def honest(ls):
    return lambda m, n: ref.consistency(m, ls[:n])


def test_growth_with_valid_proofs_is_accepted_and_persisted(tmp_path):
    ls = leaves(20)
    state = tmp_path / "cp.json"
    t = ConsistencyTracker(TRUST, honest(ls), state=state)
    for n in (3, 3, 8, 13, 20):
        t.observe(cp(ls[:n]), latest=True)
    assert t.last.size == 20
    again = ConsistencyTracker(TRUST, honest(ls), state=state)
    assert again.last.size == 20 and again.last.root == ref.mth(ls)


def test_same_size_other_root_is_a_fork():
    t = ConsistencyTracker(TRUST, honest(leaves(9)))
    t.observe(cp(leaves(9)), latest=True)
    with pytest.raises(ConsistencyError) as e:
        t.observe(cp(leaves(9, "forged")), latest=True)
    assert e.value.kind == "fork" and e.value.old != e.value.new


def test_larger_tree_that_rewrote_history_is_a_fork():
    old, new = leaves(5), leaves(5, "x") + leaves(4)
    t = ConsistencyTracker(TRUST, honest(new))  # the node's proof is for its own (rewritten) tree
    t.observe(cp(old), latest=True)
    with pytest.raises(ConsistencyError) as e:
        t.observe(cp(new), latest=True)
    assert e.value.kind == "fork"
    assert t.last.size == 5  # the bad checkpoint was not adopted


def test_smaller_latest_checkpoint_is_a_rollback_but_an_older_receipt_is_not():
    ls = leaves(12)
    t = ConsistencyTracker(TRUST, honest(ls))
    t.observe(cp(ls), latest=True)
    t.observe(cp(ls[:7]), latest=False)  # a receipt against an older checkpoint
    with pytest.raises(ConsistencyError) as e:
        t.observe(cp(ls[:7]), latest=True)
    assert e.value.kind == "rollback"


def test_a_refused_proof_is_a_fork():
    def refuse(m, n):
        raise ProblemError(400, "bad_query", "no")
    t = ConsistencyTracker(TRUST, refuse)
    t.observe(cp(leaves(2)), latest=True)
    with pytest.raises(ConsistencyError):
        t.observe(cp(leaves(4)), latest=True)


def test_a_tampered_state_file_is_refused(tmp_path):
    state = tmp_path / "cp.json"
    ConsistencyTracker(TRUST, honest(leaves(4)), state=state).observe(cp(leaves(4)), latest=True)
    saved = json.loads(state.read_text())
    saved["checkpoint"] = saved["checkpoint"].replace("\n4\n", "\n5\n")
    state.write_text(json.dumps(saved))
    with pytest.raises(Exception):
        ConsistencyTracker(TRUST, honest(leaves(4)), state=state)


class FakeNode:
    """Answers POST /v1/transactions from a script of responses; commits
    the transaction when the script says so."""

    def __init__(self, script):
        self.script = list(script)
        self.committed = {}
        self.posts = 0
        self.receipt_reads = 0

    def receipt_for(self, wire):
        t = Transaction.from_wire(wire)
        ls = leaves(3)
        ls[1] = ref.leaf(t.leaf_preimage)
        return ref.receipt(t.leaf_preimage, 1, ls, ORIGIN, KEY, PUB), t.id

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.endswith("/receipt"):
            self.receipt_reads += 1
            tid = request.url.path.split("/")[3]
            return httpx.Response(200, text=self.committed[tid])
        self.posts += 1
        step = self.script.pop(0)
        body = json.loads(request.content)
        if step == "drop":
            raise httpx.ConnectError("connection reset")
        text, tid = self.receipt_for(body)
        if step == "commit-then-503":
            self.committed[tid] = text
            return httpx.Response(503, json={"status": 503, "code": "timeout", "detail": "slow"})
        if step in (429, 503):
            return httpx.Response(step, json={"status": step, "code": "too_many_requests", "detail": ""})
        if step == "dup":
            return httpx.Response(409, json={"status": 409, "code": "duplicate", "detail": "held"})
        self.committed[tid] = text
        return httpx.Response(200, json={"id": tid, "index": 1, "height": 1, "receipt": text})


def client(node, retry=FAST):
    return Client("http://node.test", VKEY, retry=retry, transport=httpx.MockTransport(node))


def tx():
    return Transaction.sign(SigningKey.generate(), "medical_report", {"a": 1})


def test_transient_failures_are_retried_until_the_receipt_verifies():
    node = FakeNode(["drop", 429, 503, "ok"])
    r = client(node).submit(t := tx())
    assert r.id == t.id and node.posts == 4


def test_duplicate_after_a_resend_is_success_with_the_fetched_receipt():
    node = FakeNode(["commit-then-503", "dup"])
    r = client(node).submit(t := tx())
    assert r.id == t.id and node.receipt_reads == 1


def test_duplicate_on_the_first_attempt_is_reported():
    with pytest.raises(ProblemError) as e:
        client(FakeNode(["dup"])).submit(tx())
    assert e.value.code == "duplicate"


def test_retries_run_out():
    node = FakeNode(["drop"] * 5)
    with pytest.raises(TransportError):
        client(node).submit(tx())
    assert node.posts == 5


def test_a_receipt_for_another_transaction_is_refused_not_retried():
    node = FakeNode([])

    def handler(request):
        text, _ = node.receipt_for(tx().to_wire())
        return httpx.Response(200, json={"id": "00" * 32, "index": 1, "height": 1, "receipt": text})

    with pytest.raises(Exception, match="another transaction|not transaction"):
        Client("http://node.test", VKEY, retry=FAST, transport=httpx.MockTransport(handler)).submit(tx())


def test_jittered_backoff_doubles_and_is_capped():
    ds = list(Retry(retries=6, min_delay=0.2, max_delay=5).delays())
    assert len(ds) == 6
    for i, d in enumerate(ds):
        base = min(0.2 * 2**i, 5)
        assert base * 0.5 <= d <= base
