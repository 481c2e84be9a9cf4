import test from 'ava';
import { DriverError } from '../driver.ts';
import { startDriver } from '../../test/support/nvme-emu/fixtures.ts';
import { ADMIN_CQ, ADMIN_SQ } from '../../test/support/nvme-emu/test-guest.ts';

test('CAP, VS and reset values describe an NVMe 2.1 controller', async (t) => {
  const f = await startDriver({ maxQueueEntries: 256 });
  t.teardown(f.close);
  const capLo = f.port.mmioRead32(0x00);
  const capHi = f.port.mmioRead32(0x04);
  t.is(capLo & 0xffff, 255, 'MQES = maxQueueEntries - 1');
  t.is((capLo >> 16) & 1, 1, 'CQR');
  t.true(capLo >>> 24 > 0, 'TO');
  t.is(capHi & 0xf, 0, 'DSTRD = 0');
  t.is((capHi >> 5) & 0xff, 1, 'CSS: NVM command set');
  t.is((capHi >> 16) & 0xff, 0, 'MPSMIN = MPSMAX = 0');
  t.is(f.port.mmioRead32(0x08), 0x00020100);
  t.is(f.port.mmioRead32(0x14), 0, 'CC');
  t.is(f.port.mmioRead32(0x1c), 0, 'CSTS');
});

test('read-only registers ignore writes; ASQ/ACQ keep both 32-bit halves', async (t) => {
  const f = await startDriver();
  t.teardown(f.close);
  f.port.mmioWrite32(0x00, 0xffffffff);
  f.port.mmioWrite32(0x08, 0);
  t.is(f.port.mmioRead32(0x08), 0x00020100);
  f.port.mmioWrite32(0x28, 0x12345fff);
  f.port.mmioWrite32(0x2c, 0x9);
  t.is(f.port.mmioRead32(0x28), 0x12345000, 'ASQ bits 11:0 reserved');
  t.is(f.port.mmioRead32(0x2c), 0x9);
  f.port.mmioWrite32(0x30, 0xabcde000);
  f.port.mmioWrite32(0x34, 0xfffff);
  t.is(f.port.mmioRead32(0x30), 0xabcde000);
  t.is(f.port.mmioRead32(0x34), 0xfffff);
  f.port.mmioWrite32(0x24, 0xffffffff);
  t.is(f.port.mmioRead32(0x24), 0x0fff0fff, 'AQA keeps ASQS and ACQS only');
});

test('unaligned, out-of-BAR and non-32-bit accesses are invalid-access', async (t) => {
  const f = await startDriver();
  t.teardown(f.close);
  for (const offset of [2, 0x15, -4, 0x2000, 0x10000, 1.5]) {
    const error = t.throws(() => f.port.mmioRead32(offset), { instanceOf: DriverError });
    t.is(error?.kind, 'invalid-access');
  }
  t.is(t.throws(() => f.port.mmioWrite32(0x14, 2 ** 32), { instanceOf: DriverError })?.kind, 'invalid-access');
  t.is(t.throws(() => f.port.mmioWrite32(0x14, -1), { instanceOf: DriverError })?.kind, 'invalid-access');
  t.is(t.throws(() => f.port.memRead(2 ** 52 - 4, 8), { instanceOf: DriverError })?.kind, 'invalid-access');
  t.is(t.throws(() => f.port.memWrite(-1, new Uint8Array(1)), { instanceOf: DriverError })?.kind, 'invalid-access');
});

test('guest memory is sparse: unwritten bytes read as zero, writes cross pages', async (t) => {
  const f = await startDriver();
  t.teardown(f.close);
  t.deepEqual(f.port.memRead(2 ** 52 - 16, 16), new Uint8Array(16));
  const data = Uint8Array.from({ length: 6000 }, (_, i) => i & 0xff);
  f.port.memWrite(0x5000 - 100, data);
  t.deepEqual(f.port.memRead(0x5000 - 100, 6000), data);
  t.deepEqual(f.port.memRead(0x5000 - 104, 4), new Uint8Array(4));
});

