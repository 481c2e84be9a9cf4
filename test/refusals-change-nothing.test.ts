/**
 * What a hostile client found, each fixed and checked against real agent
 * processes over real sockets:
 *
 * 1. A refused call changes nothing. From every state a client can leave a
 *    VF in, every refusal leaves vf.getState, vf.pending and the resume
 *    session as they were, and `error.data.state` says that state; the save
 *    stream or the load then goes on as if nothing had been tried. The same
 *    for a quiesce that times out and for VF_BUSY.
 * 2. Guest memory is capped: nvme-emu's host port refuses a write beyond
 *    `maxGuestMemoryBytes` (DEVICE_ACCESS) with nothing written, and a reset
 *    frees nothing (it is the host's RAM) while the cap goes on holding.
 * 3. The launcher's child does not outlive it: SIGKILL the launcher and the
 *    agent it started stops gracefully and releases its port.
 * 4. A planted lock file naming a live process that is not an agent does
 *    not stop an agent from starting; a live agent on the path still does.
 *
 * Every temp dir made here is removed when its test ends.
 */
import test, { type ExecutionContext } from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AGENT_MAIN, startAgentProcess, tempDir, type AgentOptions, type AgentProcess } from './support/agent-process.ts';
import { getFeatures, FEATURE } from './support/guest-nvme-commands.ts';
import { GuestNvme } from './support/guest-nvme.ts';
import { rpcHostPort } from './support/host-port.ts';
import { base64Of, RpcClient, type RpcError } from './support/rpc-client.ts';

const STATE_BYTES = 100_000;
const BLOB_VFS = 8;
const LAUNCHER = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'vfmigd.mjs');
/** A generous bound for anything that should happen promptly; tests wait on events, not on this. */
const DEADLINE_MS = 20_000;

/** An agent for one test, stopped and its temp dir removed when the test ends. */
async function agentFor(t: ExecutionContext, options: AgentOptions): Promise<AgentProcess> {
  const agent = await startAgentProcess(options);
  t.teardown(async () => {
    await agent.stop();
    rmSync(agent.dir, { recursive: true, force: true });
  });
  return agent;
}

