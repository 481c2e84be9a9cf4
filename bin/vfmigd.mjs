#!/usr/bin/env node
// Starts the agent on Node.js 24 or later. Written for any Node that can
// run ES modules, so that `npx vfmigd` or node_modules/.bin/vfmigd work
// even when the `node` first on PATH is older: then it re-runs the agent
// with the Node 24 binary that the `node` package brings.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const MIN_MAJOR = 24;
const entry = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'agent', 'main.js');

if (Number(process.versions.node.split('.')[0]) >= MIN_MAJOR) {
  await import(pathToFileURL(entry).href);
} else {
  let node;
  try {
    node = join(dirname(createRequire(import.meta.url).resolve('node/package.json')), 'bin', 'node');
  } catch {
    process.stderr.write(`vfmigd needs Node.js ${MIN_MAJOR} or later (this is ${process.version}), and the "node" package is not installed\n`);
    process.exit(1);
  }
  const child = spawn(node, [entry, ...process.argv.slice(2)], { stdio: 'inherit' });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => {
    if (signal) process.kill(process.pid, signal);
    else process.exit(code ?? 1);
  });
}
