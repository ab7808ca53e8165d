// The README's frontend snippets are the files this suite runs, verbatim.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { repoRoot } from './support/server.js';

const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');

for (const file of ['apollo.js', 'urql.js', 'mfa.js', 'live.js']) {
  test(`README quotes src/${file} as it is tested`, () => {
    const source = readFileSync(join(import.meta.dirname, '..', 'src', file), 'utf8');
    assert.ok(
      readme.includes('```js\n' + source + '```'),
      `README.md must contain tests/clients/src/${file} verbatim in a js block: copy it over`,
    );
  });
}
