/**
 * The guest NVMe driver and the verifying workload against the real
 * nvme-emu driver, in-process: bring-up and identify, I/O queues, a deep
 * verified workload, live migration to a second driver instance with
 * commands in flight, the JSON-RPC host port, and detection of device
 * protocol violations.
 */
import test, { type ExecutionContext } from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { NvmeEmuOptions } from '../schemas/types.ts';
import { createNvmeEmuDriver, type NvmeEmuDriver } from '../vendor-drivers/nvme-emu/index.ts';
import { captureState, restoreState } from './support/nvme-emu/fixtures.ts';
import { FEATURE, LOG_PAGE, nvmFlush, nvmRead, nvmWrite } from './support/guest-nvme-commands.ts';
import { NvmeProtocolError, NvmeStatusError } from './support/guest-nvme-errors.ts';
import { GuestMemoryAllocator, planPrps } from './support/guest-nvme-memory.ts';
import { GuestNvme } from './support/guest-nvme.ts';
import { HostPortProtocolError, copyGuestMemory, inProcessHostPort, rpcHostPort, type GuestHostPort } from './support/host-port.ts';
import { VerifyingWorkload, type WorkloadReport } from './support/verifying-workload.ts';

const VF = 'nvme0';
const SERIAL = 'GUEST-SN-0001';
const MODEL = 'vfmigd guest-nvme test';
const SUBNQN = 'nqn.2025-01.dev.vfmigd:guest-nvme-test';
const CNTLID = 7;
const NGUID = '00112233445566778899aabbccddeeff';
const EUI64 = '0123456789abcdef';
const NS1_BYTES = 64 << 20;
const NS2_BYTES = 16 << 20;

/** Workload seeds are fixed; GUEST_NVME_SEED mixes in another value to explore (a report names the seed it used). */
const SEED_SALT = Number(process.env['GUEST_NVME_SEED'] ?? 0) >>> 0;
const seed = (base: number): number => (base ^ SEED_SALT) >>> 0;

