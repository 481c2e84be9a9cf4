/**
 * The transport as a client sees it, against real agent processes: TCP and
 * Unix listeners; framing that survives any packetisation; several requests
 * in flight on one connection; the limits (message size, connections,
 * batch length, requests in flight), each answered with its catalogued
 * error and never a silent reset; backpressure against a client that does
 * not read; the Unix socket lock against a second agent and after a crash;
 * and the command line (bad config, --help, --version).
 */
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../schemas/types.ts';
import { AGENT_MAIN, startAgentProcess, tempDir, type AgentProcess } from './support/agent-process.ts';
import { rawConnect } from './support/raw-connection.ts';
import { base64Of, RpcClient, checkResponseShape, type RpcAddress } from './support/rpc-client.ts';

type Json = Record<string, unknown>;
type Limits = NonNullable<Config['limits']>;

const MiB = 1024 * 1024;

async function startBlobAgent(t: ExecutionContext, options: { limits?: Limits; listen?: string[]; vfCount?: number; stateBytes?: number; p2p?: boolean } = {}): Promise<AgentProcess> {
  const config: Config = {
    ...(options.listen ? { listen: options.listen } : {}),
    ...(options.limits ? { limits: options.limits } : {}),
    drivers: [{ driver: 'blob-bench', options: { vfCount: options.vfCount ?? 2, stateBytes: options.stateBytes ?? 100000, p2p: options.p2p ?? true } }],
  };
  const agent = await startAgentProcess({ config });
  t.teardown(async () => { await agent.stop(); });
  return agent;
}

