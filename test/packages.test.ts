/**
 * The Debian packages (issue 9 §2), installed on this machine: `dpkg -i`
 * of vfmigd_*_amd64.deb and vfmigd-qemu-plugin_*_amd64.deb (from
 * `npm run package`) creates the user and enables the agent's unit without
 * starting anything; the installed units' processes run as their packaged
 * user, started here as systemd would start them (PID 1 here is not
 * systemd): each unit's ExecStart=, User=, Group=, UMask= and directories
 * read from the installed unit file, a clean environment, and a notify
 * socket whose READY=1 must come from the process itself. A VF migrates
 * from the installed agent to a second agent started from the installed
 * files with another config, through the installed QEMU plugin (driven by
 * the plugin harness, which plays QEMU), and another VF with the installed
 * vfmigctl; `dpkg --remove` keeps the config and the state, `dpkg --purge`
 * leaves nothing behind but the system user, as Debian keeps system users.
 *
 * It changes the machine, so it runs only when VFMIGD_TEST_PACKAGES=1, as
 * root, with both packages built (.ci/run does all three) and vfmigd not
 * installed already; otherwise it says why and passes.
 */
import test, { type ExecutionContext } from 'ava';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { arch } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { PLUGIN_BUILD, runHarness, type HarnessRun } from './support/harness.ts';

const run = promisify(execFile);
/** dist/test → the checkout */
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const PACKAGE_JSON = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
/** scripts/package/layout.mjs's debianVersion: a semver pre-release sorts before its release with `~`. */
const VERSION = PACKAGE_JSON.version.replace('-', '~');
const DEBS = ['vfmigd', 'vfmigd-qemu-plugin'].map((pkg) => join(ROOT, 'packages', `${pkg}_${VERSION}_amd64.deb`));
const PACKAGES = ['vfmigd', 'vfmigd-qemu-plugin'];

const UNIT_DIR = '/usr/lib/systemd/system';
const AGENT_UNIT = 'vfmigd.service';
const DEVICE_UNIT = 'vfmigd-nvme-emu.service';
const INSTALLED_PLUGIN = '/usr/lib/vfmigd/libvfmigd-plugin.so';
const VFMIGCTL = '/usr/bin/vfmigctl';
const NOTIFY_RECEIVER = join(ROOT, 'test', 'support', 'notify-receiver.py');
/** What systemd gives a system service, and nothing of this test's environment. */
const SERVICE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** nvme-emu's first VF, the same on every agent with the same options (derived from its index). */
const VF0 = { id: 'nvme0', bdf: '0000:3b:00.2' };
const VF1 = { id: 'nvme1', bdf: '0000:3b:00.3' };

async function skipReason(): Promise<string | undefined> {
  if (process.env.VFMIGD_TEST_PACKAGES !== '1') return 'VFMIGD_TEST_PACKAGES is not 1: this test installs and purges the packages on this machine (.ci/run sets it)';
  if (process.getuid?.() !== 0) return 'not root: dpkg -i needs it';
  if (arch() !== 'x64') return `this machine is ${arch()}: the test installs the amd64 packages`;
  const missing = DEBS.filter((deb) => !existsSync(deb));
  if (missing.length > 0) return `${missing.join(', ')} missing: npm run package first`;
  return undefined;
}

/** An installed unit's [Service] settings, key → every value given. */
function serviceSettings(unit: string): Map<string, string[]> {
  const settings = new Map<string, string[]>();
  let inService = false;
  for (const raw of readFileSync(join(UNIT_DIR, unit), 'utf8').split('\n')) {
    const line = raw.trim();
    if (line.startsWith('[')) inService = line === '[Service]';
    if (!inService || line === '' || line.startsWith('#') || !line.includes('=')) continue;
    const key = line.slice(0, line.indexOf('='));
    settings.set(key, [...(settings.get(key) ?? []), line.slice(line.indexOf('=') + 1)]);
  }
  return settings;
}

