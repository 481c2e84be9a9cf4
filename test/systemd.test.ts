/**
 * The agent under systemd (issue 9 §1): the units in deploy/ pass
 * `systemd-analyze verify` and stay within an exposure of 2.0 in
 * `systemd-analyze security`; the default config and the device's options
 * agree with the units' paths; and the notify protocol, spoken to a real
 * AF_UNIX datagram socket given as NOTIFY_SOCKET, as systemd would give it:
 * READY=1 only once the listeners answer, STATUS= lines, WATCHDOG=1 for the
 * watched pid only, STOPPING=1 on SIGTERM.
 */
import test, { type ExecutionContext } from 'ava';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { loadConfigFile, resolveConfig } from '../agent/config.ts';
import { violations } from '../agent/rpc/schema-registry.ts';
import { notifySocketAddress, openServiceNotifier, watchdogPeriodMs } from '../agent/service/sd-notify.ts';
import type { Config } from '../schemas/types.ts';
import { AGENT_MAIN, tempDir } from './support/agent-process.ts';
import { RpcClient, schemas } from './support/rpc-client.ts';

const run = promisify(execFile);
/** dist/test → the checkout */
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const DEPLOY = join(ROOT, 'deploy');
const UNITS = ['vfmigd.service', 'vfmigd-nvme-emu.service'] as const;
/** The installed layout the units name (the Debian package lays it out). */
const INSTALLED_NODE = '/usr/lib/vfmigd/node/bin/node';
const INSTALLED_APP = '/usr/lib/vfmigd/';
const DEVICE_MAIN = join(ROOT, 'dist', 'vendor-drivers', 'nvme-emu', 'device', 'device-main.js');
const NOTIFY_RECEIVER = join(ROOT, 'test', 'support', 'notify-receiver.py');

function unitText(unit: string): string {
  return readFileSync(join(DEPLOY, unit), 'utf8');
}

/** Every value of `key=` in a unit (a key may be given more than once). */
function unitValues(unit: string, key: string): string[] {
  return unitText(unit).split('\n').filter((line) => line.startsWith(`${key}=`)).map((line) => line.slice(key.length + 1));
}

function unitValue(unit: string, key: string): string {
  const values = unitValues(unit, key);
  if (values.length !== 1) throw new Error(`${unit} has ${values.length} ${key}= lines`);
  return values[0] as string;
}

test('systemd-analyze verify: both units are clean, with their programs at this checkout\'s Node and dist', async (t) => {
  // verify checks that ExecStart's program exists: the copies name this
  // checkout's instead of /usr/lib/vfmigd's, and nothing else differs.
  const dir = tempDir('vfmigd-units-');
  for (const unit of UNITS) {
    const local = unitText(unit).replaceAll(INSTALLED_NODE, process.execPath).replaceAll(INSTALLED_APP, `${ROOT}/`);
    t.is(local.replaceAll(process.execPath, INSTALLED_NODE).replaceAll(`${ROOT}/`, INSTALLED_APP), unitText(unit));
    writeFileSync(join(dir, unit), local);
    const script = unitValue(unit, 'ExecStart').split(' ')[1] as string;
    t.true(existsSync(script.replace(INSTALLED_APP, `${ROOT}/`)), `${unit} starts ${script}, which the package's dist/ has`);
  }
  const { stdout, stderr } = await run('systemd-analyze', ['verify', ...UNITS.map((unit) => join(dir, unit))]);
  // verify exits 0 on unknown keys and bad values too: clean means it said nothing.
  t.is(`${stdout}${stderr}`, '');
});

for (const unit of UNITS) {
  test(`systemd-analyze security: ${unit} has an exposure of 2.0 or lower`, async (t) => {
    const { stdout } = await run('systemd-analyze', ['security', '--offline=yes', join(DEPLOY, unit)], { env: { ...process.env, SYSTEMD_COLORS: '0' } });
    const overall = /Overall exposure level for \S+: (\d+\.\d+) /.exec(stdout);
    if (overall === null) return t.fail(`no overall exposure in:\n${stdout}`);
    const exposure = Number(overall[1]);
    t.log(`${unit}: exposure ${exposure.toFixed(1)}; what is left:\n${stdout.split('\n').filter((line) => line.startsWith('✗')).join('\n')}`);
    t.true(exposure <= 2.0, `${unit} exposure ${exposure}`);
  });
}

