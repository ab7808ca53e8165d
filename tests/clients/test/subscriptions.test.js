// Live session events through the real client libraries against the real binary:
// graphql-ws's own client, Apollo Client's GraphQLWsLink and urql's
// subscriptionExchange (the README's src/live.js), each receiving events of another
// session, then SESSION_ENDED for its own, and seeing the socket close with 4403.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { ApolloClient, InMemoryCache, gql as apolloGql } from '@apollo/client';
import { Client } from '@urql/core';
import WebSocket from 'ws';

import { apolloSubscriptions, createWsClient, subscribeLive, urqlSubscriptions } from '../src/live.js';
import { startServer, uniqueName } from './support/server.js';

const EVENTS = 'subscription { sessionEvents { kind sessionId current userAgent } }';

let server;
let shortLived;
before(async () => {
  server = await startServer({});
  // Access tokens of one second: sockets there close with 4401 all the time.
  shortLived = await startServer({ ACCESS_TOKEN_TTL: '1s' });
});
after(async () => {
  await server?.stop();
  await shortLived?.stop();
});

async function post(query, variables, token, to = server) {
  const res = await fetch(to.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  return res.json();
}

async function account(to = server) {
  const username = uniqueName('live');
  const input = { name: 'Ada', username, password: 'correct horse battery' };
  const signup = 'mutation($input: SignupInput!) { signup(input: $input) { accessToken refreshToken } }';
  const { data } = await post(signup, { input }, undefined, to);
  return { username, tokens: { ...data.signup } };
}

const signin = (username, to = server) =>
  post(
    'mutation($input: SigninInput!) { signin(input: $input) { accessToken } }',
    { input: { username, password: 'correct horse battery' } },
    undefined,
    to,
  );

/** Resolves with the socket's close event once the server closes it. */
function closes() {
  let resolve;
  const closed = new Promise((r) => (resolve = r));
  return { closed, onClosed: (event) => resolve(event) };
}

/** Collects the events a subscribe callback receives, and waits for the n-th. */
function collector() {
  const events = [];
  const waiters = [];
  return {
    events,
    push(event) {
      events.push(event);
      for (const w of waiters.splice(0)) w();
    },
    /** The first event `pred` accepts, once it has come. */
    async until(pred) {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const found = events.find(pred);
        if (found) return found;
        assert.ok(Date.now() < deadline, `no such event came: ${JSON.stringify(events)}`);
        await new Promise((r) => {
          waiters.push(r);
          setTimeout(r, 100);
        });
      }
    },
  };
}

/**
 * The scenario every client runs: once the subscription is live (another session's
 * sign-in reaches it), that session logs out, then the socket's own session does.
 */
async function scenario(username, tokens, seen, closed) {
  // Sign-ins elsewhere until one is seen: the subscription is running from then on.
  let other;
  while (seen.events.length === 0) {
    other = (await signin(username)).data.signin.accessToken;
    await Promise.race([seen.until(() => true), new Promise((r) => setTimeout(r, 500))]);
  }
  const started = await seen.until((e) => e.sessionId === sessionOf(other));
  assert.deepEqual([started.kind, started.current], ['SESSION_STARTED', false]);
  await post('mutation { logout }', {}, other);
  await seen.until((e) => e.kind === 'SESSION_ENDED' && e.sessionId === sessionOf(other) && !e.current);
  await post('mutation { logout }', {}, tokens.accessToken);
  await seen.until((e) => e.kind === 'SESSION_ENDED' && e.current && e.sessionId === sessionOf(tokens.accessToken));
  const event = await closed;
  assert.equal(event.code, 4403);
}

const sessionOf = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString()).sid;

test("graphql-ws's client: events, then SESSION_ENDED and close 4403", async () => {
  const { username, tokens } = await account();
  const { closed, onClosed } = closes();
  const ws = createWsClient({ url: server.url, tokens, webSocketImpl: WebSocket, onClosed });
  const seen = collector();
  ws.subscribe({ query: EVENTS }, { next: ({ data }) => seen.push(data.sessionEvents), error: () => {}, complete: () => {} });
  await scenario(username, tokens, seen, closed);
  await ws.dispose();
});

test("Apollo Client's GraphQLWsLink: the same, through client.subscribe", async () => {
  const { username, tokens } = await account();
  const { closed, onClosed } = closes();
  const ws = createWsClient({ url: server.url, tokens, webSocketImpl: WebSocket, onClosed });
  const client = new ApolloClient({ link: apolloSubscriptions(ws), cache: new InMemoryCache() });
  const seen = collector();
  client
    .subscribe({ query: apolloGql(EVENTS) })
    .subscribe({ next: ({ data }) => seen.push(data.sessionEvents), error: () => {} });
  await scenario(username, tokens, seen, closed);
  await ws.dispose();
});

test("urql's subscriptionExchange: the same, through client.subscription", async () => {
  const { username, tokens } = await account();
  const { closed, onClosed } = closes();
  const ws = createWsClient({ url: server.url, tokens, webSocketImpl: WebSocket, onClosed });
  const client = new Client({ url: server.url, exchanges: [urqlSubscriptions(ws)] });
  const seen = collector();
  client.subscription(EVENTS, {}).subscribe((result) => {
    if (result.data) seen.push(result.data.sessionEvents);
  });
  await scenario(username, tokens, seen, closed);
  await ws.dispose();
});

test('an expired token (4401) is refreshed and the subscription starts again (subscribeLive)', async () => {
  const { username, tokens } = await account(shortLived);
  const closes = [];
  const ws = createWsClient({ url: shortLived.url, tokens, webSocketImpl: WebSocket, onClosed: (e) => closes.push(e.code) });
  let refreshes = 0;
  const refresh = async () => {
    const query = 'mutation($t: String) { refresh(refreshToken: $t) { accessToken refreshToken } }';
    const { data } = await post(query, { t: tokens.refreshToken }, undefined, shortLived);
    Object.assign(tokens, data.refresh);
    refreshes += 1;
  };
  const seen = collector();
  const errors = [];
  const stop = subscribeLive(ws, refresh, { query: EVENTS }, { next: ({ data }) => seen.push(data.sessionEvents), error: (e) => errors.push(e) });
  // Sign-ins elsewhere until one is seen after a renewal.
  const deadline = Date.now() + 30_000;
  for (;;) {
    assert.ok(Date.now() < deadline, `nothing seen after a renewal: ${refreshes} refreshes, closes ${closes}`);
    const before = refreshes;
    const other = (await signin(username, shortLived)).data.signin.accessToken;
    const found = await Promise.race([
      seen.until((e) => e.sessionId === sessionOf(other)).then(() => true),
      new Promise((r) => setTimeout(() => r(false), 700)),
    ]);
    if (found && before > 0) break;
  }
  assert.ok(closes.includes(4401), `closes: ${closes}`);
  assert.deepEqual(errors, [], 'a 4401 is no error to the application');
  stop();
  await ws.dispose();
});
