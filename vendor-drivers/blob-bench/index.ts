/**
 * blob-bench: a driver for benchmarks. Its VFs do no I/O; each holds a
 * device state of a configured size whose bytes change every time the VF
 * runs, so that moving a large state (an mlx5-sized device) through
 * vf.save/vf.load can be measured and checked byte for byte. It follows the
 * driver contract like any other: saves only when stopped, validates a
 * whole state before applying it, refuses another VF's identity.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { BlobBenchOptions } from '../../schemas/types.ts';
import {
  DriverError, type DeviceIdentity, type DeviceLoadStream, type DeviceSaveStream, type HealthCheck, type RunLevel,
  type RunLevelChange, type StateFormat, type VendorDriver, type VfDescription, type VfDescriptor,
} from '../driver.ts';
import { bufferedSaveStream } from '../buffered-streams.ts';

const FORMAT: StateFormat = { name: 'blob-bench', version: 1 };
const MODEL = 'vfmigd/blob-bench';
/** Header: generation (u64 LE) and SHA-256 of the body; the body follows. */
const HEADER_BYTES = 8 + 32;

interface BlobVf {
  readonly descriptor: VfDescriptor;
  level: RunLevel;
  generation: bigint;
  state: Buffer;
}

export function createBlobBenchDriver(options: BlobBenchOptions): VendorDriver {
  const stateBytes = Math.max(options.stateBytes ?? 1024 * 1024, HEADER_BYTES + 1);
  const vfs = new Map<string, BlobVf>();
  for (let i = 0; i < (options.vfCount ?? 1); i += 1) {
    const devfn = i;
    const bdf = `0000:${(0x5e + (devfn >> 8)).toString(16).padStart(2, '0')}:${((devfn >> 3) & 0x1f).toString(16).padStart(2, '0')}.${devfn & 7}`;
    vfs.set(`blob${i}`, { descriptor: { id: `blob${i}`, bdf, kind: 'blob' }, level: 'running', generation: 0n, state: Buffer.alloc(0) });
  }
  const vfOf = (id: string): BlobVf => vfs.get(id) ?? fail(`no VF ${id}`);
  const identityOf = (vf: BlobVf): DeviceIdentity => ({ model: MODEL, vf: vf.descriptor.id, stateBytes });

  return {
    name: 'blob-bench',
    capabilities: { p2p: options.p2p ?? false, preCopy: false, dirtyTracking: false, hostPort: false },
    stateFormats: [FORMAT],
    async start(_log: Logger): Promise<void> {
      for (const vf of vfs.values()) vf.state = buildState(stateBytes, vf.generation);
    },
    async stop(): Promise<void> {
      for (const vf of vfs.values()) vf.state = Buffer.alloc(0);
    },
    listVfs: () => [...vfs.values()].map((v) => v.descriptor),
    describe(id: string): VfDescription {
      const vf = vfOf(id);
      return { ...vf.descriptor, identity: identityOf(vf), details: { stateBytes } };
    },
    async setRunLevel(id: string, level: RunLevel): Promise<RunLevelChange> {
      const vf = vfOf(id);
      // Running changes the device: the next capture must differ.
      if (level === 'running' && vf.level !== 'running') {
        vf.generation += 1n;
        vf.state = buildState(stateBytes, vf.generation);
      }
      vf.level = level;
      return { drainedCommands: 0 };
    },
    openSave(id: string): DeviceSaveStream {
      const vf = vfOf(id);
      if (vf.level !== 'stopped') fail(`VF ${id} is ${vf.level}; a save needs it stopped`);
      return bufferedSaveStream(vf.state);
    },
    checkIdentity(id: string, identity: DeviceIdentity): void {
      const mine = identityOf(vfOf(id));
      for (const key of ['model', 'stateBytes'] as const) {
        if (identity[key] !== mine[key]) {
          throw new DriverError('incompatible-state', `${key} is ${JSON.stringify(identity[key])} in the state, ${JSON.stringify(mine[key])} here`);
        }
      }
    },
    openLoad(id: string): DeviceLoadStream {
      const vf = vfOf(id);
      if (vf.level !== 'stopped') fail(`VF ${id} is ${vf.level}; a resume needs it stopped`);
      return stagedLoad(stateBytes, (staged) => {
        vf.generation = staged.readBigUInt64LE(0);
        vf.state = staged;
      });
    },
    stopCopyBytes: () => stateBytes,
    async reset(id: string): Promise<void> {
      const vf = vfOf(id);
      vf.generation = 0n;
      vf.state = buildState(stateBytes, 0n);
      vf.level = 'running';
    },
    async health(): Promise<readonly HealthCheck[]> {
      return [{ name: 'blob-bench', ok: true, detail: `${vfs.size} VFs with ${stateBytes}-byte states` }];
    },
  };
}

/**
 * A resume into a staging buffer of the state's size (the device's second
 * bank), written in place as the data comes; at commit the length and the
 * digest are checked and the bank becomes the VF's state.
 */
function stagedLoad(stateBytes: number, apply: (staged: Buffer) => void): DeviceLoadStream {
  let staged: Buffer | undefined = Buffer.allocUnsafe(stateBytes);
  let received = 0;
  const bank = (): Buffer => staged ?? fail('the resume stream is closed');
  return {
    async write(bytes: Uint8Array): Promise<void> {
      if (received + bytes.length > stateBytes) throw new DriverError('corrupt-state', `state is longer than ${stateBytes} bytes`);
      bank().set(bytes, received);
      received += bytes.length;
    },
    async commit(): Promise<void> {
      const payload = bank();
      staged = undefined;
      if (received !== stateBytes) throw new DriverError('corrupt-state', `state is ${received} bytes, expected ${stateBytes}`);
      const digest = createHash('sha256').update(payload.subarray(HEADER_BYTES)).digest();
      if (!digest.equals(payload.subarray(8, HEADER_BYTES))) throw new DriverError('corrupt-state', 'state body does not match its digest');
      apply(payload);
    },
    abort(): void {
      staged = undefined;
    },
  };
}

/** A state whose body is pseudo-random per generation, with its digest in the header. */
function buildState(size: number, generation: bigint): Buffer {
  const state = Buffer.allocUnsafe(size);
  state.writeBigUInt64LE(generation, 0);
  let x = Number(generation & 0xffffffffn) ^ 0x9e3779b9;
  for (let off = HEADER_BYTES; off + 4 <= size; off += 4) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    state.writeInt32LE(x | 0, off);
  }
  for (let off = size - ((size - HEADER_BYTES) % 4); off < size; off += 1) state[off] = 0;
  createHash('sha256').update(state.subarray(HEADER_BYTES)).digest().copy(state, 8);
  return state;
}

function fail(message: string): never {
  throw new DriverError('driver-failure', message);
}
