/**
 * Crash recovery with the real VMM side (issue 8 §4): the QEMU plugin,
 * loaded by the AddressSanitizer harness that plays QEMU, migrates a busy
 * nvme-emu VF between two agents that keep a journal (`stateDir`) and run
 * their controllers in device processes, so the device and the guest's
 * commands outlive an agent. At the harness's stall point the source or
 * the destination agent is killed with SIGKILL and started again on the
 * same config (its TLS listener on the same port); then the stall ends and
 * the harness does what QEMU would do next: its next op, then QEMU's cancel
 * on a source whose save failed, or the source's VM run again (set_state
 * RUNNING) when the destination failed. The end state is checked through
 * both agents: the device runs on exactly one side, or the migration failed
 * and the source runs on; never both. Every guest command completes exactly
 * once on the side that runs.
 *
 * The plugin talks mutual TLS as its certificate's principal; the test
 * watches over loopback TCP as `local`, whose calls extend none of the
 * plugin's leases. Each case runs twice, as two plugins QEMU could have:
 * one that renews its lease a second after QEMU's last call (lease_ms=3000),
 * and so meets the restarted agent and reconnects before QEMU's next op,
 * and one whose lease is ten minutes (no renewal during the stall), whose
 * next op is the first call after the restart: it sees the old connection
 * closed and goes on a new one, so the two end alike.
 *
 * The harness saves and loads the few KiB of nvme-emu state in calls of
 * 512 bytes where the stall must fall in its middle (--chunk-bytes), and
 * the source holds its device once saved until the destination is done
 * (--hold-file), as QEMU does. The tests run one at a time: each has two
 * agents, two device processes, a guest and the harness, and a lease of
 * three seconds to keep across an agent's restart.
 */
import test, { type ExecutionContext } from 'ava';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { tempDir, type AgentProcess } from './support/agent-process.ts';
import { BDF, deviceRig, type DeviceRig } from './support/device-rig.ts';
import { ASAN_BUILD, runHarness, type HarnessRun } from './support/harness.ts';
import { copyGuestMemory } from './support/host-port.ts';
import { busyGuest, finishClean, pauseWithCommandsInFlight } from './support/migration-rig.ts';
import { makePluginPki, PLUGIN_PRINCIPAL, tlsAgentConfig, tlsArg, type PluginPki } from './support/plugin-tls.ts';
import type { RpcClient } from './support/rpc-client.ts';

let pkiPromise: Promise<PluginPki> | undefined;
/** One PKI for the file: key generation is the slow part. */
function pki(): Promise<PluginPki> {
  pkiPromise ??= makePluginPki();
  return pkiPromise;
}
test.after.always(async () => { (await pkiPromise?.catch(() => undefined))?.remove(); });

/** A loopback port nothing listens on now: an agent's TLS listener takes it, and takes it again after a restart. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function waitUntil(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!(await condition())) {
    if (performance.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(10);
  }
}

/**
 * A file the harness creates when it reaches a point (its --stall-file, or
 * the source's --hold-file) and waits on until the test removes it: the
 * test acts at exactly that point.
 */
function gate(path: string): { readonly path: string; reached(running: Promise<HarnessRun>): Promise<void>; release(): void } {
  return {
    path,
    reached: (running) => Promise.race([
      waitUntil(() => existsSync(path), 20_000, `the harness at ${path}`),
      running.then((run) => { throw new Error(`the harness ended before ${path}: ${run.stderr}${JSON.stringify(run.reports)}`); }),
    ]),
    release: () => rmSync(path, { force: true }),
  };
}

/** Undefined once the source harness holds its device at `holdFile`; its run, if it ended first. */
async function heldOrEnded(holdFile: string, running: Promise<HarnessRun>): Promise<HarnessRun | undefined> {
  let ended: HarnessRun | undefined;
  void running.then((run) => { ended = run; });
  await waitUntil(() => ended !== undefined || existsSync(holdFile), 20_000, 'the source harness holding its device, or ending');
  return existsSync(holdFile) ? undefined : ended;
}

/** The plugin's lease: `renewing` meets the restarted agent through a renewal before QEMU's next op; `quiet` does not. */
type Plugin = 'renewing' | 'quiet';
const LEASE_ARG: Record<Plugin, string> = { renewing: ',lease_ms=3000', quiet: ',lease_ms=600000' };
const PLUGIN_NAME: Record<Plugin, string> = {
  renewing: 'the plugin renewing its lease (lease_ms=3000: reconnected by a renewal before QEMU\'s next op)',
  quiet: 'no renewal during the stall (lease_ms=600000: QEMU\'s next op reconnects)',
};

interface Side {
  readonly rig: DeviceRig;
  /** The plugin's argument: mutual TLS to the agent's fixed port. */
  readonly arg: string;
}

