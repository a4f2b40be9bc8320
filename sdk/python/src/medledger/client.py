"""A verifying client of one medledger node (synchronous, on httpx).

Every read is verified by default against the node keys the client trusts
(a vkey): checkpoints by their signature, receipts by their inclusion proof
to a signed checkpoint, transactions by their commitment, author signature
and receipt. Every checkpoint the client verifies also goes through its
:class:`ConsistencyTracker`, which keeps the last one it trusts and refuses
a checkpoint that is not a proven extension of it (fork) or that shows the
log shrank (rollback).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import rfc8785

from . import merkle
from .consistency import ConsistencyTracker
from .errors import (
    FormatError,
    MedledgerError,
    ProblemError,
    ProtocolError,
    TransportError,
    VerificationError,
)
from .keys import SigningKey, verify_signature
from .note import Checkpoint, Trust, b64decode_strict
from .receipt import VerifiedReceipt, verify_receipt
from .tx import Transaction, canonical_payload, commitment, header_jcs

if TYPE_CHECKING:
    from .export import VerifiedExport

BLOCK_TAG = b"medledger/block/v1\n"
REQUEST_TIMEOUT = 120.0


@dataclass(frozen=True)
class Retry:
    """How submissions are retried, as the Rust client's ``Retry``: after a
    connection error, ``429`` or ``503`` the same signed bytes are sent
    again after a jittered, exponentially growing delay. A ``409 duplicate``
    answered to such a resend is success: the receipt is fetched from
    ``GET /v1/transactions/{id}/receipt`` and verified. A ``409 duplicate``
    on a first attempt is reported as it is."""

    retries: int = 4
    min_delay: float = 0.2
    max_delay: float = 5.0

    def delays(self) -> Iterator[float]:
        """The delays before each resend: doubling from ``min_delay`` up to
        ``max_delay``, each scaled by a random factor in [0.5, 1]."""
        d = self.min_delay
        for _ in range(self.retries):
            yield min(d, self.max_delay) * random.uniform(0.5, 1.0)
            d *= 2


NO_RETRY = Retry(retries=0, min_delay=0.0, max_delay=0.0)


def _transient(e: Exception) -> bool:
    if isinstance(e, TransportError):
        return True
    return isinstance(e, ProblemError) and e.status in (429, 503)


def _duplicate(e: Exception) -> bool:
    return isinstance(e, ProblemError) and e.status == 409 and e.code == "duplicate"


@dataclass(frozen=True)
class VerifiedTransaction:
    """A transaction read back and verified: id, commitment, author
    signature and receipt."""

    tx: Transaction
    receipt: VerifiedReceipt

    @property
    def id(self) -> str:
        """The transaction id (hex)."""
        return self.tx.id

    @property
    def payload(self) -> Any:
        """The payload, proven by the header's commitment."""
        return self.tx.payload

    @property
    def header(self) -> dict:
        """The signed header."""
        return self.tx.header


@dataclass(frozen=True)
class VerifiedBlock:
    """A block header checked: hash, trusted proposer's signature, ids, txs_root."""

    height: int
    hash: str
    header: dict
    transactions: list[dict] = field(default_factory=list)


def _problem(resp: httpx.Response) -> ProblemError:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "code" in body:
        return ProblemError(resp.status_code, str(body.get("code")), str(body.get("detail", "")), body)
    if isinstance(body, dict) and "error" in body:  # OAuth errors of /v1/token
        return ProblemError(resp.status_code, str(body["error"]), str(body.get("error_description", "")), body)
    return ProblemError(resp.status_code, f"http_{resp.status_code}", resp.text[:500])


def _field(name: str, expected: Any, found: Any) -> None:
    if expected != found:
        raise VerificationError(f"{name}: the node says {found!r}, the proof says {expected!r}")


