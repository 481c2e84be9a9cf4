/**
 * A network cut in the middle of the transfer (issue 8 §4). QEMU saves a
 * busy NVMe VF through the plugin (the AddressSanitizer harness, over
 * mutual TLS), and between the two a proxy (support/wire-recorder.ts) cuts
 * the connection at a byte count in the middle of a slice of the state: it
 * stops forwarding either way and closes nothing (a black hole), or it
 * resets both TCP connections. The proxy ends the plugin's TLS and opens
 * its own to the agent with the plugin's certificate, so that the agent
 * sees the plugin's principal and the cut lands at a byte of the stream,
 * whatever else (lease renewals) went by before.
 *
 * What must hold: the save op returns a negative errno within timeout_ms (a
 * black hole costs the whole deadline, a reset nothing), with one line on
 * stderr, no crash and no sanitizer report; the source runs again (after a
 * black hole its lease brings it back, after a reset QEMU's cancel does);
 * and the guest's every command completes exactly once. A black hole in
 * the stream's last slice is the exception the agent must make: it handed
 * out the whole state, so it cannot tell that the state never arrived, and
 * its lease leaves the source stopped and stranded until an explicit call
 * (here QEMU's cancel) runs it.
 *
 * After a black hole the harness holds QEMU's cancel (--hold-cancel-file)
 * until the test has seen what the lease did, then lets it go, as if the
 * network came back then: it reconnects, and the VF runs.
 *
 * The test's own calls, and the guest's host port, go to the agent's
 * loopback TCP listener as `local`, not the migration's owner: its polls
 * extend no lease.
 */
import test, { type ExecutionContext } from 'ava';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../schemas/types.ts';
import { tempDir } from './support/agent-process.ts';
import { ASAN_BUILD, cancelHold, runHarness, waitUntil, type HarnessRun } from './support/harness.ts';
import { busyGuest, finishClean, pauseWithCommandsInFlight, startSide, vfConfig, type BusyGuest, type Side } from './support/migration-rig.ts';
import { makePluginPki, PLUGIN_PRINCIPAL, tlsAgentConfig, tlsArg, type PluginPki } from './support/plugin-tls.ts';
import { wireRecorder, type CutHow, type WireRecorder } from './support/wire-recorder.ts';

/** Every call the plugin makes gives up after this long (the calls before the cut too, on a machine the whole suite loads). */
const TIMEOUT_MS = 1500;
/** How much later than its deadline the op may return here (a loaded machine: the harness and this process wake late). */
const DEADLINE_MARGIN_MS = 1000;
/** The black-hole agents' leases.defaultMs: longer than TIMEOUT_MS, so that the op fails first and the lease ends later, as with the defaults (5 s, 30 s). */
const LEASE_MS = 2500;
/**
 * QEMU's save chunk for these tests. nvme-emu's state (here 1.6 KB) is one
 * chunk of QEMU's 1 MiB and so one slice, the stream's last: the agent
 * counts a source whose last byte it handed out as read to the end, and
 * its lease keeps such a source stopped (stranded: it may run on the
 * destination). In chunks of 256 bytes the state takes several slices, and
 * the cut lands in one that is not the last, as it would in a large state.
 */
const CHUNK_BYTES = 256;
/** The cut: after this many bytes of the agent's second frame (the second slice's bytes). */
const CUT = { frameIndex: 1, cutAfterBytes: 100 } as const;
const ETIMEDOUT = 110;
const ECONNRESET = 104;
/** The plugin's line when a black hole swallows a slice: the deadline, and what it was waiting for. */
const TIMED_OUT = new RegExp(`^vfmigd-plugin: 0000:3b:00\\.2: save: vf\\.save to tls:127\\.0\\.0\\.1:\\d+ \\(timeout_ms=${TIMEOUT_MS}\\): timed out waiting for the bytes of an attachment frame$`, 'm');

let pkiPromise: Promise<PluginPki> | undefined;
/** One PKI for the file: key generation is the slow part. */
function pki(): Promise<PluginPki> {
  pkiPromise ??= makePluginPki();
  return pkiPromise;
}
test.after.always(async () => { (await pkiPromise?.catch(() => undefined))?.remove(); });

