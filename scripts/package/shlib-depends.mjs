// Depends: on the shared libraries a package's ELF files need, computed by
// dpkg-shlibdeps from this machine's (amd64) library packages. It cannot do
// that for arm64 without arm64 library packages installed, so an arm64
// package takes its amd64 twin's Depends once each of its files is shown
// to need no library the amd64 files do not and no newer symbol version
// (glibc's, libstdc++'s, libgcc's) than they do: Debian's library
// packages have the same names and versions on both architectures.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { run } from './run.mjs';

/**
 * A staged package (`pkg` in `root`/debian/`pkg`, its ELF files `elves`) →
 * the Depends field's library part. Quiet (its output comes with a
 * failure): what it warns of is in upstream's binaries (libraries linked
 * but unused), and dpkg 1.21 says that a prebuilt addon is "not installed
 * in its package's directory" when it is.
 */
export function shlibsDepends({ root, pkg, stage, elves }) {
  // dpkg-shlibdeps finds a file's package by the DEBIAN folder at its root.
  mkdirSync(join(stage, 'DEBIAN'), { recursive: true });
  // dpkg-shlibdeps reads the source package's control file; this one says only that the binaries are arch-specific.
  writeFileSync(join(root, 'debian', 'control'), `Source: vfmigd\n\nPackage: ${pkg}\nArchitecture: any\n`);
  const out = run('dpkg-shlibdeps', ['-O', '--warnings=0', ...elves.flatMap((f) => ['-e', relative(root, f)])], { cwd: root, quiet: true });
  const match = /^shlibs:Depends=(.*)$/m.exec(out);
  if (match === null) throw new Error(`dpkg-shlibdeps said no shlibs:Depends: ${out}`);
  return match[1];
}

/**
 * Throws unless the ELF files `files` need no library that the ELF files
 * `reference` do not, and no newer version of any symbol namespace (GLIBC,
 * GLIBCXX, CXXABI, GCC) than the newest they need. Newest over all the
 * libraries, not per library: each architecture's glibc starts at its own
 * first version (arm64's at 2.17, where amd64's libdl needs only 2.2.5).
 */
export function assertNeedsNoMoreThan(files, reference, what) {
  const have = libraryNeeds(reference);
  const want = libraryNeeds(files);
  const excess = [...want.libraries].filter((library) => !have.libraries.has(library)).map((library) => `${library} (not needed on amd64)`);
  for (const [namespace, version] of want.newest) {
    const limit = have.newest.get(namespace);
    if (limit === undefined || compareVersions(version, limit) > 0) excess.push(`${namespace}_${version} (amd64: ${limit ?? 'none'})`);
  }
  if (excess.length > 0) throw new Error(`${what} needs more than its amd64 twin, whose Depends it would take: ${excess.join(', ')}`);
}

/** The sonames `files` need, and the newest version each symbol namespace is needed at. */
function libraryNeeds(files) {
  const libraries = new Set();
  const newest = new Map();
  for (const file of files) {
    const dynamic = run('readelf', ['-dW', file], { quiet: true });
    for (const [, soname] of dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[(.+)\]/g)) libraries.add(loaderName(soname));
    // A need's line is its offset and its name; a definition's (.gnu.version_d) has Rev: first.
    for (const [, namespace, version] of run('readelf', ['-VW', file], { quiet: true }).matchAll(/^\s*0x[0-9a-f]+:\s+Name: ([A-Z]+)_([0-9.]+)/gm)) {
      if (!newest.has(namespace) || compareVersions(version, newest.get(namespace)) > 0) newest.set(namespace, version);
    }
  }
  return { libraries, newest };
}

/** The dynamic loader has a name per architecture (ld-linux-x86-64.so.2, ld-linux-aarch64.so.1); both are libc6's. */
function loaderName(soname) {
  return /^ld-linux/.test(soname) ? 'the dynamic loader' : soname;
}

function compareVersions(a, b) {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i += 1) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}
