// Apollo Client 4 against a running authgraph: sign-up and sign-in, `me`, cursor
// pages merged in the cache, normalization by User:id, the error link's refresh on
// UNAUTHENTICATED, and automatic persisted queries.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { loadDevMessages, loadErrorMessages } from '@apollo/client/dev';
import { CombinedGraphQLErrors } from '@apollo/client/errors';
import { parse } from 'graphql';

import { createApolloClient } from '../src/apollo.js';
import { ACCESS_TOKEN_TTL, EXPIRY_WAIT_MS, holdFirstAnswer, serverTakes } from './support/expiry.js';
import { gql } from './support/operations.js';
import { operationCount, sleep, startServer, uniqueName } from './support/server.js';

// Readable invariant messages instead of numbered links.
loadDevMessages();
loadErrorMessages();

let server;
before(async () => {
  server = await startServer({ ACCESS_TOKEN_TTL });
});
after(() => server?.stop());

const PASSWORD = 'correct horse battery';

async function signedUpClient(prefix) {
  const tokens = {};
  const client = createApolloClient({ url: server.url, tokens });
  const username = uniqueName(prefix);
  const { data } = await client.mutate({
    mutation: gql('Signup'),
    variables: { input: { name: `Name of ${username}`, username, password: PASSWORD } },
  });
  Object.assign(tokens, { accessToken: data.signup.accessToken, refreshToken: data.signup.refreshToken });
  return { client, tokens, username, user: data.signup.user };
}

describe('Apollo Client', () => {
  test('signup, signin and me', async () => {
    const { client, username, user } = await signedUpClient('apollo');
    assert.equal(user.__typename, 'User');
    assert.equal(user.username, username);

    const tokens = {};
    const other = createApolloClient({ url: server.url, tokens });
    const { data } = await other.mutate({ mutation: gql('Signin'), variables: { input: { username, password: PASSWORD } } });
    assert.equal(data.signin.tokenType, 'Bearer');
    assert.ok(data.signin.expiresIn > 0);
    Object.assign(tokens, data.signin);

    const me = await other.query({ query: gql('Me') });
    assert.equal(me.data.me.id, user.id);
    const mine = await client.query({ query: gql('Me') });
    assert.equal(mine.data.me.username, username);
  });

  test('a bad password is INVALID_CREDENTIALS, which is not a reason to refresh', async () => {
    const { username } = await signedUpClient('apollo_bad');
    let refreshed = 0;
    const client = createApolloClient({ url: server.url, tokens: {}, onRefresh: () => refreshed++ });
    await assert.rejects(
      client.mutate({ mutation: gql('Signin'), variables: { input: { username, password: 'not the password' } } }),
      (error) => CombinedGraphQLErrors.is(error) && error.errors[0].extensions.code === 'INVALID_CREDENTIALS',
    );
    assert.equal(refreshed, 0);
  });

  test('users pages are merged by cursor, and every User is one cache entry', async () => {
    const { client, user } = await signedUpClient('apollo_pages');
    for (let i = 0; i < 4; i++) await signedUpClient('apollo_pages');

    const first = await client.query({ query: gql('Users'), variables: { first: 2 } });
    const total = first.data.users.totalCount;
    assert.ok(total >= 5);
    assert.equal(first.data.users.edges.length, 2);

    // Walk every page with fetchMore; relayStylePagination appends to the cached list.
    const query = gql('Users');
    const watch = client.watchQuery({ query, variables: { first: 2 } });
    let data = (await watch.refetch()).data;
    let requests = 1;
    while (data.users.pageInfo.hasNextPage) {
      await watch.fetchMore({ variables: { after: data.users.pageInfo.endCursor } });
      data = client.readQuery({ query, variables: { first: 2 } });
      requests += 1;
    }
    const ids = data.users.edges.map((e) => e.node.id);
    assert.equal(ids.length, total, 'every account, once');
    assert.equal(new Set(ids).size, total);
    assert.equal(requests, Math.ceil(total / 2));

    // Normalized: the User from the page is the same cache entry as `me`.
    const cache = client.extract();
    assert.ok(cache[`User:${user.id}`], 'stored as User:<id>');
    const renamed = 'Renamed In Place';
    await client.mutate({ mutation: gql('UpdateUser'), variables: { id: user.id, input: { name: renamed } } });
    const fromCache = client.readFragment({
      id: `User:${user.id}`,
      fragment: gql('UserFields'),
    });
    assert.equal(fromCache.name, renamed, 'the mutation result updated the one User entry');
    const page = client.readQuery({ query: gql('Users'), variables: { first: 2 } });
    const inPage = page.users.edges.find((e) => e.node.id === user.id);
    assert.equal(inPage.node.name, renamed, 'and every list that holds it');
  });

  test('an expired access token: the error link sees UNAUTHENTICATED, refreshes once, and every query succeeds', async () => {
    const { tokens, username } = await signedUpClient('apollo_expiry');
    const stale = tokens.accessToken;
    const oldRefreshToken = tokens.refreshToken;
    let refreshed = 0;
    // One answer to the stale token arrives only after the refresh.
    const gate = holdFirstAnswer((_uri, options) => options.headers?.authorization === `Bearer ${stale}`);
    const client = createApolloClient({
      url: server.url,
      tokens,
      fetch: gate.fetch,
      onRefresh: () => {
        refreshed += 1;
        gate.release();
      },
    });
    const before = await operationCount(server.origin, 'refresh');

    // What the error link is for: the server's own verdict on the stale token.
    await sleep(EXPIRY_WAIT_MS);
    assert.equal(await serverTakes(server.url, stale), false);

    // Five different queries at once across the expiry (identical ones would share one
    // request): one refresh, all five answered.
    const queries = Array.from({ length: 5 }, (_, i) => parse(`query Protected${i} { me { id username } }`));
    const results = await Promise.all(queries.map((query) => client.query({ query, fetchPolicy: 'network-only' })));
    for (const { data } of results) assert.equal(data.me.username, username);
    assert.equal(gate.matched, 5, 'five answers to the stale token, one of them held');
    assert.equal(refreshed, 1);
    assert.notEqual(tokens.refreshToken, oldRefreshToken, 'rotated');
    assert.equal((await operationCount(server.origin, 'refresh')) - before, 1, 'the server saw one refresh');
  });

  test('automatic persisted queries: hashes first, the text once, over GET', async () => {
    const { tokens } = await signedUpClient('apollo_apq');
    const sent = [];
    const recordingFetch = (uri, options) => {
      sent.push({ method: options.method ?? 'GET', uri: String(uri), body: options.body });
      return fetch(uri, options);
    };
    const client = () => createApolloClient({ url: server.url, tokens, persisted: true, fetch: recordingFetch });

    const first = await client().query({ query: gql('Me') });
    assert.ok(first.data.me.id);
    assert.equal(sent.length, 2, 'the hash, then the hash with the text');
    assert.equal(sent[0].method, 'GET');
    assert.ok(!new URL(sent[0].uri).searchParams.has('query'), 'the first try is the hash alone');
    assert.ok(JSON.parse(sent[1].body).query, 'then the text');

    sent.length = 0;
    const second = await client().query({ query: gql('Me') });
    assert.deepEqual(second.data, first.data);
    assert.equal(sent.length, 1, 'known hash: one request');
    assert.equal(sent[0].method, 'GET');
    assert.ok(!new URL(sent[0].uri).searchParams.has('query'));
  });
});
