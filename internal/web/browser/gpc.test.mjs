// Global Privacy Control from the shipped widget, in Chromium (issue 17, item 6):
// a tracked visitor who turns GPC on sends the count ping with the cookie and
// the stored token; the service honours the objection (behaviour data deleted,
// cookie expired, a cut gpc withdrawal record) and the widget forgets the token,
// so the browser is never recognised again. Chromium has no GPC switch: the
// test sends `Sec-GPC: 1` and sets navigator.globalPrivacyControl, as a browser
// with GPC on does.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  buildService, freePort, launch, newKey, nextPageview, runCleanup, secrets, startPages, startRedis, startService,
  tempDir,
} from './harness.mjs';

const TIMEOUT = { timeout: 90_000 };

/** privacyGet reads a privacy route with key; it answers status and body. */
async function privacyGet(base, path, key) {
  const r = await fetch(base + path, { headers: { Authorization: 'Bearer ' + key } });
  return { status: r.status, body: await r.json() };
}

describe('GPC from the widget in Chromium', () => {
  const cleanup = [];
  const env = {};

  before(async () => {
    const dir = await tempDir(cleanup);
    const bin = await buildService(dir);
    const redis = await startRedis(cleanup);
    const pagesPort = await freePort();
    env.privacyKey = newKey();
    const file = path.join(dir, 'sites.yaml');
    // Pages on 127.0.0.1, the service on localhost: the identity cookie is a
    // third-party one, so the widget's stored token matters too.
    await writeFile(file, `sites:
  - id: shop
    origins: ["http://127.0.0.1:${pagesPort}"]
    consent: opt-out
    policy_version: "2026-11"
    legal_text: "We record the pages you visit to help our chat team."
    controller: {name: "Shop", contact: "privacy@shop.example"}
    keys:
      - {id: dpo, role: privacy, sha256: "${env.privacyKey.sha256}"}
`);
    const s = await startService(bin, { VISITORD_SITES: file, VISITORD_REDIS_URL: redis.url, ...secrets() }, cleanup);
    env.base = `http://localhost:${s.port}`;
    await startPages(env.base, pagesPort, cleanup);
    env.pages = `http://127.0.0.1:${pagesPort}`;
  }, { timeout: 240_000 });

  after(() => runCleanup(cleanup), { timeout: 60_000 });

  test('turning GPC on deletes the visitor\'s data, and the browser is not recognised again', TIMEOUT, async () => {
    const tc = [];
    try {
      const { context, page, violations } = await launch(tc);
      const url = env.pages + '/shop/home';

      // Tracked without GPC: an identity, stored by the widget.
      let res = nextPageview(page);
      await page.goto(url);
      const first = await (await res).json();
      assert.equal(first.tracked, true);
      assert.equal(await page.evaluate(() => localStorage.getItem('visitord:shop')), first.token);
      const mine = await page.evaluate(() => window.visitord.exportMyData());
      const id = mine.visitor_id;
      assert.ok(id);
      let exp = await privacyGet(env.base, `/v1/sites/shop/visitors/${id}`, env.privacyKey.key);
      assert.equal(exp.status, 200);
      assert.equal(exp.body.sessions.length, 1);

      // GPC on in this tab, as a browser with the setting does.
      await page.setExtraHTTPHeaders({ 'Sec-GPC': '1' });
      await page.addInitScript(() => Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', { get: () => true }));
      res = nextPageview(page);
      await page.reload();
      const ping = await res;
      assert.equal(await page.evaluate(() => navigator.globalPrivacyControl), true);
      assert.deepEqual(JSON.parse(ping.request().postData()), { site: 'shop', type: 'pageview' }, 'a count ping, no URL');
      const sent = await ping.request().allHeaders();
      assert.equal(sent['sec-gpc'], '1');
      assert.equal(sent['x-visitor-token'], first.token, 'the stored token goes with the ping');
      assert.deepEqual(await ping.json(), { tracked: false, reason: 'gpc' });
      await page.waitForFunction(() => localStorage.getItem('visitord:shop') === null, null, { timeout: 5000 });
      assert.deepEqual((await context.cookies(env.base)).filter((c) => c.name === 'vt_shop'), [],
        'no identity cookie remains');

      // The service honoured the objection: no behaviour data, and a gpc
      // withdrawal cut like an erased record.
      exp = await privacyGet(env.base, `/v1/sites/shop/visitors/${id}`, env.privacyKey.key);
      assert.equal(exp.status, 200, JSON.stringify(exp.body));
      assert.equal(exp.body.profile, null);
      assert.deepEqual(exp.body.sessions, []);
      const gpc = exp.body.consent_records.filter((r) => r.method === 'gpc');
      assert.equal(gpc.length, 1, JSON.stringify(exp.body.consent_records));
      assert.ok(gpc[0].subject, 'the record names a keyed hash');
      for (const f of ['visitor_id', 'ip', 'user_agent']) assert.equal(gpc[0][f], undefined, `no ${f} in the gpc record`);
      assert.equal(gpc[0].analytics, false);
      assert.equal(gpc[0].marketing, false);
      assert.equal(gpc[0].policy_version, '2026-11');

      // GPC off again (a new tab without it): the browser holds nothing, so it
      // is a new visitor, and the old identity stays empty.
      const fresh = await context.newPage();
      res = nextPageview(fresh);
      await fresh.goto(env.pages + '/shop/again');
      const later = await (await res).json();
      assert.equal(later.tracked, true);
      assert.notEqual(later.token, first.token);
      const again = await fresh.evaluate(() => window.visitord.exportMyData());
      assert.notEqual(again.visitor_id, id, 'not recognised again');
      exp = await privacyGet(env.base, `/v1/sites/shop/visitors/${id}`, env.privacyKey.key);
      assert.equal(exp.body.profile, null);
      assert.deepEqual(exp.body.sessions, []);
      assert.deepEqual(violations, []);
    } finally {
      await runCleanup(tc);
    }
  });
});