test('CC.EN brings up the admin queue and sets RDY; clearing EN resets; SHN reports shutdown complete', async (t) => {
  const f = await startDriver();
  t.teardown(f.close);
  await f.guest.enable(16);
  t.is(f.port.mmioRead32(0x1c) & 1, 1, 'RDY');
  await f.guest.createIoPair(1);
  t.is((await f.driver.describe('nvme0')).details.queues.active, 1);
  const cc = f.port.mmioRead32(0x14);
  f.port.mmioWrite32(0x14, cc | (1 << 14));
  t.is((f.port.mmioRead32(0x1c) >> 2) & 3, 2, 'SHST = shutdown complete');
  f.port.mmioWrite32(0x14, 0);
  t.is(f.port.mmioRead32(0x1c) & 1, 0, 'RDY cleared');
  t.is((await f.driver.describe('nvme0')).details.queues.active, 0, 'reset deleted the I/O queues');
  // Enabling again gives a fresh controller.
  await f.guest.enable(16);
  t.is(f.port.mmioRead32(0x1c) & 3, 1, 'RDY, no CFS');
  t.is((f.port.mmioRead32(0x1c) >> 2) & 3, 0, 'SHST cleared by the new enable');
  t.is((await f.driver.describe('nvme0')).details.queues.active, 0);
});

test('an unusable configuration at enable leaves RDY clear and sets CFS', async (t) => {
  const f = await startDriver();
  t.teardown(f.close);
  f.port.mmioWrite32(0x24, 0x000f000f);
  f.port.mmioWrite32(0x28, ADMIN_SQ);
  f.port.mmioWrite32(0x30, ADMIN_CQ);
  f.port.mmioWrite32(0x14, (1 << 7) | 1); // MPS = 8 KiB
  t.is(f.port.mmioRead32(0x1c) & 3, 2, 'CFS set, RDY clear');
  f.port.mmioWrite32(0x14, 0);
  t.is(f.port.mmioRead32(0x1c) & 3, 0, 'reset clears CFS');
  f.port.mmioWrite32(0x24, 0); // one-entry admin queues
  f.port.mmioWrite32(0x14, 1);
  t.is(f.port.mmioRead32(0x1c) & 1, 0);
});

test('an interrupt is raised per completion batch on the CQ vector; INTMS defers it until INTMC', async (t) => {
  const f = await startDriver({ serviceTimeUs: 0 });
  t.teardown(f.close);
  await f.guest.enable();
  const before = f.port.interruptCounts()[0] ?? 0;
  await f.guest.admin({ opcode: 0x06, prp1: 0x400000, cdw10: 1 });
  await new Promise((resolve) => setImmediate(resolve));
  t.is(f.port.interruptCounts()[0], before + 1);
  f.port.mmioWrite32(0x0c, 1);
  t.is(f.port.mmioRead32(0x0c), 1, 'INTMS reads the mask');
  await f.guest.admin({ opcode: 0x06, prp1: 0x400000, cdw10: 1 });
  await new Promise((resolve) => setImmediate(resolve));
  t.is(f.port.interruptCounts()[0], before + 1, 'masked: deferred');
  f.port.mmioWrite32(0x10, 1);
  t.is(f.port.mmioRead32(0x10), 0);
  t.is(f.port.interruptCounts()[0], before + 2, 'unmasked: delivered');
});

test('a controller reset (CC.EN 1 → 0) returns CC and CSTS to their reset values; AQA, ASQ and ACQ keep theirs', async (t) => {
  const f = await startDriver();
  t.teardown(f.close);
  await f.guest.enable(16);
  const admin = [0x24, 0x28, 0x2c, 0x30, 0x34].map((offset) => f.port.mmioRead32(offset));
  t.is(f.port.mmioRead32(0x14), 0x460001, 'CC as enabled: IOCQES 4, IOSQES 6, EN');
  f.port.mmioWrite32(0x14, 0x460000); // EN cleared, the entry sizes written as they were
  t.is(f.port.mmioRead32(0x14), 0, 'CC reads its reset value, IOSQES and IOCQES included');
  t.is(f.port.mmioRead32(0x1c), 0, 'CSTS reads its reset value');
  t.deepEqual([0x24, 0x28, 0x2c, 0x30, 0x34].map((offset) => f.port.mmioRead32(offset)), admin, 'AQA, ASQ, ACQ kept');
});
