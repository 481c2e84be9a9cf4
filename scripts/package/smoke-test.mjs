// Runs a staged package's own Node on its own files before the .deb is
// built: both commands answer --version, every production dependency
// loads, and every native addon (.node) opens. Pruning node_modules or a
// prebuilt for the wrong platform shows up here, not on the SoC. arm64 runs
// under qemu-user (Debian's qemu-user, with the arm64 C libraries of the
// cross toolchain) where it is installed; otherwise it is said and skipped.
import { existsSync, globSync } from 'node:fs';
import { join } from 'node:path';
import { APP_DIR, NODE_BIN, PACKAGE_JSON } from './layout.mjs';
import { RUNTIME_PACKAGE } from './production-modules.mjs';
import { run } from './run.mjs';

/** How to run a binary of each architecture on this (amd64) machine. */
const RUNNERS = {
  amd64: () => [],
  arm64: () => (existsSync('/usr/aarch64-linux-gnu/lib') ? ['qemu-aarch64', '-L', '/usr/aarch64-linux-gnu'] : undefined),
};

/** Returns what was checked; throws with the failing command's output. */
export function smokeTest(stage, arch) {
  const prefix = RUNNERS[arch]();
  if (prefix === undefined || (prefix.length > 0 && !onPath(prefix[0]))) return `${arch}: not run (no qemu-aarch64 and arm64 libc here: apt-get install qemu-user libc6-arm64-cross)`;
  const [command, ...args] = [...prefix, join(stage, NODE_BIN)];
  const app = join(stage, APP_DIR);
  for (const [name, script] of Object.entries(PACKAGE_JSON.bin)) {
    const out = run(command, [...args, join(app, script), '--version'], { quiet: true });
    if (!out.includes(PACKAGE_JSON.version)) throw new Error(`${arch}: ${name} --version said ${JSON.stringify(out)}`);
  }
  const dependencies = Object.keys(PACKAGE_JSON.dependencies).filter((d) => d !== RUNTIME_PACKAGE);
  const addons = globSync('**/*.node', { cwd: app }).map((f) => join(app, f));
  // require() takes the ES-module-only dependencies too on Node 24.
  const script = `const { createRequire } = require('node:module');
const load = createRequire(${JSON.stringify(join(app, 'package.json'))});
for (const name of ${JSON.stringify(dependencies)}) load(name);
for (const addon of ${JSON.stringify(addons)}) process.dlopen({ exports: {} }, addon);`;
  run(command, [...args, '-e', script], { quiet: true });
  const how = prefix.length === 0 ? 'natively' : 'under qemu-aarch64';
  return `${arch}: ran ${how}: ${Object.keys(PACKAGE_JSON.bin).join(' and ')} --version, ${dependencies.length} dependencies loaded, ${addons.length} native addons opened (${addons.map((a) => a.slice(app.length + 1)).join(', ')})`;
}

function onPath(tool) {
  try {
    run('sh', ['-c', `command -v ${tool}`], { quiet: true });
    return true;
  } catch {
    return false;
  }
}
