#!/usr/bin/env node
// Starts the agent on Node.js 24 or later. Written for any Node that can
// run ES modules, so that `npx vfmigd` or node_modules/.bin/vfmigd work
// even when the `node` first on PATH is older: then it re-runs the agent
// with the Node 24 binary that the `node` package brings.
//
// The agent must not outlive this launcher: the child gets one end of a
// pipe as fd 3 (named in VFMIGD_PARENT_FD) that the launcher never writes;
// when the launcher ends, however it ends (SIGKILL too), the child reads
// EOF there and stops as on SIGTERM (agent/parent-watch.ts).
//
// VFMIGD_FORCE_CHILD=1 takes the child path even on Node 24 (for tests of
// this launcher, and to check that path on a machine with a new Node).
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isNewEnough, packagedNode } from './node24.mjs';

const PARENT_FD = 3;
const entry = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'agent', 'main.js');
const forceChild = process.env.VFMIGD_FORCE_CHILD === '1';

if (isNewEnough() && !forceChild) {
  await import(pathToFileURL(entry).href);
} else {
  const node = packagedNode('vfmigd', 1);
  const env = { ...process.env, VFMIGD_PARENT_FD: String(PARENT_FD) };
  delete env.VFMIGD_FORCE_CHILD;
  const child = spawn(node, [entry, ...process.argv.slice(2)], { stdio: ['inherit', 'inherit', 'inherit', 'pipe'], env });
  // The child closing its end when it exits is no error of ours.
  child.stdio[PARENT_FD]?.on('error', () => undefined);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => {
    if (signal) process.kill(process.pid, signal);
    else process.exit(code ?? 1);
  });
}
