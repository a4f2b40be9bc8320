// End-to-end tests of the web dashboard in headless Chromium (playwright-core).
//
// run.sh starts a demo node and passes: BASE (the node's URL), TOKEN (a
// bearer token of the demo's integration participant), DATA_DIR, MEDLEDGER
// (the binary), DOCTOR_KEY (a demo doctor's key file), SCREENSHOTS (a
// folder) and CHROMIUM (the browser binary).
//
// Every page is opened with listeners that fail the test on a console error,
// an uncaught exception, a failed request or an HTTP error answer.

import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run tests/dashboard/run.sh`);
  return v;
};
const BASE = env('BASE');
const TOKEN = env('TOKEN');
const MEDLEDGER = env('MEDLEDGER');
const DOCTOR_KEY = env('DOCTOR_KEY');
const SCREENSHOTS = env('SCREENSHOTS');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const NF = new Intl.NumberFormat('en');
const DESKTOP = { width: 1280, height: 900 };
const MOBILE = { width: 375, height: 800 };

// ---------------------------------------------------------------------------
// A small test runner: each test is named, timed and reported; the last line
// says how many passed and failed.

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

async function getJson(p, { auth = false } = {}) {
  const res = await fetch(BASE + p, { headers: auth ? { authorization: `Bearer ${TOKEN}` } : {} });
  assert.ok(res.ok, `GET ${p} answered ${res.status}`);
  return res.json();
}

async function getText(p) {
  const res = await fetch(BASE + p);
  assert.ok(res.ok, `GET ${p} answered ${res.status}`);
  return res.text();
}

function run(cmd, args, input) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${path.basename(cmd)} ${args[0]} exited ${code}: ${err}`))));
    child.stdin.end(input);
  });
}

/** A random, well-formed patient pseudonym: base32 of 16 random bytes. */
function randomPseudonym() {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const bytes = crypto.randomBytes(16);
  let bits = 0;
  let value = 0;
  let out = '';
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

// ---------------------------------------------------------------------------
// The browser: one persistent context over a fresh profile directory.

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'medledger-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  viewport: DESKTOP,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-quic'],
});
for (const p of context.pages()) await p.close();

/**
 * Opens a page that records every problem: console errors, uncaught
 * exceptions, failed requests and HTTP errors. A request the page itself
 * cancels (net::ERR_ABORTED: leaving a page closes its event stream and
 * cancels its fetches) is not a failure.
 */
async function openPage({ token = TOKEN, viewport = DESKTOP, vkey = '' } = {}) {
  const page = await context.newPage();
  await page.setViewportSize(viewport);
  const problems = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`uncaught exception: ${e.message}`));
  page.on('requestfailed', (r) => {
    const why = r.failure() ? r.failure().errorText : 'unknown';
    if (why !== 'net::ERR_ABORTED') problems.push(`request failed: ${r.method()} ${r.url()}: ${why}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.request().method()} ${r.url()}`);
  });
  await page.addInitScript(
    ([t, v]) => {
      if (t) sessionStorage.setItem('medledger.token', t);
      else sessionStorage.removeItem('medledger.token');
      if (v) localStorage.setItem('medledger.vkey', v);
      else localStorage.removeItem('medledger.vkey');
    },
    [token, vkey],
  );
  page.problems = problems;
  return page;
}

/** Navigates to a route and waits until its page has loaded its data. */
async function visit(page, route) {
  const url = `${BASE}/#${route}`;
  if (page.url().startsWith(`${BASE}/`)) {
    // Mark the current page, so that waiting below sees the new one.
    const same = await page.evaluate((r) => {
      document.getElementById('app').dataset.stale = 'yes';
      if (location.hash === `#${r}`) return true;
      location.hash = r;
      return false;
    }, route);
    if (same) await page.reload();
  } else {
    await page.goto(url);
  }
  await page.waitForSelector('#app:not([data-stale])[data-state="ready"], #app:not([data-stale])[data-state="error"]', { timeout: 20000 });
  const state = await page.getAttribute('#app', 'data-state');
  if (state === 'error') {
    const text = await page.textContent('#app');
    assert.fail(`${route} shows an error: ${text}`);
  }
}