/** A temp dir removed when the test ends. */
function ownTempDir(t: ExecutionContext): string {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function client(t: ExecutionContext, address: RpcAddress): Promise<RpcClient> {
  const c = await RpcClient.connect(address);
  t.teardown(() => c.destroy());
  return c;
}

function parseChecked(t: ExecutionContext, line: string | undefined, method?: string): Json {
  t.truthy(line, 'expected a response line');
  const value = JSON.parse(line ?? 'null') as Json;
  t.notThrows(() => checkResponseShape(value, method), 'response must match the contract');
  return value;
}

function unixAddress(agent: AgentProcess): { path: string } {
  const unix = agent.listening.find((a) => a.startsWith('unix:'));
  if (unix === undefined) throw new Error(`no unix listener in ${agent.listening.join(', ')}`);
  return { path: unix.slice('unix:'.length) };
}

function request(method: string, params: unknown, id: string | number): string {
  return `${JSON.stringify({ jsonrpc: '2.0', method, params, id })}\n`;
}

// ---------------------------------------------------------------- listeners and framing

test('the agent serves on a TCP and a Unix socket at once', async (t) => {
  const dir = ownTempDir(t);
  const agent = await startBlobAgent(t, { listen: ['tcp://127.0.0.1:0', `unix:${join(dir, 'a.sock')}`] });
  t.is(agent.listening.length, 2);
  t.regex(agent.listening[0] ?? '', /^tcp:\/\/127\.0\.0\.1:\d+$/);
  t.not(agent.tcp.port, 0);
  t.is(agent.listening[1], `unix:${join(dir, 'a.sock')}`);
  for (const address of [agent.tcp, unixAddress(agent)]) {
    const c = await client(t, address);
    const list = await c.call('vf.list', {});
    t.deepEqual(list.vfs.map((v) => v.id), ['blob0', 'blob1']);
  }
  const info = await (await client(t, agent.tcp)).call('agent.info', {});
  t.deepEqual(info.listeners, agent.listening);
});

test('a request sent one byte at a time, with pauses, is answered (TCP and Unix)', async (t) => {
  const dir = ownTempDir(t);
  const agent = await startBlobAgent(t, { listen: ['tcp://127.0.0.1:0', `unix:${join(dir, 'a.sock')}`] });
  for (const address of [agent.tcp, unixAddress(agent)]) {
    const conn = await rawConnect(t, address);
    // A multi-byte UTF-8 id, so characters are split across packets too.
    const bytes = Buffer.from(request('vf.getState', { vf: 'blob0' }, 'é€😀-1'), 'utf8');
    for (let i = 0; i < bytes.length; i += 1) {
      conn.socket.write(bytes.subarray(i, i + 1));
      await sleep(2);
    }
    const r = parseChecked(t, await conn.nextLine(), 'vf.getState');
    t.deepEqual(r, { jsonrpc: '2.0', id: 'é€😀-1', result: { vf: 'blob0', state: 'RUNNING', value: 2 } });
  }
});

test('several requests in flight on one connection are each answered with their own id', async (t) => {
  const agent = await startBlobAgent(t, { stateBytes: 8 * MiB });
  const c = await client(t, agent.tcp);
  await c.call('vf.quiesce', { vf: 'blob0' });
  // A slow one (a 4 MiB slice) and fast ones, all on the wire at once; the
  // client matches by id and checks each result against its method schema.
  const [save, list, state, info, pending] = await Promise.all([
    c.call('vf.save', { vf: 'blob0', maxBytes: 4 * MiB, offset: 0 }),
    c.call('vf.list', {}),
    c.call('vf.getState', { vf: 'blob1' }),
    c.call('vf.get', { vf: 'blob1' }),
    c.call('vf.pending', { vf: 'blob0' }),
  ]);
  t.is(save.length, 4 * MiB);
  t.is(save.offset, 0);
  t.is(Buffer.from(base64Of(save.data), 'base64').length, 4 * MiB);
  t.is(list.vfs.length, 2);
  t.is(state.vf, 'blob1');
  t.is(info.id, 'blob1');
  t.true(pending.stopCopyBytes > 8 * MiB);
});

// ---------------------------------------------------------------- limits

test('a message over limits.maxMessageBytes gets MESSAGE_TOO_LARGE, then the connection closes; other connections go on', async (t) => {
  const agent = await startBlobAgent(t, { limits: { maxMessageBytes: 4096 } });
  const bystander = await client(t, agent.tcp);
  await bystander.call('vf.list', {});

  // Exactly the limit (without its newline) is accepted.
  const exact = await rawConnect(t, agent.tcp);
  const base = request('vf.getState', { vf: 'blob0' }, '').length - 1;
  const id = 'i'.repeat(4096 - base);
  const line = request('vf.getState', { vf: 'blob0' }, id);
  t.is(Buffer.byteLength(line) - 1, 4096);
  exact.socket.write(line);
  t.is(parseChecked(t, await exact.nextLine(), 'vf.getState').id, id);

  // One byte more, with and without a newline.
  for (const text of [request('vf.getState', { vf: 'blob0' }, `${id}i`), 'x'.repeat(5000)]) {
    const victim = await rawConnect(t, agent.tcp);
    victim.socket.write(text);
    const r = parseChecked(t, await victim.nextLine());
    t.like(r, { id: null, error: { code: -32001, message: 'Message too large', data: { code: 'MESSAGE_TOO_LARGE', limit: 4096 } } });
    await victim.closed;
    t.true(victim.events.includes('end'), `closed in order, not reset: ${victim.events.join(', ')}`);
    t.false(victim.events.some((e) => e.startsWith('error')), victim.events.join(', '));
  }

  // The agent still serves the connection it had and new ones.
  t.is((await bystander.call('vf.getState', { vf: 'blob0' })).state, 'RUNNING');
  t.is((await (await client(t, agent.tcp)).call('vf.list', {})).vfs.length, 2);
});

test('limits.maxConnections: one more connection gets TOO_MANY_CONNECTIONS and an orderly close, never a reset', async (t) => {
  const agent = await startBlobAgent(t, { limits: { maxConnections: 2 } });
  const a = await client(t, agent.tcp);
  const b = await client(t, agent.tcp);
  await a.call('vf.list', {});
  await b.call('vf.list', {});

  const third = await rawConnect(t, agent.tcp);
  const r = parseChecked(t, await third.nextLine());
  t.like(r, { id: null, error: { code: -32004, message: 'Too many connections', data: { code: 'TOO_MANY_CONNECTIONS', limit: 2 } } });
  await third.closed;
  t.true(third.events.includes('end'), third.events.join(', '));
  t.false(third.events.some((e) => e.startsWith('error')), `silent reset: ${third.events.join(', ')}`);

  // The two it serves are unaffected; once one goes, a new one is accepted.
  t.is((await b.call('vf.list', {})).vfs.length, 2);
  a.close();
  let accepted = false;
  for (let attempt = 0; attempt < 50 && !accepted; attempt += 1) {
    const next = await rawConnect(t, agent.tcp);
    next.socket.write(request('vf.list', {}, 'after'));
    const line = await next.nextLine(2000);
    if (line !== undefined && (JSON.parse(line) as Json).id === 'after') accepted = true;
    else await sleep(50);
    next.socket.destroy();
  }
  t.true(accepted, 'a connection was accepted after one of the two closed');
});

test('limits.maxBatchLength: a longer batch gets one BATCH_TOO_LARGE and none of it runs', async (t) => {
  const agent = await startBlobAgent(t, { limits: { maxBatchLength: 3 } });
  const c = await client(t, agent.tcp);
  const batch = [
    { jsonrpc: '2.0', method: 'vf.setState', params: { vf: 'blob0', state: 'STOP' }, id: 1 },
    { jsonrpc: '2.0', method: 'vf.list', id: 2 },
    { jsonrpc: '2.0', method: 'vf.list', id: 3 },
    { jsonrpc: '2.0', method: 'vf.quiesce', params: { vf: 'blob1' }, id: 4 },
  ];
  c.sendRaw(`${JSON.stringify(batch)}\n`);
  const r = await c.nextUnmatched();
  t.false(Array.isArray(r), 'one error, not a batch response');
  t.like(r as Json, { id: null, error: { code: -32002, message: 'Batch too large', data: { code: 'BATCH_TOO_LARGE', limit: 3 } } });
  t.is((await c.call('vf.getState', { vf: 'blob0' })).state, 'RUNNING', 'a request of the refused batch ran');
  t.is((await c.call('vf.getState', { vf: 'blob1' })).state, 'RUNNING', 'a request of the refused batch ran');
  // A batch of exactly the limit runs.
  c.sendRaw(`${JSON.stringify(batch.slice(1))}\n`);
  const ok = await c.nextUnmatched() as Json[];
  t.deepEqual(ok.map((x) => x.id), [2, 3, 4]);
  t.is((await c.call('vf.getState', { vf: 'blob1' })).state, 'STOP');
});

test('limits.maxInFlightPerConnection: requests over the limit wait, unread, until one finishes; none is refused', async (t) => {
  const agent = await startBlobAgent(t, { limits: { maxInFlightPerConnection: 2 }, stateBytes: 8 * MiB });
  const setup = await client(t, agent.tcp);
  await setup.call('vf.quiesce', { vf: 'blob0' });

  // Two slow requests and a third, in one packet: the third waits for room and then runs.
  const c = await rawConnect(t, agent.tcp);
  c.socket.write(request('vf.save', { vf: 'blob0', maxBytes: 4 * MiB, offset: 0 }, 's1')
    + request('vf.save', { vf: 'blob0', maxBytes: 4 * MiB, offset: 0 }, 's2')
    + request('vf.setState', { vf: 'blob1', state: 'STOP' }, 'x3'));
  const responses = new Map<unknown, Json>();
  for (let i = 0; i < 3; i += 1) {
    const r = parseChecked(t, await c.nextLine());
    responses.set(r.id, r);
  }
  t.is((responses.get('s1')?.result as Json | undefined)?.length, 4 * MiB);
  t.is((responses.get('s2')?.result as Json | undefined)?.length, 4 * MiB);
  t.like(responses.get('x3'), { result: { state: 'STOP' } });

  // A batch as long as the limit runs whole; a longer one is refused whole, before anything in it runs.
  c.socket.write(`${JSON.stringify([
    { jsonrpc: '2.0', method: 'vf.setState', params: { vf: 'blob1', state: 'RUNNING' }, id: 'b1' },
    { jsonrpc: '2.0', method: 'vf.list', id: 'b2' },
  ])}\n`);
  const batch = JSON.parse((await c.nextLine()) ?? 'null') as Json[];
  t.deepEqual(batch.map((x) => x.id).sort(), ['b1', 'b2']);
  for (const x of batch) t.notThrows(() => checkResponseShape(x, x.id === 'b1' ? 'vf.setState' : 'vf.list'));
  c.socket.write(`${JSON.stringify([
    { jsonrpc: '2.0', method: 'vf.setState', params: { vf: 'blob1', state: 'STOP' }, id: 'c1' },
    { jsonrpc: '2.0', method: 'vf.list' },
    { jsonrpc: '2.0', method: 'vf.list' },
  ])}\n`);
  t.like(parseChecked(t, await c.nextLine()), { id: null, error: { code: -32002, data: { code: 'BATCH_TOO_LARGE', limit: 2 } } });
  t.is((await setup.call('vf.getState', { vf: 'blob1' })).state, 'RUNNING', 'nothing of the refused batch ran');
});

test('a batch of notifications longer than the in-flight limit is refused with one error, not left unanswered', async (t) => {
  const agent = await startBlobAgent(t, { limits: { maxInFlightPerConnection: 4 } });
  const c = await rawConnect(t, agent.tcp);
  c.socket.write(`${JSON.stringify(Array.from({ length: 5 }, () => ({ jsonrpc: '2.0', method: 'vf.list' })))}\n`);
  t.like(parseChecked(t, await c.nextLine()), { id: null, error: { code: -32002, data: { code: 'BATCH_TOO_LARGE', limit: 4 } } });
  // Within the limit, notifications get nothing, as the specification says; the next request is answered.
  c.socket.write(`${JSON.stringify(Array.from({ length: 4 }, () => ({ jsonrpc: '2.0', method: 'vf.list' })))}\n${request('vf.getState', { vf: 'blob0' }, 'after')}`);
  t.like(parseChecked(t, await c.nextLine(), 'vf.getState'), { id: 'after', result: { state: 'RUNNING' } });
});

// ---------------------------------------------------------------- backpressure

function vmRss(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`${field}:\\s+(\\d+) kB`).exec(status);
  if (match === null) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/**
 * A client pipelines 126 `vf.save` calls of 4 MiB and does not read until
 * the agent has worked through everything it accepted, then reads
 * everything. The agent takes on at most `maxInFlightPerConnection` (32 by
 * default) at once and leaves the rest unread; once it cannot write, it
 * stops reading. So memory stays bounded by the in-flight limit, and no
 * response is lost or cut.
 *
 * "Worked through" is observed, not guessed: one more call per VF, on a
 * second connection, queues behind the pipelined ones on that VF's serial
 * queue, so its answer means every pipelined call the agent took on has
 * produced its response.
 *
 * The bound: the idle agent is ~100 MB. Each response is a 4 MiB slice,
 * i.e. a 5.6 MB base64 JSON line, and the agent holds a copy or two of each
 * response it cannot write yet: 32 × 5.6 MB × 2 ≈ 360 MB. An agent that
 * answered all 126 and queued the answers in memory would hold 126 × 5.6 MB
 * ≈ 700 MB of text alone, over 1 GiB with its copies (measured: 1.45 GiB).
 */
test('backpressure: 126 pipelined 4 MiB vf.save calls from a client that does not read stay bounded in memory; every call gets one intact answer', async (t) => {
  const agent = await startBlobAgent(t, { stateBytes: 4 * MiB + 4096, vfCount: 2 });
  const pid = agent.process.pid ?? 0;
  const side = await client(t, agent.tcp);
  const reference = new Map<string, string>();
  for (const vf of ['blob0', 'blob1']) {
    await side.call('vf.quiesce', { vf });
    const slice = await side.call('vf.save', { vf, maxBytes: 4 * MiB, offset: 0 });
    reference.set(vf, createHash('sha256').update(Buffer.from(base64Of(slice.data), 'base64')).digest('hex'));
  }
  const idle = vmRss(pid, 'VmRSS');

  const N = 126;
  const conn = await rawConnect(t, agent.tcp);
  conn.socket.pause();
  let text = '';
  for (let i = 0; i < N; i += 1) text += request('vf.save', { vf: `blob${i % 2}`, maxBytes: 4 * MiB, offset: 0 }, i);
  conn.socket.write(text);
  let peak = 0;
  const sample = (): void => { if (conn.socket.destroyed === false) peak = Math.max(peak, vmRss(pid, 'VmRSS')); };
  const sampler = setInterval(sample, 50);
  t.teardown(() => clearInterval(sampler));

  // Let the agent read the requests, then wait until it has done all it took on.
  await sleep(200);
  await Promise.all(['blob0', 'blob1'].map((vf) => side.call('vf.save', { vf, maxBytes: 1, offset: 0 })));
  await sleep(200);
  sample();
  const whileNotReading = peak;

  conn.socket.resume();
  const seen = new Set<number>();
  let intact = 0;
  let refused = 0;
  for (let i = 0; i < N; i += 1) {
    const line = await conn.nextLine(10000);
    if (line === undefined) break;
    const r = JSON.parse(line) as Json;
    const result = r.result as Json | undefined;
    const id = r.id as number;
    t.false(seen.has(id), `request ${id} answered twice`);
    seen.add(id);
    if (result === undefined) {
      refused += 1;
      t.fail(`request ${id} failed: ${JSON.stringify(r.error)}`);
      continue;
    }
    const bytes = Buffer.from(result.data as string, 'base64');
    const hash = createHash('sha256').update(bytes).digest('hex');
    if (result.length === 4 * MiB && bytes.length === 4 * MiB && hash === reference.get(`blob${id % 2}`)) intact += 1;
    else t.fail(`request ${id}: the slice is not the reference`);
  }
  clearInterval(sampler);
  const hwm = vmRss(pid, 'VmHWM');
  t.log(`agent RSS: idle ${(idle / MiB).toFixed(0)} MiB, ${(whileNotReading / MiB).toFixed(0)} MiB while the client did not read, peak (VmHWM) ${(hwm / MiB).toFixed(0)} MiB; ${intact} served, ${refused} refused`);
  t.is(seen.size, N, `responses received: ${seen.size} of ${N}; connection events: ${conn.events.join(', ')}`);
  t.is(refused, 0, 'requests over the in-flight limit wait; none is refused');
  t.is(intact, N);
  t.true(hwm < 1024 * MiB, `agent peak RSS ${(hwm / MiB).toFixed(0)} MiB is over 1 GiB`);
});

// ---------------------------------------------------------------- Unix socket lock

interface CliRun { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/**
 * Runs the agent's command line to its exit. An agent that starts serving
 * (its "listening" event) is killed at once: the signal tells the test it
 * started instead of exiting. The timer is only a last resort for a hang,
 * not a window the test depends on: a loaded machine may start slowly.
 */
function runCli(args: readonly string[], timeoutMs = 60000): Promise<CliRun> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [AGENT_MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (stdout.includes('"msg":"listening"')) child.kill('SIGKILL');
    });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    // 'close', not 'exit': only then has all of stdout and stderr been read.
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

function writeConfig(dir: string, name: string, config: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, typeof config === 'string' ? config : JSON.stringify(config));
  return path;
}

