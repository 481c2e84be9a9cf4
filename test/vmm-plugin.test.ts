/**
 * The VMM side, end to end: the QEMU out-of-band migration plugin
 * (vmm-plugin/build/libvfmigd-plugin.so), loaded and driven by a harness
 * that replays QEMU's own call sequence, against two real agent processes
 * while a guest runs a verifying workload on the VF. Also four VFs at once,
 * the cancel path, and the faults a VMM must survive: agent down, unknown
 * VF, agent killed mid-save, connection cut mid-load. Fault cases run the
 * AddressSanitizer build, so a leak or a memory error fails them.
 */
import test, { type ExecutionContext } from 'ava';
import { readFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startAgentProcess, tempDir, type AgentProcess } from './support/agent-process.ts';
import { ASAN_BUILD, runHarness, type HarnessRun } from './support/harness.ts';
import { copyGuestMemory } from './support/host-port.ts';
import { busyGuest, finishClean, pauseWithCommandsInFlight, startSide, vfConfig } from './support/migration-rig.ts';
import { RpcClient } from './support/rpc-client.ts';

const MiB = 1024 * 1024;

const tcpArg = (agent: AgentProcess, timeoutMs = 5000): string => `tcp:${agent.tcp.host}:${agent.tcp.port},timeout_ms=${timeoutMs}`;

function assertSucceeded(t: ExecutionContext, run: HarnessRun, devices: number): void {
  t.is(run.code, 0, `harness failed: ${run.stderr}${JSON.stringify(run.reports)}`);
  t.is(run.reports.length, devices);
  t.true(run.reports.every((r) => r.ok));
}

/** A clean failure: exit 1 (not a sanitizer's 23/24, not a signal), a negative return, a one-line reason. */
function assertCleanFailure(t: ExecutionContext, run: HarnessRun, op: string, reason: RegExp, withinMs: number): void {
  t.is(run.signal, null, 'no crash');
  t.is(run.code, 1, `exit code ${run.code}; stderr: ${run.stderr}`);
  const report = run.reports[0];
  t.false(report?.ok ?? true);
  t.is(report?.op, op);
  if (op !== 'init') t.true((report?.rc ?? 0) < 0, 'a negative errno');
  t.regex(run.stderr, /^vfmigd-plugin: /m);
  t.regex(run.stderr, reason);
  t.notRegex(run.stderr, /LeakSanitizer|AddressSanitizer|runtime error/, 'no leak, no memory error');
  t.true(run.elapsedMs < withinMs, `took ${run.elapsedMs.toFixed(0)} ms`);
}

test('QEMU migrates a busy NVMe VF through the plugin: every command completes exactly once, every byte verified', async (t) => {
  const dir = tempDir();
  const source = await startSide(t, [vfConfig(dir)]);
  const destination = await startSide(t, [vfConfig(dir)]);
  const bdf = vfConfig(dir).bdf;
  const guest = await busyGuest(source.portOf(bdf), 0x9e40);
  await pauseWithCommandsInFlight(t, guest.workload);

  const stream = join(dir, 'nvme0.stream');
  const saved = await runHarness({ mode: 'source', arg: tcpArg(source.agent), devices: [{ bdf, stream }] });
  assertSucceeded(t, saved, 1);
  t.is((await source.rpc.call('vf.getState', { vf: bdf })).state, 'STOP', 'QEMU leaves the source VF in STOP');
  const size = readFileSync(stream).readBigUInt64BE(0);
  t.is(Number(size), saved.reports[0]?.bytes ?? -1, 'the stream holds [be64 size][bytes] as QEMU writes it');

  await copyGuestMemory(source.portOf(bdf), destination.portOf(bdf), guest.nvme.memoryRegions());
  const loaded = await runHarness({ mode: 'destination', arg: tcpArg(destination.agent), devices: [{ bdf, stream }] });
  assertSucceeded(t, loaded, 1);
  t.is((await destination.rpc.call('vf.getState', { vf: bdf })).state, 'RUNNING');

  await guest.nvme.attach(destination.portOf(bdf));
  await finishClean(t, guest, 1500);
});

test('four VFs migrated at once from one harness process, one plugin handle each', async (t) => {
  const dir = tempDir();
  const vfs = [0, 1, 2, 3].map((i) => vfConfig(dir, i));
  const source = await startSide(t, vfs);
  const destination = await startSide(t, vfs);
  const guests = await Promise.all(vfs.map((vf, i) => busyGuest(source.portOf(vf.bdf), 0x4a00 + i)));
  for (const g of guests) await pauseWithCommandsInFlight(t, g.workload);

  const devices = vfs.map((vf) => ({ bdf: vf.bdf, stream: join(dir, `${vf.id}.stream`) }));
  assertSucceeded(t, await runHarness({ mode: 'source', arg: tcpArg(source.agent), devices }), 4);
  for (const [i, vf] of vfs.entries()) await copyGuestMemory(source.portOf(vf.bdf), destination.portOf(vf.bdf), guests[i]?.nvme.memoryRegions() ?? []);
  assertSucceeded(t, await runHarness({ mode: 'destination', arg: tcpArg(destination.agent), devices }), 4);

  await Promise.all(guests.map(async (g, i) => {
    await g.nvme.attach(destination.portOf(vfs[i]?.bdf ?? ''));
    await finishClean(t, g, 500);
  }));
});

