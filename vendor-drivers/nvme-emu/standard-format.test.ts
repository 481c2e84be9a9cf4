/**
 * The standard format (`nvme-controller-state` v0): only the NVMe-standard
 * I/O queue state travels. The queues must resume exactly; everything else
 * is what standard-restore.ts says; a bad state is refused whole.
 */
import test, { type ExecutionContext } from 'ava';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { DriverError, type HostPort } from '../driver.ts';
import { decodeState } from './state-decode.ts';
import { FULL_STATE_FORMAT, STANDARD_STATE_FORMAT } from './state-format.ts';
import { captureState, type CapturedState, editedCopy, farDeadline, type Fixture, restoreState, startDriver, stopWithStateOfItsOwn, tempDir } from '../../test/support/nvme-emu/fixtures.ts';
import { copyGuestMemory, DATA, IO_QUEUES, pattern, sqe } from '../../test/support/nvme-emu/test-guest.ts';

const WRITE = 0x01;
const READ = 0x02;
const FLUSH = 0x00;
const SET_FEATURES = 0x09;
const GET_FEATURES = 0x0a;
const ASYNC_EVENT_REQUEST = 0x0c;
const IDENTIFY = 0x06;
const CC = 0x14;
const CSTS = 0x1c;
/** CC the guest writes to enable: EN, 64-byte SQEs, 16-byte CQEs. */
const CC_ENABLED = (4 << 20) | (6 << 16) | 1;
const SQ_ENTRY = 56;

/** Where TestGuest puts CQ 1 (test-guest.ts, createIoPair). */
const CQ1_BASE = IO_QUEUES + 0x20000;

/** Waits until the first `count` slots of a fresh CQ hold posted entries (phase 1), without consuming them. */
async function untilPosted(port: HostPort, cqBase: number, count: number): Promise<void> {
  const posted = (): boolean => ((new DataView(port.memRead(cqBase + (count - 1) * 16, 16).slice().buffer).getUint32(12, true) >>> 16) & 1) === 1;
  const deadline = performance.now() + 3000;
  while (!posted()) {
    if (performance.now() > deadline) throw new Error(`${count} completions not posted within 3 s`);
    await nextTurn();
  }
}

async function pair(t: ExecutionContext): Promise<{ source: Fixture; destination: Fixture }> {
  const dataDir = await tempDir(t);
  const source = await startDriver({ serviceTimeUs: 0 }, dataDir);
  t.teardown(source.close);
  const destination = await startDriver({ serviceTimeUs: 0 }, dataDir);
  t.teardown(destination.close);
  return { source, destination };
}

/** The destination's whole state as its full format says it, decoded. */
async function fullStateOf(f: Fixture): Promise<ReturnType<typeof decodeState>> {
  return decodeState((await captureState(f.driver, 'nvme0', FULL_STATE_FORMAT)).payload);
}