function ownTempDir(t: ExecutionContext): string {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function connectTo(t: ExecutionContext, agent: AgentProcess): Promise<RpcClient> {
  const c = await RpcClient.connect(agent.tcp);
  t.teardown(() => c.destroy());
  return c;
}

// ---------------------------------------------------------------- 1. refusals

let blobAgent: Promise<AgentProcess> | undefined;
let blobVfs = 0;

/** One blob-bench VF of an agent shared by the tests of part 1 (each test owns its VF). */
async function ownBlobVf(t: ExecutionContext): Promise<{ c: RpcClient; vf: string }> {
  blobAgent ??= startAgentProcess({ config: { drivers: [{ driver: 'blob-bench', options: { vfCount: BLOB_VFS, stateBytes: STATE_BYTES, p2p: true } }] } });
  const agent = await blobAgent;
  const i = blobVfs++;
  if (i >= BLOB_VFS) throw new Error('raise BLOB_VFS');
  return { c: await connectTo(t, agent), vf: `blob${i}` };
}

test.after.always(async () => {
  if (blobAgent === undefined) return;
  const agent = await blobAgent;
  await agent.stop();
  rmSync(agent.dir, { recursive: true, force: true });
});

/** Everything a refused call must leave as it was, as a client sees it. */
async function fingerprint(c: RpcClient, vf: string): Promise<string> {
  const { state } = await c.call('vf.getState', { vf });
  const pending = await c.call('vf.pending', { vf });
  // When a call last touched the session is not the session's state.
  const { session } = await c.call('vf.get', { vf });
  const { lastActivityAt: _, ...rest } = session ?? { lastActivityAt: '' };
  return JSON.stringify({ state, pending, session: rest });
}

/** The whole save stream from STOP; leaves the VF in STOP. */
async function snapshot(c: RpcClient, vf: string): Promise<Buffer> {
  await c.call('vf.quiesce', { vf });
  const parts: Buffer[] = [];
  for (;;) {
    const slice = await c.call('vf.save', { vf, maxBytes: 30_000 });
    parts.push(Buffer.from(base64Of(slice.data), 'base64'));
    if (slice.eof) break;
  }
  await c.call('vf.setState', { vf, state: 'STOP' });
  return Buffer.concat(parts);
}

async function readRest(c: RpcClient, vf: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (;;) {
    const slice = await c.call('vf.save', { vf, maxBytes: 30_000 });
    parts.push(Buffer.from(base64Of(slice.data), 'base64'));
    if (slice.eof) return Buffer.concat(parts);
  }
}

const b64 = (bytes: Buffer): string => bytes.toString('base64');

interface Setup {
  /** Puts the VF in the state under test. */
  enter(c: RpcClient, vf: string, reference: Buffer): Promise<void>;
  /** Finishes what the VF was doing, checking it goes on as if nothing had been tried. */
  finish(t: ExecutionContext, c: RpcClient, vf: string, reference: Buffer): Promise<void>;
}

const HALF_READ = 1000;
const HALF_LOADED = 30_000;

const SETUPS: Record<string, Setup> = {
  RUNNING: {
    enter: async (c, vf) => { await c.call('vf.resume', { vf }); },
    finish: async () => {},
  },
  RUNNING_P2P: {
    enter: async (c, vf) => { await c.call('vf.setState', { vf, state: 'RUNNING_P2P' }); },
    finish: async () => {},
  },
  STOP: {
    enter: async () => {},
    finish: async (t, c, vf, reference) => { t.true((await snapshot(c, vf)).equals(reference), 'STOP: the state changed'); },
  },
  'STOP_COPY, stream half read': {
    enter: async (c, vf) => { await c.call('vf.save', { vf, maxBytes: HALF_READ }); },
    finish: async (t, c, vf, reference) => {
      t.true((await readRest(c, vf)).equals(reference.subarray(HALF_READ)), 'the save stream did not go on where it was');
    },
  },
  'RESUMING, header not yet in': {
    enter: async (c, vf, reference) => { await c.call('vf.load', { vf, offset: 0, data: b64(reference.subarray(0, 10)) }); },
    finish: async (t, c, vf, reference) => {
      await c.call('vf.load', { vf, offset: 10, data: b64(reference.subarray(10)) });
      t.is((await c.call('vf.setState', { vf, state: 'STOP' })).state, 'STOP', 'the loaded state applies');
    },
  },
  'RESUMING, state half loaded': {
    enter: async (c, vf, reference) => { await c.call('vf.load', { vf, offset: 0, data: b64(reference.subarray(0, HALF_LOADED)) }); },
    finish: async (t, c, vf, reference) => {
      await c.call('vf.load', { vf, offset: HALF_LOADED, data: b64(reference.subarray(HALF_LOADED)) });
      t.is((await c.call('vf.setState', { vf, state: 'STOP' })).state, 'STOP', 'the loaded state applies');
    },
  },
};

/** Calls a hostile client tries; each is refused from some or all of the states above. */
function hostileCalls(vf: string, reference: Buffer): [string, string, Record<string, unknown>][] {
  return [
    ['save past the end', 'vf.save', { vf, offset: 10 * STATE_BYTES }],
    ['load with a gap', 'vf.load', { vf, offset: 5 * STATE_BYTES, data: b64(Buffer.from('gap')) }],
    ['load of foreign bytes at 0', 'vf.load', { vf, offset: 0, data: b64(Buffer.alloc(64, 0x41)) }],
    ['load that completes the header with garbage', 'vf.load', { vf, offset: 10, data: b64(Buffer.alloc(30, 0x41)) }],
    ['load that runs past the announced length', 'vf.load', { vf, offset: HALF_LOADED, data: b64(Buffer.concat([reference.subarray(HALF_LOADED), Buffer.from('extra')])) }],
    ['load of bytes that are not base64', 'vf.load', { vf, offset: 0, data: 'not base64!' }],
    ['setState ERROR', 'vf.setState', { vf, state: 'ERROR' }],
    ['setState PRE_COPY', 'vf.setState', { vf, state: 'PRE_COPY' }],
  ];
}

for (const [name, setup] of Object.entries(SETUPS)) {
  test(`1: from ${name}, every refused call changes nothing and error.data.state says the state`, async (t) => {
    const { c, vf } = await ownBlobVf(t);
    const reference = await snapshot(c, vf);
    await setup.enter(c, vf, reference);
    let refused = 0;
    for (const [label, method, params] of hostileCalls(vf, reference)) {
      const before = await fingerprint(c, vf);
      const { state } = await c.call('vf.getState', { vf });
      const response = await c.request({ jsonrpc: '2.0', method, params, id: `${label}` });
      if (!('error' in response)) {
        t.fail(`${label} was accepted from ${name}`);
        continue;
      }
      refused += 1;
      const error = response.error as RpcError;
      t.is(await fingerprint(c, vf), before, `${label}: ${error.data?.code} ${error.data?.detail}`);
      // Domain refusals say the state; a refusal of the params themselves never reached the VF.
      if (error.data?.code !== 'INVALID_PARAMS') t.is(error.data?.state, state, `${label}: ${error.data?.code}`);
    }
    t.is(refused, hostileCalls(vf, reference).length);
    await setup.finish(t, c, vf, reference);
  });
}

test('1: the two refusals the probe found: save past the end from STOP stays STOP, load at a wrong offset from STOP stays STOP', async (t) => {
  const { c, vf } = await ownBlobVf(t);
  await c.call('vf.quiesce', { vf });
  const save = await c.callError('vf.save', { vf, offset: 10 * STATE_BYTES });
  t.is(save.data?.code, 'STREAM_OFFSET');
  t.is(save.data?.state, 'STOP');
  t.is((await c.call('vf.getState', { vf })).state, 'STOP');
  t.false((await c.call('vf.pending', { vf })).streamOpen);
  const load = await c.callError('vf.load', { vf, offset: 7, data: b64(Buffer.from('abc')) });
  t.is(load.data?.code, 'STREAM_OFFSET');
  t.is(load.data?.state, 'STOP');
  t.is(load.data?.expected, 0);
  t.is((await c.call('vf.getState', { vf })).state, 'STOP');
});

test('1: a quiesce that times out, and a call refused as VF_BUSY meanwhile, leave the VF RUNNING and say so', async (t) => {
  const dir = ownTempDir(t);
  const agent = await agentFor(t, {
    config: {
      limits: { maxQueuedCallsPerVf: 1 },
      drivers: [{
        driver: 'nvme-emu',
        // Every command takes 10 s in the device, so one is surely in flight when the quiesce gives up.
        options: { hostPort: true, serviceTimeUs: 10_000_000, vfs: [{ id: 'nvme0', bdf: '0000:3b:00.2', namespaces: [{ path: join(dir, 'ns1.img'), sizeBytes: 1 << 20 }] }] },
      }],
    },
  });
  const c = await connectTo(t, agent);
  const nvme = new GuestNvme(rpcHostPort((method, params) => c.callAny(method, params), 'nvme0'));
  await nvme.enable();
  await nvme.submit(0, getFeatures(FEATURE.NUMBER_OF_QUEUES));

  // Whichever of the two reaches the VF first waits for that command (for 1 s) and times out; the other
  // finds the VF's one queue slot taken. Both are refused, and the VF is left RUNNING.
  const refusals = await Promise.all([
    c.callError('vf.quiesce', { vf: 'nvme0', timeoutMs: 1000 }),
    c.callError('vf.setState', { vf: 'nvme0', state: 'STOP', timeoutMs: 1000 }),
  ]);
  t.deepEqual(refusals.map((e) => e.data?.code).sort(), ['QUIESCE_TIMEOUT', 'VF_BUSY']);
  for (const error of refusals) t.is(error.data?.state, 'RUNNING', `${error.data?.code}`);
  t.is((await c.call('vf.getState', { vf: 'nvme0' })).state, 'RUNNING');
});

// ---------------------------------------------------------------- 2. guest memory

test('2: emu.memWrite beyond maxGuestMemoryBytes is refused with DEVICE_ACCESS and writes nothing; vf.reset frees nothing and the cap holds', async (t) => {
  const dir = ownTempDir(t);
  const cap = 64 * 1024;
  const agent = await agentFor(t, {
    config: {
      drivers: [{
        driver: 'nvme-emu',
        options: { hostPort: true, maxGuestMemoryBytes: cap, vfs: [{ id: 'nvme0', bdf: '0000:3b:00.2', namespaces: [{ path: join(dir, 'ns1.img'), sizeBytes: 1 << 20 }] }] },
      }],
    },
  });
  const c = await connectTo(t, agent);
  const vf = 'nvme0';
  const filled = Buffer.alloc(cap, 0x5a);
  await c.call('emu.memWrite', { vf, address: 0x100000, data: b64(filled) });
  for (const [address, length] of [[0x100000 + cap, 1], [0x7000_0000, 4096], [0x100000 + cap - 10, 20]] as const) {
    const error = await c.callError('emu.memWrite', { vf, address, data: b64(Buffer.alloc(length, 0xa5)) });
    t.is(error.code, -33009);
    t.is(error.data?.code, 'DEVICE_ACCESS');
    t.regex(error.data?.detail ?? '', /maxGuestMemoryBytes/);
  }
  // Nothing of the refused writes landed, not even their part over backed pages.
  t.true(Buffer.from((await c.call('emu.memRead', { vf, address: 0x100000, length: cap })).data, 'base64').equals(filled));
  t.true(Buffer.from((await c.call('emu.memRead', { vf, address: 0x100000 + cap, length: 16 })).data, 'base64').equals(Buffer.alloc(16)));
  // Backed pages can still be written.
  await c.call('emu.memWrite', { vf, address: 0x100000 + 4096, data: b64(Buffer.alloc(4096, 0x11)) });
  // A reset is the device's; guest memory is the host's: it stays, and so does the cap.
  await c.call('vf.reset', { vf });
  t.true(Buffer.from((await c.call('emu.memRead', { vf, address: 0x100000, length: 16 })).data, 'base64').equals(Buffer.alloc(16, 0x5a)));
  t.is((await c.callError('emu.memWrite', { vf, address: 0x200000, data: b64(Buffer.alloc(1)) })).data?.code, 'DEVICE_ACCESS');
  t.is((await c.call('vf.getState', { vf })).state, 'RUNNING');
});

// ---------------------------------------------------------------- 3. the launcher

interface Launched {
  readonly launcherPid: number;
  readonly agentPid: number;
  readonly port: number;
  readonly lines: string[];
  /** Resolves when every process holding the launcher's stdout has closed it: the launcher and the agent have exited. */
  readonly allExited: Promise<void>;
}

async function launch(t: ExecutionContext, node: string, env: NodeJS.ProcessEnv): Promise<Launched> {
  const dir = ownTempDir(t);
  const config = join(dir, 'config.json');
  writeFileSync(config, JSON.stringify({ listen: ['tcp://127.0.0.1:0'], drivers: [{ driver: 'blob-bench', options: { vfCount: 1, stateBytes: 4096 } }] }));
  const launcher = spawn(node, [LAUNCHER, '--config', config], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const lines: string[] = [];
  let stderr = '';
  launcher.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const allExited = new Promise<void>((resolve) => launcher.stdout.once('end', resolve));
  let agentPid = 0;
  t.teardown(() => {
    // Only if the test failed: the agent this test started must not outlive it either.
    if (agentPid !== 0 && isRunning(agentPid)) process.kill(agentPid, 'SIGKILL');
  });
  const listening = await new Promise<{ pid: number; listen: string[] }>((resolve, reject) => {
    let partial = '';
    launcher.stdout.on('data', (d: Buffer) => {
      partial += d.toString();
      const split = partial.split('\n');
      partial = split.pop() ?? '';
      for (const line of split) {
        lines.push(line);
        const entry = parseLogLine(line);
        if (entry.msg === 'listening' && entry.pid !== undefined && entry.listen !== undefined) resolve({ pid: entry.pid, listen: entry.listen });
      }
    });
    launcher.once('exit', (code) => reject(new Error(`the launcher exited with ${code} before the agent listened: ${stderr}`)));
  });
  agentPid = listening.pid;
  const port = Number(/:(\d+)$/.exec(listening.listen[0] ?? '')?.[1]);
  return { launcherPid: launcher.pid ?? 0, agentPid, port, lines, allExited };
}

function parseLogLine(line: string): { msg?: string; pid?: number; listen?: string[] } {
  try {
    return JSON.parse(line) as { msg?: string; pid?: number; listen?: string[] };
  } catch {
    return {};
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A child reparented to an init that does not reap it stays a zombie: it is not running.
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function portAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}

async function killLauncherAndExpectAgentGone(t: ExecutionContext, launched: Launched): Promise<void> {
  t.not(launched.agentPid, launched.launcherPid, 'the launcher took the child path');
  t.true(await portAccepts(launched.port));
  process.kill(launched.launcherPid, 'SIGKILL');
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), DEADLINE_MS); });
  const outcome = await Promise.race([launched.allExited.then(() => 'exited' as const), deadline]);
  clearTimeout(timer);
  t.is(outcome, 'exited', `the agent outlived its launcher by ${DEADLINE_MS} ms`);
  t.false(isRunning(launched.agentPid));
  t.false(await portAccepts(launched.port), 'the port is still served');
  const messages = launched.lines.map((l) => parseLogLine(l).msg);
  t.true(messages.includes('launcher gone; stopping'));
  t.true(messages.includes('stopped'), 'the agent stopped gracefully');
}

