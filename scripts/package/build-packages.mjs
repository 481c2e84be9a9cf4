// `npm run package`: the Debian packages, into packages/ at the checkout.
//
//   vfmigd_VERSION_arm64.deb         the agent for the DPU's SoC
//   vfmigd_VERSION_amd64.deb         the same for amd64 (an x86 SoC, a test machine)
//   vfmigd-qemu-plugin_VERSION_amd64.deb   the QEMU plugin, for the hosts
//
// Runs on an amd64 Debian machine after `npm run build` (the npm script does
// both), with dpkg-dev, lintian, help2man and the arm64 cross tools
// (gcc-aarch64-linux-gnu) installed, and the npm registry reachable (the
// per-platform dependencies and Node runtimes; npm's cache keeps them).
// Each package is smoke-run, then checked by lintian; a finding fails it.
import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { buildAgentDeb, stageAgentPackage } from './agent-package.mjs';
import { debianVersion, OUT } from './layout.mjs';
import { lintian } from './lintian.mjs';
import { buildPluginDeb, stagePluginPackage } from './plugin-package.mjs';
import { note, requireTool, run } from './run.mjs';
import { assertNeedsNoMoreThan, shlibsDepends } from './shlib-depends.mjs';
import { smokeTest } from './smoke-test.mjs';

const TOOLS = [
  ['dpkg-deb', 'dpkg'], ['dpkg-shlibdeps', 'dpkg-dev'], ['dpkg-buildflags', 'dpkg-dev'], ['lintian', 'lintian'],
  ['help2man', 'help2man'], ['make', 'make'], ['aarch64-linux-gnu-gcc', 'gcc-aarch64-linux-gnu'],
  ['aarch64-linux-gnu-strip', 'binutils-aarch64-linux-gnu'], ['x86_64-linux-gnu-strip', 'binutils'],
];

for (const [tool, pkg] of TOOLS) requireTool(tool, pkg);
const host = run('dpkg', ['--print-architecture'], { quiet: true }).trim();
if (host !== 'amd64') throw new Error(`the packages are built on amd64 (this machine is ${host}): the plugin is built natively, arm64 cross`);

const version = debianVersion();
const started = performance.now();
mkdirSync(OUT, { recursive: true });
// The folder is the build's output: git is told to leave all of it alone from inside, as a virtualenv does.
writeFileSync(join(OUT, '.gitignore'), '*\n');
const work = join(OUT, '.work');
rmSync(work, { recursive: true, force: true });
for (const old of ['vfmigd', 'vfmigd-qemu-plugin']) for (const arch of ['amd64', 'arm64']) rmSync(join(OUT, `${old}_${version}_${arch}.deb`), { force: true });

let built = false;
try {
  note('staging vfmigd for amd64 and arm64');
  const amd64 = stageAgentPackage(work, 'amd64');
  const arm64 = stageAgentPackage(work, 'arm64');
  const plugin = stagePluginPackage(work);
  for (const staged of [amd64, arm64]) note(`smoke: ${smokeTest(staged.stage, staged.arch)}`);

  const agentDepends = shlibsDepends(amd64);
  assertNeedsNoMoreThan(arm64.elves, amd64.elves, 'vfmigd for arm64');
  const debs = [
    buildAgentDeb(amd64, OUT, version, agentDepends),
    buildAgentDeb(arm64, OUT, version, agentDepends),
    buildPluginDeb(plugin, OUT, version, shlibsDepends(plugin)),
  ];
  note('lintian');
  const findings = lintian(debs);
  if (findings !== '') process.stderr.write(`${findings}\n`);
  for (const deb of debs) {
    const installed = run('dpkg-deb', ['--field', deb, 'Installed-Size'], { quiet: true }).trim();
    note(`${basename(deb)}: ${size(statSync(deb).size)}, ${size(Number(installed) * 1024)} installed`);
  }
  built = true;
  note(`done in ${((performance.now() - started) / 1000).toFixed(1)} s: ${OUT}`);
} finally {
  // The staged trees are 300 MB; a failed build's are kept for a look.
  if (built) rmSync(work, { recursive: true, force: true });
  else note(`the staged trees are kept in ${work}`);
}

function size(bytes) {
  return bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(0)} KiB` : `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