test('round trip: the I/O queues resume exactly, with latched doorbells, unacknowledged completions and a wrapped CQ', async (t) => {
  const { source, destination } = await pair(t);
  const { guest, port } = source;
  await guest.enable();
  await guest.createIoPair(1, 64, 1);
  await guest.createIoPair(2, 32, 2, 16);
  for (let i = 0; i < 20; i++) t.is((await guest.run(2, { opcode: FLUSH, nsid: 1 })).status, 0); // CQ 2 wraps: its phase is inverted
  // Three completions on CQ 1 the guest has not looked at when the VF stops.
  for (const cid of [0x11, 0x12, 0x13]) guest.place(1, sqe({ opcode: FLUSH, cid, nsid: 1 }));
  guest.ring(1);
  await untilPosted(port, CQ1_BASE, 3);
  await source.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  // While stopped: the guest consumes one completion (a latched CQ head) and rings two commands (a latched SQ tail).
  const consumed = guest.poll(1)?.cid;
  port.memWrite(DATA, pattern(4096, 3));
  guest.place(2, sqe({ opcode: WRITE, cid: 0x21, nsid: 1, prp1: DATA, cdw10: 64, cdw12: 7 }));
  guest.place(2, sqe({ opcode: FLUSH, cid: 0x22, nsid: 1 }));
  guest.ring(2);

  const image = await captureState(source.driver, 'nvme0', STANDARD_STATE_FORMAT);
  const dv = new DataView(image.payload.buffer);
  t.is(image.payload.length, 48 + 8 + 4 * 24, 'header, NVMe controller state, two SQ and two CQ entries, nothing else');
  t.is(image.payload[2], 1, 'CSATTR: suspended');
  t.is(dv.getUint32(32, true), 0, 'VSS: no vendor-specific section');
  t.is(dv.getUint16(SQ_ENTRY + 24 + 18, true), 22, 'SQ 2 tail: the latched doorbell (20 flushes, then two rung while stopped)');
  t.is(dv.getUint16(SQ_ENTRY + 48 + 12, true), 1, 'CQ 1 head: the latched doorbell (one of three consumed while stopped)');
  t.is((await source.driver.stopCopyBytes('nvme0')), (await captureState(source.driver, 'nvme0')).payload.length, 'stopCopyBytes is of the default (full) format');

  await destination.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  copyGuestMemory(port, destination.port, [...guest.queueRanges(), { address: DATA, length: 8192 }]);
  await destination.driver.checkIdentity('nvme0', image.identity);
  await restoreState(destination.driver, 'nvme0', image);
  t.deepEqual((await captureState(destination.driver, 'nvme0', STANDARD_STATE_FORMAT)).payload, image.payload, 'the destination saves the same queues');
  t.is(destination.port.mmioRead32(CC), CC_ENABLED, 'CC: what the guest must have written for I/O queues to exist');
  t.is(destination.port.mmioRead32(CSTS), 1, 'CSTS: ready');

  guest.moveTo(destination.port);
  const before = destination.port.interruptCounts();
  await destination.driver.setRunLevel('nvme0', 'running', farDeadline());
  t.is(destination.port.interruptCounts()[1], (before[1] ?? 0) + 1, 'CQ 1 holds completions the guest has not acknowledged: its vector is raised on resume');
  const rest = (await guest.collect(1, 2)).map((c) => c.cid);
  t.deepEqual([consumed, ...rest].sort(), [0x11, 0x12, 0x13], 'the rest of CQ 1, each once');
  t.is(guest.poll(1), undefined);
  const latched = await guest.collect(2, 2);
  // Fetched together, they run concurrently: either may complete first.
  t.deepEqual(latched.map((c) => [c.cid, c.status]).sort(), [[0x21, 0], [0x22, 0]], 'the commands rung while stopped run on the destination, in the wrapped CQ\'s phase');
  for (const qid of [1, 2]) {
    t.is((await guest.run(qid, { opcode: READ, nsid: 1, prp1: DATA + qid * 4096, cdw10: 64, cdw12: 7 })).status, 0, `queue ${qid} goes on`);
    t.deepEqual(destination.port.memRead(DATA + qid * 4096, 4096), pattern(4096, 3), `queue ${qid} reads what the latched write wrote`);
  }
});