interface BusySource {
  readonly dir: string;
  readonly bdf: string;
  readonly side: Side;
  readonly guest: BusyGuest;
  /** Between the plugin and the agent's TLS listener, set to cut as `how` says. */
  readonly proxy: WireRecorder;
  /** The plugin's argument, through the proxy. */
  readonly arg: string;
}

/**
 * An agent on mutual TLS (the plugin) and loopback TCP (this test, the
 * guest's host port) with one nvme-emu VF, a guest with commands in flight
 * whose vCPUs have stopped, and the proxy.
 */
async function busySource(t: ExecutionContext, how: CutHow, seed: number, config: Partial<Config> = {}, cut: { frameIndex: number; cutAfterBytes: number } = CUT): Promise<BusySource> {
  const p = await pki();
  const dir = tempDir('vfmigd-network-cut-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const vf = vfConfig(dir);
  const side = await startSide(t, [vf], 2000, { ...tlsAgentConfig(p, []), ...config });
  const guest = await busyGuest(side.portOf(vf.bdf), seed);
  await pauseWithCommandsInFlight(t, guest.workload);
  const proxy = await wireRecorder({ host: '127.0.0.1', port: side.agent.tls?.port ?? 0 }, { tls: { server: p.agent, client: p.plugin, ca: p.ca }, fault: { ...cut, how } });
  t.teardown(() => proxy.close());
  return { dir, bdf: vf.bdf, side, guest, proxy, arg: tlsArg(side.agent, p, { port: proxy.port, timeoutMs: TIMEOUT_MS }) };
}

/**
 * The ASan harness saving the VF as QEMU's source, in chunks of
 * `chunkBytes` (or QEMU's own 1 MiB); `failedAt` is when the plugin's
 * failure line came, which it prints as its op returns.
 */
function saveThrough(source: BusySource, extraArgs: readonly string[] = [], chunkBytes: number | 'qemu' = CHUNK_BYTES): { running: Promise<HarnessRun>; failedAt(): number | undefined } {
  let failedAt: number | undefined;
  const running = runHarness({
    build: ASAN_BUILD, mode: 'source', arg: source.arg, devices: [{ bdf: source.bdf, stream: join(source.dir, 'nvme0.stream') }],
    extraArgs: [...(chunkBytes === 'qemu' ? [] : ['--chunk-bytes', String(chunkBytes)]), ...extraArgs],
    onStderr: (text) => { if (failedAt === undefined && /^vfmigd-plugin: /m.test(text)) failedAt = performance.now(); },
  });
  return { running, failedAt: () => failedAt };
}

/** When the plugin's failure line came, once it has (it is printed before the harness goes on, but comes by its own pipe). */
async function failureLine(failedAt: () => number | undefined): Promise<number> {
  await waitUntil(async () => failedAt() !== undefined, 20_000);
  return failedAt() ?? Number.NaN;
}

/** Resolves with when the proxy cut the connection; rejects if the harness ends before. */
async function cutMade(proxy: WireRecorder, running: Promise<HarnessRun>): Promise<number> {
  await Promise.race([
    waitUntil(async () => proxy.faultedAt !== undefined, 20_000),
    running.then((run) => { throw new Error(`the harness ended before the cut: ${run.stderr}${JSON.stringify(run.reports)}`); }),
  ]);
  return proxy.faultedAt ?? Number.NaN;
}

async function stateOf(source: BusySource): Promise<string> {
  return (await source.side.rpc.call('vf.getState', { vf: source.bdf })).state;
}

/**
 * The save op failed cleanly and QEMU's cancel then went through: exit 1
 * (not a sanitizer's 23 or 24, not a signal), `errno` from the save, a
 * chunk saved before the cut and none after, exactly one line on stderr,
 * which says why.
 */
function assertCutSave(t: ExecutionContext, run: HarnessRun, errno: number, reason: RegExp, savedBytes = CHUNK_BYTES): void {
  t.is(run.signal, null, 'no crash');
  t.is(run.code, 1, `exit code ${run.code}; stderr: ${run.stderr}`);
  t.like(run.reports[0], { ok: false, op: 'save', rc: -errno, bytes: savedBytes, cancelled: true }, JSON.stringify(run.reports));
  t.is(run.stderr.match(/^vfmigd-plugin: /gm)?.length ?? 0, 1, `one line: ${run.stderr}`);
  t.is(run.stderr.split('\n').filter((line) => line !== '').length, 1, `nothing else on stderr: ${run.stderr}`);
  t.regex(run.stderr, reason);
  t.notRegex(run.stderr, /LeakSanitizer|AddressSanitizer|runtime error/, 'no leak, no memory error');
}

test('a black hole in the middle of the save (the proxy forwards nothing more either way and closes nothing): the save fails at timeout_ms with one line; nothing renews, the lease brings the source back to RUNNING; QEMU\'s cancel then reconnects; every guest command completes exactly once', async (t) => {
  const source = await busySource(t, 'blackhole', 0xb1ac, { leases: { defaultMs: LEASE_MS } });
  // QEMU's cancel is held until the lease has done its work, then goes through: as if the network came back then.
  const hold = cancelHold(source.dir);
  const { running, failedAt } = saveThrough(source, hold.args);
  t.teardown(async () => { hold.release(); await running; });
  const cutAt = await cutMade(source.proxy, running);
  const connectionsAtCut = (source.proxy.faultedOn ?? Number.NaN) + 1;
  await hold.reached(running);
  const returnedAfter = (await failureLine(failedAt)) - cutAt;

  await waitUntil(async () => (await stateOf(source)) === 'RUNNING', 10 * LEASE_MS);
  const runningAfter = performance.now() - cutAt;
  t.log(`black hole: the save op returned ${returnedAfter.toFixed(0)} ms after the cut (timeout_ms=${TIMEOUT_MS}); the source ran again ${runningAfter.toFixed(0)} ms after it (lease ${LEASE_MS} ms)`);
  t.true(returnedAfter <= TIMEOUT_MS + DEADLINE_MARGIN_MS, `the op returned within its deadline: ${returnedAfter.toFixed(0)} ms`);
  t.true(returnedAfter >= TIMEOUT_MS / 2, `a black hole is only seen at the deadline: ${returnedAfter.toFixed(0)} ms`);
  // Its last call, the one cut, extended the lease as it was answered; nothing came after it.
  t.true(runningAfter >= LEASE_MS / 2, `the lease ran its length: ${runningAfter.toFixed(0)} ms`);
  t.is(source.proxy.connections.length, connectionsAtCut, 'no renewal and no reconnect from the plugin once its op failed');
  const expired = await source.side.agent.waitForLog('migration lease expired');
  t.like(expired, { vf: 'nvme0', owner: PLUGIN_PRINCIPAL, role: 'source', state: 'STOP_COPY', readToEnd: false });
  t.like(await source.side.agent.waitForLog('migration cancelled'), { vf: 'nvme0', state: 'RUNNING' });
  t.like(await source.side.rpc.call('vf.get', { vf: source.bdf }), { state: 'RUNNING', stranded: false, migration: null, session: null });

  hold.release();
  const run = await running;
  assertCutSave(t, run, ETIMEDOUT, TIMED_OUT);
  const cancel = source.proxy.connections.slice(connectionsAtCut);
  t.is(cancel.length, 1, 'QEMU\'s cancel came on a new connection');
  t.true(cancel[0]?.responses.some((r) => r.method === 'vf.setState' && !r.error), 'and its vf.setState RUNNING was granted');
  t.is(await stateOf(source), 'RUNNING');
  await finishClean(t, source.guest, 1000);
});

test('a reset in the middle of the save (RST on both connections): the save fails at once with one line; QEMU\'s cancel reconnects and the source runs on; every guest command completes exactly once', async (t) => {
  // The agent's default lease (30 s): only QEMU's cancel can bring the source back in this test's time.
  const source = await busySource(t, 'reset', 0x4e5e7);
  const { running, failedAt } = saveThrough(source);
  const cutAt = await cutMade(source.proxy, running);
  const connectionsAtCut = (source.proxy.faultedOn ?? Number.NaN) + 1;
  await waitUntil(async () => (await stateOf(source)) === 'RUNNING', 10_000);
  const runningAfter = performance.now() - cutAt;
  const run = await running;
  const returnedAfter = (await failureLine(failedAt)) - cutAt;
  t.log(`reset: the save op returned ${returnedAfter.toFixed(0)} ms after the cut (timeout_ms=${TIMEOUT_MS}); the source ran again ${runningAfter.toFixed(0)} ms after it`);
  t.true(returnedAfter < TIMEOUT_MS, `a reset is seen at once, not at the deadline: ${returnedAfter.toFixed(0)} ms`);
  assertCutSave(t, run, ECONNRESET, /^vfmigd-plugin: 0000:3b:00\.2: save: vf\.save to tls:127\.0\.0\.1:\d+: receive failed: Connection reset by peer$/m);
  const cancel = source.proxy.connections.slice(connectionsAtCut);
  t.is(cancel.length, 1, 'QEMU\'s cancel came on a new connection');
  t.true(cancel[0]?.responses.some((r) => r.method === 'vf.setState' && !r.error), 'and its vf.setState RUNNING was granted');
  t.false(source.side.agent.logs.some((line) => line.includes('migration lease expired')), 'the cancel, not the lease, ended the migration');
  t.like(await source.side.rpc.call('vf.get', { vf: source.bdf }), { state: 'RUNNING', stranded: false, migration: null, session: null });
  t.false((await source.side.rpc.call('vf.pending', { vf: source.bdf })).streamOpen);
  await finishClean(t, source.guest, 1000);
});

test('a black hole in the last slice of the save (QEMU\'s 1 MiB chunk: nvme-emu\'s whole state is one slice): the save fails at timeout_ms with one line; the agent had handed out the whole state, so the lease leaves the source stopped and stranded; QEMU\'s cancel, once it gets through, runs it, and every guest command completes exactly once', async (t) => {
  const source = await busySource(t, 'blackhole', 0x1a57, { leases: { defaultMs: LEASE_MS } }, { frameIndex: 0, cutAfterBytes: 100 });
  const hold = cancelHold(source.dir);
  const { running, failedAt } = saveThrough(source, hold.args, 'qemu');
  t.teardown(async () => { hold.release(); await running; });
  const cutAt = await cutMade(source.proxy, running);
  await hold.reached(running);
  const returnedAfter = (await failureLine(failedAt)) - cutAt;
  await waitUntil(async () => (await source.side.rpc.call('vf.get', { vf: source.bdf })).stranded, 10 * LEASE_MS);
  t.log(`black hole in the last slice: the save op returned ${returnedAfter.toFixed(0)} ms after the cut; the source was stranded ${(performance.now() - cutAt).toFixed(0)} ms after it`);
  t.true(returnedAfter <= TIMEOUT_MS + DEADLINE_MARGIN_MS, `the op returned within its deadline: ${returnedAfter.toFixed(0)} ms`);
  t.like(await source.side.agent.waitForLog('migration lease expired'), { vf: 'nvme0', owner: PLUGIN_PRINCIPAL, state: 'STOP_COPY', readToEnd: true });
  t.like(await source.side.agent.waitForLog('VF stranded'), { vf: 'nvme0', state: 'STOP' });
  t.like(await source.side.rpc.call('vf.get', { vf: source.bdf }), { state: 'STOP', stranded: true, session: null, migration: { owner: PLUGIN_PRINCIPAL, readToEnd: true, lease: null } });

  // QEMU knows the destination never got the state: its cancel (vf.setState RUNNING, the owner's explicit call) runs the source.
  hold.release();
  const run = await running;
  assertCutSave(t, run, ETIMEDOUT, TIMED_OUT, 0);
  t.like(await source.side.rpc.call('vf.get', { vf: source.bdf }), { state: 'RUNNING', stranded: false, migration: null });
  await finishClean(t, source.guest, 1000);
});