class Client:
    """A client of the node at ``url`` that trusts ``vkey``.

    ``token`` is a bearer token for record-level reads (see
    :meth:`request_token`); ``purpose`` an HL7 PurposeOfUse code sent as
    ``X-Purpose-Of-Use``. ``state`` is a file in which the last verified
    checkpoint is kept between runs, so that a later session refuses a
    node that rolled back or forked in the meantime.
    """

    def __init__(self, url: str, vkey: str | None = None, *, trust: Trust | None = None,
                 token: str | None = None, purpose: str | None = None, retry: Retry = Retry(),
                 state: str | None = None, timeout: float = REQUEST_TIMEOUT,
                 transport: httpx.BaseTransport | None = None):
        if (vkey is None) == (trust is None):
            raise MedledgerError("give exactly one of vkey and trust")
        self.trust = trust if trust is not None else Trust.from_vkey(vkey)  # type: ignore[arg-type]
        url = url.strip().rstrip("/")
        if "://" not in url:
            url = "http://" + url
        self.url = url
        self.token = token
        self.purpose = purpose
        self.retry = retry
        self._http = httpx.Client(base_url=url, timeout=timeout, follow_redirects=True, transport=transport)
        self.consistency = ConsistencyTracker(self.trust, self._consistency_proof, state=state)

    # -- plumbing ---------------------------------------------------------

    def close(self) -> None:
        """Closes the connection pool."""
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _headers(self, auth: bool) -> dict[str, str]:
        h = {}
        if auth:
            if not self.token:
                raise MedledgerError("this read needs a bearer token: pass token= or call request_token()")
            h["authorization"] = f"Bearer {self.token.strip()}"
            if self.purpose:
                h["x-purpose-of-use"] = self.purpose
        return h

    def _request(self, method: str, path: str, *, auth: bool = False, **kw: Any) -> httpx.Response:
        headers = {**self._headers(auth), **kw.pop("headers", {})}
        try:
            resp = self._http.request(method, path, headers=headers, **kw)
        except httpx.TransportError as e:
            raise TransportError(f"{method} {self.url}{path}: {e}") from e
        if not resp.is_success:
            raise _problem(resp)
        return resp

    def _json(self, resp: httpx.Response, what: str) -> Any:
        try:
            return resp.json()
        except ValueError as e:
            raise ProtocolError(f"{what}: not JSON: {e}") from None

    # -- tokens -------------------------------------------------------------

    def request_token(self, key: SigningKey, scope: str | None = None, *, audience: str | None = None) -> str:
        """Obtains an access token for the participant of ``key`` (SMART
        Backend Services: a client-credentials grant with an EdDSA JWT
        assertion, RFC 7523) and keeps it for this client's reads.

        ``audience`` is the node's token URL; by default this client's URL
        followed by ``/v1/token`` (set it when the node has a ``public_url``)."""
        import jwt  # PyJWT

        now = int(time.time())
        claims = {
            "iss": key.public_key_hex, "sub": key.public_key_hex,
            "aud": audience or f"{self.url}/v1/token",
            "exp": now + 240, "iat": now, "jti": uuid.uuid4().hex,
        }
        assertion = jwt.encode(claims, key.private_key(), algorithm="EdDSA")
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        }
        if scope:
            form["scope"] = scope
        body = self._json(self._request("POST", "/v1/token", data=form), "token response")
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str):
            raise ProtocolError("token response has no access_token")
        self.token = token
        return token

    # -- writes -------------------------------------------------------------

    def sign(self, key: SigningKey, kind: str, payload: dict, time_ms: int | None = None) -> Transaction:
        """Signs a transaction (see :meth:`Transaction.sign`)."""
        return Transaction.sign(key, kind, payload, time_ms)

    def _check_submitted(self, ok: Any, tx: Transaction) -> VerifiedReceipt:
        if not isinstance(ok, dict) or not isinstance(ok.get("receipt"), str):
            raise ProtocolError("submit answer has no receipt")
        r = verify_receipt(ok["receipt"], self.trust, expected_id=tx.id, expected_preimage=tx.leaf_preimage)
        _field("id", r.id, ok.get("id"))
        _field("index", r.index, ok.get("index"))
        self.consistency.observe(r.checkpoint, latest=False)
        return VerifiedReceipt(r.id, r.index, r.checkpoint, r.header, r.text, ok.get("height"))

    def _post(self, body: bytes) -> httpx.Response:
        return self._request("POST", "/v1/transactions", content=body,
                             headers={"content-type": "application/json"})

    def submit(self, tx: Transaction) -> VerifiedReceipt:
        """Submits one transaction; returns its verified receipt once the
        node has made it durable. Retries as :class:`Retry` says."""
        body = tx.to_json()

        def once() -> VerifiedReceipt:
            return self._check_submitted(self._json(self._post(body), "submit answer"), tx)

        delays = self.retry.delays()
        try:
            return once()
        except MedledgerError as first:
            err: MedledgerError = first
        while _transient(err):
            delay = next(delays, None)
            if delay is None:
                break
            time.sleep(delay)
            try:
                return once()
            except MedledgerError as e:
                if _duplicate(e):
                    return self._resubmitted(tx)
                err = e
        raise err

    def _resubmitted(self, tx: Transaction) -> VerifiedReceipt:
        text = self._request("GET", f"/v1/transactions/{tx.id}/receipt").text
        r = verify_receipt(text, self.trust, expected_id=tx.id, expected_preimage=tx.leaf_preimage)
        self.consistency.observe(r.checkpoint, latest=False)
        return r

    def submit_batch(self, txs: Sequence[Transaction]) -> list[VerifiedReceipt | MedledgerError]:
        """Submits transactions as one JSON array. Returns, in order, each
        item's verified receipt or the error it met; raises if the request
        as a whole failed. Items answered ``429``/``503`` are resent on
        their own, and a ``409 duplicate`` after a resend is success."""
        results: list[VerifiedReceipt | MedledgerError | None] = [None] * len(txs)
        pending = list(range(len(txs)))
        delays = self.retry.delays()
        resend = False
        while True:
            batch = [txs[i] for i in pending]
            try:
                items = self._submit_once(batch)
            except MedledgerError as e:
                delay = next(delays, None) if _transient(e) else None
                if delay is None:
                    raise
                time.sleep(delay)
                resend = True
                continue
            again = []
            for i, item in zip(pending, items):
                if isinstance(item, MedledgerError) and resend and _duplicate(item):
                    try:
                        results[i] = self._resubmitted(txs[i])
                    except MedledgerError as e:
                        results[i] = e
                elif isinstance(item, MedledgerError) and _transient(item):
                    again.append(i)
                    results[i] = item
                else:
                    results[i] = item
            pending = again
            delay = next(delays, None) if pending else None
            if delay is None:
                break
            time.sleep(delay)
            resend = True
        return [r if r is not None else ProtocolError("no result") for r in results]

    def _submit_once(self, txs: Sequence[Transaction]) -> list[VerifiedReceipt | MedledgerError]:
        body = b"[" + b",".join(t.to_json() for t in txs) + b"]"
        resp = self._json(self._post(body), "batch answer")
        results = resp.get("results") if isinstance(resp, dict) else None
        if not isinstance(results, list) or len(results) != len(txs):
            raise ProtocolError(f"batch answer does not hold one result for each of {len(txs)} transactions")
        out: list[VerifiedReceipt | MedledgerError] = []
        for item, tx in zip(results, txs):
            status = item.get("status") if isinstance(item, dict) else None
            if status == 200:
                try:
                    out.append(self._check_submitted(item, tx))
                except VerificationError:
                    raise  # a receipt that does not verify is never one item's problem
                except MedledgerError as e:
                    out.append(e)
            elif isinstance(item, dict) and isinstance(item.get("problem"), dict):
                p = item["problem"]
                out.append(ProblemError(int(status or p.get("status", 0)), str(p.get("code")), str(p.get("detail", "")), p))
            else:
                raise ProtocolError(f"batch result with status {status!r} has neither receipt nor problem")
        return out

    # -- verified reads ---------------------------------------------------

    def checkpoint(self) -> Checkpoint:
        """The node's latest checkpoint: signature verified, and proven to
        extend the last checkpoint this client trusted."""
        note = self._request("GET", "/v1/checkpoint").text
        cp = Checkpoint.verify(note, self.trust)
        self.consistency.observe(cp, latest=True)
        return cp

    def check_consistency(self) -> Checkpoint:
        """Alias of :meth:`checkpoint`, for reading intent: raises
        ``ConsistencyError`` with the two signed checkpoints as evidence
        if the node's log is not an extension of what was seen before."""
        return self.checkpoint()

    def status(self) -> dict:
        """``GET /v1/status``; its checkpoint, if any, is verified."""
        st = self._json(self._request("GET", "/v1/status"), "status")
        if isinstance(st, dict) and st.get("checkpoint"):
            cp = Checkpoint.verify(st["checkpoint"], self.trust)
            self.consistency.observe(cp, latest=True)
        return st

    def receipt(self, tx_id: str, *, cosigned: bool = False) -> VerifiedReceipt:
        """The verified receipt of transaction ``tx_id`` (hex), including
        the author's signature over the header it carries. ``cosigned``
        asks the node to add its own and its peers' cosignatures; check them
        with :func:`medledger.verify_cosignatures` and the cosigner keys you
        trust."""
        tx_id = _check_id(tx_id)
        params = {"cosigned": "true"} if cosigned else {}
        text = self._request("GET", f"/v1/transactions/{tx_id}/receipt", params=params).text
        r = verify_receipt(text, self.trust, expected_id=tx_id)
        self.consistency.observe(r.checkpoint, latest=False)
        return r

    def transaction(self, tx_id: str) -> VerifiedTransaction:
        """Reads a transaction with its payload (bearer token) and verifies
        that it has the id asked for, that the payload opens the header's
        commitment, that the author's signature verifies and that the
        receipt proves it in a trusted checkpoint."""
        tx_id = _check_id(tx_id)
        body = self._json(self._request("GET", f"/v1/transactions/{tx_id}", auth=True), "transaction")
        if not isinstance(body, dict) or "transaction" not in body or "receipt" not in body:
            raise ProtocolError("transaction answer lacks transaction or receipt")
        tx = Transaction.from_wire(body["transaction"])
        if tx.id != tx_id:
            raise VerificationError(f"asked for transaction {tx_id}, the node sent {tx.id}")
        r = verify_receipt(body["receipt"], self.trust, expected_id=tx_id, expected_preimage=tx.leaf_preimage)
        _field("id", tx_id, body.get("id"))
        _field("index", r.index, body.get("index"))
        self.consistency.observe(r.checkpoint, latest=False)
        return VerifiedTransaction(tx, VerifiedReceipt(r.id, r.index, r.checkpoint, r.header, r.text, body.get("height")))

    def _consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        body = self._json(self._request("GET", "/v1/proofs/consistency",
                                        params={"from": size1, "to": size2}), "consistency proof")
        if not isinstance(body, dict) or body.get("from") != size1 or body.get("to") != size2:
            raise ProtocolError(f"asked for a consistency proof from {size1} to {size2}, got another")
        proof = body.get("proof")
        if not isinstance(proof, list):
            raise ProtocolError("consistency proof has no hashes")
        return [b64decode_strict(h, "proof hash") for h in proof]

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """The raw (unverified) consistency proof between two tree sizes."""
        return self._consistency_proof(size1, size2)

    def blocks(self, start: int = 0, limit: int = 100) -> tuple[list[VerifiedBlock], int | None]:
        """Up to ``limit`` block headers from height ``start``, each verified
        (see :func:`verify_block`), and the height to ask for next."""
        body = self._json(self._request("GET", "/v1/blocks", params={"from": start, "limit": limit}), "blocks")
        if not isinstance(body, dict) or not isinstance(body.get("blocks"), list):
            raise ProtocolError("blocks answer has no blocks")
        out = []
        for k, b in enumerate(body["blocks"]):
            vb = verify_block(b, self.trust)
            _field("height", start + k, vb.height)
            out.append(vb)
        return out, body.get("next")

    def history(self, patient: str) -> "VerifiedRecords":
        """Every record about a patient (bearer token of a record reader),
        page by page as of one checkpoint, each verified (see :meth:`_records`)."""
        return self._records(f"/v1/patients/{patient}/history", "records")

    def access_log(self, patient: str) -> "VerifiedRecords":
        """Every logged read of a patient's records (bearer token of the
        data-protection officer or of that patient), each verified."""
        return self._records(f"/v1/patients/{patient}/access-log", "entries")

    def _records(self, path: str, field: str) -> "VerifiedRecords":
        """Reads all pages as of the first page's checkpoint and checks each
        record: its receipt proves its id in that checkpoint, the author's
        signature covers its header, and its payload with its salt opens the
        header's commitment."""
        records: list[VerifiedRecord] = []
        pinned: Checkpoint | None = None
        after: int | None = None
        withheld = 0
        while True:
            params: dict[str, int] = {}
            if pinned is not None:
                params["as_of"] = pinned.size
            if after is not None:
                params["after"] = after
            page = self._json(self._request("GET", path, auth=True, params=params), path)
            if not isinstance(page, dict) or not isinstance(page.get(field), list):
                raise ProtocolError(f"{path}: answer has no {field}")
            cp = Checkpoint.verify(page["checkpoint"], self.trust)
            _field("as_of", cp.size, page.get("as_of"))
            if pinned is None:
                self.consistency.observe(cp, latest=False)
                pinned = cp
            elif (cp.size, cp.root) != (pinned.size, pinned.root):
                raise VerificationError(f"{path}: pages answer as of different checkpoints")
            for e in page[field]:
                r = verify_receipt(e["receipt"], self.trust, expected_id=e["id"])
                if (r.checkpoint.size, r.checkpoint.root) != (cp.size, cp.root):
                    raise VerificationError(f"record {e['id']} is proven in another checkpoint than its page's")
                salt = bytes.fromhex(e["salt"])
                if commitment(salt, canonical_payload(e["payload"])).hex() != r.header["commitment"]:
                    raise VerificationError(f"record {e['id']}: payload does not open the header's commitment")
                for k in ("kind", "author", "time"):
                    _field(k, r.header[k], e.get(k))
                _field("index", r.index, e.get("index"))
                records.append(VerifiedRecord(e["id"], r.index, r.header, e["payload"], r))
            withheld += int(page.get("withheld") or 0)
            after = page.get("next_after")
            if after is None:
                break
        assert pinned is not None
        return VerifiedRecords(pinned, records, withheld)

    # -- services -----------------------------------------------------------

    def alerts(self, min_level: str | None = None) -> dict:
        """Current NEWS2 alerts (bearer token of a doctor, institution or admin)."""
        params = {"min_level": min_level} if min_level else {}
        return self._json(self._request("GET", "/v1/alerts", auth=True, params=params), "alerts")

    def follow_alerts(self, min_level: str | None = None, patient: str | None = None,
                      timeout: float | None = None,
                      on_open: Callable[[], None] | None = None) -> Iterator["AlertEvent"]:
        """Follows ``GET /v1/alerts/stream`` (Server-Sent Events): yields
        ``alert``, ``cleared`` and ``resync`` events as they come. On
        ``resync`` the stream fell behind: read :meth:`alerts` again.
        ``timeout`` bounds the wait for each event (None: wait forever).
        ``on_open`` is called once the node has subscribed this stream:
        every alert change after that call is delivered."""
        from httpx_sse import connect_sse

        params = {k: v for k, v in (("min_level", min_level), ("patient", patient)) if v}
        t = httpx.Timeout(REQUEST_TIMEOUT, read=timeout)
        try:
            with connect_sse(self._http, "GET", "/v1/alerts/stream", params=params,
                             headers=self._headers(True), timeout=t) as source:
                if not source.response.is_success:
                    source.response.read()
                    raise _problem(source.response)
                if on_open is not None:
                    on_open()
                for ev in source.iter_sse():
                    try:
                        data = json.loads(ev.data) if ev.data else None
                    except ValueError:
                        raise ProtocolError(f"alert event {ev.event!r} carries no JSON") from None
                    yield AlertEvent(ev.event, ev.id or None, data)
        except httpx.TransportError as e:
            raise TransportError(f"alert stream: {e}") from e

    # -- exports ------------------------------------------------------------

    def export(self, kind: str, date_from: str | None = None, date_to: str | None = None, *,
               verify: str = "full") -> "VerifiedExport":
        """A research export of one kind and range of days (bearer token),
        verified: see :func:`medledger.export.fetch_export`."""
        from .export import fetch_export

        return fetch_export(self, kind, date_from, date_to, verify=verify)