test('Unix socket lock: a second agent on the same path refuses to start; after the first is killed, a new one takes the path', async (t) => {
  const dir = ownTempDir(t);
  const sock = join(dir, 'a.sock');
  const config: Config = { listen: [`unix:${sock}`], drivers: [{ driver: 'blob-bench', options: { vfCount: 1, stateBytes: 4096 } }] };
  const first = await startAgentProcess({ config });
  t.teardown(() => first.kill());

  const second = await runCli(['--config', writeConfig(dir, 'second.json', config)]);
  t.is(second.signal, null, 'the second agent had to be killed: it did not exit on its own');
  t.not(second.code, 0);
  t.regex(second.stdout + second.stderr, /in use by a running agent/);
  t.true((second.stdout + second.stderr).includes(sock), 'the message names the socket path');

  // The first agent is untouched and still serves on the path.
  const c1 = await client(t, { path: sock });
  t.is((await c1.call('vf.list', {})).vfs.length, 1);
  t.is(readFileSync(`${sock}.lock`, 'utf8').trim(), String(first.process.pid));
  c1.destroy();

  // A crash leaves the socket and its lock behind...
  const exited = new Promise((resolve) => first.process.once('exit', resolve));
  first.kill();
  await exited;
  t.true(existsSync(sock), 'stale socket left by the killed agent');
  t.true(existsSync(`${sock}.lock`), 'stale lock left by the killed agent');

  // ...and a new agent replaces them and serves.
  const third = await startAgentProcess({ config });
  t.teardown(async () => { await third.stop(); });
  const c3 = await client(t, { path: sock });
  t.is((await c3.call('vf.list', {})).vfs.length, 1);
  t.is(readFileSync(`${sock}.lock`, 'utf8').trim(), String(third.process.pid));
});