function assertClean(page, what) {
  assert.deepEqual(page.problems, [], `${what}: no console errors, exceptions or failed requests`);
}

async function noHorizontalOverflow(page, what) {
  const [scroll, inner] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  assert.ok(scroll <= inner + 1, `${what}: the page is ${scroll} px wide in a ${inner} px window (wide content must scroll inside its own box)`);
}

// ---------------------------------------------------------------------------
// Data from the API, as the tests compute it themselves.

const interior = (table) => table.entries.filter((e) => e.coordinates.every((c) => c !== null));

async function epidemicCase() {
  const list = await getJson('/v1/stats/epidemic?group_by=disease&measure=new_cases');
  const diseases = interior(list.measures.new_cases).map((e) => e.coordinates[0]);
  const order = ['A09', ...diseases.filter((d) => d !== 'A09')];
  for (const measure of ['new_cases', 'hospitalised']) {
    for (const disease of order) {
      if (!diseases.includes(disease)) continue;
      const r = await getJson(`/v1/stats/epidemic?group_by=date,region&disease=${encodeURIComponent(disease)}&measure=${measure}`);
      const table = r.measures[measure];
      if (table && interior(table).some((e) => e.value === null)) return { disease, measure, table };
    }
  }
  assert.fail('the demo data has an epidemic table with withheld cells');
}

// ---------------------------------------------------------------------------
// a. Every page loads cleanly at desktop and phone widths; screenshots.

const PAGES = [
  ['overview', '/'],
  ['epidemic', '/epidemic'],
  ['vaccination', '/vaccination'],
  ['alerts', '/alerts'],
  ['receipt', '/receipt'],
  ['blocks', '/blocks'],
  ['block', '/blocks/2'],
  ['transaction', null],
  ['settings', '/settings'],
];

/**
 * Writes normal vital signs (NEWS2 score 0: no alert) while `during` runs,
 * so that the overview has a non-zero ingest rate to show.
 */
async function withLoad(during) {
  const status = await getJson('/v1/status');
  let stop = false;
  const writer = (async () => {
    while (!stop) {
      const now = new Date().toISOString();
      const lines = [];
      for (let i = 0; i < 200; i++) lines.push(JSON.stringify({ patient: randomPseudonym(), time: now, pulse: 72, respiratory_rate: 16 }));
      await run(MEDLEDGER, ['submit', '--url', BASE, '--key', DOCTOR_KEY, '--kind', 'vital_signs', '--batch', '10', '--vkey', status.vkey], `${lines.join('\n')}\n`);
    }
  })();
  try {
    return await during();
  } finally {
    stop = true;
    await writer;
  }
}

for (const [name, viewport, suffix] of [
  ['desktop', DESKTOP, ''],
  ['375 px', MOBILE, '-mobile'],
]) {
  test(`every page loads without errors at ${name} width`, async () => {
    const block2 = await getJson('/v1/blocks/2');
    const txId = block2.transactions.find((t) => t.header.kind === 'medical_report')?.id ?? block2.transactions[0].id;
    const page = await openPage({ viewport });
    try {
      for (const [pageName, route0] of PAGES) {
        const route = route0 ?? `/tx/${txId}`;
        const shoot = async () => {
          const title = await page.textContent('#app h1');
          assert.ok(title && title.trim().length > 0, `${pageName}: has a heading`);
          if (viewport === MOBILE) await noHorizontalOverflow(page, pageName);
          await page.screenshot({ path: path.join(SCREENSHOTS, `${pageName}${suffix}.png`), fullPage: true });
        };
        if (pageName === 'overview') {
          await withLoad(async () => {
            await visit(page, route);
            await page.waitForSelector('#ov-verify[data-state="verified"]', { timeout: 10000 });
            // The rate needs two polls, 2 s apart; under load it is not zero.
            await page.waitForFunction(() => /^(?!0\.0 )[\d,.]+ tx\/s$/.test(document.querySelector('#ov-rate').textContent), null, { timeout: 15000 });
            // At desktop width, a few more polls draw the rate's sparkline.
            if (viewport === DESKTOP) await page.waitForFunction(() => Number(document.querySelector('#ov-rate').dataset.samples) >= 5, null, { timeout: 15000 });
            await page.waitForSelector('#ov-consistency .tag', { timeout: 10000 });
            assert.match(await page.textContent('#ov-consistency'), /append-only.*Consistency proof from size [\d,]+ to [\d,]+ verified/, 'each new checkpoint is proven to extend the last one');
            await shoot();
          });
        } else {
          await visit(page, route);
          if (pageName === 'epidemic') await page.waitForSelector('#epidemic-chart svg .point');
          if (pageName === 'alerts') await page.waitForSelector('#al-conn[data-state="live"]');
          if (pageName === 'transaction') await page.waitForSelector('#tx-payload');
          await page.waitForTimeout(150);
          await shoot();
        }
        assertClean(page, `${pageName} at ${name} width`);
      }
    } finally {
      await page.close();
    }
  });
}