@dataclass(frozen=True)
class VerifiedRecord:
    """A record of a history or access log: receipt, header and payload verified."""

    id: str
    index: int
    header: dict
    payload: Any
    receipt: VerifiedReceipt


@dataclass(frozen=True)
class VerifiedRecords:
    """Records verified against one checkpoint; ``withheld`` counts those
    the patients' consent directives kept from this reader."""

    checkpoint: Checkpoint
    records: list[VerifiedRecord]
    withheld: int = 0


@dataclass(frozen=True)
class AlertEvent:
    """One Server-Sent Event of the alert stream."""

    event: str
    id: str | None
    data: Any


def _check_id(tx_id: str) -> str:
    tx_id = tx_id.strip().lower()
    if len(tx_id) != 64 or any(c not in "0123456789abcdef" for c in tx_id):
        raise FormatError(f"transaction id {tx_id!r} is not 64 hex digits")
    return tx_id


def verify_block(b: Any, trust: Trust) -> VerifiedBlock:
    """Checks a block as ``/v1/blocks`` returns it: its hash over
    ``medledger/block/v1\\n || JCS(header)``, a proposer that is a trusted node
    key and its signature, each transaction's id and the ``txs_root``."""
    if not isinstance(b, dict) or not isinstance(b.get("header"), dict):
        raise ProtocolError("block has no header")
    h = b["header"]
    height = b.get("height")

    def bad(what: str) -> VerificationError:
        return VerificationError(f"block {height}: {what}")

    msg = BLOCK_TAG + rfc8785.dumps(h)
    if hashlib.sha256(msg).hexdigest() != b.get("hash"):
        raise bad("hash does not match the header")
    if h.get("height") != height:
        raise bad(f"header says height {h.get('height')}")
    try:
        proposer = bytes.fromhex(h["proposer"])
        sig = bytes.fromhex(b["signature"])
    except (KeyError, TypeError, ValueError):
        raise bad("proposer or signature is not hex") from None
    if not any(v.public_key == proposer for v in trust.verifiers):
        raise bad(f"proposer {h['proposer']} is not a trusted node key")
    verify_signature(proposer, msg, sig)
    txs = b.get("transactions")
    if not isinstance(txs, list) or h.get("tx_count") != len(txs):
        raise bad("tx_count does not match the transactions sent")
    ids = []
    for t in txs:
        try:
            leaf = merkle.leaf_hash(header_jcs(t["header"]) + bytes.fromhex(t["signature"]))
        except (KeyError, TypeError, ValueError, FormatError) as e:
            raise bad(f"malformed transaction: {e}") from None
        if leaf.hex() != t.get("id"):
            raise bad(f"transaction {t.get('id')} has id {leaf.hex()}")
        ids.append(leaf)
    if merkle.root(ids).hex() != h.get("txs_root"):
        raise bad("txs_root does not match the transaction ids")
    return VerifiedBlock(height, b["hash"], h, txs)


__all__ = ["Client", "Retry", "NO_RETRY", "VerifiedTransaction", "VerifiedBlock", "VerifiedRecord", "VerifiedRecords", "AlertEvent",
           "verify_block"]
