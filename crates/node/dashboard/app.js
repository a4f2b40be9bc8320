/* The medledger dashboard: one ES module, no build step; its one dependency,
 * noble-ed25519.js, is vendored beside it and served by the node.
 *
 * Pages (hash routes): overview, epidemic and vaccination statistics, live
 * NEWS2 alerts, a receipt checker and a block explorer. Everything comes from
 * the node's public API; the token-gated parts (alerts, payloads) use a
 * bearer token kept in sessionStorage. Checkpoints and receipts are verified
 * here, in the browser: SHA-256 by WebCrypto, Ed25519 by noble-ed25519 under
 * the node's signature rule (ZIP-215, see docs/FORMATS.md §2.3).
 *
 * The verification functions are exported so that tests can import this
 * module and run them on known answers.
 */

// ---------------------------------------------------------------------------
// Settings: the token lives for the browser session, a pinned verifier key
// until it is unpinned.

import { Point, verifyAsync } from './noble-ed25519.js';

const TOKEN_KEY = 'medledger.token';
const VKEY_KEY = 'medledger.vkey';
const RECEIPT_DRAFT_KEY = 'medledger.receipt-draft';

function storageGet(store, key) {
  try {
    return store.getItem(key) || '';
  } catch {
    return '';
  }
}

function storageSet(store, key, value) {
  try {
    if (value) store.setItem(key, value);
    else store.removeItem(key);
  } catch {
    /* storage disabled: the value lasts for this page only */
  }
}

export const settings = {
  get token() {
    return storageGet(sessionStorage, TOKEN_KEY);
  },
  set token(v) {
    storageSet(sessionStorage, TOKEN_KEY, v.trim());
    updateTokenState();
  },
  get pinnedVkey() {
    return storageGet(localStorage, VKEY_KEY);
  },
  set pinnedVkey(v) {
    storageSet(localStorage, VKEY_KEY, v.trim());
  },
};

/** The node's status as last read (origin, vkey, sizes). */
let nodeStatus = null;

// ---------------------------------------------------------------------------
// DOM helpers. Elements are built with createElement and textContent only:
// no HTML strings, so nothing from the node is ever parsed as markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

function append(el, kids) {
  for (const kid of kids) {
    if (kid == null || kid === false) continue;
    if (Array.isArray(kid)) append(el, kid);
    else if (kid instanceof Node) el.append(kid);
    else el.append(document.createTextNode(String(kid)));
  }
  return el;
}

function setProps(el, props) {
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.setAttribute('class', v);
    else if (k === 'text') el.textContent = v;
    else if (k === 'value') el.value = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  return el;
}

/** Appends children, skipping null and false (Element.append would print them). */
function put(parent, ...kids) {
  return append(parent, kids);
}

/** An HTML element: h('a', {href: '#/'}, 'text', child, ...). */
function h(tag, props, ...kids) {
  return append(setProps(document.createElement(tag), props), kids);
}

/** An SVG element. */
function s(tag, props, ...kids) {
  return append(setProps(document.createElementNS(SVG_NS, tag), props), kids);
}

