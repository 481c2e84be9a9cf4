/**
 * The conformance kit for vendor drivers: one ava suite that any driver
 * runs against itself, through the agent's own migration core (so that a
 * driver is tested the way the agent uses it), with nothing of the driver
 * mocked. A vendor writes one test file:
 *
 *   import test from 'ava';
 *   import { conformanceSuite } from '../conformance/conformance-suite.ts';
 *   conformanceSuite(test, 'my-driver', { open: async () => ({ ... }), ... });
 *
 * What it checks, on every VF it is given:
 * - every VFIO arc the driver's capabilities allow is carried out, and every
 *   blocked one is refused with the VF as it was;
 * - a save → load round trip, at odd slice sizes on both sides, leaves the
 *   destination holding exactly the device data the source saved;
 * - a truncated stream, a stream with a bad record, device data damaged
 *   behind a valid record checksum, and a state of another identity are
 *   refused, and the destination is as it was;
 * - (when the subject can make its VF busy) a quiesce that times out
 *   changes nothing;
 * - cancelling from every saving state goes back to RUNNING, and the VF
 *   migrates again after it;
 * - stop-copy sizes are exact;
 * - (with PRE_COPY) data flows while the VF runs, the pre-copy information
 *   follows VFIO's rules (initial bytes fall to 0 and stay there, dirty
 *   bytes appear as the device changes, nothing outside PRE_COPY), and the
 *   state loaded after PRE_COPY then STOP_COPY is the source's final state.
 */
import type { TestFn } from 'ava';
import { pino } from 'pino';
import { Fault, type FaultName } from '../../agent/core/faults.ts';
import { bufferSlice, sliceBytes as bytesOf } from '../../agent/core/migration-session.ts';
import { RecordStreamReader, RecordStreamWriter } from '../../agent/core/state-records.ts';
import { VfMachine } from '../../agent/core/vf-machine.ts';
import { routeTo, SAVING_STATES, VFIO_STATES, type MigrationFeatures, type VfioStateName } from '../../agent/core/vfio-states.ts';
import type { VendorDriver } from '../driver.ts';

/** One VF of a started driver; `close` stops what `open` started. */
export interface DriverVf {
  readonly driver: VendorDriver;
  readonly vf: string;
  close(): Promise<void>;
}

export interface ConformanceSubject {
  /** A VF to migrate from, and a VF of the same guest-visible identity to migrate to (another driver instance). */
  readonly source: () => Promise<DriverVf>;
  readonly destination: () => Promise<DriverVf>;
  /** A VF of another identity, whose states the destination must refuse. */
  readonly foreign: () => Promise<DriverVf>;
  /**
   * Puts work in flight on the VF that cannot complete within a millisecond,
   * and returns a function that lets it complete. Absent if the device has
   * no work to drain: the quiesce-timeout case is then not run.
   */
  readonly busy?: (subject: DriverVf) => Promise<() => Promise<void>>;
  /**
   * Makes the running VF's state change, as its guest's work would (a
   * command run to completion, say). Absent if the device changes by itself
   * while it runs. The PRE_COPY case uses it to see dirty data appear.
   */
  readonly change?: (subject: DriverVf) => Promise<void>;
}

const SECOND = 1000;
const LIMITS = { maxStateBytes: 1 << 30, maxQueuedCalls: 8, defaultLeaseMs: 600000, maxLeaseMs: 600000 };

interface Machine {
  readonly machine: VfMachine;
  readonly subject: DriverVf;
}

function machineOf(subject: DriverVf): VfMachine {
  const descriptor = subject.driver.listVfs().find((v) => v.id === subject.vf);
  if (descriptor === undefined) throw new Error(`the driver lists no VF ${subject.vf}`);
  return new VfMachine(descriptor, subject.driver, LIMITS, pino({ enabled: false }));
}

async function opened(t: { teardown(fn: () => Promise<void>): void }, open: () => Promise<DriverVf>): Promise<Machine> {
  const subject = await open();
  t.teardown(() => subject.close());
  return { machine: machineOf(subject), subject };
}

/** The whole save stream, in slices of `sliceBytes`, from a VF in STOP; the VF is left in STOP_COPY. */
async function saveAll(machine: VfMachine, sliceBytes: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (;;) {
    const slice = await machine.save(sliceBytes, undefined, SECOND);
    parts.push(bytesOf(slice));
    if (slice.eof) return Buffer.concat(parts);
  }
}

