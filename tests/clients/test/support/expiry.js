// What the refresh tests of both clients share: short tokens, waiting them out, asking
// the server about a token, and holding one answer back until a refresh is over.

import assert from 'node:assert/strict';

import { print } from 'graphql';

import { gql } from './operations.js';
import { sleep } from './server.js';

/** The server's ACCESS_TOKEN_TTL for these tests. */
export const ACCESS_TOKEN_TTL = '1s';

/** Until the server refuses a token it issued just before: 1 s, its 5 s leeway, and a margin. */
export const EXPIRY_WAIT_MS = (1 + 5 + 1.5) * 1000;

/** Whether the server itself still takes this access token; any refusal must be UNAUTHENTICATED. */
export async function serverTakes(url, accessToken) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${accessToken}` },
    body: JSON.stringify({ query: print(gql('Me')) }),
  }).then((r) => r.json());
  if (res.data?.me) return true;
  assert.equal(res.errors[0].extensions.code, 'UNAUTHENTICATED');
  return false;
}

/**
 * A fetch for a client under test that holds back the answer to the first request
 * `matches(uri, options)` picks until `release()` (10 s at most): a refusal that
 * arrives after the refresh, which must be resent, not start a second refresh.
 * `matched` counts every request picked.
 */
export function holdFirstAnswer(matches) {
  let release;
  const released = new Promise((resolve) => (release = resolve));
  const gate = {
    matched: 0,
    release,
    async fetch(uri, options) {
      const res = await fetch(uri, options);
      if (matches(uri, options) && gate.matched++ === 0) {
        await Promise.race([released, sleep(10_000)]);
      }
      return res;
    },
  };
  return gate;
}
