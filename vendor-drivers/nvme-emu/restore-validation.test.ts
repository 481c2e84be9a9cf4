import test, { type ExecutionContext } from 'ava';
import { join } from 'node:path';
import { DriverError } from '../driver.ts';
import { captureState, type CapturedState, editedCopy, farDeadline, type Fixture, reseal, restoreState, startDriver, startWithIoQueue, stopWithStateOfItsOwn, tempDir, TEST_NAMESPACE_BYTES } from '../../test/support/nvme-emu/fixtures.ts';
import { sqe } from '../../test/support/nvme-emu/test-guest.ts';

const SQ_ENTRY = 56;

/** A stopped source image with one I/O pair and an outstanding AER, and a stopped destination with state of its own. */
async function setup(t: { teardown(fn: () => Promise<void>): void }): Promise<{ image: CapturedState; destination: Fixture }> {
  const dataDir = await tempDir(t);
  const source = await startWithIoQueue({ serviceTimeUs: 0 }, dataDir);
  t.teardown(source.close);
  source.guest.submit(0, sqe({ opcode: 0x0c, cid: 0x99 }));
  await source.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  const image = await captureState(source.driver, 'nvme0');
  const destination = await startDriver({ serviceTimeUs: 0 }, dataDir);
  t.teardown(destination.close);
  await stopWithStateOfItsOwn(destination);
  return { image, destination };
}

/** Edited, then sealed again, so that the checks behind the checksum are reached. */
function edited(payload: Uint8Array, edit: (dv: DataView) => void): Uint8Array {
  return reseal(editedCopy(payload, edit));
}

async function refused(
  t: ExecutionContext,
  destination: Fixture,
  image: CapturedState,
  kind: DriverError['kind'],
  message: RegExp,
): Promise<void> {
  const before = (await captureState(destination.driver, 'nvme0')).payload;
  const error = await t.throwsAsync(restoreState(destination.driver, 'nvme0', image), { instanceOf: DriverError });
  t.is(error?.kind, kind);
  t.regex(error?.message ?? '', message);
  t.deepEqual((await captureState(destination.driver, 'nvme0')).payload, before, 'the VF is unchanged');
}

test('a valid image loads, and the same image is refused after being damaged', async (t) => {
  const { image, destination } = await setup(t);
  const length = image.payload.length;
  await refused(t, destination, { ...image, payload: image.payload.subarray(0, length - 8) }, 'corrupt-state', new RegExp(`ends inside an image: it has ${length - 8} of its ${length} bytes`));
  await refused(t, destination, { ...image, payload: image.payload.subarray(0, 20) }, 'corrupt-state', /ends inside an image: it has 20 of the 48 bytes of its header/);
  const flipped = image.payload.slice();
  flipped[SQ_ENTRY + 2] = (flipped[SQ_ENTRY + 2] ?? 0) ^ 0x40;
  await refused(t, destination, { ...image, payload: flipped }, 'corrupt-state', /checksum mismatch/);
  await restoreState(destination.driver, 'nvme0', image);
  t.is((await destination.driver.describe('nvme0')).details.queues.active, 1);
});

test('sealed but inconsistent payloads are refused with the offending field', async (t) => {
  const { image, destination } = await setup(t);
  const cases: [string, (dv: DataView) => void, DriverError['kind'], RegExp][] = [
    ['SQ on a missing CQ', (dv) => dv.setUint16(SQ_ENTRY + 12, 9, true), 'corrupt-state', /CQID 9/],
    ['SQ head beyond the queue', (dv) => dv.setUint16(SQ_ENTRY + 16, 64, true), 'corrupt-state', /head 64/],
    ['queue larger than MQES', (dv) => dv.setUint16(SQ_ENTRY + 8, 4000, true), 'corrupt-state', /4001 entries/],
    ['queue id changed without its latch record', (dv) => dv.setUint16(SQ_ENTRY + 10, 40, true), 'corrupt-state', /latch for QID 1 does not match I\/O SQ 40/],
    ['unaligned queue base', (dv) => dv.setUint32(SQ_ENTRY, 0x123, true), 'corrupt-state', /not a page-aligned/],
    ['CQ vector beyond the VF', (dv) => dv.setUint16(SQ_ENTRY + 24 + 18, 99, true), 'corrupt-state', /vector 99/],
    ['header version', (dv) => dv.setUint16(0, 7, true), 'incompatible-state', /version 7/],
    ['NVMe controller state version', (dv) => dv.setUint16(48, 1, true), 'incompatible-state', /controller state version 1/],
    ['reserved header byte', (dv) => dv.setUint8(5, 1), 'corrupt-state', /reserved/],
    ['NIOSQ disagrees with NVMECSS', (dv) => dv.setUint16(50, 2, true), 'corrupt-state', /NIOSQ 2/],
  ];
  for (const [name, edit, kind, message] of cases) {
    t.log(name);
    await refused(t, destination, { ...image, payload: edited(image.payload, edit) }, kind, message);
  }
});

