// Builds the agent's one native piece, agent/service/native/sd_notify.c (a
// Node-API addon: see its comment), into dist/native/<arch>/sd_notify.node.
//
//   node scripts/build-native.mjs [--arch amd64|arm64] [--out DIR]
//
// The default is this machine's architecture. arm64 is cross-compiled with
// Debian's aarch64-linux-gnu-gcc (package gcc-aarch64-linux-gnu). Node-API
// headers come from node-api-headers. `npm test` builds it for this
// machine, `npm run package` for both package architectures; `npm start`
// does not need it (only a service started by systemd sends notifications).
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch as hostArch } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const COMPILERS = { amd64: 'gcc', arm64: 'aarch64-linux-gnu-gcc' };
const HOST = { x64: 'amd64', arm64: 'arm64' }[hostArch()];

const { values } = parseArgs({ options: { arch: { type: 'string' }, out: { type: 'string' } } });
const arch = values.arch ?? HOST;
const native = arch === HOST ? 'cc' : COMPILERS[arch];
if (native === undefined) throw new Error(`--arch ${arch}: amd64 or arm64`);
const out = values.out ?? join(root, 'dist', 'native', arch);
const headers = dirname(createRequire(import.meta.url).resolve('node-api-headers/package.json'));
mkdirSync(out, { recursive: true });
execFileSync(native, [
  '-std=c11', '-O2', '-Wall', '-Wextra', '-Werror', '-fPIC', '-shared', '-fvisibility=hidden',
  '-DNAPI_VERSION=8', '-I', join(headers, 'include'),
  '-o', join(out, 'sd_notify.node'), join(root, 'agent', 'service', 'native', 'sd_notify.c'),
], { stdio: 'inherit' });