test('the sysusers file makes the user both units run as', async (t) => {
  const root = tempDir('vfmigd-sysusers-');
  mkdirSync(join(root, 'etc'));
  await run('systemd-sysusers', [`--root=${root}`, join(DEPLOY, 'vfmigd.sysusers')]);
  const passwd = readFileSync(join(root, 'etc', 'passwd'), 'utf8');
  for (const unit of UNITS) {
    t.regex(passwd, new RegExp(`^${unitValue(unit, 'User')}:x:\\d+:\\d+:`, 'm'), unit);
    t.regex(readFileSync(join(root, 'etc', 'group'), 'utf8'), new RegExp(`^${unitValue(unit, 'Group')}:x:\\d+:`, 'm'), unit);
  }
});

test('the default config is valid, loopback and Unix socket only, and agrees with the units\' directories and the device\'s socket', (t) => {
  const file = loadConfigFile(join(DEPLOY, 'config.json'), schemas());
  const config = resolveConfig(file, {});
  t.deepEqual(config.listen, ['tcp://127.0.0.1:7700', 'unix:/run/vfmigd/vfmigd.sock']);
  t.is(config.tls, undefined);
  t.false(config.insecure);
  t.is(unitValue('vfmigd.service', 'ExecStart').split(' ').at(-1), '/etc/vfmigd/config.json');
  t.is(config.stateDir, `/var/lib/${unitValue('vfmigd.service', 'StateDirectory')}`);
  t.true(config.listen[1]?.startsWith(`unix:/run/${unitValue('vfmigd.service', 'RuntimeDirectory')}/`));
  const args = unitValue('vfmigd-nvme-emu.service', 'ExecStart').split(' ');
  const control = args[args.indexOf('--control') + 1] as string;
  t.deepEqual(config.drivers, [{ driver: 'nvme-emu', options: { device: { mode: 'attach', socket: control } } }], 'the agent attaches to the device unit\'s process');
  t.true(control.startsWith(`/run/${unitValue('vfmigd-nvme-emu.service', 'RuntimeDirectory')}/`));
});

test('the device\'s options are valid nvme-emu options with its namespace images in its state directory', (t) => {
  const options = JSON.parse(readFileSync(join(DEPLOY, 'nvme-emu.json'), 'utf8')) as { dataDir?: string };
  const validate = schemas().ajv.getSchema('https://vfmigd.dev/schemas/drivers/nvme-emu.json');
  if (validate === undefined) return t.fail('no nvme-emu schema');
  t.deepEqual(validate(options) ? [] : violations(validate.errors), []);
  t.is(options.dataDir, `/var/lib/${unitValue('vfmigd-nvme-emu.service', 'StateDirectory')}`);
  const args = unitValue('vfmigd-nvme-emu.service', 'ExecStart').split(' ');
  t.is(args[args.indexOf('--options') + 1], '/etc/vfmigd/nvme-emu.json');
});

test('NOTIFY_SOCKET and the watchdog\'s variables are read as sd_notify(3) reads them', (t) => {
  t.is(notifySocketAddress('/run/systemd/notify'), '/run/systemd/notify');
  t.is(notifySocketAddress('@vfmigd-notify'), '\0vfmigd-notify');
  t.is(notifySocketAddress('@'), undefined);
  t.is(notifySocketAddress('vsock:2:1234'), undefined);
  t.is(notifySocketAddress(undefined), undefined);
  t.is(watchdogPeriodMs({ WATCHDOG_USEC: '10000000' }), 5000, 'half of WATCHDOG_USEC');
  t.is(watchdogPeriodMs({ WATCHDOG_USEC: '10000000', WATCHDOG_PID: String(process.pid) }), 5000);
  t.is(watchdogPeriodMs({ WATCHDOG_USEC: '10000000', WATCHDOG_PID: String(process.pid + 1) }), undefined, 'another process is watched');
  t.is(watchdogPeriodMs({ WATCHDOG_USEC: '0' }), undefined);
  t.is(watchdogPeriodMs({ WATCHDOG_USEC: 'soon' }), undefined);
  t.is(watchdogPeriodMs({}), undefined);
});

