// Where things are: in the checkout, and where the packages install them
// (the layout the units in deploy/ name), and what each package
// architecture is called by the tools that build for it.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DEPLOY = join(ROOT, 'deploy');
export const DEBIAN = join(DEPLOY, 'debian');
/** Where `npm run package` leaves the .debs (it writes a .gitignore of its own there). */
export const OUT = join(ROOT, 'packages');

export const PACKAGE_JSON = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
export const LOCK = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8'));

/** Installed paths, without the leading slash: relative to a package's staging root. */
export const APP_DIR = 'usr/lib/vfmigd';
export const NODE_BIN = `${APP_DIR}/node/bin/node`;
export const UNIT_DIR = 'usr/lib/systemd/system';
export const SYSUSERS_DIR = 'usr/lib/sysusers.d';
export const CONFIG_DIR = 'etc/vfmigd';
export const PLUGIN_SO = `${APP_DIR}/libvfmigd-plugin.so`;
export const PLUGIN_HEADER_DIR = 'usr/include/vfmigd';

/**
 * Debian's name of an architecture → npm's `--cpu`, the GNU triplet of its
 * binutils (`${gnu}-strip`), and the ELF e_machine its binaries carry.
 */
export const ARCHES = {
  amd64: { npmCpu: 'x64', gnu: 'x86_64-linux-gnu', elfMachine: 62 },
  arm64: { npmCpu: 'arm64', gnu: 'aarch64-linux-gnu', elfMachine: 183 },
};

/**
 * package.json's version as a Debian version: a semver pre-release
 * (`1.2.0-rc.1`) must sort before its release, which `~` does in Debian and
 * `-` would not (it would also read as a Debian revision).
 */
export function debianVersion(version = PACKAGE_JSON.version) {
  return version.replace('-', '~');
}
