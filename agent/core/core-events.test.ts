/**
 * The events the VF machine emits (schemas/events/), in order, with what
 * each says, for a source's and a destination's migration and for each way
 * a lease ends one. Time is a manual clock, so the downtimes are exact.
 */
import test from 'ava';
import { pino } from 'pino';
import { FakeDriver, refusal, savedStream } from '../../test/support/fake-driver.ts';
import { ManualClock } from '../../test/support/manual-clock.ts';
import { CoreEvents, type CoreEvent } from './core-events.ts';
import { bufferSlice } from './migration-session.ts';
import { VfMachine, type Caller } from './vf-machine.ts';

const LEASE_MS = 1000;
const VMM: Caller = { principal: 'vmm', admin: false };

function rig(): { vf: VfMachine; clock: ManualClock; seen: CoreEvent[] } {
  const clock = new ManualClock();
  const events = new CoreEvents((error) => { throw error; });
  const seen: CoreEvent[] = [];
  events.subscribe((event) => seen.push(event));
  const limits = { maxStateBytes: 1 << 20, maxQueuedCalls: 8, defaultLeaseMs: LEASE_MS, maxLeaseMs: 60 * LEASE_MS };
  const vf = new VfMachine({ id: 'vf0', bdf: '0000:01:00.1', kind: 'fake' }, new FakeDriver(), limits, pino({ enabled: false }), clock, undefined, events);
  return { vf, clock, seen };
}

/** The events as one line each: topic and the fields that tell them apart. */
function digest(events: readonly CoreEvent[]): string[] {
  return events.map((e) => {
    switch (e.topic) {
      case 'vf.stateChanged': return `state ${e.params.from}→${e.params.to}${e.params.stranded ? ' stranded' : ''}`;
      case 'session.progress': return `progress ${e.params.kind} ${e.params.phase} ${e.params.bytes}`;
      case 'session.ended': return `ended ${e.params.kind} ${e.params.outcome} downtime ${e.params.downtimeMs}`;
      case 'lease.expired': return `lease expired in ${e.params.state}: ${e.params.action}`;
      case 'vf.stranded': return `stranded in ${e.params.state}`;
    }
  });
}


test('a source: every state entered, the bytes handed out, and a completed save with the time from the stop to its last byte', async (t) => {
  const { vf, clock, seen } = rig();
  await vf.quiesce(1000, VMM);
  await clock.advance(7);
  const first = await vf.save(10, 0, 1000, VMM);
  await clock.advance(5);
  const rest = await vf.save(1 << 20, first.length, 1000, VMM, first.session);
  t.true(rest.eof);
  await clock.advance(100);
  await vf.setState('STOP', 1000, VMM, rest.session);
  const total = first.length + rest.length;
  t.deepEqual(digest(seen), [
    'state RUNNING→RUNNING_P2P', 'state RUNNING_P2P→STOP', 'state STOP→STOP_COPY',
    'progress save stop-copy 10', `progress save stop-copy ${total}`,
    'ended save completed downtime 12', 'state STOP_COPY→STOP',
  ]);
  const ended = seen.find((e) => e.topic === 'session.ended');
  t.like(ended?.params, { vf: 'vf0', session: first.session, bytes: total, at: new Date(clock.wall()).toISOString() });
});

test('a destination: a completed resume with the time from its last bytes to the state applied (not from its first: they may come in a pre-copy), then RUNNING', async (t) => {
  const { vf, clock, seen } = rig();
  await vf.quiesce(1000, VMM);
  seen.length = 0;
  const incoming = savedStream('a state from elsewhere');
  const first = await vf.load(0, bufferSlice(incoming.subarray(0, 20)), 1000, VMM);
  await clock.advance(4);
  await vf.load(20, bufferSlice(incoming.subarray(20)), 1000, VMM, first.session);
  await clock.advance(3);
  await vf.resume(1000, VMM, first.session);
  t.deepEqual(digest(seen), [
    'state STOP→RESUMING', 'progress resume resuming 20', `progress resume resuming ${incoming.length}`,
    'ended resume completed downtime 3', 'state RESUMING→STOP', 'state STOP→RUNNING_P2P', 'state RUNNING_P2P→RUNNING',
  ]);
});

test('a state refused when RESUMING ends ends its resume as refused; a reset ends a save as cancelled', async (t) => {
  const { vf, seen } = rig();
  await vf.quiesce(1000, VMM);
  // Cut short: refused when RESUMING ends, not on arrival.
  await vf.load(0, bufferSlice(savedStream('a state').subarray(0, 20)), 1000, VMM);
  t.is((await refusal(vf.resume(1000, VMM))).fault, 'STATE_CORRUPT');
  t.true(digest(seen).includes('ended resume refused downtime null'));
  seen.length = 0;
  await vf.save(10, 0, 1000, VMM);
  await vf.reset(VMM);
  t.deepEqual(digest(seen).filter((line) => line.startsWith('ended')), ['ended save cancelled downtime null']);
});

test('leases: a source read in part is cancelled; one read to the end is stranded; a loading destination drops its bytes', async (t) => {
  const part = rig();
  await part.vf.quiesce(1000, VMM);
  await part.vf.save(10, 0, 1000, VMM);
  part.seen.length = 0;
  await part.clock.advance(LEASE_MS);
  t.deepEqual(digest(part.seen), [
    'ended save cancelled downtime null', 'state STOP_COPY→STOP', 'state STOP→RUNNING_P2P', 'state RUNNING_P2P→RUNNING', 'lease expired in STOP_COPY: cancelled',
  ]);

  const whole = rig();
  await whole.vf.quiesce(1000, VMM);
  await whole.vf.save(1 << 20, 0, 1000, VMM);
  whole.seen.length = 0;
  await whole.clock.advance(LEASE_MS);
  t.deepEqual(digest(whole.seen), ['ended save completed downtime 0', 'state STOP_COPY→STOP', 'lease expired in STOP_COPY: stranded', 'stranded in STOP']);

  const loading = rig();
  await loading.vf.quiesce(1000, VMM);
  await loading.vf.load(0, bufferSlice(savedStream('a state').subarray(0, 20)), 1000, VMM);
  loading.seen.length = 0;
  await loading.clock.advance(LEASE_MS);
  t.deepEqual(digest(loading.seen), ['ended resume expired downtime null', 'state RESUMING→STOP', 'lease expired in RESUMING: dropped']);
});

test('a listener that throws is reported and the others still hear the event', (t) => {
  const failures: unknown[] = [];
  const events = new CoreEvents((error) => failures.push(error));
  const heard: string[] = [];
  events.subscribe(() => { throw new Error('broken listener'); });
  const stop = events.subscribe((e) => heard.push(e.topic));
  events.emit('vf.stranded', { vf: 'vf0', state: 'STOP', reason: 'test', at: new Date(0).toISOString() });
  t.deepEqual(heard, ['vf.stranded']);
  t.is(failures.length, 1);
  stop();
  events.emit('vf.stranded', { vf: 'vf0', state: 'STOP', reason: 'test', at: new Date(0).toISOString() });
  t.deepEqual(heard, ['vf.stranded'], 'an unsubscribed listener hears nothing more');
});
