/**
 * nvme-emu with the option `preCopy`: a save opened while the VF runs hands
 * out images of the running controller, a new one whenever it has changed,
 * then the final one once stopped; a resume applies only the last image,
 * which must have been taken stopped.
 */
import test from 'ava';
import { DriverError, type DeviceSaveStream, type StateFormat } from '../driver.ts';
import { FULL_STATE_FORMAT, STANDARD_STATE_FORMAT } from './state-format.ts';
import { captureState, farDeadline, type Fixture, startWithIoQueue, tempDir } from '../../test/support/nvme-emu/fixtures.ts';
import { copyGuestMemory, DATA, pattern } from '../../test/support/nvme-emu/test-guest.ts';

const WRITE = 0x01;
const READ = 0x02;

/** Everything the save has now (while running) or to its end (stopped). */
async function drain(save: DeviceSaveStream): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for (;;) {
    const piece = await save.read(509);
    pieces.push(Buffer.from(piece));
    if (piece.length < 509) return Buffer.concat(pieces);
  }
}

/** The images of device data, each sized by its header, as [CSATTR, bytes]. */
function images(data: Buffer): [number, Buffer][] {
  const out: [number, Buffer][] = [];
  for (let at = 0; at < data.length; ) {
    const length = 48 + 4 * (data.readUInt32LE(at + 16) + data.readUInt32LE(at + 32));
    out.push([data[at + 2] ?? -1, data.subarray(at, at + length)]);
    at += length;
  }
  return out;
}

async function load(f: Fixture, format: StateFormat, data: Buffer): Promise<void> {
  const stream = await f.driver.openLoad('nvme0', format);
  try {
    for (let at = 0; at < data.length; at += 4093) await stream.write(data.subarray(at, at + 4093));
    await stream.commit();
  } catch (error) {
    stream.abort();
    throw error;
  }
}

async function setup(t: { teardown(fn: () => Promise<void>): void }): Promise<{ source: Fixture; destination: Fixture }> {
  const dataDir = await tempDir(t);
  const source = await startWithIoQueue({ serviceTimeUs: 0, preCopy: true }, dataDir);
  t.teardown(source.close);
  const destination = await startWithIoQueue({ serviceTimeUs: 0 }, dataDir);
  t.teardown(destination.close);
  return { source, destination };
}

for (const format of [FULL_STATE_FORMAT, STANDARD_STATE_FORMAT]) {
  test(`${format.name}: images of the running VF, a new one after each change, the final one once stopped; the destination applies the last`, async (t) => {
    const { source, destination } = await setup(t);
    const { guest, port } = source;
    t.true(source.driver.capabilities.preCopy);
    const save = await source.driver.openSave('nvme0', format);
    const initial = await drain(save);
    t.is((await save.precopyInfo()).initialBytes, 0);
    t.is((await save.precopyInfo()).dirtyBytes, 0, 'nothing changed yet');
    t.is((await save.read(509)).length, 0, 'and there is nothing more for now');

    port.memWrite(DATA, pattern(4096, 5));
    t.is((await guest.run(1, { opcode: WRITE, nsid: 1, prp1: DATA, cdw10: 16, cdw12: 7 })).status, 0);
    const dirty = (await save.precopyInfo()).dirtyBytes;
    t.is(dirty, initial.length, 'the guest\'s command changed the state: a whole new image is due');
    const second = await drain(save);
    t.is(second.length, dirty);

    await source.driver.setRunLevel('nvme0', 'stopped', farDeadline());
    const left = (await save.stopCopyBytes());
    const final = await drain(save);
    t.is(final.length, left, 'stopCopyBytes is exact once stopped');
    save.close();
    const data = Buffer.concat([initial, second, final]);
    t.deepEqual(images(data).map(([csattr]) => csattr), [0, 0, 1], 'two images taken running, the last taken stopped (CSATTR bit 0)');
    t.deepEqual(images(data)[2]?.[1], Buffer.from((await captureState(source.driver, 'nvme0', format)).payload), 'the last is the state a stopped save takes');

    await destination.driver.setRunLevel('nvme0', 'stopped', farDeadline());
    copyGuestMemory(port, destination.port, [...guest.queueRanges(), { address: DATA, length: 4096 }]);
    await load(destination, format, data);
    t.deepEqual((await captureState(destination.driver, 'nvme0', format)).payload, (await captureState(source.driver, 'nvme0', format)).payload, 'the destination holds the final state');
    await destination.driver.setRunLevel('nvme0', 'running', farDeadline());
    guest.moveTo(destination.port);
    t.is((await guest.run(1, { opcode: READ, nsid: 1, prp1: DATA + 4096, cdw10: 16, cdw12: 7 })).status, 0);
    t.deepEqual(destination.port.memRead(DATA + 4096, 4096), pattern(4096, 5), 'the write done during pre-copy is there');
  });
}

test('a stream whose last image was taken running is refused, and so is a damaged earlier image as it arrives; the destination is unchanged', async (t) => {
  const { source, destination } = await setup(t);
  const save = await source.driver.openSave('nvme0', FULL_STATE_FORMAT);
  const initial = await drain(save);
  t.is((await source.guest.run(1, { opcode: READ, nsid: 1, prp1: DATA })).status, 0);
  const second = await drain(save);
  await source.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  const final = await drain(save);
  save.close();

  await destination.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  const before = (await captureState(destination.driver, 'nvme0')).payload;
  const unfinished = await t.throwsAsync(load(destination, FULL_STATE_FORMAT, Buffer.concat([initial, second])), { instanceOf: DriverError });
  t.is(unfinished?.kind, 'corrupt-state');
  t.regex(unfinished?.message ?? '', /taken while the source VF ran/);
  const damaged = Buffer.concat([initial, second, final]);
  damaged[100] = (damaged[100] ?? 0) ^ 0x01;
  const early = await destination.driver.openLoad('nvme0', FULL_STATE_FORMAT);
  await t.throwsAsync(early.write(damaged.subarray(0, initial.length)), { instanceOf: DriverError, message: /checksum mismatch/ }, 'refused with the slice that completes the bad image');
  early.abort();
  t.deepEqual((await captureState(destination.driver, 'nvme0')).payload, before, 'the VF is unchanged');
  await load(destination, FULL_STATE_FORMAT, Buffer.concat([initial, second, final]));
});

test('without preCopy a save needs the VF stopped, and the capability follows the option', async (t) => {
  const f = await startWithIoQueue({ serviceTimeUs: 0 });
  t.teardown(f.close);
  t.false(f.driver.capabilities.preCopy);
  await t.throwsAsync(async () => f.driver.openSave('nvme0', FULL_STATE_FORMAT), { instanceOf: DriverError, message: /stopped/ });
  await f.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  const save = await f.driver.openSave('nvme0', FULL_STATE_FORMAT);
  await t.throwsAsync(async () => (await save.precopyInfo()), { instanceOf: DriverError });
  t.is((await drain(save)).length, (await f.driver.stopCopyBytes('nvme0')));
  save.close();
});
