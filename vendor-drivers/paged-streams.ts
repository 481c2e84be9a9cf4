/**
 * Save and load streams for a device whose state is an array of equal
 * pages with dirty tracking: the shape of a device that can save while it
 * runs (PRE_COPY). A save first hands out every page (the initial state),
 * then the pages changed since they were handed out (dirty), again and
 * again while the VF runs; once it is stopped, what is still dirty, and
 * then the end. A resume takes the pages into a staging copy, in order
 * (a page sent twice: the later one wins), and applies them at commit.
 *
 * The device data is a sequence of page records: u32 page index
 * (little-endian), then the page's bytes.
 */
import { DriverError, type DeviceLoadStream, type DeviceSaveStream, type PrecopyInfo } from './driver.ts';

const INDEX_BYTES = 4;

/** A device's state as pages, with a dirty bit per page. */
export interface PagedState {
  readonly pageSize: number;
  readonly pageCount: number;
  /** The page's bytes now (not to be changed by the caller). */
  page(index: number): Uint8Array;
  /** Pages changed since the last call (each at most once), their dirty bits cleared. */
  takeDirty(): number[];
}

/**
 * A save of `state`: every page, then its dirty pages; `running()` says
 * whether the VF runs. The data is a byte stream: page records are cut
 * across reads as the reads' sizes fall.
 */
export function pagedSaveStream(state: PagedState, running: () => boolean): DeviceSaveStream {
  const recordBytes = INDEX_BYTES + state.pageSize;
  let nextInitial = 0;
  /** Dirty pages taken from the state and not yet handed out, in order, and a flag per page for "queued". */
  const dirty: number[] = [];
  const queued = new Uint8Array(state.pageCount);
  /** The rest of a page record a read cut, and whether that record was one of the initial pass. */
  let carry: Buffer = Buffer.alloc(0);
  let carryIsInitial = false;
  let open = true;
  const initialLeft = (): number => state.pageCount - nextInitial;
  const refreshDirty = (): void => {
    // Pages changed before the initial pass reached them go out with it: they need no second copy.
    for (const index of state.takeDirty()) {
      if (index < nextInitial && queued[index] === 0) {
        queued[index] = 1;
        dirty.push(index);
      }
    }
  };
  const nextRecord = (): Buffer | undefined => {
    let index: number;
    carryIsInitial = initialLeft() > 0;
    if (initialLeft() > 0) {
      index = nextInitial;
      nextInitial += 1;
    } else if (dirty.length > 0) {
      index = dirty.shift() as number;
      queued[index] = 0;
    } else {
      return undefined;
    }
    const record = Buffer.allocUnsafe(recordBytes);
    record.writeUInt32LE(index, 0);
    record.set(state.page(index), INDEX_BYTES);
    return record;
  };
  return {
    async read(maxBytes: number): Promise<Uint8Array> {
      if (!open) throw new DriverError('driver-failure', 'read from a closed save stream');
      refreshDirty();
      const out: Buffer[] = [];
      let filled = 0;
      while (filled < maxBytes) {
        if (carry.length === 0) {
          const record = nextRecord();
          if (record === undefined) break;
          carry = record;
        }
        const piece = carry.subarray(0, maxBytes - filled);
        out.push(piece);
        filled += piece.length;
        carry = carry.subarray(piece.length);
      }
      // Fewer than asked: nothing more now (the end of the data, once the VF is stopped).
      return Buffer.concat(out, filled);
    },
    stopCopyBytes(): number {
      refreshDirty();
      return carry.length + (initialLeft() + dirty.length) * recordBytes;
    },
    precopyInfo(): PrecopyInfo {
      if (!running()) throw new DriverError('driver-failure', 'the VF is stopped: there is no pre-copy information');
      refreshDirty();
      const carried = (initial: boolean): number => (carryIsInitial === initial ? carry.length : 0);
      return { initialBytes: initialLeft() * recordBytes + carried(true), dirtyBytes: dirty.length * recordBytes + carried(false), reinit: false };
    },
    close(): void {
      open = false;
      dirty.length = 0;
    },
  };
}

/**
 * A resume into a staging copy of `pageCount` pages of `pageSize` bytes; at
 * commit, `apply` gets the staged pages whole (it validates them before the
 * VF takes them) and whether every page came.
 */
export function pagedLoadStream(pageSize: number, pageCount: number, apply: (staged: Buffer) => Promise<void> | void): DeviceLoadStream {
  const recordBytes = INDEX_BYTES + pageSize;
  // Every page must come before the commit (counted below), so no byte of this is ever read unwritten.
  let staged: Buffer | undefined = Buffer.allocUnsafe(pageSize * pageCount);
  const seen = new Uint8Array(pageCount);
  let seenCount = 0;
  /** A page record cut by the end of a write. */
  let partial = Buffer.alloc(0);
  const bank = (): Buffer => staged ?? fail('the resume stream is closed');
  const take = (record: Buffer): void => {
    const index = record.readUInt32LE(0);
    if (index >= pageCount) throw new DriverError('corrupt-state', `page ${index} is past the ${pageCount} pages of this state`);
    bank().set(record.subarray(INDEX_BYTES), index * pageSize);
    if (seen[index] === 0) {
      seen[index] = 1;
      seenCount += 1;
    }
  };
  return {
    async write(bytes: Uint8Array): Promise<void> {
      let data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      if (partial.length > 0) {
        const need = recordBytes - partial.length;
        if (data.length < need) {
          partial = Buffer.concat([partial, data]);
          return;
        }
        take(Buffer.concat([partial, data.subarray(0, need)]));
        data = data.subarray(need);
        partial = Buffer.alloc(0);
      }
      let at = 0;
      for (; at + recordBytes <= data.length; at += recordBytes) take(data.subarray(at, at + recordBytes));
      if (at < data.length) partial = Buffer.from(data.subarray(at));
    },
    async commit(): Promise<void> {
      const pages = bank();
      staged = undefined;
      if (partial.length > 0) throw new DriverError('corrupt-state', `the state ends inside a page record (${partial.length} of ${recordBytes} bytes)`);
      if (seenCount !== pageCount) throw new DriverError('corrupt-state', `${pageCount - seenCount} of the ${pageCount} pages never came`);
      await apply(pages);
    },
    abort(): void {
      staged = undefined;
    },
  };
}

function fail(message: string): never {
  throw new DriverError('driver-failure', message);
}
