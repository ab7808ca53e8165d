// The documentation's frontend snippets (docs/frontends.md, docs/second-factor.md,
// docs/live-events.md, docs/passkeys.md, docs/social.md) are the files this suite runs, verbatim.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { documentation } from './support/docs.js';

const docs = documentation();

for (const file of ['apollo.js', 'urql.js', 'mfa.js', 'live.js', 'passkeys.js', 'social.js']) {
  test(`the documentation quotes src/${file} as it is tested`, () => {
    const source = readFileSync(join(import.meta.dirname, '..', 'src', file), 'utf8');
    assert.ok(
      docs.includes('```js\n' + source + '```'),
      `README.md or docs/ must contain tests/clients/src/${file} verbatim in a js block: copy it over`,
    );
  });
}
