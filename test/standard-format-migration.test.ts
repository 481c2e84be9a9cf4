/**
 * A migration negotiated down to the NVMe-standard state format, between
 * two real agents, as a VMM would drive it: the destination takes only the
 * standard format (a controller of another vendor would), so the two sides'
 * vf.formats are compared, the common format is checked on the destination
 * before anything stops, and the source saves in it. A busy guest has
 * commands in flight over four I/O queues; the standard state carries the
 * I/O queues exactly, so its I/O goes on and every command completes once.
 * It carries no admin queue: the guest finds its admin commands unanswered
 * and does what a guest driver does then, resets the controller and sets it
 * up again, and every byte is still there.
 */
import test from 'ava';
import type { StateFormat } from '../schemas/types.ts';
import { tempDir } from './support/agent-process.ts';
import { identify, IDENTIFY_CNS } from './support/guest-nvme-commands.ts';
import { NvmeTimeoutError } from './support/guest-nvme-errors.ts';
import { REG } from './support/guest-nvme-registers.ts';
import { copyGuestMemory } from './support/host-port.ts';
import { assertClean, busyGuest, pauseWithCommandsInFlight, startSide, vfConfig } from './support/migration-rig.ts';
import { base64Of, type RpcClient } from './support/rpc-client.ts';

const BDF = '0000:3b:00.2';
const STANDARD = { name: 'nvme-controller-state', version: 0, vendor: '00000000-0000-0000-0000-000000000000' };

function same(a: StateFormat, b: StateFormat): boolean {
  return a.name === b.name && a.version === b.version && a.vendor === b.vendor;
}

/** The whole save stream in `format`, in 4093-byte slices (the format goes with the call that opens the save). */
async function saveIn(rpc: RpcClient, format: StateFormat): Promise<Buffer[]> {
  const slices: Buffer[] = [];
  for (let offset = 0; ; ) {
    const slice = await rpc.call('vf.save', { vf: BDF, maxBytes: 4093, offset, ...(offset === 0 ? { format } : {}) });
    slices.push(Buffer.from(base64Of(slice.data), 'base64'));
    offset += slice.length;
    if (slice.eof) return slices;
  }
}

test('a format negotiated down to the standard one: the I/O queues carry over with commands in flight, the guest re-establishes admin state itself', async (t) => {
  const dir = tempDir();
  const source = await startSide(t, [vfConfig(dir)]);
  const destination = await startSide(t, [vfConfig(dir)], 2000, {}, { stateFormats: ['standard'] });

  // Negotiation, before anything stops: the first format the source saves that the destination loads.
  const offered = (await source.rpc.call('vf.formats', { vf: BDF })).formats.filter((f) => f.save);
  const accepted = (await destination.rpc.call('vf.formats', { vf: BDF })).formats.filter((f) => f.load);
  t.is(offered.length, 2, 'the source saves in the full format and the standard one');
  const chosen = offered.find((f) => accepted.some((a) => same(a, f)));
  t.deepEqual(chosen && { name: chosen.name, version: chosen.version, vendor: chosen.vendor }, STANDARD);
  const byDefault = (await source.rpc.call('vf.stateDescriptor', { vf: BDF })).descriptor;
  t.false((await destination.rpc.call('vf.checkCompatibility', { vf: BDF, descriptor: byDefault })).compatible, 'the source\'s default, the full format, is not one the destination takes');
  const { descriptor } = await source.rpc.call('vf.stateDescriptor', { vf: BDF, format: STANDARD });
  t.like(await destination.rpc.call('vf.checkCompatibility', { vf: BDF, descriptor }), { compatible: true, format: STANDARD });

  const guest = await busyGuest(source.portOf(BDF), 0x57a4d);
  const { nvme, workload } = guest;
  await pauseWithCommandsInFlight(t, workload);
  t.log(`${(await source.rpc.call('vf.quiesce', { vf: BDF, timeoutMs: 5000 })).drainedCommands} commands drained by the quiesce`);
  const slices = await saveIn(source.rpc, STANDARD);
  await copyGuestMemory(source.portOf(BDF), destination.portOf(BDF), nvme.memoryRegions());
  await destination.rpc.call('vf.setState', { vf: BDF, state: 'STOP' });
  let offset = 0;
  for (const bytes of slices) {
    await destination.rpc.call('vf.load', { vf: BDF, offset, data: bytes.toString('base64') });
    offset += bytes.length;
  }
  t.is((await destination.rpc.call('vf.resume', { vf: BDF })).state, 'RUNNING');
  await source.rpc.call('vf.setState', { vf: BDF, state: 'STOP' });

  // The I/O queues carried over exactly: the commands in flight complete once, and I/O goes on.
  await nvme.attach(destination.portOf(BDF));
  workload.resumeGuestSide();
  await workload.runUntil(workload.stats().completed + 800);
  assertClean(t, await workload.finish(), nvme);

  // The admin queue did not: its registers read 0, and an admin command goes unanswered.
  const port = destination.portOf(BDF);
  t.deepEqual([await port.mmioRead32(REG.AQA), await port.mmioRead32(REG.ASQ_LO), await port.mmioRead32(REG.ACQ_LO)], [0, 0, 0]);
  const buffer = nvme.allocate(4096, 'identify');
  const unanswered = await nvme.execute(0, identify(IDENTIFY_CNS.CONTROLLER, 0, { address: buffer.address, length: 4096 }), 300).then(() => undefined, (error: unknown) => error);
  t.true(unanswered instanceof NvmeTimeoutError, 'no admin queue on the destination');

  // What a guest driver does after an admin timeout: reset the controller, set it up again, go on.
  await nvme.enable();
  await nvme.setNumberOfQueues(4);
  for (let qid = 1; qid <= 4; qid += 1) await nvme.createIoQueuePair(qid, 256, qid);
  t.is((await nvme.identifyController()).serialNumber.trim(), 'VFMIG-E2E-0000', 'admin commands work after the reset');
  workload.resumeGuestSide();
  await workload.runUntil(workload.stats().completed + 400);
  assertClean(t, await workload.finish(), nvme);
  t.true(workload.stats().finalVerifiedLbas > 0, 'every byte written before and after the reset read back as written');
});
