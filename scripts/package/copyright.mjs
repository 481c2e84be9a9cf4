// /usr/share/doc/PKG/copyright: deploy/debian/copyright (the project's own
// terms), then a paragraph for each bundled component, made from that
// component's own license file, as Debian requires of a package that
// bundles them: the Node.js runtime and every npm package in node_modules.
import { existsSync, globSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { DEBIAN } from './layout.mjs';

/** Licenses Debian ships the text of: a paragraph points there instead of repeating it. */
const COMMON_LICENSES = '/usr/share/common-licenses';
const LICENSE_FILE = /^(licen[cs]e|copying)/i;

/**
 * Writes the copyright file of `pkg` into `stage`. `bundled` lists extra
 * components: `{files, name, license, text}` (a glob of installed paths,
 * its SPDX license, the license file's text).
 */
export function stageCopyright(stage, pkg, bundled = []) {
  const paragraphs = [readFileSync(join(DEBIAN, 'copyright'), 'utf8').trimEnd()];
  for (const component of bundled) paragraphs.push(paragraph(component));
  const path = join(stage, 'usr', 'share', 'doc', pkg, 'copyright');
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${paragraphs.join('\n\n')}\n`);
}

/** A component for each npm package under `modules` (its installed path: `installedAs`). */
export function npmComponents(modules, installedAs) {
  return globSync('**/package.json', { cwd: modules })
    .filter((file) => /^(node_modules|@.+)$/.test(basename(dirname(join(modules, dirname(file))))))
    // The last paragraph that matches a file wins: a package nested in another comes after it.
    .sort((a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b))
    .map((file) => {
      const dir = join(modules, dirname(file));
      const manifest = JSON.parse(readFileSync(join(modules, file), 'utf8'));
      const licenseFile = globSync('*', { cwd: dir }).find((name) => LICENSE_FILE.test(name));
      return {
        files: `${installedAs}/${relative(modules, dir)}/*`,
        name: `${manifest.name} ${manifest.version}`,
        license: manifest.license ?? manifest.licenses?.map((l) => l.type).join(' or ') ?? 'unknown',
        text: licenseFile === undefined ? undefined : readFileSync(join(dir, licenseFile), 'utf8'),
        author: typeof manifest.author === 'string' ? manifest.author : manifest.author?.name,
      };
    });
}

function paragraph({ files, name, license, text, author }) {
  const notices = [...new Set((text ?? '').split('\n').map((l) => l.trim()).filter((l) => /^(\(c\)|copyright\b)/i.test(l) && !/copyright (notice|holders?)\b/i.test(l)))];
  const copyright = notices.length > 0 ? notices : [author === undefined ? `the authors of ${name}` : author];
  const lines = [`Files: ${files}`, `Copyright: ${copyright.join('\n ')}`, `Comment: ${name}`];
  if (existsSync(join(COMMON_LICENSES, license))) {
    lines.push(`License: ${license}`, ` On Debian systems, the complete text of this license can be found in`, ` "${COMMON_LICENSES}/${license}".`);
  } else if (text === undefined) {
    lines.push(`License: ${license}`, ' The package ships no license file; its package.json names this license.');
  } else {
    lines.push(`License: ${license}`, ...text.trimEnd().split('\n').map((l) => (l.trim() === '' ? ' .' : ` ${l.replace(/\s+$/, '')}`)));
  }
  return lines.join('\n');
}