test('an @abstract NOTIFY_SOCKET reaches the abstract name itself, bound at its exact length as systemd binds it', async (t) => {
  const name = `vfmigd-test-notify-${process.pid}-${Date.now()}`;
  const receiver = await NotifySocket.open(`@${name}`);
  t.teardown(() => receiver.close());
  const notifier = openServiceNotifier(pino({ level: 'silent' }), { NOTIFY_SOCKET: `@${name}` });
  t.true(notifier.active);
  notifier.ready('up');
  const ready = await receiver.waitFor('READY=1', carries('READY', '1'));
  notifier.close();
  t.is(ready.text, 'READY=1\nSTATUS=up');
  t.is(ready.pid, process.pid);
});

interface NotifyMessage {
  readonly text: string;
  /** The sender, as the kernel says (SCM_CREDENTIALS). */
  readonly pid: number | undefined;
  /** The receiver froze the sender on this READY=1 (`stopOnReady`). */
  readonly stopped: boolean;
  /** Its assignments, e.g. READY → 1. */
  readonly fields: ReadonlyMap<string, string>;
}

/**
 * The socket systemd would listen on: every datagram, in order, with its
 * sender's pid, and waits for one that matches. Node has no AF_UNIX
 * datagram sockets, so test/support/notify-receiver.py (Debian's Python)
 * binds it, as systemd does, and relays each datagram as a JSON line.
 */
class NotifySocket {
  readonly messages: NotifyMessage[] = [];
  private readonly waiters = new Set<(message: NotifyMessage) => void>();

  private readonly receiver: ChildProcess;

  private constructor(receiver: ChildProcess) {
    this.receiver = receiver;
  }

  /** Bound once it resolves. `stopOnReady`: the sender of READY=1 is frozen (SIGSTOP) by the receiver, before the test hears of it. */
  static async open(address: string, options: { stopOnReady?: boolean } = {}): Promise<NotifySocket> {
    const receiver = spawn('/usr/bin/python3', [NOTIFY_RECEIVER, address, ...options.stopOnReady === true ? ['--stop-on-ready'] : []], { stdio: ['ignore', 'pipe', 'inherit'] });
    const socket = new NotifySocket(receiver);
    const lines = createInterface({ input: receiver.stdout as NodeJS.ReadableStream });
    await new Promise<void>((resolve, reject) => {
      receiver.once('exit', (code) => reject(new Error(`the notify receiver exited (${code}) before it bound ${address}`)));
      lines.on('line', (line) => {
        const relayed = JSON.parse(line) as { bound?: true; pid?: number | null; text?: string; stopped?: boolean };
        if (relayed.bound === true) return resolve();
        const text = relayed.text ?? '';
        const message: NotifyMessage = { text, pid: relayed.pid ?? undefined, stopped: relayed.stopped === true, fields: new Map(text.split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const)) };
        socket.messages.push(message);
        for (const waiter of socket.waiters) waiter(message);
      });
    });
    return socket;
  }

  count(match: (message: NotifyMessage) => boolean): number {
    return this.messages.filter(match).length;
  }

  /**
   * The first message from the `from`th on, already here or to come, that
   * `match` accepts; `now` runs on it the moment it is seen.
   */
  waitFor(what: string, match: (message: NotifyMessage) => boolean, options: { from?: number; now?: (message: NotifyMessage) => void } = {}, timeoutMs = 10_000): Promise<NotifyMessage> {
    const found = this.messages.slice(options.from ?? 0).find(match);
    if (found !== undefined) {
      options.now?.(found);
      return Promise.resolve(found);
    }
    return new Promise((resolve, reject) => {
      const waiter = (message: NotifyMessage): void => {
        if (!match(message)) return;
        this.waiters.delete(waiter);
        clearTimeout(timer);
        options.now?.(message);
        resolve(message);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`no ${what} within ${timeoutMs} ms; got ${JSON.stringify(this.messages.map((m) => m.text))}`));
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  close(): void {
    this.receiver.kill();
  }
}

const carries = (key: string, value?: string) => (m: NotifyMessage): boolean => m.fields.has(key) && (value === undefined || m.fields.get(key) === value);
const statusStarting = (prefix: string) => (m: NotifyMessage): boolean => m.fields.get('STATUS')?.startsWith(prefix) === true;

interface ServiceProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly logs: Record<string, unknown>[];
  readonly exited: Promise<number | null>;
}

