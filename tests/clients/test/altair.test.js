// A second explorer, the way people use one against a server they did not build: Altair
// (from the `altair-static` package) served by a page on another origin, in headless
// Chromium, offline. It shows what the README says an explorer on another origin needs:
// the page's origin in CORS_ORIGINS, and the access token in the Authorization header.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join, normalize } from 'node:path';
import { after, before, test } from 'node:test';

import altair from 'altair-static';

import { launchChromium } from './support/browser.js';
import { artefactDir, startServer } from './support/server.js';

const TYPES = {
  '.css': 'text/css',
  '.html': 'text/html',
  '.ico': 'image/x-icon',
  '.js': 'text/javascript',
  '.json': 'application/json',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.woff2': 'font/woff2',
};

/** Altair's files, and at `/` the page `renderAltair` makes of `options()`. */
async function serveAltair(options) {
  const dist = altair.getDistDirectory();
  const http = createServer((req, res) => {
    const path = new URL(req.url, 'http://explorer').pathname;
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html' });
      return res.end(altair.renderAltair({ baseURL: '/', disableAccount: true, ...options() }));
    }
    const file = normalize(join(dist, path));
    if (!file.startsWith(dist) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404);
      return res.end();
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
    return res.end(readFileSync(file));
  });
  await new Promise((resolve) => http.listen(0, '127.0.0.1', resolve));
  return { origin: `http://127.0.0.1:${http.address().port}`, close: () => http.close() };
}

let page;
let server;
let explorer;
let browser;
before(async () => {
  page = { query: '', headers: {} };
  explorer = await serveAltair(() => ({ endpointURL: server.url, initialQuery: page.query, initialHeaders: page.headers }));
  server = await startServer({ CORS_ORIGINS: explorer.origin });
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await server?.stop();
  explorer?.close();
});

/**
 * Opens Altair with `query` and `headers` in a fresh browser context (Altair keeps its
 * windows in the browser's storage, which a second page would restore), sends it, and
 * returns the result pane's text once it shows `expect`.
 */
async function run(query, headers, expect) {
  page.query = query;
  page.headers = headers;
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const outside = [];
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.origin === server.origin || url.origin === explorer.origin) return route.continue();
    outside.push(url.href);
    return route.abort('blockedbyclient');
  });
  const tab = await context.newPage();
  const problems = [];
  tab.on('pageerror', (err) => problems.push(err.message));
  const shot = join(artefactDir, `altair-${expect.replace(/\W/g, '')}.png`);
  mkdirSync(artefactDir, { recursive: true });
  try {
    const answered = tab.waitForResponse((res) => res.url() === server.url && res.request().method() === 'POST');
    await tab.goto(`${explorer.origin}/`);
    await tab.getByRole('button', { name: 'Send Request' }).click();
    const response = await answered;
    assert.equal(response.status(), 200);
    assert.equal(response.headers()['access-control-allow-origin'], explorer.origin, 'CORS_ORIGINS lets the page read it');
    const result = tab.locator('.query-result-container .cm-content');
    await result.getByText(expect).first().waitFor({ timeout: 30_000 });
    const text = await result.innerText();
    assert.deepEqual(problems, [], 'no script errors');
    assert.deepEqual(outside, [], 'the page asked for nothing outside the two origins');
    return text;
  } finally {
    await tab.screenshot({ path: shot }).catch(() => {});
    await context.close();
  }
}

test('Altair on another origin signs up, then calls me with the token in the Authorization header', async () => {
  const signup = await run(
    'mutation { signup(input: { name: "Ada", username: "ada", password: "correct horse battery" }) { accessToken user { username } } }',
    {},
    'accessToken',
  );
  const accessToken = signup.replace(/\s+/g, '').match(/"accessToken":"(eyJ[\w-]+\.[\w-]+\.[\w-]+)"/)?.[1];
  assert.ok(accessToken, `a JWT in: ${signup}`);

  const me = await run('{ me { username } sessions { current } }', { Authorization: `Bearer ${accessToken}` }, 'current');
  const compact = me.replace(/\s+/g, '');
  assert.match(compact, /"username":"ada"/);
  assert.match(compact, /"current":true/);
  assert.doesNotMatch(compact, /"errors"/);
});