/** An agent config on a journal and a device process, on mutual TLS at a fixed port (and loopback TCP for the test). */
async function side(t: ExecutionContext, dir: string, name: string, plugin: Plugin): Promise<Side> {
  const p = await pki();
  const port = await freePort();
  const { tls, authorization } = tlsAgentConfig(p, []);
  const rig = deviceRig(t, { dir, name, stateDir: true, config: { tls, authorization, listen: [`tls://127.0.0.1:${port}`, 'tcp://127.0.0.1:0'] } });
  return { rig, arg: `${tlsArg(undefined, p, { port, timeoutMs: 2000 })}${LEASE_ARG[plugin]}` };
}

interface Running { readonly agent: AgentProcess; readonly rpc: RpcClient }

/** SIGKILL, and the agent started again on the same config; it recovers the migration from its journal. */
async function killAndRestart(rig: DeviceRig, before: Running, plugin: Plugin): Promise<{ after: Running; recovered: Record<string, unknown>; renewal: Record<string, unknown> | undefined }> {
  before.agent.kill();
  await before.agent.stop();
  const after = await rig.start();
  const recovered = await after.agent.waitForLog('migration recovered from the journal');
  // The renewing plugin's renewal reaches the new agent on a new connection (granted, or refused if the session is gone).
  const renewal = plugin === 'renewing' ? await after.agent.waitForLog('vf.renewLease ', 10_000) : undefined;
  return { after, recovered, renewal };
}

/** A failure as QEMU sees it: exit 1, the op's negative errno, one line from the plugin, no sanitizer report. */
function assertCleanFailure(t: ExecutionContext, run: HarnessRun, op: string, reason: RegExp): void {
  t.is(run.signal, null, 'no crash');
  t.is(run.code, 1, `exit code ${run.code}; stderr: ${run.stderr}`);
  const report = run.reports[0];
  t.is(report?.ok, false);
  t.is(report?.op, op, JSON.stringify(run.reports));
  t.true((report?.rc ?? 0) < 0, 'a negative errno');
  t.is(run.stderr.match(/^vfmigd-plugin: /gm)?.length ?? 0, 1, `one line: ${run.stderr}`);
  t.regex(run.stderr, reason);
  t.notRegex(run.stderr, /LeakSanitizer|AddressSanitizer|runtime error/, 'no leak, no memory error');
}

function assertSucceeded(t: ExecutionContext, run: HarnessRun): void {
  t.is(run.code, 0, `harness failed: ${run.stderr}${JSON.stringify(run.reports)}`);
  t.true(run.reports[0]?.ok);
  t.is(run.stderr, '', 'nothing QEMU saw failed');
}

/** Where the agent was killed, as the harness's stall points put it. */
type Crash = 'source-after-quiesce' | 'source-mid-save' | 'source-after-last-byte' | 'destination-mid-load' | 'destination-after-load';

/** A few KiB of nvme-emu state in calls this long: the stall falls in the middle of the save or of the load. */
const SMALL_CHUNK = 512;

const STALL: Record<Crash, { readonly chunks: number; readonly chunkBytes?: number; readonly title: string }> = {
  'source-after-quiesce': { chunks: 0, title: 'the source agent killed after the quiesce, before the first byte' },
  'source-mid-save': { chunks: 2, chunkBytes: SMALL_CHUNK, title: 'the source agent killed in the middle of the save' },
  // The whole state in QEMU's first 1 MiB chunk: stalled after it, before the set_state that ends the save.
  'source-after-last-byte': { chunks: 1, title: 'the source agent killed after the last byte, before QEMU\'s next set_state and cleanup' },
  'destination-mid-load': { chunks: 2, chunkBytes: SMALL_CHUNK, title: 'the destination agent killed in the middle of the load' },
  'destination-after-load': { chunks: 1, title: 'the destination agent killed after the last byte was loaded, before QEMU\'s set_state RUNNING' },
};

/** What QEMU sees, and which side runs the device at the end. */
interface Outcome {
  readonly runs: 'source' | 'destination';
  /** The op that fails, and what its one line says; none: the migration completes. */
  readonly fails?: { readonly op: string; readonly reason: RegExp };
}

/**
 * The same for both plugins: a renewal, or else QEMU's next op, finds the old
 * connection closed by the killed agent and goes on a new one to the agent
 * that recovered the migration from its journal.
 */
const EXPECTED: Record<Crash, Outcome> = {
  'source-after-quiesce': { runs: 'destination' },
  'source-mid-save': { runs: 'destination' },
  'source-after-last-byte': { runs: 'destination' },
  'destination-mid-load': { runs: 'source', fails: { op: 'load', reason: /SESSION_UNKNOWN/ } },
  'destination-after-load': { runs: 'source', fails: { op: 'set_state', reason: /SESSION_UNKNOWN/ } },
};

