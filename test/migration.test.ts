/**
 * Live migration of an nvme-emu VF between two real agent processes, driven
 * over JSON-RPC exactly as a VMM would: a guest NVMe driver runs a verifying
 * workload on the source VF through the host port, the VF is quiesced with
 * commands in flight, its state is saved, guest RAM is copied (as QEMU
 * moves RAM), the state is loaded into the destination VF, the destination
 * resumes, and the same guest carries on there. Also the paths where a
 * migration does not happen: cancelled, refused by the destination.
 */
import test, { type ExecutionContext } from 'ava';
import { join } from 'node:path';
import type { Config, NvmeEmuVf } from '../schemas/types.ts';
import { startAgentProcess, tempDir, type AgentProcess } from './support/agent-process.ts';
import { GuestNvme } from './support/guest-nvme.ts';
import { copyGuestMemory, rpcHostPort, type GuestHostPort } from './support/host-port.ts';
import { RpcClient } from './support/rpc-client.ts';
import { VerifyingWorkload, type WorkloadReport } from './support/verifying-workload.ts';

const BDF = '0000:3b:00.2';
const MiB = 1024 * 1024;

interface Side {
  readonly agent: AgentProcess;
  readonly rpc: RpcClient;
  readonly port: GuestHostPort;
}

/** The VF both agents offer: same guest-visible identity, same namespace file (shared storage). */
function vfConfig(dir: string, overrides: Partial<NvmeEmuVf> = {}): NvmeEmuVf {
  return {
    id: 'nvme0', bdf: BDF, cntlid: 3, serial: 'VFMIG-E2E-0001', model: 'vfmigd e2e', subnqn: 'nqn.2026-11.dev.vfmigd:e2e',
    namespaces: [{ nsid: 1, path: join(dir, 'ns1.img'), sizeBytes: 64 * MiB, blockSize: 512 }],
    ...overrides,
  };
}

/** A 2 ms service time keeps the device busy with many commands at once. */
async function startSide(t: ExecutionContext, vf: NvmeEmuVf, serviceTimeUs = 2000): Promise<Side> {
  const config: Config = {
    drivers: [{ driver: 'nvme-emu', options: { hostPort: true, serviceTimeUs, vfs: [vf] } }],
  };
  const agent = await startAgentProcess({ config });
  t.teardown(async () => { await agent.stop(); });
  const rpc = await RpcClient.connect(agent.tcp);
  t.teardown(() => rpc.destroy());
  return { agent, rpc, port: rpcHostPort((method, params) => rpc.callAny(method, params), BDF) };
}

/** A guest with four I/O queue pairs and a verifying workload that has run for a while. */
async function busyGuest(source: Side, seed: number): Promise<{ nvme: GuestNvme; workload: VerifyingWorkload }> {
  const nvme = new GuestNvme(source.port);
  await nvme.enable();
  await nvme.setNumberOfQueues(4);
  for (let qid = 1; qid <= 4; qid += 1) await nvme.createIoQueuePair(qid, 256, qid);
  const workload = await VerifyingWorkload.create(nvme, { nsid: 1, queueIds: [1, 2, 3, 4], seed, queueDepth: 96, initialContent: 'zeroes', lbaCount: 8192 });
  await workload.runUntil(300);
  return { nvme, workload };
}

/** Puts at least 64 commands in flight and stops the guest's vCPUs (no submitting, no polling). */
async function pauseWithCommandsInFlight(t: ExecutionContext, workload: VerifyingWorkload): Promise<number> {
  await workload.submitBurst(160);
  const inFlight = workload.inFlight;
  t.true(inFlight >= 64, `${inFlight} commands in flight when the VM stops`);
  workload.quiesceGuestSide();
  return inFlight;
}

