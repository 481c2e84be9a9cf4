import test from 'ava';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { DriverError } from '../driver.ts';
import { captureState, farDeadline, restoreState, startDriver, startWithIoQueue, tempDir } from '../../test/support/nvme-emu/fixtures.ts';
import { copyGuestMemory, DATA, pattern, sqe, type TestGuest } from '../../test/support/nvme-emu/test-guest.ts';

const WRITE = 0x01;
const READ = 0x02;
const PAGE = 4096;

/** Write of one 4 KiB block (8 LBAs) of pattern `n` to LBA 8n, from data page n. */
function placeWrite(guest: TestGuest, n: number): void {
  guest.port.memWrite(DATA + n * PAGE, pattern(PAGE, n));
  guest.place(1, sqe({ opcode: WRITE, cid: 1000 + n, nsid: 1, prp1: DATA + n * PAGE, cdw10: 8 * n, cdw12: 7 }));
}

test('quiesce drains fetched commands; unfetched and latched ones run on a restored second driver', async (t) => {
  const dataDir = await tempDir(t);
  const source = await startDriver({ serviceTimeUs: 5000 }, dataDir);
  t.teardown(source.close);
  const { guest } = source;
  await guest.enable();
  await guest.createIoPair(1, 64, 1, 16); // a 16-entry CQ: the drain needs the guest to keep consuming

  // Batch 1 is fetched; batch 2 is rung just before the quiesce and must stay in the SQ.
  for (let n = 0; n < 20; n++) placeWrite(guest, n);
  guest.ring(1);
  await nextTurn();
  for (let n = 20; n < 28; n++) placeWrite(guest, n);
  guest.ring(1);
  const quiesce = source.driver.setRunLevel('nvme0', 'p2p-quiesced', farDeadline());
  const drainedCqes = await guest.collect(1, 20);
  const { drainedCommands } = await quiesce;
  t.is(drainedCommands, 20, 'the 20 fetched commands were drained');
  t.deepEqual(drainedCqes.map((c) => c.cid).sort((a, b) => a - b), Array.from({ length: 20 }, (_, n) => 1000 + n));
  t.true(drainedCqes.every((c) => c.status === 0));
  t.is((await source.driver.setRunLevel('nvme0', 'stopped', farDeadline())).drainedCommands, 0);

  // Batch 3 is rung while stopped: the doorbell is latched.
  for (let n = 28; n < 32; n++) placeWrite(guest, n);
  guest.ring(1);
  await sleep(20);
  t.is(guest.poll(1), undefined, 'nothing runs on a stopped VF');
  const image = await captureState(source.driver, 'nvme0');
  t.is(image.payload.length, (await source.driver.stopCopyBytes('nvme0')));

  // The destination: same configuration and namespace file, guest RAM copied as a VMM would.
  const destination = await startDriver({ serviceTimeUs: 5000 }, dataDir);
  t.teardown(destination.close);
  await destination.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  copyGuestMemory(source.port, destination.port, [...guest.queueRanges(), { address: DATA, length: 32 * PAGE }]);
  await destination.driver.checkIdentity('nvme0', image.identity);
  await restoreState(destination.driver, 'nvme0', image);
  guest.moveTo(destination.port);
  await sleep(20);
  t.is(guest.poll(1), undefined, 'restored VF stays stopped');
  await destination.driver.setRunLevel('nvme0', 'running', farDeadline());
  const resumed = await guest.collect(1, 12);
  t.deepEqual(resumed.map((c) => c.cid).sort((a, b) => a - b), Array.from({ length: 12 }, (_, i) => 1020 + i));
  t.true(resumed.every((c) => c.status === 0 && c.sqId === 1));

  // Every write of every batch is on the shared namespace, read back through the destination.
  for (let n = 0; n < 32; n++) {
    const buffer = 0x2000000 + n * PAGE;
    const read = await guest.run(1, { opcode: READ, nsid: 1, prp1: buffer, cdw10: 8 * n, cdw12: 7 });
    t.is(read.status, 0);
    t.deepEqual(destination.port.memRead(buffer, PAGE), pattern(PAGE, n), `block ${n}`);
  }
  const identify = await guest.admin({ opcode: 0x06, prp1: 0x3000000, cdw10: 1 });
  t.is(identify.status, 0, 'admin queue continues on the destination');
});

test('outstanding AERs travel in the saved state and complete on the destination', async (t) => {
  const dataDir = await tempDir(t);
  const source = await startDriver({ serviceTimeUs: 0 }, dataDir);
  t.teardown(source.close);
  await source.guest.enable();
  source.guest.submit(0, sqe({ opcode: 0x0c, cid: 0x51 }));
  source.guest.submit(0, sqe({ opcode: 0x0c, cid: 0x52 }));
  await sleep(5);
  t.is((await source.driver.setRunLevel('nvme0', 'stopped', farDeadline())).drainedCommands, 0, 'AERs are not in flight');
  const image = await captureState(source.driver, 'nvme0');

  const destination = await startDriver({ serviceTimeUs: 0 }, dataDir);
  t.teardown(destination.close);
  await destination.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  copyGuestMemory(source.port, destination.port, source.guest.queueRanges());
  await restoreState(destination.driver, 'nvme0', image);
  await destination.driver.setRunLevel('nvme0', 'running', farDeadline());
  source.guest.moveTo(destination.port);
  destination.port.mmioWrite32(0x1000 + 8 * 12, 0); // SQ 12 does not exist
  const event = await source.guest.next(0);
  t.is(event.cid, 0x51);
  t.is(event.dw0, 0x010000);
});