/**
 * A process started as systemd starts a notify service: NOTIFY_SOCKET in its
 * environment and, when `watchdog` says so, WATCHDOG_USEC with WATCHDOG_PID
 * naming it (`self`, set by the shell that execs it, so the pid is the
 * process's own) or another process.
 */
function startService(t: ExecutionContext, argv: readonly string[], notifySocket: string, watchdog?: { usec: number; pid: 'self' | number }): ServiceProcess {
  const env: NodeJS.ProcessEnv = { ...process.env, NOTIFY_SOCKET: notifySocket };
  if (watchdog !== undefined) env.WATCHDOG_USEC = String(watchdog.usec);
  if (watchdog !== undefined && watchdog.pid !== 'self') env.WATCHDOG_PID = String(watchdog.pid);
  const script = watchdog?.pid === 'self' ? 'WATCHDOG_PID=$$ exec "$0" "$@"' : 'exec "$0" "$@"';
  const child = spawn('/bin/sh', ['-c', script, process.execPath, ...argv], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  const logs: Record<string, unknown>[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => { logs.push(JSON.parse(line) as Record<string, unknown>); });
  return { child, pid: child.pid!, logs, exited };
}

/** Whether something accepts connections at `address` (a stopped process's listening socket does: the kernel completes them). */
function accepts(address: { host: string; port: number } | { path: string }): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = 'path' in address ? connect(address.path) : connect(address.port, address.host);
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}