async function loadAll(machine: VfMachine, stream: Buffer, sliceBytes: number): Promise<void> {
  for (let at = 0; at < stream.length; at += sliceBytes) await machine.load(at, bufferSlice(stream.subarray(at, at + sliceBytes)), SECOND);
}

/** The device data a stream carries (its DEVICE_DATA bodies, joined). */
function deviceData(stream: Buffer): Buffer {
  const reader = new RecordStreamReader({ maxRecordBytes: 1 << 30, maxV1StateBytes: 1 << 30 });
  const events = reader.push(stream);
  reader.finish();
  return Buffer.concat(events.flatMap((e) => (e.type === 'data' ? e.pieces : [])));
}

/** What the VF in STOP saves now; it is left in STOP. */
async function savedData(machine: VfMachine): Promise<Buffer> {
  const stream = await saveAll(machine, 1 << 20);
  await machine.setState('STOP', SECOND);
  return deviceData(stream);
}

async function faultOf(promise: Promise<unknown>): Promise<FaultName | 'none'> {
  try {
    await promise;
    return 'none';
  } catch (error) {
    if (error instanceof Fault) return error.fault;
    throw error;
  }
}

/** A stream rebuilt with its device data changed by `edit`, every record with a valid CRC32C. */
function withData(stream: Buffer, edit: (data: Buffer) => Buffer): Buffer {
  const reader = new RecordStreamReader({ maxRecordBytes: 1 << 30, maxV1StateBytes: 1 << 30 });
  const events = reader.push(stream);
  const writer = new RecordStreamWriter();
  const descriptor = events.find((e) => e.type === 'descriptor');
  if (descriptor?.type !== 'descriptor') throw new Error('no descriptor');
  const data = edit(deviceData(stream));
  return Buffer.concat([...writer.begin(descriptor.descriptor), ...(data.length > 0 ? writer.data(data) : []), ...writer.end()]);
}

/** RUNNING again; a VF left in RESUMING with nothing loaded can only leave it refused, to STOP. */
async function backToRunning(machine: VfMachine): Promise<void> {
  if (machine.state === 'RESUMING' && (await faultOf(machine.setState('STOP', SECOND))) !== 'STATE_CORRUPT') throw new Error('leaving an empty RESUMING was not refused');
  await machine.setState('RUNNING', SECOND);
}

function featuresOf(driver: VendorDriver): MigrationFeatures {
  return { p2p: driver.capabilities.p2p, preCopy: driver.capabilities.preCopy };
}

/** States a VF of these features can be in (RESUMING is entered, and left, by loading a state). */
function reachable(features: MigrationFeatures): VfioStateName[] {
  return VFIO_STATES.filter((s) => s !== 'ERROR' && routeTo('RUNNING', s, features) !== undefined);
}