const NF = new Intl.NumberFormat('en');
const NF1 = new Intl.NumberFormat('en', { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const fmt = (n) => (n == null ? '—' : NF.format(n));
const rateText = (r) => (r >= 100 ? NF.format(Math.round(r)) : NF1.format(r));

function clockTime(d = new Date()) {
  return d.toLocaleTimeString('en-GB', { hour12: false });
}

/** Milliseconds since the epoch (or an ISO string) as "YYYY-MM-DD HH:MM:SS UTC". */
function utcTime(t) {
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

function timeEl(t) {
  const d = new Date(t);
  return h('time', { datetime: Number.isNaN(d.getTime()) ? null : d.toISOString() }, utcTime(t));
}

function shortHex(hex, head = 10) {
  return hex.length > head + 6 ? `${hex.slice(0, head)}…${hex.slice(-4)}` : hex;
}

function mono(text, title) {
  return h('code', { class: 'mono', title }, text);
}

function announce(message) {
  const el = document.getElementById('announcer');
  if (!el) return;
  el.textContent = '';
  requestAnimationFrame(() => {
    el.textContent = message;
  });
}

function notice(kind, ...kids) {
  const role = kind === 'error' ? 'alert' : 'status';
  return h('div', { class: `notice notice--${kind}`, role }, ...kids);
}

function describeError(err) {
  if (err instanceof ApiError) {
    const where = err.status ? ` (HTTP ${err.status}${err.code ? `, ${err.code}` : ''})` : '';
    return `${err.detail}${where}`;
  }
  return err && err.message ? err.message : String(err);
}

function errorBox(err, what = 'Could not load this page') {
  return notice('error', h('strong', {}, `${what}: `), describeError(err));
}

function loading(text = 'Loading…') {
  return h('p', { class: 'loading muted', role: 'status' }, text);
}

function tokenLink(text = 'Settings') {
  return h('a', { href: '#/settings' }, text);
}

/** A definition list from [term, description] pairs. */
function dl(pairs, cls = 'facts') {
  const list = h('dl', { class: cls });
  for (const [term, desc, field] of pairs) {
    list.append(h('div', { class: 'facts__item' }, h('dt', {}, term), h('dd', { 'data-field': field }, desc)));
  }
  return list;
}

// ---------------------------------------------------------------------------
// The API. Every failure becomes an ApiError carrying the problem's detail.

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

export async function api(path, { auth = false, as = 'json', signal } = {}) {
  const headers = { Accept: as === 'json' ? 'application/json' : 'text/plain' };
  if (auth) {
    const token = settings.token;
    if (!token) throw new ApiError(0, 'no_token', 'this needs a bearer token: set one in Settings');
    headers.Authorization = `Bearer ${token}`;
  }
  let res;
  try {
    res = await fetch(path, { headers, signal, cache: 'no-store' });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', `the node did not answer (${e && e.message ? e.message : e})`);
  }
  const body = await res.text();
  if (!res.ok) {
    let detail = `${res.status} ${res.statusText}`.trim();
    let code = '';
    try {
      const problem = JSON.parse(body);
      if (problem && typeof problem.detail === 'string') detail = problem.detail;
      if (problem && typeof problem.code === 'string') code = problem.code;
    } catch {
      /* not problem+json: keep the status line */
    }
    throw new ApiError(res.status, code, detail);
  }
  if (as === 'text') return body;
  try {
    return JSON.parse(body);
  } catch {
    throw new ApiError(res.status, 'malformed_json', `the node answered ${path} with malformed JSON`);
  }
}

// ---------------------------------------------------------------------------
// Verification: C2SP signed notes, checkpoints, tlog-proof receipts, RFC 9162
// inclusion and consistency proofs. WebCrypto does the hashing,
// noble-ed25519 the signatures.

export class VerifyError extends Error {
  constructor(message) {
    super(message);
    this.name = 'VerifyError';
  }
}

const utf8 = new TextEncoder();

function concatBytes(...parts) {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
}

/**
 * Decodes an Ed25519 public key as the node does (keys::verifying_key): any
 * encoding of a curve point, but never one of small order, since under the
 * signature rule such a key has valid signatures on every message.
 */
function ed25519Key(bytes) {
  let point;
  try {
    point = Point.fromBytes(bytes, true);
  } catch {
    throw new VerifyError('invalid Ed25519 public key');
  }
  if (point.isSmallOrder()) throw new VerifyError('invalid Ed25519 public key: small order');
  return bytes;
}

/**
 * The node's signature rule (crates/formats/src/sig.rs): ZIP-215. S must be
 * canonical, A and R may be any encoding of a point and are hashed as
 * given, and the cofactored equation [8][S]B = [8]R + [8][k]A must hold.
 * WebCrypto's Ed25519 is cofactorless, so it is not used here.
 */
async function verifyEd25519(publicKey, signature, message) {
  if (signature.length !== 64) return false;
  try {
    return await verifyAsync(signature, message, publicKey, { zip215: true });
  } catch {
    return false;
  }
}

export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export function fromHex(hex) {
  if (!/^(?:[0-9a-f]{2})*$/.test(hex)) throw new VerifyError('not lowercase hex');
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function b64encode(bytes) {
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

/** Strict standard base64: padded, and canonical (zero trailing bits). */
export function b64decode(text, what = 'data') {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    throw new VerifyError(`${what} is not canonical base64`);
  }
  let bin;
  try {
    bin = atob(text);
  } catch {
    throw new VerifyError(`${what} is not canonical base64`);
  }
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  if (b64encode(bytes) !== text) throw new VerifyError(`${what} is not canonical base64`);
  return bytes;
}

function checkKeyName(name) {
  if (!name) throw new VerifyError('key name is empty');
  if (/[\s\u0085]/u.test(name)) throw new VerifyError('key name contains whitespace');
  if (name.includes('+')) throw new VerifyError("key name contains '+'");
  if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) throw new VerifyError('key name contains a control character');
}

function decimalU64(text, what) {
  if (!text) throw new VerifyError(`${what} is empty`);
  if (!/^[0-9]+$/.test(text)) throw new VerifyError(`${what} is not a decimal number`);
  if (text.length > 1 && text[0] === '0') throw new VerifyError(`${what} has leading zeros`);
  const n = BigInt(text);
  if (n > 0xffffffffffffffffn) throw new VerifyError(`${what} does not fit in 64 bits`);
  return n;
}

/**
 * Parses a verifier key `name+hex8(key id)+base64(0x01 || Ed25519 key)` and
 * checks its key id, SHA-256(name || 0x0A || 0x01 || key)[0..4].
 */
export async function parseVkey(vkey) {
  const text = vkey.trim();
  const a = text.indexOf('+');
  const b = a < 0 ? -1 : text.indexOf('+', a + 1);
  if (a < 0 || b < 0) throw new VerifyError('verifier key is not name+keyid+key');
  const name = text.slice(0, a);
  const idHex = text.slice(a + 1, b);
  checkKeyName(name);
  if (!/^[0-9a-f]{8}$/.test(idHex)) throw new VerifyError('verifier key id is not 8 lowercase hex digits');
  const material = b64decode(text.slice(b + 1), 'verifier key');
  if (material.length === 0) throw new VerifyError('verifier key is empty');
  if (material[0] !== 0x01) {
    throw new VerifyError(`unsupported verifier key type 0x${material[0].toString(16).padStart(2, '0')} (only Ed25519 is supported)`);
  }
  const publicKey = material.slice(1);
  if (publicKey.length !== 32) throw new VerifyError('Ed25519 verifier key is not 32 bytes');
  const expected = toHex((await sha256(concatBytes(utf8.encode(name), Uint8Array.of(0x0a, 0x01), publicKey))).slice(0, 4));
  if (expected !== idHex) {
    throw new VerifyError(`verifier key id ${idHex} does not match its name and key (expected ${expected})`);
  }
  const key = ed25519Key(publicKey);
  return { name, keyId: idHex, publicKey, key, vkey: text };
}

/** Splits a C2SP signed note into its text and signature lines. */
export function parseNote(note) {
  if (utf8.encode(note).length > 1 << 20) throw new VerifyError('note is larger than 1 MiB');
  const ctl = note.search(/[\u0000-\u0009\u000b-\u001f]/);
  if (ctl >= 0) throw new VerifyError(`note contains a control character at offset ${ctl}`);
  const split = note.lastIndexOf('\n\n');
  if (split < 0) throw new VerifyError('note has no blank line separating the text from the signatures');
  const text = note.slice(0, split + 1);
  const block = note.slice(split + 2);
  if (!block) throw new VerifyError('note has no signature lines');
  if (!block.endsWith('\n')) throw new VerifyError('note does not end with a newline');
  const lines = block.slice(0, -1).split('\n');
  if (lines.length > 100) throw new VerifyError('note has more than 100 signatures');
  const firstLine = text.split('\n').length + 1;
  const sigs = lines.map((line, i) => {
    const bad = (reason) => new VerifyError(`malformed signature line ${firstLine + i}: ${reason}`);
    if (!line.startsWith('\u2014 ')) throw bad('does not start with an em dash and a space');
    const rest = line.slice(2);
    const sp = rest.indexOf(' ');
    if (sp < 0) throw bad('no space between key name and signature');
    const name = rest.slice(0, sp);
    try {
      checkKeyName(name);
    } catch (e) {
      throw bad(e.message);
    }
    const b64 = rest.slice(sp + 1);
    if (!b64) throw bad('signature is empty');
    let raw;
    try {
      raw = b64decode(b64, 'signature');
    } catch (e) {
      throw bad(e.message);
    }
    if (raw.length < 4) throw bad('signature is shorter than a key id');
    if (raw.length === 4) throw bad('signature has a key id but no signature bytes');
    return { name, keyId: toHex(raw.slice(0, 4)), sig: raw.slice(4) };
  });
  return { text, sigs };
}

/** Parses a checkpoint text: origin, decimal size, base64 root, extensions. */
export function parseCheckpoint(text) {
  if (!text.endsWith('\n')) throw new VerifyError('checkpoint text does not end with a newline');
  const lines = text.slice(0, -1).split('\n');
  const origin = lines[0];
  if (!origin) throw new VerifyError('checkpoint origin is empty');
  if (lines.length < 2) throw new VerifyError('checkpoint tree size is missing');
  const size = decimalU64(lines[1], 'checkpoint tree size');
  if (lines.length < 3) throw new VerifyError('checkpoint root hash is missing');
  const root = b64decode(lines[2], 'checkpoint root hash');
  if (root.length !== 32) throw new VerifyError('checkpoint root hash is not 32 bytes');
  const extensions = lines.slice(3);
  if (extensions.some((e) => e === '')) throw new VerifyError('checkpoint extension line is empty');
  return { origin, size, root, rootB64: lines[2], extensions };
}

/**
 * Verifies a signed checkpoint note against a verifier key, as the node's
 * Checkpoint::verify_note does: signatures by the trusted key must verify
 * (others are ignored), at least one must, the text must be a checkpoint,
 * and the verifying key must be named like the checkpoint's origin.
 */
export async function verifyCheckpointNote(noteText, vkey) {
  const verifier = typeof vkey === 'string' ? await parseVkey(vkey) : vkey;
  const note = parseNote(noteText);
  const mine = note.sigs.filter((sig) => sig.name === verifier.name && sig.keyId === verifier.keyId);
  if (mine.length === 0) {
    const names = [...new Set(note.sigs.map((sig) => sig.name))].join(', ');
    throw new VerifyError(`the checkpoint has no signature by the trusted key ${verifier.name}+${verifier.keyId} (signed by ${names})`);
  }
  for (const sig of mine) {
    const ok = await verifyEd25519(verifier.key, sig.sig, utf8.encode(note.text));
    if (!ok) throw new VerifyError(`the checkpoint signature by ${verifier.name} (key id ${verifier.keyId}) does not verify`);
  }
  const checkpoint = parseCheckpoint(note.text);
  if (checkpoint.origin !== verifier.name) {
    throw new VerifyError(`the checkpoint is for origin ${checkpoint.origin}, but the trusted key is named ${verifier.name}`);
  }
  return {
    ...checkpoint,
    signers: note.sigs.map((sig) => ({ name: sig.name, keyId: sig.keyId, verified: sig.name === verifier.name && sig.keyId === verifier.keyId })),
    verifier,
  };
}

const nodeHash = (left, right) => sha256(concatBytes(Uint8Array.of(0x01), left, right));

/** RFC 6962 leaf hash: SHA-256(0x00 || entry). */
export function leafHash(entry) {
  return sha256(concatBytes(Uint8Array.of(0x00), entry));
}

/** RFC 9162 section 2.1.3.2: verifies an inclusion proof. */
export async function verifyInclusion(leaf, index, size, proof, root) {
  index = BigInt(index);
  size = BigInt(size);
  if (index >= size) throw new VerifyError(`leaf index ${index} is out of range for tree size ${size}`);
  let fn = index;
  let sn = size - 1n;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) throw new VerifyError(`the inclusion proof has more hashes than a tree of size ${size} needs`);
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new VerifyError(`the inclusion proof has fewer hashes than a tree of size ${size} needs`);
  if (!equalBytes(r, root)) throw new VerifyError(`the inclusion proof does not lead to the checkpoint's root (size ${size})`);
}

/** RFC 9162 section 2.1.4.2: verifies a consistency proof. */
export async function verifyConsistency(size1, size2, proof, root1, root2) {
  size1 = BigInt(size1);
  size2 = BigInt(size2);
  if (size1 > size2) throw new VerifyError(`size ${size1} is larger than size ${size2}`);
  if (size1 === 0n) throw new VerifyError('consistency with the empty tree is not proven');
  if (size1 === size2) {
    if (proof.length) throw new VerifyError('a proof between equal sizes must be empty');
    if (!equalBytes(root1, root2)) throw new VerifyError(`two different roots for the same size ${size1}`);
    return;
  }
  if (proof.length === 0) throw new VerifyError('the consistency proof is empty');
  const path = (size1 & (size1 - 1n)) === 0n ? [root1, ...proof] : [...proof];
  let fn = size1 - 1n;
  let sn = size2 - 1n;
  while ((fn & 1n) === 1n) {
    fn >>= 1n;
    sn >>= 1n;
  }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0n) throw new VerifyError('the consistency proof is too long');
    if ((fn & 1n) === 1n || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new VerifyError('the consistency proof is too short');
  if (!equalBytes(fr, root1)) throw new VerifyError(`the consistency proof does not lead to the root at size ${size1}`);
  if (!equalBytes(sr, root2)) throw new VerifyError(`the consistency proof does not lead to the root at size ${size2}`);
}

const TLOG_PROOF_HEADER = 'c2sp.org/tlog-proof@v1';

/** Parses a c2sp.org/tlog-proof@v1 receipt strictly, as receipt.rs does. */
export function parseReceipt(text) {
  if (utf8.encode(text).length > 2 << 20) throw new VerifyError('the receipt is larger than 2 MiB');
  const bad = (line, what, reason) => new VerifyError(`malformed receipt, line ${line}: ${what ? `${what} ` : ''}${reason}`);
  let rest = text;
  let lineNo = 1;
  const next = () => {
    const nl = rest.indexOf('\n');
    if (nl < 0) return null;
    const line = rest.slice(0, nl);
    rest = rest.slice(nl + 1);
    return line;
  };
  const header = next();
  if (header === null) throw bad(1, 'header', 'is missing or not newline-terminated');
  if (header !== TLOG_PROOF_HEADER) throw bad(1, 'header', `is not ${TLOG_PROOF_HEADER}`);
  lineNo += 1;
  let line = next();
  if (line === null) throw bad(lineNo, 'index line', 'is missing');
  let extra = null;
  if (line.startsWith('extra ')) {
    try {
      extra = b64decode(line.slice(6), 'extra data');
    } catch {
      throw bad(lineNo, 'extra data', 'is not canonical base64');
    }
    lineNo += 1;
    line = next();
    if (line === null) throw bad(lineNo, 'index line', 'is missing');
  }
  if (!line.startsWith('index ')) throw bad(lineNo, 'index line', 'does not start with "index "');
  let index;
  try {
    index = decimalU64(line.slice(6), 'index');
  } catch (e) {
    throw bad(lineNo, '', e.message);
  }
  const proof = [];
  for (;;) {
    lineNo += 1;
    const l = next();
    if (l === null) throw bad(lineNo, 'proof', 'has no empty line before the checkpoint');
    if (l === '') break;
    if (proof.length >= 64) throw bad(lineNo, 'proof', 'has more than 64 hashes');
    let hash;
    try {
      hash = b64decode(l, 'proof hash');
    } catch {
      throw bad(lineNo, 'proof hash', 'is not canonical base64');
    }
    if (hash.length !== 32) throw bad(lineNo, 'proof hash', 'is not 32 bytes');
    proof.push(hash);
  }
  const noteText = rest;
  const note = parseNote(noteText);
  const checkpoint = parseCheckpoint(note.text);
  return { extra, index, proof, noteText, checkpoint };
}

/**
 * Verifies a receipt offline. Returns {ok: true, ...} or {ok: false, reason,
 * ...} with whatever was established before the failure (the parsed
 * checkpoint, index and leaf), so a page can say against what it failed.
 *
 * The leaf is SHA-256(0x00 || extra) (a medledger transaction id) unless
 * `leafHex` is given. When the extra line holds a medledger transaction
 * header and its signature, the author's signature is checked too.
 */
export async function verifyReceipt(text, vkey, { leafHex = '' } = {}) {
  const out = { ok: false, reason: '', checkpoint: null, index: null, leafHex: null, tx: null, leafFrom: null };
  try {
    const r = parseReceipt(text.replace(/\r\n/g, '\n'));
    out.index = r.index;
    out.checkpoint = r.checkpoint;
    let leaf;
    const wanted = leafHex.trim().toLowerCase();
    if (wanted) {
      if (!/^[0-9a-f]{64}$/.test(wanted)) throw new VerifyError('the leaf hash must be 64 hex digits');
      leaf = fromHex(wanted);
      out.leafFrom = 'given';
    } else {
      if (!r.extra) throw new VerifyError('the receipt has no extra line, so the leaf it proves is unknown: give its leaf hash');
      leaf = await leafHash(r.extra);
      out.leafFrom = 'extra';
    }
    out.leafHex = toHex(leaf);
    if (r.extra && r.extra.length > 64) out.tx = await readTxHeader(r.extra, leaf);
    const verifier = await parseVkey(vkey).catch((e) => {
      throw new VerifyError(`the verifier key is unusable: ${e.message}`);
    });
    const cp = await verifyCheckpointNote(r.noteText, verifier);
    out.checkpoint = cp;
    await verifyInclusion(leaf, r.index, cp.size, r.proof, cp.root);
    if (out.tx && out.tx.isLeaf && !out.tx.signatureOk) {
      throw new VerifyError("the author's signature over the transaction header does not verify");
    }
    out.ok = true;
  } catch (e) {
    if (!(e instanceof VerifyError)) throw e;
    out.reason = e.message;
  }
  return out;
}

const TX_TAG = utf8.encode('medledger/tx/v1\n');

/** Reads `JCS(header) || signature` from a receipt's extra data, if it is one. */
async function readTxHeader(extra, leaf) {
  const headerBytes = extra.slice(0, extra.length - 64);
  const sig = extra.slice(extra.length - 64);
  let header;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch {
    return null;
  }
  if (!header || typeof header !== 'object' || typeof header.author !== 'string' || typeof header.kind !== 'string') return null;
  const isLeaf = equalBytes(await leafHash(extra), leaf);
  let signatureOk = false;
  try {
    const key = ed25519Key(fromHex(header.author));
    signatureOk = await verifyEd25519(key, sig, concatBytes(TX_TAG, headerBytes));
  } catch {
    signatureOk = false;
  }
  return { header, isLeaf, signatureOk };
}

// ---------------------------------------------------------------------------
// Charts: SVG built by hand, sized to its container so that text stays
// legible at every width, and redrawn when the container's width changes.

const PALETTE = ['#0b5fa5', '#c2410c', '#15803d', '#7e22ce', '#a16207', '#be185d', '#0e7490', '#4b5563', '#1d4ed8', '#b91c1c'];
// Ordered bands: light to dark blue, then purple and magenta, each at
// least 3:1 against white.
const BAND_PALETTE = ['#5b9bd5', '#2f7fc4', '#1b5e9e', '#173f77', '#4b3f99', '#6d2f8e', '#922a7f', '#b02a5c', '#8a1c2b'];

const DAY_MS = 86400000;
const dayNumber = (iso) => Math.round(Date.parse(`${iso}T00:00:00Z`) / DAY_MS);
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

function niceStep(range, count) {
  const raw = range / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= raw) return Math.max(1, m * mag);
  return 10 * mag;
}

function yTicks(max, count = 5) {
  const top = Math.max(1, max);
  const step = niceStep(top, count);
  const ticks = [];
  for (let v = 0; v <= top + step * 0.999; v += step) ticks.push(Math.round(v * 1000) / 1000);
  if (ticks[ticks.length - 1] < top) ticks.push(ticks[ticks.length - 1] + step);
  return ticks;
}

/** Date ticks for a day range: days, weeks (Mondays), months or quarters. */
function dateTicks(day0, day1, pxPerDay) {
  const ticks = [];
  const minGap = 52;
  if (pxPerDay * 14 >= minGap || day1 - day0 <= 14) {
    // Every day, every Monday, or every other Monday (counted from the epoch,
    // so the ticks stay put as the range grows).
    const every = pxPerDay >= minGap ? 1 : pxPerDay * 7 >= minGap ? 7 : 14;
    for (let d = day0; d <= day1; d++) {
      const date = new Date(d * DAY_MS);
      const monday = date.getUTCDay() === 1;
      if (every === 1 || (monday && (every === 7 || Math.floor((d - 4) / 7) % 2 === 0))) {
        ticks.push({ day: d, label: `${date.getUTCDate()} ${MONTHS[date.getUTCMonth()]}` });
      }
    }
    return ticks;
  }
  const months = pxPerDay * 30 >= minGap ? 1 : pxPerDay * 91 >= minGap ? 3 : 12;
  const start = new Date(day0 * DAY_MS);
  let y = start.getUTCFullYear();
  let m = start.getUTCMonth();
  for (;;) {
    const d = Date.UTC(y, m, 1) / DAY_MS;
    if (d > day1) break;
    if (d >= day0 && m % months === 0) {
      const label = m === 0 || ticks.length === 0 ? `${MONTHS[m]} ${y}` : MONTHS[m];
      ticks.push({ day: d, label });
    }
    m += 1;
    if (m === 12) {
      m = 0;
      y += 1;
    }
  }
  return ticks;
}

function diamond(x, y, r) {
  return `M${x.toFixed(1)} ${(y - r).toFixed(1)}L${(x + r).toFixed(1)} ${y.toFixed(1)}L${x.toFixed(1)} ${(y + r).toFixed(1)}L${(x - r).toFixed(1)} ${y.toFixed(1)}Z`;
}

function suppressedTitle(entry, k) {
  return entry.status === 'primary'
    ? `suppressed (fewer than ${k})`
    : `suppressed (fewer than ${k} in a related cell: withheld so that it cannot be derived)`;
}

/** Width available to a chart inside `host`. */
function chartWidth(host) {
  const w = host.clientWidth || host.getBoundingClientRect().width || 800;
  return Math.max(280, Math.round(w));
}

/** Calls draw(width) now and again whenever host's width changes noticeably. */
function responsive(ctx, host, draw) {
  if (host.resizeObserver) host.resizeObserver.disconnect();
  let last = 0;
  const redraw = () => {
    const w = chartWidth(host);
    if (Math.abs(w - last) < 24) return;
    last = w;
    draw(w);
  };
  redraw();
  let pending = 0;
  const ro = new ResizeObserver(() => {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(redraw);
  });
  ro.observe(host);
  host.resizeObserver = ro;
  ctx.onCleanup(() => ro.disconnect());
  return {
    force() {
      last = 0;
      redraw();
    },
  };
}

function yAxis(svg, { left, right, width, top, bottom, ticks, yOf, label }) {
  const g = s('g', { class: 'axis axis--y', 'aria-hidden': 'true' });
  for (const t of ticks) {
    const y = yOf(t);
    g.append(s('line', { class: 'grid', x1: left, x2: width - right, y1: y, y2: y }));
    g.append(s('text', { class: 'tick-label', x: left - 8, y: y + 4, 'text-anchor': 'end' }, fmt(t)));
  }
  g.append(s('text', { class: 'axis-label', transform: `translate(14 ${(top + bottom) / 2}) rotate(-90)`, 'text-anchor': 'middle' }, label));
  svg.append(g);
}

function leftMargin(ticks) {
  const longest = Math.max(...ticks.map((t) => fmt(t).length));
  return 34 + longest * 7.2;
}

/**
 * A time-series line chart: one line per series, a circle per published
 * cell, an open diamond in a strip under the axis per withheld cell (never
 * at zero), and the line broken wherever a cell is withheld or missing.
 *
 * series: [{key, label, color, cells: Map(isoDate -> entry)}]
 */
function timeSeriesChart({ width, dates, series, k, yLabel, xLabel, ariaLabel, unit, plotHeight }) {
  const day0 = dayNumber(dates[0]);
  const day1 = dayNumber(dates[dates.length - 1]);
  let max = 0;
  for (const sr of series) for (const e of sr.cells.values()) if (e.value != null && e.value > max) max = e.value;
  const ticks = yTicks(max);
  const yMax = ticks[ticks.length - 1];
  const withSuppressed = series.filter((sr) => [...sr.cells.values()].some((e) => e.value == null));
  const left = Math.max(leftMargin(ticks), withSuppressed.length ? 64 : 0);
  const right = 16;
  const top = 14;
  const plotH = plotHeight || (width < 560 ? 220 : 300);
  const rowH = 8;
  const stripTop = top + plotH + 10;
  const stripH = withSuppressed.length ? 6 + withSuppressed.length * rowH : 0;
  const axisTextY = top + plotH + stripH + 18;
  const height = axisTextY + 26;
  const plotW = width - left - right;
  const span = Math.max(1, day1 - day0);
  const xOf = (day) => (day0 === day1 ? left + plotW / 2 : left + ((day - day0) / span) * plotW);
  const yOf = (v) => top + plotH - (v / yMax) * plotH;
  const dense = dates.length > 120;
  const radius = dense ? 1.6 : dates.length > 60 ? 2.2 : 2.8;
  const pxPerDay = plotW / span;
  const diamondR = Math.min(3.2, Math.max(1.8, pxPerDay / 2 - 0.2));

  const svg = s('svg', {
    class: 'chart',
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: 'group',
    'aria-label': ariaLabel,
    'data-y0': yOf(0).toFixed(1),
  });
  yAxis(svg, { left, right, width, top, bottom: top + plotH, ticks, yOf, label: yLabel });

  const xg = s('g', { class: 'axis axis--x', 'aria-hidden': 'true' });
  xg.append(s('line', { class: 'baseline', x1: left, x2: width - right, y1: yOf(0), y2: yOf(0) }));
  for (const t of dateTicks(day0, day1, pxPerDay)) {
    const x = xOf(t.day);
    xg.append(s('line', { class: 'tick', x1: x, x2: x, y1: yOf(0), y2: yOf(0) + 4 }));
    xg.append(s('text', { class: 'tick-label', x, y: axisTextY, 'text-anchor': 'middle' }, t.label));
  }
  xg.append(s('text', { class: 'axis-label', x: left + plotW / 2, y: height - 4, 'text-anchor': 'middle' }, xLabel));
  if (stripH) {
    xg.append(s('line', { class: 'strip-rule', x1: left, x2: width - right, y1: stripTop - 4, y2: stripTop - 4 }));
    xg.append(s('text', { class: 'strip-label', x: left - 8, y: stripTop + stripH / 2, 'text-anchor': 'end' }, 'withheld'));
  }
  svg.append(xg);

  for (const sr of series) {
    const g = s('g', { class: 'series', 'data-series': sr.key });
    const row = withSuppressed.indexOf(sr);
    const stripY = stripTop + 2 + row * rowH + rowH / 2;
    let d = '';
    let open = false;
    const marks = [];
    for (const date of dates) {
      const e = sr.cells.get(date);
      if (!e || e.value == null) {
        open = false;
        if (e) {
          const x = xOf(dayNumber(date));
          marks.push(
            s(
              'path',
              {
                class: 'suppressed',
                d: diamond(x, stripY, diamondR),
                stroke: sr.color,
                role: 'img',
                'data-date': date,
                'data-series': sr.key,
                'data-y': stripY.toFixed(1),
                'data-status': e.status,
              },
              s('title', {}, `${sr.label}, ${date}: ${suppressedTitle(e, k)}`),
            ),
          );
        }
        continue;
      }
      const x = xOf(dayNumber(date));
      const y = yOf(e.value);
      d += `${open ? 'L' : 'M'}${x.toFixed(1)} ${y.toFixed(1)}`;
      open = true;
      marks.push(
        s(
          'circle',
          { class: 'point', cx: x.toFixed(1), cy: y.toFixed(1), r: radius, fill: sr.color, role: 'img', 'data-date': date, 'data-series': sr.key, 'data-value': e.value, 'data-y': y.toFixed(1) },
          s('title', {}, `${sr.label}, ${date}: ${fmt(e.value)} ${unit}`),
        ),
      );
    }
    if (d) g.append(s('path', { class: dense ? 'line line--dense' : 'line', d, stroke: sr.color, 'aria-hidden': 'true' }));
    append(g, marks);
    svg.append(g);
  }
  return svg;
}

/**
 * A bar chart of categories, optionally grouped: groups along x, one bar per
 * member inside a group. Withheld cells get an open diamond under the axis.
 *
 * groups: [{key, label, bars: [{key, label, color, entry}]}]
 */
function barChart({ width, groups, k, yLabel, xLabel, ariaLabel, unit, plotHeight, rotateLabels }) {
  let max = 0;
  let anySuppressed = false;
  for (const g of groups)
    for (const b of g.bars) {
      if (b.entry && b.entry.value != null) max = Math.max(max, b.entry.value);
      if (b.entry && b.entry.value == null) anySuppressed = true;
    }
  const ticks = yTicks(max);
  const yMax = ticks[ticks.length - 1];
  const left = Math.max(leftMargin(ticks), anySuppressed ? 64 : 0);
  const right = 12;
  const top = 14;
  const plotH = plotHeight || (width < 560 ? 200 : 260);
  const stripTop = top + plotH + 8;
  const stripH = anySuppressed ? 14 : 0;
  const labelY = top + plotH + stripH + 18;
  const height = labelY + (rotateLabels ? 44 : 28);
  const plotW = width - left - right;
  const groupW = plotW / Math.max(1, groups.length);
  const yOf = (v) => top + plotH - (v / yMax) * plotH;

  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${width} ${height}`, width, height, role: 'group', 'aria-label': ariaLabel, 'data-y0': yOf(0).toFixed(1) });
  yAxis(svg, { left, right, width, top, bottom: top + plotH, ticks, yOf, label: yLabel });
  const xg = s('g', { class: 'axis axis--x', 'aria-hidden': 'true' });
  xg.append(s('line', { class: 'baseline', x1: left, x2: width - right, y1: yOf(0), y2: yOf(0) }));
  if (stripH) xg.append(s('text', { class: 'strip-label', x: left - 8, y: stripTop + 8, 'text-anchor': 'end' }, 'withheld'));
  const labelEvery = Math.max(1, Math.ceil((rotateLabels ? 16 : 56) / groupW));
  groups.forEach((g, gi) => {
    const cx = left + groupW * gi + groupW / 2;
    if (gi % labelEvery === 0) {
      const text = s('text', { class: 'tick-label', x: cx, y: labelY, 'text-anchor': rotateLabels ? 'end' : 'middle' }, g.label);
      if (rotateLabels) text.setAttribute('transform', `rotate(-35 ${cx} ${labelY})`);
      xg.append(text);
    }
  });
  if (xLabel) xg.append(s('text', { class: 'axis-label', x: left + plotW / 2, y: height - 4, 'text-anchor': 'middle' }, xLabel));
  svg.append(xg);

  const bars = s('g', { class: 'bars' });
  groups.forEach((g, gi) => {
    const inner = groupW * (groups.length > 1 && g.bars.length > 1 ? 0.82 : 0.7);
    const bw = inner / Math.max(1, g.bars.length);
    const x0 = left + groupW * gi + (groupW - inner) / 2;
    g.bars.forEach((b, bi) => {
      if (!b.entry) return;
      const x = x0 + bw * bi;
      const name = g.bars.length > 1 ? `${g.label}, ${b.label}` : g.label;
      if (b.entry.value == null) {
        const y = stripTop + 7;
        bars.append(
          s(
            'path',
            { class: 'suppressed', d: diamond(x + bw / 2, y, Math.min(4, Math.max(2.4, bw / 2 - 0.5))), stroke: b.color, role: 'img', 'data-series': b.key, 'data-group': g.key, 'data-y': y.toFixed(1), 'data-status': b.entry.status },
            s('title', {}, `${name}: ${suppressedTitle(b.entry, k)}`),
          ),
        );
        return;
      }
      const y = yOf(b.entry.value);
      const gap = bw > 4 ? Math.min(1.5, bw * 0.15) : 0;
      bars.append(
        s(
          'rect',
          {
            class: 'bar',
            x: (x + gap / 2).toFixed(2),
            y: y.toFixed(2),
            width: Math.max(0.8, bw - gap).toFixed(2),
            height: Math.max(0, yOf(0) - y).toFixed(2),
            fill: b.color,
            role: 'img',
            'data-series': b.key,
            'data-group': g.key,
            'data-value': b.entry.value,
          },
          s('title', {}, `${name}: ${fmt(b.entry.value)} ${unit}`),
        ),
      );
    });
  });
  svg.append(bars);
  return svg;
}

/** An HTML legend; hovering or focusing an item highlights its series. */
function legend(items, chartHost) {
  const list = h('ul', { class: 'legend', 'aria-label': 'Legend' });
  for (const it of items) {
    const sw = h('span', { class: `swatch${it.outline ? ' swatch--outline' : ''}`, 'aria-hidden': 'true' });
    sw.style.background = it.outline ? 'transparent' : it.color;
    sw.style.borderColor = it.color;
    const focus = (on) => {
      const svgs = chartHost ? chartHost.querySelectorAll('svg.chart') : [];
      for (const svg of svgs) {
        svg.classList.toggle('has-focus', on);
        for (const g of svg.querySelectorAll('[data-series]')) g.classList.toggle('is-focused', on && g.dataset.series === it.key);
      }
    };
    const item = h('li', { class: 'legend__item', onmouseenter: () => focus(true), onmouseleave: () => focus(false) }, sw, h('span', {}, it.label), it.note ? h('span', { class: 'muted legend__note' }, it.note) : null);
    list.append(item);
  }
  return list;
}

function suppressionSummary(table) {
  const r = table.rule;
  if (r.primary_suppressions + r.complementary_suppressions === 0) {
    return h('p', { class: 'muted rule' }, h('strong', {}, 'Small-cell suppression: '), `${r.primary}; ${r.complementary}. Nothing in this table needed withholding.`);
  }
  return h(
    'p',
    { class: 'muted rule' },
    h('strong', {}, 'Small-cell suppression: '),
    `${r.primary}; ${r.complementary}. This table withholds ${fmt(r.primary_suppressions)} ${r.primary_suppressions === 1 ? 'entry' : 'entries'} as small counts and ${fmt(r.complementary_suppressions)} more to protect them (cells and totals). Withheld cells are drawn as `,
    h('span', { class: 'diamond-inline', 'aria-hidden': 'true' }, '◇'),
    ' under the axis, never as zero.',
  );
}

/** A collapsible data table, built the first time it is opened. */
function dataTable(summaryText, build) {
  const details = h('details', { class: 'data-table' }, h('summary', {}, summaryText));
  let built = false;
  details.addEventListener('toggle', () => {
    if (details.open && !built) {
      built = true;
      details.append(h('div', { class: 'table-scroll', tabindex: '0', role: 'region', 'aria-label': summaryText }, build()));
    }
  });
  return details;
}

function cellText(entry) {
  if (!entry) return { text: '–', cls: 'muted' };
  if (entry.value == null) return { text: entry.status === 'primary' ? 'suppressed' : 'suppressed*', cls: 'cell-suppressed' };
  return { text: fmt(entry.value), cls: '' };
}

/** Splits a published table into interior cells and margins by coordinate. */
function indexTable(table) {
  const cells = new Map();
  for (const e of table.entries) cells.set(JSON.stringify(e.coordinates), e);
  const get = (...coords) => cells.get(JSON.stringify(coords));
  const interior = table.entries.filter((e) => e.coordinates.every((c) => c !== null));
  const values = table.dimensions.map((_, i) => [...new Set(interior.map((e) => e.coordinates[i]))].sort());
  return { get, interior, values };
}

// ---------------------------------------------------------------------------
// ICD-10 labels for the codes the epidemic reports commonly use.

const ICD10 = {
  A08: 'Viral and other specified intestinal infections',
  A09: 'Infectious gastroenteritis and colitis',
  A37: 'Whooping cough',
  B01: 'Varicella',
  B05: 'Measles',
  'J06.9': 'Acute upper respiratory infection',
  'J10.0': 'Influenza with pneumonia, seasonal virus identified',
  'J10.1': 'Influenza, seasonal virus identified',
  'J11.0': 'Influenza with pneumonia, virus not identified',
  'J11.1': 'Influenza, virus not identified',
  J18: 'Pneumonia, organism unspecified',
  'U07.1': 'COVID-19, virus identified',
  'U07.2': 'COVID-19, virus not identified',
};
const diseaseLabel = (code) => (ICD10[code] ? `${code} — ${ICD10[code]}` : code);

const MEASURES = [
  ['new_cases', 'New cases', 'new cases'],
  ['hospitalised', 'Hospitalised', 'hospitalised'],
  ['on_respirator', 'On a respirator', 'on a respirator'],
  ['deaths', 'Deaths', 'deaths'],
];
const AGE_BANDS = ['0-4', '5-11', '12-17', '18-29', '30-49', '50-64', '65-74', '75-84', '85+'];
const ageOrder = (a, b) => {
  const ia = AGE_BANDS.indexOf(a);
  const ib = AGE_BANDS.indexOf(b);
  return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
};

function regionColors(regions) {
  const map = new Map();
  [...regions].sort().forEach((r, i) => map.set(r, PALETTE[i % PALETTE.length]));
  return map;
}

function field(label, control, hint) {
  const id = control.id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hint ? h('p', { class: 'hint muted', id: `${id}-hint` }, hint) : null);
}

function select(id, options, value) {
  const el = h('select', { id, name: id });
  for (const [v, label] of options) el.append(h('option', { value: v, selected: v === value }, label));
  el.value = value;
  return el;
}

// ---------------------------------------------------------------------------
// Page: overview.

async function overviewPage(ctx) {
  const root = ctx.root;
  put(root, 
    h('h1', { tabindex: '-1' }, 'Overview'),
    h('p', { class: 'lead' }, 'The ledger as this node serves it, refreshed every 2 seconds. The latest checkpoint is verified here, in your browser, against the node\u2019s verifier key.'),
  );
  const errorSlot = h('div', { class: 'error-slot' });
  const height = h('p', { class: 'stat__value', id: 'ov-height' }, '—');
  const size = h('p', { class: 'stat__value', id: 'ov-size' }, '—');
  const rate = h('p', { class: 'stat__value', id: 'ov-rate' }, '—');
  const rateNote = h('p', { class: 'stat__note muted' }, 'measured over successive polls');
  const spark = h('div', { class: 'spark', 'aria-hidden': 'true' });
  const writable = h('p', { class: 'stat__value', id: 'ov-writable' }, '—');
  const overdue = h('p', { class: 'stat__value', id: 'ov-glass-overdue' }, '—');
  const updated = h('p', { class: 'muted small', id: 'ov-updated' }, 'Connecting…');
  put(root, 
    errorSlot,
    h(
      'section',
      { class: 'stats', 'aria-label': 'Ledger size' },
      h('div', { class: 'stat card' }, h('h2', { class: 'stat__label' }, 'Block height'), height, h('p', { class: 'stat__note muted' }, 'blocks are numbered from 0 (genesis)')),
      h('div', { class: 'stat card' }, h('h2', { class: 'stat__label' }, 'Transactions'), size, h('p', { class: 'stat__note muted' }, 'leaves in the Merkle log')),
      h('div', { class: 'stat card' }, h('h2', { class: 'stat__label' }, 'Ingest rate'), rate, spark, rateNote),
      h('div', { class: 'stat card' }, h('h2', { class: 'stat__label' }, 'Accepts writes'), writable, h('p', { class: 'stat__note muted' }, 'false once storage has failed')),
      h('div', { class: 'stat card' }, h('h2', { class: 'stat__label' }, 'Overdue break-glass reviews'), overdue, h('p', { class: 'stat__note muted' }, 'emergency reads the data-protection officer has not reviewed in time')),
    ),
    updated,
  );

  const cpCard = h('section', { class: 'card checkpoint', 'aria-labelledby': 'cp-heading' });
  // Not a live region: it changes with every checkpoint. A failure inside
  // it is an alert.
  const verifyState = h('div', { class: 'verify-state', id: 'ov-verify', 'data-state': 'pending' }, 'Waiting for the first checkpoint…');
  const consistState = h('p', { class: 'muted small', id: 'ov-consistency' });
  const cpFacts = h('div', {});
  cpCard.append(h('h2', { id: 'cp-heading' }, 'Latest checkpoint'), verifyState, consistState, cpFacts);
  put(root, cpCard);

  const samples = [];
  let lastNote = null;
  let lastVkeyUsed = null;
  // The last checkpoint that verified, and the key it verified against:
  // each newer one must extend it (a consistency proof, checked here).
  let lastVerified = null;

  const drawSpark = () => {
    const rates = [];
    for (let i = 1; i < samples.length; i++) {
      const dt = (samples[i].t - samples[i - 1].t) / 1000;
      rates.push(dt > 0 ? Math.max(0, (samples[i].size - samples[i - 1].size) / dt) : 0);
    }
    spark.replaceChildren();
    if (rates.length < 2) return;
    const w = 160;
    const hgt = 32;
    const max = Math.max(1, ...rates);
    const pts = rates.map((r, i) => `${((i / (rates.length - 1)) * w).toFixed(1)},${(hgt - 2 - (r / max) * (hgt - 4)).toFixed(1)}`);
    spark.append(
      s(
        'svg',
        { viewBox: `0 0 ${w} ${hgt}`, class: 'sparkline', preserveAspectRatio: 'none' },
        s('polygon', { class: 'sparkline__area', points: `0,${hgt} ${pts.join(' ')} ${w},${hgt}` }),
        s('polyline', { points: pts.join(' ') }),
      ),
    );
  };

  const showCheckpoint = async (note, status) => {
    const pinned = settings.pinnedVkey;
    const vkey = pinned || status.vkey;
    lastVkeyUsed = vkey;
    let cp;
    try {
      cp = await verifyCheckpointNote(note, vkey);
    } catch (e) {
      if (!(e instanceof VerifyError)) throw e;
      if (!ctx.alive) return;
      verifyState.dataset.state = 'failed';
      verifyState.replaceChildren(
        h('span', { class: 'verdict verdict--bad', role: 'alert' }, h('span', { class: 'verdict__icon', 'aria-hidden': 'true' }, '✗'), `Verification failed at ${clockTime()}: ${e.message}`),
      );
      cpFacts.replaceChildren(h('p', {}, 'The checkpoint as the node sent it:'), h('pre', { class: 'note-text' }, note));
      return;
    }
    if (!ctx.alive) return;
    verifyState.dataset.state = 'verified';
    verifyState.replaceChildren(
      h('span', { class: 'verdict verdict--ok' }, h('span', { class: 'verdict__icon', 'aria-hidden': 'true' }, '✓'), `Verified at ${clockTime()}`),
      h('span', { class: 'muted small' }, ` Ed25519 signature checked in this browser against ${pinned ? 'the pinned' : 'the node\u2019s own'} verifier key`),
    );
    cpFacts.replaceChildren(
      dl([
        ['Origin', mono(cp.origin), 'origin'],
        ['Size', fmt(Number(cp.size)), 'size'],
        ['Root (base64)', mono(cp.rootB64), 'root'],
        ['Root (hex)', mono(toHex(cp.root)), 'root-hex'],
        [
          'Signers',
          h(
            'ul',
            { class: 'signers' },
            cp.signers.map((sg) =>
              h('li', {}, mono(sg.name), ' ', h('span', { class: 'muted small' }, `key id ${sg.keyId}`), ' ', sg.verified ? h('span', { class: 'tag tag--ok' }, 'verified') : h('span', { class: 'tag' }, 'not checked (unknown key)')),
            ),
          ),
          'signers',
        ],
        [
          'Verifier key',
          h(
            'span',
            {},
            mono(vkey),
            ' ',
            pinned ? h('span', { class: 'tag tag--ok' }, 'pinned') : h('span', { class: 'tag tag--warn' }, 'trusted on first use'),
            pinned && pinned !== status.vkey ? h('span', { class: 'tag tag--bad' }, 'the node reports another key') : null,
            ' ',
            tokenLink(pinned ? 'change' : 'pin it'),
          ),
          'vkey',
        ],
      ]),
    );
    const prev = lastVerified;
    lastVerified = { cp, vkey };
    if (!prev || prev.vkey !== vkey) return;
    try {
      await checkConsistency(prev.cp, cp);
    } catch (e) {
      if (!(e instanceof VerifyError)) throw e;
      if (!ctx.alive) return;
      consistState.replaceChildren(h('span', { class: 'verdict verdict--bad', role: 'alert' }, `Consistency check failed at ${clockTime()}: ${e.message}`));
    }
  };

  const checkConsistency = async (prev, cp) => {
    if (prev.size === cp.size) {
      if (!equalBytes(prev.root, cp.root)) throw new VerifyError(`two different roots are signed for size ${cp.size}: the log forked`);
      return;
    }
    if (prev.size > cp.size) throw new VerifyError(`the log shrank from ${prev.size} to ${cp.size} entries`);
    const proof = await ctx.api(`/v1/proofs/consistency?from=${prev.size}&to=${cp.size}`);
    const hashes = proof.proof.map((p) => b64decode(p, 'consistency proof hash'));
    await verifyConsistency(prev.size, cp.size, hashes, prev.root, cp.root);
    if (!ctx.alive) return;
    consistState.replaceChildren(
      h('span', { class: 'tag tag--ok' }, 'append-only'),
      ` Consistency proof from size ${fmt(Number(prev.size))} to ${fmt(Number(cp.size))} verified at ${clockTime()}: the earlier entries are unchanged.`,
    );
  };

  const poll = async () => {
    try {
      const status = await ctx.api('/v1/status');
      nodeStatus = status;
      const t = performance.now();
      height.textContent = fmt(status.height);
      size.textContent = fmt(status.log_size);
      writable.textContent = status.writable ? 'yes' : 'no';
      writable.classList.toggle('bad', !status.writable);
      samples.push({ t, size: status.log_size });
      if (samples.length > 31) samples.shift();
      if (samples.length >= 2) {
        const a = samples[samples.length - 2];
        const b = samples[samples.length - 1];
        const r = Math.max(0, (b.size - a.size) / ((b.t - a.t) / 1000));
        rate.textContent = `${rateText(r)} tx/s`;
        rate.dataset.samples = String(samples.length);
        const first = samples[0];
        const avg = Math.max(0, (b.size - first.size) / ((b.t - first.t) / 1000));
        rateNote.textContent = samples.length > 2 ? `last 2 s; average ${rateText(avg)} tx/s over ${Math.round((b.t - first.t) / 1000)} s` : 'over the last 2 s';
      } else {
        rate.textContent = '…';
        rateNote.textContent = 'needs two polls, 2 s apart';
      }
      drawSpark();
      // A count, public at /metrics: no token needed.
      const metrics = await ctx.api('/metrics', { as: 'text' });
      const line = metrics.split('\n').find((l) => l.startsWith('medledger_break_glass_unreviewed_overdue '));
      const n = line ? Number(line.split(' ')[1]) : NaN;
      overdue.textContent = Number.isFinite(n) ? fmt(n) : '—';
      overdue.classList.toggle('bad', n > 0);
      const note = await ctx.api('/v1/checkpoint', { as: 'text' });
      const vkey = settings.pinnedVkey || status.vkey;
      if (note !== lastNote || vkey !== lastVkeyUsed) {
        lastNote = note;
        await showCheckpoint(note, status);
      }
      updated.textContent = `Updated at ${clockTime()}`;
      errorSlot.replaceChildren();
    } catch (e) {
      if (!ctx.alive || (e && e.name === 'AbortError')) return;
      errorSlot.replaceChildren(errorBox(e, 'The node did not answer'));
    }
  };
  await poll();
  ctx.every(2000, poll);
}

// ---------------------------------------------------------------------------
// Page: epidemic statistics.

async function epidemicPage(ctx) {
  const root = ctx.root;
  put(root, 
    h('h1', { tabindex: '-1' }, 'Epidemic'),
    h('p', { class: 'lead' }, 'Daily counts from the epidemic reports on the ledger, per region, as the node publishes them: small counts are withheld, and so are the cells that would give them away.'),
  );
  const list = await ctx.api('/v1/stats/epidemic?group_by=disease&measure=new_cases');
  const t = list.measures.new_cases;
  const diseases = t ? indexTable(t).values[0] : [];
  if (!diseases.length) {
    put(root, notice('info', 'No epidemic reports are on the ledger yet.'));
    return;
  }
  const p = ctx.params;
  let disease = diseases.includes(p.get('disease')) ? p.get('disease') : diseases.includes('J11.1') ? 'J11.1' : diseases[0];
  let measure = MEASURES.some(([m]) => m === p.get('measure')) ? p.get('measure') : 'new_cases';
  const dSel = select('ep-disease', diseases.map((d) => [d, diseaseLabel(d)]), disease);
  const mSel = select('ep-measure', MEASURES.map(([m, l]) => [m, l]), measure);
  const from = h('input', { id: 'ep-from', type: 'date', value: p.get('from') || '' });
  const to = h('input', { id: 'ep-to', type: 'date', value: p.get('to') || '' });
  const form = h(
    'form',
    { class: 'controls', 'aria-label': 'Chart options' },
    field('Disease (ICD-10)', dSel),
    field('Measure', mSel),
    field('From', from),
    field('To', to),
  );
  form.addEventListener('submit', (e) => e.preventDefault());
  const status = h('div', { class: 'status-slot', role: 'status', 'aria-live': 'polite' });
  const heading = h('h2', { id: 'ep-chart-heading' });
  const chartHost = h('div', { class: 'chart-host', id: 'epidemic-chart' });
  const legendHost = h('div', {});
  const notes = h('div', {});
  const tableHost = h('div', {});
  put(root, form, h('section', { class: 'card', 'aria-labelledby': 'ep-chart-heading' }, heading, status, chartHost, legendHost, notes, tableHost));

  let seq = 0;
  const load = async () => {
    const my = ++seq;
    disease = dSel.value;
    measure = mSel.value;
    const q = new URLSearchParams({ group_by: 'date,region', disease, measure });
    const hash = new URLSearchParams({ disease, measure });
    if (from.value) {
      q.set('from', from.value);
      hash.set('from', from.value);
    }
    if (to.value) {
      q.set('to', to.value);
      hash.set('to', to.value);
    }
    history.replaceState(null, '', `#/epidemic?${hash}`);
    const mLabel = MEASURES.find(([m]) => m === measure);
    heading.textContent = `${mLabel[1]} per day: ${diseaseLabel(disease)}`;
    status.replaceChildren(loading());
    ctx.root.dataset.state = 'loading';
    let r;
    try {
      r = await ctx.api(`/v1/stats/epidemic?${q}`);
    } catch (e) {
      if (my !== seq || !ctx.alive || e.name === 'AbortError') return;
      status.replaceChildren(errorBox(e, 'Could not load the statistics'));
      chartHost.replaceChildren();
      ctx.root.dataset.state = 'ready';
      return;
    }
    if (my !== seq || !ctx.alive) return;
    const table = r.measures[measure];
    status.replaceChildren();
    legendHost.replaceChildren();
    notes.replaceChildren();
    tableHost.replaceChildren();
    chartHost.replaceChildren();
    if (!table || !table.entries.some((e) => e.coordinates.every((c) => c !== null))) {
      status.replaceChildren(notice('info', 'No reports match these options.'));
      ctx.root.dataset.state = 'ready';
      return;
    }
    const di = table.dimensions.indexOf('date');
    const ri = table.dimensions.indexOf('region');
    const idx = indexTable(table);
    const dates = idx.values[di];
    const regions = idx.values[ri];
    const colors = regionColors(regions);
    const series = regions.map((reg) => {
      const cells = new Map();
      for (const e of idx.interior) if (e.coordinates[ri] === reg) cells.set(e.coordinates[di], e);
      return { key: reg, label: reg, color: colors.get(reg), cells };
    });
    const published = idx.interior.filter((e) => e.value != null).length;
    const withheld = idx.interior.length - published;
    const unit = mLabel[2];
    responsive(ctx, chartHost, (width) => {
      chartHost.replaceChildren(
        timeSeriesChart({
          width,
          dates,
          series,
          k: table.rule.k,
          unit,
          yLabel: `${mLabel[1]} per day`,
          xLabel: 'Date (UTC)',
          ariaLabel: `Line chart: ${unit} of ${disease} per day and region, ${dates[0]} to ${dates[dates.length - 1]}; ${published} cells published and ${withheld} withheld. The data table below lists every value.`,
        }),
      );
    });
    const total = (reg) => {
      const coords = [];
      coords[di] = null;
      coords[ri] = reg;
      return idx.get(...coords);
    };
    legendHost.append(
      legend(
        [
          ...series.map((sr) => {
            const tot = total(sr.key);
            return { key: sr.key, label: sr.label, color: sr.color, note: tot ? (tot.value == null ? 'total withheld' : `total ${fmt(tot.value)}`) : '' };
          }),
        ],
        chartHost,
      ),
    );
    const grand = idx.get(...table.dimensions.map(() => null));
    notes.append(
      h(
        'p',
        { class: 'summary' },
        `${fmt(dates.length)} days from ${dates[0]} to ${dates[dates.length - 1]}, ${regions.length} regions: ${fmt(published)} cells published, ${fmt(withheld)} withheld. `,
        grand ? (grand.value == null ? 'The overall total is withheld.' : `Total ${unit}: ${fmt(grand.value)}.`) : '',
        ` Based on ${fmt(r.reports)} reports, as of log size ${fmt(r.as_of)}.`,
      ),
      suppressionSummary(table),
    );
    tableHost.append(
      dataTable(`Data table (${fmt(dates.length)} days × ${regions.length} regions)`, () => {
        const coords = (date, reg) => {
          const c = [];
          c[di] = date;
          c[ri] = reg;
          return c;
        };
        const head = h('tr', {}, h('th', { scope: 'col' }, 'Date'), regions.map((reg) => h('th', { scope: 'col' }, reg)), h('th', { scope: 'col' }, 'All regions'));
        const body = h('tbody', {});
        for (const date of [...dates, null]) {
          const row = h('tr', {}, h('th', { scope: 'row' }, date ?? 'All days'));
          for (const reg of [...regions, null]) {
            const c = cellText(idx.get(...coords(date, reg)));
            row.append(h('td', { class: `num ${c.cls}` }, c.text));
          }
          body.append(row);
        }
        return h(
          'table',
          { class: 'table' },
          h('caption', {}, `${mLabel[1]} of ${disease} per day and region. "suppressed" marks a small count that is withheld; "suppressed*" a cell withheld so that a small count cannot be derived.`),
          h('thead', {}, head),
          body,
        );
      }),
    );
    ctx.root.dataset.state = 'ready';
  };
  for (const el of [dSel, mSel, from, to]) el.addEventListener('change', () => load());
  await load();
}

