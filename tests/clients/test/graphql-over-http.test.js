// graphql-http's server audit: every MUST and SHOULD of the GraphQL-over-HTTP
// specification that the package checks. The report is saved as an artefact.

import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { auditServer } from 'graphql-http';

import { artefactDir, startServer } from './support/server.js';

for (const [mode, env] of [
  ['development', {}],
  // The audit's checks of `variables` query `__type`, so introspection is switched
  // back on; everything else is production's HTTP behaviour (no GraphiQL, JSON logs).
  ['production', {
    APP_ENV: 'production',
    JWT_ACCESS_SECRET: 'x'.repeat(64),
    REFRESH_TOKEN_KEY: 'r'.repeat(64),
    MFA_ENCRYPTION_KEY: 'm'.repeat(64),
    AUDIT_CHAIN_KEY: 'a'.repeat(64),
    GRAPHQL_INTROSPECTION: 'true',
    // Production needs SMTP_URL while email is on; this audit sends no mail.
    EMAIL_ENABLED: 'false',
    // Production needs the domain passkeys are bound to.
    WEBAUTHN_RP_ID: 'example.com',
    WEBAUTHN_ORIGINS: 'https://app.example.com',
  }],
]) {
  test(`graphql-http auditServer, ${mode}: no failures, no warnings`, async (t) => {
    const server = await startServer(env);
    try {
      const results = await auditServer({ url: server.url });
      const counts = { ok: 0, notice: 0, warn: 0, error: 0 };
      const report = [];
      for (const result of results) {
        counts[result.status] += 1;
        report.push({ id: result.id, name: result.name, status: result.status, reason: result.reason });
      }
      mkdirSync(artefactDir, { recursive: true });
      writeFileSync(join(artefactDir, `graphql-http-audit-${mode}.json`), JSON.stringify({ counts, report }, null, 2));
      t.diagnostic(`audit ${mode}: ${JSON.stringify(counts)}`);
      const failing = report.filter((r) => r.status !== 'ok');
      assert.deepEqual(failing, [], 'every audit passes');
      assert.ok(counts.ok >= 50, `the audit ran (${counts.ok} checks)`);
    } finally {
      await server.stop();
    }
  });
}