export function conformanceSuite(test: TestFn, name: string, subject: ConformanceSubject): void {
  test(`${name}: every VFIO arc its capabilities allow is carried out, and every blocked one refused with nothing changed`, async (t) => {
    const { machine, subject: vf } = await opened(t, subject.source);
    const features = featuresOf(vf.driver);
    const states = reachable(features);
    for (const from of states.filter((s) => s !== 'RESUMING')) {
      for (const to of VFIO_STATES) {
        await backToRunning(machine);
        await machine.setState(from, SECOND);
        if (routeTo(from, to, features) === undefined) {
          t.is(await faultOf(machine.setState(to, SECOND)), 'ILLEGAL_TRANSITION', `${from} → ${to} is blocked`);
          t.is(machine.state, from, `${from} → ${to} refused changes nothing`);
        } else {
          t.is((await machine.setState(to, SECOND)).state, to, `${from} → ${to}`);
        }
      }
    }
    // Leaving RESUMING with nothing loaded is refused, and the VF stays stopped as it was.
    await machine.setState('RUNNING', SECOND);
    await machine.setState('RESUMING', SECOND);
    t.is(await faultOf(machine.setState('STOP', SECOND)), 'STATE_CORRUPT');
    t.is(machine.state, 'STOP');
    t.is((await machine.setState('RUNNING', SECOND)).state, 'RUNNING');
  });

  for (const [saveBytes, loadBytes] of [[509, 4093], [4093, 1 << 20], [1 << 20, 509]] as const) {
    test(`${name}: saved in ${saveBytes}-byte slices and loaded in ${loadBytes}-byte slices, the destination holds exactly the device data the source saved`, async (t) => {
      const source = await opened(t, subject.source);
      const destination = await opened(t, subject.destination);
      await source.machine.quiesce(SECOND);
      const estimate = (await source.machine.pending()).stopCopyBytes;
      const stream = await saveAll(source.machine, saveBytes);
      t.is(stream.length, estimate, 'the stop-copy size is exact');
      t.is((await source.machine.pending()).pendingBytes, 0);
      await destination.machine.quiesce(SECOND);
      await loadAll(destination.machine, stream, loadBytes);
      t.is((await destination.machine.setState('STOP', SECOND)).state, 'STOP');
      t.true((await savedData(destination.machine)).equals(deviceData(stream)), 'the destination saves what it was given');
      t.is((await destination.machine.resume(SECOND)).state, 'RUNNING');
      t.is((await source.machine.resume(SECOND)).state, 'RUNNING', 'the source can carry on (a cancelled migration)');
    });
  }

  test(`${name}: truncated, damaged and foreign states are refused, and the destination is as it was`, async (t) => {
    const source = await opened(t, subject.source);
    const destination = await opened(t, subject.destination);
    const foreign = await opened(t, subject.foreign);
    await source.machine.quiesce(SECOND);
    const stream = await saveAll(source.machine, 1 << 20);
    await foreign.machine.quiesce(SECOND);
    const foreignStream = await saveAll(foreign.machine, 1 << 20);
    await destination.machine.quiesce(SECOND);
    const before = await savedData(destination.machine);
    const badRecord = Buffer.from(stream);
    badRecord[stream.length - 40] = (badRecord[stream.length - 40] ?? 0) ^ 0x01;
    const cases: [string, Buffer, readonly FaultName[]][] = [
      ['truncated by one byte', stream.subarray(0, stream.length - 1), ['STATE_CORRUPT']],
      ['cut in half', stream.subarray(0, stream.length >> 1), ['STATE_CORRUPT']],
      ['a record failing its checksum', badRecord, ['STATE_CORRUPT']],
      ['device data damaged behind a valid checksum', withData(stream, (d) => { const c = Buffer.from(d); c[c.length >> 1] = (c[c.length >> 1] ?? 0) ^ 0x10; return c; }), ['STATE_CORRUPT', 'STATE_INCOMPATIBLE']],
      ['device data cut short behind a valid checksum', withData(stream, (d) => d.subarray(0, d.length - 1)), ['STATE_CORRUPT', 'STATE_INCOMPATIBLE']],
      ['device data with a byte too many', withData(stream, (d) => Buffer.concat([d, Buffer.from([0])])), ['STATE_CORRUPT', 'STATE_INCOMPATIBLE']],
      ['a state of another identity', foreignStream, ['STATE_INCOMPATIBLE']],
    ];
    for (const [label, bad, faults] of cases) {
      let fault = await faultOf(loadAll(destination.machine, bad, 4093));
      if (fault === 'none') fault = await faultOf(destination.machine.setState('STOP', SECOND));
      t.true(faults.includes(fault as FaultName), `${label}: ${fault}`);
      if (destination.machine.state === 'RESUMING') t.not(await faultOf(destination.machine.setState('STOP', SECOND)), 'none', `${label}: leaving RESUMING is refused too`);
      t.is(destination.machine.state, 'STOP', label);
      t.true((await savedData(destination.machine)).equals(before), `${label}: the destination is as it was`);
    }
  });

  if (subject.busy !== undefined) {
    const makeBusy = subject.busy;
    test(`${name}: a quiesce that times out changes nothing`, async (t) => {
      const { machine, subject: vf } = await opened(t, subject.source);
      const release = await makeBusy(vf);
      t.is(await faultOf(machine.quiesce(1)), 'QUIESCE_TIMEOUT');
      t.is(machine.state, 'RUNNING');
      await release();
      t.is((await machine.quiesce(SECOND)).state, 'STOP', 'and a later quiesce with time to drain stops it');
      t.is((await machine.resume(SECOND)).state, 'RUNNING');
    });
  }

  test(`${name}: pre-copy information is only for PRE_COPY`, async (t) => {
    const { machine, subject: vf } = await opened(t, subject.source);
    t.is(await faultOf(Promise.resolve().then(() => machine.precopyInfo())), 'NO_SAVE_STREAM', 'not while running without a save');
    await machine.quiesce(SECOND);
    await machine.save(509, undefined, SECOND);
    t.is(await faultOf(Promise.resolve().then(() => machine.precopyInfo())), 'NO_SAVE_STREAM', 'not in STOP_COPY');
    if (!vf.driver.capabilities.preCopy) t.is(await faultOf(machine.setState('PRE_COPY', SECOND)), 'ILLEGAL_TRANSITION', 'PRE_COPY is refused without the capability');
  });

  test(`${name}: cancelling from every saving state goes back to RUNNING, and the VF migrates after it`, async (t) => {
    const source = await opened(t, subject.source);
    const destination = await opened(t, subject.destination);
    const features = featuresOf(source.subject.driver);
    for (const saving of reachable(features).filter((s) => SAVING_STATES.has(s))) {
      await source.machine.setState(saving, SECOND);
      await source.machine.save(509, undefined, SECOND).catch(() => undefined);
      t.is((await source.machine.resume(SECOND)).state, 'RUNNING', `cancelled from ${saving}`);
      t.false((await source.machine.pending()).streamOpen, `${saving}: the save is gone`);
    }
    await source.machine.quiesce(SECOND);
    const stream = await saveAll(source.machine, 4093);
    await destination.machine.quiesce(SECOND);
    await loadAll(destination.machine, stream, 509);
    t.is((await destination.machine.resume(SECOND)).state, 'RUNNING');
  });

  test(`${name}: with PRE_COPY, data flows while the VF runs, the information follows VFIO's rules, and the destination ends with the source's final state`, async (t) => {
    const source = await opened(t, subject.source);
    if (!source.subject.driver.capabilities.preCopy) {
      t.is(await faultOf(source.machine.setState('PRE_COPY', SECOND)), 'ILLEGAL_TRANSITION');
      return;
    }
    const destination = await opened(t, subject.destination);
    await source.machine.setState('PRE_COPY', SECOND);
    const parts: Buffer[] = [];
    let info = await source.machine.precopyInfo();
    t.true(info.initialBytes > 0, 'the initial state is there to read');
    t.is(info.reinit, false);
    // The initial state, while the VF runs: initial bytes fall to 0 and stay there.
    while (info.initialBytes > 0) {
      const slice = await source.machine.save(4093, undefined, SECOND);
      t.false(slice.eof, 'a running VF never ends its stream');
      parts.push(bytesOf(slice));
      const next = await source.machine.precopyInfo();
      t.true(next.initialBytes <= info.initialBytes, 'initial bytes never rise');
      info = next;
    }
    // The device changes while it runs: dirty bytes appear, and reading hands them out.
    if (subject.change !== undefined) await subject.change(source.subject);
    const deadline = Date.now() + 10_000;
    while ((await source.machine.precopyInfo()).dirtyBytes === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 2));
    t.true((await source.machine.precopyInfo()).dirtyBytes > 0, 'the running VF changed its state');
    t.is((await source.machine.precopyInfo()).initialBytes, 0, 'initial bytes stay at 0');
    parts.push(bytesOf(await source.machine.save(1 << 20, undefined, SECOND)));
    // Stop: what is left comes in STOP_COPY, exactly as announced.
    await source.machine.setState('STOP_COPY', SECOND);
    const left = (await source.machine.pending()).pendingBytes;
    let tail = 0;
    for (;;) {
      const slice = await source.machine.save(4093, undefined, SECOND);
      parts.push(bytesOf(slice));
      tail += slice.length;
      if (slice.eof) break;
    }
    t.is(tail, left, 'the stop-copy size was exact');
    const stream = Buffer.concat(parts);
    await destination.machine.quiesce(SECOND);
    await loadAll(destination.machine, stream, 1 << 20);
    t.is((await destination.machine.setState('STOP', SECOND)).state, 'STOP');
    // The source, stopped, saves its final state afresh: the destination must hold the same.
    await source.machine.setState('STOP', SECOND);
    t.true((await savedData(destination.machine)).equals(await savedData(source.machine)), 'the destination holds the source\'s final state');
  });
}

