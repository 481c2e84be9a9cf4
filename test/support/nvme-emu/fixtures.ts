/** Test support only: drivers on temporary namespace files, and helpers around them. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { pino } from 'pino';
import type { NvmeEmuOptions } from '../../../schemas/types.ts';
import type { DeviceIdentity, HostPort, StateFormat, VendorDriver } from '../../../vendor-drivers/driver.ts';
import { createNvmeEmuDriver, type NvmeEmuDriver } from '../../../vendor-drivers/nvme-emu/index.ts';
import { TestGuest } from './test-guest.ts';

export const TEST_NAMESPACE_BYTES = 16 * 1024 * 1024;

export interface Fixture {
  readonly driver: NvmeEmuDriver;
  readonly port: HostPort;
  readonly guest: TestGuest;
  readonly dataDir: string;
  close(): Promise<void>;
}

/** A temporary directory, removed when the test ends. */
export async function tempDir(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'nvme-emu-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** One started driver with one VF (`nvme0`) and its host port; `dataDir` may be shared with a second driver. */
export async function startDriver(options: NvmeEmuOptions = {}, dataDir?: string): Promise<Fixture> {
  const dir = dataDir ?? (await mkdtemp(join(tmpdir(), 'nvme-emu-test-')));
  const driver = createNvmeEmuDriver({ dataDir: dir, vfCount: 1, namespaceBytes: TEST_NAMESPACE_BYTES, hostPort: true, ...options });
  await driver.start(pino({ enabled: false }));
  const port = driver.hostPort('nvme0');
  return {
    driver,
    port,
    guest: new TestGuest(port),
    dataDir: dir,
    close: async () => {
      await driver.stop();
      if (!dataDir) await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A fixture whose guest has enabled the controller and created I/O queue pair 1. */
export async function startWithIoQueue(options: NvmeEmuOptions = {}, dataDir?: string): Promise<Fixture> {
  const fixture = await startDriver(options, dataDir);
  try {
    await fixture.guest.enable();
    await fixture.guest.createIoPair(1);
  } catch (error) {
    // The caller never gets the fixture to tear down: its driver and files go here.
    await fixture.close();
    throw error;
  }
  return fixture;
}

export function farDeadline(ms = 2000): { deadline: number } {
  return { deadline: performance.now() + ms };
}

/** Gives `destination` state of its own (an enabled controller with I/O pair 3) and stops it: a load must replace all of it, or nothing. */
export async function stopWithStateOfItsOwn(destination: Fixture): Promise<void> {
  await destination.guest.enable();
  await destination.guest.createIoPair(3);
  await destination.driver.setRunLevel('nvme0', 'stopped', farDeadline());
}

/** A copy of `payload` with `edit` applied to its bytes. */
export function editedCopy(payload: Uint8Array, edit: (dv: DataView) => void): Uint8Array {
  const copy = payload.slice();
  edit(new DataView(copy.buffer));
  return copy;
}

/** Recomputes the payload's seal, so a test can alter a field and reach the checks behind the checksum. */
export function reseal(payload: Uint8Array): Uint8Array {
  const copy = payload.slice();
  const crc = crc32c(Buffer.from(copy.buffer, 0, copy.length - 4)) >>> 0;
  new DataView(copy.buffer).setUint32(copy.length - 4, crc, true);
  return copy;
}

/** A VF's whole device data, read through a save stream, with what a descriptor would say of it. */
export interface CapturedState {
  readonly format: StateFormat;
  readonly identity: DeviceIdentity;
  readonly payload: Uint8Array;
}

/** Opens a save (the VF stopped) in `format` (default: the driver's first), reads it to its end in odd-sized reads, and closes it. */
export async function captureState(driver: VendorDriver, vf: string, format = driver.stateFormats[0] as StateFormat): Promise<CapturedState> {
  const stream = await driver.openSave(vf, format);
  const pieces: Buffer[] = [];
  try {
    for (;;) {
      const piece = await stream.read(509);
      pieces.push(Buffer.from(piece));
      if (piece.length < 509) break;
    }
  } finally {
    stream.close();
  }
  // A Uint8Array of its own (not a view into a pooled buffer): tests edit it through DataViews.
  return { format, identity: (await driver.describe(vf)).identity, payload: new Uint8Array(Buffer.concat(pieces)) };
}

/** Writes a captured state through a resume stream, in odd-sized pieces, and commits it. */
export async function restoreState(driver: VendorDriver, vf: string, state: CapturedState): Promise<void> {
  const stream = await driver.openLoad(vf, state.format);
  try {
    for (let at = 0; at < state.payload.length; at += 4093) await stream.write(state.payload.subarray(at, at + 4093));
    await stream.commit();
  } catch (error) {
    stream.abort();
    throw error;
  }
}
