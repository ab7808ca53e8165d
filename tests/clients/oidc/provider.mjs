// A real OpenID Provider (oidc-provider, OpenID Certified) on loopback for the tests:
// the Rust suite (tests/it/support/providers.rs) and the Chromium client test start it.
//
// Environment:
//   OP_PORT     the port on 127.0.0.1 (the issuer is http://127.0.0.1:OP_PORT)
//   OP_CLIENTS  JSON array of clients ({ client_id, client_secret, redirect_uris })
//
// A login names the person: `sub|email|email_verified|name|preferred_username`, where
// only `sub` is required ("ada|ada@example.com|true|Ada Lovelace|ada"). The dev login
// form takes it as its login (any password); consent is given on the person's behalf
// (every client is first-party here), so a login goes straight back to the client.
//
// POST /__rotate replaces the signing key with a new one (a new kid): the provider
// then signs and publishes only the new key, as one that rotated would.
import http from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

// Stdout says "ready" and nothing else: whoever started us may stop reading it then.
process.stdout.on('error', () => {});
console.log = console.info = (...args) => console.error(...args);

const port = Number(process.env.OP_PORT);
const issuer = `http://127.0.0.1:${port}`;
const clients = JSON.parse(process.env.OP_CLIENTS ?? '[]');

function signingKey(kid) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
}

function person(login) {
  const [sub, email, verified, name, preferred] = login.split('|');
  const claims = { sub };
  if (email) claims.email = email;
  if (verified) claims.email_verified = verified === 'true';
  if (name) claims.name = name;
  if (preferred) claims.preferred_username = preferred;
  return claims;
}

let generation = 0;

function build() {
  generation += 1;
  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: [signingKey(`key-${generation}`)] },
    cookies: { keys: ['authgraph-tests-only'] },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
    },
    // Put the scopes' claims in the ID token too (the default keeps them for the
    // user-info endpoint only, which the server also reads when they are missing).
    conformIdTokenClaims: false,
    findAccount: (ctx, id) => ({ accountId: id, claims: () => person(id) }),
    async loadExistingGrant(ctx) {
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid email profile');
      await grant.save();
      return grant;
    },
    pkce: { required: () => true },
    ttl: { AccessToken: 600, AuthorizationCode: 60, Grant: 600, IdToken: 600, Interaction: 600, Session: 600 },
    features: { devInteractions: { enabled: true } },
  });
  return provider.callback();
}

let handler = build();

const server = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/__rotate') {
    handler = build();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kid: `key-${generation}` }));
    return;
  }
  handler(req, res);
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer}\n`);
});

// Gone with the process that started it: its end closes our stdin.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
