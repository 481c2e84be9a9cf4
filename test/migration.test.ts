/**
 * Live migration of an nvme-emu VF between two real agent processes, driven
 * over JSON-RPC exactly as a VMM would: a guest NVMe driver runs a verifying
 * workload on the source VF through the host port, the VF is quiesced with
 * commands in flight, its state is saved, guest RAM is copied (as QEMU
 * moves RAM), the state is loaded into the destination VF, the destination
 * resumes, and the same guest carries on there. Also the paths where a
 * migration does not happen: cancelled, refused by the destination.
 */
import test from 'ava';
import { tempDir } from './support/agent-process.ts';
import { copyGuestMemory } from './support/host-port.ts';
import { busyGuest, finishClean, loadAll, pauseWithCommandsInFlight, saveAll, startSide, vfConfig } from './support/migration-rig.ts';
import { base64Of } from './support/rpc-client.ts';

const BDF = '0000:3b:00.2';
const MiB = 1024 * 1024;

// QEMU asks for exact byte counts: 1 MiB, and odd sizes (an nvme-emu state with
// four queue pairs is ~2.5 KiB, so 509 bytes cuts it into several slices).
// One slice size here: slicing is tested on blob-bench (migration-slicing.test.ts) and in the core's unit tests.
for (const sliceBytes of [509]) {
  test(`migration between two agents with 64+ commands in flight over 4 queues, state moved in ${sliceBytes}-byte slices`, async (t) => {
    const dir = tempDir();
    const source = await startSide(t, [vfConfig(dir)]);
    const destination = await startSide(t, [vfConfig(dir)]);
    const { nvme, workload } = await busyGuest(source.portOf(BDF), 0x5eed + sliceBytes);
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
    const { slices, total } = await saveAll(source.rpc, BDF, sliceBytes);
    t.is(before.stopCopyBytes, total, 'the stop-copy estimate is exact for nvme-emu');
    t.is(slices.length, Math.ceil(total / sliceBytes));
    t.is((await source.rpc.call('vf.pending', { vf: BDF })).pendingBytes, 0);
    // The last slice can be asked for again (as after a lost answer), and nothing before it.
    const lastOffset = total - (slices.at(-1)?.length ?? 0);
    const again = await source.rpc.call('vf.save', { vf: BDF, maxBytes: sliceBytes, offset: lastOffset });
    t.true(Buffer.from(base64Of(again.data), 'base64').equals(slices.at(-1) ?? Buffer.alloc(0)), 'the last slice again, unchanged');
    t.is((await source.rpc.callError('vf.save', { vf: BDF, offset: 0 })).data?.code, 'STREAM_OFFSET', 'the stream is not kept whole');

    // The VMM moves guest RAM while the VF is stopped.
    await copyGuestMemory(source.portOf(BDF), destination.portOf(BDF), nvme.memoryRegions());

    // Destination: stop, load slice by slice, resume.
    t.deepEqual((await destination.rpc.call('vf.setState', { vf: BDF, state: 'STOP' })).path, ['RUNNING_P2P', 'STOP']);
    await loadAll(destination.rpc, BDF, slices);
    const resumed = await destination.rpc.call('vf.resume', { vf: BDF });
    t.deepEqual(resumed.path, ['STOP', 'RUNNING_P2P', 'RUNNING']);

    // The guest carries on against the destination, from where the source stopped.
    await nvme.attach(destination.portOf(BDF));
    await finishClean(t, { nvme, workload }, 1500);
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
  const source = await startSide(t, [vfConfig(dir)], 300_000);
  const { nvme, workload } = await busyGuest(source.portOf(BDF), 0xca11);
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

  await finishClean(t, { nvme, workload }, 1000);
});

test('a destination that refuses the state leaves itself untouched, and the source resumes with nothing lost', async (t) => {
  const dir = tempDir();
  const source = await startSide(t, [vfConfig(dir)]);
  // Same namespace file, but another serial number: the guest would see a different controller.
  const destination = await startSide(t, [vfConfig(dir, 0, { serial: 'VFMIG-E2E-OTHER' })]);
  const { nvme, workload } = await busyGuest(source.portOf(BDF), 0xbad5);
  await pauseWithCommandsInFlight(t, workload);

  await source.rpc.call('vf.quiesce', { vf: BDF });
  const { slices } = await saveAll(source.rpc, BDF, MiB);
  await destination.rpc.call('vf.setState', { vf: BDF, state: 'STOP' });
  // The stream says what it is in its first record: refused with the first slice, before anything else.
  const refused = await destination.rpc.callError('vf.load', { vf: BDF, offset: 0, data: (slices[0] ?? Buffer.alloc(0)).toString('base64') });
  t.is(refused.data?.code, 'STATE_INCOMPATIBLE');
  t.regex(refused.data?.detail ?? '', /serial/i, 'the error says which identity field differs');
  t.is(refused.data?.state, 'STOP');
  t.is((await destination.rpc.call('vf.getState', { vf: BDF })).state, 'STOP');
  // The destination is as it was: a disabled controller, which runs again.
  t.is((await destination.rpc.call('vf.resume', { vf: BDF })).state, 'RUNNING');
  t.is(await destination.portOf(BDF).mmioRead32(0x14), 0, 'CC of the destination is still the reset value');

  // A corrupted stream is refused the same way, before it reaches the driver.
  await destination.rpc.call('vf.setState', { vf: BDF, state: 'STOP' });
  const corrupted = Buffer.concat(slices);
  corrupted[corrupted.length >> 1] = (corrupted[corrupted.length >> 1] ?? 0) ^ 0x40;
  const damaged = await destination.rpc.callError('vf.load', { vf: BDF, offset: 0, data: corrupted.toString('base64') });
  t.is(damaged.data?.code, 'STATE_CORRUPT', 'a record that fails its CRC is refused as it arrives');
  t.is(damaged.data?.state, 'STOP');

  // The migration failed: the source goes back to RUNNING and its guest finishes cleanly.
  await source.rpc.call('vf.resume', { vf: BDF });
  await finishClean(t, { nvme, workload }, 500);
});
