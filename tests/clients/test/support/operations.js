// The documents under tests/operations/, the same files the schema test validates
// and codegen types, so what the clients run is what the contract is checked with.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kind, parse, visit } from 'graphql';

import { repoRoot } from './server.js';

export const operationsDir = join(repoRoot, 'tests', 'operations');

export function operationFiles() {
  return readdirSync(operationsDir)
    .filter((f) => f.endsWith('.graphql'))
    .sort()
    .map((f) => join(operationsDir, f));
}

const definitions = operationFiles().flatMap((file) => parse(readFileSync(file, 'utf8')).definitions);
const fragments = new Map(
  definitions.filter((d) => d.kind === Kind.FRAGMENT_DEFINITION).map((d) => [d.name.value, d]),
);

/**
 * The named operation, or fragment, with the fragments it uses, transitively, as one
 * document: a server refuses a document with unused fragments.
 */
export function gql(name) {
  const root = definitions.find(
    (d) => (d.kind === Kind.OPERATION_DEFINITION || d.kind === Kind.FRAGMENT_DEFINITION) && d.name?.value === name,
  );
  if (!root) throw new Error(`no operation or fragment ${name} in ${operationsDir}`);
  const used = new Map();
  const collect = (node) =>
    visit(node, {
      FragmentSpread(spread) {
        const name = spread.name.value;
        if (!used.has(name)) {
          used.set(name, fragments.get(name));
          collect(fragments.get(name));
        }
      },
    });
  collect(root);
  return { kind: Kind.DOCUMENT, definitions: [root, ...used.values()] };
}