test('cancel: after a partial save QEMU sets RUNNING again, and the source carries on with nothing lost', async (t) => {
  const dir = tempDir();
  const source = await startSide(t, [vfConfig(dir)]);
  const bdf = vfConfig(dir).bdf;
  const guest = await busyGuest(source.portOf(bdf), 0xc4c1);
  await pauseWithCommandsInFlight(t, guest.workload);

  const run = await runHarness({ build: ASAN_BUILD, mode: 'cancel', arg: tcpArg(source.agent), devices: [{ bdf }] });
  assertSucceeded(t, run, 1);
  t.is((await source.rpc.call('vf.getState', { vf: bdf })).state, 'RUNNING');
  t.false((await source.rpc.call('vf.pending', { vf: bdf })).streamOpen);
  await finishClean(t, guest, 1000);
});

test('fault: no agent at the address: init fails at once with a clear reason', async (t) => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  const run = await runHarness({ build: ASAN_BUILD, mode: 'source', arg: `127.0.0.1:${port},timeout_ms=2000`, devices: [{ bdf: '0000:3b:00.2', stream: join(tempDir(), 's') }] });
  assertCleanFailure(t, run, 'init', /unreachable/i, 5000);
});

test('fault: a BDF the agent does not know: init fails with the agent\'s reason', async (t) => {
  const agent = await startAgentProcess({ config: { drivers: [{ driver: 'blob-bench', options: {} }] } });
  t.teardown(async () => { await agent.stop(); });
  const run = await runHarness({ build: ASAN_BUILD, mode: 'source', arg: tcpArg(agent), devices: [{ bdf: '0000:99:00.1', stream: join(tempDir(), 's') }] });
  assertCleanFailure(t, run, 'init', /0000:99:00\.1/, 5000);
});

/** An agent whose one VF has an 8 MB state: a save or load takes several chunks. */
async function bigStateAgent(t: ExecutionContext): Promise<AgentProcess> {
  const agent = await startAgentProcess({ config: { limits: { maxStateBytes: 64 * MiB }, drivers: [{ driver: 'blob-bench', options: { vfCount: 1, stateBytes: 8 * MiB } }] } });
  t.teardown(async () => { await agent.stop(); });
  return agent;
}
const BLOB_BDF = '0000:5e:00.0';

test('fault: the agent killed in the middle of save: a negative return within the timeout, no crash, no leak', async (t) => {
  const agent = await bigStateAgent(t);
  const stream = join(tempDir(), 'blob.stream');
  const running = runHarness({
    build: ASAN_BUILD, mode: 'source', arg: tcpArg(agent, 2000), devices: [{ bdf: BLOB_BDF, stream }],
    extraArgs: ['--stall-after-chunks', '2', '--stall-ms', '1500'],
  });
  await waitUntil(async () => (await stateOf(agent)) === 'STOP_COPY');
  await sleep(200);
  agent.kill();
  assertCleanFailure(t, await running, 'save', /./, 10000);
});

test('fault: the connection cut in the middle of load: a negative return within the timeout, no crash, no leak', async (t) => {
  const source = await bigStateAgent(t);
  const destination = await bigStateAgent(t);
  const stream = join(tempDir(), 'blob.stream');
  assertSucceeded(t, await runHarness({ mode: 'source', arg: tcpArg(source), devices: [{ bdf: BLOB_BDF, stream }] }), 1);

  const proxy = await tcpProxy(destination.tcp.port);
  t.teardown(() => proxy.close());
  const running = runHarness({
    build: ASAN_BUILD, mode: 'destination', arg: `tcp:127.0.0.1:${proxy.port},timeout_ms=2000`, devices: [{ bdf: BLOB_BDF, stream }],
    extraArgs: ['--stall-after-chunks', '2', '--stall-ms', '1500'],
  });
  await waitUntil(async () => (await stateOf(destination)) === 'RESUMING');
  await sleep(200);
  proxy.cut();
  assertCleanFailure(t, await running, 'load', /./, 10000);
  // The destination VF is left in RESUMING with part of a stream and nothing applied,
  // until the VMM resets it (vf.reset) or leaves RESUMING, where the incomplete
  // state is refused and the VF stays as it was.
  t.is(await stateOf(destination), 'RESUMING');
});

async function stateOf(agent: AgentProcess): Promise<string> {
  const rpc = await RpcClient.connect(agent.tcp);
  try {
    return (await rpc.call('vf.getState', { vf: BLOB_BDF })).state;
  } finally {
    rpc.destroy();
  }
}

async function waitUntil(condition: () => Promise<boolean>, timeoutMs = 10000): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!(await condition())) {
    if (performance.now() > end) throw new Error('condition not met in time');
    await sleep(20);
  }
}

/** A TCP proxy to `port` whose connections can be cut at once, as a failing network would. */
async function tcpProxy(port: number): Promise<{ port: number; cut(): void; close(): void }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(port, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    cut: () => { for (const s of sockets) s.destroy(); },
    close: () => { server.close(); for (const s of sockets) s.destroy(); },
  };
}