test('what the standard format does not carry is the destination\'s default, and the guest gets it back by resetting the controller', async (t) => {
  const { source, destination } = await pair(t);
  const { guest } = source;
  await guest.enable();
  await guest.createIoPair(1);
  t.is((await guest.admin({ opcode: SET_FEATURES, cdw10: 0x06, cdw11: 1 })).status, 0, 'write cache on');
  t.is((await guest.admin({ opcode: SET_FEATURES, cdw10: 0x08, cdw11: 0x0105 })).status, 0, 'interrupt coalescing');
  t.is((await guest.admin({ opcode: SET_FEATURES, cdw10: 0x0b, cdw11: 0x03 })).status, 0, 'AEC');
  guest.submit(0, sqe({ opcode: ASYNC_EVENT_REQUEST, cid: 0x51 }));
  source.port.mmioWrite32(0x0c, 1 << 3); // INTMS: vector 3
  await nextTurn();
  await source.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  const image = await captureState(source.driver, 'nvme0', STANDARD_STATE_FORMAT);

  // The destination has a history of its own: a write (SMART) and an error (the error log).
  const own = destination.guest;
  await own.enable();
  await own.createIoPair(3);
  t.is((await own.run(3, { opcode: WRITE, nsid: 1, prp1: DATA, cdw10: 0, cdw12: 0 })).status, 0);
  t.not((await own.run(3, { opcode: READ, nsid: 9, prp1: DATA })).status, 0);
  await destination.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  copyGuestMemory(source.port, destination.port, guest.queueRanges());
  await restoreState(destination.driver, 'nvme0', image);

  const s = await fullStateOf(destination);
  t.deepEqual(s.ioSqs.map((q) => q.id), [1], 'the source\'s I/O queues, not the destination\'s');
  t.is(s.adminSq, undefined, 'no admin queue');
  t.deepEqual([s.registers.aqa, s.registers.asqLo, s.registers.acqLo], [0, 0, 0]);
  t.false(s.features.volatileWriteCache, 'the write cache is off: every completed write is durable');
  t.deepEqual([s.features.coalescingThreshold, s.features.coalescingTime, s.features.asyncEventConfig], [0, 0, 0], 'other features are their defaults');
  t.deepEqual([s.features.nsqa, s.features.ncqa], [15, 15], 'Number of Queues: the default grant');
  t.deepEqual(s.events, { outstanding: [], queued: [], masked: [] }, 'the outstanding AER is lost');
  t.is(s.interruptMask, 0, 'nothing masked');
  t.is(s.smart.hostWriteCommands, 1, 'SMART counters stay the destination\'s own');
  t.is(s.errorLog[0]?.nsid, 9, 'and so does its error log');

  await destination.driver.setRunLevel('nvme0', 'running', farDeadline());
  guest.moveTo(destination.port);
  t.is((await guest.run(1, { opcode: READ, nsid: 1, prp1: DATA })).status, 0, 'I/O goes on');
  guest.submit(0, sqe({ opcode: IDENTIFY, cid: 0x61, prp1: DATA, cdw10: 1 }));
  t.is(guest.poll(0), undefined, 'an admin command goes unanswered: there is no admin queue');
  await destination.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  t.deepEqual((await fullStateOf(destination)).events.queued, [], 'and that is not the guest\'s doorbell error');
  await destination.driver.setRunLevel('nvme0', 'running', farDeadline());

  // What a guest driver does when its admin commands time out: reset the controller and set it up again.
  destination.port.mmioWrite32(CC, 0);
  t.is(destination.port.mmioRead32(CSTS) & 1, 0, 'the reset takes the I/O queues away');
  await guest.enable();
  t.is((await guest.admin({ opcode: GET_FEATURES, cdw10: 0x06 })).dw0, 1, 'features are the controller\'s defaults after the reset');
  await guest.createIoPair(1);
  t.is((await guest.run(1, { opcode: READ, nsid: 1, prp1: DATA })).status, 0);
});

test('no I/O queues, or a controller reset latched while stopped: the destination comes up as a disabled controller', async (t) => {
  const { source, destination } = await pair(t);
  await source.guest.enable();
  await source.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  const adminOnly = await captureState(source.driver, 'nvme0', STANDARD_STATE_FORMAT);
  t.is(adminOnly.payload.length, 48 + 8, 'no queue entries');

  await source.driver.setRunLevel('nvme0', 'running', farDeadline());
  await source.guest.createIoPair(1);
  await source.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  source.port.mmioWrite32(CC, 0); // latched: the source would reset when it ran again
  const resetLatched = await captureState(source.driver, 'nvme0', STANDARD_STATE_FORMAT);
  t.deepEqual(resetLatched.payload, adminOnly.payload, 'what the latched reset leaves: no queues');

  await destination.guest.enable();
  await destination.guest.createIoPair(2);
  await destination.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  await restoreState(destination.driver, 'nvme0', resetLatched);
  t.is(destination.port.mmioRead32(CC), 0);
  t.is(destination.port.mmioRead32(CSTS), 0);
  t.is((await destination.driver.describe('nvme0')).details.queues.active, 0);
  await destination.driver.setRunLevel('nvme0', 'running', farDeadline());
  await destination.guest.enable();
  t.is((await destination.guest.admin({ opcode: IDENTIFY, prp1: DATA, cdw10: 1 })).status, 0, 'a guest sets it up as after any reset');
});

