// node_modules for one package architecture: the production dependencies
// as package-lock.json pins them (no hand-kept list), installed by npm for
// linux/<cpu>/glibc so that each native dependency's prebuilt binary for
// that CPU comes in, then cut down to what runs.
import { globSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ARCHES, LOCK, PACKAGE_JSON } from './layout.mjs';
import { run } from './run.mjs';

/** The `node` package: the Node 24 runtime for a checkout. The package ships its runtime in /usr/lib/vfmigd/node instead. */
export const RUNTIME_PACKAGE = 'node';

/**
 * What no dependency runs: type declarations, TypeScript sources next to
 * their compiled JavaScript, source maps, documentation (license texts
 * stay), examples, benchmarks, tests, CI and editor files.
 */
const NOT_RUN = [
  '**/*.d.ts', '**/*.d.mts', '**/*.d.cts', '**/*.ts', '**/*.mts', '**/*.cts', '**/*.map',
  '**/*.md', '**/*.markdown', '**/*.html', '**/docs', '**/example', '**/examples', '**/benchmark', '**/benchmarks',
  '**/test', '**/tests', '**/__tests__', '**/.*',
];
const LICENSE_TEXT = /^(licen[cs]e|copying|notice)/i;

/**
 * Installs the production dependencies for `arch` into `dir`/node_modules
 * and returns that directory. `--ignore-scripts`: no dependency may need an
 * install step (native-check.mjs refuses one that does), and the runtime
 * package's would fetch the build machine's Node.
 */
export function installProductionModules(dir, arch) {
  writeProductionManifests(dir);
  run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--os=linux', `--cpu=${ARCHES[arch].npmCpu}`, '--libc=glibc',
    '--no-audit', '--no-fund', '--loglevel=error'], { cwd: dir });
  const modules = join(dir, 'node_modules');
  const installed = installedPackages(modules);
  for (const location of unreachableWithout(installed, RUNTIME_PACKAGE)) rmSync(join(dir, location), { recursive: true });
  pruneNotRun(modules);
  return modules;
}

/**
 * package.json and package-lock.json without the dev dependencies. npm ci
 * checks the whole lock against the platform it installs for, dev entries
 * too, although --omit=dev leaves them out: a dev dependency whose
 * optional binaries do not exist for that CPU (node-unix-socket on arm64)
 * would otherwise stop an install that never needed it.
 */
function writeProductionManifests(dir) {
  const { devDependencies, ...manifest } = PACKAGE_JSON;
  const packages = Object.fromEntries(Object.entries(LOCK.packages)
    .filter(([, entry]) => entry.dev !== true)
    .map(([location, entry]) => [location, location === '' ? withoutDev(entry) : entry]));
  writeFileSync(join(dir, 'package.json'), JSON.stringify(manifest, null, 2));
  writeFileSync(join(dir, 'package-lock.json'), JSON.stringify({ ...LOCK, packages }, null, 2));
}

function withoutDev({ devDependencies, ...entry }) {
  return entry;
}

/** npm's record of what it installed (node_modules/.package-lock.json): location → entry. */
export function installedPackages(modules) {
  return JSON.parse(readFileSync(join(modules, '.package-lock.json'), 'utf8')).packages;
}

/**
 * The installed packages that nothing but `dropped` needs: walks the
 * dependency graph from the root's production dependencies without it,
 * resolving each name as Node does (nearest node_modules first).
 */
function unreachableWithout(installed, dropped) {
  const reached = new Set();
  const visit = (from, name) => {
    const location = resolveLocation(installed, from, name);
    if (location === undefined || reached.has(location)) return;
    reached.add(location);
    const entry = installed[location];
    for (const dep of Object.keys({ ...entry.dependencies, ...entry.optionalDependencies, ...entry.peerDependencies })) visit(location, dep);
  };
  for (const name of Object.keys(PACKAGE_JSON.dependencies ?? {})) if (name !== dropped) visit('', name);
  return Object.keys(installed).filter((location) => !reached.has(location));
}

function resolveLocation(installed, from, name) {
  for (let dir = from; ; dir = parentPackage(dir)) {
    const location = dir === '' ? `node_modules/${name}` : `${dir}/node_modules/${name}`;
    if (location in installed) return location;
    if (dir === '') return undefined;
  }
}

/** node_modules/a/node_modules/@s/b → node_modules/a; node_modules/a → '' (the root). */
function parentPackage(location) {
  const at = location.lastIndexOf('/node_modules/');
  return at < 0 ? '' : location.slice(0, at);
}

function pruneNotRun(modules) {
  for (const path of globSync(NOT_RUN, { cwd: modules })) {
    if (LICENSE_TEXT.test(basename(path))) continue;
    rmSync(join(modules, path), { recursive: true, force: true });
  }
  // A dependency's own commands (its package.json "bin"): npm would link
  // them into .bin, which is not shipped, and nothing runs them.
  for (const dir of packageDirs(modules)) {
    const { bin } = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    for (const script of typeof bin === 'string' ? [bin] : Object.values(bin ?? {})) rmSync(join(dir, script), { force: true });
  }
  // A package left with nothing Node loads held only types (@types/*): it goes too.
  for (const dir of packageDirs(modules)) {
    if (globSync(['**/*.js', '**/*.mjs', '**/*.cjs', '**/*.node', '**/*.json'], { cwd: dir }).every((f) => f === 'package.json')) {
      rmSync(dir, { recursive: true });
      const scope = dirname(dir);
      if (basename(scope).startsWith('@') && readdirSync(scope).length === 0) rmSync(scope, { recursive: true });
    }
  }
  removeEmptyDirs(modules);
}

/** What pruning emptied (a folder of type declarations), deepest first. */
function removeEmptyDirs(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) removeEmptyDirs(join(dir, entry.name));
  if (readdirSync(dir).length === 0) rmSync(dir, { recursive: true });
}

/** Every package directory under `modules`, nested ones too. */
function packageDirs(modules) {
  return globSync(['**/package.json'], { cwd: modules })
    .map((file) => join(modules, dirname(file)))
    // A package.json deeper in a package ({"type": "module"} for a folder) is not a package.
    .filter((dir) => /^(node_modules|@.+)$/.test(basename(dirname(dir))));
}