// ---------------------------------------------------------------------------
// Overview: the checkpoint is verified in the browser, and a wrong pinned key
// is caught.

test('overview: shows the tip and verifies the checkpoint signature; a wrong pinned key fails', async () => {
  const status = await getJson('/v1/status');
  const page = await openPage();
  try {
    await visit(page, '/');
    await page.waitForSelector('#ov-verify[data-state="verified"]', { timeout: 10000 });
    const verdict = await page.textContent('#ov-verify');
    assert.match(verdict, /Verified at \d\d:\d\d:\d\d/, 'says "verified at HH:MM:SS"');
    const height = Number((await page.textContent('#ov-height')).replace(/,/g, ''));
    const size = Number((await page.textContent('#ov-size')).replace(/,/g, ''));
    assert.ok(height >= status.height, `block height ${height} is the node's (${status.height} or later)`);
    assert.ok(size >= status.log_size, `transaction count ${size} is the node's log size (${status.log_size} or later)`);
    const origin = await page.textContent('[data-field="origin"]');
    assert.equal(origin.trim(), status.origin, 'shows the checkpoint origin');
    const signers = await page.textContent('[data-field="signers"]');
    assert.ok(signers.includes(status.origin), 'lists the signer named after the origin');
    assertClean(page, 'overview');
  } finally {
    await page.close();
  }
  // A pinned key of another log: the node's checkpoint must not verify.
  const other = await openPage({ vkey: 'medledger.example/log+48a0b082+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4' });
  try {
    await visit(other, '/');
    await other.waitForSelector('#ov-verify[data-state="failed"]', { timeout: 10000 });
    const text = await other.textContent('#ov-verify');
    assert.match(text, /Verification failed at \d\d:\d\d:\d\d: .*no signature by the trusted key/, `a wrong pinned key is reported: ${text}`);
    assertClean(other, 'overview with a wrong pinned key');
  } finally {
    await other.close();
  }
});

// ---------------------------------------------------------------------------
// b. Epidemic chart: markers match the API, withheld cells are never zeros.