// ---------------------------------------------------------------------------
// Page: vaccination.

async function vaccinationPage(ctx) {
  const root = ctx.root;
  put(root, 
    h('h1', { tabindex: '-1' }, 'Vaccination'),
    h('p', { class: 'lead' }, 'Doses given, from the vaccination reports on the ledger: progress over time, and by region and age band. Small counts are withheld as for the epidemic figures.'),
  );
  const [byVaccine, byDose] = await Promise.all([ctx.api('/v1/stats/vaccination?group_by=vaccine'), ctx.api('/v1/stats/vaccination?group_by=dose')]);
  const vaccines = byVaccine.measures.doses ? indexTable(byVaccine.measures.doses).values[0] : [];
  const doses = byDose.measures.doses ? indexTable(byDose.measures.doses).values[0].sort((a, b) => Number(a) - Number(b)) : [];
  if (!vaccines.length) {
    put(root, notice('info', 'No vaccination reports are on the ledger yet.'));
    return;
  }
  const p = ctx.params;
  const vSel = select('vx-vaccine', [['', 'All vaccines'], ...vaccines.map((v) => [v, v])], vaccines.includes(p.get('vaccine')) ? p.get('vaccine') : '');
  const dSel = select('vx-dose', [['', 'All doses'], ...doses.map((d) => [d, `Dose ${d}`])], doses.includes(p.get('dose')) ? p.get('dose') : '');
  const form = h('form', { class: 'controls', 'aria-label': 'Chart options' }, field('Vaccine', vSel), field('Dose', dSel));
  form.addEventListener('submit', (e) => e.preventDefault());
  const status = h('div', { class: 'status-slot', role: 'status', 'aria-live': 'polite' });
  const progressHost = h('div', { class: 'chart-host', id: 'vacc-cumulative' });
  const dailyHost = h('div', { class: 'chart-host', id: 'vacc-daily' });
  const progressNotes = h('div', {});
  const bandsHost = h('div', { class: 'chart-host', id: 'vacc-bands' });
  const bandsLegend = h('div', {});
  const bandsNotes = h('div', {});
  put(root, 
    form,
    status,
    h('section', { class: 'card', 'aria-labelledby': 'vx-progress' }, h('h2', { id: 'vx-progress' }, 'Progress: cumulative doses'), progressHost, h('h3', {}, 'Doses per day'), dailyHost, progressNotes),
    h('section', { class: 'card', 'aria-labelledby': 'vx-bands' }, h('h2', { id: 'vx-bands' }, 'Doses by region and age band'), bandsHost, bandsLegend, bandsNotes),
  );
  let seq = 0;
  const load = async () => {
    const my = ++seq;
    const filter = new URLSearchParams();
    if (vSel.value) filter.set('vaccine', vSel.value);
    if (dSel.value) filter.set('dose', dSel.value);
    history.replaceState(null, '', `#/vaccination${filter.toString() ? `?${filter}` : ''}`);
    status.replaceChildren(loading());
    ctx.root.dataset.state = 'loading';
    let daily;
    let bands;
    try {
      [daily, bands] = await Promise.all([
        ctx.api(`/v1/stats/vaccination?group_by=date&measure=doses${filter.toString() ? `&${filter}` : ''}`),
        ctx.api(`/v1/stats/vaccination?group_by=region,age_band&measure=doses${filter.toString() ? `&${filter}` : ''}`),
      ]);
    } catch (e) {
      if (my !== seq || !ctx.alive || e.name === 'AbortError') return;
      status.replaceChildren(errorBox(e, 'Could not load the statistics'));
      ctx.root.dataset.state = 'ready';
      return;
    }
    if (my !== seq || !ctx.alive) return;
    status.replaceChildren();
    for (const el of [progressHost, dailyHost, progressNotes, bandsHost, bandsLegend, bandsNotes]) el.replaceChildren();
    const dt = daily.measures.doses;
    if (dt && dt.entries.length > 1) renderProgress(ctx, dt, { progressHost, dailyHost, progressNotes });
    else progressHost.append(notice('info', 'No reports match these options.'));
    const bt = bands.measures.doses;
    if (bt && bt.entries.length > 1) renderBands(ctx, bt, { bandsHost, bandsLegend, bandsNotes });
    else bandsHost.append(notice('info', 'No reports match these options.'));
    ctx.root.dataset.state = 'ready';
  };
  vSel.addEventListener('change', load);
  dSel.addEventListener('change', load);
  await load();
}

