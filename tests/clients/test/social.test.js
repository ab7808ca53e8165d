// Sign-in with another provider in Chromium: a page with "Continue with Acme" buttons
// (Apollo Client and urql, through the documented src/social.js) goes through a real
// OpenID Provider's login page (oidc-provider, started here on loopback) and back to
// the page's redirect URI, which finishes the sign-in. The server discovered the
// provider from its issuer; the person's account is created on the first sign-in and
// found on the next.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';

import * as esbuild from 'esbuild';

import { launchChromium } from './support/browser.js';
import { startServer } from './support/server.js';

const CLIENT = { client_id: 'browser-app', client_secret: 'browser-app-secret-0123456789' };

async function freePort() {
  const probe = createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address();
  await new Promise((r) => probe.close(r));
  return port;
}

/** oidc-provider with one client whose redirect URI is `redirectUri`. */
async function startProvider(redirectUri) {
  const child = spawn(process.execPath, [join(import.meta.dirname, '..', 'oidc', 'provider.mjs')], {
    env: {
      PATH: process.env.PATH,
      OP_PORT: String(await freePort()),
      OP_CLIENTS: JSON.stringify([{ ...CLIENT, redirect_uris: [redirectUri] }]),
    },
    stdio: ['pipe', 'pipe', 'ignore'],
  });
  const [line] = await once(createInterface({ input: child.stdout }), 'line');
  assert.match(line, /^ready /);
  return { issuer: line.slice('ready '.length), stop: () => child.kill() };
}

let api;
let provider;
let page;
let pageOrigin;
let browser;
before(async () => {
  const bundle = await esbuild.build({
    entryPoints: [join(import.meta.dirname, 'support', 'social-page.js')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    write: false,
  });
  const script = bundle.outputFiles[0].text;
  page = createServer((req, res) => {
    if (req.url === '/app.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(script);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(`<!doctype html><meta charset="utf-8"><title>Sign in</title>
<script>window.API = ${JSON.stringify(api?.url ?? '')};</script>
<button id="apollo">Continue with Acme</button>
<script type="module" src="/app.js"></script>`);
  });
  page.listen(0, '127.0.0.1');
  await once(page, 'listening');
  pageOrigin = `http://127.0.0.1:${page.address().port}`;
  const redirectUri = `${pageOrigin}/auth/callback`;
  provider = await startProvider(redirectUri);
  api = await startServer({
    CORS_ORIGINS: pageOrigin,
    OIDC_PROVIDERS: 'acme',
    OIDC_ACME_ISSUER: provider.issuer,
    OIDC_ACME_CLIENT_ID: CLIENT.client_id,
    OIDC_ACME_CLIENT_SECRET: CLIENT.client_secret,
    OIDC_REDIRECT_URIS: redirectUri,
  });
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await api?.stop();
  provider?.stop();
  page?.close();
});

/** Clicks through: the button, the provider's login form, and back. */
async function continueWith(tab, clientName, login) {
  await tab.goto(pageOrigin);
  await tab.waitForFunction(() => window.app);
  await Promise.all([
    tab.waitForURL(/\/interaction\//, { waitUntil: 'domcontentloaded' }),
    tab.evaluate((name) => window.app.continueWith(name, 'acme'), clientName),
  ]);
  // The provider's own login page.
  await tab.fill('input[name=login]', login);
  await tab.fill('input[name=password]', 'anything');
  await Promise.all([
    tab.waitForURL(/\/auth\/callback\?/, { waitUntil: 'domcontentloaded' }),
    tab.click('button[type=submit]'),
  ]);
  await tab.waitForFunction(() => window.finished);
  return tab.evaluate(() => window.finished);
}

test('"Continue with Acme" goes through the provider\'s login page and signs Apollo Client and urql in', async () => {
  const problems = [];
  const contexts = [];
  const newTab = async () => {
    // A context of its own: no provider session yet, so its login page shows.
    const context = await browser.newContext();
    contexts.push(context);
    const tab = await context.newPage();
    tab.on('pageerror', (err) => problems.push(err.message));
    return tab;
  };
  try {
    const tab = await newTab();
    const first = await continueWith(tab, 'apollo', 'ada-subject|ada@example.com|true|Ada Lovelace|ada');
    assert.deepEqual(first, { username: 'ada', assurance: 'AAL1', mfaRequired: false });
    const me = await tab.evaluate(() => window.app.me());
    assert.deepEqual([me.username, me.hasPassword], ['ada', false]);

    // The next sign-in, through urql in another browser, finds the same account.
    const other = await newTab();
    const second = await continueWith(other, 'urql', 'ada-subject|ada@example.com|true|Ada Lovelace|ada');
    assert.equal(second.username, 'ada');
    assert.equal((await other.evaluate(() => window.app.me())).id, me.id);

    // A redirect this tab did not start (an attacker's code and state) is refused
    // before the server is asked.
    await tab.goto(`${pageOrigin}/auth/callback?code=attackers-code&state=attackers-state`);
    await tab.waitForFunction(() => window.finished);
    const forged = await tab.evaluate(() => window.finished);
    assert.match(forged.error, /not started in this tab/);
    assert.deepEqual(problems, []);
  } finally {
    for (const context of contexts) await context.close();
  }
});
