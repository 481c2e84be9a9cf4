// What deploy/ holds, read the way systemd reads it, so that the package's
// maintainer scripts take the unit names, the user and the directories
// from the files themselves instead of a copy of them.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { CONFIG_DIR, DEPLOY, SYSUSERS_DIR, UNIT_DIR } from './layout.mjs';

/**
 * Where each file of deploy/ is installed (relative to the staging root).
 * A file this does not know stops the build rather than being left out.
 */
export function deployInstallPaths() {
  const paths = [];
  for (const entry of readdirSync(DEPLOY, { withFileTypes: true })) {
    const name = entry.name;
    if (entry.isDirectory() && name === 'debian') continue; // the packaging itself
    if (name.endsWith('.service')) paths.push({ from: name, to: `${UNIT_DIR}/${name}` });
    else if (name === 'vfmigd.sysusers') paths.push({ from: name, to: `${SYSUSERS_DIR}/vfmigd.conf` });
    else if (name.endsWith('.json')) paths.push({ from: name, to: `${CONFIG_DIR}/${name}` });
    else throw new Error(`deploy/${name}: scripts/package/deploy-files.mjs does not know where it is installed`);
  }
  return paths.sort((a, b) => a.from.localeCompare(b.from));
}

/** The units in deploy/, each with its settings: section → key → every value given. */
export function units() {
  return readdirSync(DEPLOY).filter((n) => n.endsWith('.service')).sort().map((name) => ({ name, sections: parseUnit(readFileSync(join(DEPLOY, name), 'utf8')) }));
}

function parseUnit(text) {
  const sections = new Map();
  let current;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header !== null) {
      current = new Map();
      sections.set(header[1], current);
      continue;
    }
    const at = line.indexOf('=');
    if (current === undefined || at < 0) throw new Error(`not a unit line: ${line}`);
    const key = line.slice(0, at).trim();
    current.set(key, [...(current.get(key) ?? []), line.slice(at + 1).trim()]);
  }
  return sections;
}

/** systemd's base for each directory setting of a unit's [Service]. */
const DIRECTORY_BASES = { StateDirectory: '/var/lib', RuntimeDirectory: '/run', LogsDirectory: '/var/log', CacheDirectory: '/var/cache', ConfigurationDirectory: '/etc' };

/** Every directory systemd makes for the units (StateDirectory= and its kin), as absolute paths. */
export function unitDirectories() {
  const dirs = [];
  for (const unit of units()) {
    const service = unit.sections.get('Service') ?? new Map();
    for (const [key, base] of Object.entries(DIRECTORY_BASES)) {
      for (const value of service.get(key) ?? []) for (const dir of value.split(/\s+/).filter(Boolean)) dirs.push(`${base}/${dir.split(':')[0]}`);
    }
  }
  return [...new Set(dirs)].sort();
}

/** The units with an [Install] section: the ones there is something to enable. */
export function enabledUnits() {
  return units().filter((u) => u.sections.has('Install')).map((u) => u.name);
}

/** The system user of deploy/vfmigd.sysusers: its `u` line's name, GECOS and home. */
export function systemUser() {
  const lines = readFileSync(join(DEPLOY, 'vfmigd.sysusers'), 'utf8').split('\n').filter((l) => /^u\s/.test(l));
  if (lines.length !== 1) throw new Error(`deploy/vfmigd.sysusers has ${lines.length} user (u) lines; the package expects one`);
  const [, name, , gecos, home] = [...lines[0].matchAll(/"[^"]*"|\S+/g)].map((m) => m[0].replace(/^"(.*)"$/, '$1'));
  if (name === undefined || home === undefined) throw new Error(`deploy/vfmigd.sysusers: ${lines[0]}: no name or home`);
  return { name, gecos: gecos === '-' ? '' : gecos, home };
}