function renderProgress(ctx, table, { progressHost, dailyHost, progressNotes }) {
  const idx = indexTable(table);
  const dates = idx.values[0];
  const k = table.rule.k;
  // Cumulative doses are known up to the first withheld day; after it they
  // are unknown, and the line stops rather than treating the day as zero.
  const cumulative = new Map();
  let run = 0;
  let unknownFrom = null;
  for (const date of dates) {
    const e = idx.get(date);
    if (!e || e.value == null) {
      unknownFrom = unknownFrom || date;
      if (e) cumulative.set(date, { value: null, status: e.status });
      continue;
    }
    if (unknownFrom) continue;
    run += e.value;
    cumulative.set(date, { value: run, status: 'published' });
  }
  const cumSeries = [{ key: 'cumulative', label: 'Cumulative doses', color: PALETTE[0], cells: new Map([...cumulative].filter(([, e]) => e.value != null)) }];
  const dailyCells = new Map(dates.map((d) => [d, idx.get(d)]).filter(([, e]) => e));
  responsive(ctx, progressHost, (width) => {
    progressHost.replaceChildren(
      timeSeriesChart({
        width,
        dates,
        series: cumSeries,
        k,
        unit: 'doses so far',
        yLabel: 'Doses so far',
        xLabel: 'Date (UTC)',
        plotHeight: width < 560 ? 180 : 220,
        ariaLabel: `Line chart of cumulative doses from ${dates[0]} to ${dates[dates.length - 1]}${unknownFrom ? `, known up to ${unknownFrom}` : ''}. The data table below lists every value.`,
      }),
    );
  });
  responsive(ctx, dailyHost, (width) => {
    dailyHost.replaceChildren(
      barChart({
        width,
        groups: dates.map((d) => ({ key: d, label: shortDay(d), bars: [{ key: 'daily', label: 'doses', color: PALETTE[6], entry: dailyCells.get(d) }] })),
        k,
        unit: 'doses',
        yLabel: 'Doses per day',
        xLabel: 'Date (UTC)',
        plotHeight: width < 560 ? 140 : 170,
        ariaLabel: `Bar chart of doses per day from ${dates[0]} to ${dates[dates.length - 1]}. The data table below lists every value.`,
      }),
    );
  });
  const published = idx.interior.filter((e) => e.value != null).length;
  const grand = idx.get(null);
  progressNotes.append(
    h(
      'p',
      { class: 'summary' },
      `${fmt(dates.length)} days, ${dates[0]} to ${dates[dates.length - 1]}: ${fmt(published)} days published, ${fmt(idx.interior.length - published)} withheld. `,
      grand && grand.value != null ? `Total doses: ${fmt(grand.value)}. ` : 'The total is withheld. ',
      unknownFrom ? `The cumulative count is unknown from ${unknownFrom} on, because that day's count is withheld.` : '',
    ),
    suppressionSummary(table),
    dataTable(`Data table (${fmt(dates.length)} days)`, () => {
      const body = h('tbody', {});
      for (const date of dates) {
        const c = cellText(idx.get(date));
        const cum = cumulative.get(date);
        body.append(h('tr', {}, h('th', { scope: 'row' }, date), h('td', { class: `num ${c.cls}` }, c.text), h('td', { class: 'num' }, cum && cum.value != null ? fmt(cum.value) : 'unknown')));
      }
      const g = cellText(grand);
      body.append(h('tr', {}, h('th', { scope: 'row' }, 'All days'), h('td', { class: `num ${g.cls}` }, g.text), h('td', {}, '')));
      return h('table', { class: 'table' }, h('caption', {}, 'Doses per day and cumulative doses; "suppressed" marks a withheld count.'), h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Date'), h('th', { scope: 'col' }, 'Doses'), h('th', { scope: 'col' }, 'Cumulative'))), body);
    }),
  );
}

function shortDay(iso) {
  const d = new Date(`${iso}T00:00:00Z`);
  return `${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]}`;
}

function renderBands(ctx, table, { bandsHost, bandsLegend, bandsNotes }) {
  const ri = table.dimensions.indexOf('region');
  const ai = table.dimensions.indexOf('age_band');
  const idx = indexTable(table);
  const regions = idx.values[ri];
  const bands = [...idx.values[ai]].sort(ageOrder);
  const k = table.rule.k;
  const coords = (reg, band) => {
    const c = [];
    c[ri] = reg;
    c[ai] = band;
    return c;
  };
  const bandColor = (i) => BAND_PALETTE[Math.min(BAND_PALETTE.length - 1, Math.round((i * (BAND_PALETTE.length - 1)) / Math.max(1, bands.length - 1)))];
  responsive(ctx, bandsHost, (width) => {
    bandsHost.replaceChildren(
      barChart({
        width,
        groups: regions.map((reg) => ({ key: reg, label: reg, bars: bands.map((band, i) => ({ key: band, label: `age ${band}`, color: bandColor(i), entry: idx.get(...coords(reg, band)) })) })),
        k,
        unit: 'doses',
        yLabel: 'Doses',
        xLabel: '',
        rotateLabels: width < 700,
        ariaLabel: `Grouped bar chart of doses by region (${regions.length}) and age band (${bands.length}). The data table below lists every value.`,
      }),
    );
  });
  bandsLegend.append(legend(bands.map((band, i) => ({ key: band, label: `Age ${band}`, color: bandColor(i) })), bandsHost));
  const published = idx.interior.filter((e) => e.value != null).length;
  bandsNotes.append(
    h('p', { class: 'summary' }, `${regions.length} regions × ${bands.length} age bands: ${fmt(published)} cells published, ${fmt(idx.interior.length - published)} withheld.`),
    suppressionSummary(table),
    dataTable(`Data table (${regions.length} regions × ${bands.length} age bands)`, () => {
      const body = h('tbody', {});
      for (const reg of [...regions, null]) {
        const row = h('tr', {}, h('th', { scope: 'row' }, reg ?? 'All regions'));
        for (const band of [...bands, null]) {
          const c = cellText(idx.get(...coords(reg, band)));
          row.append(h('td', { class: `num ${c.cls}` }, c.text));
        }
        body.append(row);
      }
      return h(
        'table',
        { class: 'table' },
        h('caption', {}, 'Doses by region and age band; "suppressed" marks a withheld count.'),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Region'), bands.map((b) => h('th', { scope: 'col' }, b)), h('th', { scope: 'col' }, 'All ages'))),
        body,
      );
    }),
  );
}

// ---------------------------------------------------------------------------
// Page: live NEWS2 alerts.

const LEVELS = { low: ['Low', 1], low_medium: ['Low–medium', 2], medium: ['Medium', 3], high: ['High', 4] };
const PARAM_LABELS = {
  respiratory_rate: 'respiratory rate',
  spo2: 'SpO2',
  air_or_oxygen: 'air or oxygen',
  systolic_bp: 'systolic BP',
  pulse: 'pulse',
  consciousness: 'consciousness',
  temperature: 'temperature',
};
const PAGE_SIZE = 100;

function levelBadge(level) {
  const [label] = LEVELS[level] || [level];
  return h('span', { class: `badge badge--${level}` }, h('span', { class: 'badge__dot', 'aria-hidden': 'true' }), label);
}

async function alertsPage(ctx) {
  const root = ctx.root;
  put(root, h('h1', { tabindex: '-1' }, 'Live alerts'), h('p', { class: 'lead' }, 'Current NEWS2 alerts, one per patient, updated live as readings arrive. Each links to the transactions it rests on.'));
  const token = settings.token;
  if (!token) {
    put(root, 
      notice('warn', h('strong', {}, 'A token is needed. '), 'Alerts are clinical data: reading them takes the bearer token of a doctor, an institution or an admin. Set one in ', tokenLink(), '.'),
    );
    return;
  }
  const state = { alerts: new Map(), sorted: null, page: 0, sort: ctx.params.get('sort') === 'risk' ? 'risk' : 'newest', min: LEVELS[ctx.params.get('min_level')] ? ctx.params.get('min_level') : 'low', fresh: new Map(), loaded: false };
  const levelSel = select('al-level', Object.entries(LEVELS).map(([k, [l]]) => [k, k === 'low' ? 'All levels' : `${l} and above`]), state.min);
  const sortSel = select('al-sort', [['newest', 'Newest first'], ['risk', 'Highest risk first']], state.sort);
  const conn = h('span', { class: 'conn', id: 'al-conn', 'data-state': 'connecting' }, 'Connecting…');
  // New high alerts are announced (at most every few seconds); the total
  // changes too often to be a live region.
  const totalEl = h('p', { class: 'total', id: 'al-total' }, 'Loading…');
  const form = h('form', { class: 'controls', 'aria-label': 'Alert options' }, field('Level', levelSel), field('Order', sortSel), h('div', { class: 'field field--status' }, h('span', { class: 'label-like' }, 'Stream'), conn));
  form.addEventListener('submit', (e) => e.preventDefault());
  const errorSlot = h('div', {});
  const caption = h('caption', {});
  const tbody = h('tbody', {});
  const table = h(
    'table',
    { class: 'table alerts-table', id: 'alerts-table' },
    caption,
    h('thead', {}, h('tr', {}, ['Patient', 'Level', 'Score', 'Readings', 'Newest reading', 'Transactions (leaf)'].map((c) => h('th', { scope: 'col' }, c)))),
    tbody,
  );
  const prev = h('button', { type: 'button', class: 'btn', id: 'al-prev' }, '← Previous');
  const next = h('button', { type: 'button', class: 'btn', id: 'al-next' }, 'Next →');
  const pageInfo = h('span', { class: 'page-info', id: 'al-page' });
  const pager = h('nav', { class: 'pager', 'aria-label': 'Alert pages' }, prev, pageInfo, next);
  const tableWrap = h('div', { class: 'table-scroll', tabindex: '0', role: 'region', 'aria-label': 'Alerts' }, table);
  put(root, form, errorSlot, totalEl, tableWrap, pager);

  const matches = (a) => (LEVELS[a.level] ? LEVELS[a.level][1] : 0) >= LEVELS[state.min][1];
  const sortKey = {
    newest: (a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : b.seq - a.seq),
    risk: (a, b) => LEVELS[b.level][1] - LEVELS[a.level][1] || b.score - a.score || (a.time < b.time ? 1 : a.time > b.time ? -1 : b.seq - a.seq),
  };
  const sorted = () => {
    if (!state.sorted) state.sorted = [...state.alerts.values()].filter(matches).sort(sortKey[state.sort]);
    return state.sorted;
  };

  const row = (a) => {
    const readings = a.complete
      ? h('span', {}, 'complete')
      : h('span', {}, 'incomplete', h('span', { class: 'muted small' }, ` (missing ${a.missing.map((m) => PARAM_LABELS[m] || m).join(', ')})`));
    const links = h(
      'ul',
      { class: 'tx-links' },
      a.transactions.map((t) => h('li', {}, h('a', { href: `#/tx/${t.id}`, title: `transaction ${t.id}`, 'aria-label': `transaction at leaf ${t.leaf}` }, fmt(t.leaf)))),
    );
    return h(
      'tr',
      { 'data-patient': a.patient, 'data-level': a.level, class: freshClass(a.patient) },
      h('th', { scope: 'row' }, mono(a.patient)),
      h('td', {}, levelBadge(a.level)),
      h('td', { class: 'num' }, String(a.score)),
      h('td', {}, readings),
      h('td', {}, timeEl(a.time)),
      h('td', {}, links),
    );
  };

  // Rows changed since the page opened say so; the last few seconds' flash.
  const freshClass = (patient) => {
    const at = state.fresh.get(patient);
    if (at === undefined) return null;
    return performance.now() - at < 2500 ? 'is-updated is-fresh' : 'is-updated';
  };
  let frame = 0;
  const render = () => {
    frame = 0;
    const list = sorted();
    const pages = Math.max(1, Math.ceil(list.length / PAGE_SIZE));
    state.page = Math.min(state.page, pages - 1);
    const slice = list.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE);
    tbody.replaceChildren(...slice.map(row));
    if (!slice.length) tbody.append(h('tr', {}, h('td', { colspan: '6', class: 'muted' }, state.loaded ? 'No current alerts at this level.' : 'Loading…')));
    const all = state.alerts.size;
    totalEl.textContent = state.loaded
      ? `${fmt(list.length)} ${list.length === 1 ? 'alert' : 'alerts'}${state.min !== 'low' ? ` at this level (${fmt(all)} in all)` : ''}`
      : `Loading… ${fmt(all)} alerts so far`;
    caption.textContent = `Current NEWS2 alerts, ${state.sort === 'newest' ? 'newest first' : 'highest risk first'}: page ${state.page + 1} of ${pages}`;
    pageInfo.textContent = `Page ${state.page + 1} of ${pages}`;
    prev.disabled = state.page === 0;
    next.disabled = state.page >= pages - 1;
  };
  const schedule = () => {
    state.sorted = null;
    if (!frame) frame = requestAnimationFrame(render);
  };
  ctx.onCleanup(() => cancelAnimationFrame(frame));
  prev.addEventListener('click', () => {
    state.page = Math.max(0, state.page - 1);
    render();
  });
  next.addEventListener('click', () => {
    state.page += 1;
    render();
  });
  const syncHash = () => {
    const q = new URLSearchParams();
    if (state.min !== 'low') q.set('min_level', state.min);
    if (state.sort !== 'newest') q.set('sort', state.sort);
    history.replaceState(null, '', `#/alerts${q.toString() ? `?${q}` : ''}`);
  };
  levelSel.addEventListener('change', () => {
    state.min = levelSel.value;
    state.page = 0;
    syncHash();
    schedule();
  });
  sortSel.addEventListener('change', () => {
    state.sort = sortSel.value;
    state.page = 0;
    syncHash();
    schedule();
  });

  let lastAnnounce = 0;
  const upsert = (a) => {
    const cur = state.alerts.get(a.patient);
    if (cur && cur.seq >= a.seq) return;
    state.alerts.set(a.patient, a);
    if (state.loaded) {
      state.fresh.set(a.patient, performance.now());
      if (a.level === 'high' && (!cur || cur.level !== 'high') && performance.now() - lastAnnounce > 4000) {
        lastAnnounce = performance.now();
        announce(`New high alert: patient ${a.patient}, score ${a.score}`);
      }
    }
    schedule();
  };
  const clear = ({ seq, patient }) => {
    const cur = state.alerts.get(patient);
    if (cur && cur.seq > seq) return;
    if (state.alerts.delete(patient)) schedule();
  };

  // Subscribe first, then read the list: changes in between are queued and
  // applied on top of it, each only if newer than what the list holds.
  let queue = [];
  const handle = (kind, data) => {
    if (queue) queue.push([kind, data]);
    else if (kind === 'alert') upsert(data);
    else clear(data);
  };
  let generation = 0;
  const loadList = async () => {
    const my = ++generation;
    queue = queue || [];
    state.loaded = false;
    state.alerts.clear();
    state.fresh.clear();
    schedule();
    // Pages of 1,000 (the node's maximum), overlapping a little: the list
    // may shift while it is read, and the map keeps one alert per patient.
    let offset = 0;
    for (;;) {
      const page = await ctx.api(`/v1/alerts?offset=${offset}&limit=1000`, { auth: true });
      if (my !== generation) return;
      for (const a of page.alerts) upsert(a);
      if (page.alerts.length < 1000 || offset + page.alerts.length >= page.total) break;
      offset += page.alerts.length - 20;
    }
    const pending = queue;
    queue = null;
    for (const [kind, data] of pending) handle(kind, data);
    state.loaded = true;
    schedule();
    announce(`${fmt(state.alerts.size)} current ${state.alerts.size === 1 ? 'alert' : 'alerts'}; new ones appear as they arrive`);
  };
  const reload = () =>
    loadList().catch((e) => {
      if (!ctx.alive || e.name === 'AbortError') return;
      errorSlot.replaceChildren(errorBox(e, 'Could not load the alerts'));
    });

  const es = new EventSource(`/v1/alerts/stream?access_token=${encodeURIComponent(token)}`);
  ctx.onCleanup(() => es.close());
  const parse = (e) => {
    try {
      return JSON.parse(e.data);
    } catch {
      return null;
    }
  };
  es.addEventListener('alert', (e) => {
    const a = parse(e);
    if (a && a.patient) handle('alert', a);
  });
  es.addEventListener('cleared', (e) => {
    const c = parse(e);
    if (c && c.patient) handle('cleared', c);
  });
  es.addEventListener('resync', () => {
    conn.textContent = 'Live (resynchronised)';
    reload();
  });
  let opened = false;
  const firstOpen = new Promise((resolve) => {
    es.addEventListener('open', () => {
      conn.dataset.state = 'live';
      conn.textContent = 'Live';
      errorSlot.replaceChildren();
      if (opened) reload();
      opened = true;
      resolve(true);
    });
    es.addEventListener('error', async () => {
      if (!ctx.alive) return;
      if (es.readyState === EventSource.CLOSED) {
        conn.dataset.state = 'closed';
        conn.textContent = 'Disconnected';
        try {
          await ctx.api('/v1/alerts?limit=1', { auth: true });
          errorSlot.replaceChildren(notice('error', 'The live stream closed. Reload the page to reconnect.'));
        } catch (err) {
          if (ctx.alive && err.name !== 'AbortError') errorSlot.replaceChildren(errorBox(err, 'The live stream was refused'));
        }
        resolve(false);
      } else {
        conn.dataset.state = 'reconnecting';
        conn.textContent = 'Reconnecting…';
      }
    });
  });
  const timeout = new Promise((resolve) => ctx.later(5000, () => resolve(false)));
  const ok = await Promise.race([firstOpen, timeout]);
  if (!ctx.alive) return;
  if (!ok && es.readyState === EventSource.CLOSED) {
    // Refused (a wrong token, say): the error above says why.
    for (const el of [totalEl, tableWrap, pager]) el.hidden = true;
    return;
  }
  await loadList();
}