test('epidemic: one point per published cell, one .suppressed marker per withheld cell, never at zero, lines broken there', async () => {
  const { disease, measure, table } = await epidemicCase();
  const cells = interior(table);
  const di = table.dimensions.indexOf('date');
  const ri = table.dimensions.indexOf('region');
  const published = cells.filter((e) => e.value !== null);
  const withheld = cells.filter((e) => e.value === null);
  assert.ok(withheld.length > 0, 'the chosen table has withheld cells');
  const page = await openPage();
  try {
    await visit(page, `/epidemic?disease=${encodeURIComponent(disease)}&measure=${measure}`);
    await page.waitForSelector('#epidemic-chart svg');
    const chart = await page.evaluate(() => {
      const svg = document.querySelector('#epidemic-chart svg');
      const mark = (el) => ({ series: el.dataset.series, date: el.dataset.date, value: el.dataset.value, y: Number(el.dataset.y), title: el.querySelector('title')?.textContent ?? '' });
      return {
        y0: Number(svg.dataset.y0),
        points: [...svg.querySelectorAll('.point')].map(mark),
        suppressed: [...svg.querySelectorAll('.suppressed')].map(mark),
        moves: Object.fromEntries([...svg.querySelectorAll('.series')].map((g) => [g.dataset.series, (g.querySelector('.line')?.getAttribute('d').match(/M/g) || []).length])),
        selected: [document.querySelector('#ep-disease').value, document.querySelector('#ep-measure').value],
      };
    });
    assert.deepEqual(chart.selected, [disease, measure], 'the selects show the chosen disease and measure');
    assert.equal(chart.points.length, published.length, `${disease}/${measure}: point markers = published interior cells`);
    assert.equal(chart.suppressed.length, withheld.length, `${disease}/${measure}: .suppressed markers = withheld interior cells`);
    const key = (series, date) => `${series}|${date}`;
    assert.deepEqual(new Set(chart.points.map((p) => key(p.series, p.date))), new Set(published.map((e) => key(e.coordinates[ri], e.coordinates[di]))), 'points sit exactly on the published cells');
    assert.deepEqual(new Set(chart.suppressed.map((p) => key(p.series, p.date))), new Set(withheld.map((e) => key(e.coordinates[ri], e.coordinates[di]))), 'suppressed markers sit exactly on the withheld cells');
    const byKey = new Map(published.map((e) => [key(e.coordinates[ri], e.coordinates[di]), e.value]));
    for (const p of chart.points) assert.equal(Number(p.value), byKey.get(key(p.series, p.date)), `point ${p.series} ${p.date} has the published value`);
    for (const m of chart.suppressed) {
      assert.ok(m.y > chart.y0 + 2, `suppressed ${m.series} ${m.date} is drawn below the axis (y ${m.y}), not at zero (y ${chart.y0})`);
      assert.match(m.title, /suppressed \(fewer than \d+/, `suppressed ${m.series} ${m.date} has an accessible title`);
    }
    // Lines break at every withheld (or missing) cell: one "M" per run.
    const dates = [...new Set(cells.map((e) => e.coordinates[di]))].sort();
    const regions = [...new Set(cells.map((e) => e.coordinates[ri]))];
    for (const region of regions) {
      let runs = 0;
      let open = false;
      for (const date of dates) {
        const has = byKey.has(key(region, date));
        if (has && !open) runs += 1;
        open = has;
      }
      assert.equal(chart.moves[region] ?? 0, runs, `${region}: the line has ${runs} separate runs`);
    }
    // The data table alternative lists the same cells.
    await page.click('.data-table summary');
    await page.waitForSelector('.data-table table');
    const marked = await page.$$eval('.data-table td.cell-suppressed', (tds) => tds.length);
    const margins = table.entries.filter((e) => e.value === null && e.coordinates.some((c) => c === null)).length;
    assert.equal(marked, withheld.length + margins, 'the data table marks every withheld cell and total as suppressed');
    assertClean(page, 'epidemic');
  } finally {
    await page.close();
  }
});

// ---------------------------------------------------------------------------
// c. Vaccination: bars and points match the API.

test('vaccination: daily bars, cumulative points and region × age-band bars match the API', async () => {
  const daily = (await getJson('/v1/stats/vaccination?group_by=date&measure=doses')).measures.doses;
  const bands = (await getJson('/v1/stats/vaccination?group_by=region,age_band&measure=doses')).measures.doses;
  const dCells = interior(daily).sort((a, b) => (a.coordinates[0] < b.coordinates[0] ? -1 : 1));
  const firstWithheld = dCells.findIndex((e) => e.value === null);
  const knownCumulative = firstWithheld < 0 ? dCells.length : firstWithheld;
  const page = await openPage();
  try {
    await visit(page, '/vaccination');
    const counts = await page.evaluate(() => ({
      dailyBars: document.querySelectorAll('#vacc-daily svg .bar').length,
      dailySuppressed: document.querySelectorAll('#vacc-daily svg .suppressed').length,
      cumulativePoints: document.querySelectorAll('#vacc-cumulative svg .point').length,
      bandBars: document.querySelectorAll('#vacc-bands svg .bar').length,
      bandSuppressed: document.querySelectorAll('#vacc-bands svg .suppressed').length,
      barValues: [...document.querySelectorAll('#vacc-bands svg .bar')].map((b) => [b.dataset.group, b.dataset.series, Number(b.dataset.value)]),
    }));
    assert.equal(counts.dailyBars, dCells.filter((e) => e.value !== null).length, 'one bar per published day');
    assert.equal(counts.dailySuppressed, dCells.filter((e) => e.value === null).length, 'one .suppressed marker per withheld day');
    assert.equal(counts.cumulativePoints, knownCumulative, 'one cumulative point per day up to the first withheld day');
    const bCells = interior(bands);
    assert.equal(counts.bandBars, bCells.filter((e) => e.value !== null).length, 'one bar per published region × age band cell');
    assert.equal(counts.bandSuppressed, bCells.filter((e) => e.value === null).length, 'one .suppressed marker per withheld region × age band cell');
    const ri = bands.dimensions.indexOf('region');
    const ai = bands.dimensions.indexOf('age_band');
    const want = new Map(bCells.filter((e) => e.value !== null).map((e) => [`${e.coordinates[ri]}|${e.coordinates[ai]}`, e.value]));
    for (const [region, band, value] of counts.barValues) assert.equal(value, want.get(`${region}|${band}`), `bar ${region} ${band} has the published value`);
    assertClean(page, 'vaccination');
  } finally {
    await page.close();
  }
});

// ---------------------------------------------------------------------------
// d. Live alerts: a new high-scoring reading shows up without a reload.

test('alerts: a high NEWS2 reading for a new patient appears within 5 s, without reloading', async () => {
  const status = await getJson('/v1/status');
  const listed = await getJson('/v1/alerts?limit=1', { auth: true });
  const page = await openPage();
  try {
    await visit(page, '/alerts');
    await page.waitForSelector('#al-conn[data-state="live"]', { timeout: 10000 });
    const total = await page.textContent('#al-total');
    assert.ok(total.startsWith(`${NF.format(listed.total)} alert`), `shows the total (${listed.total}): ${total}`);
    await page.evaluate(() => {
      window.notReloaded = true;
    });
    const patient = randomPseudonym();
    const payload = { patient, time: new Date().toISOString(), respiratory_rate: 30, spo2: 85, systolic_bp: 85, pulse: 140, consciousness: 'voice', temperature: 39.5 };
    const started = Date.now();
    const out = await run(MEDLEDGER, ['submit', '--url', BASE, '--key', DOCTOR_KEY, '--kind', 'vital_signs', '--vkey', status.vkey], `${JSON.stringify(payload)}\n`);
    const submitted = JSON.parse(out.trim().split('\n').pop());
    assert.equal(submitted.status, 200, `the reading was committed: ${out}`);
    const row = `#alerts-table tr[data-patient="${patient}"]`;
    await page.waitForSelector(`${row}[data-level="high"]`, { timeout: Math.max(500, 5000 - (Date.now() - started)) });
    const elapsed = Date.now() - started;
    assert.ok(elapsed <= 5000, `the alert appeared after ${elapsed} ms`);
    assert.equal(await page.evaluate(() => window.notReloaded), true, 'the page was not reloaded');
    assert.equal((await page.textContent(`${row} .badge`)).trim(), 'High', 'the level badge says High in text');
    const links = await page.$$eval(`${row} a[href^="#/tx/"]`, (as) => as.map((a) => a.getAttribute('href')));
    assert.ok(links.includes(`#/tx/${submitted.id}`), 'the row links to the transaction behind the alert');
    assert.equal(await page.$$eval(row, (rows) => rows.length), 1, 'one row for the patient');
    assertClean(page, 'alerts');
    console.log(`    (alert shown ${elapsed} ms after the submit started)`);
  } finally {
    await page.close();
  }
});

test('alerts without a token: says a token is needed and makes no gated request', async () => {
  const page = await openPage({ token: '' });
  const gated = [];
  page.on('request', (r) => {
    if (/\/v1\/alerts/.test(r.url())) gated.push(r.url());
  });
  try {
    await visit(page, '/alerts');
    const text = await page.textContent('#app');
    assert.match(text, /token is needed/i, 'says a token is needed');
    assert.deepEqual(gated, [], 'no request to the alert endpoints');
    assertClean(page, 'alerts without a token');
  } finally {
    await page.close();
  }
});

// ---------------------------------------------------------------------------
// e. Receipt checker: a real receipt verifies, tampered ones do not; the
// known-answer receipt of crates/formats verifies with its key and leaf.

async function checkReceipt(page, text, { vkey, leaf = '' } = {}) {
  await page.fill('#receipt-input', text);
  if (vkey !== undefined || leaf) {
    await page.evaluate(() => {
      document.querySelector('details.options').open = true;
    });
    if (vkey !== undefined) await page.fill('#receipt-vkey', vkey);
    await page.fill('#receipt-leaf', leaf);
  }
  await page.click('#receipt-verify');
  await page.waitForSelector('#receipt-result[data-verdict="verifies"], #receipt-result[data-verdict="fails"]');
  const verdict = await page.getAttribute('#receipt-result', 'data-verdict');
  const message = (await page.textContent('#receipt-result [data-field="verdict"]')).trim();
  const size = await page.$eval('#receipt-result', (el) => el.querySelector('dd[data-field="size"]')?.textContent ?? null);
  const index = await page.$eval('#receipt-result', (el) => el.querySelector('dd[data-field="index"]')?.textContent ?? null);
  return { verdict, message, size, index };
}

function katFromSource() {
  const src = fs.readFileSync(path.join(ROOT, 'crates/formats/src/receipt.rs'), 'utf8');
  const m = src.match(/const KAT_RECEIPT: &str = "((?:[^"\\]|\\.)*)";/);
  assert.ok(m, 'KAT_RECEIPT found in crates/formats/src/receipt.rs');
  const text = m[1].replace(/\\u\{([0-9a-fA-F]+)\}/g, (_, hex) => String.fromCodePoint(parseInt(hex, 16))).replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
  // The test key: Ed25519 seed 0x00..0x1f, name medledger.example/log.
  const seed = Buffer.from([...Array(32).keys()]);
  const priv = crypto.createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]), format: 'der', type: 'pkcs8' });
  const pub = crypto.createPublicKey(priv).export({ format: 'der', type: 'spki' }).subarray(-32);
  const name = 'medledger.example/log';
  const keyId = crypto.createHash('sha256').update(Buffer.concat([Buffer.from(name), Buffer.from([0x0a, 0x01]), pub])).digest().subarray(0, 4).toString('hex');
  const vkey = `${name}+${keyId}+${Buffer.concat([Buffer.from([0x01]), pub]).toString('base64')}`;
  const leaf = crypto.createHash('sha256').update(Buffer.concat([Buffer.from([0x00]), Buffer.from('entry 1')])).digest('hex');
  return { text, vkey, leaf };
}