test('3: SIGKILL of the launcher (child path forced with VFMIGD_FORCE_CHILD=1) stops the agent it started', async (t) => {
  const launched = await launch(t, process.execPath, { VFMIGD_FORCE_CHILD: '1' });
  await killLauncherAndExpectAgentGone(t, launched);
});

/** A `node` on PATH older than 24, as the launcher finds on a host with an old distribution Node. */
function olderNodeOnPath(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, 'node');
    if (dir === '' || !existsSync(candidate) || !statSync(candidate).isFile()) continue;
    try {
      const major = Number(/^v(\d+)/.exec(execFileSync(candidate, ['--version'], { encoding: 'utf8' }))?.[1]);
      if (major < 24) return candidate;
    } catch {
      // not runnable
    }
  }
  return undefined;
}

const olderNode = olderNodeOnPath();
(olderNode === undefined ? test.skip : test)(`3: with an older Node on PATH (${olderNode ?? 'none found'}), the launcher runs the agent as a child that dies with it`, async (t) => {
  const launched = await launch(t, olderNode ?? 'node', {});
  await killLauncherAndExpectAgentGone(t, launched);
});

// ---------------------------------------------------------------- 4. the Unix socket lock

function plantLock(socket: string, pid: number): void {
  writeFileSync(`${socket}.lock`, `${pid}\n`);
  // Planted a while ago: not the lock of an agent in the middle of starting.
  const when = (Date.now() - 60_000) / 1000;
  utimesSync(`${socket}.lock`, when, when);
}

