/**
 * PRE_COPY on nvme-emu (the option `preCopy`) between two real agents,
 * under a guest's verifying workload: the VMM reads the state while the VF
 * runs with I/O in flight (each read hands out a whole new image of the
 * controller state once it has changed), then stops it with commands in
 * flight and reads the final image; the destination applies the last
 * image only. And a pre-copy cancelled back to RUNNING while the guest's
 * I/O goes on. Every command completes once, every byte is verified.
 */
import test from 'ava';
import { setTimeout as delay } from 'node:timers/promises';
import { RecordStreamReader } from '../agent/core/state-records.ts';
import { tempDir } from './support/agent-process.ts';
import { copyGuestMemory } from './support/host-port.ts';
import { busyGuest, finishClean, pauseWithCommandsInFlight, startSide, vfConfig } from './support/migration-rig.ts';
import { base64Of, type RpcClient } from './support/rpc-client.ts';

const BDF = '0000:3b:00.2';
const MiB = 1024 * 1024;

/** The next slice of the open save, checked to continue the stream. */
async function saveSlice(rpc: RpcClient, slices: Buffer[]): Promise<{ bytes: number; eof: boolean }> {
  const offset = slices.reduce((sum, s) => sum + s.length, 0);
  const slice = await rpc.call('vf.save', { vf: BDF, maxBytes: MiB, offset });
  if (slice.offset !== offset) throw new Error(`slice at ${slice.offset}, expected ${offset}`);
  slices.push(Buffer.from(base64Of(slice.data), 'base64'));
  return { bytes: slice.length, eof: slice.eof };
}

/** Until the running VF has changed since the last image was read: dirty data to read. */
async function untilDirty(rpc: RpcClient): Promise<number> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { dirtyBytes } = await rpc.call('vf.precopyInfo', { vf: BDF });
    if (dirtyBytes > 0) return dirtyBytes;
    if (Date.now() > deadline) throw new Error('the running VF did not change within 10 s');
    await delay(1);
  }
}

/** CSATTR of each Controller State image in the stream's device data (each sized by its header). */
function imageAttributes(stream: Buffer): number[] {
  const reader = new RecordStreamReader({ maxRecordBytes: 16 * MiB, maxV1StateBytes: 16 * MiB });
  const events = reader.push(stream);
  reader.finish();
  const data = Buffer.concat(events.flatMap((e) => (e.type === 'data' ? e.pieces : [])));
  const attributes: number[] = [];
  for (let at = 0; at < data.length; at += 48 + 4 * (data.readUInt32LE(at + 16) + data.readUInt32LE(at + 32))) attributes.push(data[at + 2] ?? -1);
  return attributes;
}

test('PRE_COPY under I/O: saves while the VF runs with commands in flight, then stop-copy; the destination applies the final image, every command once, every byte verified', async (t) => {
  const dir = tempDir();
  const source = await startSide(t, [vfConfig(dir)], 2000, {}, { preCopy: true });
  const destination = await startSide(t, [vfConfig(dir)]); // no pre-copy of its own: it takes a pre-copy stream all the same
  const { nvme, workload } = await busyGuest(source.portOf(BDF), 0x9ec0);

  t.deepEqual((await source.rpc.call('vf.setState', { vf: BDF, state: 'PRE_COPY' })).path, ['PRE_COPY']);
  const first = await source.rpc.call('vf.precopyInfo', { vf: BDF });
  t.true(first.initialBytes > 0, 'the initial image is there to read');
  const slices: Buffer[] = [];
  for (let round = 0; round < 4; round += 1) {
    if (round > 0) t.true((await untilDirty(source.rpc)) > 0);
    const submitted = await workload.submitBurst(64);
    t.true(submitted > 0 && workload.inFlight >= submitted, `round ${round}: commands in flight while the state is read`);
    const slice = await saveSlice(source.rpc, slices);
    t.true(slice.bytes > 0 && !slice.eof, `round ${round}: a whole image of the running controller, and the stream goes on`);
    t.is((await source.rpc.call('vf.precopyInfo', { vf: BDF })).initialBytes, 0, 'the initial image was read whole');
    t.is((await source.rpc.call('vf.getState', { vf: BDF })).state, 'PRE_COPY');
    // The guest goes on: commands complete and the state moves on.
    await workload.runUntil(workload.stats().completed + 100);
  }

  // The VM stops with commands in flight; STOP_COPY drains what the device fetched.
  await pauseWithCommandsInFlight(t, workload);
  const stopped = await source.rpc.call('vf.setState', { vf: BDF, state: 'STOP_COPY', timeoutMs: 5000 });
  t.deepEqual(stopped.path, ['PRE_COPY_P2P', 'STOP_COPY']);
  t.log(`${stopped.drainedCommands} commands drained by the stop`);
  const left = (await source.rpc.call('vf.pending', { vf: BDF })).pendingBytes;
  let tail = 0;
  for (;;) {
    const slice = await saveSlice(source.rpc, slices);
    tail += slice.bytes;
    if (slice.eof) break;
  }
  t.is(tail, left, 'the stop-copy size was exact');
  const stream = Buffer.concat(slices);
  const attributes = imageAttributes(stream);
  t.true(attributes.length >= 5, `${attributes.length} images`);
  t.deepEqual(attributes, [...attributes.slice(0, -1).map(() => 0), 1], 'images taken running, then the final one taken stopped');

  await copyGuestMemory(source.portOf(BDF), destination.portOf(BDF), nvme.memoryRegions());
  await destination.rpc.call('vf.setState', { vf: BDF, state: 'STOP' });
  for (let offset = 0; offset < stream.length; offset += 509) {
    await destination.rpc.call('vf.load', { vf: BDF, offset, data: stream.subarray(offset, offset + 509).toString('base64') });
  }
  t.is((await destination.rpc.call('vf.resume', { vf: BDF })).state, 'RUNNING');
  await source.rpc.call('vf.setState', { vf: BDF, state: 'STOP' });

  await nvme.attach(destination.portOf(BDF));
  await finishClean(t, { nvme, workload }, 600);
});

test('a pre-copy cancelled back to RUNNING while the guest\'s I/O goes on loses nothing', async (t) => {
  const dir = tempDir();
  const source = await startSide(t, [vfConfig(dir)], 2000, {}, { preCopy: true });
  const { nvme, workload } = await busyGuest(source.portOf(BDF), 0xca9c);
  // The guest keeps going throughout, and on for 300 commands after the cancel.
  let cancelledAt: number | undefined;
  const io = (async () => {
    while (cancelledAt === undefined || workload.stats().completed < cancelledAt + 300) await workload.runUntil(workload.stats().completed + 50);
  })();

  await source.rpc.call('vf.setState', { vf: BDF, state: 'PRE_COPY' });
  const slices: Buffer[] = [];
  t.true((await saveSlice(source.rpc, slices)).bytes > 0, 'the initial image');
  await untilDirty(source.rpc);
  t.true((await saveSlice(source.rpc, slices)).bytes > 0, 'an image of the state the I/O has moved on to');
  const cancelled = await source.rpc.call('vf.resume', { vf: BDF });
  cancelledAt = workload.stats().completed;
  t.is(cancelled.from, 'PRE_COPY');
  t.deepEqual(cancelled.path, ['RUNNING']);
  t.false((await source.rpc.call('vf.pending', { vf: BDF })).streamOpen, 'the save is gone');
  t.is((await source.rpc.call('vf.get', { vf: BDF })).session, null);
  await io;
  await finishClean(t, { nvme, workload }, 200);
});