test('receipt checker: a real receipt verifies; a flipped proof hash or checkpoint root does not; the known-answer receipt verifies', async () => {
  const status = await getJson('/v1/status');
  const block = await getJson('/v1/blocks/1');
  const id = block.transactions[0].id;
  const receipt = await getText(`/v1/transactions/${id}/receipt`);
  const lines = receipt.split('\n');
  const cpStart = lines.indexOf('', 1) + 1;
  const size = Number(lines[cpStart + 1]);
  const index = Number(lines.find((l) => l.startsWith('index ')).slice(6));
  const page = await openPage({ token: '' });
  try {
    await visit(page, '/receipt');
    const ok = await checkReceipt(page, receipt);
    assert.equal(ok.verdict, 'verifies', `the node's receipt verifies: ${ok.message}`);
    assert.equal(ok.message, 'Verifies');
    assert.equal(ok.size, NF.format(size), 'shows the checkpoint size');
    assert.equal(ok.index, NF.format(index), 'shows the leaf index');
    const leafText = await page.textContent('#receipt-result dd[data-field="leaf"]');
    assert.equal(leafText.trim(), id, 'shows the transaction id (the leaf hash)');
    const originText = await page.textContent('#receipt-result dd[data-field="origin"]');
    assert.equal(originText.trim(), status.origin, 'shows the checkpoint origin');

    // One character of the first proof hash changed (still canonical base64).
    const hashLine = lines.findIndex((l) => l.startsWith('index ')) + 1;
    assert.ok(lines[hashLine] && lines[hashLine].length === 44, 'the receipt has a proof hash');
    const flipped = [...lines];
    flipped[hashLine] = (flipped[hashLine][0] === 'A' ? 'B' : 'A') + flipped[hashLine].slice(1);
    const bad = await checkReceipt(page, flipped.join('\n'));
    assert.equal(bad.verdict, 'fails', 'a changed proof hash does not verify');
    assert.match(bad.message, /^Does not verify: .*inclusion proof/, `says why: ${bad.message}`);

    // One byte of the checkpoint root flipped.
    const rootLine = cpStart + 2;
    const root = Buffer.from(lines[rootLine], 'base64');
    root[7] ^= 0x01;
    const tampered = [...lines];
    tampered[rootLine] = root.toString('base64');
    const badRoot = await checkReceipt(page, tampered.join('\n'));
    assert.equal(badRoot.verdict, 'fails', 'a changed checkpoint root does not verify');
    assert.match(badRoot.message, /^Does not verify: .*signature/, `says why: ${badRoot.message}`);

    // The known-answer receipt: with its key and leaf it verifies; with the
    // node's key it does not.
    const kat = katFromSource();
    const katOk = await checkReceipt(page, kat.text, { vkey: kat.vkey, leaf: kat.leaf });
    assert.equal(katOk.verdict, 'verifies', `the known-answer receipt verifies: ${katOk.message}`);
    assert.equal(katOk.size, '3', 'against its checkpoint of size 3');
    assert.equal(katOk.index, '1', 'at leaf index 1');
    const katWrongKey = await checkReceipt(page, kat.text, { vkey: status.vkey, leaf: kat.leaf });
    assert.equal(katWrongKey.verdict, 'fails', 'the known-answer receipt does not verify against another key');
    const katWrongLeaf = await checkReceipt(page, kat.text, { vkey: kat.vkey, leaf: '' });
    assert.equal(katWrongLeaf.verdict, 'fails', 'nor for the leaf of its extra line, which is not "entry 1"');
    assertClean(page, 'receipt checker');
  } finally {
    await page.close();
  }
});

