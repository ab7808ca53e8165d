// GraphiQL in headless Chromium (Debian's package), offline: every request but the
// server's is blocked. The page must load from the binary alone, show the example
// operations and the Authorization header, and run `signup` from the editor.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { launchChromium } from './support/browser.js';
import { artefactDir, startServer } from './support/server.js';

let server;
let browser;
before(async () => {
  server = await startServer();
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

test('GraphiQL loads offline, with the examples and the bearer header, runs signup, then me with the token', async () => {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  const blocked = [];
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.origin === server.origin) return route.continue();
    blocked.push(url.href);
    return route.abort('blockedbyclient');
  });
  const problems = [];
  page.on('console', (msg) => msg.type() === 'error' && problems.push(msg.text()));
  page.on('pageerror', (err) => problems.push(err.message));

  try {
    const res = await page.goto(server.url);
    assert.equal(res.status(), 200);
    assert.match(res.headers()['content-security-policy'], /script-src 'self'/);

    // The example document in the query editor, the header preset in the headers editor.
    const queryEditor = page.locator('.graphiql-query-editor');
    await queryEditor.getByText('mutation Signup').waitFor({ timeout: 30_000 });
    const headers = page.locator('.graphiql-editor-tool .CodeMirror').last();
    assert.match(await headers.innerText(), /"Authorization": "Bearer "/);

    // Several operations: the run button asks which; choose Signup.
    await page.locator('.graphiql-execute-button').click();
    await page.getByRole('menuitem', { name: 'Signup' }).click();

    const result = page.locator('.result-window');
    await result.getByText('"accessToken"').waitFor({ timeout: 30_000 });
    const text = await result.innerText();
    assert.match(text, /"accessToken": "eyJ[\w-]+\.[\w-]+\.[\w-]+"/, 'a JWT');
    assert.match(text, /"refreshToken": "[^"]{20,}"/);
    assert.match(text, /"username": "ada"/);
    assert.doesNotMatch(text, /"errors"/);

    mkdirSync(artefactDir, { recursive: true });
    await page.screenshot({ path: join(artefactDir, 'graphiql-signup.png'), fullPage: true });

    // As the comment says: the token into the Headers tab, then run Me.
    const accessToken = text.match(/"accessToken": "([^"]+)"/)[1];
    await headers.click();
    await page.keyboard.press('Control+A');
    await page.keyboard.insertText(JSON.stringify({ Authorization: `Bearer ${accessToken}` }, null, 2));
    await page.locator('.graphiql-execute-button').click();
    await page.getByRole('menuitem', { name: 'Me', exact: true }).click();
    await result.getByText('"sessions"').waitFor({ timeout: 30_000 });
    const me = await result.innerText();
    assert.match(me, /"username": "ada"/);
    assert.match(me, /"current": true/);
    assert.doesNotMatch(me, /"errors"/);
    await page.screenshot({ path: join(artefactDir, 'graphiql-me.png'), fullPage: true });

    // The subscription, over GraphiQL's own socket with the same header: a sign-in
    // elsewhere shows up in the result pane.
    await page.locator('.graphiql-execute-button').click();
    await page.getByRole('menuitem', { name: 'SessionEvents' }).click();
    for (let seen = false; !seen; ) {
      await fetch(server.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          query: 'mutation($i: SigninInput!) { signin(input: $i) { accessToken } }',
          variables: { i: { username: 'ada', password: 'analytical engine' } },
        }),
      });
      seen = await result
        .getByText('SESSION_STARTED')
        .waitFor({ timeout: 2_000 })
        .then(() => true, () => false);
    }
    assert.match(await result.innerText(), /"current": false/);
    await page.screenshot({ path: join(artefactDir, 'graphiql-subscription.png'), fullPage: true });

    assert.deepEqual(blocked, [], 'the page asked for nothing outside the server');
    assert.deepEqual(problems, [], 'no script errors or CSP violations');
  } finally {
    await context.close();
  }
});
