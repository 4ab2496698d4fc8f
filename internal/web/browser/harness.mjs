// Test harness: builds and starts the real visitord binary (and, where a test
// needs a sites file, a redis-server), serves customer pages from another
// origin, and launches Debian's Chromium through playwright-core.
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const outputDir = path.join(repoRoot, 'test-output');

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/** tempDir makes a directory that cleanup removes. */
export async function tempDir(cleanup, prefix = 'visitord-browser-') {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** freePort asks the kernel for a free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** buildService compiles cmd/visitord into dir and returns the binary's path. */
export async function buildService(dir) {
  const bin = path.join(dir, 'visitord');
  await promisify(execFile)('go', ['build', '-o', bin, './cmd/visitord'], { cwd: repoRoot, maxBuffer: 16 << 20 });
  return bin;
}

async function waitFor(what, probe, timeoutMs = 20000) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try {
      if (await probe()) return;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not come up within ${timeoutMs} ms${last ? ': ' + last.message : ''}`);
}

// Children this harness started: if the runner exits before a cleanup ran,
// they are killed by PID on the way out, never by name.
const children = new Set();
process.on('exit', () => {
  for (const c of children) {
    try { c.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

function track(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** stopProcess ends one child this harness started, by its PID, and waits for it. */
function stopProcess(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/**
 * startService runs the visitord binary on a free port of 127.0.0.1 (and its
 * metrics listener on another) with env added to this process's environment,
 * and waits for /healthz.
 */
export async function startService(bin, env, cleanup) {
  const port = await freePort();
  const metricsPort = await freePort();
  let stderr = '';
  const child = track(spawn(bin, [], {
    env: {
      ...process.env, VISITORD_ADDR: `127.0.0.1:${port}`, VISITORD_METRICS_ADDR: `127.0.0.1:${metricsPort}`,
      VISITORD_COOKIE_SECURE: 'false', ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  }));
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => { stderr += d; });
  cleanup.push(() => stopProcess(child));
  const exited = new Promise((_, reject) => child.once('exit', (code) => reject(new Error(`visitord exited with ${code}:\n${stderr}`))));
  exited.catch(() => {});
  await Promise.race([
    waitFor('visitord', async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok),
    exited,
  ]);
  return { port, metricsPort, stderr: () => stderr };
}

/** startRedis runs a throw-away redis-server on a free port, keeping nothing on disk. */
export async function startRedis(cleanup) {
  const port = await freePort();
  const dir = await tempDir(cleanup, 'visitord-redis-');
  const child = track(spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: 'ignore',
  }));
  cleanup.push(() => stopProcess(child));
  await waitFor('redis-server', () => new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write('PING\r\n'));
    s.once('data', (d) => { s.destroy(); resolve(String(d).startsWith('+PONG')); });
    s.once('error', reject);
  }));
  return { url: `redis://127.0.0.1:${port}` };
}

/** newKey returns an API key and the hex SHA-256 a sites file holds for it. */
export function newKey() {
  const key = 'vk_' + randomBytes(32).toString('base64url');
  return { key, sha256: createHash('sha256').update(key).digest('hex') };
}

/** secrets are the three secrets a service with its own Redis needs. */
export function secrets() {
  return {
    VISITORD_COOKIE_SECRET: randomBytes(32).toString('base64url'),
    VISITORD_DATA_KEY: 'k1:' + randomBytes(32).toString('base64'),
    VISITORD_INDEX_KEY: randomBytes(32).toString('base64'),
  };
}

/**
 * startPages serves customer pages on port of 127.0.0.1: /<site>/<name> is a
 * page of that site embedding the widget from service (http://localhost:P).
 */
export async function startPages(service, port, cleanup) {
  const srv = http.createServer((req, res) => {
    const m = /^\/([a-z0-9-]+)\/([a-z0-9-]+)$/.exec(new URL(req.url, 'http://x').pathname);
    if (!m) {
      res.writeHead(404).end();
      return;
    }
    const [, site, name] = m;
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${site} ${name}</title>
<script async src="${service}/v1/widget.js" data-site="${site}"></script></head>
<body><h1>${site}: ${name}</h1><p>A customer's page with the visitord snippet.</p></body></html>`);
  });
  await new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', resolve);
  });
  cleanup.push(() => new Promise((resolve) => {
    srv.closeAllConnections();
    srv.close(resolve);
  }));
}

/**
 * launch starts Chromium with a fresh profile. dnt turns on "Send a Do Not
 * Track request"; blockThirdPartyCookies blocks cookies in cross-site requests.
 */
export async function launch(cleanup, { dnt = false, blockThirdPartyCookies = false } = {}) {
  const dir = await tempDir(cleanup, 'visitord-chromium-');
  const prefs = {};
  if (dnt) prefs.enable_do_not_track = true;
  if (blockThirdPartyCookies) prefs.profile = { block_third_party_cookies: true, cookie_controls_mode: 1 };
  await mkdir(path.join(dir, 'Default'), { recursive: true });
  await writeFile(path.join(dir, 'Default', 'Preferences'), JSON.stringify(prefs));
  const args = [...CHROMIUM_ARGS];
  if (blockThirdPartyCookies) args.push('--test-third-party-cookie-phaseout');
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM, headless: true, args, viewport: { width: 1280, height: 800 },
  });
  cleanup.push(() => context.close());
  const violations = [];
  context.on('console', (msg) => {
    if (msg.type() === 'error' && /Content Security Policy|Refused to/i.test(msg.text())) violations.push(msg.text());
  });
  const page = context.pages()[0] || await context.newPage();
  return { context, page, violations };
}

/** runCleanup undoes, in reverse order, everything a test set up. */
export async function runCleanup(cleanup) {
  while (cleanup.length) {
    const f = cleanup.pop();
    let timer;
    try {
      // A step that hangs (a browser that will not close) must not hold the run.
      await Promise.race([f(), new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('timed out')), 20_000); })]);
    } catch (e) {
      console.error('cleanup:', e.message);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** nextPageview waits for the next answer of POST /v1/track of type pageview. */
export function nextPageview(page) {
  return page.waitForResponse((r) => r.url().endsWith('/v1/track') && r.request().method() === 'POST' &&
    JSON.parse(r.request().postData() || '{}').type === 'pageview');
}

/**
 * waitUntil polls probe every everyMs until it answers true, and fails the test
 * naming what did not happen within timeoutMs. Site-level data (the live list,
 * the per-day counters) is aggregated per pod and flushed at least every second
 * (DESIGN.md, Storage), so a test that reads it after a page view waits for it.
 */
export async function waitUntil(probe, what, timeoutMs = 5000, everyMs = 100) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  assert.fail(`no ${what} within ${timeoutMs} ms`);
}

/** operatorGet reads an operator route with key. */
export async function operatorGet(base, path, key) {
  const r = await fetch(base + path, { headers: { Authorization: 'Bearer ' + key } });
  const body = await r.json();
  if (!r.ok) throw new Error(`${path}: ${r.status} ${JSON.stringify(body)}`);
  return body;
}

/** screenshot saves a full-page screenshot under test-output/. */
export async function screenshot(page, name) {
  await mkdir(outputDir, { recursive: true });
  const file = path.join(outputDir, name);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
