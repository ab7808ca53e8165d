// The real authgraph binary as a child process, on its own embedded PostgreSQL in a
// throwaway DATA_DIR, listening on a free port. Built by `cargo build` (the test
// command does that first); AUTHGRAPH_BIN points elsewhere.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');

/** Where test artefacts (screenshots, audit reports) go: target/client-tests. */
export const artefactDir = process.env.AUTHGRAPH_ARTEFACTS ?? join(repoRoot, 'target', 'client-tests');

const binary = process.env.AUTHGRAPH_BIN ?? join(repoRoot, 'target', 'debug', 'authgraph');

/**
 * Starts a server with `env` on top of a clean environment and resolves once it
 * listens. Sign-up limits are raised, since every test signs up from 127.0.0.1.
 */
export async function startServer(env = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), 'authgraph-clients-'));
  const child = spawn(binary, [], {
    env: {
      PATH: process.env.PATH,
      DATA_DIR: dataDir,
      LISTEN_ADDR: '127.0.0.1:0',
      RUST_LOG: 'info',
      SIGNUPS_PER_IP: '100000',
      ...(process.env.PG_OS_USER ? { PG_OS_USER: process.env.PG_OS_USER } : {}),
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  // A test process that ends without `stop()` (a crash, a timeout) takes its server
  // along; the server's watchdog then stops its PostgreSQL.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  // The last lines of the log, shown if the server dies or never listens.
  const log = [];
  const lines = createInterface({ input: child.stderr });
  const listening = new Promise((resolveUrl, reject) => {
    lines.on('line', (line) => {
      log.push(line);
      if (log.length > 200) log.shift();
      const match = line.match(/listening on (http:\/\/[^\s"]+)/); // plain or JSON logs
      if (match) resolveUrl(match[1].replace(/\/graphql$/, ''));
    });
    child.once('exit', (code, signal) =>
      reject(new Error(`authgraph exited (${code ?? signal}) before listening:\n${log.join('\n')}`)),
    );
    child.once('error', reject);
  });
  const timeout = setTimeout(() => child.kill('SIGKILL'), 60_000);
  let origin;
  try {
    origin = await listening;
  } finally {
    clearTimeout(timeout);
  }
  return {
    /** `http://127.0.0.1:port` */
    origin,
    /** Its embedded PostgreSQL, for a second instance's DATABASE_URL. */
    databaseUrl: () =>
      `postgresql:///authgraph?host=${encodeURIComponent(realpathSync(join(dataDir, 'run')))}&port=5432&user=authgraph`,
    /** `http://127.0.0.1:port/graphql` */
    url: `${origin}/graphql`,
    log,
    async stop() {
      process.removeListener('exit', killOnExit);
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A fresh username per call, so tests never collide. */
let counter = 0;
export function uniqueName(prefix = 'user') {
  counter += 1;
  return `${prefix}_${process.pid}_${counter}`;
}

/** The operation counter that `/metrics` keeps for a root field, by outcome. */
export async function operationCount(origin, operation, outcome = 'OK') {
  const text = await (await fetch(`${origin}/metrics`)).text();
  const line = text
    .split('\n')
    .find(
      (l) =>
        l.startsWith('authgraph_graphql_requests_total{') &&
        l.includes(`operation="${operation}"`) &&
        l.includes(`outcome="${outcome}"`),
    );
  return line ? Number(line.split(' ').pop()) : 0;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
