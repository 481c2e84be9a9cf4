/**
 * The VMM side, end to end: the QEMU out-of-band migration plugin
 * (vmm-plugin/build/libvfmigd-plugin.so), loaded and driven by a harness
 * that replays QEMU's own call sequence, against two real agent processes
 * while a guest runs a verifying workload on the VF, over TCP and over
 * mutual TLS, with the state bytes in attachment frames (the default when
 * the agent offers them) and in base64 (attachments=off, or an agent from
 * before attachments); a recording proxy (support/wire-recorder.ts) shows
 * which path every call took. Also four VFs at once, the cancel path, the
 * migration lease (the plugin renews it while QEMU is between calls, and
 * lets it run out once QEMU is gone), and the faults a VMM must survive: agent down, unknown VF, agent killed
 * mid-save, connection cut mid-load or mid-save, a frame longer than asked
 * for or cut short; over TLS also a refused or untrusted certificate, a
 * name the agent's certificate lacks, a silent peer and credential files
 * that cannot serve. Fault cases run the AddressSanitizer build, so a leak
 * or a memory error fails them.
 */
import test, { type ExecutionContext } from 'ava';
import { createPrivateKey } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NvmeEmuVf } from '../schemas/types.ts';
import { startAgentProcess, tempDir, type AgentProcess } from './support/agent-process.ts';
import { ASAN_BUILD, runHarness, stallPoint, waitUntil, type DeviceReport, type HarnessRun } from './support/harness.ts';
import { copyGuestMemory } from './support/host-port.ts';
import { busyGuest, finishClean, pauseWithCommandsInFlight, startSide, vfConfig, type Side } from './support/migration-rig.ts';
import { makePluginPki, PLUGIN_PRINCIPAL, startTlsSide, tlsAgentConfig, tlsArg, type PluginPki, type TlsArgOptions } from './support/plugin-tls.ts';
import { writeText } from './support/pki.ts';
import { RpcClient } from './support/rpc-client.ts';
import { pathsTaken, wireRecorder, type FrameFault, type WireRecorder } from './support/wire-recorder.ts';

const MiB = 1024 * 1024;

const tcpArg = (agent: AgentProcess, timeoutMs = 5000): string => `tcp:${agent.tcp.host}:${agent.tcp.port},timeout_ms=${timeoutMs}`;