const SEED: Record<Crash, number> = {
  'source-after-quiesce': 0xc0a1, 'source-mid-save': 0xc0a2, 'source-after-last-byte': 0xc0a3, 'destination-mid-load': 0xc0a4, 'destination-after-load': 0xc0a5,
};

/** Bytes the harness has moved at its stall point: `chunks` calls of `chunkBytes` (QEMU's 1 MiB holds the whole state). */
function movedAtStall(crash: Crash, totalBytes: number): number {
  const { chunks, chunkBytes } = STALL[crash];
  return Math.min(chunks * (chunkBytes ?? totalBytes), totalBytes);
}

/** The sides whose agent lists the VF as RUNNING. */
async function sidesRunning(sides: Record<string, RpcClient>): Promise<string[]> {
  const running: string[] = [];
  for (const [name, rpc] of Object.entries(sides)) {
    const vfs = (await rpc.call('vf.list', {})).vfs.filter((vf) => vf.bdf === BDF);
    if (vfs.length !== 1) throw new Error(`${name}: vf.list has ${vfs.length} VFs at ${BDF}`);
    if (vfs[0]?.state === 'RUNNING') running.push(name);
  }
  return running;
}

async function stateOf(rpc: RpcClient): Promise<{ state: string; stranded: boolean; session: { id: string; bytes: number } | null; migration: object | null }> {
  const { state, stranded, session, migration } = await rpc.call('vf.get', { vf: BDF });
  return { state, stranded, session, migration };
}

