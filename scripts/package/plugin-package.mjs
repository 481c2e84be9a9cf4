// vfmigd-qemu-plugin_VERSION_amd64.deb, for the hosts: the QEMU plugin
// (built by vmm-plugin/Makefile with Debian's hardening flags) in
// /usr/lib/vfmigd, and its ABI header in /usr/include/vfmigd. amd64 only:
// the hosts are x86-64, and this machine has no arm64 json-c or OpenSSL to
// link an arm64 build against.
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { stageCopyright } from './copyright.mjs';
import { buildDeb } from './deb-package.mjs';
import { stageChangelog } from './docs.mjs';
import { PLUGIN_HEADER_DIR, PLUGIN_SO, ROOT } from './layout.mjs';
import { run } from './run.mjs';
import { stripElf } from './strip.mjs';

const PKG = 'vfmigd-qemu-plugin';
export const PLUGIN_ARCH = 'amd64';
const HEADER = 'vfio-migration-plugin.h';

export function stagePluginPackage(work) {
  const stage = join(work, PLUGIN_ARCH, 'debian', PKG);
  const build = join(work, PLUGIN_ARCH, 'plugin-build');
  // Debian's flags (FORTIFY_SOURCE, stack protector, full RELRO, bind now)
  // on top of the Makefile's own, in a build directory of its own so the
  // test builds in vmm-plugin/build are left as they are.
  const env = { DEB_BUILD_MAINT_OPTIONS: 'hardening=+all' };
  const flag = (name) => run('dpkg-buildflags', ['--get', name], { cwd: ROOT, env, quiet: true }).trim();
  run('make', ['-s', '-C', join(ROOT, 'vmm-plugin'), `BUILD=${build}`, `EXTRA_CFLAGS=${flag('CFLAGS')} ${flag('CPPFLAGS')}`, `LDFLAGS=${flag('LDFLAGS')}`, join(build, 'libvfmigd-plugin.so')], { cwd: ROOT });

  mkdirSync(join(stage, PLUGIN_HEADER_DIR), { recursive: true });
  mkdirSync(join(stage, PLUGIN_SO, '..'), { recursive: true });
  copyFileSync(join(build, 'libvfmigd-plugin.so'), join(stage, PLUGIN_SO));
  stripElf(join(stage, PLUGIN_SO), PLUGIN_ARCH, 'shared');
  copyFileSync(join(ROOT, 'vmm-plugin', 'include', HEADER), join(stage, PLUGIN_HEADER_DIR, HEADER));
  stageChangelog(stage, PKG);
  stageCopyright(stage, PKG);
  return { pkg: PKG, stage, root: join(work, PLUGIN_ARCH), arch: PLUGIN_ARCH, elves: [join(stage, PLUGIN_SO)] };
}

export function buildPluginDeb(staged, outDir, version, shlibs) {
  return buildDeb({ pkg: staged.pkg, stage: staged.stage, outDir, version, arch: staged.arch, fields: { 'shlibs:Depends': shlibs } });
}
