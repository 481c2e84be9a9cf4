/**
 * Leases end to end: real agent processes, an nvme-emu VF with a guest
 * whose commands are in flight when the VM stops, and a VMM that stops
 * calling at each step of a migration. Its last call asks for a short
 * lease (`vf.renewLease` with `leaseMs`), as if it died right after, so no
 * test waits out a default lease. What the lease's expiry must do (issue 8
 * §1): a source not read to the end runs again with every command
 * completed exactly once; a source read to the end, and a destination that
 * applied the state, stay stopped and say they are stranded until an
 * explicit call; a destination that was loading drops what it received.
 */
import test from 'ava';
import { tempDir } from './support/agent-process.ts';
import { copyGuestMemory } from './support/host-port.ts';
import { busyGuest, finishClean, loadAll, pauseWithCommandsInFlight, saveAll, startSide, vfConfig, type Side } from './support/migration-rig.ts';

const BDF = '0000:3b:00.2';
/** The lease the VMM's last call asks for. */
const LAST_LEASE_MS = 100;

/** The VMM's last call on `side`'s VF, after which it is gone. */
async function vmmVanishes(side: Side): Promise<void> {
  const renewed = await side.rpc.call('vf.renewLease', { vf: BDF, leaseMs: LAST_LEASE_MS });
  if (renewed.leaseMs !== LAST_LEASE_MS) throw new Error(`lease renewed for ${renewed.leaseMs} ms`);
}

async function strandedCheck(side: Side): Promise<{ ok: boolean; detail: string } | undefined> {
  const health = await side.rpc.call('agent.health', {});
  return health.checks.find((c) => c.name === 'vfs-not-stranded');
}

test('a quiesced source whose VMM vanishes runs again when its lease expires, every command completed exactly once', async (t) => {
  const source = await startSide(t, [vfConfig(tempDir())]);
  const guest = await busyGuest(source.portOf(BDF), 0x1ea5e);
  await pauseWithCommandsInFlight(t, guest.workload);
  await source.rpc.call('vf.quiesce', { vf: BDF });
  // A partial save: the VMM got some of the state, not all of it.
  const first = await source.rpc.call('vf.save', { vf: BDF, maxBytes: 509 });
  t.false(first.eof);
  await vmmVanishes(source);

  const expired = await source.agent.waitForLog('migration lease expired');
  t.like(expired, { vf: 'nvme0', phase: 'lease', owner: 'local', readToEnd: false });
  const cancelled = await source.agent.waitForLog('migration cancelled');
  t.deepEqual(cancelled.path, ['STOP', 'RUNNING_P2P', 'RUNNING']);
  const vf = await source.rpc.call('vf.get', { vf: BDF });
  t.like(vf, { state: 'RUNNING', stranded: false, migration: null, session: null });
  await finishClean(t, guest, 1000);
});

test('a source read to the end whose VMM vanishes stays stopped and stranded; only an explicit resume runs it, and nothing is lost', async (t) => {
  const source = await startSide(t, [vfConfig(tempDir())]);
  const guest = await busyGuest(source.portOf(BDF), 0x57a4d);
  await pauseWithCommandsInFlight(t, guest.workload);
  await source.rpc.call('vf.quiesce', { vf: BDF });
  await saveAll(source.rpc, BDF, 1024 * 1024);
  await vmmVanishes(source);

  const stranded = await source.agent.waitForLog('VF stranded');
  t.like(stranded, { vf: 'nvme0', level: 50, state: 'STOP' });
  t.regex(String(stranded.reason), /read/);
  t.like((await source.rpc.call('vf.list', {})).vfs[0], { id: 'nvme0', state: 'STOP', stranded: true });
  const vf = await source.rpc.call('vf.get', { vf: BDF });
  t.like(vf, { state: 'STOP', stranded: true, session: null, migration: { owner: 'local', role: 'source', readToEnd: true, lease: null } });
  t.regex(vf.migration?.stranded?.reason ?? '', /destination/);
  const check = await strandedCheck(source);
  t.false(check?.ok, 'health says a VF is stranded');
  t.regex(check?.detail ?? '', /nvme0/);
  const renew = await source.rpc.callError('vf.renewLease', { vf: BDF });
  t.like(renew.data, { code: 'NO_MIGRATION', stranded: true, state: 'STOP' });

  // The operator knows the destination never ran it: the source runs on.
  t.deepEqual((await source.rpc.call('vf.resume', { vf: BDF })).path, ['RUNNING_P2P', 'RUNNING']);
  t.like(await strandedCheck(source), { ok: true });
  await finishClean(t, guest, 1000);
});

