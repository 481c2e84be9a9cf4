/** nvme-emu against the vendor-driver conformance kit. */
import test from 'ava';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { conformanceSuite, type DriverVf } from '../conformance/conformance-suite.ts';
import type { NvmeEmuOptions } from '../../schemas/types.ts';
import { startDriver, startWithIoQueue, type Fixture } from '../../test/support/nvme-emu/fixtures.ts';
import { DATA, sqe } from '../../test/support/nvme-emu/test-guest.ts';

const READ = 0x02;
/** Commands take this long, so that a quiesce of a millisecond finds them still running. */
const SLOW_US = 200_000;
const fixtures = new WeakMap<DriverVf, Fixture>();

/**
 * A driver with a guest that has enabled the controller and created an I/O
 * queue (the state then has queues to carry); with `serial`, a VF of another
 * identity. `options` are the configuration under test.
 */
function vfOn(dataDir: string, options: NvmeEmuOptions, serial?: string): () => Promise<DriverVf> {
  return async () => {
    const all = { serviceTimeUs: SLOW_US, ...options, ...(serial === undefined ? {} : { vfs: [{ id: 'nvme0', bdf: '0000:3b:00.2', serial, namespaces: [{ path: join(dataDir, 'other.img'), sizeBytes: 16 * 1024 * 1024 }] }] }) };
    const fixture = serial === undefined ? await startWithIoQueue(all, dataDir) : await startDriver(all, dataDir);
    const subject: DriverVf = { driver: fixture.driver, vf: 'nvme0', close: fixture.close };
    fixtures.set(subject, fixture);
    return subject;
  };
}

function fixtureOf(subject: DriverVf): Fixture {
  const fixture = fixtures.get(subject);
  if (fixture === undefined) throw new Error('not a fixture of this file');
  return fixture;
}

/** A read that takes SLOW_US: in flight when a quiesce of a millisecond comes. */
async function busy(subject: DriverVf): Promise<() => Promise<void>> {
  const fixture = fixtureOf(subject);
  fixture.guest.submit(1, sqe({ opcode: READ, cid: 7, nsid: 1, prp1: DATA }));
  await nextTurn();
  return async () => { await fixture.guest.collect(1, 1, 5000); };
}

const dataDir = mkdtempSync(join(tmpdir(), 'nvme-emu-conformance-'));
test.after.always(() => rmSync(dataDir, { recursive: true, force: true }));

/** One command, run to completion: queue pointers and counters move, so the state a pre-copy save holds is stale. */
async function change(subject: DriverVf): Promise<void> {
  const cqe = await fixtureOf(subject).guest.run(1, { opcode: READ, nsid: 1, prp1: DATA });
  if (cqe.status !== 0) throw new Error(`the read failed: status 0x${cqe.status.toString(16)}`);
}

const configurations: [string, NvmeEmuOptions][] = [
  ['nvme-emu', {}],
  // A VF that saves and loads only the NVMe-standard format, as when negotiated down to it.
  ['nvme-emu restricted to the standard format', { stateFormats: ['standard'] }],
  ['nvme-emu with PRE_COPY', { preCopy: true }],
  ['nvme-emu with PRE_COPY, standard format only', { preCopy: true, stateFormats: ['standard'] }],
];

for (const [name, options] of configurations) {
  conformanceSuite(test, name, {
    source: vfOn(dataDir, options),
    destination: vfOn(dataDir, options),
    foreign: vfOn(dataDir, options, 'SOMEONE-ELSE'),
    busy,
    change,
  });
}
