// The documented subscription client (src/live.js) across a rolling restart: its
// instance is stopped with SIGTERM behind a front that, as a proxy's health check
// would, sends new connections to the other instance; at the end of the drain the
// socket is closed with 1001, graphql-ws reconnects through the front, and the
// subscription is served again by the other instance, with no error to the
// application.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';

import WebSocket from 'ws';

import { createWsClient, subscribeLive } from '../src/live.js';
import { startServer, uniqueName } from './support/server.js';

const EVENTS = 'subscription { sessionEvents { kind sessionId } }';
const SHARED = {
  JWT_ACCESS_SECRET: 'shared-secret-shared-secret-shared!!',
  REFRESH_TOKEN_KEY: 'shared-refresh-key-shared-refresh-key',
  MFA_ENCRYPTION_KEY: 'shared-mfa-key-shared-mfa-key-shared-mfa',
  AUDIT_CHAIN_KEY: 'shared-audit-key-shared-audit-key-shared',
};

let staying;
let leaving;
let front;
let target;
before(async () => {
  // `staying` owns the database; `leaving` shares it and is the one restarted.
  staying = await startServer(SHARED);
  leaving = await startServer({ ...SHARED, DATABASE_URL: staying.databaseUrl(), SHUTDOWN_DRAIN: '1s' });
  target = leaving;
  // A TCP front that forwards each new connection to `target`.
  front = net.createServer((client) => {
    const { hostname, port } = new URL(target.origin);
    const upstream = net.connect(Number(port), hostname);
    client.pipe(upstream).pipe(client);
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close);
    upstream.on('error', close);
  });
  await new Promise((resolve) => front.listen(0, '127.0.0.1', resolve));
});
after(async () => {
  front?.close();
  await leaving?.stop();
  await staying?.stop();
});

async function post(query, variables, token) {
  const res = await fetch(staying.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  return res.json();
}

const sessionOf = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString()).sid;

test('a subscription is closed with 1001 by a draining instance and served again by another', async () => {
  const username = uniqueName('rolling');
  const input = { name: 'Ada', username, password: 'correct horse battery' };
  const signup = 'mutation($input: SignupInput!) { signup(input: $input) { accessToken refreshToken } }';
  const tokens = { ...(await post(signup, { input })).data.signup };
  const url = `http://127.0.0.1:${front.address().port}/graphql`;
  const closes = [];
  const ws = createWsClient({ url, tokens, webSocketImpl: WebSocket, onClosed: (e) => closes.push(e.code) });
  const seen = [];
  const errors = [];
  const refresh = async () => assert.fail('the token lives long enough');
  const stop = subscribeLive(ws, refresh, { query: EVENTS }, {
    next: ({ data }) => seen.push(data.sessionEvents),
    error: (e) => errors.push(e),
  });
  // Signs in elsewhere until the subscription hears of it.
  const heard = async () => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      assert.ok(Date.now() < deadline, `nothing heard: closes ${closes}, errors ${errors}`);
      const signin = 'mutation($input: SigninInput!) { signin(input: $input) { accessToken } }';
      const other = (await post(signin, { input: { username, password: input.password } })).data.signin.accessToken;
      await new Promise((r) => setTimeout(r, 500));
      if (seen.some((e) => e.sessionId === sessionOf(other))) return;
    }
  };
  await heard();

  // The restart: SIGTERM, and the front (a proxy's health check) turns to the other.
  const stopped = leaving.stop();
  target = staying;
  await stopped;
  leaving = undefined;
  await heard();

  assert.ok(closes.includes(1001), `closes: ${closes}`);
  assert.deepEqual(errors, [], 'a 1001 is no error to the application');
  stop();
  await ws.dispose();
});