const crashTest = test.macro({
  async exec(t, crash: Crash, plugin: Plugin) {
    const dir = tempDir();
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const expected = EXPECTED[crash];
    const stall = STALL[crash];
    const sourceCrash = crash.startsWith('source');
    const source = await side(t, dir, 'source', plugin);
    const destination = await side(t, dir, 'destination', plugin);
    let src: Running = await source.rig.start();
    const sourcePort = await source.rig.guestPort(src.rpc);
    const guest = await busyGuest(sourcePort, SEED[crash]);
    await pauseWithCommandsInFlight(t, guest.workload);

    const stream = join(dir, 'nvme0.stream');
    const stallAt = gate(join(dir, 'stalled'));
    const hold = gate(join(dir, 'held'));
    const stallArgs = ['--stall-after-chunks', String(stall.chunks), '--stall-file', stallAt.path, ...(stall.chunkBytes === undefined ? [] : ['--chunk-bytes', String(stall.chunkBytes)])];
    const saving = runHarness({
      build: ASAN_BUILD, mode: 'source', arg: source.arg, devices: [{ bdf: BDF, stream }],
      extraArgs: ['--hold-file', hold.path, ...(sourceCrash ? stallArgs : [])],
    });

    let released = 0;
    if (sourceCrash) {
      await stallAt.reached(saving);
      const before = await stateOf(src.rpc);
      t.like(before, { state: 'STOP_COPY', migration: { owner: PLUGIN_PRINCIPAL, role: 'source', readToEnd: crash === 'source-after-last-byte' } });
      if (crash !== 'source-after-last-byte') t.is(before.session?.bytes, STALL[crash].chunks * (STALL[crash].chunkBytes ?? 0), 'the stall is where QEMU has saved that much');
      const { after, recovered, renewal } = await killAndRestart(source.rig, src, plugin);
      src = after;
      t.like(recovered, { owner: PLUGIN_PRINCIPAL, state: 'STOP_COPY', session: before.session?.id });
      if (renewal !== undefined) t.like(renewal, { principal: PLUGIN_PRINCIPAL, outcome: 'ok' }, 'the renewal (naming the session once a slice has) is granted by the restarted agent');
      released = performance.now();
      stallAt.release();
    }

    // The source holds its device once the save is done (QEMU waits for the destination), or has failed and cancelled.
    const saved = await heldOrEnded(hold.path, saving);
    if (saved !== undefined) {
      t.log(`source: ${saved.reports[0]?.op} returned ${saved.reports[0]?.rc} ${(performance.now() - released).toFixed(0)} ms after the stall ended: ${saved.stderr.trim()}`);
      t.truthy(expected.fails, `the source failed: ${saved.stderr}`);
      assertCleanFailure(t, saved, expected.fails?.op ?? '', expected.fails?.reason ?? /./);
      if (crash !== 'source-after-last-byte') t.is(saved.reports[0]?.bytes, STALL[crash].chunks * (STALL[crash].chunkBytes ?? 0), 'nothing saved after the stall');
      t.true(saved.reports[0]?.cancelled, 'QEMU\'s cancel (set_state RUNNING) reached the restarted agent');
      t.like(await stateOf(src.rpc), { state: 'RUNNING', migration: null, session: null });
      // The migration failed before any destination took the state: the source runs on.
      await finishClean(t, guest, 300);
      t.deepEqual(await sidesRunning({ source: src.rpc }), ['source']);
      return;
    }
    t.like(await stateOf(src.rpc), { state: 'STOP', migration: { owner: PLUGIN_PRINCIPAL, readToEnd: true } });
    const totalBytes = readFileSync(stream).length - 8;
    if (sourceCrash) t.log(`source: the save went on in the recovered session to its end (${totalBytes} bytes), holding ${(performance.now() - released).toFixed(0)} ms after the stall ended`);

    let dst: Running = await destination.rig.start();
    const destinationPort = await destination.rig.guestPort(dst.rpc);
    await copyGuestMemory(sourcePort, destinationPort, guest.nvme.memoryRegions());
    const loading = runHarness({ build: ASAN_BUILD, mode: 'destination', arg: destination.arg, devices: [{ bdf: BDF, stream }], extraArgs: sourceCrash ? [] : stallArgs });
    if (!sourceCrash) {
      await stallAt.reached(loading);
      const before = await stateOf(dst.rpc);
      t.like(before, { state: 'RESUMING', migration: { owner: PLUGIN_PRINCIPAL, role: 'destination' } });
      t.is(before.session?.bytes, movedAtStall(crash, totalBytes), 'the stall is where QEMU has loaded that much');
      if (crash === 'destination-mid-load') t.true(totalBytes > (before.session?.bytes ?? 0), `${totalBytes} bytes of state, more than were loaded`);
      const { after, recovered, renewal } = await killAndRestart(destination.rig, dst, plugin);
      dst = after;
      // Its received bytes were in the dead process: the VF is in STOP, the session lost.
      t.like(recovered, { owner: PLUGIN_PRINCIPAL, state: 'STOP', session: null, lostSession: before.session?.id });
      if (renewal !== undefined) t.like(renewal, { principal: PLUGIN_PRINCIPAL, outcome: 'failed', code: 'SESSION_UNKNOWN' }, 'the renewal named the lost session');
      released = performance.now();
      stallAt.release();
    }
    const loaded = await loading;
    const sourceView = await stateOf(src.rpc);
    const destinationView = await stateOf(dst.rpc);

    if (expected.runs === 'destination') {
      assertSucceeded(t, loaded);
      t.is(loaded.reports[0]?.bytes, totalBytes, 'the whole stream, which the destination verified record by record');
      t.like(destinationView, { state: 'RUNNING', migration: null });
      t.like(sourceView, { state: 'STOP', stranded: false, migration: { readToEnd: true } }, 'the source never runs again');
      hold.release();
      assertSucceeded(t, await saving);
      t.is((await stateOf(src.rpc)).state, 'STOP');
      await guest.nvme.attach(destinationPort);
      await finishClean(t, guest, 300);
      t.deepEqual(await sidesRunning({ source: src.rpc, destination: dst.rpc }), ['destination'], 'never both');
      return;
    }

    t.log(`destination: ${loaded.reports[0]?.op} returned ${loaded.reports[0]?.rc} ${(performance.now() - released).toFixed(0)} ms after the stall ended: ${loaded.stderr.trim()}`);
    assertCleanFailure(t, loaded, expected.fails?.op ?? '', expected.fails?.reason ?? /./);
    t.like(destinationView, { state: 'STOP', session: null, migration: { role: 'destination', applied: false } }, 'the destination does not run');
    t.like(sourceView, { state: 'STOP' });
    // The migration failed: QEMU runs the VM on the source again.
    writeFileSync(`${hold.path}.failed`, '');
    hold.release();
    const resumed = await saving;
    assertSucceeded(t, resumed);
    t.true(resumed.reports[0]?.resumed, 'the source device runs again');
    t.like(await stateOf(src.rpc), { state: 'RUNNING', migration: null });
    await finishClean(t, guest, 300);
    t.deepEqual(await sidesRunning({ source: src.rpc, destination: dst.rpc }), ['source'], 'never both');
  },
  title: (_, crash: Crash, plugin: Plugin) => {
    const outcome = EXPECTED[crash];
    const what = outcome.fails === undefined ? 'the migration completes and the device runs on the destination only'
      : crash.startsWith('source') ? `${outcome.fails.op} fails cleanly, QEMU cancels, and the source runs on`
        : `${outcome.fails.op} fails cleanly, the destination stays stopped, and the source runs on`;
    return `${STALL[crash].title}, ${PLUGIN_NAME[plugin]}: ${what}; every guest command completes once`;
  },
});

for (const crash of Object.keys(STALL) as Crash[]) {
  for (const plugin of ['renewing', 'quiet'] as const) test.serial(crashTest, crash, plugin);
}
