import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeState } from './state-decode.ts';
import { captureState, farDeadline, restoreState, startDriver, tempDir } from '../../test/support/nvme-emu/fixtures.ts';
import { copyGuestMemory, DATA, sqe } from '../../test/support/nvme-emu/test-guest.ts';

test('every part of the controller state survives save and restore byte for byte', async (t) => {
  const dataDir = await tempDir(t);
  const source = await startDriver({ serviceTimeUs: 0 }, dataDir);
  t.teardown(source.close);
  const { guest, port } = source;
  await guest.enable();
  await guest.createIoPair(1);
  await guest.createIoPair(2, 32, 2);
  t.is((await guest.admin({ opcode: 0x09, cdw10: 0x06, cdw11: 0 })).status, 0, 'write cache off');
  t.is((await guest.admin({ opcode: 0x09, cdw10: 0x08, cdw11: 0x0105 })).status, 0, 'coalescing THR 5, TIME 1');
  t.is((await guest.admin({ opcode: 0x09, cdw10: 0x0b, cdw11: 0x03 })).status, 0, 'AEC');
  t.is((await guest.run(1, { opcode: 0x02, nsid: 5, prp1: DATA })).status, 0x00b, 'an error for the log');
  guest.submit(0, sqe({ opcode: 0x0c, cid: 0x71 }));
  guest.submit(0, sqe({ opcode: 0x0c, cid: 0x72 }));
  await sleep(2);
  port.mmioWrite32(0x1000 + 8 * 7, 0); // invalid doorbell register: AER 0x71 reports it
  t.is((await guest.next(0)).cid, 0x71);
  port.mmioWrite32(0x1000 + 8 * 1, 999); // invalid value: queued, its type is masked
  port.mmioWrite32(0x0c, 1 << 1); // mask vector 1
  t.is((await guest.run(1, { opcode: 0x00, nsid: 1 })).status, 0);
  await sleep(2); // coalescing time passes; vector 1 is masked, so it stays pending
  await source.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  // Latched while stopped: a CC write and an SQ tail.
  port.mmioWrite32(0x14, port.mmioRead32(0x14) | (1 << 14));
  guest.submit(2, sqe({ opcode: 0x00, cid: 0x300, nsid: 1 }));
  const image = await captureState(source.driver, 'nvme0');

  const s = decodeState(image.payload);
  t.is(s.ioSqs.length, 2);
  t.is(s.ioSqs[1]?.latchedTail, 1);
  t.is(s.latchedCc, s.registers.cc | (1 << 14));
  t.deepEqual(s.pendingVectors, [1]);
  t.is(s.interruptMask, 2);
  t.deepEqual(s.events.outstanding, [0x72]);
  t.deepEqual(s.events.queued, [{ type: 0, info: 1, logPage: 1 }]);
  t.deepEqual(s.events.masked, [{ type: 0, logPage: 1 }]);
  t.is(s.errorLog[0]?.nsid, 5);
  t.false(s.features.volatileWriteCache);
  t.is(s.features.coalescingThreshold, 5);
  t.is(s.features.asyncEventConfig, 3);
  t.is(s.smart.hostWriteCommands, 0);

  const destination = await startDriver({ serviceTimeUs: 0 }, dataDir);
  t.teardown(destination.close);
  await destination.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  await restoreState(destination.driver, 'nvme0', image);
  t.deepEqual((await captureState(destination.driver, 'nvme0')).payload, image.payload);

  // Resumed, the destination acts on what was pending.
  copyGuestMemory(port, destination.port, guest.queueRanges());
  guest.moveTo(destination.port);
  const before = destination.port.interruptCounts();
  await destination.driver.setRunLevel('nvme0', 'running', farDeadline());
  t.is((await guest.next(2)).cid, 0x300, 'latched SQ tail acted on');
  t.is((destination.port.mmioRead32(0x1c) >> 2) & 3, 2, 'latched shutdown notification acted on');
  destination.port.mmioWrite32(0x10, 1 << 1);
  t.is(destination.port.interruptCounts()[1], (before[1] ?? 0) + 1, 'pending vector 1 raised once unmasked');
});
