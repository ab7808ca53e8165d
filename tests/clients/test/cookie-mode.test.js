// Cookie mode in a real browser: an app on one origin, the API on another
// (REFRESH_TOKEN_COOKIE=true, CORS_ORIGINS = the app). Chromium must store the
// HttpOnly refresh cookie from a credentialed cross-origin fetch, keep it from
// scripts, send it to `refresh`, and drop it on `logout`; an origin not listed gets
// nothing.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';

import { launchChromium } from './support/browser.js';
import { startServer } from './support/server.js';

/** A static page on its own port: the frontend's origin. */
async function startApp() {
  const app = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>app</title><p>app');
  });
  app.listen(0, '127.0.0.1');
  await once(app, 'listening');
  return { app, origin: `http://127.0.0.1:${app.address().port}` };
}

let api;
let app;
let stranger;
let browser;
before(async () => {
  app = await startApp();
  stranger = await startApp();
  api = await startServer({ REFRESH_TOKEN_COOKIE: 'true', CORS_ORIGINS: app.origin });
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await api?.stop();
  app?.app.close();
  stranger?.app.close();
});

/** Runs the whole flow inside the page, with fetch and credentials: 'include'. */
async function flowFrom(origin) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await context.route('**/*', (route) => {
    const { origin: to } = new URL(route.request().url());
    return [api.origin, app.origin, stranger.origin].includes(to) ? route.continue() : route.abort();
  });
  try {
    await page.goto(origin);
    return await page.evaluate(async (url) => {
      const gql = async (query, variables = {}, token) => {
        const headers = { 'content-type': 'application/json' };
        if (token) headers.authorization = `Bearer ${token}`;
        const res = await fetch(url, {
          method: 'POST',
          credentials: 'include',
          headers,
          body: JSON.stringify({ query, variables }),
        });
        return res.json();
      };
      const out = {};
      const username = `cookie_${Math.random().toString(36).slice(2, 10)}`;
      try {
        const signup = await gql(
          'mutation ($input: SignupInput!) { signup(input: $input) { accessToken refreshToken } }',
          { input: { name: 'Cookie Monster', username, password: 'correct horse battery' } },
        );
        out.signup = signup.data?.signup ?? signup.errors;
        out.scriptSeesCookie = document.cookie;
        const refresh = await gql('mutation { refresh { accessToken refreshToken } }');
        out.refresh = refresh.data?.refresh ?? refresh.errors?.[0]?.extensions;
        const me = await gql('{ me { username } }', {}, refresh.data?.refresh?.accessToken);
        out.me = me.data?.me?.username === username;
        await gql('mutation { logout }', {}, refresh.data?.refresh?.accessToken);
        const afterLogout = await gql('mutation { refresh { accessToken } }');
        out.afterLogout = afterLogout.errors?.[0]?.extensions;
      } catch (err) {
        out.error = String(err);
      }
      return out;
    }, api.url);
  } finally {
    await context.close();
  }
}

test('a listed origin: the HttpOnly cookie carries the session through refresh, and logout ends it', async () => {
  const out = await flowFrom(app.origin);
  assert.equal(out.error, undefined);
  assert.ok(out.signup.accessToken, JSON.stringify(out.signup));
  assert.equal(out.signup.refreshToken, null, 'the token is only in the cookie');
  assert.equal(out.scriptSeesCookie, '', 'HttpOnly: scripts never see it');
  assert.ok(out.refresh.accessToken, `refresh with no argument used the cookie: ${JSON.stringify(out.refresh)}`);
  assert.equal(out.refresh.refreshToken, null);
  assert.equal(out.me, true);
  assert.deepEqual(out.afterLogout, { code: 'INVALID_REFRESH_TOKEN', reason: 'NOT_FOUND' }, 'logout cleared the cookie');
});

test('an origin not in CORS_ORIGINS cannot read responses or use the cookie', async () => {
  const out = await flowFrom(stranger.origin);
  assert.match(out.error ?? '', /Failed to fetch/, 'CORS blocks the first call');
  assert.equal(out.signup, undefined);
});