// ---------------------------------------------------------------------------
// Page: receipt checker.

const KAT = {
  receipt:
    'c2sp.org/tlog-proof@v1\nextra bWVkbGVkZ2Vy\nindex 1\ndziFphNIniTOLPdhmdakI/BC5LvxLX7s7pEu8nbGVwE=\nV8efTzGuApxdS9MLBzwnyU35NDiytGl+Hh7vW8A5SkE=\n\nmedledger.example/log\n3\nlPvQ3YNvUDAWkubQ6t5yjuGexSv/8WBu2AfIV11aqhk=\n\n\u2014 medledger.example/log SKCwguYBhvjhHmBVC3aCq5OjWasR8BDkr1fal29beQpP80bBBlwm7zAsBEMnQ45YuBeQ/HOOnaZjI1NmVmwAloItmw8=\n',
  vkey: 'medledger.example/log+48a0b082+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4',
  // RFC 6962 leaf hash of "entry 1": the example's extra line is not its leaf.
  leaf: '2dfb36c6f66cac361429cf46df868ab8242d3a6441f1099c8fb3f98ec5d108a4',
};

async function receiptPage(ctx) {
  const root = ctx.root;
  put(root, 
    h('h1', { tabindex: '-1' }, 'Receipt checker'),
    h(
      'p',
      { class: 'lead' },
      'Paste a receipt (a C2SP tlog-proof, as the node returns on every write or at GET /v1/transactions/{id}/receipt). It is checked here, without the node: the leaf hash of its transaction, the inclusion proof up to the checkpoint\u2019s root, and the checkpoint\u2019s signature.',
    ),
  );
  const input = h('textarea', { id: 'receipt-input', rows: '13', spellcheck: 'false', autocomplete: 'off', autocapitalize: 'off', class: 'mono-input', 'aria-describedby': 'receipt-input-hint' });
  const draft = storageGet(sessionStorage, RECEIPT_DRAFT_KEY);
  if (draft) {
    input.value = draft;
    storageSet(sessionStorage, RECEIPT_DRAFT_KEY, '');
  }
  const vkey = h('input', { id: 'receipt-vkey', type: 'text', spellcheck: 'false', autocomplete: 'off', class: 'mono-input', 'aria-describedby': 'receipt-vkey-hint' });
  const leaf = h('input', { id: 'receipt-leaf', type: 'text', spellcheck: 'false', autocomplete: 'off', class: 'mono-input', placeholder: 'computed from the extra line', 'aria-describedby': 'receipt-leaf-hint' });
  const file = h('input', { id: 'receipt-file', type: 'file', accept: '.tlog-proof,text/plain' });
  const verifyBtn = h('button', { type: 'submit', class: 'btn btn--primary', id: 'receipt-verify' }, 'Verify');
  const exampleBtn = h('button', { type: 'button', class: 'btn', id: 'receipt-example' }, 'Load the known-answer example');
  const result = h('div', { id: 'receipt-result', class: 'result', role: 'status', 'aria-live': 'polite', 'data-verdict': 'none' });
  const form = h(
    'form',
    { class: 'receipt-form card', 'aria-label': 'Receipt' },
    field('Receipt', input, 'Starts with the line c2sp.org/tlog-proof@v1 and ends with the signed checkpoint.'),
    field('…or open a .tlog-proof file', file),
    h(
      'details',
      { class: 'options' },
      h('summary', {}, 'Options: verifier key and leaf'),
      field('Verifier key (vkey) of the log', vkey, 'Defaults to the key pinned in Settings, or else the key this node reports.'),
      field('Leaf hash to prove (hex, optional)', leaf, 'Leave empty for medledger receipts: the leaf is SHA-256(0x00 ‖ extra), which is the transaction id.'),
    ),
    h('div', { class: 'actions' }, verifyBtn, exampleBtn),
  );
  put(root, form, result);

  const defaultVkey = async () => {
    if (settings.pinnedVkey) return settings.pinnedVkey;
    if (!nodeStatus) nodeStatus = await ctx.api('/v1/status');
    return nodeStatus.vkey;
  };
  vkey.value = await defaultVkey();

  file.addEventListener('change', async () => {
    const f = file.files && file.files[0];
    if (!f) return;
    input.value = await f.text();
  });
  exampleBtn.addEventListener('click', () => {
    input.value = KAT.receipt;
    vkey.value = KAT.vkey;
    leaf.value = KAT.leaf;
    form.querySelector('details.options').open = true;
    result.dataset.verdict = 'none';
    result.replaceChildren(notice('info', 'The known-answer receipt of the formats crate: leaf "entry 1" at index 1 of a 3-leaf log, signed with the test key of seed 0x00…0x1f. Press Verify.'));
  });
  let running = 0;
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const my = ++running;
    const text = input.value;
    if (!text.trim()) {
      result.dataset.verdict = 'none';
      result.replaceChildren(notice('warn', 'Paste a receipt first.'));
      input.focus();
      return;
    }
    result.dataset.verdict = 'pending';
    result.replaceChildren(loading('Verifying…'));
    const key = vkey.value.trim() || (await defaultVkey());
    const r = await verifyReceipt(text.endsWith('\n') ? text : `${text}\n`, key, { leafHex: leaf.value });
    if (my !== running || !ctx.alive) return;
    showReceiptResult(result, r, key);
  });
}