function unixConfig(socket: string): AgentOptions['config'] {
  return { listen: ['tcp://127.0.0.1:0', `unix:${socket}`], drivers: [{ driver: 'blob-bench', options: { vfCount: 1, stateBytes: 4096 } }] };
}

test('4: a planted lock naming a live process that is not an agent (PID 1) does not stop the agent from starting', async (t) => {
  const dir = ownTempDir(t);
  const socket = join(dir, 'vfmigd.sock');
  plantLock(socket, 1);
  const agent = await agentFor(t, { config: unixConfig(socket) });
  t.is(readFileSync(`${socket}.lock`, 'utf8').trim(), String(agent.process.pid));
  const c = await RpcClient.connect({ path: socket });
  t.teardown(() => c.destroy());
  t.is((await c.call('vf.list', {})).vfs.length, 1);
});

test('4: the stale socket of a killed agent under a lock rewritten to PID 1 is replaced too', async (t) => {
  const dir = ownTempDir(t);
  const socket = join(dir, 'vfmigd.sock');
  const crashed = await startAgentProcess({ config: unixConfig(socket) });
  t.teardown(() => rmSync(crashed.dir, { recursive: true, force: true }));
  crashed.kill();
  await crashed.stop();
  t.true(existsSync(socket), 'SIGKILL left the socket file');
  plantLock(socket, 1);
  const agent = await agentFor(t, { config: unixConfig(socket) });
  const c = await RpcClient.connect({ path: socket });
  t.teardown(() => c.destroy());
  t.is((await c.call('vf.list', {})).vfs.length, 1);
  t.is(readFileSync(`${socket}.lock`, 'utf8').trim(), String(agent.process.pid));
});

/** Runs an agent that is expected not to start; resolves to its exit code and output. */
function runToExit(configPath: string): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, [AGENT_MAIN, '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => { output += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { output += d.toString(); });
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, output })));
}

test('4: a second agent on the path of a live one is refused, and the first serves on', async (t) => {
  const dir = ownTempDir(t);
  const socket = join(dir, 'vfmigd.sock');
  const first = await agentFor(t, { config: unixConfig(socket) });
  const secondConfig = join(dir, 'second.json');
  writeFileSync(secondConfig, JSON.stringify(unixConfig(socket)));
  const second = await runToExit(secondConfig);
  t.is(second.code, 1);
  t.regex(second.output, /in use by a running agent/);
  t.is(readFileSync(`${socket}.lock`, 'utf8').trim(), String(first.process.pid));
  const c = await RpcClient.connect({ path: socket });
  t.teardown(() => c.destroy());
  t.is((await c.call('vf.list', {})).vfs.length, 1);
});
