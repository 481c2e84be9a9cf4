import test from 'ava';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { startDriver, startWithIoQueue, TEST_NAMESPACE_BYTES } from '../../test/support/nvme-emu/fixtures.ts';
import { DATA, IO_QUEUES, pattern, sqe } from '../../test/support/nvme-emu/test-guest.ts';

const IDENTIFY = 0x06;
const BUF = 0x400000;

function ascii(bytes: Uint8Array, offset: number, length: number): string {
  return Buffer.from(bytes.subarray(offset, offset + length)).toString('latin1').trimEnd();
}

function dv(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

test('Identify Controller reports the configured identity and limits', async (t) => {
  const f = await startDriver({ vfs: undefined, maxIoQueues: 8 });
  t.teardown(f.close);
  await f.guest.enable();
  const cqe = await f.guest.admin({ opcode: IDENTIFY, prp1: BUF, cdw10: 1 });
  t.is(cqe.status, 0);
  t.is(cqe.sqId, 0);
  const data = f.port.memRead(BUF, 4096);
  const identity = (await f.driver.describe('nvme0')).identity;
  t.is(ascii(data, 4, 20), String(identity.serialNumber));
  t.is(ascii(data, 24, 40), 'vfmigd nvme-emu');
  t.is(dv(data).getUint16(78, true), 1, 'CNTLID');
  t.is(dv(data).getUint32(80, true), 0x00020100, 'VER');
  t.is(data[512], 0x66, 'SQES');
  t.is(data[513], 0x44, 'CQES');
  t.is(dv(data).getUint32(516, true), 1, 'NN');
  t.is(dv(data).getUint16(520, true) & 0x0c, 0x0c, 'ONCS: DSM and Write Zeroes');
  t.is(data[525]! & 1, 1, 'VWC present');
  t.is(data[259], 3, 'AERL');
  t.is(Buffer.from(data.subarray(768, 768 + 64)).toString('latin1').replace(/\0+$/, ''), String(identity.subnqn));
});

test('Identify Namespace, active namespace list and descriptors', async (t) => {
  const f = await startDriver();
  t.teardown(f.close);
  await f.guest.enable();
  const ns = (await f.driver.describe('nvme0')).details.namespaces[0]!;
  t.is((await f.guest.admin({ opcode: IDENTIFY, nsid: 1, prp1: BUF, cdw10: 0 })).status, 0);
  const data = f.port.memRead(BUF, 4096);
  t.is(dv(data).getUint32(0, true), TEST_NAMESPACE_BYTES / 512, 'NSZE');
  t.is((dv(data).getUint32(128, true) >> 16) & 0xff, 9, 'LBADS = 512 bytes');
  t.is(Buffer.from(data.subarray(104, 120)).toString('hex'), ns.nguid ?? '');
  t.is(Buffer.from(data.subarray(120, 128)).toString('hex'), ns.eui64 ?? '');

  t.is((await f.guest.admin({ opcode: IDENTIFY, nsid: 0, prp1: BUF, cdw10: 2 })).status, 0);
  t.deepEqual([...new Uint32Array(f.port.memRead(BUF, 8).buffer)], [1, 0]);
  t.is((await f.guest.admin({ opcode: IDENTIFY, nsid: 1, prp1: BUF, cdw10: 2 })).status, 0);
  t.is(dv(f.port.memRead(BUF, 4)).getUint32(0, true), 0, 'no NSID above 1');

  t.is((await f.guest.admin({ opcode: IDENTIFY, nsid: 1, prp1: BUF, cdw10: 3 })).status, 0);
  const list = f.port.memRead(BUF, 64);
  t.deepEqual([list[0], list[1]], [1, 8], 'EUI-64 descriptor');
  t.is(Buffer.from(list.subarray(4, 12)).toString('hex'), ns.eui64 ?? '');
  t.deepEqual([list[12], list[13]], [2, 16], 'NGUID descriptor');
  t.deepEqual([list[32], list[33]], [3, 16], 'UUID descriptor');
  t.is(Buffer.from(list.subarray(36, 52)).toString('hex'), (ns.uuid ?? '').replace(/-/g, ''));

  t.is((await f.guest.admin({ opcode: IDENTIFY, nsid: 7, prp1: BUF, cdw10: 0 })).status, 0x0b, 'Invalid Namespace');
  t.is((await f.guest.admin({ opcode: IDENTIFY, prp1: BUF, cdw10: 0x55 })).status, 0x02, 'unknown CNS: Invalid Field');
  t.is((await f.guest.admin({ opcode: 0x7f })).status, 0x01, 'Invalid Opcode');
});

test('Create / Delete I/O queue errors carry the NVMe status codes', async (t) => {
  const f = await startDriver({ maxIoQueues: 4, maxQueueEntries: 64 });
  t.teardown(f.close);
  await f.guest.enable();
  const cq = (cdw10: number, cdw11: number, prp1 = IO_QUEUES) => f.guest.admin({ opcode: 0x05, prp1, cdw10, cdw11 });
  const sq = (cdw10: number, cdw11: number, prp1 = IO_QUEUES + 0x10000) => f.guest.admin({ opcode: 0x01, prp1, cdw10, cdw11 });
  t.is((await cq((15 << 16) | 0, 0x3)).status, 0x101, 'qid 0: Invalid Queue Identifier');
  t.is((await cq((15 << 16) | 5, 0x3)).status, 0x101, 'qid beyond the granted queues');
  t.is((await cq((64 << 16) | 1, 0x3)).status, 0x102, 'size above MQES: Invalid Queue Size');
  t.is((await cq((0 << 16) | 1, 0x3)).status, 0x102, 'one-entry queue');
  t.is((await cq((15 << 16) | 1, (5 << 16) | 0x3)).status, 0x108, 'vector 5 of 5: Invalid Interrupt Vector');
  t.is((await cq((15 << 16) | 1, 0x2)).status, 0x002, 'not contiguous: Invalid Field');
  t.is((await cq((15 << 16) | 1, 0x3, IO_QUEUES + 0x10)).status, 0x013, 'PRP1 not page aligned: PRP Offset Invalid');
  t.is((await cq((15 << 16) | 1, 0x3, 2 ** 52)).status, 0x002, 'beyond guest memory: Invalid Field');
  t.is((await sq((15 << 16) | 1, (1 << 16) | 1)).status, 0x100, 'SQ on a missing CQ: Completion Queue Invalid');
  t.is((await cq((15 << 16) | 1, (1 << 16) | 0x3)).status, 0);
  t.is((await cq((15 << 16) | 1, (1 << 16) | 0x3)).status, 0x101, 'CQ 1 exists');
  t.is((await sq((15 << 16) | 1, (1 << 16) | 1, IO_QUEUES + 0x10040)).status, 0x013, 'SQ PRP1 not page aligned: PRP Offset Invalid');
  t.is((await sq((15 << 16) | 1, (1 << 16) | 1)).status, 0);
  t.is((await sq((15 << 16) | 1, (1 << 16) | 1)).status, 0x101, 'SQ 1 exists');
  t.is((await f.guest.admin({ opcode: 0x04, cdw10: 1 })).status, 0x10c, 'CQ still used: Invalid Queue Deletion');
  t.is((await f.guest.admin({ opcode: 0x00, cdw10: 2 })).status, 0x101, 'delete missing SQ');
  t.is((await f.guest.admin({ opcode: 0x09, cdw10: 0x07, cdw11: 0x00010001 })).status, 0x00c, 'Number of Queues after creation: Command Sequence Error');
  t.is((await f.guest.admin({ opcode: 0x00, cdw10: 1 })).status, 0);
  t.is((await f.guest.admin({ opcode: 0x04, cdw10: 1 })).status, 0);
  t.is((await f.driver.describe('nvme0')).details.queues.active, 0);
});

test('I/O queue creation before CC.IOCQES / CC.IOSQES are set is Invalid Queue Size', async (t) => {
  const f = await startDriver();
  t.teardown(f.close);
  await f.guest.enable();
  f.port.mmioWrite32(0x14, 1 | (4 << 20)); // still enabled, IOCQES set, IOSQES cleared
  t.is((await f.guest.admin({ opcode: 0x05, prp1: IO_QUEUES, cdw10: (15 << 16) | 1, cdw11: 0x3 })).status, 0, 'the CQ, with IOCQES set');
  t.is((await f.guest.admin({ opcode: 0x01, prp1: IO_QUEUES + 0x10000, cdw10: (15 << 16) | 1, cdw11: (1 << 16) | 1 })).status, 0x102, 'the SQ, without IOSQES');
  f.port.mmioWrite32(0x14, 1); // both cleared
  t.is((await f.guest.admin({ opcode: 0x05, prp1: IO_QUEUES + 0x20000, cdw10: (15 << 16) | 2, cdw11: 0x3 })).status, 0x102, 'a CQ without IOCQES');
});

test('Number of Queues limits which queue ids can be created', async (t) => {
  const f = await startDriver({ maxIoQueues: 16 });
  t.teardown(f.close);
  await f.guest.enable();
  t.is((await f.guest.admin({ opcode: 0x0a, cdw10: 0x07 })).dw0, 15 | (15 << 16), 'default: all 16 pairs');
  const granted = await f.guest.admin({ opcode: 0x09, cdw10: 0x07, cdw11: (0 << 16) | 1 });
  t.is(granted.dw0, 1 | (0 << 16), 'two SQs, one CQ');
  t.is((await f.guest.admin({ opcode: 0x05, prp1: IO_QUEUES, cdw10: (15 << 16) | 2, cdw11: 0x3 })).status, 0x101);
  t.is((await f.guest.admin({ opcode: 0x09, cdw10: 0x07, cdw11: 0xffff })).status, 0x002, '65536 queues requested');
  f.port.mmioWrite32(0x14, f.port.mmioRead32(0x14) & ~1); // a reset, for a new allocation
  await f.guest.enable();
  t.is((await f.guest.admin({ opcode: 0x09, cdw10: 0x07, cdw11: (100 << 16) | 100 })).dw0, 15 | (15 << 16), 'capped at the maximum');
});

test('Number of Queues is allocated once between controller resets, and only before any I/O queue was created', async (t) => {
  const f = await startDriver({ maxIoQueues: 16 });
  t.teardown(f.close);
  await f.guest.enable();
  const setQueues = (pairs: number) => f.guest.admin({ opcode: 0x09, cdw10: 0x07, cdw11: ((pairs - 1) << 16) | (pairs - 1) });
  t.is((await setQueues(2)).dw0, 1 | (1 << 16), 'two pairs allocated');
  const again = await setQueues(8);
  t.is(again.status, 0);
  t.is(again.dw0, 1 | (1 << 16), 'a second Set reports the allocation made, unchanged');
  t.is((await f.guest.admin({ opcode: 0x0a, cdw10: 0x07 })).dw0, 1 | (1 << 16));
  await f.guest.createIoPair(1);
  t.is((await f.guest.admin({ opcode: 0x00, cdw10: 1 })).status, 0, 'SQ 1 deleted');
  t.is((await f.guest.admin({ opcode: 0x04, cdw10: 1 })).status, 0, 'CQ 1 deleted');
  t.is((await setQueues(8)).status, 0x00c, 'after I/O queues were created, even if deleted again: Command Sequence Error');
  const cc = f.port.mmioRead32(0x14);
  f.port.mmioWrite32(0x14, cc & ~1);
  await f.guest.enable();
  t.is((await setQueues(8)).dw0, 7 | (7 << 16), 'a controller reset allows a new allocation');
});

test('Get / Set Features: VWC, interrupt coalescing, AEC; others are Invalid Field', async (t) => {
  const f = await startDriver();
  t.teardown(f.close);
  await f.guest.enable();
  const get = (fid: number, sel = 0) => f.guest.admin({ opcode: 0x0a, cdw10: fid | (sel << 8) });
  const set = (fid: number, cdw11: number, save = false) => f.guest.admin({ opcode: 0x09, cdw10: fid | (save ? 1 << 31 : 0), cdw11 });
  t.is((await get(0x06)).dw0, 1, 'write cache on by default');
  t.is((await set(0x06, 0)).status, 0);
  t.is((await get(0x06)).dw0, 0);
  t.is((await get(0x06, 1)).dw0, 1, 'SEL=default');
  t.is((await get(0x06, 3)).dw0, 0x4, 'SEL=capabilities: changeable');
  t.is((await set(0x08, 0x0a05)).status, 0);
  t.is((await get(0x08)).dw0, 0x0a05);
  t.is((await set(0x0b, 0x1f)).status, 0);
  t.is((await get(0x0b)).dw0, 0x1f);
  t.is((await set(0x0b, 0x100)).status, 0x002, 'unsupported AEC bit');
  t.is((await get(0x03)).status, 0x002);
  t.is((await set(0x03, 0)).status, 0x002, 'LBA Range Type: not a feature of this controller');
  t.is((await set(0x06, 1, true)).status, 0x10d, 'Feature Identifier Not Saveable');
});

test('Get Log Page SMART counts data units and commands; errors land in the Error Information log', async (t) => {
  const f = await startWithIoQueue();
  t.teardown(f.close);
  f.port.memWrite(DATA, pattern(8192, 1));
  for (let i = 0; i < 3; i++) t.is((await f.guest.run(1, { opcode: 0x01, nsid: 1, prp1: DATA, prp2: DATA + 4096, cdw10: i * 16, cdw12: 15 })).status, 0);
  t.is((await f.guest.run(1, { opcode: 0x02, nsid: 1, prp1: DATA, cdw10: 0, cdw12: 7 })).status, 0);
  const bad = await f.guest.run(1, { opcode: 0x02, nsid: 1, prp1: DATA, cdw10: TEST_NAMESPACE_BYTES / 512, cdw12: 0 });
  t.is(bad.status, 0x80);

  t.is((await f.guest.admin({ opcode: 0x02, nsid: 0xffffffff, prp1: BUF, cdw10: 0x02 | (127 << 16) })).status, 0);
  const smart = dv(f.port.memRead(BUF, 512));
  t.is(smart.getUint32(32, true), 1, 'data units read: 8 x 512 B rounds up to 1 thousand');
  t.is(smart.getUint32(48, true), 1, 'data units written: 48 x 512 B rounds up to 1');
  t.is(smart.getUint32(64, true), 1, 'host read commands (the failed one does not count)');
  t.is(smart.getUint32(80, true), 3, 'host write commands');
  t.is(smart.getUint32(176, true), 1, 'error log entries');
  t.is(smart.getUint16(1, true), 313, 'temperature');

  t.is((await f.guest.admin({ opcode: 0x02, prp1: BUF, cdw10: 0x01 | (15 << 16) })).status, 0);
  const entry = dv(f.port.memRead(BUF, 64));
  t.is(entry.getUint32(0, true), 1, 'error count');
  t.is(entry.getUint16(8, true), 1, 'SQID');
  t.is(entry.getUint16(10, true), bad.cid, 'CID');
  t.is(entry.getUint16(12, true) >> 1, 0x4080, 'status with DNR');
  t.is(entry.getUint32(16, true), TEST_NAMESPACE_BYTES / 512, 'LBA');
  t.is(entry.getUint32(24, true), 1, 'NSID');

  t.is((await f.guest.admin({ opcode: 0x02, nsid: 1, prp1: BUF, cdw10: 0x02 | (127 << 16) })).status, 0x002, 'per-namespace SMART not supported');
  t.is((await f.guest.admin({ opcode: 0x02, prp1: BUF, cdw10: 0xc0 | (127 << 16) })).status, 0x109, 'Invalid Log Page');
  t.is((await f.guest.admin({ opcode: 0x02, prp1: BUF, cdw10: 0x02 | (1 << 16), cdw12: 2 })).status, 0x002, 'offset not dword aligned');
  t.is((await f.guest.admin({ opcode: 0x02, prp1: BUF, cdw10: 0x02 | (1 << 16), cdw12: 504 })).status, 0);
  t.deepEqual(f.port.memRead(BUF, 8), new Uint8Array(8), 'offset read of the (zero) tail of the page');
});

test('Asynchronous Event Requests stay outstanding up to AERL+1 and report doorbell errors', async (t) => {
  const f = await startDriver({ serviceTimeUs: 0 });
  t.teardown(f.close);
  await f.guest.enable();
  for (let cid = 0x100; cid < 0x104; cid++) f.guest.submit(0, sqe({ opcode: 0x0c, cid }));
  await sleep(5);
  t.is(f.guest.poll(0), undefined, 'four AERs are parked, not completed');
  const fifth = await f.guest.admin({ opcode: 0x0c });
  t.is(fifth.status, 0x105, 'Asynchronous Event Request Limit Exceeded');

  f.port.mmioWrite32(0x1000 + 8 * 9, 1); // SQ 9 does not exist
  const event = await f.guest.next(0);
  t.is(event.cid, 0x100);
  t.is(event.dw0, 0x010000, 'error status, invalid doorbell register, log page 01h');

  f.port.mmioWrite32(0x1000, 999); // admin SQ tail beyond the queue
  await sleep(5);
  t.is(f.guest.poll(0), undefined, 'same event type is masked until the log page is read');
  f.guest.submit(0, sqe({ opcode: 0x02, cid: 0x200, prp1: BUF, cdw10: 0x01 | (15 << 16) }));
  const [first, second] = await f.guest.collect(0, 2);
  // Reading the log re-arms the event type; its AER completes before the Get Log Page itself.
  t.is(first?.dw0, 0x010100, 'invalid doorbell write value');
  t.true([0x101, 0x102, 0x103].includes(first?.cid ?? 0));
  t.is(second?.cid, 0x200);
  t.is(second?.status, 0);
});

test('Abort completes an in-flight command as aborted; unknown commands are reported not aborted', async (t) => {
  // Every command takes a second, so the write is still in flight when the Abort is fetched, however loaded the machine.
  const f = await startWithIoQueue({ serviceTimeUs: 1_000_000 });
  t.teardown(f.close);
  f.port.memWrite(DATA, pattern(512, 3));
  f.guest.submit(1, sqe({ opcode: 0x01, cid: 77, nsid: 1, prp1: DATA, cdw12: 0 }));
  await nextTurn(); // the doorbell's fetch pass
  const abort = await f.guest.admin({ opcode: 0x08, cdw10: 1 | (77 << 16) });
  t.is(abort.dw0 & 1, 0, 'aborted');
  const aborted = await f.guest.next(1);
  t.is(aborted.cid, 77);
  t.is(aborted.status, 0x007, 'Command Abort Requested');
  const miss = await f.guest.admin({ opcode: 0x08, cdw10: 1 | (1234 << 16) });
  t.is(miss.dw0 & 1, 1, 'not aborted');
});

test('Delete I/O SQ completes its in-flight commands as aborted by SQ deletion', async (t) => {
  // A second per command: the three writes are in flight when the Delete is fetched, however loaded the machine.
  const f = await startWithIoQueue({ serviceTimeUs: 1_000_000 });
  t.teardown(f.close);
  for (let cid = 1; cid <= 3; cid++) f.guest.place(1, sqe({ opcode: 0x02, cid, nsid: 1, prp1: DATA + cid * 4096 }));
  f.guest.ring(1);
  await nextTurn(); // the doorbell's fetch pass
  t.is((await f.guest.admin({ opcode: 0x00, cdw10: 1 })).status, 0);
  const cqes = await f.guest.collect(1, 3);
  t.deepEqual(cqes.map((c) => c.status), [0x008, 0x008, 0x008]);
});

test('a failed command that the Error Information log records carries M; a controller reset clears the log\'s entries', async (t) => {
  const f = await startWithIoQueue();
  t.teardown(f.close);
  const failed = await f.guest.run(1, { opcode: 0x02, nsid: 7, prp1: DATA });
  t.is(failed.status, 0x00b);
  t.true(failed.more, 'M: the log holds an entry for it');
  t.false((await f.guest.run(1, { opcode: 0x02, nsid: 1, prp1: DATA })).more, 'no M on a success');
  const errorLog = async (): Promise<DataView> => {
    t.is((await f.guest.admin({ opcode: 0x02, prp1: BUF, cdw10: 0x01 | (15 << 16) })).status, 0);
    const page = f.port.memRead(BUF, 64);
    return new DataView(page.buffer, page.byteOffset, 64);
  };
  const entry = await errorLog();
  t.is(entry.getBigUint64(0, true), 1n, 'the newest entry, error count 1');
  t.is(entry.getUint16(10, true), failed.cid, 'for the failed command');
  const cc = f.port.mmioRead32(0x14);
  f.port.mmioWrite32(0x14, cc & ~1);
  await f.guest.enable();
  t.is((await errorLog()).getBigUint64(0, true), 0n, 'no entries after the reset');
});

test('the mandatory features: Arbitration, Power Management, Temperature Threshold, Error Recovery, Interrupt Vector Configuration, Write Atomicity Normal', async (t) => {
  const f = await startWithIoQueue({ serviceTimeUs: 0 });
  t.teardown(f.close);
  const get = (fid: number, cdw11 = 0, sel = 0) => f.guest.admin({ opcode: 0x0a, cdw10: fid | (sel << 8), cdw11 });
  const set = (fid: number, cdw11: number) => f.guest.admin({ opcode: 0x09, cdw10: fid, cdw11 });
  const INVALID_FIELD = 0x002;

  t.is((await set(0x01, 0x30201003)).status, 0, 'Arbitration: AB 3, LPW 10h, MPW 20h, HPW 30h');
  t.is((await get(0x01)).dw0, 0x30201003);
  t.is((await get(0x01, 0, 1)).dw0, 0, 'SEL=default');

  t.is((await set(0x02, 0x1 )).status, INVALID_FIELD, 'Power Management: power state 1 does not exist (NPSS 0)');
  t.is((await set(0x02, 2 << 5)).status, 0, 'workload hint 2 in power state 0');
  t.is((await get(0x02)).dw0, 2 << 5);

  const smartWarning = async (): Promise<number> => {
    t.is((await f.guest.admin({ opcode: 0x02, prp1: BUF, cdw10: 0x02 | (127 << 16) })).status, 0);
    return f.port.memRead(BUF, 1)[0] ?? -1;
  };
  t.is((await get(0x04)).dw0 & 0xffff, 343, 'over-temperature threshold 343 K by default');
  t.is(await smartWarning(), 0, 'no critical warning at 313 K');
  t.is((await set(0x04, 300)).status, 0, 'over-temperature threshold 300 K');
  t.is((await get(0x04)).dw0 & 0xffff, 300);
  t.is(await smartWarning() & 0x2, 0x2, 'above the threshold now: the temperature warning');
  t.is((await set(0x04, 0x157)).status, 0);
  t.is((await set(0x04, (1 << 20) | 273)).status, 0, 'under-temperature threshold 273 K');
  t.is((await get(0x04, 1 << 20)).dw0, (1 << 20) | 273, 'Get names the threshold in CDW11');
  t.is((await set(0x04, (1 << 16) | 300)).status, INVALID_FIELD, 'sensor 1 does not exist');
  t.is((await set(0x04, (0xf << 16) | 350)).status, 0, 'all sensors: the composite one');
  t.is((await get(0x04)).dw0 & 0xffff, 350);
  t.is((await set(0x04, (2 << 20) | 300)).status, INVALID_FIELD, 'THSEL 2 is reserved');
  t.is(await smartWarning(), 0);

  t.is((await set(0x05, 40)).status, 0, 'Error Recovery: TLER 4 s');
  t.is((await get(0x05)).dw0, 40);
  t.is((await set(0x05, 1 << 16)).status, INVALID_FIELD, 'DULBE: no namespace reports deallocated blocks as errors');

  t.is((await get(0x09, 1)).dw0, 1, 'vector 1: coalescing applies');
  t.is((await set(0x09, (1 << 16) | 1)).status, 0, 'CD for vector 1');
  t.is((await get(0x09, 1)).dw0, (1 << 16) | 1);
  t.is((await set(0x09, 0)).status, INVALID_FIELD, 'coalescing cannot be turned on for the admin vector');
  t.is((await set(0x09, (1 << 16) | 99)).status, INVALID_FIELD, 'no vector 99');
  t.is((await get(0x09, 99)).status, INVALID_FIELD);
  // Coalescing with a threshold of 4 entries and 100 ms: vector 1 is exempt, so one completion raises it at once.
  t.is((await set(0x08, (200 << 8) | 3)).status, 0);
  const before = f.port.interruptCounts()[1] ?? 0;
  t.is((await f.guest.run(1, { opcode: 0x00, nsid: 1 })).status, 0);
  t.is(f.port.interruptCounts()[1], before + 1, 'raised at once: CD exempts vector 1 from coalescing');

  t.is((await set(0x0a, 1)).status, 0, 'Write Atomicity Normal: DN');
  t.is((await get(0x0a)).dw0, 1);
});

test('the mandatory log pages: Supported Log Pages, Firmware Slot Information, Commands Supported and Effects, Feature Identifiers Supported and Effects', async (t) => {
  const f = await startDriver();
  t.teardown(f.close);
  await f.guest.enable();
  const logPage = async (lid: number, bytes: number): Promise<DataView> => {
    const cqe = await f.guest.admin({ opcode: 0x02, prp1: BUF, cdw10: lid | ((bytes / 4 - 1) << 16) });
    t.is(cqe.status, 0, `log page ${lid.toString(16)}h`);
    return dv(f.port.memRead(BUF, bytes));
  };
  const entry = (page: DataView, index: number): number => page.getUint32(index * 4, true);

  const supported = await logPage(0x00, 1024);
  for (const lid of [0x00, 0x01, 0x02, 0x03, 0x05, 0x12]) t.is(entry(supported, lid) & 1, 1, `LID ${lid.toString(16)}h supported`);
  t.is(entry(supported, 0x04), 0, 'Changed Namespace List: not supported, not listed');
  for (let lid = 0; lid < 256; lid++) {
    if ((entry(supported, lid) & 1) === 0) continue;
    t.not((await f.guest.admin({ opcode: 0x02, prp1: BUF, cdw10: lid | (3 << 16) })).status, 0x109, `listed LID ${lid.toString(16)}h is returned`);
  }

  t.is((await f.guest.admin({ opcode: IDENTIFY, prp1: BUF, cdw10: 1 })).status, 0);
  const identifyData = f.port.memRead(BUF, 4096);
  const revision = ascii(identifyData, 64, 8);
  t.is(identifyData[261]! & 0x02, 0x02, 'LPA: Commands Supported and Effects log');
  const firmware = await logPage(0x03, 512);
  t.is(firmware.getUint8(0) & 0x7, 1, 'AFI: slot 1 active');
  t.is(ascii(new Uint8Array(firmware.buffer, firmware.byteOffset + 8, 8), 0, 8), revision, 'FRS1 is the revision Identify reports');

  const effects = await logPage(0x05, 4096);
  for (const opcode of [0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x08, 0x09, 0x0a, 0x0c]) t.is(entry(effects, opcode) & 1, 1, `admin ${opcode.toString(16)}h supported`);
  t.is(entry(effects, 0x10), 0, 'Firmware Commit: not supported');
  t.is(entry(effects, 256 + 0x02), 1, 'Read: supported, changes no block');
  for (const opcode of [0x01, 0x08, 0x09]) t.is(entry(effects, 256 + opcode), 0b11, `I/O ${opcode.toString(16)}h: supported, changes logical block content`);
  t.is(entry(effects, 256 + 0x05), 0, 'Compare: not supported');

  const features = await logPage(0x12, 1024);
  for (const fid of [0x01, 0x02, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b]) {
    t.is(entry(features, fid) & 1, 1, `feature ${fid.toString(16)}h supported`);
    t.is((await f.guest.admin({ opcode: 0x0a, cdw10: fid })).status, 0, `and Get Features ${fid.toString(16)}h succeeds`);
  }
  t.is(entry(features, 0x03), 0, 'LBA Range Type: not supported');
});