function agentArgv(dir: string): string[] {
  const config: Config = {
    listen: ['tcp://127.0.0.1:0', `unix:${join(dir, 'agent.sock')}`],
    logLevel: 'info',
    drivers: [{ driver: 'blob-bench', options: { vfCount: 3, stateBytes: 4096 } }],
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  return [AGENT_MAIN, '--config', join(dir, 'config.json')];
}

test('the agent: READY=1 once its listeners answer, STATUS= with its VFs and sessions, WATCHDOG=1 for its own pid only, STOPPING=1 on SIGTERM', async (t) => {
  const dir = tempDir('vfmigd-notify-');
  const notify = await NotifySocket.open(join(dir, 'notify.sock'), { stopOnReady: true });
  t.teardown(() => notify.close());
  // A second agent whose watchdog watches another process (the test's): it must send none.
  const otherDir = tempDir('vfmigd-notify-');
  const otherNotify = await NotifySocket.open(join(otherDir, 'notify.sock'));
  t.teardown(() => otherNotify.close());

  const agent = startService(t, agentArgv(dir), join(dir, 'notify.sock'), { usec: 200_000, pid: 'self' });
  const other = startService(t, agentArgv(otherDir), join(otherDir, 'notify.sock'), { usec: 200_000, pid: process.pid });
  // Frozen the moment READY=1 arrives: whatever answers then was bound before it was sent.
  const ready = await notify.waitFor('READY=1', carries('READY', '1'));
  t.true(ready.stopped);
  t.is(ready.pid, agent.pid, 'sent by the main process itself (NotifyAccess=main)');
  const status = notify.messages.slice(0, notify.messages.indexOf(ready)).filter(carries('STATUS')).at(-1)?.fields.get('STATUS') ?? '';
  const listening = /listening on tcp:\/\/(\S+):(\d+) unix:(\S+)$/.exec(status);
  if (listening === null) return t.fail(`no listeners in the status before READY=1: "${status}"`);
  const [, host = '', port = '', path = ''] = listening;
  t.true(await accepts({ host, port: Number(port) }), 'the TCP listener was bound before READY=1');
  t.true(await accepts({ path }), 'the Unix listener was bound before READY=1');
  process.kill(agent.pid, 'SIGCONT');
  t.is(status, `3 VFs (3 running), 0 sessions open, listening on tcp://${host}:${port} unix:${join(dir, 'agent.sock')}`);

  // Both listeners answer calls; STATUS= follows the VFs as a save opens and is cancelled.
  const overUnix = await RpcClient.connect({ path: join(dir, 'agent.sock') });
  t.teardown(() => overUnix.destroy());
  t.is((await overUnix.call('vf.list', {})).vfs.length, 3);
  const rpc = await RpcClient.connect({ host, port: Number(port) });
  t.teardown(() => rpc.destroy());
  await rpc.call('vf.quiesce', { vf: 'blob1' });
  await rpc.call('vf.save', { vf: 'blob1', maxBytes: 1024 });
  const saving = await notify.waitFor('the save in STATUS=', statusStarting('3 VFs (2 running, 1 in STOP_COPY), 1 session open, '));
  await rpc.call('vf.resume', { vf: 'blob1' });
  await notify.waitFor('the cancel in STATUS=', statusStarting('3 VFs (3 running), 0 sessions open, '), { from: notify.messages.indexOf(saving) });

  // The watchdog: keep-alives every 100 ms from the watched agent; in the
  // time it sends three after the other agent is ready, the other sends none.
  await otherNotify.waitFor('READY=1 of the agent whose watchdog watches another pid', carries('READY', '1'));
  const before = notify.count(carries('WATCHDOG', '1'));
  await notify.waitFor('three keep-alives', () => notify.count(carries('WATCHDOG', '1')) >= before + 3);
  t.is(otherNotify.count(carries('WATCHDOG')), 0, 'WATCHDOG_PID names another process: no keep-alives');
  t.is(notify.count(carries('READY')), 1);

  for (const [service, socket] of [[agent, notify], [other, otherNotify]] as const) {
    service.child.kill('SIGTERM');
    await socket.waitFor('STOPPING=1', carries('STOPPING', '1'));
    t.is(await service.exited, 0);
  }
});

test('the device process: READY=1 once its control socket listens, STOPPING=1 on SIGTERM; an options file that is not nvme-emu\'s is refused', async (t) => {
  const dir = tempDir('vfmigd-notify-device-');
  writeFileSync(join(dir, 'options.json'), JSON.stringify({ dataDir: dir, vfCount: 2, namespaceBytes: 1024 * 1024 }));
  writeFileSync(join(dir, 'bad.json'), JSON.stringify({ dataDir: dir, vfCount: 2, queues: 4 }));
  const notify = await NotifySocket.open(join(dir, 'notify.sock'), { stopOnReady: true });
  t.teardown(() => notify.close());
  const control = join(dir, 'device.sock');

  const refused = startService(t, [DEVICE_MAIN, '--control', control, '--options', join(dir, 'bad.json')], join(dir, 'notify.sock'));
  t.is(await refused.exited, 1);
  t.like(refused.logs.find((l) => l.msg === 'device failed to start'), { err: `--options ${join(dir, 'bad.json')}: /queues is not a known field` });
  t.is(notify.messages.length, 0);

  const device = startService(t, [DEVICE_MAIN, '--control', control, '--options', join(dir, 'options.json')], join(dir, 'notify.sock'));
  const ready = await notify.waitFor('READY=1', carries('READY', '1'));
  t.true(ready.stopped);
  t.is(ready.pid, device.pid, 'sent by the main process itself (NotifyAccess=main)');
  t.true(await accepts({ path: control }), 'the control socket listened before READY=1');
  process.kill(device.pid, 'SIGCONT');
  t.is(ready.fields.get('STATUS'), `2 VFs, control socket ${control}`);
  device.child.kill('SIGTERM');
  await notify.waitFor('STOPPING=1', carries('STOPPING', '1'));
  t.is(await device.exited, 0);
});
