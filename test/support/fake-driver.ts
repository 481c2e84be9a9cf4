/**
 * A vendor driver of one VF, for the migration core's unit tests: its
 * run-level changes can be made to fail or to wait, and its state is a
 * payload the test chooses. The core's own tests use it; the drivers the
 * agent ships are tested through the conformance kit.
 */
import { bufferedLoadStream, bufferedSaveStream } from '../../vendor-drivers/buffered-streams.ts';
import { Fault } from '../../agent/core/faults.ts';
import { RecordStreamWriter } from '../../agent/core/state-records.ts';
import {
  DriverError, type DeviceLoadStream, type DeviceSaveStream, type HostPort, type RunLevel, type RunLevelChange, type VendorDriver,
} from '../../vendor-drivers/driver.ts';

export const FAKE_FORMAT = { name: 'fake', version: 1 };
export const FAKE_IDENTITY = { model: 'vfmigd/fake' };

/** A driver of one VF whose run-level changes can be made to fail or to wait. */
export class FakeDriver implements VendorDriver {
  readonly name = 'fake';
  get capabilities() { return { p2p: true, preCopy: false, dirtyTracking: false, hostPort: this.port !== undefined }; }
  readonly stateFormats = [FAKE_FORMAT];
  level: RunLevel = 'running';
  payload: Buffer = Buffer.from('the device state of the fake VF');
  /** Called before each run-level change; throw from it to refuse that change. */
  onRunLevel: (from: RunLevel, to: RunLevel) => Promise<void> | void = () => undefined;
  port: HostPort | undefined;

  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  listVfs() { return [{ id: 'vf0', bdf: '0000:01:00.1', kind: 'fake' }]; }
  async describe(id: string) { return { id, bdf: '0000:01:00.1', kind: 'fake', identity: FAKE_IDENTITY, details: {} }; }
  async setRunLevel(_id: string, level: RunLevel): Promise<RunLevelChange> {
    await this.onRunLevel(this.level, level);
    this.level = level;
    return { drainedCommands: 0 };
  }
  async openSave(): Promise<DeviceSaveStream> {
    return bufferedSaveStream(Buffer.from(this.payload));
  }
  async checkIdentity(): Promise<void> {}
  async openLoad(): Promise<DeviceLoadStream> {
    return bufferedLoadStream(1 << 20, async (payload) => {
      if (payload.toString().startsWith('bad')) throw new DriverError('corrupt-state', 'the payload says it is bad');
      this.payload = payload;
    });
  }
  async stopCopyBytes(): Promise<number> { return this.payload.length; }
  async reset(): Promise<void> { this.level = 'running'; }
  async health() { return []; }
  hostPort(): HostPort {
    if (this.port === undefined) throw new Error('no host port: capabilities.hostPort is false');
    return this.port;
  }
}

/** The Fault a call was refused with; throws if it succeeded or failed otherwise. */
export async function refusal(promise: Promise<unknown>): Promise<Fault> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof Fault) return error;
    throw error;
  }
  throw new Error('the call succeeded; a refusal was expected');
}

/** The v2 stream a save of the fake VF holding `payload` is. */
export function savedStream(payload: string): Buffer {
  const writer = new RecordStreamWriter();
  return Buffer.concat([...writer.begin({ format: FAKE_FORMAT, identity: FAKE_IDENTITY }), ...writer.data(Buffer.from(payload)), ...writer.end()]);
}