function one(settings: Map<string, string[]>, key: string, unit: string): string {
  const values = settings.get(key) ?? [];
  if (values.length !== 1) throw new Error(`${unit}: ${values.length} ${key}= lines`);
  return values[0] as string;
}

/** systemd's base for each directory a unit asks for. */
const DIRECTORY_BASES = { StateDirectory: '/var/lib', RuntimeDirectory: '/run', LogsDirectory: '/var/log' } as const;

interface Service {
  readonly pid: number;
  readonly child: ChildProcess;
  readonly output: string[];
  readonly exited: Promise<number | null>;
  stop(): Promise<number | null>;
}

/**
 * The datagram socket systemd listens on for sd_notify (abstract, so the
 * services' user can send to it): test/support/notify-receiver.py binds it
 * and relays each datagram with its sender's pid.
 */
class NotifySocket {
  readonly address = `@vfmigd-packages-test-${process.pid}`;
  private readonly messages: { pid: number | null; text: string }[] = [];
  private readonly waiters = new Set<() => void>();
  private readonly receiver: ChildProcess;

  private constructor(receiver: ChildProcess) {
    this.receiver = receiver;
  }

  static async open(): Promise<NotifySocket> {
    const socket = new NotifySocket(spawn('/usr/bin/python3', [NOTIFY_RECEIVER, `@vfmigd-packages-test-${process.pid}`], { stdio: ['ignore', 'pipe', 'inherit'] }));
    await new Promise<void>((resolve, reject) => {
      socket.receiver.once('exit', (code) => reject(new Error(`the notify receiver exited (${code})`)));
      createInterface({ input: socket.receiver.stdout as NodeJS.ReadableStream }).on('line', (line) => {
        const relayed = JSON.parse(line) as { bound?: true; pid?: number | null; text?: string };
        if (relayed.bound === true) return resolve();
        socket.messages.push({ pid: relayed.pid ?? null, text: relayed.text ?? '' });
        for (const waiter of socket.waiters) waiter();
      });
    });
    return socket;
  }

  /** Resolves once `pid` itself has sent READY=1 (NotifyAccess=main); rejects if `exited` comes first. */
  ready(pid: number, exited: Promise<number | null>, what: string): Promise<void> {
    const sent = (): boolean => this.messages.some((m) => m.pid === pid && m.text.split('\n').includes('READY=1'));
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!sent()) return;
        this.waiters.delete(check);
        resolve();
      };
      this.waiters.add(check);
      check();
      void exited.then((code) => {
        this.waiters.delete(check);
        reject(new Error(`${what} exited (${code}) before READY=1; notifications: ${JSON.stringify(this.messages)}`));
      });
    });
  }

  close(): void {
    this.receiver.kill();
  }
}

/**
 * Starts `unit` as systemd would from its installed file: its
 * directories made with their modes and owner, then ExecStart= (its
 * arguments passed through `args`, for a second instance) under UMask=, as
 * User=/Group= (setpriv execs, so the pid is the program's), from /, with
 * systemd's environment; resolves once the process has sent READY=1.
 */
async function startService(t: ExecutionContext, unit: string, notify: NotifySocket, args: (argv: string[]) => string[] = (argv) => argv): Promise<Service> {
  const settings = serviceSettings(unit);
  const user = one(settings, 'User', unit);
  const group = one(settings, 'Group', unit);
  const { uid, gid } = await idsOf(user, group);
  for (const [key, base] of Object.entries(DIRECTORY_BASES)) {
    for (const name of (settings.get(key) ?? []).flatMap((v) => v.split(/\s+/))) {
      const dir = join(base, name);
      mkdirSync(dir, { recursive: true });
      chownSync(dir, uid, gid);
      chmodSync(dir, Number.parseInt(settings.get(`${key}Mode`)?.[0] ?? '0755', 8));
    }
  }
  const execStart = one(settings, 'ExecStart', unit);
  if (/["'$\\]/.test(execStart)) throw new Error(`${unit}: ExecStart= with quotes or variables, which this test does not expand: ${execStart}`);
  const argv = args(execStart.split(/\s+/));
  const child = spawn('/bin/sh', ['-c', `umask ${one(settings, 'UMask', unit)} && exec setpriv --reuid=${user} --regid=${group} --init-groups -- "$@"`, 'sh', ...argv], {
    cwd: '/',
    env: { PATH: SERVICE_PATH, LANG: 'C.UTF-8', NOTIFY_SOCKET: notify.address },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  for (const stream of [child.stdout, child.stderr]) createInterface({ input: stream as NodeJS.ReadableStream }).on('line', (line) => output.push(line));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal === null ? null : 128))));
  const stop = async (): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    return exited;
  };
  t.teardown(async () => {
    child.kill('SIGKILL');
    await exited;
  });
  try {
    await notify.ready(child.pid ?? -1, exited, `${unit} (${argv.join(' ')})`);
  } catch (error) {
    throw new Error(`${(error as Error).message}\n${output.join('\n')}`);
  }
  return { pid: child.pid ?? -1, child, output, exited, stop };
}

