// The agent's own files: exactly what package.json's "files" publishes
// (as `npm pack` lists them, so there is no second list to keep), less the
// source maps, plus the notify addon built for the package's architecture.
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { APP_DIR, ROOT } from './layout.mjs';
import { run } from './run.mjs';

/**
 * Source maps point at .ts sources that are not shipped, and the units run
 * Node without --enable-source-maps. The README is installed as the
 * package's documentation instead (see docs.mjs).
 */
const LEFT_OUT = [/\.map$/, /^README\.md$/];

/** The checkout's files that `npm pack` would publish, relative to the checkout. */
export function publishedFiles() {
  const [pack] = JSON.parse(run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, quiet: true }));
  const files = pack.files.map((f) => f.path).filter((path) => !LEFT_OUT.some((pattern) => pattern.test(path)));
  if (!files.includes('dist/agent/main.js')) throw new Error('dist/agent/main.js is not built: npm run build first (npm run package does)');
  return files.sort();
}

/** Copies the agent's files into `stage` under /usr/lib/vfmigd, with the notify addon for `arch`. */
export function stageAppFiles(stage, arch) {
  const app = join(stage, APP_DIR);
  for (const file of publishedFiles()) {
    mkdirSync(dirname(join(app, file)), { recursive: true });
    copyFileSync(join(ROOT, file), join(app, file));
  }
  // Where agent/service/sd-notify.ts looks for it; arm64 is cross-compiled.
  run(process.execPath, [join(ROOT, 'scripts', 'build-native.mjs'), '--arch', arch, '--out', join(app, 'dist', 'native', arch)]);
}