test('in-browser proofs: receipts at many leaf indices and consistency proofs between many sizes verify; altered ones do not', async () => {
  const status = await getJson('/v1/status');
  const page = await openPage({ token: '' });
  try {
    await visit(page, '/receipt');
    const blocks = (await getJson('/v1/blocks?from=0&limit=40')).blocks;
    const ids = [];
    for (const b of blocks) {
      ids.push(b.transactions[0].id, b.transactions[b.transactions.length - 1].id);
      if (b.transactions.length > 2) ids.push(b.transactions[Math.floor(b.transactions.length / 2)].id);
    }
    const receipts = [];
    for (const id of [...new Set(ids)]) receipts.push([id, await getText(`/v1/transactions/${id}/receipt`)]);
    const pairs = [];
    const sizes = [...new Set(blocks.map((b) => [b.header.log_size, b.header.log_root]).map(JSON.stringify))].map((x) => JSON.parse(x));
    for (let i = 0; i < sizes.length; i++) {
      for (const j of [i, i + 1, i + 3, sizes.length - 1]) {
        if (j >= sizes.length || j < i) continue;
        const [m, rootM] = sizes[i];
        const [n, rootN] = sizes[j];
        pairs.push({ m, n, rootM, rootN, proof: (await getJson(`/v1/proofs/consistency?from=${m}&to=${n}`)).proof });
      }
    }
    const result = await page.evaluate(
      async ({ receipts, pairs, vkey }) => {
        const app = await import('/dashboard/app.js');
        const out = { receipts: 0, tamperedReceipts: 0, consistency: 0, tamperedConsistency: 0, failures: [] };
        for (const [id, text] of receipts) {
          const r = await app.verifyReceipt(text, vkey);
          if (r.ok && r.leafHex === id) out.receipts += 1;
          else out.failures.push(`receipt ${id}: ${r.reason}`);
          // Another leaf against the same proof must fail.
          const other = await app.verifyReceipt(text, vkey, { leafHex: id.replace(/^./, (c) => (c === '0' ? '1' : '0')) });
          if (!other.ok) out.tamperedReceipts += 1;
          else out.failures.push(`receipt ${id} verified another leaf`);
        }
        const b64 = (x) => app.b64decode(x);
        for (const p of pairs) {
          const proof = p.proof.map(b64);
          try {
            await app.verifyConsistency(p.m, p.n, proof, app.fromHex(p.rootM), app.fromHex(p.rootN));
            out.consistency += 1;
          } catch (e) {
            out.failures.push(`consistency ${p.m} -> ${p.n}: ${e.message}`);
          }
          if (proof.length) {
            const bad = proof.map((h) => h.slice());
            bad[bad.length - 1][0] ^= 1;
            try {
              await app.verifyConsistency(p.m, p.n, bad, app.fromHex(p.rootM), app.fromHex(p.rootN));
              out.failures.push(`consistency ${p.m} -> ${p.n} verified with an altered proof`);
            } catch {
              out.tamperedConsistency += 1;
            }
          }
        }
        return out;
      },
      { receipts, pairs, vkey: status.vkey },
    );
    assert.deepEqual(result.failures, [], 'every proof verifies as it should');
    assert.equal(result.receipts, receipts.length, `${receipts.length} receipts verify`);
    assert.equal(result.tamperedReceipts, receipts.length, 'none verifies another leaf');
    assert.equal(result.consistency, pairs.length, `${pairs.length} consistency proofs verify`);
    assert.ok(result.tamperedConsistency > 0, 'altered consistency proofs fail');
    console.log(`    (${result.receipts} receipts and ${result.consistency} consistency proofs checked in the browser)`);
    assertClean(page, 'in-browser proofs');
  } finally {
    await page.close();
  }
});