async function emuOptions(t: ExecutionContext, extra: Partial<NvmeEmuOptions> = {}): Promise<NvmeEmuOptions> {
  const dir = await mkdtemp(join(tmpdir(), 'guest-nvme-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return {
    hostPort: true,
    serviceTimeUs: 50,
    maxIoQueues: 16,
    ...extra,
    vfs: [{
      id: VF, bdf: '0000:3b:00.2', cntlid: CNTLID, serial: SERIAL, model: MODEL, subnqn: SUBNQN,
      namespaces: [
        { nsid: 1, path: join(dir, 'ns1.img'), sizeBytes: NS1_BYTES, blockSize: 512, nguid: NGUID, eui64: EUI64 },
        { nsid: 2, path: join(dir, 'ns2.img'), sizeBytes: NS2_BYTES, blockSize: 4096 },
      ],
    }],
  };
}

async function startDriver(t: ExecutionContext, options: NvmeEmuOptions): Promise<{ driver: NvmeEmuDriver; port: GuestHostPort }> {
  const driver = await createNvmeEmuDriver(options);
  await driver.start(pino({ level: 'silent' }));
  t.teardown(() => driver.stop());
  return { driver, port: inProcessHostPort(driver.hostPort(VF)) };
}

/** An enabled guest with `queues` I/O queue pairs (qid n uses MSI-X vector n). */
async function enabledGuest(port: GuestHostPort, queues: number, entries = 256): Promise<GuestNvme> {
  const nvme = new GuestNvme(port);
  await nvme.enable();
  await nvme.setNumberOfQueues(queues);
  for (let qid = 1; qid <= queues; qid++) await nvme.createIoQueuePair(qid, entries, qid);
  return nvme;
}

function assertClean(t: ExecutionContext, report: WorkloadReport): void {
  t.deepEqual(report.failures.map((f) => f.message), [], `seed ${report.seed}: ${report.failureCount} failures`);
  t.true(report.ok);
  t.is(report.stats.completed, report.stats.submitted, 'every submitted command completed exactly once');
  t.is(report.stats.inFlight, 0);
}

test('enable and identify: the controller and namespaces match the configuration', async (t) => {
  const { port } = await startDriver(t, await emuOptions(t));
  const nvme = new GuestNvme(port);
  await nvme.enable();
  t.true(nvme.version.major >= 1);
  t.true(nvme.capabilities.maxQueueEntries >= 2);
  t.is(nvme.capabilities.doorbellStrideBytes, 4);

  const controller = await nvme.identifyController();
  t.is(controller.serialNumber, SERIAL);
  t.is(controller.modelNumber, MODEL);
  t.is(controller.subnqn, SUBNQN);
  t.is(controller.cntlid, CNTLID);
  t.true(controller.firmwareRevision.length > 0);
  t.true(controller.nn >= 2);
  t.true(controller.mdts >= 1, 'MDTS allows at least two pages');
  t.is(controller.sqes & 0xf, 6, 'SQES required size is 64 bytes');
  t.is(controller.cqes & 0xf, 4, 'CQES required size is 16 bytes');

  t.deepEqual(await nvme.activeNamespaces(), [1, 2]);
  const ns1 = await nvme.identifyNamespace(1);
  t.is(ns1.lbaBytes, 512);
  t.is(ns1.nsze, NS1_BYTES / 512);
  t.is(ns1.ncap, NS1_BYTES / 512);
  t.is(ns1.nguid, NGUID);
  t.is(ns1.eui64, EUI64);
  const ns2 = await nvme.identifyNamespace(2);
  t.is(ns2.lbaBytes, 4096);
  t.is(ns2.nsze, NS2_BYTES / 4096);
  const descriptors = await nvme.namespaceDescriptors(1);
  t.is(descriptors.nguid, NGUID);
  t.is(descriptors.eui64, EUI64);

  const smart = await nvme.getLogPage(LOG_PAGE.SMART_HEALTH, 512);
  t.is(smart.length, 512);
  t.deepEqual(nvme.violations(), []);
  await nvme.shutdown();
});

test('admin failures carry the NVMe status as typed errors', async (t) => {
  const { port } = await startDriver(t, await emuOptions(t));
  const nvme = new GuestNvme(port);
  await nvme.enable();
  const badNamespace = await t.throwsAsync(nvme.identifyNamespace(0xffff_fffe), { instanceOf: NvmeStatusError });
  t.deepEqual([badNamespace?.sct, badNamespace?.sc], [0x0, 0x0b], 'Invalid Namespace or Format');
  const badQueue = await t.throwsAsync(nvme.createIoQueuePair(17, 16, 1), { instanceOf: NvmeStatusError });
  t.deepEqual([badQueue?.sct, badQueue?.sc], [0x1, 0x01], 'Invalid Queue Identifier (16 queues configured)');
  t.false(nvme.ioQueueIds().includes(17), 'a failed creation leaves no queue behind');
  await nvme.createIoQueuePair(1, 16, 1);
  const badSize = await t.throwsAsync(nvme.adminCommand({ opcode: 0x05, prp1: nvme.allocate(4096, 'cq').address, cdw10: 2 | (0xffff << 16), cdw11: 3 }), { instanceOf: NvmeStatusError });
  t.deepEqual([badSize?.sct, badSize?.sc], [0x1, 0x02], 'Invalid Queue Size beyond CAP.MQES');
});

test('transfers up to MDTS with an offset buffer use a PRP list; beyond MDTS fails with Invalid Field', async (t) => {
  const { port } = await startDriver(t, await emuOptions(t));
  const nvme = await enabledGuest(port, 1, 16);
  const { mdts } = await nvme.identifyController();
  const maxBytes = 2 ** mdts * 4096;
  const buffer = nvme.allocate(maxBytes + 2 * 4096, 'large buffer');
  const data = { address: buffer.address + 0x200, length: maxBytes }; // spans 2^MDTS + 1 pages
  const pattern = new Uint8Array(maxBytes).map((_, i) => (i >>> 9) ^ (i & 0xff));
  await nvme.memWrite(data.address, pattern);
  t.is((await nvme.execute(1, nvmWrite({ nsid: 1, slba: 4096, blocks: maxBytes / 512 }, data))).status.sc, 0);
  await nvme.memWrite(data.address, new Uint8Array(maxBytes));
  t.is((await nvme.execute(1, nvmRead({ nsid: 1, slba: 4096, blocks: maxBytes / 512 }, data))).status.sc, 0);
  t.deepEqual(await nvme.memRead(data.address, maxBytes), pattern);

  const tooBig = await nvme.execute(1, nvmRead({ nsid: 1, slba: 0, blocks: maxBytes / 512 + 8 }, { address: buffer.address, length: maxBytes + 4096 }));
  t.deepEqual([tooBig.status.sct, tooBig.status.sc], [0x0, 0x02], 'Invalid Field in Command beyond MDTS');
  const outOfRange = await nvme.execute(1, nvmRead({ nsid: 1, slba: NS1_BYTES / 512 - 1, blocks: 2 }, { address: buffer.address, length: 1024 }));
  t.deepEqual([outOfRange.status.sct, outOfRange.status.sc], [0x0, 0x80], 'LBA Out of Range');
});

test('PRP lists chain through the last entry of a full list page', (t) => {
  const allocator = new GuestMemoryAllocator({ base: 0x10_0000, size: 16 << 20 });
  const pages = 1100; // first page in PRP1, 1099 in lists: 511 + 511 + 77
  const plan = planPrps({ address: 0x4000_0000 + 8, length: (pages - 1) * 4096 + 100 }, allocator, 'test');
  t.is(plan.prp1, 0x4000_0008);
  t.is(plan.listPages.length, 3);
  t.is(plan.prp2, plan.listPages[0]?.address ?? -1);
  const entries = plan.listWrites.map((w) => Array.from({ length: w.data.length / 8 }, (_, i) => Number(new DataView(w.data.buffer).getBigUint64(i * 8, true))));
  t.deepEqual(entries.map((e) => e.length), [512, 512, 77]);
  t.is(entries[0]?.[511], plan.listPages[1]?.address, 'chain pointer');
  t.is(entries[1]?.[511], plan.listPages[2]?.address, 'chain pointer');
  const dataPages = [...(entries[0]?.slice(0, 511) ?? []), ...(entries[1]?.slice(0, 511) ?? []), ...(entries[2] ?? [])];
  t.deepEqual(dataPages, Array.from({ length: pages - 1 }, (_, i) => 0x4000_0000 + (i + 1) * 4096));
  const twoPages = planPrps({ address: 0x8000, length: 8192 }, allocator, 'test');
  t.deepEqual([twoPages.prp1, twoPages.prp2, twoPages.listPages.length], [0x8000, 0x9000, 0]);
  const onePage = planPrps({ address: 0x8010, length: 100 }, allocator, 'test');
  t.deepEqual([onePage.prp1, onePage.prp2], [0x8010, 0]);
});

test('I/O queue pairs: create six, use each, count interrupts per vector, delete and re-create', async (t) => {
  const { port } = await startDriver(t, await emuOptions(t));
  const nvme = new GuestNvme(port);
  await nvme.enable();
  const granted = await nvme.setNumberOfQueues(6);
  t.true(granted.submissionQueues >= 6 && granted.completionQueues >= 6, JSON.stringify(granted));
  const current = await nvme.getFeature(FEATURE.NUMBER_OF_QUEUES);
  t.is((current & 0xffff) + 1, granted.submissionQueues);

  for (let qid = 1; qid <= 6; qid++) await nvme.createIoQueuePair(qid, 64 * qid, qid);
  t.deepEqual(nvme.ioQueueIds(), [1, 2, 3, 4, 5, 6]);

  const before = await nvme.interruptCounts();
  const buffer = nvme.allocate(3 * 4096, 'test buffer');
  const pattern = new Uint8Array(3 * 4096).map((_, i) => (i * 7 + 3) & 0xff);
  for (let qid = 1; qid <= 6; qid++) {
    await nvme.memWrite(buffer.address, pattern);
    const write = await nvme.execute(qid, nvmWrite({ nsid: 1, slba: qid * 100, blocks: 24 }, { address: buffer.address, length: pattern.length }));
    t.is(write.status.sc, 0, `write on q${qid}`);
    await nvme.memWrite(buffer.address, new Uint8Array(pattern.length));
    const read = await nvme.execute(qid, nvmRead({ nsid: 1, slba: qid * 100, blocks: 24 }, { address: buffer.address, length: pattern.length }));
    t.is(read.status.sc, 0, `read on q${qid}`);
    t.deepEqual(await nvme.memRead(buffer.address, pattern.length), pattern, `data read back on q${qid} (PRP list)`);
    t.is((await nvme.execute(qid, nvmFlush(1))).status.sc, 0);
  }
  const after = await nvme.interruptCounts();
  for (let vector = 1; vector <= 6; vector++) {
    t.true((after[vector] ?? 0) > (before[vector] ?? 0), `vector ${vector} raised interrupts`);
  }

  await nvme.deleteIoQueuePair(6);
  t.deepEqual(nvme.ioQueueIds(), [1, 2, 3, 4, 5]);
  await nvme.createIoQueuePair(6, 32, 6);
  t.is((await nvme.execute(6, nvmFlush(1))).status.sc, 0);
  t.deepEqual(nvme.violations(), []);
});

test('verifying workload: 128 in flight over 4 queues, every byte checked', async (t) => {
  const { port } = await startDriver(t, await emuOptions(t, { serviceTimeUs: 20 }));
  const nvme = await enabledGuest(port, 4);
  const workload = await VerifyingWorkload.create(nvme, { nsid: 1, queueIds: [1, 2, 3, 4], seed: seed(0x5eed_0001), queueDepth: 128, initialContent: 'zeroes', lbaCount: 8192 });

  const started = performance.now();
  await workload.runUntil(6000);
  const elapsed = performance.now() - started;
  const report = await workload.finish();
  assertClean(t, report);
  t.true(report.stats.maxInFlight >= 64, `max in flight ${report.stats.maxInFlight}`);
  for (const qid of [1, 2, 3, 4]) t.true((report.stats.perQueue[qid]?.completed ?? 0) > 500, `queue ${qid} carried its share`);
  t.true(report.stats.finalVerifiedLbas > 1000);
  const interrupts = await nvme.interruptCounts();
  t.true([1, 2, 3, 4].every((v) => (interrupts[v] ?? 0) > 0), `interrupts ${JSON.stringify(interrupts)}`);
  t.log(`${Math.round((6000 / elapsed) * 1000)} commands/s in-process (${report.stats.submitted} commands, ${(report.stats.bytesWritten / 2 ** 20).toFixed(1)} MiB written, ${(report.stats.bytesRead / 2 ** 20).toFixed(1)} MiB read, max ${report.stats.maxInFlight} in flight)`);
});

test('verifying workload on a 4 KiB-block namespace', async (t) => {
  const { port } = await startDriver(t, await emuOptions(t, { serviceTimeUs: 20 }));
  const nvme = await enabledGuest(port, 4);
  const workload = await VerifyingWorkload.create(nvme, { nsid: 2, queueIds: [1, 2, 3, 4], seed: seed(42), queueDepth: 64, initialContent: 'zeroes' });
  await workload.runUntil(1500);
  const report = await workload.finish();
  assertClean(t, report);
  t.true(report.stats.finalVerifiedLbas > 100);
});

/** Moves the VF's device state from `source` to `destination` the way the agent core does; returns timings in ms. */
async function migrate(
  source: { driver: NvmeEmuDriver; port: GuestHostPort },
  destination: { driver: NvmeEmuDriver; port: GuestHostPort },
  nvme: GuestNvme,
  viaP2p: boolean,
): Promise<{ drained: number; stopMs: number; captureMs: number; copyMs: number; restoreMs: number; resumeMs: number; downtimeMs: number; stateBytes: number; memoryBytes: number }> {
  const deadline = (): number => performance.now() + 5000;
  const t0 = performance.now();
  let drained = 0;
  if (viaP2p) drained += (await source.driver.setRunLevel(VF, 'p2p-quiesced', { deadline: deadline() })).drainedCommands;
  drained += (await source.driver.setRunLevel(VF, 'stopped', { deadline: deadline() })).drainedCommands;
  const t1 = performance.now();
  const image = await captureState(source.driver, VF);
  const t2 = performance.now();
  const copied = await copyGuestMemory(source.port, destination.port, nvme.memoryRegions());
  const t3 = performance.now();
  // The destination VF goes RUNNING -> STOP -> RESUMING before it takes a state.
  await destination.driver.setRunLevel(VF, 'stopped', { deadline: deadline() });
  destination.driver.checkIdentity(VF, image.identity);
  await restoreState(destination.driver, VF, image);
  const t4 = performance.now();
  await destination.driver.setRunLevel(VF, 'running', { deadline: deadline() });
  await nvme.attach(destination.port);
  const t5 = performance.now();
  return {
    drained, stopMs: t1 - t0, captureMs: t2 - t1, copyMs: t3 - t2, restoreMs: t4 - t3, resumeMs: t5 - t4, downtimeMs: t5 - t0,
    stateBytes: image.payload.length, memoryBytes: copied.bytes,
  };
}

test('live migration with commands in flight: every command completes exactly once, every byte verified', async (t) => {
  const options = await emuOptions(t, { serviceTimeUs: 2000 });
  const source = await startDriver(t, options);
  const destination = await startDriver(t, options);
  const nvme = await enabledGuest(source.port, 4);
  const workload = await VerifyingWorkload.create(nvme, { nsid: 1, queueIds: [1, 2, 3, 4], seed: seed(0x000d_a7a0), queueDepth: 96, initialContent: 'zeroes', lbaCount: 8192 });

  await workload.runUntil(1000);
  await workload.submitBurst(200); // more than the device can have fetched by the time it stops
  const inFlight = workload.inFlight;
  t.true(inFlight >= 64, `${inFlight} commands in flight at the quiesce`);
  workload.quiesceGuestSide(); // the vCPUs pause: no submissions, no polling

  const timings = await migrate(source, destination, nvme, false);
  t.log(`migration with ${inFlight} in flight: drained ${timings.drained}; stop ${timings.stopMs.toFixed(1)} ms, capture ${timings.captureMs.toFixed(1)} ms (${timings.stateBytes} B), copy ${timings.copyMs.toFixed(1)} ms (${(timings.memoryBytes / 2 ** 20).toFixed(1)} MiB), restore ${timings.restoreMs.toFixed(1)} ms, resume+attach ${timings.resumeMs.toFixed(1)} ms; downtime ${timings.downtimeMs.toFixed(1)} ms`);

  const interruptsBefore = await nvme.interruptCounts();
  workload.resumeGuestSide();
  await workload.runUntil(2500);
  const report = await workload.finish();
  assertClean(t, report);
  const interruptsAfter = await nvme.interruptCounts();
  t.true([1, 2, 3, 4].some((v) => (interruptsAfter[v] ?? 0) > (interruptsBefore[v] ?? 0)), 'the destination raises interrupts');
  t.deepEqual(nvme.violations(), []);
});

test('ping-pong migration through RUNNING_P2P, three hops with commands in flight', async (t) => {
  const options = await emuOptions(t, { serviceTimeUs: 1000 });
  const a = await startDriver(t, options);
  const b = await startDriver(t, options);
  const nvme = await enabledGuest(a.port, 4, 128);
  const workload = await VerifyingWorkload.create(nvme, { nsid: 1, queueIds: [1, 2, 3, 4], seed: seed(7), queueDepth: 80, initialContent: 'zeroes', lbaCount: 4096 });
  const hops: [typeof a, typeof a][] = [[a, b], [b, a], [a, b]];
  let target = 500;
  for (const [from, to] of hops) {
    await workload.runUntil(target);
    await workload.submitBurst(100);
    workload.quiesceGuestSide();
    const timings = await migrate(from, to, nvme, true);
    t.log(`hop: ${workload.inFlight} in flight, drained ${timings.drained}, downtime ${timings.downtimeMs.toFixed(1)} ms`);
    workload.resumeGuestSide();
    target += 500;
  }
  await workload.runUntil(target);
  assertClean(t, await workload.finish());
});

test('aborted migration: a stopped VF posts nothing, latches doorbells, and catches up when running again', async (t) => {
  const { driver, port } = await startDriver(t, await emuOptions(t, { serviceTimeUs: 1000 }));
  const nvme = await enabledGuest(port, 4, 128);
  const workload = await VerifyingWorkload.create(nvme, { nsid: 1, queueIds: [1, 2, 3, 4], seed: seed(11), queueDepth: 64, initialContent: 'zeroes', lbaCount: 8192, maxBlocksPerCommand: 16 });
  await workload.runUntil(500);
  await workload.submitBurst(64);
  const change = await driver.setRunLevel(VF, 'stopped', { deadline: performance.now() + 5000 });
  await workload.pump(); // completions the drain posted before the stop returned
  const completedWhenStopped = workload.stats().completed;
  const interruptsWhenStopped = await nvme.interruptCounts();

  // This guest was not paused: it keeps submitting and polling against a stopped VF.
  const latched = await workload.submitBurst(48);
  const until = performance.now() + 50;
  while (performance.now() < until) {
    await workload.pump();
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  t.is(workload.stats().completed, completedWhenStopped, 'no completion is posted while stopped');
  t.deepEqual(await nvme.interruptCounts(), interruptsWhenStopped, 'no interrupt is raised while stopped');
  t.true(workload.inFlight >= latched, `${workload.inFlight} in flight, ${latched} of them rung while stopped`);

  await driver.setRunLevel(VF, 'running', { deadline: performance.now() + 5000 });
  t.log(`drained ${change.drainedCommands} at the stop; ${latched} commands rung while stopped`);
  assertClean(t, await workload.finish());
});

test('doorbells rung after the source stopped reach the destination with the saved state', async (t) => {
  const options = await emuOptions(t, { serviceTimeUs: 1000 });
  const source = await startDriver(t, options);
  const destination = await startDriver(t, options);
  const nvme = await enabledGuest(source.port, 4, 128);
  const workload = await VerifyingWorkload.create(nvme, { nsid: 1, queueIds: [1, 2, 3, 4], seed: seed(12), queueDepth: 64, initialContent: 'zeroes', lbaCount: 8192, maxBlocksPerCommand: 16 });
  await workload.runUntil(300);
  await source.driver.setRunLevel(VF, 'stopped', { deadline: performance.now() + 5000 });
  const latched = await workload.submitBurst(48); // SQEs in guest memory, tail doorbells latched by the stopped VF
  workload.quiesceGuestSide();
  const image = await captureState(source.driver, VF);
  await copyGuestMemory(source.port, destination.port, nvme.memoryRegions());
  await destination.driver.setRunLevel(VF, 'stopped', { deadline: performance.now() + 5000 });
  await restoreState(destination.driver, VF, image);
  await destination.driver.setRunLevel(VF, 'running', { deadline: performance.now() + 5000 });
  await nvme.attach(destination.port);
  t.log(`${latched} commands rung while the source was stopped`);
  assertClean(t, await workload.finish());
});

test('rpcHostPort: the driver works over a JSON-RPC-shaped loopback, and malformed results fail clearly', async (t) => {
  const { driver } = await startDriver(t, await emuOptions(t));
  const hostPort = driver.hostPort(VF);
  const methods: Record<string, (p: Record<string, unknown>) => unknown> = {
    'emu.mmioRead': (p) => ({ value: hostPort.mmioRead32(Number(p['offset'])) }),
    'emu.mmioWrite': (p) => (hostPort.mmioWrite32(Number(p['offset']), Number(p['value'])), {}),
    'emu.memRead': (p) => ({ data: Buffer.from(hostPort.memRead(Number(p['address']), Number(p['length']))).toString('base64') }),
    'emu.memWrite': (p) => (hostPort.memWrite(Number(p['address']), new Uint8Array(Buffer.from(String(p['data']), 'base64'))), {}),
    'emu.interrupts': () => ({ counts: [...hostPort.interruptCounts()] }),
  };
  const calls = new Map<string, number>();
  // JSON round trips in both directions, as on the wire.
  const call = async (method: string, params: object): Promise<unknown> => {
    calls.set(method, (calls.get(method) ?? 0) + 1);
    const request = JSON.parse(JSON.stringify(params)) as Record<string, unknown>;
    t.is(request['vf'], VF);
    const handler = methods[method];
    if (handler === undefined) throw new Error(`no method ${method}`);
    return JSON.parse(JSON.stringify(handler(request)));
  };
  const nvme = await enabledGuest(rpcHostPort(call, VF), 2, 64);
  t.is((await nvme.identifyController()).serialNumber, SERIAL);
  const workload = await VerifyingWorkload.create(nvme, { nsid: 1, queueIds: [1, 2], seed: seed(99), queueDepth: 32, initialContent: 'zeroes', lbaCount: 1024 });
  await workload.runUntil(300);
  assertClean(t, await workload.finish());
  t.true((await nvme.interruptCounts()).length > 2);
  t.true([...calls.keys()].length === 5, `used ${[...calls.keys()].join(', ')}`);

  const broken = (result: unknown) => rpcHostPort(async () => result, VF);
  await t.throwsAsync(broken({ value: 'x' }).mmioRead32(0), { instanceOf: HostPortProtocolError, message: /emu\.mmioRead.*value/ });
  await t.throwsAsync(broken({ value: 2 ** 32 }).mmioRead32(0), { instanceOf: HostPortProtocolError });
  await t.throwsAsync(broken({ data: 'AAAA' }).memRead(0, 8), { instanceOf: HostPortProtocolError, message: /asked for 8 bytes.*got 3/ });
  await t.throwsAsync(broken({ data: 42 }).memRead(0, 8), { instanceOf: HostPortProtocolError });
  await t.throwsAsync(broken({ counts: [1, -1] }).interruptCounts(), { instanceOf: HostPortProtocolError });
  await t.throwsAsync(broken(null).mmioWrite32(0, 0), { instanceOf: HostPortProtocolError, message: /expected an object/ });
});

test('copyGuestMemory moves every region in chunks of at most 1 MiB', async (t) => {
  const reads: number[] = [];
  const written = new Map<number, Uint8Array>();
  const fake = (side: 'from' | 'to'): GuestHostPort => ({
    mmioRead32: async () => 0,
    mmioWrite32: async () => {},
    memRead: async (address, length) => {
      reads.push(length);
      return new Uint8Array(length).map((_, i) => (address + i) & 0xff);
    },
    memWrite: async (address, data) => {
      if (side === 'to') written.set(address, data);
    },
    interruptCounts: async () => [],
  });
  const stats = await copyGuestMemory(fake('from'), fake('to'), [{ address: 0x1_0000_0000, length: 2.5 * 2 ** 20 }, { address: 0x2000, length: 4096 }]);
  t.is(stats.bytes, 2.5 * 2 ** 20 + 4096);
  t.is(stats.chunks, 4);
  t.true(reads.every((length) => length <= 2 ** 20));
  t.is(written.get(0x1_0010_0000)?.[0], 0x00);
  t.is(written.get(0x2000)?.[1], 0x01);
});

test('protocol violations by the device are detected, not hidden', async (t) => {
  const { port } = await startDriver(t, await emuOptions(t));
  const nvme = await enabledGuest(port, 3, 16);

  // Forge the entry at the CQ head as a buggy device would post it: phase
  // tag as expected, SQ id, SQHD and CID as given.
  async function forge(qid: number, fields: { sqid: number; sqHead: number; cid: number }): Promise<void> {
    const cq = nvme.allocations().find((a) => a.purpose === `CQ ${qid}`);
    if (cq === undefined) throw new Error(`no CQ ${qid}`);
    const { cqHead, phase } = nvme.queuePositions(qid);
    const entry = new Uint8Array(16);
    const view = new DataView(entry.buffer);
    view.setUint32(8, (fields.sqHead | (fields.sqid << 16)) >>> 0, true);
    view.setUint32(12, (fields.cid | (phase << 16)) >>> 0, true);
    await nvme.memWrite(cq.address + cqHead * 16, entry);
  }
  const flushOn = async (qid: number) => nvme.execute(qid, nvmFlush(1));

  const done = await flushOn(1);
  await forge(1, { sqid: 1, sqHead: done.sqHead, cid: done.cid });
  const duplicate = await t.throwsAsync(nvme.poll(1), { instanceOf: NvmeProtocolError });
  t.is(duplicate?.violations[0]?.kind, 'duplicate-completion');

  const other = await flushOn(2);
  await forge(2, { sqid: 3, sqHead: other.sqHead, cid: other.cid });
  const wrongSq = await t.throwsAsync(nvme.poll(2), { instanceOf: NvmeProtocolError });
  t.is(wrongSq?.violations[0]?.kind, 'wrong-sqid');

  await flushOn(3);
  const second = await flushOn(3);
  await forge(3, { sqid: 3, sqHead: (second.sqHead + 15) % 16, cid: 0x1234 });
  const backwards = await t.throwsAsync(nvme.poll(3), { instanceOf: NvmeProtocolError });
  t.deepEqual(backwards?.violations.map((v) => v.kind), ['sq-head-backwards', 'unknown-cid']);
  t.is(nvme.violations().length, 4);
});