async function idsOf(user: string, group: string): Promise<{ uid: number; gid: number }> {
  const uid = Number((await run('id', ['-u', user])).stdout.trim());
  const gid = Number((await run('getent', ['group', group])).stdout.split(':')[2]);
  return { uid, gid };
}

/** The real, effective, saved and filesystem uids of a process. */
function uidsOf(pid: number): number[] {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('Uid:')) ?? '';
  return line.split(/\s+/).slice(1).map(Number);
}

/** `argv` with the value after `option` replaced. */
const withOption = (option: string, value: string) => (argv: string[]): string[] => {
  const at = argv.indexOf(option);
  if (at < 0) throw new Error(`ExecStart= has no ${option}: ${argv.join(' ')}`);
  return argv.map((arg, i) => (i === at + 1 ? value : arg));
};

/** The installed vfmigctl, as an operator in the vfmigd group (nobody, with vfmigd as a supplementary group); its --json result. */
async function vfmigctl(...args: string[]): Promise<Record<string, unknown>> {
  const { stdout } = await run('setpriv', ['--reuid=nobody', '--regid=nogroup', '--groups=vfmigd', '--', VFMIGCTL, '--json', ...args], { env: { PATH: SERVICE_PATH }, cwd: '/' });
  return JSON.parse(stdout) as Record<string, unknown>;
}

async function stateOn(agent: string, vf: string): Promise<string> {
  return (await vfmigctl('--agent', agent, 'state', vf)).state as string;
}

function assertHarness(t: ExecutionContext, result: HarnessRun, what: string): void {
  t.is(result.code, 0, `${what}: ${result.stderr}${JSON.stringify(result.reports)}`);
  t.true(result.reports.length === 1 && result.reports.every((r) => r.ok), `${what}: ${JSON.stringify(result.reports)}`);
}

async function installedStatus(pkg: string): Promise<string | undefined> {
  try {
    return (await run('dpkg-query', ['-W', '-f=${db:Status-Status}', pkg])).stdout;
  } catch {
    return undefined;
  }
}

/** Processes of the user, by pid (pgrep exits 1 for none). */
async function processesOf(user: string): Promise<string[]> {
  try {
    return (await run('pgrep', ['-u', user, '-a'])).stdout.trim().split('\n');
  } catch {
    return [];
  }
}

/** The paths the packages hold (dpkg-deb -c), without the leading `.`. */
async function packagedPaths(): Promise<string[]> {
  const paths: string[] = [];
  for (const deb of DEBS) {
    for (const line of (await run('dpkg-deb', ['-c', deb], { maxBuffer: 16 * 1024 * 1024 })).stdout.trim().split('\n')) {
      const path = line.slice(line.indexOf(' ./') + 2).replace(/\/$/, '');
      if (path !== '') paths.push(path);
    }
  }
  return paths;
}

