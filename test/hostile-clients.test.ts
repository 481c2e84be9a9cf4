/**
 * What a hostile client on the management network can no longer do (the
 * probe of issue 6): hold every connection slot, hold a connection open
 * with a message that never ends or with nothing at all, or make the agent
 * hoard replies it never reads. And the Unix socket is never more open
 * than configured, whatever the umask.
 */
import test, { type ExecutionContext } from 'ava';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import type { Config } from '../schemas/types.ts';
import { startAgentProcess, tempDir, type AgentProcess } from './support/agent-process.ts';
import { rawConnect, type RawConnection } from './support/raw-connection.ts';
import { RpcClient } from './support/rpc-client.ts';

type Json = Record<string, unknown>;
const MiB = 1024 * 1024;

async function startAgent(t: ExecutionContext, config: Partial<Config>): Promise<AgentProcess> {
  const agent = await startAgentProcess({ config: { drivers: [{ driver: 'blob-bench', options: { vfCount: 1, stateBytes: 4096 } }], ...config } });
  t.teardown(async () => { await agent.stop(); });
  return agent;
}

function request(method: string, params: unknown, id: string | number): string {
  return `${JSON.stringify({ jsonrpc: '2.0', method, params, id })}\n`;
}

async function answers(t: ExecutionContext, agent: AgentProcess, localAddress?: string): Promise<boolean> {
  const c = await rawConnect(t, agent.tcp, localAddress);
  c.socket.write(request('vf.getState', { vf: 'blob0' }, 'probe'));
  const line = await c.nextLine();
  c.socket.destroy();
  return line !== undefined && (JSON.parse(line) as Json).id === 'probe' && 'result' in (JSON.parse(line) as Json);
}

test('one peer cannot take every connection slot: past maxConnectionsPerPeer it is refused, and other peers are still served', async (t) => {
  const agent = await startAgent(t, { limits: { maxConnections: 16, maxConnectionsPerPeer: 4 } });
  const held: RawConnection[] = [];
  for (let i = 0; i < 4; i += 1) held.push(await rawConnect(t, agent.tcp));
  const fifth = await rawConnect(t, agent.tcp);
  const refusal = JSON.parse((await fifth.nextLine()) ?? 'null') as Json;
  t.like(refusal, { id: null, error: { code: -32004, data: { code: 'TOO_MANY_CONNECTIONS', limit: 4 } } });
  t.regex(((refusal.error as Json).data as Json).detail as string, /from one peer/);
  await fifth.closed;
  // A refused client that keeps its side open does not keep the connection: it is not counted anywhere.
  const lingering = netConnect({ port: agent.tcp.port, host: agent.tcp.host, allowHalfOpen: true });
  lingering.on('error', () => undefined);
  t.teardown(() => lingering.destroy());
  // Its writes are taken until the agent lets go of the socket; the next one is answered with a reset.
  const poke = setInterval(() => { if (!lingering.destroyed) lingering.write(' '); }, 200);
  t.teardown(() => clearInterval(poke));
  await new Promise((resolve) => lingering.once('close', resolve));
  clearInterval(poke);
  // Another address of this machine is another peer.
  t.true(await answers(t, agent, '127.0.0.2'));
  // A slot freed is a slot back.
  held[0]?.socket.destroy();
  await held[0]?.closed;
  await waitFor(async () => answers(t, agent), 'a freed slot');
});

test('a message left unfinished is cut at messageTimeoutMs, even when its bytes trickle in', async (t) => {
  // The busy client below pauses 50 ms inside each message: far enough below the
  // limit that a stalled test process (2 shared cores, other agents starting) cannot make it look stuck.
  const agent = await startAgent(t, { limits: { messageTimeoutMs: 1500 } });
  const stalled = await rawConnect(t, agent.tcp);
  stalled.socket.write('{"jsonrpc":"2.0","method":"vf.list",');
  const trickle = await rawConnect(t, agent.tcp);
  trickle.socket.write('{"jsonrpc":"2.0",');
  const dripper = setInterval(() => { if (!trickle.socket.destroyed) trickle.socket.write(' '); }, 50);
  t.teardown(() => clearInterval(dripper));
  await stalled.closed;
  await trickle.closed;
  clearInterval(dripper);
  await agent.waitForLog('message unfinished for too long');
  // A client that keeps finishing messages is never cut, however long it stays.
  const busy = await rawConnect(t, agent.tcp);
  for (let i = 0; i < 8; i += 1) {
    busy.socket.write(request('vf.getState', { vf: 'blob0' }, i).slice(0, 20));
    await new Promise((resolve) => setTimeout(resolve, 50));
    busy.socket.write(request('vf.getState', { vf: 'blob0' }, i).slice(20));
    t.like(JSON.parse((await busy.nextLine()) ?? 'null'), { id: i });
  }
  t.false(busy.socket.destroyed);
});

