/**
 * Leases on migrations, on a clock the tests move by hand: what extends a
 * lease, and what its expiry does in each case the issue names (a source
 * not read to the end runs again; one read to the end, or a destination
 * that applied a state, is stranded; a destination that was loading drops
 * what it received and stays stopped), and that a stranded VF is only
 * moved by an explicit call.
 */
import test from 'ava';
import { pino } from 'pino';
import { FakeDriver, refusal, savedStream } from '../../test/support/fake-driver.ts';
import { DriverError } from '../../vendor-drivers/driver.ts';
import { ManualClock, settle } from '../../test/support/manual-clock.ts';
import { bufferSlice } from './migration-session.ts';
import { VfMachine, type Caller } from './vf-machine.ts';

const LEASE_MS = 1000;
const VMM: Caller = { principal: 'vmm', admin: false };
const OTHER: Caller = { principal: 'someone-else', admin: false };
const OPERATOR: Caller = { principal: 'operator', admin: true };

function rig(): { vf: VfMachine; driver: FakeDriver; clock: ManualClock } {
  const clock = new ManualClock();
  const driver = new FakeDriver();
  const limits = { maxStateBytes: 1 << 20, maxQueuedCalls: 8, defaultLeaseMs: LEASE_MS, maxLeaseMs: 60 * LEASE_MS };
  const vf = new VfMachine({ id: 'vf0', bdf: '0000:01:00.1', kind: 'fake' }, driver, limits, pino({ enabled: false }), clock);
  return { vf, driver, clock };
}


test('a quiesced source whose VMM makes no call for the lease runs again: the migration is cancelled', async (t) => {
  const { vf, driver, clock } = rig();
  await vf.quiesce(1000, VMM);
  t.is(vf.state, 'STOP');
  t.like(vf.migrationInfo, { owner: 'vmm', role: 'source', readToEnd: false, lease: { leaseMs: LEASE_MS } });
  await clock.advance(LEASE_MS - 1);
  t.is(vf.state, 'STOP', 'not before the deadline');
  await clock.advance(1);
  t.is(vf.state, 'RUNNING');
  t.is(driver.level, 'running');
  t.is(vf.migrationInfo, undefined, 'the migration is over: nobody owns the VF');
  t.false(vf.stranded);
});

test('every call of the owner extends the lease, and so does a poll; another principal\'s refused call does not', async (t) => {
  const { vf, clock } = rig();
  await vf.quiesce(1000, VMM);
  await clock.advance(800);
  await vf.renewLease(VMM);
  await clock.advance(800);
  vf.touch('vmm');
  await clock.advance(800);
  await vf.setState('STOP', 1000, VMM);
  await clock.advance(800);
  const refused = await refusal(vf.renewLease(OTHER));
  t.is(refused.fault, 'NOT_SESSION_OWNER');
  vf.touch('someone-else');
  t.is(vf.state, 'STOP', 'alive after 3.2 leases of calls');
  await clock.advance(200);
  t.is(vf.state, 'RUNNING', 'the owner\'s last call was a lease ago');
});

test('a caller may ask for a longer or a shorter lease; the renewed lease says when it expires', async (t) => {
  const { vf, clock } = rig();
  await vf.quiesce(1000, { ...VMM, leaseMs: 10 * LEASE_MS });
  await clock.advance(9 * LEASE_MS);
  t.is(vf.state, 'STOP');
  const renewed = await vf.renewLease({ ...VMM, leaseMs: 100 });
  t.deepEqual(renewed, { state: 'STOP', leaseMs: 100, expiresAt: new Date(clock.wall() + 100).toISOString() });
  await clock.advance(100);
  t.is(vf.state, 'RUNNING');
});

test('a source read only in part runs again when its lease expires: its save session ends', async (t) => {
  const { vf, clock } = rig();
  await vf.quiesce(1000, VMM);
  const first = await vf.save(10, 0, 1000, VMM);
  t.false(first.eof);
  t.is(vf.state, 'STOP_COPY');
  await clock.advance(LEASE_MS);
  t.is(vf.state, 'RUNNING');
  t.is(vf.sessionInfo, undefined);
  const gone = await refusal(vf.save(10, first.length, 1000, VMM, first.session));
  t.is(gone.fault, 'SESSION_UNKNOWN', 'the session the VMM had is gone, and says so');
});

test('a source read to the end is stranded when its lease expires: stopped, reported, and moved only by an explicit call', async (t) => {
  const { vf, driver, clock } = rig();
  await vf.quiesce(1000, VMM);
  const slice = await vf.save(1 << 20, 0, 1000, VMM);
  t.true(slice.eof);
  t.true(vf.migrationInfo?.readToEnd);
  await clock.advance(LEASE_MS);
  t.is(vf.state, 'STOP', 'never resumed: the destination may run it');
  t.is(driver.level, 'stopped');
  t.true(vf.stranded);
  t.like(vf.migrationInfo, { owner: 'vmm', lease: null, stranded: { since: new Date(clock.wall()).toISOString() } });
  const renew = await refusal(vf.renewLease(VMM));
  t.is(renew.fault, 'NO_MIGRATION');
  t.is(renew.details.stranded, true);
  await clock.advance(100 * LEASE_MS);
  t.is(vf.state, 'STOP', 'time alone never moves a stranded VF');
  // Someone who is neither the owner nor an admin cannot say which side runs.
  t.is((await refusal(vf.resume(1000, OTHER))).fault, 'NOT_SESSION_OWNER');
  await vf.resume(1000, OPERATOR);
  t.is(vf.state, 'RUNNING');
  t.false(vf.stranded);
  t.is(vf.migrationInfo, undefined);
});