// ---------------------------------------------------------------------------
// f. Block explorer.

test('block explorer: lists blocks newest first, a block\u2019s transactions, and a payload with the token only', async () => {
  const status = await getJson('/v1/status');
  const page = await openPage();
  try {
    await visit(page, '/blocks');
    const heights = await page.$$eval('#blocks-table tbody tr', (rows) => rows.map((r) => Number(r.dataset.height)));
    assert.ok(heights.length === Math.min(10, status.height + 1), `a page of blocks (${heights.length})`);
    assert.ok(heights[0] >= status.height, 'newest first');
    assert.deepEqual(heights, [...heights].sort((a, b) => b - a), 'in descending order');

    const block = await getJson('/v1/blocks/2');
    await visit(page, '/blocks/2');
    const rows = await page.$$eval('#block-txs tbody tr', (trs) => trs.map((r) => [r.dataset.id, r.querySelectorAll('td')[1].textContent.trim()]));
    assert.equal(rows.length, Math.min(100, block.transactions.length), 'one row per transaction (first page)');
    rows.forEach(([rowId, kind], i) => {
      assert.equal(rowId, block.transactions[i].id, `row ${i} is transaction ${i}`);
      assert.equal(kind, block.transactions[i].header.kind, `row ${i} shows its kind`);
    });
    const tx = block.transactions.find((t) => t.header.kind === 'medical_report') ?? block.transactions[0];
    const want = await getJson(`/v1/transactions/${tx.id}`, { auth: true });
    await visit(page, `/tx/${tx.id}`);
    await page.waitForSelector('#tx-payload');
    const payload = JSON.parse(await page.textContent('#tx-payload'));
    assert.deepEqual(payload, want.transaction.payload, 'the payload shown is the transaction\u2019s');
    assertClean(page, 'block explorer with a token');
  } finally {
    await page.close();
  }
  const anon = await openPage({ token: '' });
  try {
    const block = await getJson('/v1/blocks/2');
    await visit(anon, `/tx/${block.transactions[0].id}`);
    assert.equal(await anon.$('#tx-payload'), null, 'no payload without a token');
    assert.match(await anon.textContent('#app'), /payload needs a token/, 'says payloads need a token');
    assertClean(anon, 'block explorer without a token');
  } finally {
    await anon.close();
  }
});

// ---------------------------------------------------------------------------

let passed = 0;
let failed = 0;
const t0 = Date.now();
try {
  for (const t of tests) {
    const start = Date.now();
    try {
      await t.fn();
      passed += 1;
      console.log(`ok - ${t.name} (${Date.now() - start} ms)`);
    } catch (e) {
      failed += 1;
      console.log(`not ok - ${t.name} (${Date.now() - start} ms)`);
      console.log(`    ${String(e && e.stack ? e.stack : e).split('\n').join('\n    ')}`);
    }
  }
} finally {
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
console.log(`dashboard e2e: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
