/**
 * The cap on a VF's guest memory: pages are backed only up to
 * `maxGuestMemoryBytes`; a write that needs more is refused whole with
 * nothing written, from the host port (invalid-access) and from the VF's
 * DMA (a data transfer error; a completion that cannot be posted sets
 * CSTS.CFS). A reset does not free guest memory (it is the host's RAM), and
 * the cap keeps bounding it afterwards.
 */
import test from 'ava';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { DriverError } from '../driver.ts';
import { createNvmeEmuDriver } from './index.ts';
import { GuestMemory, GuestMemoryFullError } from './guest-memory.ts';
import { DEFAULTS } from './options.ts';
import { farDeadline, startWithIoQueue } from '../../test/support/nvme-emu/fixtures.ts';
import { DATA, IO_QUEUES, pattern, sqe } from '../../test/support/nvme-emu/test-guest.ts';

const PAGE = 4096;
const READ = 0x02;
const DATA_TRANSFER_ERROR = 0x004;
const CSTS = 0x1c;
const CSTS_CFS = 1 << 1;

test('the default cap is 256 MiB per VF', (t) => {
  t.is(DEFAULTS.maxGuestMemoryBytes, 256 * 1024 * 1024);
});

test('GuestMemory backs pages up to its cap; a write that needs more is refused whole', (t) => {
  const memory = new GuestMemory(4 * PAGE);
  memory.write(0, pattern(2 * PAGE, 1));
  // Crossing a page boundary: two new pages, exactly the cap.
  memory.write(10 * PAGE - 8, pattern(16, 2));
  t.is(memory.backedBytes, 4 * PAGE);
  // Rewriting backed pages needs nothing new.
  memory.write(100, pattern(PAGE, 3));
  t.true(memory.fits([{ address: 0, length: 2 * PAGE }, { address: 10 * PAGE, length: 1 }]));
  t.false(memory.fits([{ address: 0, length: PAGE }, { address: 20 * PAGE, length: 1 }]));
  // A write partly over backed pages and partly over a new one: refused, and the backed part is not written either.
  const before = memory.read(PAGE, PAGE);
  t.throws(() => memory.write(PAGE, pattern(2 * PAGE, 4)), { instanceOf: GuestMemoryFullError });
  t.deepEqual(memory.read(PAGE, PAGE), before);
  t.deepEqual(memory.read(2 * PAGE, PAGE), new Uint8Array(PAGE));
  t.is(memory.backedBytes, 4 * PAGE);
  t.notThrows(() => memory.write(5 * PAGE, new Uint8Array(0)), 'an empty write needs no page');
});

test('through a VF: the host port, the VF\'s DMA and its completions stop at the cap; a reset frees nothing and the cap still holds', async (t) => {
  const cap = 16 * PAGE;
  const f = await startWithIoQueue({ maxGuestMemoryBytes: cap, serviceTimeUs: 0 });
  t.teardown(f.close);
  // One Read that lands, so that the pages the queues use are backed.
  t.is((await f.guest.run(1, { opcode: READ, nsid: 1, prp1: DATA })).status, 0);
  // Fill the rest of the cap through the host port, page by page, until it refuses.
  let next = DATA + PAGE;
  for (;;) {
    try {
      f.port.memWrite(next, pattern(PAGE, next));
    } catch (error) {
      t.true(error instanceof DriverError && error.kind === 'invalid-access', String(error));
      break;
    }
    next += PAGE;
    if (next > DATA + cap) throw new Error('the host port wrote past the cap');
  }
  const full = next;
  t.deepEqual(f.port.memRead(full, PAGE), new Uint8Array(PAGE), 'the refused write wrote nothing');
  // Backed pages can still be rewritten.
  t.notThrows(() => f.port.memWrite(DATA + PAGE, pattern(PAGE, 7)));

  // The VF's DMA into a page that is not backed fails as a data transfer error, writing nothing.
  t.is((await f.guest.run(1, { opcode: READ, nsid: 1, prp1: full })).status, DATA_TRANSFER_ERROR);
  t.deepEqual(f.port.memRead(full, PAGE), new Uint8Array(PAGE));
  t.is((await f.guest.run(1, { opcode: READ, nsid: 1, prp1: DATA + PAGE })).status, 0, 'into backed pages it still works');

  // A function level reset leaves guest memory as it was (it is the host's RAM), and the cap as full.
  await f.driver.setRunLevel('nvme0', 'stopped', farDeadline());
  await f.driver.reset('nvme0');
  t.deepEqual(f.port.memRead(full - PAGE, PAGE), pattern(PAGE, full - PAGE));
  t.is(t.throws(() => f.port.memWrite(full, new Uint8Array(1)), { instanceOf: DriverError })?.kind, 'invalid-access');

  // A completion queue on a page that cannot be backed: the completion cannot be posted, so CSTS.CFS.
  await f.guest.enable();
  const freshCq = IO_QUEUES + 8 * 0x20000;
  const backedSq = DATA + 2 * PAGE;
  t.is((await f.guest.admin({ opcode: 0x05, prp1: freshCq, cdw10: (63 << 16) | 2, cdw11: (2 << 16) | 0x3 })).status, 0);
  t.is((await f.guest.admin({ opcode: 0x01, prp1: backedSq, cdw10: (63 << 16) | 2, cdw11: (2 << 16) | 0x1 })).status, 0);
  f.port.memWrite(backedSq, sqe({ opcode: READ, cid: 1, nsid: 1, prp1: DATA }));
  f.port.mmioWrite32(0x1000 + 8 * 2, 1);
  const until = performance.now() + 5000;
  while ((f.port.mmioRead32(CSTS) & CSTS_CFS) === 0 && performance.now() < until) await nextTurn();
  t.is(f.port.mmioRead32(CSTS) & CSTS_CFS, CSTS_CFS);
  t.deepEqual(f.port.memRead(freshCq, 16), new Uint8Array(16));
});

test('the cap is per VF and comes from the options', async (t) => {
  const driver = createNvmeEmuDriver({ vfCount: 2, hostPort: true, maxGuestMemoryBytes: 65536 });
  t.teardown(() => driver.stop());
  const [a, b] = [driver.hostPort('nvme0'), driver.hostPort('nvme1')];
  if (a === undefined || b === undefined) throw new Error('host port is off');
  a.memWrite(0, new Uint8Array(65536));
  t.throws(() => a.memWrite(65536, new Uint8Array(1)), { instanceOf: DriverError });
  t.notThrows(() => b.memWrite(0, new Uint8Array(65536)));
});