/** Reads the whole save stream in slices of `sliceBytes`, from `offset` 0. */
async function saveAll(rpc: RpcClient, sliceBytes: number): Promise<{ slices: Buffer[]; total: number }> {
  const slices: Buffer[] = [];
  let offset = 0;
  for (;;) {
    const slice = await rpc.call('vf.save', { vf: BDF, maxBytes: sliceBytes, offset });
    if (slice.offset !== offset) throw new Error(`slice at ${slice.offset}, expected ${offset}`);
    const bytes = Buffer.from(slice.data, 'base64');
    if (bytes.length !== slice.length || bytes.length > sliceBytes) throw new Error(`slice of ${bytes.length} bytes, announced ${slice.length}`);
    slices.push(bytes);
    offset += bytes.length;
    if (slice.remaining !== slice.totalBytes - offset) throw new Error(`remaining ${slice.remaining} after ${offset} of ${slice.totalBytes}`);
    if (slice.eof) return { slices, total: slice.totalBytes };
  }
}

async function loadAll(rpc: RpcClient, slices: readonly Buffer[]): Promise<void> {
  let offset = 0;
  for (const [index, bytes] of slices.entries()) {
    const progress = await rpc.call('vf.load', { vf: BDF, offset, data: bytes.toString('base64') });
    offset += bytes.length;
    if (progress.received !== offset || progress.state !== 'RESUMING') throw new Error(`load progress ${JSON.stringify(progress)} at ${offset}`);
    if (progress.complete !== (index === slices.length - 1)) throw new Error(`complete=${progress.complete} after slice ${index + 1} of ${slices.length}`);
  }
}

function assertClean(t: ExecutionContext, report: WorkloadReport, nvme: GuestNvme): void {
  t.deepEqual(report.failures.map((f) => f.message), [], `seed ${report.seed}: ${report.failureCount} failures`);
  t.true(report.ok);
  t.is(report.stats.completed, report.stats.submitted, 'every submitted command completed exactly once');
  t.deepEqual(nvme.violations(), [], 'no duplicate or stray completion, no queue pointer going backwards');
}

// QEMU asks for exact byte counts: 1 MiB, and odd sizes (an nvme-emu state with
// four queue pairs is ~2.5 KiB, so 509 bytes cuts it into several slices).
for (const sliceBytes of [MiB, 4093, 509]) {
  test(`migration between two agents with 64+ commands in flight over 4 queues, state moved in ${sliceBytes}-byte slices`, async (t) => {
    const dir = tempDir();
    const source = await startSide(t, vfConfig(dir));
    const destination = await startSide(t, vfConfig(dir));
    const { nvme, workload } = await busyGuest(source, 0x5eed + sliceBytes);
    await pauseWithCommandsInFlight(t, workload);

    // Source: stop (draining what the device fetched), then read the state out.
    // Some of the commands in flight were fetched by the device (drained now), the
    // rest are still in the submission queues and travel as queue pointers: how
    // many of each depends on timing, and both must come through.
    const quiesce = await source.rpc.call('vf.quiesce', { vf: BDF, timeoutMs: 5000 });
    t.deepEqual(quiesce.path, ['RUNNING_P2P', 'STOP']);
    t.log(`${quiesce.drainedCommands} commands drained by the quiesce`);
    const before = await source.rpc.call('vf.pending', { vf: BDF });
    t.false(before.streamOpen);
    const { slices, total } = await saveAll(source.rpc, sliceBytes);
    t.is(before.stopCopyBytes, total, 'the stop-copy estimate is exact for nvme-emu');
    t.is(slices.length, Math.ceil(total / sliceBytes));
    t.is((await source.rpc.call('vf.pending', { vf: BDF })).pendingBytes, 0);
    // The stream reads the same again from any offset, in any slice size.
    const again = await saveAll(source.rpc, sliceBytes === MiB ? 4093 : MiB);
    t.true(Buffer.concat(again.slices).equals(Buffer.concat(slices)), 'the save stream is stable and re-readable');

    // The VMM moves guest RAM while the VF is stopped.
    await copyGuestMemory(source.port, destination.port, nvme.memoryRegions());

    // Destination: stop, load slice by slice, resume.
    t.deepEqual((await destination.rpc.call('vf.setState', { vf: BDF, state: 'STOP' })).path, ['RUNNING_P2P', 'STOP']);
    await loadAll(destination.rpc, slices);
    const resumed = await destination.rpc.call('vf.resume', { vf: BDF });
    t.deepEqual(resumed.path, ['STOP', 'RUNNING_P2P', 'RUNNING']);

    // The guest carries on against the destination, from where the source stopped.
    await nvme.attach(destination.port);
    workload.resumeGuestSide();
    await workload.runUntil(workload.stats().completed + 1500);
    const report = await workload.finish();
    assertClean(t, report, nvme);
    const interrupts = await nvme.interruptCounts();
    t.true([1, 2, 3, 4].some((v) => (interrupts[v] ?? 0) > 0), 'the destination VF raises interrupts');

    // QEMU's cleanup on the source: STOP_COPY → STOP ends the stream.
    t.deepEqual((await source.rpc.call('vf.setState', { vf: BDF, state: 'STOP' })).path, ['STOP']);
    t.false((await source.rpc.call('vf.pending', { vf: BDF })).streamOpen);
  });
}