/** What the units' directories and the package's enablement leave, which purge must remove. */
const LEFT_BY_USE = [
  '/etc/vfmigd', '/var/lib/vfmigd', '/var/lib/vfmigd-nvme-emu', '/var/log/vfmigd', '/run/vfmigd', '/run/vfmigd-nvme-emu', '/usr/lib/vfmigd',
  '/etc/systemd/system/multi-user.target.wants/vfmigd.service', '/etc/systemd/system/vfmigd.service',
  '/var/lib/systemd/deb-systemd-helper-enabled/vfmigd.service.dsh-also', '/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/vfmigd.service',
  '/var/lib/systemd/deb-systemd-helper-masked/vfmigd.service',
];

// Decided before the test is declared, so that ava reports it skipped (and says why), not passed.
const skip = await skipReason();
if (skip !== undefined) process.stderr.write(`test/packages.test.ts skipped: ${skip}\n`);
const packageTest = skip === undefined ? test.serial : test.skip;

packageTest('the packages install, run as their user, migrate a VF through the installed plugin and vfmigctl, and purge to nothing', async (t) => {
  for (const pkg of PACKAGES) {
    if ((await installedStatus(pkg)) !== undefined) return t.fail(`${pkg} is installed on this machine already: the test would purge it; dpkg --purge ${PACKAGES.join(' ')} first`);
  }
  if (!existsSync(PLUGIN_BUILD.harness)) return t.fail(`${PLUGIN_BUILD.harness} is missing: make -C vmm-plugin all (npm test does)`);

  // Whatever happens below, the machine ends as it began (but for the user).
  t.teardown(async () => {
    for (const pkg of PACKAGES) if ((await installedStatus(pkg)) !== undefined) await run('dpkg', ['--purge', pkg]).catch(() => undefined);
  });
  const existedBefore = new Set((await packagedPaths()).filter((p) => existsSync(p)));
  const started = performance.now();

  // Install: the user made, the agent's unit enabled, nothing started.
  await run('dpkg', ['-i', ...DEBS], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  for (const pkg of PACKAGES) t.is(await installedStatus(pkg), 'installed', pkg);
  const passwd = (await run('getent', ['passwd', 'vfmigd'])).stdout.trim().split(':');
  t.is(passwd[6], '/usr/sbin/nologin', 'a system user without a login shell');
  t.true(existsSync('/etc/systemd/system/multi-user.target.wants/vfmigd.service'), 'vfmigd.service enabled');
  t.deepEqual(await processesOf('vfmigd'), [], 'nothing started on install');
  t.is((await run('/usr/bin/vfmigd', ['--version'], { env: { PATH: SERVICE_PATH } })).stdout.trim(), `vfmigd ${PACKAGE_JSON.version} (API 1.0)`);
  t.log(`dpkg -i: ${((performance.now() - started) / 1000).toFixed(1)} s`);

  // The installed units' processes, then a second device and agent from the installed files.
  const notify = await NotifySocket.open();
  t.teardown(() => notify.close());
  const device = await startService(t, DEVICE_UNIT, notify);
  const agent = await startService(t, AGENT_UNIT, notify);
  const vfmigdUid = Number((await run('id', ['-u', 'vfmigd'])).stdout.trim());
  for (const [what, service] of [['device', device], ['agent', agent]] as const) t.deepEqual(uidsOf(service.pid), [vfmigdUid, vfmigdUid, vfmigdUid, vfmigdUid], `the ${what} runs as vfmigd`);

  const second = mkdtempSync('/tmp/vfmigd-packages-');
  t.teardown(() => rmSync(second, { recursive: true, force: true }));
  chownSync(second, vfmigdUid, vfmigdUid);
  chmodSync(second, 0o750);
  const deviceOptions = JSON.parse(readFileSync('/etc/vfmigd/nvme-emu.json', 'utf8')) as Record<string, unknown>;
  writeFileSync(join(second, 'nvme-emu.json'), JSON.stringify({ ...deviceOptions, dataDir: join(second, 'nvme-emu') }));
  const config = JSON.parse(readFileSync('/etc/vfmigd/config.json', 'utf8')) as { drivers: { options: { device: Record<string, unknown> } }[] };
  const driver = config.drivers[0];
  if (driver === undefined) return t.fail('/etc/vfmigd/config.json has no driver');
  driver.options.device.socket = join(second, 'device.sock');
  writeFileSync(join(second, 'config.json'), JSON.stringify({ ...config, listen: [`unix:${join(second, 'agent.sock')}`], stateDir: join(second, 'state') }));
  const secondDevice = await startService(t, DEVICE_UNIT, notify, (argv) => withOption('--options', join(second, 'nvme-emu.json'))(withOption('--control', join(second, 'device.sock'))(argv)));
  const secondAgent = await startService(t, AGENT_UNIT, notify, withOption('--config', join(second, 'config.json')));

  // The installed vfmigctl against the installed agent, on its socket, as an operator.
  const installedAgent = 'unix:/run/vfmigd/vfmigd.sock';
  const secondAddress = `unix:${join(second, 'agent.sock')}`;
  const list = await vfmigctl('--agent', installedAgent, 'list');
  t.deepEqual((list.vfs as { id: string; state: string }[]).map((v) => [v.id, v.state]), ['nvme0', 'nvme1', 'nvme2', 'nvme3'].map((id) => [id, 'RUNNING']));
  t.like(await vfmigctl('--agent', installedAgent, 'health'), { status: 'ok' });

  // nvme0 through the installed plugin, as QEMU would move it: save on the installed agent, load on the second.
  const stream = join(second, 'nvme0.stream');
  const build = { harness: PLUGIN_BUILD.harness, plugin: INSTALLED_PLUGIN };
  assertHarness(t, await runHarness({ build, mode: 'source', arg: `${installedAgent},timeout_ms=5000`, devices: [{ bdf: VF0.bdf, stream }] }), 'source');
  assertHarness(t, await runHarness({ build, mode: 'destination', arg: `${secondAddress},timeout_ms=5000`, devices: [{ bdf: VF0.bdf, stream }] }), 'destination');
  t.is(await stateOn(installedAgent, VF0.id), 'STOP', 'QEMU leaves the source in STOP');
  t.is(await stateOn(secondAddress, VF0.id), 'RUNNING', 'the destination runs it');

  // nvme1 with the installed vfmigctl, the source reset as vfio-pci would.
  await vfmigctl('migrate', '--from', installedAgent, '--to', secondAddress, '--vf', VF1.id, '--reset-source');
  t.is(await stateOn(secondAddress, VF1.id), 'RUNNING');
  t.is(await stateOn(installedAgent, VF1.id), 'RUNNING', 'the reset source runs, with a reset device');

  for (const service of [secondAgent, agent, secondDevice, device]) t.is(await service.stop(), 0, service.output.slice(-5).join('\n'));

  // Remove keeps the config and the state; purge leaves nothing of ours.
  await run('dpkg', ['--remove', ...PACKAGES]);
  t.true(existsSync('/etc/vfmigd/config.json'), 'remove keeps the conffiles');
  t.true(existsSync('/var/lib/vfmigd-nvme-emu') && existsSync('/var/lib/vfmigd'), 'remove keeps the state');
  t.false(existsSync('/usr/lib/vfmigd/node/bin/node'), 'remove takes the program');
  await run('dpkg', ['--purge', ...PACKAGES]);
  for (const pkg of PACKAGES) t.is(await installedStatus(pkg), undefined, `${pkg} is gone from dpkg's database`);
  const left = [...(await packagedPaths()).filter((p) => !existedBefore.has(p)), ...LEFT_BY_USE].filter((p) => existsSync(p));
  t.deepEqual(left, [], 'purge leaves none of the packages\' files, directories or state');
  t.deepEqual(await processesOf('vfmigd'), [], 'no process of the vfmigd user');
  t.is((await run('id', ['-u', 'vfmigd'])).stdout.trim(), String(vfmigdUid), 'the system user stays, as Debian keeps them');
  t.log(`install to purge: ${((performance.now() - started) / 1000).toFixed(1)} s`);
});
