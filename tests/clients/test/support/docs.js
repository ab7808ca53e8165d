// The documentation as one text: the README (the front door) and every page under
// docs/ (the reference), for the tests that check what it quotes.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { repoRoot } from './server.js';

export function documentation() {
  const pages = readdirSync(join(repoRoot, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => join(repoRoot, 'docs', name));
  return [join(repoRoot, 'README.md'), ...pages].map((path) => readFileSync(path, 'utf8')).join('\n');
}
