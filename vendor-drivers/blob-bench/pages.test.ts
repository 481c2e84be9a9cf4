/**
 * blob-bench's own check of what it loads, below the stream's CRC32C: a
 * page whose bytes are not exactly those of the version it names, and a
 * stale page (well formed, but an update behind the header's sums), are
 * refused at commit or before, and the VF keeps the state it had.
 */
import test from 'ava';
import pino from 'pino';
import { createBlobBenchDriver } from './index.ts';
import type { DeviceLoadStream, VendorDriver } from '../driver.ts';

const PAGE = 4096;
const FORMAT = { name: 'blob-bench', version: 4 };

async function started(): Promise<VendorDriver> {
  const driver = createBlobBenchDriver({ vfCount: 2, stateBytes: 16 * PAGE, preCopy: true });
  await driver.start(pino({ level: 'silent' }));
  return driver;
}

/** The device data of a whole save of blob0, stopped, with blob0 changed `changes` times before. */
async function saved(driver: VendorDriver): Promise<Buffer> {
  await driver.setRunLevel('blob0', 'stopped', { deadline: performance.now() + 1000 });
  const stream = await driver.openSave('blob0', FORMAT);
  const data = Buffer.from(await stream.read(1 << 20));
  stream.close();
  return data;
}

async function load(driver: VendorDriver, data: Buffer): Promise<DeviceLoadStream> {
  await driver.setRunLevel('blob1', 'stopped', { deadline: performance.now() + 1000 });
  const stream = await driver.openLoad('blob1', FORMAT);
  await stream.write(data);
  return stream;
}

/** Where page `index`'s bytes start in the device data (each record: u32 index, then the page). */
function pageAt(data: Buffer, index: number): number {
  for (let at = 0; at < data.length; at += 4 + PAGE) if (data.readUInt32LE(at) === index) return at + 4;
  throw new Error(`no page ${index}`);
}

test('a whole save loads; one filler byte changed in one page is refused, naming the page', async (t) => {
  const driver = await started();
  const data = await saved(driver);
  await t.notThrowsAsync(async () => (await load(driver, data)).commit());
  const damaged = Buffer.from(data);
  const at = pageAt(damaged, 5) + 1000;
  damaged.writeUInt8(damaged.readUInt8(at) ^ 0x01, at);
  await t.throwsAsync(async () => (await load(driver, damaged)).commit(), { message: /page 5 is not the bytes of its version 0/ });
  const renamed = Buffer.from(data);
  renamed.writeUInt32LE(6, pageAt(renamed, 5));
  await t.throwsAsync(async () => (await load(driver, renamed)).commit(), { message: /page 5 says it is page 6/ });
});

test('a stale page, well formed but one update behind, fails the header\'s sums; the VF keeps its state', async (t) => {
  const driver = await started();
  const before = await saved(driver);
  // The source runs and changes (one page each time it is set running), then saves again.
  await driver.setRunLevel('blob0', 'running', { deadline: performance.now() + 1000 });
  const after = await saved(driver);
  const changed = [...Array(16).keys()].filter((i) => i > 0 && !before.subarray(pageAt(before, i), pageAt(before, i) + PAGE).equals(after.subarray(pageAt(after, i), pageAt(after, i) + PAGE)));
  t.is(changed.length, 1, 'one data page changed');
  const index = changed[0] ?? 0;
  const stale = Buffer.from(after);
  before.copy(stale, pageAt(stale, index), pageAt(before, index), pageAt(before, index) + PAGE);
  await t.throwsAsync(async () => (await load(driver, stale)).commit(), { message: /an update was lost/ });
  // blob1 was never given a state: it still saves the one it started with (version 0 everywhere, as blob0 did).
  await driver.setRunLevel('blob1', 'stopped', { deadline: performance.now() + 1000 });
  const own = await driver.openSave('blob1', FORMAT);
  const ownData = Buffer.from(await own.read(1 << 20));
  own.close();
  t.true(ownData.equals(before), 'nothing of the refused state reached blob1');
});
