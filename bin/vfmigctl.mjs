#!/usr/bin/env node
// Runs vfmigctl on Node.js 24 or later, as bin/vfmigd.mjs runs the agent:
// written for any Node that can run ES modules, so that it works from the
// PATH even when the `node` first there is older; then it re-runs the CLI
// on the Node 24 binary that the `node` package brings, passes signals on
// (Ctrl-C cancels a migration: the CLI must hear it) and exits as it does.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isNewEnough, packagedNode } from './node24.mjs';

const entry = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'agent', 'cli', 'vfmigctl.js');

if (isNewEnough()) {
  await import(pathToFileURL(entry).href);
} else {
  const node = packagedNode('vfmigctl', 70);
  const child = spawn(node, [entry, ...process.argv.slice(2)], { stdio: 'inherit' });
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => process.exit(code ?? (signal === null ? 70 : 128)));
}