test('a destination whose VMM vanishes mid-load drops what it received and stays stopped, untouched; the source is cancelled and loses nothing', async (t) => {
  const dir = tempDir();
  const source = await startSide(t, [vfConfig(dir)]);
  const destination = await startSide(t, [vfConfig(dir)]);
  const guest = await busyGuest(source.portOf(BDF), 0xde57);
  await pauseWithCommandsInFlight(t, guest.workload);
  await source.rpc.call('vf.quiesce', { vf: BDF });
  const { slices } = await saveAll(source.rpc, BDF, 509);
  await destination.rpc.call('vf.setState', { vf: BDF, state: 'STOP' });
  await destination.rpc.call('vf.load', { vf: BDF, offset: 0, data: (slices[0] ?? Buffer.alloc(0)).toString('base64') });
  t.is((await destination.rpc.call('vf.get', { vf: BDF })).migration?.role, 'destination');
  await vmmVanishes(destination);

  await destination.agent.waitForLog('resume dropped');
  await destination.agent.waitForLog('destination left stopped');
  const vf = await destination.rpc.call('vf.get', { vf: BDF });
  t.like(vf, { state: 'STOP', stranded: false, session: null, migration: { role: 'destination', applied: false, lease: null, stranded: null } });
  t.is(await destination.portOf(BDF).mmioRead32(0x14), 0, 'CC is still the reset value: nothing of the state was applied');
  t.like((await destination.rpc.callError('vf.renewLease', { vf: BDF })).data, { code: 'NO_MIGRATION', stranded: false });

  // The source's VMM cancels (the source was read to the end: nothing else may run it).
  await source.rpc.call('vf.resume', { vf: BDF });
  await finishClean(t, guest, 1000);
});

test('a migration whose VMM vanishes after the load, before the resume: both sides stay stopped (never both running); the operator runs the destination and nothing is lost', async (t) => {
  const dir = tempDir();
  const source = await startSide(t, [vfConfig(dir)]);
  const destination = await startSide(t, [vfConfig(dir)]);
  const { nvme, workload } = await busyGuest(source.portOf(BDF), 0xb07);
  await pauseWithCommandsInFlight(t, workload);
  await source.rpc.call('vf.quiesce', { vf: BDF });
  const { slices } = await saveAll(source.rpc, BDF, 1024 * 1024);
  await copyGuestMemory(source.portOf(BDF), destination.portOf(BDF), nvme.memoryRegions());
  await destination.rpc.call('vf.setState', { vf: BDF, state: 'STOP' });
  await loadAll(destination.rpc, BDF, slices);
  await destination.rpc.call('vf.setState', { vf: BDF, state: 'STOP' });
  await vmmVanishes(source);
  await vmmVanishes(destination);

  await source.agent.waitForLog('VF stranded');
  const onDestination = await destination.agent.waitForLog('VF stranded');
  t.regex(String(onDestination.reason), /applied/);
  for (const side of [source, destination]) {
    t.like((await side.rpc.call('vf.list', {})).vfs[0], { state: 'STOP', stranded: true });
  }
  t.like((await destination.rpc.call('vf.get', { vf: BDF })).migration, { role: 'destination', applied: true, lease: null });

  t.is((await destination.rpc.call('vf.resume', { vf: BDF })).state, 'RUNNING');
  await nvme.attach(destination.portOf(BDF));
  await finishClean(t, { nvme, workload }, 1000);
  t.like((await source.rpc.call('vf.list', {})).vfs[0], { state: 'STOP', stranded: true }, 'the source stays stopped');
});

test('a lease longer than leases.maxMs is refused before anything happens', async (t) => {
  const source = await startSide(t, [vfConfig(tempDir())], 2000, { leases: { defaultMs: 30_000, maxMs: 60_000 } });
  const refused = await source.rpc.callError('vf.quiesce', { vf: BDF, leaseMs: 60_001 });
  t.like(refused, { code: -32602 });
  t.regex(refused.data?.detail ?? '', /leaseMs.*60000/);
  t.like(await source.rpc.call('vf.get', { vf: BDF }), { state: 'RUNNING', migration: null });
  t.like(await source.rpc.call('vf.quiesce', { vf: BDF, leaseMs: 60_000 }), { state: 'STOP' });
  const vf = await source.rpc.call('vf.get', { vf: BDF });
  t.is(vf.migration?.lease?.leaseMs, 60_000);
  await source.rpc.call('vf.resume', { vf: BDF });
});