// ---------------------------------------------------------------- command line

test('a config file with an unknown field makes the agent exit non-zero, naming the field\'s path', async (t) => {
  const dir = ownTempDir(t);
  for (const [config, path] of [
    [{ limits: { maxConections: 2 } }, '/limits/maxConections'],
    [{ listen: ['tcp://127.0.0.1:0'], bogus: true }, '/bogus'],
    [{ drivers: [{ driver: 'blob-bench', options: { vfcount: 2 } }] }, '/drivers/0/options/vfcount'],
  ] as const) {
    const run = await runCli(['--config', writeConfig(dir, 'bad.json', config)]);
    t.is(run.signal, null, 'killed: the agent started instead of refusing the config');
    t.not(run.code, 0, JSON.stringify(config));
    t.true(run.stderr.includes(path), `stderr does not name ${path}: exit ${String(run.code)}, stderr ${run.stderr}, stdout ${run.stdout.slice(0, 2000)}`);
  }
});

test('a config file with a field of the wrong type makes the agent exit non-zero, naming the field\'s path', async (t) => {
  const dir = ownTempDir(t);
  for (const [config, path] of [
    [{ limits: { maxConnections: '2' } }, '/limits/maxConnections'],
    [{ listen: 'tcp://127.0.0.1:0' }, '/listen'],
    [{ drivers: [{ driver: 'blob-bench', options: { vfCount: 'two' } }] }, '/drivers/0/options/vfCount'],
    [{ logLevel: 7 }, '/logLevel'],
  ] as const) {
    const run = await runCli(['--config', writeConfig(dir, 'bad.json', config)]);
    t.is(run.signal, null, 'killed: the agent started instead of refusing the config');
    t.not(run.code, 0, JSON.stringify(config));
    t.true(run.stderr.includes(path), `stderr does not name ${path}: exit ${String(run.code)}, stderr ${run.stderr}, stdout ${run.stdout.slice(0, 2000)}`);
  }
  const notJson = await runCli(['--config', writeConfig(dir, 'bad.json', '{"limits": ')]);
  t.not(notJson.code, 0);
  t.true(notJson.stderr.includes('bad.json'), notJson.stderr);
});

test('--help prints the usage and --version the package version, both exiting 0', async (t) => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  const help = await runCli(['--help']);
  t.is(help.code, 0);
  t.regex(help.stdout, /^Usage: vfmigd/);
  for (const flag of ['--config', '--listen', '--log-level', '--version']) t.true(help.stdout.includes(flag), flag);
  const version = await runCli(['--version']);
  t.is(version.code, 0);
  t.regex(version.stdout, new RegExp(`^vfmigd ${pkg.version.replace(/\./g, '\\.')}\\b`));
  const unknown = await runCli(['--bogus']);
  t.not(unknown.code, 0);
  t.regex(unknown.stderr, /bogus/);
});
