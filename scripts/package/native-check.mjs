// Native code in a staged tree must be for the package's architecture and
// prebuilt: the package build runs no dependency's install step, so a
// dependency that compiles itself at install time (node-gyp) or fetches a
// binary then would be shipped broken. Both are refused here, by name.
import { closeSync, globSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ARCHES } from './layout.mjs';

const INSTALL_STEPS = ['preinstall', 'install', 'postinstall'];
const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);

/** Every ELF file under `dir` (relative paths), each checked to be for `arch`. */
export function elfFilesFor(dir, arch) {
  const expected = ARCHES[arch].elfMachine;
  const elves = [];
  const wrong = [];
  for (const file of globSync('**/*', { cwd: dir })) {
    const header = elfHeader(join(dir, file));
    if (header === undefined) continue;
    elves.push(file);
    if (header.machine !== expected) wrong.push(`${file} (e_machine ${header.machine})`);
  }
  if (wrong.length > 0) throw new Error(`not ${arch} (e_machine ${expected}): ${wrong.join(', ')}`);
  return elves.sort();
}

/** Refuses any package under `modules` that would need an install step to work. */
export function checkPrebuilt(modules) {
  const refused = [];
  for (const manifest of globSync('**/package.json', { cwd: modules })) {
    const dir = dirname(manifest);
    if (!/^(node_modules|@.+)$/.test(basename(dirname(join(modules, dir))))) continue;
    const { name, scripts = {} } = JSON.parse(readFileSync(join(modules, manifest), 'utf8'));
    const steps = INSTALL_STEPS.filter((step) => scripts[step] !== undefined);
    if (steps.length > 0) refused.push(`${name} (${steps.join(', ')})`);
    if (globSync('binding.gyp', { cwd: join(modules, dir) }).length > 0) refused.push(`${name} (binding.gyp: built from source at install)`);
  }
  if (refused.length > 0) throw new Error(`dependencies that need an install step, which the package build does not run: ${refused.join('; ')}`);
}

function elfHeader(path) {
  if (!statSync(path).isFile()) return undefined;
  const header = Buffer.alloc(20);
  const fd = openSync(path, 'r');
  try {
    if (readSync(fd, header, 0, 20, 0) < 20 || !header.subarray(0, 4).equals(ELF_MAGIC)) return undefined;
  } finally {
    closeSync(fd);
  }
  // EI_DATA 1: little-endian, as both package architectures are.
  return { machine: header.readUInt16LE(18) };
}
