// Turns a staged tree into a .deb: DEBIAN/control from its template in
// deploy/debian with the computed fields, the maintainer scripts, the
// conffiles and md5sums, modes as Debian wants them, then dpkg-deb with
// everything owned by root (--root-owner-group: no fakeroot needed).
import { chmodSync, copyFileSync, existsSync, globSync, lstatSync, mkdirSync, openSync, readFileSync, readSync, closeSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { sourceDateEpoch } from './docs.mjs';
import { DEBIAN } from './layout.mjs';
import { run } from './run.mjs';

const MAINTAINER_SCRIPTS = ['preinst', 'postinst', 'prerm', 'postrm'];

/**
 * Builds `pkg` from `stage` into `outDir` and returns the .deb's path.
 * `fields` fills the control template's ${...}; `scriptValues` the
 * maintainer scripts' @NAMES@; `executables` are the paths (relative to
 * `stage`) that get mode 0755, besides scripts that already had it.
 */
export function buildDeb({ pkg, stage, outDir, version, arch, fields, scriptValues = {}, executables = [] }) {
  installLintianOverrides(stage, pkg);
  normaliseModes(stage, new Set(executables));
  const control = join(stage, 'DEBIAN');
  mkdirSync(control, { recursive: true });
  const conffiles = globSync('etc/**/*', { cwd: stage }).filter((f) => lstatSync(join(stage, f)).isFile()).sort();
  if (conffiles.length > 0) writeFileSync(join(control, 'conffiles'), conffiles.map((f) => `/${f}\n`).join(''));
  writeFileSync(join(control, 'md5sums'), md5sums(stage, new Set(conffiles)));
  const values = { 'binary:Version': version, arch, 'installed-size': String(installedSizeKiB(stage)), ...fields };
  writeFileSync(join(control, 'control'), fill(readFileSync(join(DEBIAN, `${pkg}.control`), 'utf8'), /\$\{([^}]+)\}/g, values, `${pkg}.control`));
  for (const script of MAINTAINER_SCRIPTS) {
    const source = join(DEBIAN, `${pkg}.${script}`);
    if (!existsSync(source)) continue;
    writeFileSync(join(control, script), fill(readFileSync(source, 'utf8'), /@([A-Z_]+)@/g, scriptValues, `${pkg}.${script}`));
    chmodSync(join(control, script), 0o755);
  }
  const deb = join(outDir, `${pkg}_${version}_${arch}.deb`);
  // xz, dpkg's default, written out: the SoC's download and its flash are
  // what it saves. SOURCE_DATE_EPOCH: every file dated the last commit.
  run('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', stage, deb], { quiet: true, env: { SOURCE_DATE_EPOCH: String(sourceDateEpoch()) } });
  return deb;
}

/** Replaces each `pattern` match by its value; a name with no value stops the build. */
function fill(template, pattern, values, what) {
  return template.replace(pattern, (_, name) => {
    if (values[name] === undefined) throw new Error(`deploy/debian/${what}: nothing to put for ${name}`);
    return values[name];
  });
}

/** deploy/debian/PKG.lintian-overrides, where lintian looks for a binary package's overrides. */
function installLintianOverrides(stage, pkg) {
  const source = join(DEBIAN, `${pkg}.lintian-overrides`);
  if (!existsSync(source)) return;
  mkdirSync(join(stage, 'usr', 'share', 'lintian', 'overrides'), { recursive: true });
  copyFileSync(source, join(stage, 'usr', 'share', 'lintian', 'overrides', pkg));
}

/**
 * Directories 0755; files 0644, except the named executables and scripts
 * (#!) that were executable already. Shared objects (.so, .node) are 0644,
 * as Debian's policy wants of libraries.
 */
function normaliseModes(stage, executables) {
  for (const path of globSync('**/*', { cwd: stage })) {
    const full = join(stage, path);
    const stat = lstatSync(full);
    if (stat.isSymbolicLink()) continue;
    if (stat.isDirectory()) chmodSync(full, 0o755);
    else chmodSync(full, executables.has(path) || ((stat.mode & 0o111) !== 0 && startsWith(full, '#!')) ? 0o755 : 0o644);
  }
  chmodSync(stage, 0o755);
}

function startsWith(path, prefix) {
  const buffer = Buffer.alloc(prefix.length);
  const fd = openSync(path, 'r');
  try {
    return readSync(fd, buffer, 0, buffer.length, 0) === buffer.length && buffer.toString() === prefix;
  } finally {
    closeSync(fd);
  }
}

/** DEBIAN/md5sums as dh_md5sums writes it: every regular file but the conffiles (dpkg keeps theirs itself). */
function md5sums(stage, conffiles) {
  return globSync('**/*', { cwd: stage, exclude: (p) => p === 'DEBIAN' })
    .filter((f) => !f.startsWith('DEBIAN/') && !conffiles.has(f) && lstatSync(join(stage, f)).isFile())
    .sort()
    .map((f) => `${createHash('md5').update(readFileSync(join(stage, f))).digest('hex')}  ${f}\n`)
    .join('');
}

/** Installed-Size as dpkg-gencontrol counts it: KiB per file rounded up, 1 per directory and symlink. */
function installedSizeKiB(stage) {
  let kib = 0;
  for (const path of globSync('**/*', { cwd: stage })) {
    if (path === 'DEBIAN' || path.startsWith('DEBIAN/')) continue;
    const stat = lstatSync(join(stage, path));
    kib += stat.isFile() ? Math.ceil(stat.size / 1024) : 1;
  }
  return kib;
}
