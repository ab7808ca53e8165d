// urql with the auth exchange and Graphcache against a running authgraph: sign-up,
// sign-in, `me`, cursor pages, normalization by User:id, and transparent refresh when
// the access token expires, once for many concurrent queries.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { createUrqlClient, saveTokens } from '../src/urql.js';
import { ACCESS_TOKEN_TTL, EXPIRY_WAIT_MS, holdFirstAnswer, serverTakes } from './support/expiry.js';
import { gql } from './support/operations.js';
import { operationCount, sleep, startServer, uniqueName } from './support/server.js';

const PASSWORD = 'correct horse battery';

let server;
before(async () => {
  server = await startServer({ ACCESS_TOKEN_TTL });
});
after(() => server?.stop());

async function signedUpClient(prefix, onRefresh) {
  const tokens = {};
  const client = createUrqlClient({ url: server.url, tokens, onRefresh });
  const username = uniqueName(prefix);
  const input = { name: `Name of ${username}`, username, password: PASSWORD };
  const { data, error } = await client.mutation(gql('Signup'), { input }).toPromise();
  assert.ifError(error);
  saveTokens(tokens, data.signup);
  return { client, tokens, username, user: data.signup.user };
}

describe('urql', () => {
  test('signup, signin and me', async () => {
    const { client, username, user } = await signedUpClient('urql');
    const me = await client.query(gql('Me'), {}).toPromise();
    assert.equal(me.data.me.id, user.id);

    const tokens = {};
    const other = createUrqlClient({ url: server.url, tokens });
    const signin = await other.mutation(gql('Signin'), { input: { username, password: PASSWORD } }).toPromise();
    saveTokens(tokens, signin.data.signin);
    const again = await other.query(gql('Me'), {}).toPromise();
    assert.equal(again.data.me.username, username);

    const wrong = await other.mutation(gql('Signin'), { input: { username, password: 'wrong password!' } }).toPromise();
    assert.equal(wrong.error.graphQLErrors[0].extensions.code, 'INVALID_CREDENTIALS');
  });

  test('users pages accumulate through relayPagination, and a User is one record', async () => {
    const { client, user } = await signedUpClient('urql_pages');
    for (let i = 0; i < 4; i++) await signedUpClient('urql_pages');

    let result = await client.query(gql('Users'), { first: 2 }).toPromise();
    const total = result.data.users.totalCount;
    let pages = 1;
    while (result.data.users.pageInfo.hasNextPage) {
      result = await client.query(gql('Users'), { first: 2, after: result.data.users.pageInfo.endCursor }).toPromise();
      pages += 1;
    }
    const ids = result.data.users.edges.map((e) => e.node.id);
    assert.equal(ids.length, total, 'the last page holds every page before it');
    assert.equal(new Set(ids).size, total);
    assert.equal(pages, Math.ceil(total / 2));

    const renamed = 'Renamed Through urql';
    const update = await client.mutation(gql('UpdateUser'), { id: user.id, input: { name: renamed } }).toPromise();
    assert.ifError(update.error);
    // Served from the cache, and already showing the mutation's User.
    const cached = await client.query(gql('User'), { id: user.id }, { requestPolicy: 'cache-only' }).toPromise();
    assert.equal(cached.data.user.name, renamed, 'user(id) resolves to the User:<id> record');
    const page = await client.query(gql('Users'), { first: 2 }, { requestPolicy: 'cache-only' }).toPromise();
    assert.equal(page.data.users.edges.find((e) => e.node.id === user.id).node.name, renamed);
  });

  test('ten concurrent queries across an expiry all succeed, with a single refresh', async () => {
    let refreshed = 0;
    const { client, tokens, user } = await signedUpClient('urql_expiry', () => refreshed++);
    const stale = tokens.accessToken;
    await sleep(EXPIRY_WAIT_MS);
    assert.equal(await serverTakes(server.url, stale), false, 'the old token is refused');

    const before = await operationCount(server.origin, 'refresh');
    // Ten different protected queries, as ten components would send them (identical
    // ones would be deduplicated by urql into one request).
    const queries = Array.from({ length: 10 }, (_, i) => `query Protected${i} { me { id } sessions { id current } }`);
    const results = await Promise.all(
      queries.map((q) => client.query(q, {}, { requestPolicy: 'network-only' }).toPromise()),
    );
    for (const result of results) {
      assert.ifError(result.error);
      assert.equal(result.data.me.id, user.id);
      assert.equal(result.data.sessions.filter((s) => s.current).length, 1);
    }
    assert.equal(refreshed, 1, 'one refresh on the client');
    assert.equal((await operationCount(server.origin, 'refresh')) - before, 1, 'one refresh on the server');
    assert.notEqual(tokens.accessToken, stale);
  });

  test('tokens the server refuses before the client expects: didAuthError refreshes once and retries all', async () => {
    let refreshed = 0;
    const tokens = {};
    // One refusal of the skewed queries arrives only after the refresh.
    let stale;
    const gate = holdFirstAnswer(
      (uri, options) =>
        `${uri} ${options.body ?? ''}`.includes('Skewed') && options.headers?.authorization === `Bearer ${stale}`,
    );
    const client = createUrqlClient({
      url: server.url,
      tokens,
      fetch: gate.fetch,
      onRefresh: () => {
        refreshed += 1;
        gate.release();
      },
    });
    const username = uniqueName('urql_skew');
    const input = { name: 'Skewed Clock', username, password: PASSWORD };
    const signup = await client.mutation(gql('Signup'), { input }).toPromise();
    saveTokens(tokens, signup.data.signup);
    stale = tokens.accessToken;
    await sleep(EXPIRY_WAIT_MS);
    // The client's clock says the token is still good (skew): only the server's
    // UNAUTHENTICATED can tell it.
    tokens.expiresAt = Date.now() + 3_600_000;
    const queries = Array.from({ length: 5 }, (_, i) => `query Skewed${i} { me { id username } }`);
    const results = await Promise.all(
      queries.map((q) => client.query(q, {}, { requestPolicy: 'network-only' }).toPromise()),
    );
    for (const result of results) {
      assert.ifError(result.error);
      assert.equal(result.data.me.username, username);
    }
    assert.equal(gate.matched, 5, 'five refusals, one of them held back');
    assert.equal(refreshed, 1);
  });

  test('a session ended elsewhere: the refresh fails and the client is signed out, not looping', async () => {
    let refreshed = 0;
    const { client, tokens } = await signedUpClient('urql_ended', () => refreshed++);
    const stale = tokens.accessToken;
    const { error } = await client.mutation(gql('Logout'), { scope: 'ALL' }).toPromise();
    assert.ifError(error);
    tokens.accessToken = stale; // as if another tab ended the session
    const me = await client.query(gql('Me'), {}, { requestPolicy: 'network-only' }).toPromise();
    assert.equal(me.error.graphQLErrors[0].extensions.code, 'UNAUTHENTICATED');
    assert.equal(refreshed, 0);
    assert.equal(tokens.accessToken, undefined, 'signed out');
  });
});
