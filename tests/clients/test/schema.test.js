// The schema-first workflow: schema.graphql is the published contract. Every
// operation under tests/operations/ (and every GraphQL example in the README and docs/) is
// valid against it; GraphQL Code Generator's TypeScript types from it compile with
// code that uses them; and graphql-inspector finds no breaking change against the
// contract.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

import { generate } from '@graphql-codegen/cli';
import { buildSchema, parse, validate } from 'graphql';
import ts from 'typescript';

import { documentation } from './support/docs.js';
import { gql, operationFiles, operationsDir } from './support/operations.js';
import { repoRoot } from './support/server.js';

const schemaPath = join(repoRoot, 'schema.graphql');
const contractPath = join(repoRoot, 'tests', 'contract.graphql');
const schema = buildSchema(readFileSync(schemaPath, 'utf8'));
const run = promisify(execFile);
const inspector = join(import.meta.dirname, '..', 'node_modules', '.bin', 'graphql-inspector');

test('every operation in tests/operations is valid against schema.graphql', () => {
  const documents = operationFiles().map((file) => [file, parse(readFileSync(file, 'utf8'))]);
  assert.ok(documents.length >= 10);
  const operations = documents.flatMap(([, doc]) =>
    doc.definitions.filter((d) => d.kind === 'OperationDefinition').map((d) => d.name.value),
  );
  // Each operation as a client sends it: itself and the fragments it uses.
  for (const name of operations) {
    assert.deepEqual(validate(schema, gql(name)).map(String), [], name);
  }
  // And every name in the directory is unique, as code generators need.
  const whole = { kind: 'Document', definitions: documents.flatMap(([, doc]) => doc.definitions) };
  assert.deepEqual(validate(schema, whole).map(String), []);
  // An invalid operation is caught, so the check above can fail.
  assert.notDeepEqual(validate(schema, parse('query { me { password } }')), []);
});

test("the documentation's GraphQL examples are valid against schema.graphql", () => {
  const blocks = [...documentation().matchAll(/```graphql\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.ok(blocks.length > 1, 'the README and docs/ have GraphQL examples');
  for (const block of blocks) {
    assert.deepEqual(validate(schema, parse(block)).map(String), [], block);
  }
});

test('GraphQL Code Generator types compile with code that uses them', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'authgraph-codegen-'));
  try {
    // The schema's types (the `typescript` plugin) and the operations' result and
    // variable types (`typescript-operations`, which since v6 carries the enums and
    // inputs it needs, so the two go to separate files).
    const outputs = await generate(
      {
        schema: schemaPath,
        documents: join(operationsDir, '*.graphql'),
        silent: true,
        config: { scalars: { DateTime: 'string' }, enumsAsTypes: true },
        generates: {
          [join(dir, 'schema.ts')]: { plugins: ['typescript'] },
          [join(dir, 'generated.ts')]: { plugins: ['typescript-operations'] },
        },
      },
      false,
    );
    for (const output of outputs) writeFileSync(output.filename, output.content);
    assert.match(readFileSync(join(dir, 'generated.ts'), 'utf8'), /export type SignupMutation = /);
    assert.match(readFileSync(join(dir, 'schema.ts'), 'utf8'), /export type User = /);
    copyFileSync(join(import.meta.dirname, '..', 'typed', 'usage.ts'), join(dir, 'usage.ts'));

    const program = ts.createProgram([join(dir, 'usage.ts')], {
      strict: true,
      noEmit: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      noUnusedLocals: true,
      skipLibCheck: true,
    });
    const diagnostics = ts.getPreEmitDiagnostics(program).map((d) => {
      const where = d.file ? `${d.file.fileName}:${d.file.getLineAndCharacterOfPosition(d.start).line + 1}` : '';
      return `${where} ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
    });
    assert.deepEqual(diagnostics, []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('graphql-inspector finds no breaking change from the contract, and would find one', async () => {
  const { stdout } = await run(inspector, ['diff', contractPath, schemaPath]);
  assert.match(stdout, /No breaking changes detected/);

  // The same check against a schema where `me` may be null must fail.
  const dir = mkdtempSync(join(tmpdir(), 'authgraph-inspector-'));
  try {
    const broken = join(dir, 'broken.graphql');
    const sdl = readFileSync(schemaPath, 'utf8');
    writeFileSync(broken, sdl.replace(/^(\s*)me: User!$/m, '$1me: User'));
    assert.notEqual(readFileSync(broken, 'utf8'), sdl);
    await assert.rejects(run(inspector, ['diff', contractPath, broken]), (err) => {
      assert.equal(err.code, 1);
      assert.match(err.stdout + err.stderr, /Query\.me.*changed type/i);
      return true;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
