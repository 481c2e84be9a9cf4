// vfmigd_VERSION_ARCH.deb: the agent in /usr/lib/vfmigd (its dist/, bin/,
// schemas/ and package.json, the production node_modules for ARCH, the
// Node 24 runtime for ARCH), the units, the sysusers file and the default
// config from deploy/, vfmigd and vfmigctl on the PATH, their man pages.
import { copyFileSync, cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { stageAppFiles } from './app-files.mjs';
import { npmComponents, stageCopyright } from './copyright.mjs';
import { buildDeb } from './deb-package.mjs';
import { deployInstallPaths, enabledUnits, systemUser, unitDirectories, units } from './deploy-files.mjs';
import { stageChangelog, stageManPages, stageReadme } from './docs.mjs';
import { APP_DIR, DEPLOY, NODE_BIN, PACKAGE_JSON } from './layout.mjs';
import { checkPrebuilt, elfFilesFor } from './native-check.mjs';
import { stageNodeRuntime } from './node-runtime.mjs';
import { installProductionModules } from './production-modules.mjs';
import { stripElf } from './strip.mjs';

const PKG = 'vfmigd';
/** The unit that runs the agent: postinst restarts it on an upgrade, and only it. */
const AGENT_UNIT = `${PKG}.service`;
const CHECKOUT_SHEBANG = '#!/usr/bin/env node';

/**
 * Lays out the package for `arch` in `work`/ARCH/debian/vfmigd (as dpkg's
 * tools expect a package's tree) and returns what building it needs; the
 * Depends field comes later (shlib-depends.mjs), from the ELF files listed.
 */
export function stageAgentPackage(work, arch) {
  const stage = join(work, arch, 'debian', PKG);
  const scratch = join(work, arch, 'scratch');
  mkdirSync(stage, { recursive: true });
  mkdirSync(scratch, { recursive: true });

  stageAppFiles(stage, arch);
  const modules = installProductionModules(scratch, arch);
  checkPrebuilt(modules);
  cpSync(modules, join(stage, APP_DIR, 'node_modules'), { recursive: true });
  const runtime = stageNodeRuntime(stage, scratch, arch);
  const elves = elfFilesFor(stage, arch).map((f) => join(stage, f));
  // The addons: ours is built with -O2 and no -s, the prebuilt ones keep a .comment.
  for (const addon of elves.filter((f) => f.endsWith('.node'))) stripElf(addon, arch, 'shared');

  for (const { from, to } of deployInstallPaths()) {
    mkdirSync(dirname(join(stage, to)), { recursive: true });
    copyFileSync(join(DEPLOY, from), join(stage, to));
  }
  const commands = stageCommands(stage);
  stageManPages(stage);
  stageChangelog(stage, PKG);
  stageReadme(stage, PKG);
  stageCopyright(stage, PKG, [
    { files: `${dirname(dirname(NODE_BIN))}/*`, name: runtime.spec, license: 'MIT and others (below)', text: runtime.license },
    ...npmComponents(join(stage, APP_DIR, 'node_modules'), `${APP_DIR}/node_modules`),
  ]);
  return { pkg: PKG, stage, root: join(work, arch), arch, elves, executables: [...commands, NODE_BIN], scriptValues: maintainerScriptValues() };
}

/**
 * /usr/bin/NAME for each of package.json's commands: a shell script that
 * runs the command's launcher (in /usr/lib/vfmigd/bin) on the packaged Node.
 * The launcher's `#!/usr/bin/env node`, which would run it on whatever
 * Node comes first on the PATH, becomes a comment of the same length, so
 * that line numbers stay; it is then a module the wrapper runs, not a
 * program (lintian holds any script run by `node` to Debian's nodejs).
 * Returns the wrappers' paths.
 */
function stageCommands(stage) {
  const wrappers = [];
  mkdirSync(join(stage, 'usr', 'bin'), { recursive: true });
  for (const [command, script] of Object.entries(PACKAGE_JSON.bin)) {
    const launcher = `${APP_DIR}/${script}`;
    const text = readFileSync(join(stage, launcher), 'utf8');
    if (!text.startsWith(CHECKOUT_SHEBANG)) throw new Error(`${script} does not start with ${CHECKOUT_SHEBANG}`);
    writeFileSync(join(stage, launcher), `// run by /usr/bin/${command}${text.slice(text.indexOf('\n'))}`);
    const wrapper = `usr/bin/${command}`;
    writeFileSync(join(stage, wrapper), `#!/bin/sh\n# ${command}, on the Node.js 24 that the vfmigd package brings.\nexec /${NODE_BIN} /${launcher} "$@"\n`);
    wrappers.push(wrapper);
  }
  return wrappers;
}

/** The at-sign names of deploy/debian/vfmigd.{postinst,prerm,postrm}, from deploy/'s files. */
function maintainerScriptValues() {
  const user = systemUser();
  if (!units().some((u) => u.name === AGENT_UNIT)) throw new Error(`deploy/ has no ${AGENT_UNIT}`);
  // The agent first: a stop stops it before the device it attaches to.
  const all = units().map((u) => u.name).sort((a, b) => Number(b === AGENT_UNIT) - Number(a === AGENT_UNIT));
  return {
    USER: user.name, USER_HOME: user.home, USER_GECOS: user.gecos,
    UNITS: all.join(' '), ENABLED_UNITS: enabledUnits().join(' '), AGENT_UNIT,
    UNIT_DIRECTORIES: unitDirectories().join(' '),
  };
}

export function buildAgentDeb(staged, outDir, version, shlibs) {
  return buildDeb({ pkg: staged.pkg, stage: staged.stage, outDir, version, arch: staged.arch, fields: { 'shlibs:Depends': shlibs }, scriptValues: staged.scriptValues, executables: staged.executables });
}
