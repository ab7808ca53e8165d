// Passkeys in Chromium: a virtual authenticator (DevTools' WebAuthn domain: CTAP2, the
// internal transport, resident keys, user verification) on a page served at
// http://localhost, whose script esbuild bundles from src/passkeys.js and Apollo
// Client. The page registers a passkey, signs out, signs in from the autofill without
// typing a username, and raises a password sign-in to AAL2 with the passkey.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import * as esbuild from 'esbuild';

import { launchChromium } from './support/browser.js';
import { startServer } from './support/server.js';

const PASSWORD = 'correct horse battery staple';

let api;
let page;
let pageOrigin;
let browser;
before(async () => {
  const bundle = await esbuild.build({
    entryPoints: [join(import.meta.dirname, 'support', 'passkey-page.js')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    write: false,
  });
  const script = bundle.outputFiles[0].text;
  const html = `<!doctype html><meta charset="utf-8"><title>Sign in</title>
<input name="username" autocomplete="username webauthn">
<script type="module" src="/app.js"></script>`;
  page = createServer((req, res) => {
    const js = req.url === '/app.js';
    res.writeHead(200, { 'content-type': js ? 'text/javascript' : 'text/html' });
    res.end(js ? script : html);
  });
  page.listen(0, '127.0.0.1');
  await once(page, 'listening');
  // http://localhost is a secure context; its RP ID is localhost.
  pageOrigin = `http://localhost:${page.address().port}`;
  api = await startServer({ CORS_ORIGINS: pageOrigin, WEBAUTHN_RP_ID: 'localhost', WEBAUTHN_ORIGINS: pageOrigin });
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await api?.stop();
  page?.close();
});

test('a passkey registered in Chromium signs in from the autofill and is the second factor of a password sign-in', async () => {
  const context = await browser.newContext();
  const tab = await context.newPage();
  const problems = [];
  tab.on('pageerror', (err) => problems.push(err.message));
  const cdp = await context.newCDPSession(tab);
  await cdp.send('WebAuthn.enable', { enableUI: false });
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  try {
    await tab.goto(`${pageOrigin}/?api=${encodeURIComponent(api.url)}`);
    await tab.waitForFunction(() => window.app);

    // Register: the account's first factor raises this session; its refresh says AAL2.
    await tab.evaluate((p) => window.app.signup('ada', p), PASSWORD);
    const passkey = await tab.evaluate(() => window.app.registerPasskey('This laptop'));
    assert.equal(passkey.name, 'This laptop');
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    assert.equal(credentials.length, 1);
    assert.equal(credentials[0].isResidentCredential, true, 'a discoverable credential');
    assert.equal((await tab.evaluate(() => window.app.refresh())).assurance, 'AAL2');
    const me = await tab.evaluate(() => window.app.me());
    assert.deepEqual([me.username, me.mfaEnabled, me.passkeyCount], ['ada', true, 1]);

    // Signed out, then in from the autofill: no username typed.
    await tab.evaluate(() => window.app.signOut());
    const signedIn = await tab.evaluate(() => window.app.signInWithPasskey({ conditional: true }));
    assert.equal(signedIn.user.username, 'ada');
    assert.equal(signedIn.assurance, 'AAL2');
    assert.equal((await tab.evaluate(() => window.app.me())).username, 'ada');

    // A password sign-in needs the second factor; the passkey gives it.
    await tab.evaluate(() => window.app.signOut());
    const aal1 = await tab.evaluate((p) => window.app.signin('ada', p), PASSWORD);
    assert.equal(aal1.mfaRequired, true);
    const raised = await tab.evaluate(() => window.app.verifyWithPasskey());
    assert.equal(raised.assurance, 'AAL2');
    assert.equal((await tab.evaluate(() => window.app.me())).passkeyCount, 1);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});