test('a quiesce that misses its deadline restores the previous run level and changes nothing', async (t) => {
  const f = await startWithIoQueue({ serviceTimeUs: 200_000 });
  t.teardown(f.close);
  f.guest.submit(1, sqe({ opcode: READ, cid: 1, nsid: 1, prp1: DATA }));
  await nextTurn();
  const attempt = f.driver.setRunLevel('nvme0', 'p2p-quiesced', { deadline: performance.now() + 10 });
  f.guest.submit(1, sqe({ opcode: READ, cid: 2, nsid: 1, prp1: DATA + PAGE })); // latched during the attempt
  const error = await t.throwsAsync(attempt, { instanceOf: DriverError });
  t.is(error?.kind, 'quiesce-timeout');
  // Back to running: the latched doorbell is acted on and both commands complete.
  const cqes = await f.guest.collect(1, 2);
  t.deepEqual(cqes.map((c) => c.cid).sort(), [1, 2]);
  t.true(cqes.every((c) => c.status === 0));
  f.guest.submit(1, sqe({ opcode: READ, cid: 3, nsid: 1, prp1: DATA }));
  await nextTurn();
  t.is((await f.driver.setRunLevel('nvme0', 'stopped', farDeadline())).drainedCommands, 1);
});

test('quiesce from running straight to stopped drains too; doorbells latched while stopped act on resume', async (t) => {
  const f = await startWithIoQueue({ serviceTimeUs: 2000 });
  t.teardown(f.close);
  for (let cid = 1; cid <= 4; cid++) f.guest.place(1, sqe({ opcode: READ, cid, nsid: 1, prp1: DATA + cid * PAGE }));
  f.guest.ring(1);
  await nextTurn();
  t.is((await f.driver.setRunLevel('nvme0', 'stopped', farDeadline())).drainedCommands, 4);
  const interrupts = f.port.interruptCounts()[1];
  t.is((await f.guest.collect(1, 4)).length, 4, 'completions were posted before the stop');
  f.guest.submit(1, sqe({ opcode: READ, cid: 9, nsid: 1, prp1: DATA }));
  await sleep(20);
  t.is(f.guest.poll(1), undefined);
  t.is(f.port.interruptCounts()[1], interrupts, 'no interrupts while stopped');
  t.is((await f.driver.setRunLevel('nvme0', 'p2p-quiesced', farDeadline())).drainedCommands, 0);
  await sleep(20);
  t.is(f.guest.poll(1), undefined, 'P2P fetches nothing');
  await f.driver.setRunLevel('nvme0', 'running', farDeadline());
  t.is((await f.guest.next(1)).cid, 9);
});

test('a save and a resume need a stopped VF; stopCopyBytes is exact', async (t) => {
  const f = await startWithIoQueue({ serviceTimeUs: 0 });
  t.teardown(f.close);
  await t.throwsAsync(async () => f.driver.openSave('nvme0', f.driver.stateFormats[0]!), { instanceOf: DriverError, message: /stopped/ });
  await f.guest.createIoPair(2);
  await f.guest.run(1, { opcode: READ, nsid: 9 }); // one error log entry
  const estimate = (await f.driver.stopCopyBytes('nvme0'));
  await f.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  const image = await captureState(f.driver, 'nvme0');
  t.is(image.payload.length, estimate);
  t.is(image.payload.length % 4, 0);
  const dv = new DataView(image.payload.buffer, image.payload.byteOffset);
  t.is(dv.getUint16(0, true), 0, 'header VER');
  t.is(image.payload[2], 1, 'CSATTR: suspended');
  t.is(dv.getUint32(16, true), (8 + 24 * 4) / 4, 'NVMECSS: two SQs and two CQs');
  t.is(48 + 4 * (dv.getUint32(16, true) + dv.getUint32(32, true)), image.payload.length);
  t.is(dv.getUint16(50, true), 2, 'NIOSQ');
  t.is(dv.getUint16(52, true), 2, 'NIOCQ');
  t.is(dv.getUint16(56 + 10, true), 1, 'first SQ entry QID');
  t.is(dv.getUint16(56 + 12, true), 1, 'first SQ entry CQID');
  t.is(dv.getUint16(56 + 8, true), 63, 'QSIZE, 0s based');
  const firstCq = 56 + 2 * 24;
  t.is(dv.getUint32(firstCq + 16, true) >>> 16, 1, 'CQ 1 interrupt vector');
  t.is(dv.getUint32(firstCq + 16, true) & 0x3, 0x3, 'CQ 1 PC and IEN');
});

test('reset() is a function-level reset: disabled controller, running, guest memory kept', async (t) => {
  const f = await startWithIoQueue();
  t.teardown(f.close);
  f.port.memWrite(DATA, pattern(64, 9));
  await f.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  await f.driver.reset('nvme0');
  t.is(f.port.mmioRead32(0x14), 0, 'CC');
  t.is(f.port.mmioRead32(0x1c), 0, 'CSTS');
  t.is(f.port.mmioRead32(0x28), 0, 'ASQ');
  t.is((await f.driver.describe('nvme0')).details.queues.active, 0);
  t.deepEqual(f.port.memRead(DATA, 64), pattern(64, 9));
  await f.guest.enable();
  t.is((await f.guest.admin({ opcode: 0x06, prp1: 0x400000, cdw10: 1 })).status, 0, 'usable again, and running');
});