test('a foreign identity is incompatible: in the image, or only inside the payload', async (t) => {
  const dataDir = await tempDir(t);
  const foreign = await startDriver({
    serviceTimeUs: 0,
    vfs: [{ id: 'nvme0', bdf: '0000:3b:00.2', serial: 'SOMEONE-ELSE', namespaces: [{ path: join(dataDir, 'other.img'), sizeBytes: TEST_NAMESPACE_BYTES }] }],
  });
  t.teardown(foreign.close);
  await foreign.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  const foreignImage = await captureState(foreign.driver, 'nvme0');
  const { image, destination } = await setup(t);

  const error = await t.throwsAsync(async () => destination.driver.checkIdentity('nvme0', foreignImage.identity), { instanceOf: DriverError });
  t.is(error?.kind, 'incompatible-state');
  t.regex(error?.message ?? '', /serialNumber differs: source "SOMEONE-ELSE", destination "VFM00003B002"/);
  // The core asks checkIdentity first; restoreState checks what the payload says, whatever the image claims.
  await refused(t, destination, foreignImage, 'incompatible-state', /payload identity.serialNumber/);
  await refused(t, destination, { ...foreignImage, identity: image.identity }, 'incompatible-state', /payload identity.serialNumber/);
});

test('a namespace of another size is incompatible', async (t) => {
  const dataDir = await tempDir(t);
  const bigger = await startDriver({ serviceTimeUs: 0, namespaceBytes: 2 * TEST_NAMESPACE_BYTES }, dataDir);
  t.teardown(bigger.close);
  await bigger.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  const image = await captureState(bigger.driver, 'nvme0');
  const { destination } = await setup(t);
  await refused(t, destination, image, 'incompatible-state', /namespaces\[0\]\.sizeBytes differs: source 33554432, destination 16777216/);
});

test('restoreState refuses a VF that is not stopped', async (t) => {
  const { image, destination } = await setup(t);
  await destination.driver.setRunLevel('nvme0', 'running', farDeadline());
  await t.throwsAsync(restoreState(destination.driver, 'nvme0', image), { instanceOf: DriverError, message: /stopped/ });
});

/** `payload` with one more vendor record before the seal, as a newer nvme-emu would write it: count, VSS and seal follow. */
function withVendorRecord(payload: Uint8Array, tag: number, body: Uint8Array): Uint8Array {
  const padded = Math.ceil(body.length / 4) * 4;
  const record = new Uint8Array(8 + padded);
  const rv = new DataView(record.buffer);
  rv.setUint16(0, tag, true);
  rv.setUint16(2, 1, true);
  rv.setUint32(4, body.length, true);
  record.set(body, 8);
  const sealAt = payload.length - 12;
  const out = new Uint8Array(payload.length + record.length);
  out.set(payload.subarray(0, sealAt), 0);
  out.set(record, sealAt);
  out.set(payload.subarray(sealAt), sealAt + record.length);
  const dv = new DataView(out.buffer);
  const vendorStart = 48 + 4 * dv.getUint32(16, true);
  dv.setUint16(vendorStart + 6, dv.getUint16(vendorStart + 6, true) + 1, true);
  dv.setUint32(32, dv.getUint32(32, true) + record.length / 4, true);
  return reseal(out);
}

test('vendor records of a newer nvme-emu: an unknown optional one (tag 0x8000 and up) is skipped, an unknown mandatory one is refused and nothing changes', async (t) => {
  const { image, destination } = await setup(t);
  const hint = new TextEncoder().encode('a hint from a newer nvme-emu');
  await refused(t, destination, { ...image, payload: withVendorRecord(image.payload, 0x0042, hint) }, 'incompatible-state', /record tag 0x0*42 .* is mandatory and unknown/);
  await restoreState(destination.driver, 'nvme0', { ...image, payload: withVendorRecord(image.payload, 0x8042, hint) });
  t.is((await destination.driver.describe('nvme0')).details.queues.active, 1, 'the state it carried was applied');
  // The optional record is gone from what the destination saves, and nothing else differs from the source's state.
  await destination.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  t.deepEqual((await captureState(destination.driver, 'nvme0')).payload, image.payload);
});

/** `payload` without its vendor record `tag`, as an nvme-emu that did not write it would have saved it: count, VSS and seal follow. */
function withoutVendorRecord(payload: Uint8Array, tag: number): Uint8Array {
  const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const vendorStart = 48 + 4 * dv.getUint32(16, true);
  const count = dv.getUint16(vendorStart + 6, true);
  let at = vendorStart + 8;
  for (let i = 0; i < count; i++) {
    const length = 8 + Math.ceil(dv.getUint32(at + 4, true) / 4) * 4;
    if (dv.getUint16(at, true) === tag) {
      const out = new Uint8Array(payload.length - length);
      out.set(payload.subarray(0, at), 0);
      out.set(payload.subarray(at + length), at);
      const ov = new DataView(out.buffer);
      ov.setUint16(vendorStart + 6, count - 1, true);
      ov.setUint32(32, ov.getUint32(32, true) - length / 4, true);
      return reseal(out);
    }
    at += length;
  }
  throw new Error(`no vendor record 0x${tag.toString(16)}`);
}

