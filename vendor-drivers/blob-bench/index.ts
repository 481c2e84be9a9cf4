/**
 * blob-bench: a driver for benchmarks and tests of large states. Its VFs do
 * no I/O; each holds a device state of a configured size, in 4 KiB pages,
 * that keeps changing while the VF runs (at `dirtyBytesPerSecond`, and one
 * page each time it is set running), so that moving a large state (an
 * mlx5-sized device) can be measured, with PRE_COPY (`preCopy`) and
 * without, and checked byte for byte. It follows the driver contract like
 * any other: validates a whole state before applying it, refuses another
 * VF's identity.
 *
 * Every page checks itself: page i at version v holds i and v, then an
 * 8-byte pattern derived from them, repeated to its end. Page 0, the
 * header, holds the page count and two sums over the other pages' (index,
 * version), and a CRC32C: a destination that missed an update (a stale
 * page, well formed but old) fails the sums.
 *
 * A page's bytes follow from its (index, version), so the device keeps
 * only the versions (4 bytes a page) and makes a page's bytes when they are
 * read, as a device's own memory would hand them out: the agent's memory
 * holds no state, whatever its size (a 1 GiB state is 1 MiB of versions).
 * A destination checks every byte of every page it receives against the
 * version the page names (its pattern, and the page as that pattern
 * repeated: one memcmp), and stages only that version until the commit.
 */
import { crc32c } from '@node-rs/crc32';
import type { Logger } from 'pino';
import type { BlobBenchOptions } from '../../schemas/types.ts';
import {
  DriverError, type DeviceIdentity, type DeviceLoadStream, type DeviceSaveStream, type HealthCheck, type RunLevel,
  type RunLevelChange, type StateFormat, type VendorDriver, type VfDescription, type VfDescriptor,
} from '../driver.ts';
import { pagedLoadStream, pagedSaveStream, type PageSink, type PagedState } from '../paged-streams.ts';
import { VFMIGD_VENDOR } from '../nvme-emu/state-format.ts';

/** Version 4: a data page is (index, version) and their pattern to its end (3: with a CRC32C; 2: a xorshift filler; 1: one sealed buffer). */
const FORMAT: StateFormat = { name: 'blob-bench', version: 4, vendor: VFMIGD_VENDOR };
const MODEL = 'vfmigd/blob-bench';
const PAGE_BYTES = 4096;
const MAGIC = 0x424f4c42; // "BLOB"
/** Data page layout: u32 index, u32 version, the 8-byte pattern from byte 8 to the end. Header: the same CRC at its end. */
const PATTERN_AT = 8;
const CRC_AT = PAGE_BYTES - 4;

