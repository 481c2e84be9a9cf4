import test from 'ava';
import { readdir, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { DriverError } from '../driver.ts';
import { generatedBdf } from './derived-ids.ts';
import { createNvmeEmuDriver } from './index.ts';
import { startWithIoQueue, tempDir } from '../../test/support/nvme-emu/fixtures.ts';

test('generated BDFs start at 3b:00.2 and carry into device and bus numbers', (t) => {
  t.is(generatedBdf(0), '0000:3b:00.2');
  t.is(generatedBdf(5), '0000:3b:00.7');
  t.is(generatedBdf(6), '0000:3b:01.0');
  t.is(generatedBdf(253), '0000:3b:1f.7');
  t.is(generatedBdf(254), '0000:3c:00.0');
});

test('defaults: four nvme VFs, P2P advertised, no pre-copy or dirty tracking, no host port', async (t) => {
  const driver = createNvmeEmuDriver({});
  t.is(driver.name, 'nvme-emu');
  t.deepEqual(driver.capabilities, { p2p: true, preCopy: false, dirtyTracking: false, hostPort: false });
  const formats = [
    { name: 'nvme-controller-state+vfmigd-nvme-emu', version: 1, vendor: '5f0c9a3e-2b7d-4c61-8e4a-9d1b6f2a7c30' },
    { name: 'nvme-controller-state', version: 0, vendor: '00000000-0000-0000-0000-000000000000' },
  ];
  t.deepEqual(driver.stateFormats, formats, 'loads the full format and the standard one');
  t.deepEqual(driver.saveFormats, formats, 'and saves both, the full one by default');
  t.deepEqual(
    driver.listVfs().map((vf) => `${vf.id}@${vf.bdf}:${vf.kind}`),
    ['nvme0@0000:3b:00.2:nvme', 'nvme1@0000:3b:00.3:nvme', 'nvme2@0000:3b:00.4:nvme', 'nvme3@0000:3b:00.5:nvme'],
  );
  const description = (await driver.describe('nvme1'));
  t.deepEqual(description.details.queues, { max: 16, active: 0 });
  t.is(description.details.namespaces[0]?.sizeBytes, 1024 ** 3);
  t.is(description.details.namespaces[0]?.blockSize, 512);
  t.is(description.identity.model, 'vfmigd/nvme-emu');
  t.is(description.identity.mqes, 1023);
  t.false(driver.capabilities.hostPort, 'no host port unless configured');
  t.throws(() => driver.hostPort('nvme0'));
  t.is(createNvmeEmuDriver({ p2p: false }).capabilities.p2p, false);
  t.is((await t.throwsAsync(() => driver.describe('nvme9'), { instanceOf: DriverError }))?.kind, 'driver-failure');
});

test('identities are deterministic, so two agents with one configuration match', async (t) => {
  const a = (await createNvmeEmuDriver({ vfCount: 2 }).describe('nvme1')).identity;
  const b = (await createNvmeEmuDriver({ vfCount: 2 }).describe('nvme1')).identity;
  t.deepEqual(a, b);
  t.not((await createNvmeEmuDriver({ vfCount: 2 }).describe('nvme0')).identity.serialNumber, a.serialNumber);
});

test('configuration errors JSON Schema cannot catch are refused', (t) => {
  const ns = [{ path: '/tmp/x.img', sizeBytes: 4096 }];
  t.throws(() => createNvmeEmuDriver({ vfs: [{ id: 'a', bdf: '0000:01:00.1', namespaces: ns }, { id: 'a', bdf: '0000:01:00.2', namespaces: ns }] }), { message: /duplicate VF id a/ });
  t.throws(() => createNvmeEmuDriver({ vfs: [{ id: 'a', bdf: '0000:01:00.1', namespaces: [{ path: '/tmp/x.img', sizeBytes: 5000 }] }] }), { message: /not a multiple/ });
  t.throws(() => createNvmeEmuDriver({ vfs: [{ id: 'a', bdf: '0000:01:00.1', namespaces: [...ns, { ...ns[0]!, nsid: 1 }] }] }), { message: /duplicate NSID/ });
});

test('a thousand VFs start without touching the disk', async (t) => {
  const dataDir = await tempDir(t);
  const started = performance.now();
  const driver = createNvmeEmuDriver({ dataDir, vfCount: 1024 });
  await driver.start(pino({ enabled: false }));
  const elapsed = performance.now() - started;
  t.log(`1024 VFs created and started in ${elapsed.toFixed(1)} ms`);
  t.is(driver.listVfs().length, 1024);
  t.is(driver.listVfs()[1023]?.bdf, '0000:3f:00.1');
  t.deepEqual(await readdir(dataDir), [], 'namespace files are created on first use');
  t.true(elapsed < 2000);
  await driver.stop();
});

test('health reports each namespace file: creatable, right size, or wrong size', async (t) => {
  const dataDir = await tempDir(t);
  const driver = createNvmeEmuDriver({ dataDir, vfCount: 2, namespaceBytes: 1 << 20 });
  await driver.start(pino({ enabled: false }));
  t.teardown(() => driver.stop());
  const fresh = await driver.health();
  t.is(fresh.length, 2);
  t.true(fresh.every((check) => check.ok && /not created yet/.test(check.detail)));

  const f = await startWithIoQueue({ vfCount: 1 }, dataDir);
  t.teardown(f.close);
  await f.guest.run(1, { opcode: 0x00, nsid: 1 }); // first I/O creates the file
  const [created] = await f.driver.health();
  t.true(created?.ok);
  t.regex(created?.detail ?? '', /16777216 bytes/);
  await truncate(join(dataDir, 'nvme0-ns1.img'), 4096);
  const [shrunk] = await f.driver.health();
  t.false(shrunk?.ok);
  t.regex(shrunk?.detail ?? '', /4096 bytes, expected 16777216/);
});