/** `source`'s VF moved to a new driver on the same namespace files, running, with the guest moved along. */
async function migrated(t: { teardown(fn: () => Promise<void>): void }, source: Fixture, dataDir: string): Promise<Fixture> {
  await source.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  const image = await captureState(source.driver, 'nvme0');
  const destination = await startDriver({ serviceTimeUs: 0 }, dataDir);
  t.teardown(destination.close);
  await destination.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  await restoreState(destination.driver, 'nvme0', image);
  await destination.driver.setRunLevel('nvme0', 'running', farDeadline());
  source.guest.moveTo(destination.port);
  return { ...destination, guest: source.guest };
}

test('every settable feature travels with the state, in a mandatory record written only when a value is not the default', async (t) => {
  const dataDir = await tempDir(t);
  const source = await startWithIoQueue({ serviceTimeUs: 0 }, dataDir);
  t.teardown(source.close);
  const settings: [number, number][] = [[0x01, 0x30201003], [0x02, 2 << 5], [0x04, 300], [0x04, (1 << 20) | 273], [0x05, 40], [0x09, (1 << 16) | 1], [0x0a, 1]];
  for (const [fid, cdw11] of settings) t.is((await source.guest.admin({ opcode: 0x09, cdw10: fid, cdw11 })).status, 0, `Set Features ${fid.toString(16)}h`);
  await source.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  const image = await captureState(source.driver, 'nvme0');
  await source.driver.setRunLevel('nvme0', 'running', farDeadline());
  const destination = await migrated(t, source, dataDir);
  const get = async (fid: number, cdw11 = 0): Promise<number> => (await destination.guest.admin({ opcode: 0x0a, cdw10: fid, cdw11 })).dw0;
  t.deepEqual(
    [await get(0x01), await get(0x02), (await get(0x04)) & 0xffff, await get(0x04, 1 << 20), await get(0x05), await get(0x09, 1), await get(0x0a)],
    [0x30201003, 2 << 5, 300, (1 << 20) | 273, 40, (1 << 16) | 1, 1],
  );
  // A reader from before the "more features" record (tag 0x000A) would have to drop them: it is mandatory, so such a reader refuses the state.
  const { image: plain } = await setup(t);
  const vendorTags = (payload: Uint8Array): number[] => {
    const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    let at = 48 + 4 * dv.getUint32(16, true) + 8;
    return Array.from({ length: dv.getUint16(at - 2, true) }, () => {
      const tag = dv.getUint16(at, true);
      at += 8 + Math.ceil(dv.getUint32(at + 4, true) / 4) * 4;
      return tag;
    });
  };
  t.true(vendorTags(image.payload).includes(0x000a), 'carried when set');
  t.false(vendorTags(plain.payload).includes(0x000a), 'not written when every value is the default, so older readers take the state');
});

test('how Number of Queues stands travels with the state: an allocation stays fixed, and created queues keep it from changing, on the destination too', async (t) => {
  const dataDir = await tempDir(t);
  const setQueues = (f: Fixture, pairs: number) => f.guest.admin({ opcode: 0x09, cdw10: 0x07, cdw11: ((pairs - 1) << 16) | (pairs - 1) });
  const migrate = (source: Fixture): Promise<Fixture> => migrated(t, source, dataDir);
  const allocated = await startDriver({ serviceTimeUs: 0 }, dataDir);
  t.teardown(allocated.close);
  await allocated.guest.enable();
  t.is((await setQueues(allocated, 2)).dw0, 1 | (1 << 16));
  const there = await migrate(allocated);
  t.is((await setQueues(there, 8)).dw0, 1 | (1 << 16), 'allocated on the source: unchanged on the destination');

  const created = await startWithIoQueue({ serviceTimeUs: 0 }, dataDir);
  t.teardown(created.close);
  t.is((await created.guest.admin({ opcode: 0x00, cdw10: 1 })).status, 0);
  t.is((await created.guest.admin({ opcode: 0x04, cdw10: 1 })).status, 0);
  const after = await migrate(created);
  t.is((await setQueues(after, 8)).status, 0x00c, 'queues created (and deleted) on the source: Command Sequence Error on the destination');
});

test('a state without the queue allocation record (written before it existed) loads; its I/O queues count as created', async (t) => {
  const { image, destination } = await setup(t);
  await restoreState(destination.driver, 'nvme0', { ...image, payload: withoutVendorRecord(image.payload, 0x8001) });
  t.is((await destination.driver.describe('nvme0')).details.queues.active, 1);
  await destination.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  t.deepEqual((await captureState(destination.driver, 'nvme0')).payload, image.payload, 'saved again, the record says what the source\'s said: queues created, nothing allocated');
});