function showReceiptResult(host, r, vkey) {
  host.dataset.verdict = r.ok ? 'verifies' : 'fails';
  const cp = r.checkpoint;
  const facts = [];
  if (cp) {
    facts.push(['Checkpoint origin', mono(cp.origin), 'origin']);
    facts.push(['Checkpoint size', fmt(Number(cp.size)), 'size']);
    facts.push(['Checkpoint root', h('span', {}, mono(cp.rootB64), h('br'), mono(toHex(cp.root))), 'root']);
  }
  if (r.index != null) facts.push(['Leaf index', fmt(Number(r.index)), 'index']);
  if (r.leafHex) {
    const link = r.leafFrom === 'extra' && r.ok ? h('a', { href: `#/tx/${r.leafHex}` }, mono(r.leafHex)) : mono(r.leafHex);
    facts.push([r.leafFrom === 'extra' ? 'Transaction id (leaf hash)' : 'Leaf hash', link, 'leaf']);
  }
  if (r.tx && r.tx.isLeaf) {
    const hd = r.tx.header;
    facts.push(['Transaction', h('span', {}, mono(hd.kind), ' by ', mono(shortHex(hd.author, 16), hd.author), ', signed ', typeof hd.time === 'number' ? utcTime(hd.time) : String(hd.time)), 'tx']);
    facts.push(['Author\u2019s signature', r.tx.signatureOk ? h('span', { class: 'tag tag--ok' }, 'verifies') : h('span', { class: 'tag tag--bad' }, 'does not verify'), 'author-signature']);
  } else if (r.leafFrom === 'given') {
    facts.push(['Extra line', h('span', { class: 'muted' }, 'not the preimage of this leaf: not authenticated by the receipt'), 'extra']);
  }
  facts.push(['Verifier key', mono(vkey), 'vkey']);
  const verdict = r.ok
    ? h('p', { class: 'verdict verdict--ok verdict--big' }, h('span', { class: 'verdict__icon', 'aria-hidden': 'true' }, '✓'), h('span', { 'data-field': 'verdict' }, 'Verifies'))
    : h('p', { class: 'verdict verdict--bad verdict--big' }, h('span', { class: 'verdict__icon', 'aria-hidden': 'true' }, '✗'), h('span', { 'data-field': 'verdict' }, `Does not verify: ${r.reason}`));
  const what = r.ok
    ? h('p', {}, `Entry ${fmt(Number(r.index))} is in the log ${cp.origin} of ${fmt(Number(cp.size))} entries, whose checkpoint is signed by the trusted key.`)
    : cp
      ? h('p', { class: 'muted' }, `Checked against the checkpoint it carries (origin ${cp.origin}, size ${fmt(Number(cp.size))}).`)
      : null;
  host.replaceChildren(h('div', { class: `result__box ${r.ok ? 'result__box--ok' : 'result__box--bad'}` }, verdict, what, dl(facts)));
}

