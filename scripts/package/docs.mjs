// A package's /usr/share/doc and man pages: the changelog Debian requires
// (generated: the project keeps no Debian changelog of its own, and the
// version is package.json's), the README, and a man page per command made
// by help2man from the command's own --help and --version.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { DEBIAN, PACKAGE_JSON, ROOT, debianVersion } from './layout.mjs';
import { run } from './run.mjs';

/** Seconds since the epoch of the checkout's last commit: the packages' dates, so a rebuild makes the same files. */
export function sourceDateEpoch() {
  if (process.env.SOURCE_DATE_EPOCH !== undefined) return Number(process.env.SOURCE_DATE_EPOCH);
  try {
    return Number(run('git', ['log', '-1', '--format=%ct'], { cwd: ROOT, quiet: true }).trim());
  } catch {
    return Math.floor(Date.now() / 1000);
  }
}

/** gzip -9n: what Debian wants in /usr/share/doc and /usr/share/man (no name, no time in the header). */
function gzip(text) {
  return gzipSync(Buffer.from(text), { level: 9 });
}

function write(path, content) {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, content);
}

/** The Maintainer of a package's control template in deploy/debian. */
function maintainerOf(pkg) {
  const line = /^Maintainer: (.+)$/m.exec(readFileSync(join(DEBIAN, `${pkg}.control`), 'utf8'));
  if (line === null) throw new Error(`deploy/debian/${pkg}.control has no Maintainer`);
  return line[1];
}

/** /usr/share/doc/PKG/changelog.gz: one entry, for this version (a native package's changelog has that name). */
export function stageChangelog(stage, pkg) {
  const commit = (() => {
    try {
      return run('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: ROOT, quiet: true }).trim();
    } catch {
      return 'unknown';
    }
  })();
  const date = new Date(sourceDateEpoch() * 1000).toUTCString().replace('GMT', '+0000');
  const text = `${pkg} (${debianVersion()}) unstable; urgency=medium\n\n`
    + `  * Built by npm run package from vfmigd ${PACKAGE_JSON.version}, commit ${commit}.\n`
    + '    The project\'s history is its git log.\n\n'
    + ` -- ${maintainerOf(pkg)}  ${date}\n`;
  write(join(stage, 'usr', 'share', 'doc', pkg, 'changelog.gz'), gzip(text));
}

export function stageReadme(stage, pkg) {
  write(join(stage, 'usr', 'share', 'doc', pkg, 'README.md.gz'), gzip(readFileSync(join(ROOT, 'README.md'), 'utf8')));
}

/**
 * usr/share/man/man1/NAME.1.gz for each of package.json's commands, from
 * their --help, run on this checkout (the pages are the same on every
 * architecture). The NAME line is the sentence after the usage line.
 */
export function stageManPages(stage) {
  const scratch = mkdtempSync(join(tmpdir(), 'vfmigd-man-'));
  try {
    for (const [command, script] of Object.entries(PACKAGE_JSON.bin)) {
      // help2man names the page after the program it runs: a shim of the command's name.
      const shim = join(scratch, command);
      writeFileSync(shim, `#!/bin/sh\nexec "${process.execPath}" "${join(ROOT, script)}" "$@"\n`);
      chmodSync(shim, 0o755);
      const help = run(shim, ['--help'], { quiet: true });
      const summary = help.split('\n').map((l) => l.trim()).find((l) => l !== '' && !/^usage:/i.test(l));
      const page = run('help2man', ['--no-info', '--section=1', `--name=${summary.replace(/\.$/, '')}`, shim],
        { quiet: true, env: { SOURCE_DATE_EPOCH: String(sourceDateEpoch()) } });
      write(join(stage, 'usr', 'share', 'man', 'man1', `${command}.1.gz`), gzip(page));
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}
