// Password recovery as a frontend does it, through Apollo Client, against the real
// binary sending through a real SMTP server on loopback (nodemailer's `smtp-server`):
// sign up with an address, verify it with the emailed code, forget the password, and
// reset it with the address and the code from the message.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { SMTPServer } from 'smtp-server';

import { createApolloClient } from '../src/apollo.js';
import { gql } from './support/operations.js';
import { startServer, uniqueName } from './support/server.js';

/** The messages the SMTP server accepted, and a way to wait for the next one to `to`. */
function inbox() {
  const messages = [];
  const waiters = [];
  const smtp = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onData(stream, session, done) {
      const chunks = [];
      stream.on('data', (c) => chunks.push(c));
      stream.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        const message = { to: session.envelope.rcptTo.map((r) => r.address.toLowerCase()), raw, text: unfold(raw) };
        messages.push(message);
        for (const w of waiters.splice(0)) w();
        done();
      });
    },
  });
  return {
    smtp,
    async next(to, count) {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const mine = messages.filter((m) => m.to.includes(to.toLowerCase()));
        if (mine.length >= count) return mine[count - 1];
        assert.ok(Date.now() < deadline, `message ${count} to ${to} never came`);
        await new Promise((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 200);
        });
      }
    },
  };
}

/** Quoted-printable undone: soft line breaks and =XX escapes. */
function unfold(raw) {
  return raw.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_, hex) => String.fromCharCode(parseInt(hex, 16)));
}

const codeOf = (message) => message.text.match(/code: (\d{6})/)[1];

let server;
let mail;
before(async () => {
  mail = inbox();
  await new Promise((resolve) => mail.smtp.listen(0, '127.0.0.1', resolve));
  const { port } = mail.smtp.server.address();
  server = await startServer({ SMTP_URL: `smtp://127.0.0.1:${port}`, MAIL_FROM: 'Acme <no-reply@acme.test>' });
});
after(async () => {
  await server?.stop();
  await new Promise((resolve) => mail?.smtp.close(resolve));
});

test('verify by the emailed code, then reset a forgotten password with the address and code', async () => {
  const username = uniqueName('mail');
  const email = `${username}@example.com`;
  const tokens = {};
  const client = createApolloClient({ url: server.url, tokens });
  const { data } = await client.mutate({
    mutation: gql('Signup'),
    variables: { input: { name: 'Ada', username, password: 'correct horse battery', email } },
  });
  Object.assign(tokens, data.signup);

  // The verification message, and its code while signed in.
  const verification = await mail.next(email, 1);
  assert.match(verification.raw, /Subject: Confirm your email address for authgraph/);
  const verified = await client.mutate({ mutation: gql('VerifyEmail'), variables: { input: { code: codeOf(verification) } } });
  assert.equal(verified.data.verifyEmail, true);
  const me = await client.query({ query: gql('MyEmail'), fetchPolicy: 'network-only' });
  assert.deepEqual({ email: me.data.me.email, emailVerified: me.data.me.emailVerified }, { email, emailVerified: true });

  // Forgotten: a fresh client, signed out, asks for a reset and uses the code.
  const signedOut = createApolloClient({ url: server.url, tokens: {} });
  const asked = await signedOut.mutate({ mutation: gql('RequestPasswordReset'), variables: { email: email.toUpperCase() } });
  assert.equal(asked.data.requestPasswordReset, true);
  const unknown = await signedOut.mutate({ mutation: gql('RequestPasswordReset'), variables: { email: `nobody-${email}` } });
  assert.equal(unknown.data.requestPasswordReset, true, 'the same answer for an address no account has');
  const reset = await mail.next(email, 2);
  assert.match(reset.raw, /Subject: Reset your authgraph password/);
  const done = await signedOut.mutate({
    mutation: gql('ResetPassword'),
    variables: { input: { email, code: codeOf(reset), newPassword: 'a brand new passphrase' } },
  });
  assert.equal(done.data.resetPassword.user.username, username);
  assert.ok(done.data.resetPassword.accessToken);

  // The old session is over; the new password signs in.
  const stale = await fetch(server.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${tokens.accessToken}` },
    body: JSON.stringify({ query: '{ me { id } }' }),
  }).then((res) => res.json());
  assert.equal(stale.errors?.[0]?.extensions?.code, 'UNAUTHENTICATED', JSON.stringify(stale));
  const signin = await signedOut.mutate({
    mutation: gql('Signin'),
    variables: { input: { username, password: 'a brand new passphrase' } },
  });
  assert.equal(signin.data.signin.user.username, username);
  const notice = await mail.next(email, 3);
  assert.match(notice.raw, /Subject: Your authgraph password was changed/);
});