/** Two independent 32-bit mixes of (index, version): a stale page changes both sums. */
function mixA(index: number, version: number): number {
  let x = Math.imul(index ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(version + 1, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}
function mixB(index: number, version: number): number {
  let x = Math.imul(version ^ 0x7f4a7c15, 0x27d4eb2f) ^ Math.imul(index + 7, 0x165667b1);
  x ^= x >>> 15;
  return x >>> 0;
}

/** The bytes of data page `index` at `version`, into `page` at `at` (memset speed). */
function writeDataPage(page: Buffer, at: number, index: number, version: number): void {
  page.writeUInt32LE(index, at);
  page.writeUInt32LE(version, at + 4);
  page.writeUInt32LE(mixA(index, version), at + PATTERN_AT);
  page.writeUInt32LE(mixB(index, version), at + PATTERN_AT + 4);
  page.copyWithin(at + PATTERN_AT + 8, at + PATTERN_AT, at + PATTERN_AT + 8);
  // Doubling copies: each repeats all the pattern written so far.
  for (let filled = 16; filled < PAGE_BYTES - PATTERN_AT; filled *= 2) {
    page.copyWithin(at + PATTERN_AT + filled, at + PATTERN_AT, at + PATTERN_AT + Math.min(filled, PAGE_BYTES - PATTERN_AT - filled));
  }
}

/** Whether `bytes` are exactly data page `index` at the version it names; that version, or why not. */
function checkDataPage(bytes: Buffer, index: number): number | string {
  const claimed = bytes.readUInt32LE(0);
  if (claimed !== index) return `page ${index} says it is page ${claimed}`;
  const version = bytes.readUInt32LE(4);
  // The pattern of this (index, version), and the page that pattern repeated (byte k equals byte k + 8).
  const repeated = bytes.readUInt32LE(PATTERN_AT) === mixA(index, version) && bytes.readUInt32LE(PATTERN_AT + 4) === mixB(index, version)
    && bytes.compare(bytes, PATTERN_AT + 8, PAGE_BYTES, PATTERN_AT, PAGE_BYTES - 8) === 0;
  return repeated ? version : `page ${index} is not the bytes of its version ${version}`;
}

function writeHeaderPage(page: Buffer, pageCount: number, sumA: number, sumB: number): void {
  page.fill(0);
  page.writeUInt32LE(MAGIC, 0);
  page.writeUInt32LE(pageCount, 4);
  page.writeUInt32LE(sumA, 8);
  page.writeUInt32LE(sumB, 12);
  page.writeUInt32LE(crc32c(page.subarray(0, CRC_AT)), CRC_AT);
}

/** The (index, version) sums the header page carries. */
function sumsOf(versions: Uint32Array): { sumA: number; sumB: number } {
  let sumA = 0;
  let sumB = 0;
  for (let i = 1; i < versions.length; i += 1) {
    const version = versions[i] ?? 0;
    sumA = (sumA + mixA(i, version)) >>> 0;
    sumB = (sumB + mixB(i, version)) >>> 0;
  }
  return { sumA, sumB };
}

/** One VF's state: page versions, the header's sums, dirty bits, and where its dirtying walk is. */
class BlobState implements PagedState {
  readonly pageSize = PAGE_BYTES;
  readonly pageCount: number;
  readonly #versions: Uint32Array;
  readonly #dirty: Uint8Array;
  #dirtyList: number[] = [];
  #sumA: number;
  #sumB: number;
  /** Where the deterministic walk of dirtied pages is. */
  #walk = 1;

  /** A state at version 0 everywhere, or with the versions of a loaded state. */
  constructor(pageCount: number, versions: Uint32Array = new Uint32Array(pageCount)) {
    this.pageCount = pageCount;
    this.#versions = versions;
    this.#dirty = new Uint8Array(pageCount);
    ({ sumA: this.#sumA, sumB: this.#sumB } = sumsOf(versions));
  }

  writePage(index: number, target: Buffer, offset: number): void {
    if (index === 0) writeHeaderPage(target.subarray(offset, offset + PAGE_BYTES), this.pageCount, this.#sumA, this.#sumB);
    else writeDataPage(target, offset, index, this.#versions[index] ?? 0);
  }

  takeDirty(): number[] {
    const taken = this.#dirtyList;
    this.#dirtyList = [];
    for (const index of taken) this.#dirty[index] = 0;
    return taken;
  }

  /** Changes `count` data pages (a deterministic walk over them), and the header with them. */
  touch(count: number): void {
    for (let n = 0; n < count && this.pageCount > 1; n += 1) {
      const index = this.#walk;
      this.#walk = this.#walk + 1 >= this.pageCount ? 1 : this.#walk + 1;
      const old = this.#versions[index] ?? 0;
      const version = (old + 1) >>> 0;
      this.#versions[index] = version;
      this.#sumA = (this.#sumA - mixA(index, old) + mixA(index, version)) >>> 0;
      this.#sumB = (this.#sumB - mixB(index, old) + mixB(index, version)) >>> 0;
      this.#markDirty(index);
    }
    if (count > 0) this.#markDirty(0);
  }

  #markDirty(index: number): void {
    if (this.#dirty[index] === 1) return;
    this.#dirty[index] = 1;
    this.#dirtyList.push(index);
  }
}

/**
 * A resume's staging: the version each page came with, after its bytes
 * were found to be exactly that version's; at commit, the header's sums
 * must be those of the staged versions (no update lost), and only then
 * does the VF take them.
 */
function stagingSink(pageCount: number, apply: (versions: Uint32Array) => void): PageSink {
  let versions: Uint32Array | undefined = new Uint32Array(pageCount);
  let header: { sumA: number; sumB: number } | undefined;
  return {
    page(index: number, bytes: Buffer): void {
      const staged = versions ?? fail('the resume is over');
      if (index === 0) {
        if (bytes.readUInt32LE(CRC_AT) !== crc32c(bytes.subarray(0, CRC_AT))) throw new DriverError('corrupt-state', 'the header page fails its checksum');
        if (bytes.readUInt32LE(0) !== MAGIC || bytes.readUInt32LE(4) !== pageCount) throw new DriverError('corrupt-state', 'the header is not that of this state');
        header = { sumA: bytes.readUInt32LE(8), sumB: bytes.readUInt32LE(12) };
        return;
      }
      const version = checkDataPage(bytes, index);
      if (typeof version === 'string') throw new DriverError('corrupt-state', version);
      staged[index] = version;
    },
    commit(): void {
      const staged = versions ?? fail('the resume is over');
      versions = undefined;
      const sums = sumsOf(staged);
      if (header === undefined || header.sumA !== sums.sumA || header.sumB !== sums.sumB) {
        throw new DriverError('corrupt-state', 'the pages are not the versions the header counts: an update was lost');
      }
      apply(staged);
    },
    abort(): void {
      versions = undefined;
    },
  };
}

interface BlobVf {
  readonly descriptor: VfDescriptor;
  level: RunLevel;
  state: BlobState | undefined;
  /** When dirtying was last brought up to date, and the fraction of a page left over. */
  dirtiedAt: number;
  dirtyCarry: number;
}

export function createBlobBenchDriver(options: BlobBenchOptions): VendorDriver {
  const stateBytes = options.stateBytes ?? 1024 * 1024;
  const pageCount = Math.max(2, Math.ceil(stateBytes / PAGE_BYTES));
  const dirtyBytesPerSecond = options.dirtyBytesPerSecond ?? 0;
  const vfs = new Map<string, BlobVf>();
  for (let i = 0; i < (options.vfCount ?? 1); i += 1) {
    const devfn = i;
    const bdf = `0000:${(0x5e + (devfn >> 8)).toString(16).padStart(2, '0')}:${((devfn >> 3) & 0x1f).toString(16).padStart(2, '0')}.${devfn & 7}`;
    vfs.set(`blob${i}`, { descriptor: { id: `blob${i}`, bdf, kind: 'blob' }, level: 'running', state: undefined, dirtiedAt: 0, dirtyCarry: 0 });
  }
  const vfOf = (id: string): BlobVf => vfs.get(id) ?? fail(`no VF ${id}`);
  const stateOf = (vf: BlobVf): BlobState => vf.state ?? fail(`VF ${vf.descriptor.id}: the driver is not started`);
  const identityOf = (vf: BlobVf): DeviceIdentity => ({ model: MODEL, vf: vf.descriptor.id, stateBytes });
  /** A running VF changes its state at the configured rate: brought up to date whenever the state is looked at. */
  const dirtyUpTo = (vf: BlobVf, now = performance.now()): void => {
    if (vf.level === 'running' && dirtyBytesPerSecond > 0) {
      const pages = ((now - vf.dirtiedAt) / 1000) * (dirtyBytesPerSecond / PAGE_BYTES) + vf.dirtyCarry;
      const whole = Math.floor(pages);
      vf.dirtyCarry = pages - whole;
      stateOf(vf).touch(whole);
    }
    vf.dirtiedAt = now;
  };
  const watched = (vf: BlobVf): PagedState => {
    const state = stateOf(vf);
    return {
      pageSize: state.pageSize,
      pageCount: state.pageCount,
      writePage: (index, target, offset) => state.writePage(index, target, offset),
      takeDirty: () => {
        dirtyUpTo(vf);
        return state.takeDirty();
      },
    };
  };

  return {
    name: 'blob-bench',
    capabilities: { p2p: options.p2p ?? false, preCopy: options.preCopy ?? false, dirtyTracking: false, hostPort: false },
    stateFormats: [FORMAT],
    async start(_log: Logger): Promise<void> {
      for (const vf of vfs.values()) {
        vf.state = new BlobState(pageCount);
        vf.state.takeDirty();
        vf.dirtiedAt = performance.now();
      }
    },
    async stop(): Promise<void> {
      for (const vf of vfs.values()) vf.state = undefined;
    },
    listVfs: () => [...vfs.values()].map((v) => v.descriptor),
    async describe(id: string): Promise<VfDescription> {
      const vf = vfOf(id);
      return { ...vf.descriptor, identity: identityOf(vf), details: { stateBytes: pageCount * PAGE_BYTES, dirtyBytesPerSecond } };
    },
    async setRunLevel(id: string, level: RunLevel): Promise<RunLevelChange> {
      const vf = vfOf(id);
      dirtyUpTo(vf);
      // Running changes the device: the next save must differ.
      if (level === 'running' && vf.level !== 'running') stateOf(vf).touch(1);
      vf.level = level;
      return { drainedCommands: 0 };
    },
    async openSave(id: string): Promise<DeviceSaveStream> {
      const vf = vfOf(id);
      dirtyUpTo(vf);
      // Whatever changed before this save goes out with its first pass.
      stateOf(vf).takeDirty();
      return pagedSaveStream(watched(vf), () => vf.level !== 'stopped');
    },
    async checkIdentity(id: string, identity: DeviceIdentity): Promise<void> {
      const mine = identityOf(vfOf(id));
      for (const key of ['model', 'stateBytes'] as const) {
        if (identity[key] !== mine[key]) {
          throw new DriverError('incompatible-state', `${key} is ${JSON.stringify(identity[key])} in the state, ${JSON.stringify(mine[key])} here`);
        }
      }
    },
    async openLoad(id: string): Promise<DeviceLoadStream> {
      const vf = vfOf(id);
      if (vf.level !== 'stopped') fail(`VF ${id} is ${vf.level}; a resume needs it stopped`);
      return pagedLoadStream(PAGE_BYTES, pageCount, stagingSink(pageCount, (versions) => {
        vf.state = new BlobState(pageCount, versions);
      }));
    },
    stopCopyBytes: async () => pageCount * (PAGE_BYTES + 4),
    async reset(id: string): Promise<void> {
      const vf = vfOf(id);
      vf.state = new BlobState(pageCount);
      vf.level = 'running';
      vf.dirtiedAt = performance.now();
    },
    async health(): Promise<readonly HealthCheck[]> {
      return [{ name: 'blob-bench', ok: true, detail: `${vfs.size} VFs with ${pageCount * PAGE_BYTES}-byte states${options.preCopy ? `, pre-copy, dirtying ${dirtyBytesPerSecond} bytes/s while running` : ''}` }];
    },
  };
}

function fail(message: string): never {
  throw new DriverError('driver-failure', message);
}
