// What both launchers (vfmigd.mjs, vfmigctl.mjs) need to know: whether the
// Node running them is new enough, and where the Node 24 binary that the
// `node` package brings is when it is not. Plain JavaScript for any Node
// that can run ES modules.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export const MIN_MAJOR = 24;

/** This Node can run the program itself. */
export function isNewEnough() {
  return Number(process.versions.node.split('.')[0]) >= MIN_MAJOR;
}

/** The `node` package's binary; says why on stderr and exits with `exitCode` when there is none. */
export function packagedNode(program, exitCode) {
  try {
    return join(dirname(createRequire(import.meta.url).resolve('node/package.json')), 'bin', 'node');
  } catch {
    process.stderr.write(`${program} needs Node.js ${MIN_MAJOR} or later (this is ${process.version}), and the "node" package is not installed\n`);
    process.exit(exitCode);
  }
}