test('a stranded VF that a call moves is under a lease again, and still remembers its state left', async (t) => {
  const { vf, clock } = rig();
  await vf.quiesce(1000, VMM);
  await vf.save(1 << 20, 0, 1000, VMM);
  await clock.advance(LEASE_MS);
  t.true(vf.stranded);
  await vf.setState('STOP', 1000, VMM);
  t.true(vf.stranded, 'a call that moves nothing changes nothing');
  await vf.save(1 << 20, 0, 1000, VMM);
  t.false(vf.stranded);
  t.like(vf.migrationInfo, { readToEnd: true, lease: { leaseMs: LEASE_MS } });
  await clock.advance(LEASE_MS);
  t.true(vf.stranded, 'read to the end before: stranded again, never resumed');
  t.is(vf.state, 'STOP');
});

test('a destination that was loading drops what it received and stays stopped; nothing more happens to it', async (t) => {
  const { vf, driver, clock } = rig();
  const before = driver.payload.toString();
  await vf.quiesce(1000, VMM);
  const incoming = savedStream('a state from elsewhere');
  await vf.load(0, bufferSlice(incoming.subarray(0, 20)), 1000, VMM);
  t.is(vf.state, 'RESUMING');
  t.is(vf.migrationInfo?.role, 'destination');
  await clock.advance(LEASE_MS);
  t.is(vf.state, 'STOP');
  t.is(vf.sessionInfo, undefined, 'the received bytes are dropped');
  t.false(vf.stranded);
  t.like(vf.migrationInfo, { role: 'destination', lease: null, stranded: null });
  t.is(driver.payload.toString(), before, 'nothing was applied');
  await clock.advance(100 * LEASE_MS);
  t.is(vf.state, 'STOP');
  t.is((await refusal(vf.renewLease(VMM))).fault, 'NO_MIGRATION');
});

test('a destination that applied a state is stranded when its lease expires: it may be the only copy', async (t) => {
  const { vf, driver, clock } = rig();
  await vf.quiesce(1000, VMM);
  await vf.load(0, bufferSlice(savedStream('the migrated state')), 1000, VMM);
  await vf.setState('STOP', 1000, VMM);
  t.is(driver.payload.toString(), 'the migrated state');
  t.like(vf.migrationInfo, { role: 'destination', applied: true });
  await clock.advance(LEASE_MS);
  t.is(vf.state, 'STOP');
  t.true(vf.stranded);
  await vf.resume(1000, VMM);
  t.is(vf.state, 'RUNNING');
  t.is(driver.payload.toString(), 'the migrated state');
});

test('a refused load does not make a destination: the quiesced source still runs again at expiry', async (t) => {
  const { vf, clock } = rig();
  await vf.quiesce(1000, VMM);
  const refused = await refusal(vf.load(0, bufferSlice(Buffer.from('not a state stream at all')), 1000, VMM));
  t.is(refused.fault, 'STATE_CORRUPT');
  t.is(vf.state, 'STOP');
  t.is(vf.migrationInfo?.role, 'source');
  await clock.advance(LEASE_MS);
  t.is(vf.state, 'RUNNING');
});

test('a lease that expires while a call of its migration runs waits for it, and the call extends it', async (t) => {
  const { vf, driver, clock } = rig();
  await vf.quiesce(1000, VMM);
  let open!: () => void;
  const gate = new Promise<void>((resolve) => { open = resolve; });
  driver.onRunLevel = () => gate;
  const call = vf.setState('RUNNING_P2P', 1000, VMM);
  await clock.advance(LEASE_MS);
  t.is(vf.state, 'STOP', 'the expiry waits behind the call');
  open();
  await call;
  await settle();
  driver.onRunLevel = () => undefined;
  t.is(vf.state, 'RUNNING_P2P', 'the call, finished after the deadline, renewed the lease');
  await clock.advance(LEASE_MS);
  t.is(vf.state, 'RUNNING');
});

test('a VF in ERROR has no lease (only a reset leaves ERROR); a running VF has none to renew', async (t) => {
  const { vf, driver, clock } = rig();
  t.is((await refusal(vf.renewLease(VMM))).fault, 'NO_MIGRATION');
  await vf.quiesce(1000, VMM);
  driver.onRunLevel = () => { throw new Error('the device stopped answering'); };
  t.is((await refusal(vf.setState('RUNNING', 1000, VMM))).fault, 'DRIVER_FAILURE');
  t.is(vf.state, 'ERROR');
  t.is(vf.migrationInfo?.lease, null);
  await clock.advance(10 * LEASE_MS);
  t.is(vf.state, 'ERROR');
  driver.onRunLevel = () => undefined;
  await vf.reset(VMM);
  t.is(vf.state, 'RUNNING');
  t.is(vf.migrationInfo, undefined);
});

test('a cancel that the device does not answer is tried again a lease later, and the VF runs once the device answers', async (t) => {
  const { vf, driver, clock } = rig();
  await vf.quiesce(1000, VMM);
  driver.onRunLevel = () => { throw new DriverError('device-unreachable', 'the device process did not answer'); };
  await clock.advance(LEASE_MS);
  t.is(vf.state, 'STOP', 'not cancelled: the device did not answer');
  t.like(vf.migrationInfo, { lease: { leaseMs: LEASE_MS }, stranded: null });
  driver.onRunLevel = () => undefined;
  await clock.advance(LEASE_MS);
  t.is(vf.state, 'RUNNING');
  t.is(driver.level, 'running');
});
