// The widget, the demo shop and the operator console in a real browser:
// Debian's Chromium, headless, driven by playwright-core, against the real
// visitord binary. Run with `make test-browser` (npm ci && node --test).
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  buildService, freePort, launch, newKey, nextPageview, operatorGet, runCleanup, screenshot, secrets,
  startPages, startRedis, startService, tempDir, waitUntil,
} from './harness.mjs';

/** trackMetric reads visitord_track_total for a hit type and outcome from the metrics listener's /metrics. */
async function trackMetric(metrics, type, outcome) {
  const text = await (await fetch(metrics + '/metrics')).text();
  const m = new RegExp(`^visitord_track_total\\{outcome="${outcome}",type="${type}"\\} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

// A legal text with markup in it: the banner must show it as text.
const LEGAL_TEXT = 'We would like to record the pages you visit to help our chat team. <b>No HTML</b> is rendered.';
const TIMEOUT = { timeout: 90_000 };

describe('visitord in Chromium', () => {
  const cleanup = [];
  // demo: the built-in demo site (no sites file, embedded Redis), with /demo.
  const demo = {};
  // sites: a sites file and a real redis-server: an opt-in site whose pages are
  // same-site with the service, and an opt-out site on another site (127.0.0.1
  // vs localhost), whose identity cookie is third-party.
  const sites = {};

  before(async () => {
    const dir = await tempDir(cleanup);
    const bin = await buildService(dir);

    const d = await startService(bin, {}, cleanup);
    demo.base = `http://localhost:${d.port}`;
    demo.metrics = `http://127.0.0.1:${d.metricsPort}`;
    demo.operatorKey = /^\s+operator:\s+(\S+)$/m.exec(d.stderr())?.[1];
    assert.ok(demo.operatorKey, `no operator dev key in visitord's output:\n${d.stderr()}`);

    const redis = await startRedis(cleanup);
    const pagesPort = await freePort();
    sites.optinKey = newKey();
    sites.shopKey = newKey();
    const file = path.join(dir, 'sites.yaml');
    await writeFile(file, `sites:
  - id: optin
    origins: ["http://localhost:${pagesPort}"]
    consent: opt-in
    policy_version: "2026-11"
    legal_text: ${JSON.stringify(LEGAL_TEXT)}
    controller: {name: "Opt-in Shop", contact: "privacy@optin.example"}
    keys:
      - {id: agent, role: operator, sha256: "${sites.optinKey.sha256}"}
  - id: shop
    origins: ["http://127.0.0.1:${pagesPort}"]
    consent: opt-out
    legal_text: "We record the pages you visit to help our chat team."
    controller: {name: "Shop", contact: "privacy@shop.example"}
    keys:
      - {id: agent, role: operator, sha256: "${sites.shopKey.sha256}"}
`);
    const s = await startService(bin, { VISITORD_SITES: file, VISITORD_REDIS_URL: redis.url, ...secrets() }, cleanup);
    sites.base = `http://localhost:${s.port}`;
    await startPages(sites.base, pagesPort, cleanup);
    sites.pagesPort = pagesPort;
  }, { timeout: 240_000 });

  after(() => runCleanup(cleanup), { timeout: 60_000 });

  test('a page view on the demo shop sets the identity cookie, which the next page sends', TIMEOUT, async () => {
    const tc = [];
    try {
      const { context, page, violations } = await launch(tc);
      let res = nextPageview(page);
      await page.goto(demo.base + '/demo');
      const first = await (await res).json();
      assert.equal(first.tracked, true);
      assert.ok(first.token, 'the answer carries the token');

      const cookie = (await context.cookies(demo.base)).find((c) => c.name === 'vt_demo');
      assert.ok(cookie, 'the vt_demo cookie is set');
      assert.equal(cookie.value, first.token);
      assert.equal(cookie.httpOnly, true);
      assert.equal(cookie.sameSite, 'Lax');
      assert.ok(cookie.expires > Date.now() / 1000 + 86400, 'the cookie outlives the session');

      res = nextPageview(page);
      await page.click('nav a[href="/demo/products"]');
      const r = await res;
      const sent = await r.request().allHeaders();
      assert.match(sent.cookie || '', new RegExp('vt_demo=' + first.token.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
      const second = await r.json();
      assert.equal(second.tracked, true);
      assert.equal(second.token, first.token, 'the same identity on the next page');
      assert.deepEqual(violations, []);
    } finally {
      await runCleanup(tc);
    }
  });

  test('under Do Not Track the widget sends only a count ping and stores nothing', TIMEOUT, async () => {
    const tc = [];
    try {
      const { context, page, violations } = await launch(tc, { dnt: true });
      const tracks = [];
      context.on('request', (r) => { if (r.url().endsWith('/v1/track')) tracks.push(r); });
      let res = nextPageview(page);
      await page.goto(demo.base + '/demo');
      assert.equal(await page.evaluate(() => navigator.doNotTrack), '1');
      let r = await res;
      assert.deepEqual(JSON.parse(r.request().postData()), { site: 'demo', type: 'pageview' });
      const sent = await r.request().allHeaders();
      assert.equal(sent.dnt, '1');
      assert.equal(sent.cookie, undefined, 'no credentials');
      assert.equal(sent['x-visitor-token'], undefined, 'no token');
      assert.ok(!sent.referer || new URL(sent.referer).pathname === '/', `no page URL in Referer: ${sent.referer}`);
      assert.deepEqual(await r.json(), { tracked: false, reason: 'dnt' });
      assert.equal((await r.allHeaders())['set-cookie'], undefined);

      // An SPA navigation is one more count ping, still without a URL.
      res = nextPageview(page);
      await page.evaluate(() => history.pushState({}, '', '/demo/cart'));
      r = await res;
      assert.deepEqual(JSON.parse(r.request().postData()), { site: 'demo', type: 'pageview' });

      await page.waitForTimeout(500);
      for (const t of tracks) assert.deepEqual(JSON.parse(t.postData()), { site: 'demo', type: 'pageview' });
      assert.deepEqual(await context.cookies(), []);
      assert.equal(await page.evaluate(() => localStorage.length + sessionStorage.length), 0);
      assert.deepEqual(violations, []);
    } finally {
      await runCleanup(tc);
    }
  });

  test('SPA navigation (pushState, popstate) is recorded', TIMEOUT, async () => {
    const tc = [];
    try {
      const { page } = await launch(tc);
      // The first page view is held back, so the SPA navigation happens while a
      // new visitor has no identity yet: it must wait for it, not make a second one.
      let held = false;
      await page.route('**/v1/track', async (route) => {
        if (!held) {
          held = true;
          await new Promise((r) => setTimeout(r, 700));
        }
        await route.continue();
      });
      let res = nextPageview(page);
      const second = page.waitForResponse((r) => r.url().endsWith('/v1/track') &&
        JSON.parse(r.request().postData() || '{}').url === demo.base + '/demo/products');
      await page.goto(demo.base + '/demo');
      await page.evaluate(() => history.pushState({}, '', '/demo/products'));
      const first = await (await res).json();
      assert.equal(first.tracked, true);

      let r = await second;
      const body = JSON.parse(r.request().postData());
      assert.equal(body.referrer, demo.base + '/demo', 'the SPA referrer is the previous page');
      assert.equal((await r.request().allHeaders())['x-visitor-token'], first.token, 'the identity of the first view');
      const j = await r.json();
      assert.equal(j.tracked, true);
      assert.equal(j.token, first.token);
      await page.unroute('**/v1/track');

      res = nextPageview(page);
      await page.evaluate(() => history.back());
      r = await res;
      assert.equal(JSON.parse(r.request().postData()).url, demo.base + '/demo');

      // replaceState to the same URL is no new page view.
      await page.evaluate(() => history.replaceState({ x: 1 }, '', location.href));

      const mine = await page.evaluate(() => window.visitord.exportMyData());
      const paths = mine.sessions.flatMap((s) => s.pages.map((p) => new URL(p.url, demo.base).pathname));
      assert.deepEqual(paths, ['/demo', '/demo/products', '/demo']);
    } finally {
      await runCleanup(tc);
    }
  });

  test('heartbeats every 15 s while the page is visible, none while hidden, and a leave beacon', TIMEOUT, async () => {
    const tc = [];
    try {
      const { context, page } = await launch(tc);
      const hits = [];
      context.on('request', (r) => {
        if (r.url().endsWith('/v1/track')) hits.push(JSON.parse(r.postData() || '{}'));
      });
      await page.clock.install();
      const res = nextPageview(page);
      await page.goto(demo.base + '/demo');
      assert.equal((await (await res).json()).tracked, true);

      const beat = page.waitForResponse((r) => r.url().endsWith('/v1/track') &&
        JSON.parse(r.request().postData() || '{}').type === 'heartbeat');
      await page.clock.runFor(15_000);
      const hb = await beat;
      assert.deepEqual(JSON.parse(hb.request().postData()), { site: 'demo', type: 'heartbeat' });
      assert.equal((await hb.json()).tracked, true);

      // Hidden: the heartbeats stop.
      await page.evaluate(() => {
        Object.defineProperty(document, 'visibilityState', { value: 'hidden', configurable: true });
        document.dispatchEvent(new Event('visibilitychange'));
      });
      const before = hits.filter((h) => h.type === 'heartbeat').length;
      await page.clock.runFor(60_000);
      await page.waitForTimeout(300);
      assert.equal(hits.filter((h) => h.type === 'heartbeat').length, before, 'no heartbeat while hidden');

      // Leaving the page sends the leave beacon, which the service records (a
      // beacon of an unloading page is not reported to Playwright: read the metric).
      const leaves = await trackMetric(demo.metrics, 'leave', 'tracked');
      await page.goto('about:blank');
      await waitUntil(async () => (await trackMetric(demo.metrics, 'leave', 'tracked')) === leaves + 1, 'a recorded leave');
    } finally {
      await runCleanup(tc);
    }
  });

  test('opt-in site: the consent banner appears and accepting starts tracking', TIMEOUT, async () => {
    const tc = [];
    try {
      const { context, page, violations } = await launch(tc);
      let res = nextPageview(page);
      await page.goto(`http://localhost:${sites.pagesPort}/optin/home`);
      assert.deepEqual(await (await res).json(), { tracked: false, reason: 'no_consent' });

      const banner = page.locator('[data-visitord=consent]');
      await banner.waitFor();
      assert.equal(await banner.locator('p').textContent(), LEGAL_TEXT, 'the legal text, as text');
      assert.equal(await banner.locator('b').count(), 0, 'no markup from the legal text');
      await screenshot(page, 'optin-banner.png');
      assert.deepEqual(await context.cookies(), [], 'nothing stored before consent');
      assert.equal(await page.evaluate(() => localStorage.length), 0);

      const put = page.waitForResponse((r) => r.url().endsWith('/v1/consent') && r.request().method() === 'PUT');
      res = nextPageview(page);
      await banner.getByRole('button', { name: 'Accept' }).click();
      const p = await put;
      assert.deepEqual(JSON.parse(p.request().postData()),
        { site: 'optin', analytics: true, policy_version: '2026-11' }, 'the banner asks analytics only: marketing left as it is');
      const choice = await p.json();
      assert.equal(choice.analytics, true);
      assert.ok(choice.valid_until);
      const tracked = await (await res).json();
      assert.equal(tracked.tracked, true, 'accepting records the current page');
      await banner.waitFor({ state: 'detached' });
      assert.ok((await context.cookies(sites.base)).some((c) => c.name === 'vt_optin'), 'the identity cookie after consent');

      res = nextPageview(page);
      await page.reload();
      assert.equal((await (await res).json()).tracked, true, 'tracked at once after a reload');
      await page.waitForTimeout(300);
      assert.equal(await banner.count(), 0, 'no banner once consent is given');
      assert.deepEqual(violations, []);
    } finally {
      await runCleanup(tc);
    }
  });

  test('opt-in site: a refusal is remembered across a reload', TIMEOUT, async () => {
    const tc = [];
    try {
      const { page } = await launch(tc);
      let res = nextPageview(page);
      await page.goto(`http://localhost:${sites.pagesPort}/optin/home`);
      await res;
      const banner = page.locator('[data-visitord=consent]');
      await banner.waitFor();
      const put = page.waitForResponse((r) => r.url().endsWith('/v1/consent') && r.request().method() === 'PUT');
      await banner.getByRole('button', { name: 'Refuse' }).click();
      const choice = await (await put).json();
      assert.equal(choice.analytics, false);
      assert.ok(choice.token, 'a refusal token');
      assert.ok(choice.valid_until, 'the refusal is valid for a while');
      await banner.waitFor({ state: 'detached' });
      assert.equal(await page.evaluate(() => localStorage.getItem('visitord:optin')), choice.token);

      const consent = page.waitForResponse((r) => r.url().includes('/v1/consent?') && r.request().method() === 'GET');
      res = nextPageview(page);
      await page.reload();
      assert.deepEqual(await (await res).json(), { tracked: false, reason: 'no_consent' });
      const c = await consent;
      assert.equal((await c.request().allHeaders())['x-visitor-token'], choice.token);
      const cj = await c.json();
      assert.equal(cj.analytics, false);
      assert.ok(cj.valid_until, 'the refusal is on record');
      await page.waitForTimeout(500);
      assert.equal(await banner.count(), 0, 'the banner does not come back');
    } finally {
      await runCleanup(tc);
    }
  });

  test('identity survives a reload with third-party cookies blocked (X-Visitor-Token)', TIMEOUT, async () => {
    const tc = [];
    try {
      const { context, page, violations } = await launch(tc, { blockThirdPartyCookies: true });
      const url = `http://127.0.0.1:${sites.pagesPort}/shop/home`;
      let res = nextPageview(page);
      await page.goto(url);
      const first = await (await res).json();
      assert.equal(first.tracked, true);
      assert.deepEqual((await context.cookies(sites.base)).filter((c) => c.name === 'vt_shop'), [],
        'the third-party cookie is blocked');
      assert.equal(await page.evaluate(() => localStorage.getItem('visitord:shop')), first.token);
      const before = await page.evaluate(() => window.visitord.exportMyData());
      assert.ok(before.visitor_id);

      res = nextPageview(page);
      await page.reload();
      const r = await res;
      const sent = await r.request().allHeaders();
      assert.equal(sent['x-visitor-token'], first.token, 'the token travels in X-Visitor-Token');
      assert.equal(sent.cookie, undefined);
      assert.equal((await r.json()).tracked, true);

      const afterReload = await page.evaluate(() => window.visitord.exportMyData());
      assert.equal(afterReload.visitor_id, before.visitor_id, 'the same visitor after the reload');
      assert.equal(afterReload.sessions.length, 1);
      assert.equal(afterReload.sessions[0].pages.length, 2);

      // The live list is flushed by the pod within a second of the page views.
      let live;
      await waitUntil(async () => {
        live = await operatorGet(sites.base, '/v1/sites/shop/visitors/live', sites.shopKey.key);
        return live.visitors.length > 0 && live.visitors[0].pages === 2;
      }, 'visitor with two pages in the live list');
      assert.equal(live.visitors.length, 1, 'one visitor, one session pseudonym');
      assert.equal(live.visitors[0].pages, 2);
      assert.deepEqual(violations, []);
    } finally {
      await runCleanup(tc);
    }
  });

  test('a chat started in the demo shop shows its context in the console', TIMEOUT, async () => {
    const tc = [];
    try {
      const visitor = await launch(tc);
      const vp = visitor.page;
      let res = nextPageview(vp);
      await vp.goto(demo.base + '/demo');
      await res;
      res = nextPageview(vp);
      await vp.click('nav a[href="/demo/products"]');
      await res;

      // A name with markup: the console must show it as text and run nothing.
      const name = 'Ada <img src=x onerror="window.pwned=1">';
      await vp.fill('input[name=name]', name);
      await vp.fill('input[name=email]', 'ada@example.com');
      await vp.fill('textarea[name=message]', 'Is the blue mug dishwasher-safe?');
      await vp.check('input[name=marketing]');
      const started = vp.waitForResponse((r) => r.url().endsWith('/v1/chats') && r.request().method() === 'POST');
      await vp.click('#chat-form button[type=submit]');
      const chat = await (await started).json();
      assert.ok(chat.chat_id);
      const status = vp.locator('#chat-status');
      await vp.locator(`#chat-status[data-chat-id="${chat.chat_id}"]`).waitFor();
      assert.match(await status.textContent(), new RegExp(chat.chat_id));
      assert.notEqual(await vp.locator('#marketing-question').textContent(), '');
      await screenshot(vp, 'demo.png');

      const operator = await launch(tc);
      const op = operator.page;
      const page = await op.goto(demo.base + '/console');
      assert.match(page.headers()['content-security-policy'], /frame-ancestors 'none'/);
      assert.equal(page.headers()['referrer-policy'], 'no-referrer');
      await op.fill('#key', demo.operatorKey);
      await op.fill('#site', 'demo');
      await op.click('#connect button[type=submit]');
      await op.locator('#live tbody tr').first().waitFor();
      await op.fill('#chat', chat.chat_id);
      await op.click('#chat-form button[type=submit]');
      const view = op.locator('#chat-view');
      await view.locator('dl').waitFor();
      const text = await view.textContent();
      assert.ok(text.includes(name), 'the contact name, shown as text');
      assert.ok(text.includes('ada@example.com'));
      assert.ok(text.includes('yes, opted in'));
      assert.ok(text.includes(demo.base + '/demo/products'), 'the session trail');
      assert.equal(await view.locator('img').count(), 0, 'no markup from the contact');
      assert.equal(await op.evaluate(() => window.pwned), undefined);
      assert.equal(await op.evaluate(() => localStorage.length), 0, 'the key is not in localStorage');
      assert.equal(await op.evaluate(() => sessionStorage.getItem('visitord.console.key')), demo.operatorKey);

      // The live list updates by itself (the live stream); the chat context is
      // read when it is opened, so showing it again reads the new page.
      res = nextPageview(vp);
      await vp.click('nav a[href="/demo/cart"]');
      await res;
      await op.locator('#live tbody td', { hasText: demo.base + '/demo/cart' }).first().waitFor({ timeout: 8000 });
      await op.click('#chat-form button[type=submit]');
      await op.locator('#chat-view .trail li', { hasText: '/demo/cart' }).waitFor({ timeout: 8000 });
      await screenshot(op, 'console.png');
      assert.deepEqual(visitor.violations, []);
      assert.deepEqual(operator.violations, []);
    } finally {
      await runCleanup(tc);
    }
  });

  test('forgetting erases the visitor and clears local storage', TIMEOUT, async () => {
    const tc = [];
    try {
      const { context, page } = await launch(tc);
      const res = nextPageview(page);
      await page.goto(demo.base + '/demo');
      await res;
      assert.ok(await page.evaluate(() => localStorage.getItem('visitord:demo')));
      const erased = page.waitForResponse((r) => r.url().includes('/v1/me?') && r.request().method() === 'DELETE');
      await page.click('#forget');
      assert.equal((await erased).status(), 204);
      await page.locator('#me-output', { hasText: 'erased' }).waitFor();
      assert.equal(await page.evaluate(() => localStorage.getItem('visitord:demo')), null);
      assert.deepEqual((await context.cookies(demo.base)).filter((c) => c.name === 'vt_demo'), []);
    } finally {
      await runCleanup(tc);
    }
  });
});
