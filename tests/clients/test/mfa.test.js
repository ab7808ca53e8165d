// The second factor as a frontend meets it, through Apollo Client against the real
// binary: enrol (the TOTP code computed here from the secret enrollTotp returned, as
// an authenticator app would), sign in again and get mfaRequired, find that only me
// answers, pass verifyMfa after one wrong code, and read the account at AAL2.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, test } from 'node:test';

import { CombinedGraphQLErrors } from '@apollo/client/errors';

import { createApolloClient } from '../src/apollo.js';
import { signIn } from '../src/mfa.js';
import { gql } from './support/operations.js';
import { startServer, uniqueName } from './support/server.js';

/** RFC 4648 base32, as authenticator apps read a typed secret. */
function fromBase32(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of text.replace(/=+$/, '')) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  return Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
}

/** RFC 6238 with SHA-1, 6 digits, 30 s steps: the code of `step`. */
function totp(secret, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac('sha1', secret).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

const stepNow = () => Math.floor(Date.now() / 1000 / 30);
const claims = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());
const codeOf = (error) => (CombinedGraphQLErrors.is(error) ? error.errors[0]?.extensions?.code : String(error));

let server;
before(async () => {
  server = await startServer({ MFA_ISSUER: 'Acme' });
});
after(async () => {
  await server?.stop();
});

test('enrol, then sign in with mfaRequired, verifyMfa with a computed code, and read me at AAL2', async () => {
  const username = uniqueName('mfa');
  const password = 'correct horse battery';
  const tokens = {};
  const client = createApolloClient({ url: server.url, tokens });
  const { data } = await client.mutate({
    mutation: gql('Signup'),
    variables: { input: { name: 'Ada', username, password } },
  });
  Object.assign(tokens, data.signup);
  assert.equal(data.signup.mfaRequired, false);

  const enrolled = await client.mutate({ mutation: gql('EnrollTotp') });
  const { secret, uri, qrSvg } = enrolled.data.enrollTotp;
  assert.ok(uri.startsWith(`otpauth://totp/Acme:${username}?secret=${secret}`), uri);
  assert.match(qrSvg, /<svg/);
  const key = fromBase32(secret);
  // The code of this step confirms; the next step's code is still inside the ±1 window
  // a moment later, so the sign-in below needs no wait.
  const step = stepNow();
  const confirmed = await client.mutate({ mutation: gql('ConfirmTotp'), variables: { code: totp(key, step) } });
  assert.equal(confirmed.data.confirmTotp.codes.length, 10);
  tokens.accessToken = confirmed.data.confirmTotp.accessToken;
  assert.equal(claims(tokens.accessToken).aal, 'aal2');

  // Another device signs in: AAL1 until the second factor.
  const deviceTokens = {};
  const device = createApolloClient({ url: server.url, tokens: deviceTokens });
  const asked = [];
  const result = await signIn(device, deviceTokens, { username, password }, async () => {
    if (asked.length === 0) {
      assert.equal(claims(deviceTokens.accessToken).aal, 'aal1');
      const me = await device.query({ query: gql('MySecondFactor'), fetchPolicy: 'network-only' });
      assert.equal(me.data.me.mfaEnabled, true, 'me answers an AAL1 session');
      assert.deepEqual(me.data.sessions.filter((s) => s.current).map((s) => s.assurance), ['AAL1']);
      await assert.rejects(
        device.mutate({ mutation: gql('UpdateUser'), variables: { id: me.data.me.id, input: { name: 'Mallory' } } }),
        (error) => codeOf(error) === 'MFA_REQUIRED',
      );
      asked.push('wrong');
      return totp(key, step + 7); // far outside the window
    }
    asked.push('right');
    return totp(key, step + 1);
  });
  assert.deepEqual(asked, ['wrong', 'right'], 'a wrong code is asked again, once');
  assert.equal(result.assurance, 'AAL2');
  assert.deepEqual(claims(deviceTokens.accessToken).amr, ['pwd', 'otp']);

  const me = await device.query({ query: gql('MySecondFactor'), fetchPolicy: 'network-only' });
  assert.deepEqual(me.data.sessions.filter((s) => s.current).map((s) => s.assurance), ['AAL2']);
  const renamed = await device.mutate({
    mutation: gql('UpdateUser'),
    variables: { id: me.data.me.id, input: { name: 'Ada at AAL2' } },
  });
  assert.equal(renamed.data.updateUser.name, 'Ada at AAL2');

  // A recovery code passes another sign-in once, and says how many remain.
  const spareTokens = {};
  const spare = createApolloClient({ url: server.url, tokens: spareTokens });
  const recovered = await signIn(spare, spareTokens, { username, password }, async () =>
    confirmed.data.confirmTotp.codes[0].toLowerCase(),
  );
  assert.equal(recovered.recoveryCodesLeft, 9);
});