test('a connection idle past idleTimeoutMs is closed; one that keeps calling is not', async (t) => {
  // 40× the gaps between calls (100 ms), so that a stalled test process (2 shared
  // cores, other agents starting) cannot make the busy connection look idle.
  const agent = await startAgent(t, { limits: { idleTimeoutMs: 4000 } });
  const c = await RpcClient.connect(agent.tcp);
  t.teardown(() => c.destroy());
  await c.call('vf.getState', { vf: 'blob0' });
  const idle = await rawConnect(t, agent.tcp);
  let closed = false;
  void idle.closed.then(() => { closed = true; });
  while (!closed) {
    await c.call('vf.getState', { vf: 'blob0' });
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  t.false(c.closed, 'the busy connection is still open');
  await agent.waitForLog('connection idle for too long');
});

function vmRss(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const match = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1] ?? 0) * 1024;
}

/**
 * The probe: clients that pipeline 4 MiB emu.memRead calls and never read
 * the replies grew the agent by ~350 MB each (8 of them: 93 MB → 2.9 GB).
 * Now each such connection is closed once its unsent replies pass the
 * per-connection cap, the total stays under the total cap, and the agent
 * goes on serving others.
 */
test('clients that never read their replies are cut off at the unsent-bytes caps; the agent stays bounded and serves others', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const agent = await startAgent(t, {
    limits: { maxUnsentBytesPerConnection: 32 * MiB, maxUnsentBytesTotal: 96 * MiB },
    drivers: [{ driver: 'nvme-emu', options: { hostPort: true, vfs: [{ id: 'nvme0', bdf: '0000:3b:00.2', namespaces: [{ path: join(dir, 'ns1.img'), sizeBytes: MiB }] }] } }],
  });
  const pid = agent.process.pid ?? 0;
  const idle = vmRss(pid, 'VmRSS');
  const hogs: RawConnection[] = [];
  for (let i = 0; i < 8; i += 1) {
    const hog = await rawConnect(t, agent.tcp);
    hog.socket.pause();
    let text = '';
    for (let j = 0; j < 32; j += 1) text += request('emu.memRead', { vf: 'nvme0', address: j * 4 * MiB, length: 4 * MiB }, j);
    hog.socket.write(text);
    hogs.push(hog);
  }
  await Promise.all(hogs.map((h) => h.closed));
  const peak = vmRss(pid, 'VmHWM');
  t.log(`agent RSS: idle ${(idle / MiB).toFixed(0)} MiB, peak ${(peak / MiB).toFixed(0)} MiB with 8 clients not reading 32 × 4 MiB each (before the caps: ~2.9 GB)`);
  t.true(peak - idle < 768 * MiB, `the agent grew by ${((peak - idle) / MiB).toFixed(0)} MiB`);
  await Promise.any([agent.waitForLog('client does not read its replies'), agent.waitForLog('closing the connection that holds most')]);
  const c = await RpcClient.connect(agent.tcp);
  t.teardown(() => c.destroy());
  t.is((await c.call('vf.getState', { vf: 'nvme0' })).state, 'RUNNING');
});

test('a Unix socket is created with the configured mode (default 0660), whatever the umask, and its owner and group as configured', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'vfmigd.sock');
  const open = await startAgentProcess({ umask: 0, config: { listen: [`unix:${path}`], drivers: [{ driver: 'blob-bench' }] } });
  t.is(statSync(path).mode & 0o777, 0o660, 'umask 000 does not open the socket to everyone');
  await open.stop();
  const strict = await startAgentProcess({ umask: 0, config: { listen: [`unix:${path}`], unixSocket: { mode: '0600', group: 'root' }, drivers: [{ driver: 'blob-bench' }] } });
  t.teardown(async () => { await strict.stop(); });
  t.is(statSync(path).mode & 0o777, 0o600);
  t.is(statSync(path).gid, 0);
  const c = await RpcClient.connect({ path });
  t.teardown(() => c.destroy());
  t.is((await c.call('vf.list', {})).vfs.length, 1, 'the local principal holds admin by default');
});

async function waitFor(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
