// The console in a real browser for both roles: Debian's Chromium, headless,
// driven by playwright-core, against the real visitord binary and a real
// redis-server. Run with `make test-browser`. Screenshots of each view go to
// test-output/console-*.png.
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  buildService, freePort, launch, newKey, outputDir, runCleanup, secrets, startPages, startRedis, startService, tempDir,
  waitUntil,
} from './harness.mjs';

const TIMEOUT = { timeout: 120_000 };
const CHROME_UA = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36';
// Markup in a page title and a contact name: the console must show both as text.
const MARKUP_TITLE = 'Mugs <img src=x onerror="window.pwned=1"> & more';
const MARKUP_NAME = 'Grace <b onmouseover="window.pwned=1">Hopper</b>';

/** shot saves a screenshot of one element (a view of the console) under test-output/. */
async function shot(locator, name) {
  await mkdir(outputDir, { recursive: true });
  await locator.screenshot({ path: path.join(outputDir, name) });
}

describe('the console in Chromium', () => {
  const cleanup = [];
  const svc = {};

  before(async () => {
    const dir = await tempDir(cleanup);
    const bin = await buildService(dir);
    const redis = await startRedis(cleanup);
    const pagesPort = await freePort();
    svc.operator = newKey();
    svc.privacy = newKey();
    svc.origin = `http://localhost:${pagesPort}`;
    const file = path.join(dir, 'sites.yaml');
    await writeFile(file, `sites:
  - id: shop
    origins: ["${svc.origin}"]
    consent: opt-out
    policy_version: "2026-11"
    legal_text: "We record the pages you visit to help our chat team."
    controller: {name: "Shop Ltd", contact: "privacy@shop.example", dpo: "dpo@shop.example", transfers: "none"}
    keys:
      - {id: agent-1, role: operator, sha256: "${svc.operator.sha256}"}
      - {id: dpo, role: privacy, sha256: "${svc.privacy.sha256}"}
`);
    const s = await startService(bin, { VISITORD_SITES: file, VISITORD_REDIS_URL: redis.url, ...secrets() }, cleanup);
    svc.base = `http://localhost:${s.port}`;
    await startPages(svc.base, pagesPort, cleanup);
  }, { timeout: 240_000 });

  after(() => runCleanup(cleanup), { timeout: 60_000 });

  /** api calls the service as a widget (Origin of the site) or with a key. */
  async function api(method, p, { body, key, token, headers = {} } = {}) {
    const h = { 'User-Agent': CHROME_UA, ...headers };
    if (body !== undefined) h['Content-Type'] = 'application/json';
    if (key) h.Authorization = 'Bearer ' + key;
    else h.Origin = svc.origin;
    if (token) h['X-Visitor-Token'] = token;
    const r = await fetch(svc.base + p, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null };
  }

  async function pageview(url, title, token, headers) {
    const r = await api('POST', '/v1/track', { body: { site: 'shop', type: 'pageview', url, title }, token, headers });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body;
  }

  /** openConsole opens /console in a fresh browser and connects with key. */
  async function openConsole(tc, key, role) {
    const b = await launch(tc);
    const res = await b.page.goto(svc.base + '/console');
    assert.match(res.headers()['content-security-policy'], /script-src 'self'/);
    await b.page.getByLabel('API key').fill(key);
    await b.page.getByLabel('Site').fill('shop');
    await b.page.getByRole('button', { name: 'Connect' }).click();
    await b.page.locator(`body[data-role="${role}"]`).waitFor();
    return b;
  }

  test('a privacy key changes a retention window, and a refused value is explained next to its field', TIMEOUT, async () => {
    const tc = [];
    try {
      const { page, violations } = await openConsole(tc, svc.privacy.key, 'privacy');
      const section = page.locator('#retention-section');
      await page.locator('#retention-changed', { hasText: 'Never changed here' }).waitFor();
      for (const label of ['Sessions', 'Profiles', 'Chats', 'Consent records', 'Audit trail']) {
        assert.ok(await section.getByLabel(label, { exact: true }).isVisible(), `a field labelled ${label}`);
      }
      const sessions = section.getByLabel('Sessions', { exact: true });
      assert.equal(await sessions.inputValue(), '90');
      await sessions.fill('30');
      await section.getByRole('button', { name: 'Save' }).click();
      await page.locator('#retention-status', { hasText: 'Saved.' }).waitFor();
      await page.locator('#retention-changed', { hasText: /^Last changed / }).waitFor();

      const r = await api('GET', '/v1/sites/shop/retention', { key: svc.privacy.key });
      assert.equal(r.status, 200);
      assert.equal(r.body.sessions, 30, 'the API shows the new window');
      assert.ok(r.body.changed_at, 'and when it changed');

      // consents shorter than profiles is refused: the message sits by the field.
      await section.getByLabel('Consent records', { exact: true }).fill('10');
      await section.getByRole('button', { name: 'Save' }).click();
      const err = page.locator('#retention-consents-error');
      await err.filter({ hasText: 'consents' }).waitFor();
      assert.match(await err.textContent(), /at least 395/);
      assert.equal(await page.locator('#retention-status').textContent(), 'Not saved.');
      assert.equal((await api('GET', '/v1/sites/shop/retention', { key: svc.privacy.key })).body.consents, 1095);
      await shot(section, 'console-retention.png');
      assert.deepEqual(violations, []);
    } finally {
      await runCleanup(tc);
    }
  });

  test('a privacy key finds an e-mail, exports, rectifies and erases, and sees the erasure in the audit trail', TIMEOUT, async () => {
    const tc = [];
    try {
      const email = 'grace@mail.example';
      const first = await pageview(svc.origin + '/mugs', 'Blue mug');
      await pageview(svc.origin + '/cart', 'Your cart', first.token);
      const chat = await api('POST', '/v1/chats', {
        token: first.token, body: { site: 'shop', contact: { name: MARKUP_NAME, email }, marketing_opt_in: false, url: svc.origin + '/cart' },
      });
      assert.equal(chat.status, 201, JSON.stringify(chat.body));
      // A chat without identity with the same e-mail: a subject of its own.
      const lone = await api('POST', '/v1/chats', { body: { site: 'shop', contact: { name: 'G. H.', email }, marketing_opt_in: false, url: svc.origin + '/' } });
      assert.equal(lone.status, 201, JSON.stringify(lone.body));

      const { page, violations } = await openConsole(tc, svc.privacy.key, 'privacy');
      const subjects = page.locator('#subjects-section');
      await subjects.getByLabel('E-mail').fill(email);
      await subjects.getByRole('button', { name: 'Search' }).click();
      await page.locator('#search-status', { hasText: '2 subjects found.' }).waitFor();
      const visitorCard = page.locator('article.subject', { hasText: 'Visitor ' });
      const chatCard = page.locator('article.subject', { hasText: 'Chat without identity ' });
      const visitorID = await visitorCard.getAttribute('data-subject');
      assert.equal(await chatCard.getAttribute('data-subject'), lone.body.chat_id);

      // Export downloads the JSON export, which holds the pages.
      const download = page.waitForEvent('download');
      await visitorCard.getByRole('button', { name: 'Export' }).click();
      const file = await download;
      assert.equal(file.suggestedFilename(), `visitord-shop-visitor-${visitorID}.json`);
      const doc = JSON.parse(await readFile(await file.path(), 'utf8'));
      assert.equal(doc.visitor_id, visitorID);
      const urls = doc.sessions.flatMap((s) => s.pages.map((p) => p.url));
      assert.deepEqual(urls, [svc.origin + '/mugs', svc.origin + '/cart']);
      assert.equal(doc.chats[0].contact.name, MARKUP_NAME);

      // Rectify a contact field.
      await visitorCard.getByRole('button', { name: 'Rectify' }).click();
      await visitorCard.getByLabel('Phone').fill('+44 20 7946 0000');
      await visitorCard.getByRole('button', { name: 'Save rectification' }).click();
      await visitorCard.locator('.subject-status', { hasText: 'Rectified' }).waitFor();
      const exported = await api('GET', `/v1/sites/shop/visitors/${visitorID}`, { key: svc.privacy.key });
      assert.equal(exported.body.chats[0].contact.phone, '+44 20 7946 0000');

      await visitorCard.getByRole('button', { name: 'Erase' }).click();
      await visitorCard.getByRole('alertdialog').waitFor();
      await shot(page.locator('#subjects-section'), 'console-subjects.png');
      await visitorCard.getByRole('button', { name: 'Confirm erasure' }).click();
      await visitorCard.locator('.subject-status', { hasText: 'Erased' }).waitFor();
      await chatCard.getByRole('button', { name: 'Erase' }).click();
      await chatCard.getByRole('button', { name: 'Confirm erasure' }).click();
      await chatCard.locator('.subject-status', { hasText: 'Erased' }).waitFor();

      // The subject is gone: the search finds nothing, the export is 404.
      await subjects.getByRole('button', { name: 'Search' }).click();
      await page.locator('#search-status', { hasText: 'Nothing found for this e-mail.' }).waitFor();
      assert.equal((await api('GET', `/v1/sites/shop/visitors/${visitorID}`, { key: svc.privacy.key })).status, 404);

      // The audit trail, newest first, filtered by the visitor's id, shows the erasure.
      const audit = page.locator('#audit-section');
      await audit.getByLabel('Target id').fill(visitorID);
      await audit.getByRole('button', { name: 'Filter' }).click();
      await page.locator(`#audit[data-target="${visitorID}"] tbody td.action`, { hasText: 'subject.erase' }).waitFor();
      const actions = await page.locator('#audit tbody td.action').allTextContents();
      assert.equal(actions[0], 'subject.erase', `newest first: ${actions}`);
      assert.ok(actions.includes('subject.export') && actions.includes('subject.rectify'), `the reads and the rectification: ${actions}`);
      assert.ok(!(await page.locator('#audit').textContent()).includes(visitorID), 'entries name targets by keyed hash only');
      await shot(audit, 'console-audit.png');

      // The record of processing, rendered, with a print button.
      const record = page.locator('#record-section');
      await record.locator('#record dl').waitFor();
      assert.match(await record.textContent(), /Shop Ltd/);
      assert.ok(await record.getByRole('button', { name: 'Print' }).isVisible());
      await shot(record, 'console-record.png');

      // Nothing the subject wrote ran as markup.
      assert.equal(await page.evaluate(() => window.pwned), undefined);
      assert.deepEqual(violations, []);
    } finally {
      await runCleanup(tc);
    }
  });

  test('an operator sees a new visitor appear without reloading, with markup shown as text', TIMEOUT, async () => {
    const tc = [];
    try {
      const operator = await openConsole(tc, svc.operator.key, 'operator');
      const op = operator.page;
      const polls = [];
      operator.context.on('request', (r) => { if (/\/visitors\/live\?/.test(r.url())) polls.push(r.url()); });
      await op.locator('#live-mode', { hasText: 'Live: the list updates by itself.' }).waitFor();
      assert.equal(await op.locator('#retention-section').isVisible(), false, 'an operator sees no privacy tools');

      // A visitor in a real browser opens a page of the site: the row appears.
      const visitor = await launch(tc);
      await visitor.page.goto(svc.origin + '/shop/welcome');
      await op.locator('#live tbody td .url', { hasText: svc.origin + '/shop/welcome' }).waitFor({ timeout: 5000 });

      // A page title with markup shows as text.
      const v = await pageview(svc.origin + '/mugs/<b>', MARKUP_TITLE);
      const row = op.locator('#live tbody tr', { has: op.locator('.title', { hasText: MARKUP_TITLE }) });
      await row.waitFor({ timeout: 5000 });
      assert.equal(await op.locator('#live img').count(), 0, 'no markup from the title');

      // The chat context is read when opened: a name with markup shows as text.
      const chat = await api('POST', '/v1/chats', {
        token: v.token, body: { site: 'shop', contact: { name: MARKUP_NAME, email: 'ada@mail.example' }, marketing_opt_in: true, url: svc.origin + '/mugs' },
      });
      assert.equal(chat.status, 201);
      await op.getByLabel('Chat id').fill(chat.body.chat_id);
      await op.getByRole('button', { name: 'Show' }).click();
      const view = op.locator('#chat-view');
      await view.locator('dl').waitFor();
      assert.ok((await view.textContent()).includes(MARKUP_NAME));
      assert.equal(await view.locator('b').count(), 0);

      // The stream did the work: the console never polled the live list.
      assert.deepEqual(polls, []);
      assert.equal(await op.evaluate(() => window.pwned), undefined);
      assert.equal(await op.evaluate(() => localStorage.length), 0, 'the key is not in localStorage');
      await shot(op.locator('#live-section'), 'console-live.png');
      await shot(op.locator('#chat-section'), 'console-chat.png');
      assert.deepEqual(operator.violations, []);
      assert.deepEqual(visitor.violations, []);
    } finally {
      await runCleanup(tc);
    }
  });

  test('without the live stream (the key holds all its streams) the console polls the live list', TIMEOUT, async () => {
    const tc = [];
    const held = [];
    try {
      // The key's four streams are taken elsewhere: the console's is refused with 429.
      for (let i = 0; i < 4; i++) {
        const ac = new AbortController();
        held.push(ac);
        const r = await fetch(svc.base + '/v1/sites/shop/visitors/live/stream', { headers: { Authorization: 'Bearer ' + svc.operator.key }, signal: ac.signal });
        assert.equal(r.status, 200);
      }
      const { page, violations } = await openConsole(tc, svc.operator.key, 'operator');
      await page.locator('#live-mode', { hasText: 'Live updates unavailable (HTTP 429)' }).waitFor();
      await pageview(svc.origin + '/polled', 'Polled page');
      await page.locator('#live tbody td .url', { hasText: svc.origin + '/polled' }).waitFor({ timeout: 8000 });
      assert.deepEqual(violations, []);
    } finally {
      held.forEach((ac) => ac.abort());
      await runCleanup(tc);
    }
  });

  test('the audit trail pages back by its cursor', TIMEOUT, async () => {
    const tc = [];
    try {
      // 55 searches for different addresses: 55 entries about 55 targets.
      for (let i = 0; i < 55; i++) {
        const r = await api('POST', '/v1/sites/shop/subjects/search', { key: svc.privacy.key, body: { email: `page${i}@mail.example` } });
        assert.equal(r.status, 200);
      }
      const { page, violations } = await openConsole(tc, svc.privacy.key, 'privacy');
      const rows = page.locator('#audit tbody tr');
      await page.locator('#audit-more').waitFor();
      assert.equal(await rows.count(), 50, 'the first page');
      const total = (await api('GET', '/v1/sites/shop/audit?limit=200', { key: svc.privacy.key })).body.entries.length;
      await page.getByRole('button', { name: 'Older entries' }).click();
      await page.locator('#audit-more').waitFor({ state: 'hidden' });
      assert.equal(await rows.count(), total, 'every entry, once');
      assert.deepEqual(violations, []);
    } finally {
      await runCleanup(tc);
    }
  });

  test('the chart shows tracked and refused page views per day', TIMEOUT, async () => {
    const tc = [];
    try {
      await api('POST', '/v1/track', { body: { site: 'shop', type: 'pageview', url: svc.origin + '/x', title: 'X' }, headers: { DNT: '1' } });
      await api('POST', '/v1/track', { body: { site: 'shop', type: 'pageview', url: svc.origin + '/x', title: 'X' }, headers: { 'Sec-GPC': '1' } });
      await api('POST', '/v1/track', { body: { site: 'shop', type: 'pageview', url: svc.origin + '/x', title: 'X' }, headers: { 'User-Agent': 'Googlebot/2.1 (+http://www.google.com/bot.html)' } });
      const today = new Date().toISOString().slice(0, 10);
      // The counters are flushed by the pod at least every second: wait until
      // two reads further apart than a flush agree, so the chart and this
      // read see the same counts.
      let stats;
      let previous = '';
      await waitUntil(async () => {
        stats = await api('GET', `/v1/sites/shop/stats?day=${today}`, { key: svc.operator.key });
        const seen = JSON.stringify(stats.body);
        const settled = seen === previous && stats.body.refused.bot >= 1;
        previous = seen;
        return settled;
      }, 'settled counters', 10_000, 1200);

      const { page, violations } = await openConsole(tc, svc.privacy.key, 'privacy');
      const chart = page.locator('#stats-chart svg.chart');
      await chart.waitFor();
      assert.equal(await page.locator('#stats-chart svg g[data-day]').count(), 30, 'one bar per day of the last 30');
      const bar = page.locator(`#stats-chart svg g[data-day="${today}"]`);
      for (const series of ['tracked', 'dnt', 'gpc', 'bot']) {
        assert.equal(await bar.locator(`rect[data-series="${series}"]`).count(), 1, `today's bar has ${series}`);
      }
      const legend = await page.locator('#stats-chart .legend').textContent();
      assert.ok(legend.includes('Tracked: ' + stats.body.tracked), legend);
      assert.ok(legend.includes('Do Not Track: ' + stats.body.refused.dnt), legend);
      assert.ok(legend.includes('Global Privacy Control: ' + stats.body.refused.gpc), legend);
      assert.ok(legend.includes('Bots: ' + stats.body.refused.bot), legend);
      await shot(page.locator('#stats-section'), 'console-stats.png');
      assert.deepEqual(violations, []);
    } finally {
      await runCleanup(tc);
    }
  });
});