test('a cancelled migration (quiesce, partial save, back to RUNNING) loses nothing: the source carries on', async (t) => {
  const dir = tempDir();
  // Commands take 300 ms in this device, so the quiesce certainly finds fetched ones to drain.
  const source = await startSide(t, vfConfig(dir), 300_000);
  const { nvme, workload } = await busyGuest(source, 0xca11);
  await pauseWithCommandsInFlight(t, workload);

  const quiesce = await source.rpc.call('vf.quiesce', { vf: BDF });
  t.true(quiesce.drainedCommands > 0, 'fetched commands completed before STOP');
  t.true(quiesce.elapsedMs < 5000);
  const first = await source.rpc.call('vf.save', { vf: BDF, maxBytes: 509 });
  t.false(first.eof);
  const cancelled = await source.rpc.call('vf.resume', { vf: BDF });
  t.is(cancelled.from, 'STOP_COPY');
  t.deepEqual(cancelled.path, ['STOP', 'RUNNING_P2P', 'RUNNING']);
  t.false((await source.rpc.call('vf.pending', { vf: BDF })).streamOpen, 'cancelling drops the save stream');

  workload.resumeGuestSide();
  await workload.runUntil(workload.stats().completed + 1000);
  assertClean(t, await workload.finish(), nvme);
});

test('a destination that refuses the state leaves itself untouched, and the source resumes with nothing lost', async (t) => {
  const dir = tempDir();
  const source = await startSide(t, vfConfig(dir));
  // Same namespace file, but another serial number: the guest would see a different controller.
  const destination = await startSide(t, vfConfig(dir, { serial: 'VFMIG-E2E-OTHER' }));
  const { nvme, workload } = await busyGuest(source, 0xbad5);
  await pauseWithCommandsInFlight(t, workload);

  await source.rpc.call('vf.quiesce', { vf: BDF });
  const { slices } = await saveAll(source.rpc, MiB);
  await destination.rpc.call('vf.setState', { vf: BDF, state: 'STOP' });
  await loadAll(destination.rpc, slices);
  const refused = await destination.rpc.callError('vf.resume', { vf: BDF });
  t.is(refused.data?.code, 'STATE_INCOMPATIBLE');
  t.regex(refused.data?.detail ?? '', /serial/i, 'the error says which identity field differs');
  t.is(refused.data?.state, 'STOP');
  t.is((await destination.rpc.call('vf.getState', { vf: BDF })).state, 'STOP');
  // The destination is as it was: a disabled controller, which runs again.
  t.is((await destination.rpc.call('vf.resume', { vf: BDF })).state, 'RUNNING');
  t.is(await destination.port.mmioRead32(0x14), 0, 'CC of the destination is still the reset value');

  // A corrupted stream is refused the same way, before it reaches the driver.
  await destination.rpc.call('vf.setState', { vf: BDF, state: 'STOP' });
  const corrupted = Buffer.concat(slices);
  corrupted[corrupted.length >> 1] = (corrupted[corrupted.length >> 1] ?? 0) ^ 0x40;
  await loadAll(destination.rpc, [corrupted]);
  t.is((await destination.rpc.callError('vf.setState', { vf: BDF, state: 'STOP' })).data?.code, 'STATE_CORRUPT');

  // The migration failed: the source goes back to RUNNING and its guest finishes cleanly.
  await source.rpc.call('vf.resume', { vf: BDF });
  workload.resumeGuestSide();
  await workload.runUntil(workload.stats().completed + 500);
  assertClean(t, await workload.finish(), nvme);
});