// ---------------------------------------------------------------------------
// Pages: block explorer and transactions.

const BLOCKS_PER_PAGE = 10;
const TXS_PER_PAGE = 100;

async function blocksPage(ctx) {
  const root = ctx.root;
  put(root, h('h1', { tabindex: '-1' }, 'Blocks'), h('p', { class: 'lead' }, 'Every block of the ledger, newest first: its header and how many transactions it holds. Open a block to see its transactions.'));
  const status = await ctx.api('/v1/status');
  nodeStatus = status;
  const tip = status.height;
  let top = Number.parseInt(ctx.params.get('top') ?? '', 10);
  if (!Number.isFinite(top) || top > tip || top < 0) top = tip;
  const from = Math.max(0, top - BLOCKS_PER_PAGE + 1);
  const page = await ctx.api(`/v1/blocks?from=${from}&limit=${top - from + 1}`);
  const blocks = [...page.blocks].reverse();
  const tbody = h('tbody', {});
  for (const b of blocks) {
    tbody.append(
      h(
        'tr',
        { 'data-height': b.height },
        h('th', { scope: 'row' }, h('a', { href: `#/blocks/${b.height}` }, `#${fmt(b.height)}`)),
        h('td', {}, timeEl(b.header.time)),
        h('td', { class: 'num' }, fmt(b.header.tx_count)),
        h('td', { class: 'num' }, fmt(b.header.log_size)),
        h('td', {}, mono(shortHex(b.hash, 16), b.hash)),
      ),
    );
  }
  const pager = h('nav', { class: 'pager', 'aria-label': 'Block pages' });
  pager.append(
    top < tip ? h('a', { class: 'btn', href: `#/blocks?top=${Math.min(tip, top + BLOCKS_PER_PAGE)}` }, '← Newer') : h('span', { class: 'btn btn--disabled', 'aria-disabled': 'true' }, '← Newer'),
    h('span', { class: 'page-info' }, `Blocks ${fmt(from)}–${fmt(top)} of ${fmt(tip + 1)}`),
    from > 0 ? h('a', { class: 'btn', href: `#/blocks?top=${from - 1}` }, 'Older →') : h('span', { class: 'btn btn--disabled', 'aria-disabled': 'true' }, 'Older →'),
  );
  put(root, 
    h(
      'div',
      { class: 'table-scroll', tabindex: '0', role: 'region', 'aria-label': 'Blocks' },
      h(
        'table',
        { class: 'table', id: 'blocks-table' },
        h('caption', {}, `Blocks ${fmt(from)} to ${fmt(top)}, newest first (the tip is block ${fmt(tip)})`),
        h('thead', {}, h('tr', {}, ['Height', 'Time', 'Transactions', 'Log size after', 'Block hash'].map((c) => h('th', { scope: 'col' }, c)))),
        tbody,
      ),
    ),
    pager,
  );
}

async function blockPage(ctx, heightText) {
  const root = ctx.root;
  const height = Number(heightText);
  put(root, h('p', { class: 'crumbs' }, h('a', { href: '#/blocks' }, 'Blocks'), ' / ', `#${fmt(height)}`), h('h1', { tabindex: '-1' }, `Block ${fmt(height)}`));
  const b = await ctx.api(`/v1/blocks/${height}`);
  const hd = b.header;
  put(root, 
    h(
      'section',
      { class: 'card', 'aria-label': 'Block header' },
      dl([
        ['Hash', mono(b.hash), 'hash'],
        ['Previous block', height > 0 ? h('a', { href: `#/blocks/${height - 1}` }, mono(hd.prev_hash)) : mono(hd.prev_hash), 'prev'],
        ['Time', timeEl(hd.time), 'time'],
        ['Transactions', `${fmt(hd.tx_count)} (leaves ${fmt(hd.first_leaf)} to ${fmt(hd.first_leaf + hd.tx_count - 1)})`, 'tx-count'],
        ['Log size after', fmt(hd.log_size), 'log-size'],
        ['Log root after', mono(hd.log_root), 'log-root'],
        ['Transactions root', mono(hd.txs_root), 'txs-root'],
        ['Proposer', mono(hd.proposer), 'proposer'],
        ['Signature', mono(b.signature), 'signature'],
      ]),
    ),
  );
  const txs = b.transactions;
  const tbody = h('tbody', {});
  const info = h('span', { class: 'page-info' });
  const prev = h('button', { type: 'button', class: 'btn' }, '← Previous');
  const next = h('button', { type: 'button', class: 'btn' }, 'Next →');
  const caption = h('caption', {});
  const pages = Math.max(1, Math.ceil(txs.length / TXS_PER_PAGE));
  let page = 0;
  const render = () => {
    const slice = txs.slice(page * TXS_PER_PAGE, (page + 1) * TXS_PER_PAGE);
    tbody.replaceChildren(
      ...slice.map((t, i) =>
        h(
          'tr',
          { 'data-id': t.id },
          h('td', { class: 'num' }, fmt(hd.first_leaf + page * TXS_PER_PAGE + i)),
          h('th', { scope: 'row' }, h('a', { href: `#/tx/${t.id}`, title: t.id }, mono(shortHex(t.id, 16)))),
          h('td', {}, mono(t.header.kind)),
          h('td', {}, mono(shortHex(t.header.author, 12), t.header.author)),
          h('td', {}, timeEl(t.header.time)),
        ),
      ),
    );
    caption.textContent = `Transactions of block ${fmt(height)}${pages > 1 ? `: page ${page + 1} of ${pages}` : ''}`;
    info.textContent = `Page ${page + 1} of ${pages}`;
    prev.disabled = page === 0;
    next.disabled = page >= pages - 1;
  };
  prev.addEventListener('click', () => {
    page = Math.max(0, page - 1);
    render();
  });
  next.addEventListener('click', () => {
    page = Math.min(pages - 1, page + 1);
    render();
  });
  render();
  put(root, 
    h('h2', {}, 'Transactions'),
    settings.token ? null : h('p', { class: 'muted' }, 'Payloads need a token (', tokenLink('set one in Settings'), '); headers and receipts are public.'),
    h(
      'div',
      { class: 'table-scroll', tabindex: '0', role: 'region', 'aria-label': 'Transactions' },
      h('table', { class: 'table', id: 'block-txs' }, caption, h('thead', {}, h('tr', {}, ['Leaf', 'Transaction id', 'Kind', 'Author', 'Signed at'].map((c) => h('th', { scope: 'col' }, c)))), tbody),
    ),
    pages > 1 ? h('nav', { class: 'pager', 'aria-label': 'Transaction pages' }, prev, info, next) : null,
  );
}