test('a controller loaded from the standard format migrates on in the full format, admin queue still absent', async (t) => {
  const { source, destination } = await pair(t);
  await source.guest.enable();
  await source.guest.createIoPair(1);
  await source.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  await destination.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  copyGuestMemory(source.port, destination.port, source.guest.queueRanges());
  await restoreState(destination.driver, 'nvme0', await captureState(source.driver, 'nvme0', STANDARD_STATE_FORMAT));
  const onward = await captureState(destination.driver, 'nvme0', FULL_STATE_FORMAT);

  const third = await startDriver({ serviceTimeUs: 0 }, destination.dataDir);
  t.teardown(third.close);
  await third.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  copyGuestMemory(destination.port, third.port, source.guest.queueRanges());
  await restoreState(third.driver, 'nvme0', onward);
  await third.driver.setRunLevel('nvme0', 'running', farDeadline());
  source.guest.moveTo(third.port);
  t.is((await source.guest.run(1, { opcode: READ, nsid: 1, prp1: DATA })).status, 0, 'the I/O queue carried twice');
  t.is(third.port.mmioRead32(0x28), 0, 'ASQ: still no admin queue');
});

/** A stopped source with two I/O pairs, its standard image, and a stopped destination with state of its own. */
async function refusalSetup(t: ExecutionContext): Promise<{ image: CapturedState; destination: Fixture }> {
  const { source, destination } = await pair(t);
  await source.guest.enable();
  await source.guest.createIoPair(1);
  await source.guest.createIoPair(2);
  await source.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  const image = await captureState(source.driver, 'nvme0', STANDARD_STATE_FORMAT);
  await stopWithStateOfItsOwn(destination);
  return { image, destination };
}

/** The standard format has no seal of its own: an edit is all it takes. */
const edited = editedCopy;

