// The dashboard's Ed25519 checks under Node.js, without a browser: the
// vendored noble-ed25519 must give the ZIP-215 verdict on every
// "Taming the many EdDSAs" vector (as crates/formats/src/sig.rs does), and
// app.js must refuse weak keys and accept a receipt whose author signed with
// an identity R, as the node and the CLI do.
//
//   node --test tests/dashboard/signatures.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const noble = await import(join(ROOT, 'crates/node/dashboard/noble-ed25519.js'));
const app = await import(join(ROOT, 'crates/node/dashboard/app.js'));

// The "Zebra" row of the results table in the README of
// novifinancial/ed25519-speccheck (ed25519-zebra is ZIP-215's reference
// implementation); the same table as ZIP215_VERDICTS in
// crates/formats/src/sig.rs, where each verdict is explained.
const ZIP215_VERDICTS = [true, true, true, true, true, true, false, false, false, true, true, true];

function speccheckCases() {
  // The repository is cloned with shared/ beside it.
  const path = join(ROOT, '..', 'shared', 'testdata', 'ed25519-speccheck', 'cases.txt');
  const lines = readFileSync(path, 'utf8').trim().split('\n');
  const count = Number(lines[0]);
  const cases = [];
  for (let i = 0; i < count; i++) {
    const field = (line, name) => {
      assert.ok(line.startsWith(`${name}=`), `expected ${name}= in ${line}`);
      return Uint8Array.from(Buffer.from(line.slice(name.length + 1), 'hex'));
    };
    const [m, p, s] = lines.slice(1 + 3 * i, 4 + 3 * i);
    cases.push({ msg: field(m, 'msg'), pbk: field(p, 'pbk'), sig: field(s, 'sig') });
  }
  return cases;
}

const sha256 = (...parts) => new Uint8Array(createHash('sha256').update(Buffer.concat(parts)).digest());
const sha512 = (...parts) => new Uint8Array(createHash('sha512').update(Buffer.concat(parts)).digest());
const b64 = (bytes) => Buffer.from(bytes).toString('base64');
const hex = (bytes) => Buffer.from(bytes).toString('hex');
const utf8 = (s) => new TextEncoder().encode(s);
const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const leToBig = (bytes) => BigInt(`0x${hex(Uint8Array.from(bytes).reverse()) || '0'}`);
const bigToLe32 = (n) => Uint8Array.from(Buffer.from(n.toString(16).padStart(64, '0'), 'hex')).reverse();

/** A vkey `name+hex8(id)+base64(0x01 || key)` for any 32 bytes. */
function vkeyOf(name, key) {
  const material = Uint8Array.of(0x01, ...key);
  const id = sha256(utf8(name), Uint8Array.of(0x0a), material).slice(0, 4);
  return `${name}+${hex(id)}+${b64(material)}`;
}

test('the vendored verifier gives the ZIP-215 verdict on every speccheck case', async () => {
  const cases = speccheckCases();
  assert.equal(cases.length, ZIP215_VERDICTS.length);
  const got = [];
  for (const c of cases) got.push(await noble.verifyAsync(c.sig, c.msg, c.pbk, { zip215: true }));
  assert.deepEqual(got, ZIP215_VERDICTS);
});

test('small-order keys are refused as verifier keys, as the node refuses them', async () => {
  const cases = speccheckCases();
  // Cases 0, 1, 10 and 11 have a small-order key; case 3's key is mixed.
  for (const i of [0, 1, 10, 11]) {
    await assert.rejects(app.parseVkey(vkeyOf('weak.example', cases[i].pbk)), /small order/, `case ${i}`);
  }
  const ok = await app.parseVkey(vkeyOf('mixed.example', cases[3].pbk));
  assert.equal(ok.name, 'mixed.example');
});

/**
 * A receipt for a one-leaf log holding `JCS(header) || sig`, with its
 * checkpoint signed by the log key `logSeed`.
 */
async function receipt(origin, logSeed, headerBytes, sig) {
  const extra = Uint8Array.from([...headerBytes, ...sig]);
  const root = sha256(Uint8Array.of(0), extra);
  const text = `${origin}\n1\n${b64(root)}\n`;
  const logKey = await noble.getPublicKeyAsync(logSeed);
  const vkey = vkeyOf(origin, logKey);
  const keyId = Buffer.from(vkey.split('+')[1], 'hex');
  const noteSig = await noble.signAsync(utf8(text), logSeed);
  const note = `${text}\n\u2014 ${origin} ${b64(Uint8Array.from([...keyId, ...noteSig]))}\n`;
  return { vkey, text: `c2sp.org/tlog-proof@v1\nextra ${b64(extra)}\nindex 0\n\n${note}` };
}

function header(author) {
  return utf8(
    `{"author":"${hex(author)}","commitment":"${'11'.repeat(32)}","kind":"medical_report","nonce":"${'22'.repeat(16)}","time":1,"v":1}`,
  );
}

test("a receipt whose author signed with an identity R verifies, as `medledger receipt verify` accepts it", async () => {
  // R is the identity point and S = k·a, so [S]B = R + [k]A holds exactly;
  // the node admits it (ZIP-215), so the dashboard must agree.
  const seed = new Uint8Array(32).fill(4);
  const { scalar: a, pointBytes: author } = await noble.utils.getExtendedPublicKeyAsync(seed);
  const headerBytes = header(author);
  const r = new Uint8Array(32);
  r[0] = 1;
  const message = Uint8Array.from([...utf8('medledger/tx/v1\n'), ...headerBytes]);
  const k = leToBig(sha512(r, author, message)) % L;
  const sig = Uint8Array.from([...r, ...bigToLe32((k * a) % L)]);

  const origin = 'medledger.example/js';
  const good = await receipt(origin, new Uint8Array(32).fill(3), headerBytes, sig);
  const ok = await app.verifyReceipt(good.text, good.vkey);
  assert.equal(ok.reason, '');
  assert.equal(ok.ok, true);
  assert.equal(ok.tx.signatureOk, true);

  const bad = sig.slice();
  bad[40] ^= 1;
  const forged = await receipt(origin, new Uint8Array(32).fill(3), headerBytes, bad);
  const no = await app.verifyReceipt(forged.text, forged.vkey);
  assert.equal(no.ok, false);
  assert.match(no.reason, /author's signature/);
});

test("a weak author key's signature is refused although its equation holds", async () => {
  // Case 0: small A, small R, S = 0: the cofactored equation holds for any
  // message, which is why the node refuses such keys.
  const c = speccheckCases()[0];
  const headerBytes = header(c.pbk);
  const r = await receipt('medledger.example/js', new Uint8Array(32).fill(3), headerBytes, c.sig);
  const message = Uint8Array.from([...utf8('medledger/tx/v1\n'), ...headerBytes]);
  assert.equal(await noble.verifyAsync(c.sig, message, c.pbk), true, 'the rule alone accepts it');
  const out = await app.verifyReceipt(r.text, r.vkey);
  assert.equal(out.ok, false);
  assert.equal(out.tx.signatureOk, false);
});