async function txPage(ctx, id) {
  const root = ctx.root;
  put(root, h('p', { class: 'crumbs' }, h('a', { href: '#/blocks' }, 'Blocks'), ' / transaction'), h('h1', { tabindex: '-1' }, 'Transaction'), h('p', {}, mono(id)));
  const checkBtn = (receipt) =>
    h(
      'button',
      {
        type: 'button',
        class: 'btn',
        onclick: () => {
          storageSet(sessionStorage, RECEIPT_DRAFT_KEY, receipt);
          location.hash = '#/receipt';
        },
      },
      'Check this receipt',
    );
  if (settings.token) {
    const rec = await ctx.api(`/v1/transactions/${id}`, { auth: true });
    const t = rec.transaction;
    put(root, 
      h(
        'section',
        { class: 'card', 'aria-label': 'Where it is' },
        dl([
          ['Block', h('a', { href: `#/blocks/${rec.height}` }, `#${fmt(rec.height)}`), 'height'],
          ['Leaf index', fmt(rec.index), 'index'],
          ['Kind', mono(t.header.kind), 'kind'],
          ['Author', mono(t.header.author), 'author'],
          ['Signed at', timeEl(t.header.time), 'time'],
          ['Commitment', mono(t.header.commitment), 'commitment'],
          ['Nonce', mono(t.header.nonce), 'nonce'],
          ['Salt', mono(t.salt), 'salt'],
          ['Signature', mono(t.signature), 'signature'],
        ]),
      ),
      h('h2', {}, 'Payload'),
      h('pre', { class: 'json', id: 'tx-payload', tabindex: '0' }, JSON.stringify(t.payload, null, 2)),
      h('h2', {}, 'Receipt'),
      h('pre', { class: 'receipt-text', tabindex: '0' }, rec.receipt),
      h('div', { class: 'actions' }, checkBtn(rec.receipt)),
    );
    return;
  }
  const receipt = await ctx.api(`/v1/transactions/${id}/receipt`, { as: 'text' });
  let header = null;
  let index = null;
  try {
    const r = parseReceipt(receipt);
    index = r.index;
    if (r.extra && r.extra.length > 64) header = JSON.parse(new TextDecoder().decode(r.extra.slice(0, r.extra.length - 64)));
  } catch {
    /* shown raw below */
  }
  put(root, 
    notice('info', h('strong', {}, 'The payload needs a token. '), 'Records are read with a bearer token of a record reader; set one in ', tokenLink(), '. The header and the receipt below are public.'),
    header
      ? h(
          'section',
          { class: 'card', 'aria-label': 'Header' },
          dl([
            ['Leaf index', index != null ? fmt(Number(index)) : '—', 'index'],
            ['Kind', mono(header.kind), 'kind'],
            ['Author', mono(header.author), 'author'],
            ['Signed at', timeEl(header.time), 'time'],
            ['Commitment', mono(header.commitment), 'commitment'],
          ]),
        )
      : null,
    h('h2', {}, 'Receipt'),
    h('pre', { class: 'receipt-text', tabindex: '0' }, receipt),
    h('div', { class: 'actions' }, checkBtn(receipt)),
  );
}

// ---------------------------------------------------------------------------
// Page: settings.

async function settingsPage(ctx) {
  const root = ctx.root;
  put(root, h('h1', { tabindex: '-1' }, 'Settings'));
  const tokenInput = h('input', { id: 'set-token', type: 'password', autocomplete: 'off', spellcheck: 'false', class: 'mono-input', value: settings.token, 'aria-describedby': 'set-token-hint' });
  const show = h('input', { id: 'set-token-show', type: 'checkbox' });
  show.addEventListener('change', () => {
    tokenInput.type = show.checked ? 'text' : 'password';
  });
  const tokenMsg = h('p', { class: 'form-msg', role: 'status', 'aria-live': 'polite' });
  const tokenForm = h(
    'form',
    { class: 'card', 'aria-labelledby': 'set-token-h' },
    h('h2', { id: 'set-token-h' }, 'Bearer token'),
    field('Token', tokenInput, 'Issued with: medledger token issue --participant KEY. Kept for this browser tab only (sessionStorage), and sent as Authorization: Bearer to read alerts and payloads.'),
    h('div', { class: 'check' }, show, h('label', { for: 'set-token-show' }, 'Show the token')),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'btn btn--primary', id: 'set-token-save' }, 'Save token'), h('button', { type: 'button', class: 'btn', id: 'set-token-clear', onclick: () => {
      settings.token = '';
      tokenInput.value = '';
      tokenMsg.textContent = 'Token removed.';
    } }, 'Remove token')),
    tokenMsg,
  );
  tokenForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const value = tokenInput.value.trim();
    settings.token = value;
    if (!value) {
      tokenMsg.textContent = 'Token removed.';
      return;
    }
    tokenMsg.textContent = 'Saved. Checking it…';
    try {
      await ctx.api('/v1/alerts?limit=1', { auth: true });
      tokenMsg.textContent = 'Saved: the node accepts this token for alerts and payloads.';
    } catch (err) {
      if (err.name === 'AbortError') return;
      tokenMsg.textContent = err.status === 403 ? `Saved. The node knows this token, but its role may not read alerts: ${err.detail}` : `Saved, but the node refused it: ${describeError(err)}`;
    }
  });

  const status = await ctx.api('/v1/status');
  nodeStatus = status;
  const vkeyInput = h('input', { id: 'set-vkey', type: 'text', autocomplete: 'off', spellcheck: 'false', class: 'mono-input', value: settings.pinnedVkey || status.vkey, 'aria-describedby': 'set-vkey-hint' });
  const vkeyMsg = h('p', { class: 'form-msg', role: 'status', 'aria-live': 'polite' });
  const current = h('p', { class: 'muted small' });
  const showCurrent = () => {
    const pinned = settings.pinnedVkey;
    current.replaceChildren(
      pinned ? h('span', { class: 'tag tag--ok' }, 'pinned') : h('span', { class: 'tag tag--warn' }, 'not pinned'),
      ' ',
      pinned
        ? pinned === status.vkey
          ? 'The pinned key is the key this node reports.'
          : 'The pinned key differs from the key this node reports: its checkpoints will not verify.'
        : 'Checkpoints and receipts are verified against the key the node reports (trust on first use).',
    );
  };
  showCurrent();
  const vkeyForm = h(
    'form',
    { class: 'card', 'aria-labelledby': 'set-vkey-h' },
    h('h2', { id: 'set-vkey-h' }, 'Verifier key'),
    h('p', {}, 'This node reports: ', mono(status.vkey)),
    field('Pinned verifier key', vkeyInput, 'Printed by medledger serve and medledger info. Pin the key you got from a trusted source: the dashboard then verifies against it, not against what the node says.'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'btn btn--primary', id: 'set-vkey-pin' }, 'Pin this key'), h('button', { type: 'button', class: 'btn', id: 'set-vkey-unpin', onclick: () => {
      settings.pinnedVkey = '';
      vkeyInput.value = status.vkey;
      vkeyMsg.textContent = 'Unpinned: the node\u2019s own key is used.';
      showCurrent();
    } }, 'Unpin')),
    current,
    vkeyMsg,
  );
  vkeyForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const v = await parseVkey(vkeyInput.value);
      settings.pinnedVkey = v.vkey;
      vkeyMsg.textContent = `Pinned ${v.name} (key id ${v.keyId}).`;
    } catch (err) {
      vkeyMsg.textContent = `Not pinned: ${err.message}`;
    }
    showCurrent();
  });
  put(root, tokenForm, vkeyForm);
}

function notFoundPage(ctx) {
  put(ctx.root, h('h1', { tabindex: '-1' }, 'Not found'), h('p', {}, 'There is no such page. ', h('a', { href: '#/' }, 'Go to the overview'), '.'));
}

// ---------------------------------------------------------------------------
// Router.

class PageContext {
  constructor(root, params) {
    this.root = root;
    this.params = params;
    this.ctrl = new AbortController();
    this.cleanups = [];
  }
  get alive() {
    return !this.ctrl.signal.aborted;
  }
  onCleanup(fn) {
    this.cleanups.push(fn);
  }
  api(path, opts = {}) {
    return api(path, { ...opts, signal: this.ctrl.signal });
  }
  later(ms, fn) {
    const id = setTimeout(fn, ms);
    this.onCleanup(() => clearTimeout(id));
  }
  /** Runs fn every `ms`, never overlapping, until the page is left. */
  every(ms, fn) {
    let id = 0;
    const tick = async () => {
      if (!this.alive) return;
      await fn();
      if (this.alive) id = setTimeout(tick, ms);
    };
    id = setTimeout(tick, ms);
    this.onCleanup(() => clearTimeout(id));
  }
  dispose() {
    this.ctrl.abort();
    for (const fn of this.cleanups) {
      try {
        fn();
      } catch {
        /* keep disposing */
      }
    }
  }
}

const ROUTES = [
  { re: /^\/?$/, section: 'overview', title: 'Overview', render: overviewPage },
  { re: /^\/epidemic$/, section: 'epidemic', title: 'Epidemic', render: epidemicPage },
  { re: /^\/vaccination$/, section: 'vaccination', title: 'Vaccination', render: vaccinationPage },
  { re: /^\/alerts$/, section: 'alerts', title: 'Live alerts', render: alertsPage },
  { re: /^\/receipt$/, section: 'receipt', title: 'Receipt checker', render: receiptPage },
  { re: /^\/blocks$/, section: 'blocks', title: 'Blocks', render: blocksPage },
  { re: /^\/blocks\/(\d{1,15})$/, section: 'blocks', title: 'Block', render: blockPage },
  { re: /^\/tx\/([0-9a-f]{64})$/, section: 'blocks', title: 'Transaction', render: txPage },
  { re: /^\/settings$/, section: 'settings', title: 'Settings', render: settingsPage },
];

let active = null;
let firstRoute = true;

async function route() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const q = raw.indexOf('?');
  const path = q < 0 ? raw : raw.slice(0, q);
  const params = new URLSearchParams(q < 0 ? '' : raw.slice(q + 1));
  if (active) active.dispose();
  const old = document.getElementById('app');
  const page = h('div', { id: 'app', class: 'page', 'data-state': 'loading', 'aria-busy': 'true' });
  old.replaceWith(page);
  const ctx = new PageContext(page, params);
  active = ctx;
  let match = null;
  const r = ROUTES.find((rt) => (match = path.match(rt.re)));
  page.dataset.page = r ? r.section : 'not-found';
  for (const a of document.querySelectorAll('.site-nav a')) {
    if (r && a.dataset.section === r.section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${r ? r.title : 'Not found'} · medledger`;
  updateTokenState();
  const focusHeading = () => {
    if (firstRoute) return;
    const h1 = page.querySelector('h1');
    if (h1) h1.focus({ preventScroll: false });
  };
  try {
    if (!r) notFoundPage(ctx);
    else {
      const rendering = r.render(ctx, ...match.slice(1));
      focusHeading();
      await rendering;
    }
    if (ctx.alive && page.dataset.state === 'loading') page.dataset.state = 'ready';
  } catch (e) {
    if (!ctx.alive || (e && e.name === 'AbortError')) return;
    page.append(errorBox(e));
    page.dataset.state = 'error';
  } finally {
    if (ctx.alive) page.removeAttribute('aria-busy');
    firstRoute = false;
  }
}

function updateTokenState() {
  const el = document.getElementById('token-state');
  if (!el) return;
  const set = Boolean(settings.token);
  el.textContent = set ? 'Token set' : 'No token';
  el.dataset.state = set ? 'set' : 'none';
  el.setAttribute('aria-label', set ? 'A token is set: change it in Settings' : 'No token is set: set one in Settings');
}

async function boot() {
  updateTokenState();
  window.addEventListener('hashchange', route);
  window.addEventListener('unhandledrejection', (e) => {
    if (e.reason && e.reason.name === 'AbortError') e.preventDefault();
  });
  route();
  try {
    nodeStatus = nodeStatus || (await api('/v1/status'));
    const origin = document.getElementById('node-origin');
    if (origin) origin.textContent = nodeStatus.origin;
  } catch {
    /* the pages show the node's errors themselves */
  }
}

if (typeof document !== 'undefined' && document.getElementById('app') && !window.__medledgerDashboard) {
  window.__medledgerDashboard = true;
  boot();
}