test('standard states that are truncated, inconsistent or of another version are refused whole, the destination unchanged', async (t) => {
  const { image, destination } = await refusalSetup(t);
  const sq2 = SQ_ENTRY + 24;
  const cq1 = SQ_ENTRY + 48;
  const full = await captureState(destination.driver, 'nvme0', FULL_STATE_FORMAT);
  const withVendorBytes = new Uint8Array(image.payload.length + 4);
  withVendorBytes.set(image.payload);
  new DataView(withVendorBytes.buffer).setUint32(32, 1, true);
  const cases: [string, Uint8Array, DriverError['kind'], RegExp][] = [
    ['truncated by a dword', image.payload.subarray(0, image.payload.length - 4), 'corrupt-state', /ends inside an image/],
    ['shorter than the header', image.payload.subarray(0, 40), 'corrupt-state', /ends inside an image: it has 40 of the 48 bytes of its header/],
    ['a dword too many', Buffer.concat([image.payload, new Uint8Array(4)]), 'corrupt-state', /ends inside an image: it has 4 of the 48/],
    ['a header claiming a huge state', edited(image.payload, (dv) => dv.setUint32(16, 0x4000_0000, true)), 'corrupt-state', /at most 1048576/],
    ['a vendor-specific section', withVendorBytes, 'corrupt-state', /no vendor-specific section/],
    ['a full-format state', full.payload, 'corrupt-state', /no vendor-specific section/],
    ['taken while the source ran', edited(image.payload, (dv) => dv.setUint8(2, 0)), 'corrupt-state', /taken while the source VF ran/],
    ['an undefined CSATTR bit', edited(image.payload, (dv) => dv.setUint8(2, 3)), 'corrupt-state', /CSATTR/],
    ['header version', edited(image.payload, (dv) => dv.setUint16(0, 1, true)), 'incompatible-state', /data structure version 1/],
    ['NVMe controller state version', edited(image.payload, (dv) => dv.setUint16(48, 1, true)), 'incompatible-state', /controller state version 1/],
    ['NIOSQ disagrees with NVMECSS', edited(image.payload, (dv) => dv.setUint16(50, 3, true)), 'corrupt-state', /NIOSQ 3/],
    ['SQ on a missing CQ', edited(image.payload, (dv) => dv.setUint16(SQ_ENTRY + 12, 9, true)), 'corrupt-state', /CQID 9/],
    ['queue larger than MQES', edited(image.payload, (dv) => dv.setUint16(SQ_ENTRY + 8, 4000, true)), 'corrupt-state', /4001 entries/],
    ['SQ head outside the queue', edited(image.payload, (dv) => dv.setUint16(SQ_ENTRY + 16, 64, true)), 'corrupt-state', /head 64/],
    ['CQ tail outside the queue', edited(image.payload, (dv) => dv.setUint16(cq1 + 14, 70, true)), 'corrupt-state', /tail 70/],
    ['unaligned queue base', edited(image.payload, (dv) => dv.setUint32(SQ_ENTRY, 0x100123, true)), 'corrupt-state', /not a page-aligned/],
    ['QID beyond the VF\'s queue pairs', edited(image.payload, (dv) => dv.setUint16(sq2 + 10, 40, true)), 'corrupt-state', /queue id outside 1\.\.16/],
    ['a QID twice', edited(image.payload, (dv) => dv.setUint16(sq2 + 10, 1, true)), 'corrupt-state', /appears twice/],
    ['CQ vector beyond the VF', edited(image.payload, (dv) => dv.setUint16(cq1 + 18, 99, true)), 'corrupt-state', /vector 99/],
    ['reserved IOSQA bits', edited(image.payload, (dv) => dv.setUint16(SQ_ENTRY + 14, 0x11, true)), 'corrupt-state', /reserved IOSQA/],
    ['a queue that is not contiguous', edited(image.payload, (dv) => dv.setUint16(SQ_ENTRY + 14, 0, true)), 'incompatible-state', /not physically contiguous/],
    ['reserved entry bytes', edited(image.payload, (dv) => dv.setUint8(SQ_ENTRY + 21, 1)), 'corrupt-state', /reserved/],
  ];
  for (const [name, payload, kind, message] of cases) {
    const before = (await captureState(destination.driver, 'nvme0', FULL_STATE_FORMAT)).payload;
    const error = await t.throwsAsync(restoreState(destination.driver, 'nvme0', { ...image, payload }), { instanceOf: DriverError }, name);
    t.is(error?.kind, kind, name);
    t.regex(error?.message ?? '', message, name);
    t.deepEqual((await captureState(destination.driver, 'nvme0', FULL_STATE_FORMAT)).payload, before, `${name}: the VF is unchanged`);
  }
  const asFull = await t.throwsAsync(restoreState(destination.driver, 'nvme0', { ...image, format: FULL_STATE_FORMAT }), { instanceOf: DriverError });
  t.regex(asFull?.message ?? '', /seal/, 'a standard state read as the full format has no seal');
  await restoreState(destination.driver, 'nvme0', image);
  t.is((await destination.driver.describe('nvme0')).details.queues.active, 2, 'the intact state loads');
});

test('a VF restricted to the standard format saves and loads only it', async (t) => {
  const dataDir = await tempDir(t);
  const f = await startDriver({ serviceTimeUs: 0, stateFormats: ['standard'] }, dataDir);
  t.teardown(f.close);
  t.deepEqual(f.driver.stateFormats, [STANDARD_STATE_FORMAT]);
  t.deepEqual(f.driver.saveFormats, [STANDARD_STATE_FORMAT]);
  await f.guest.enable();
  await f.guest.createIoPair(1);
  t.is((await f.driver.stopCopyBytes('nvme0')), 48 + 8 + 2 * 24, 'stopCopyBytes is of the standard format');
  await f.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  await t.throwsAsync(async () => f.driver.openSave('nvme0', FULL_STATE_FORMAT), { instanceOf: DriverError, message: /not configured/ });
  t.is((await captureState(f.driver, 'nvme0')).payload.length, 48 + 8 + 2 * 24);
  const both = await startDriver({ serviceTimeUs: 0, stateFormats: ['standard', 'full'] }, dataDir);
  t.teardown(both.close);
  t.deepEqual(both.driver.saveFormats, [STANDARD_STATE_FORMAT, FULL_STATE_FORMAT], 'the first named is the default save format');
});