/** A temp dir for one test's files, removed when the test ends (after its agents: teardowns run last first). */
function scratchDir(t: ExecutionContext): string {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

let pkiPromise: Promise<PluginPki> | undefined;
/** One PKI for the file: key generation is the slow part. */
function pki(): Promise<PluginPki> {
  pkiPromise ??= makePluginPki();
  return pkiPromise;
}

/** blob-bench's BDF for its VF number `i` (function numbers go 0-7, then the next device). */
const blobBdf = (i: number): string => `0000:5e:${(i >> 3).toString(16).padStart(2, '0')}.${i & 7}`;

/** The shared agent's VFs, each test its own: the tests of a file run at once. */
const SHARED = {
  tlsCutMidSave: blobBdf(0),
  tlsRoundTrip: [blobBdf(1), blobBdf(2), blobBdf(3)],
  brokenFrame: { tls: { length: blobBdf(4), cut: blobBdf(5) }, tcp: { length: blobBdf(6), cut: blobBdf(7) } },
  olderAgent: blobBdf(8),
  unix: blobBdf(9),
} as const;
const SHARED_SOCKET = join(tempDir('vfmigd-plugin-unix-'), 'agent.sock');

let tlsAgentPromise: Promise<AgentProcess> | undefined;
/**
 * One agent for the tests that need no agent of their own (an agent start
 * is the costly part of a test here, and a loaded machine feels every one),
 * on mutual TLS, loopback TCP and a Unix socket: ten VFs with an 8 MB
 * state; the handshake faults never reach a VF.
 */
function sharedTlsAgent(): Promise<AgentProcess> {
  tlsAgentPromise ??= (async () => {
    const config = tlsAgentConfig(await pki(), [{ driver: 'blob-bench', options: { vfCount: 10, stateBytes: 8 * MiB } }]);
    return startAgentProcess({ config: { ...config, listen: [...(config.listen ?? []), `unix:${SHARED_SOCKET}`], limits: { maxStateBytes: 64 * MiB } } });
  })();
  return tlsAgentPromise;
}

test.after.always(async () => {
  await (await tlsAgentPromise?.catch(() => undefined))?.stop();
  (await pkiPromise?.catch(() => undefined))?.remove();
});

type Transport = 'tcp' | 'tls';
const TRANSPORT_NAME: Record<Transport, string> = { tcp: 'TCP', tls: 'mutual TLS' };

async function startSideOver(t: ExecutionContext, transport: Transport, vfs: NvmeEmuVf[]): Promise<Side> {
  return transport === 'tls' ? startTlsSide(t, await pki(), vfs) : startSide(t, vfs);
}

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

/**
 * Commands the guest runs on the destination before the final check. The
 * TLS case runs fewer: what it adds is the plugin's transport, and the
 * destination's device runs the same whichever way the plugin talked.
 */
const MORE_COMMANDS: Record<Transport, number> = { tcp: 1500, tls: 300 };

/** How the plugin is to carry state bytes: in attachment frames (its default, the agent offering them) or in base64. */
type BytesPath = 'attachments' | 'base64';
const PATH_NAME: Record<BytesPath, string> = { attachments: 'state bytes in attachment frames', base64: 'state bytes in base64 (attachments=off)' };

/** A recording proxy in front of a side's agent, on its TCP or its mutual-TLS listener. */
async function recorderOver(t: ExecutionContext, transport: Transport, agent: AgentProcess, fault?: FrameFault): Promise<WireRecorder> {
  const p = await pki();
  const recorder = transport === 'tls'
    ? await wireRecorder({ host: '127.0.0.1', port: agent.tls?.port ?? 0 }, { tls: { server: p.agent, client: p.plugin, ca: p.ca }, fault })
    : await wireRecorder(agent.tcp, { fault });
  t.teardown(() => recorder.close());
  return recorder;
}

/** The plugin argument for a recorder in front of `agent`. */
async function argVia(transport: Transport, agent: AgentProcess, recorder: WireRecorder, path: BytesPath = 'attachments', timeoutMs = 5000): Promise<string> {
  const arg = transport === 'tls'
    ? tlsArg(agent, await pki(), { port: recorder.port, timeoutMs })
    : `tcp:127.0.0.1:${recorder.port},timeout_ms=${timeoutMs}`;
  return path === 'base64' ? `${arg},attachments=off` : arg;
}

/** Every connection the recorder saw took `path`, both ways, and at least one state byte went by it. */
function assertPathTaken(t: ExecutionContext, recorder: WireRecorder, path: BytesPath, side: 'source' | 'destination'): void {
  const paths = pathsTaken(recorder.connections);
  t.log(`${side}: ${JSON.stringify(paths)}`);
  t.true(paths.connections > 0, `${side}: the plugin went through the recorder`);
  t.is(paths.strayFrames, 0, `${side}: no frame outside vf.save results and vf.load requests`);
  if (path === 'attachments') {
    t.is(paths.agreed, paths.connections, `${side}: every connection agreed to attachments before anything else`);
    t.is(paths.base64Saves + paths.base64Loads, 0, `${side}: no state byte in base64`);
    t.true(side === 'source' ? paths.framedSaves > 0 : paths.framedLoads > 0, `${side}: the state went in frames`);
  } else {
    t.false(recorder.connections.some((c) => c.requests.some((r) => r.method === 'rpc.enableAttachments')), `${side}: attachments=off does not ask for them`);
    t.is(paths.framedSaves + paths.framedLoads, 0, `${side}: no frame`);
    t.true(side === 'source' ? paths.base64Saves > 0 : paths.base64Loads > 0, `${side}: the state went in base64`);
  }
}

const migratesBusyVf = test.macro({
  async exec(t, transport: Transport, path: BytesPath) {
    const dir = scratchDir(t);
    const source = await startSideOver(t, transport, [vfConfig(dir)]);
    const destination = await startSideOver(t, transport, [vfConfig(dir)]);
    const bdf = vfConfig(dir).bdf;
    const guest = await busyGuest(source.portOf(bdf), 0x9e40);
    await pauseWithCommandsInFlight(t, guest.workload);

    const stream = join(dir, 'nvme0.stream');
    const sourceWire = await recorderOver(t, transport, source.agent);
    const saved = await runHarness({ mode: 'source', arg: await argVia(transport, source.agent, sourceWire, path), devices: [{ bdf, stream }] });
    assertSucceeded(t, saved, 1);
    t.is((await source.rpc.call('vf.getState', { vf: bdf })).state, 'STOP', 'QEMU leaves the source VF in STOP');
    const size = readFileSync(stream).readBigUInt64BE(0);
    t.is(Number(size), saved.reports[0]?.bytes ?? -1, 'the stream holds [be64 size][bytes] as QEMU writes it');
    assertPathTaken(t, sourceWire, path, 'source');

    await copyGuestMemory(source.portOf(bdf), destination.portOf(bdf), guest.nvme.memoryRegions());
    const destinationWire = await recorderOver(t, transport, destination.agent);
    const loaded = await runHarness({ mode: 'destination', arg: await argVia(transport, destination.agent, destinationWire, path), devices: [{ bdf, stream }] });
    assertSucceeded(t, loaded, 1);
    t.is((await destination.rpc.call('vf.getState', { vf: bdf })).state, 'RUNNING');
    assertPathTaken(t, destinationWire, path, 'destination');

    // Over TLS the plugin's calls are its certificate's principal's; over loopback TCP, the local caller's.
    const expected = transport === 'tls' ? { principal: PLUGIN_PRINCIPAL, authentication: 'mtls' } : { principal: 'local', authentication: 'local' };
    for (const side of [source, destination]) t.like(await side.agent.waitForLog('vf.setState ok'), { audit: true, ...expected });

    await guest.nvme.attach(destination.portOf(bdf));
    await finishClean(t, guest, MORE_COMMANDS[transport]);
  },
  title: (_, transport: Transport, path: BytesPath) => `QEMU migrates a busy NVMe VF through the plugin over ${TRANSPORT_NAME[transport]}, ${PATH_NAME[path]}: every command completes exactly once, every byte verified`,
});

test(migratesBusyVf, 'tcp', 'attachments');
test(migratesBusyVf, 'tcp', 'base64');
test(migratesBusyVf, 'tls', 'attachments');
test(migratesBusyVf, 'tls', 'base64');

test('four VFs migrated at once from one harness process, one plugin handle each', async (t) => {
  const dir = scratchDir(t);
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
  const dir = scratchDir(t);
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

/** A loopback port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

test('PRE_COPY through the plugin: QEMU\'s RUNNING|SAVING saves while the VF runs and changes, SAVING the rest; the destination verifies every page', async (t) => {
  const config = { drivers: [{ driver: 'blob-bench' as const, options: { vfCount: 1, stateBytes: 2 * MiB, p2p: true, preCopy: true, dirtyBytesPerSecond: 8 * MiB } }] };
  const source = await startAgentProcess({ config });
  t.teardown(async () => { await source.stop(); });
  const destination = await startAgentProcess({ config });
  t.teardown(async () => { await destination.stop(); });
  const stream = join(scratchDir(t), 'blob.stream');
  const saved = await runHarness({ build: ASAN_BUILD, mode: 'source', arg: tcpArg(source), devices: [{ bdf: BLOB_BDF, stream }], extraArgs: ['--precopy-rounds', '4'] });
  assertSucceeded(t, saved, 1);
  const report = saved.reports[0] as DeviceReport & { precopyBytes: number };
  t.log(`${report.precopyBytes} bytes saved while the VF ran, ${(report.bytes ?? 0) - report.precopyBytes} in stop-and-copy`);
  t.true(report.precopyBytes >= 2 * MiB, 'the whole initial state went while the VF ran');
  t.true((report.bytes ?? 0) > report.precopyBytes, 'and what changed came in stop-and-copy');
  t.true((report.bytes ?? 0) - report.precopyBytes < 2 * MiB, 'which is less than the whole state');
  assertSucceeded(t, await runHarness({ build: ASAN_BUILD, mode: 'destination', arg: tcpArg(destination), devices: [{ bdf: BLOB_BDF, stream }] }), 1);
  // The destination's commit checked every page and the versions its header counts: it runs.
  t.is(await stateOf(destination), 'RUNNING');
});

test('fault: no agent at the address: init fails at once with a clear reason', async (t) => {
  const port = await closedPort();
  const run = await runHarness({ build: ASAN_BUILD, mode: 'source', arg: `127.0.0.1:${port},timeout_ms=2000`, devices: [{ bdf: '0000:3b:00.2', stream: join(scratchDir(t), 's') }] });
  assertCleanFailure(t, run, 'init', /unreachable/i, 5000);
});

test('fault: a BDF the agent does not know: init fails with the agent\'s reason', async (t) => {
  const agent = await startAgentProcess({ config: { drivers: [{ driver: 'blob-bench', options: {} }] } });
  t.teardown(async () => { await agent.stop(); });
  // The agent has just started, beside the rest of the file's agents: its first answers may take seconds on a loaded
  // machine. The bound still tells its answer from a wait for the timeout, which is twice as long.
  const run = await runHarness({ build: ASAN_BUILD, mode: 'source', arg: tcpArg(agent, 20000), devices: [{ bdf: '0000:99:00.1', stream: join(scratchDir(t), 's') }] });
  assertCleanFailure(t, run, 'init', /0000:99:00\.1/, 10000);
});

/** An agent whose one VF has an 8 MB state: a save or load takes several chunks. */
async function bigStateAgent(t: ExecutionContext): Promise<AgentProcess> {
  const agent = await startAgentProcess({ config: { limits: { maxStateBytes: 64 * MiB }, drivers: [{ driver: 'blob-bench', options: { vfCount: 1, stateBytes: 8 * MiB } }] } });
  t.teardown(async () => { await agent.stop(); });
  return agent;
}
const BLOB_BDF = blobBdf(0);

/** The ASan harness saving the big-state VF as QEMU's source, stopped after two chunks until `release`. */
async function saveStalled(t: ExecutionContext, agent: AgentProcess): Promise<{ running: Promise<HarnessRun>; release(): void }> {
  const dir = scratchDir(t);
  const stall = stallPoint(dir);
  const running = runHarness({
    build: ASAN_BUILD, mode: 'source', arg: tcpArg(agent, 2000), devices: [{ bdf: BLOB_BDF, stream: join(dir, 'blob.stream') }],
    extraArgs: stall.args,
  });
  await stall.reached(running);
  return { running, release: () => stall.release() };
}

test('fault: the agent killed in the middle of save: a negative return within the timeout, no crash, no leak', async (t) => {
  const agent = await bigStateAgent(t);
  const { running, release } = await saveStalled(t, agent);
  agent.kill();
  await agent.stop();   // gone, not only signalled, before the next save
  release();
  assertCleanFailure(t, await running, 'save', /./, 10000);
});

test('a session opened under the plugin (its save cancelled and a new one begun by another client): the next save is refused, never read as its own', async (t) => {
  const agent = await bigStateAgent(t);
  const { running, release } = await saveStalled(t, agent);
  // The same principal (local) on another connection: the agent lets it cancel and start again.
  const other = await RpcClient.connect(agent.tcp);
  t.teardown(() => other.destroy());
  await other.call('vf.setState', { vf: BLOB_BDF, state: 'RUNNING' });
  await other.call('vf.setState', { vf: BLOB_BDF, state: 'STOP_COPY' });
  t.not((await other.call('vf.get', { vf: BLOB_BDF })).session, null);
  release();
  // Refused because the plugin named its own session: without that it would have read on in the new stream.
  assertCleanFailure(t, await running, 'save', /SESSION_UNKNOWN/, 10000);
  // Then QEMU cancels, as after any failed save: the source runs on, whoever had stopped it since.
  t.like(await other.call('vf.get', { vf: BLOB_BDF }), { state: 'RUNNING', session: null });
});

/**
 * Leases (issue 8 §1): an agent whose migrations hold a lease of LEASE_MS
 * unless a call asks for another. The plugin talks to it over mutual TLS,
 * as its certificate's principal, and the test over loopback TCP as
 * `local`: not the migration's owner, so the test's own calls (vf.getState
 * included) extend no lease, and whatever keeps one alive is the plugin.
 */
const LEASE_MS = 1500;
/** Enough for a save of several chunks, stalled after two; small, since these tests run beside many others. */
const LEASE_STATE_BYTES = 4 * MiB;
const LEASE_VFS = { renewed: blobBdf(0), abandoned: blobBdf(1), reconnected: blobBdf(2) } as const;
let leaseAgentPromise: Promise<AgentProcess> | undefined;
function leaseAgent(): Promise<AgentProcess> {
  leaseAgentPromise ??= (async () => {
    const config = tlsAgentConfig(await pki(), [{ driver: 'blob-bench', options: { vfCount: 3, stateBytes: LEASE_STATE_BYTES } }]);
    return startAgentProcess({ config: { ...config, leases: { defaultMs: LEASE_MS } } });
  })();
  return leaseAgentPromise;
}
test.after.always(async () => { await (await leaseAgentPromise?.catch(() => undefined))?.stop(); });

/** The agent's view of a VF, asked as `local`. */
async function migrationOf(rpc: RpcClient, bdf: string): Promise<{ state: string; migration: { owner: string; role: string; lease: { leaseMs: number; expiresAt: string } | null; stranded: unknown } | null }> {
  const { state, migration } = await rpc.call('vf.get', { vf: bdf });
  return { state, migration };
}

interface AuditedCall { readonly audit?: boolean; readonly method?: string; readonly vf?: string; readonly outcome?: string; readonly principal?: string; readonly conn?: number }

/** The plugin's calls on VF `id` that the agent granted (`method`, if given), from its audit lines. */
function pluginCallsOn(agent: AgentProcess, id: string, method?: string): AuditedCall[] {
  return agent.logs.filter((line) => line.includes('"audit":true')).map((line) => JSON.parse(line) as AuditedCall)
    .filter((e) => e.vf === id && e.outcome === 'ok' && e.principal === PLUGIN_PRINCIPAL && (method === undefined || e.method === method));
}

/** How many of the plugin's renewals of VF `id` the agent has granted. */
function renewalsOf(agent: AgentProcess, id: string): number {
  return pluginCallsOn(agent, id, 'vf.renewLease').length;
}

test('lease: QEMU between calls for three leases (the harness stalled mid-save, as while RAM moves): the plugin renews, the VF stays in its migration under its lease, and the migration completes; once the harness is gone the lease runs out', async (t) => {
  const agent = await leaseAgent();
  const bdf = LEASE_VFS.renewed;
  const rpc = await RpcClient.connect(agent.tcp);
  t.teardown(() => rpc.destroy());
  const dir = scratchDir(t);
  const stream = join(dir, 'blob.stream');
  const stall = stallPoint(dir);
  // No lease_ms: the agent's leases.defaultMs applies, and the plugin learns it from its first renewal.
  const running = runHarness({ build: ASAN_BUILD, mode: 'source', arg: tlsArg(agent, await pki()), devices: [{ bdf, stream }], extraArgs: stall.args });
  await stall.reached(running);
  // The plugin names the VF by the agent's id (from vf.get at init), and so does the audit log.
  const { id } = await rpc.call('vf.get', { vf: bdf });
  const renewalsBefore = renewalsOf(agent, id);
  const first = await migrationOf(rpc, bdf);
  t.like(first, { state: 'STOP_COPY', migration: { owner: PLUGIN_PRINCIPAL, role: 'source', stranded: null, lease: { leaseMs: LEASE_MS } } });
  // QEMU makes no call for three leases; the agent is asked along the way, each answer the same.
  const stalledAt = performance.now();
  let last = first;
  while (performance.now() - stalledAt < 3 * LEASE_MS) {
    await sleep(LEASE_MS / 4);
    t.is((await rpc.call('vf.getState', { vf: bdf })).state, 'STOP_COPY', 'the source VF is still stopped mid-save');
    last = await migrationOf(rpc, bdf);
    t.like(last, { state: 'STOP_COPY', migration: { owner: PLUGIN_PRINCIPAL, stranded: null, lease: { leaseMs: LEASE_MS } } }, 'still in its migration, under its lease');
  }
  const renewals = renewalsOf(agent, id) - renewalsBefore;
  t.log(`${renewals} renewals in ${(performance.now() - stalledAt).toFixed(0)} ms with no op`);
  t.true(renewals >= 3, 'the plugin renewed the lease, a third of a lease apart');
  t.true(Date.parse(last.migration?.lease?.expiresAt ?? '') - Date.parse(first.migration?.lease?.expiresAt ?? '') >= 2 * LEASE_MS, 'each renewal moved the deadline on');

  stall.release();
  const saved = await running;
  assertSucceeded(t, saved, 1);
  t.true((saved.reports[0]?.bytes ?? 0) > LEASE_STATE_BYTES, 'the whole state was saved');
  t.is(saved.stderr, '');
  // QEMU is gone: nothing renews, and the lease of the source, read to the end, leaves it stranded (stopped).
  await waitUntil(async () => (await migrationOf(rpc, bdf)).migration?.stranded != null, 10 * LEASE_MS);
  t.like(await migrationOf(rpc, bdf), { state: 'STOP', migration: { lease: null } });
  // The destination (the VF the state came from) takes it under a new lease and runs: the migration is over.
  assertSucceeded(t, await runHarness({ build: ASAN_BUILD, mode: 'destination', arg: tlsArg(agent, await pki()), devices: [{ bdf, stream }] }), 1);
  t.like(await migrationOf(rpc, bdf), { state: 'RUNNING', migration: null });
});

test('lease: QEMU killed (SIGKILL) mid-migration, after a quiesce and part of the save: nothing renews, and the lease returns the source VF to RUNNING', async (t) => {
  const agent = await leaseAgent();
  const bdf = LEASE_VFS.abandoned;
  const rpc = await RpcClient.connect(agent.tcp);
  t.teardown(() => rpc.destroy());
  const dir = scratchDir(t);
  const stall = stallPoint(dir);
  const kill = new AbortController();
  // lease_ms: the plugin asks for its own lease, shorter than the agent's default.
  const arg = `${tlsArg(agent, await pki())},lease_ms=${LEASE_MS / 2}`;
  const running = runHarness({ build: ASAN_BUILD, mode: 'source', arg, devices: [{ bdf, stream: join(dir, 'blob.stream') }], extraArgs: stall.args, signal: kill.signal });
  await stall.reached(running);
  t.like(await migrationOf(rpc, bdf), { state: 'STOP_COPY', migration: { owner: PLUGIN_PRINCIPAL, role: 'source', lease: { leaseMs: LEASE_MS / 2 } } });
  t.not((await rpc.call('vf.get', { vf: bdf })).session, null, 'part of the state has been read');
  kill.abort();
  const run = await running;
  t.is(run.signal, 'SIGKILL');
  const killedAt = performance.now();
  // Polled as `local`, which extends no lease of the plugin's principal.
  await waitUntil(async () => (await rpc.call('vf.getState', { vf: bdf })).state === 'RUNNING', 20 * LEASE_MS);
  t.log(`RUNNING again ${(performance.now() - killedAt).toFixed(0)} ms after the kill`);
  t.like(await rpc.call('vf.get', { vf: bdf }), { state: 'RUNNING', migration: null, session: null });
  t.false((await rpc.call('vf.pending', { vf: bdf })).streamOpen);
});

test('lease: the connection cut while QEMU is between calls: the next renewal reconnects (a new handshake), and the save goes on on the new connection to the end', async (t) => {
  const agent = await leaseAgent();
  const bdf = LEASE_VFS.reconnected;
  const rpc = await RpcClient.connect(agent.tcp);
  t.teardown(() => rpc.destroy());
  const { id } = await rpc.call('vf.get', { vf: bdf });
  const proxy = await tcpProxy(agent.tls?.port ?? 0);
  t.teardown(() => proxy.close());
  const dir = scratchDir(t);
  const stall = stallPoint(dir);
  const running = runHarness({
    build: ASAN_BUILD, mode: 'source', arg: tlsArg(agent, await pki(), { port: proxy.port }), devices: [{ bdf, stream: join(dir, 'blob.stream') }],
    extraArgs: stall.args,
  });
  await stall.reached(running);
  proxy.cut();
  const before = pluginCallsOn(agent, id);
  await waitUntil(async () => renewalsOf(agent, id) > before.filter((e) => e.method === 'vf.renewLease').length, 10 * LEASE_MS);
  const renewal = pluginCallsOn(agent, id, 'vf.renewLease').at(-1);
  t.false(before.some((e) => e.conn === renewal?.conn), 'the renewal after the cut came on a connection of its own');
  t.like(await migrationOf(rpc, bdf), { state: 'STOP_COPY', migration: { owner: PLUGIN_PRINCIPAL, stranded: null, lease: { leaseMs: LEASE_MS } } });
  stall.release();
  const run = await running;
  assertSucceeded(t, run, 1);
  t.true((run.reports[0]?.bytes ?? 0) > LEASE_STATE_BYTES, 'the whole state was saved');
  t.is(run.stderr, '', 'nothing failed that QEMU saw');
  t.is((await rpc.call('vf.getState', { vf: bdf })).state, 'STOP');
});

/**
 * For a test that cuts the connection under QEMU's next op: a lease of ten
 * minutes (the agent's default leases.maxMs), so that no renewal comes
 * during the stall (the first is due a third of it after the last call). A
 * renewal's request would meet the cut instead, and the next op would then
 * go on, rightly, on a new connection; these tests are about an op that
 * meets the cut.
 */
const QUIET_LEASE = ',lease_ms=600000';

test('fault: the connection cut in the middle of load: a negative return within the timeout, no crash, no leak', async (t) => {
  const source = await bigStateAgent(t);
  const destination = await bigStateAgent(t);
  const dir = scratchDir(t);
  const stream = join(dir, 'blob.stream');
  assertSucceeded(t, await runHarness({ mode: 'source', arg: tcpArg(source), devices: [{ bdf: BLOB_BDF, stream }] }), 1);

  const proxy = await tcpProxy(destination.tcp.port);
  t.teardown(() => proxy.close());
  const stall = stallPoint(dir);
  const running = runHarness({
    build: ASAN_BUILD, mode: 'destination', arg: `tcp:127.0.0.1:${proxy.port},timeout_ms=2000${QUIET_LEASE}`, devices: [{ bdf: BLOB_BDF, stream }],
    extraArgs: stall.args,
  });
  await stall.reached(running);
  t.is(await stateOf(destination), 'RESUMING');
  proxy.cutAtNextRequest();
  stall.release();
  assertCleanFailure(t, await running, 'load', /./, 10000);
  // The destination VF is left in RESUMING with part of a stream and nothing applied,
  // until the VMM resets it (vf.reset) or leaves RESUMING, where the incomplete
  // state is refused and the VF stays as it was.
  t.is(await stateOf(destination), 'RESUMING');
});

/** The failure is reported once, by the op that failed, and shows no key or certificate. */
function assertOneLine(t: ExecutionContext, run: HarnessRun): void {
  t.is(run.stderr.match(/^vfmigd-plugin: /gm)?.length ?? 0, 1, `one line: ${run.stderr}`);
  t.notRegex(run.stderr, /PRIVATE KEY|BEGIN CERTIFICATE/, 'no key or certificate material');
}

/** The ASan harness over TLS against the shared agent, whose init is expected to fail. */
async function initOverSharedTls(t: ExecutionContext, options: TlsArgOptions): Promise<HarnessRun> {
  const agent = await sharedTlsAgent();
  return runHarness({ build: ASAN_BUILD, mode: 'source', arg: tlsArg(agent, await pki(), { timeoutMs: 2000, ...options }), devices: [{ bdf: BLOB_BDF, stream: join(scratchDir(t), 's') }] });
}

test('over TLS with servername= (a DNS SAN, sent as SNI, while the host is an IP): three VFs at once, one handle and TLS context each, 8 MB states saved and loaded back in 1 MiB chunks; clean sessions, no leak', async (t) => {
  const agent = await sharedTlsAgent();
  const arg = tlsArg(agent, await pki(), { servername: 'localhost' });
  const dir = scratchDir(t);
  const devices = SHARED.tlsRoundTrip.map((bdf, i) => ({ bdf, stream: join(dir, `blob${i + 1}.stream`) }));
  const saved = await runHarness({ build: ASAN_BUILD, mode: 'source', arg, devices });
  assertSucceeded(t, saved, devices.length);
  t.true(saved.reports.every((r) => (r.bytes ?? 0) > 8 * MiB));
  // Each destination is the VF it came from: the agent checks the whole state (CRC32C) before it applies it.
  const loaded = await runHarness({ build: ASAN_BUILD, mode: 'destination', arg, devices });
  assertSucceeded(t, loaded, devices.length);
  t.deepEqual(loaded.reports.map((r) => r.bytes), saved.reports.map((r) => r.bytes));
  t.is(saved.stderr + loaded.stderr, '');
});

test('fault over TLS: no agent at the address: init fails at once, one clear line', async (t) => {
  const run = await runHarness({ build: ASAN_BUILD, mode: 'source', arg: tlsArg(undefined, await pki(), { port: await closedPort(), timeoutMs: 2000 }), devices: [{ bdf: BLOB_BDF, stream: join(scratchDir(t), 's') }] });
  assertCleanFailure(t, run, 'init', /agent unreachable at tls:127\.0\.0\.1:\d+: Connection refused/, 5000);
  assertOneLine(t, run);
});

test('fault over TLS: the agent refuses the plugin\'s certificate (another CA): init fails with one clear line, and the agent audits why', async (t) => {
  const run = await initOverSharedTls(t, { client: (await pki()).outsider });
  assertCleanFailure(t, run, 'init', /rpc\.enableAttachments to tls:127\.0\.0\.1:\d+: the agent closed the TLS connection before its first response \(as it does when it refuses this plugin's certificate/, 5000);
  assertOneLine(t, run);
  const agent = await sharedTlsAgent();
  await waitUntil(async () => agent.logs.some((l) => /"reason":"client certificate refused: (UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT)/.test(l)));
  t.pass();
});

test('fault over TLS: the plugin does not trust the agent\'s certificate (another CA): the handshake fails, one clear line', async (t) => {
  // The agent sends its CA after its certificate (OpenSSL builds the chain from its store), hence "self-signed".
  const run = await initOverSharedTls(t, { ca: (await pki()).otherCa });
  assertCleanFailure(t, run, 'init', /agent unreachable at tls:127\.0\.0\.1:\d+: TLS handshake failed: certificate verify failed \(self-signed certificate in certificate chain\)/, 5000);
  assertOneLine(t, run);
});

test('fault over TLS: a servername the agent\'s certificate does not carry: the handshake fails, one clear line naming it', async (t) => {
  const run = await initOverSharedTls(t, { servername: 'dpu-9.mgmt' });
  assertCleanFailure(t, run, 'init', /TLS handshake failed: certificate verify failed \(hostname mismatch: the agent's certificate does not name "dpu-9\.mgmt"\)/, 5000);
  assertOneLine(t, run);
});

test('fault over TLS: tls: pointed at the agent\'s plain TCP listener: the handshake fails, one clear line', async (t) => {
  const run = await initOverSharedTls(t, { port: (await sharedTlsAgent()).tcp.port });
  assertCleanFailure(t, run, 'init', /agent unreachable at tls:127\.0\.0\.1:\d+: TLS handshake (failed: wrong version number \(the peer does not speak TLS|timed out)/, 5000);
  assertOneLine(t, run);
});

test('fault over TLS: a peer that accepts and never answers: the handshake gives up at timeout_ms', async (t) => {
  const held = new Set<Socket>();
  const server = createServer((socket) => { held.add(socket); socket.on('error', () => undefined); });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => { for (const s of held) s.destroy(); server.close(); });
  const port = (server.address() as { port: number }).port;
  const run = await runHarness({ build: ASAN_BUILD, mode: 'source', arg: tlsArg(undefined, await pki(), { port, timeoutMs: 500 }), devices: [{ bdf: BLOB_BDF, stream: join(scratchDir(t), 's') }] });
  assertCleanFailure(t, run, 'init', /agent unreachable at tls:127\.0\.0\.1:\d+: TLS handshake timed out/, 4000);
  assertOneLine(t, run);
  t.true(run.elapsedMs >= 500, 'it waited out the handshake');
});

test('fault over TLS: credential files that cannot serve fail init, naming the file and never showing what is in it', async (t) => {
  const p = await pki();
  const dir = scratchDir(t);
  const encryptedPem = createPrivateKey(readFileSync(p.plugin.key)).export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'not-given' });
  const encrypted = writeText(dir, 'encrypted.key', encryptedPem.toString());
  const cases: [string, TlsArgOptions, RegExp][] = [
    ['a missing key', { client: { cert: p.plugin.cert, key: join(dir, 'missing.key') } }, /key=\S+missing\.key: cannot read it: No such file or directory/],
    ['the key of another certificate', { client: { cert: p.plugin.cert, key: p.outsider.key } }, /key=\S+outsider\.key is not the private key of the certificate in cert=\S+hv-17\.crt/],
    ['a key where the certificate goes', { client: { cert: p.plugin.key, key: p.plugin.key } }, /cert=\S+hv-17\.key: holds no PEM certificate/],
    ['a key where the CA goes', { ca: p.agent.key }, /ca=\S+agent\.key: holds no PEM certificate/],
    ['an encrypted key (no passphrase prompt)', { client: { cert: p.plugin.cert, key: encrypted } }, /key=\S+encrypted\.key is encrypted: the plugin cannot ask for a passphrase/],
  ];
  const keyLines = [p.plugin.key, p.outsider.key, p.agent.key, encrypted]
    .flatMap((file) => readFileSync(file, 'utf8').split('\n').filter((line) => line !== '' && !line.startsWith('-----')));
  // Init fails before connecting, so nothing need listen on the port.
  const runs = await Promise.all(cases.map(([, options]) => runHarness({
    build: ASAN_BUILD, mode: 'source', arg: tlsArg(undefined, p, { port: 9, ...options }), devices: [{ bdf: BLOB_BDF, stream: join(dir, 's') }],
  })));
  for (const [i, [name, , reason]] of cases.entries()) {
    const run = runs[i];
    if (run === undefined) throw new Error(`no run for ${name}`);
    assertCleanFailure(t, run, 'init', reason, 5000);
    assertOneLine(t, run);
    t.regex(run.stderr, /^vfmigd-plugin: TLS credentials for tls:127\.0\.0\.1:9: /m, name);
    t.false(keyLines.some((line) => run.stderr.includes(line)), `${name}: no line of a key in the message`);
  }
});

test('fault over TLS: the connection cut in the middle of save: a negative return within the timeout, no crash, no leak; QEMU\'s cancel then reconnects (a new handshake) and the VF runs on', async (t) => {
  const p = await pki();
  const agent = await sharedTlsAgent();
  const dir = scratchDir(t);
  const proxy = await tcpProxy(agent.tls?.port ?? 0);
  t.teardown(() => proxy.close());
  const stall = stallPoint(dir);
  const running = runHarness({
    build: ASAN_BUILD, mode: 'source', arg: tlsArg(agent, p, { port: proxy.port, timeoutMs: 2000 }) + QUIET_LEASE, devices: [{ bdf: SHARED.tlsCutMidSave, stream: join(dir, 'blob.stream') }],
    extraArgs: stall.args,
  });
  await stall.reached(running);
  t.is(await stateOf(agent, SHARED.tlsCutMidSave), 'STOP_COPY');
  proxy.cutAtNextRequest();
  stall.release();
  const run = await running;
  assertCleanFailure(t, run, 'save', /save: vf\.save to tls:127\.0\.0\.1:\d+: /, 10000);
  assertOneLine(t, run);
  t.true((run.reports[0] as { cancelled?: boolean } | undefined)?.cancelled, `the cancel reached the agent again: ${JSON.stringify(run.reports)}`);
  t.is(await stateOf(agent, SHARED.tlsCutMidSave), 'RUNNING');
});

type BrokenFrame = 'length' | 'cut';
const BROKEN: Record<BrokenFrame, { fault: (frameIndex: number) => FrameFault; reason: string; title: string }> = {
  length: {
    fault: (frameIndex) => ({ frameIndex, rewriteLength: 0xffff_ffff }),
    reason: 'the agent sent an attachment frame of 4294967295 bytes, more than the 1048576 asked for',
    title: 'a frame that says it is 4 GiB long, for a 1 MiB slice: refused before a byte of it is read',
  },
  cut: {
    fault: (frameIndex) => ({ frameIndex, cutAfterBytes: 300_000 }),
    reason: 'the agent closed the connection in the middle of an attachment frame (300000 of its 1048576 bytes came)',
    title: 'the connection ends in the middle of a frame\'s bytes',
  },
};

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

const brokenFrame = test.macro({
  async exec(t, transport: Transport, broken: BrokenFrame) {
    const agent = await sharedTlsAgent();
    const bdf = SHARED.brokenFrame[transport][broken];
    // The third slice's frame: two chunks of 1 MiB have reached QEMU by then.
    const recorder = await recorderOver(t, transport, agent, BROKEN[broken].fault(2));
    const run = await runHarness({
      build: ASAN_BUILD, mode: 'source', arg: await argVia(transport, agent, recorder), devices: [{ bdf, stream: join(scratchDir(t), 'blob.stream') }],
    });
    t.true(recorder.faulted, `the broken frame went out: ${run.stderr}${JSON.stringify(run.reports)}`);
    assertCleanFailure(t, run, 'save', new RegExp(`save: vf\\.save to ${transport}:127\\.0\\.0\\.1:\\d+: ${escapeRegExp(BROKEN[broken].reason)}`), 10000);
    assertOneLine(t, run);
    t.is(run.reports[0]?.bytes, 2 * MiB, 'the two slices before it were saved');
    // QEMU's cancel opens a new connection, which agrees to attachments again and is left alone.
    t.true((run.reports[0] as { cancelled?: boolean } | undefined)?.cancelled, `the cancel reached the agent: ${JSON.stringify(run.reports)}`);
    t.is(await stateOf(agent, bdf), 'RUNNING');
    t.true(recorder.connections.length >= 2);
    t.is(pathsTaken(recorder.connections).agreed, recorder.connections.length);
  },
  title: (_, transport: Transport, broken: BrokenFrame) => `fault over ${TRANSPORT_NAME[transport]}: ${BROKEN[broken].title}; a negative return, one clear line, no crash, no leak; QEMU's cancel then reconnects and the VF runs on`,
});

test(brokenFrame, 'tcp', 'length');
test(brokenFrame, 'tcp', 'cut');
test(brokenFrame, 'tls', 'length');
test(brokenFrame, 'tls', 'cut');

test('an agent from before attachments (rpc.enableAttachments answered -32601): the plugin carries an 8 MB state in base64 as before, saved and loaded back; no leak', async (t) => {
  const agent = await sharedTlsAgent();
  const bdf = SHARED.olderAgent;
  const recorder = await wireRecorder(agent.tcp, { olderAgent: true });
  t.teardown(() => recorder.close());
  const arg = `tcp:127.0.0.1:${recorder.port},timeout_ms=5000`;
  const stream = join(scratchDir(t), 'blob.stream');
  const saved = await runHarness({ build: ASAN_BUILD, mode: 'source', arg, devices: [{ bdf, stream }] });
  assertSucceeded(t, saved, 1);
  // The destination is the VF the state came from: the agent checks the whole state before it applies it.
  const loaded = await runHarness({ build: ASAN_BUILD, mode: 'destination', arg, devices: [{ bdf, stream }] });
  assertSucceeded(t, loaded, 1);
  t.is(loaded.reports[0]?.bytes, saved.reports[0]?.bytes);
  t.is(await stateOf(agent, bdf), 'RUNNING');
  const paths = pathsTaken(recorder.connections);
  t.log(JSON.stringify(paths));
  t.true(recorder.connections.every((c) => c.requests[0]?.method === 'rpc.enableAttachments'), 'every connection asked');
  t.is(paths.agreed, 0);
  t.true(paths.base64Saves >= 8 && paths.base64Loads >= 8, 'the state went in base64, a slice per chunk');
  t.is(paths.framedSaves + paths.framedLoads + paths.strayFrames, 0);
  t.is(saved.stderr + loaded.stderr, '');
});

test('over a Unix socket: an 8 MB state saved and loaded back in attachment frames; no leak', async (t) => {
  const agent = await sharedTlsAgent();
  const bdf = SHARED.unix;
  const dir = scratchDir(t);
  const listenPath = join(dir, 'recorder.sock');
  const recorder = await wireRecorder({ path: SHARED_SOCKET }, { listenPath });
  t.teardown(() => recorder.close());
  const arg = `unix:${listenPath},timeout_ms=5000`;
  const stream = join(dir, 'blob.stream');
  const saved = await runHarness({ build: ASAN_BUILD, mode: 'source', arg, devices: [{ bdf, stream }] });
  assertSucceeded(t, saved, 1);
  assertPathTaken(t, recorder, 'attachments', 'source');
  const loaded = await runHarness({ build: ASAN_BUILD, mode: 'destination', arg, devices: [{ bdf, stream }] });
  assertSucceeded(t, loaded, 1);
  t.is(loaded.reports[0]?.bytes, saved.reports[0]?.bytes);
  assertPathTaken(t, recorder, 'attachments', 'destination');
  t.is(await stateOf(agent, bdf), 'RUNNING');
  t.is(saved.stderr + loaded.stderr, '');
});

async function stateOf(agent: AgentProcess, bdf = BLOB_BDF): Promise<string> {
  const rpc = await RpcClient.connect(agent.tcp);
  try {
    return (await rpc.call('vf.getState', { vf: bdf })).state;
  } finally {
    rpc.destroy();
  }
}

/**
 * A TCP proxy to `port` whose connections can be cut at once, as a failing
 * network would (`cut`: the plugin finds its idle connection closed and goes
 * on a new one), or when the next request is on its way (`cutAtNextRequest`:
 * the request is lost with the connection, and the op that sent it meets the cut).
 */
async function tcpProxy(port: number): Promise<{ port: number; cut(): void; cutAtNextRequest(): void; close(): void }> {
  const sockets = new Set<Socket>();
  let cutNext = false;
  const cut = (): void => { for (const s of sockets) s.destroy(); };
  const server: Server = createServer((client) => {
    const upstream = connect(port, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    client.on('data', (chunk: Buffer) => {
      if (cutNext) {
        cutNext = false;
        cut();
        return;
      }
      if (!upstream.write(chunk)) client.pause();
    });
    upstream.on('drain', () => client.resume());
    client.on('end', () => upstream.end());
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    cut,
    cutAtNextRequest: () => { cutNext = true; },
    close: () => { server.close(); for (const s of sockets) s.destroy(); },
  };
}
