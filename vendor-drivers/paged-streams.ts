/**
 * Save and load streams for a device whose state is an array of equal
 * pages with dirty tracking: the shape of a device that can save while it
 * runs (PRE_COPY). A save first hands out every page (the initial state),
 * then the pages changed since they were handed out (dirty), again and
 * again while the VF runs; once it is stopped, what is still dirty, and
 * then the end. A resume hands each page to the driver's sink as it
 * arrives, in order (a page sent twice: the later one wins); the sink
 * stages it where the device keeps such things, and applies them all at
 * commit.
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
  /** Writes the page's bytes as they are now into `target` at `offset` (`pageSize` bytes). */
  writePage(index: number, target: Buffer, offset: number): void;
  /** Pages changed since the last call (each at most once), their dirty bits cleared. */
  takeDirty(): number[];
}

/**
 * A save of `state`: every page, then its dirty pages; `running()` says
 * whether the VF runs. The data is a byte stream: page records are cut
 * across reads as the reads' sizes fall. Each page is copied once, from
 * the device into the bytes a read returns.
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
  /** The next page to hand out, or undefined when none is due now. */
  const nextPage = (): number | undefined => {
    carryIsInitial = initialLeft() > 0;
    if (initialLeft() > 0) return nextInitial++;
    const index = dirty.shift();
    if (index !== undefined) queued[index] = 0;
    return index;
  };
  const writeRecord = (index: number, target: Buffer, at: number): void => {
    target.writeUInt32LE(index, at);
    state.writePage(index, target, at + INDEX_BYTES);
  };
  /** Fills `out` from its start with what is due now; returns how much. */
  const fill = (out: Buffer): number => {
    let filled = Math.min(carry.length, out.length);
    carry.copy(out, 0, 0, filled);
    carry = carry.subarray(filled);
    while (filled < out.length) {
      const index = nextPage();
      if (index === undefined) break;
      if (out.length - filled >= recordBytes) {
        writeRecord(index, out, filled);
        filled += recordBytes;
        continue;
      }
      // The last record of this read is cut: the rest waits for the next one.
      const record = Buffer.allocUnsafe(recordBytes);
      writeRecord(index, record, 0);
      const fits = out.length - filled;
      record.copy(out, filled, 0, fits);
      carry = record.subarray(fits);
      filled += fits;
    }
    return filled;
  };
  const due = (): number => carry.length + (initialLeft() + dirty.length) * recordBytes;
  return {
    // Fewer than asked: nothing more now (the end of the data, once the VF is stopped).
    async read(maxBytes: number): Promise<Uint8Array> {
      if (!open) throw new DriverError('driver-failure', 'read from a closed save stream');
      refreshDirty();
      const out = Buffer.allocUnsafe(Math.min(maxBytes, due()));
      return out.subarray(0, fill(out));
    },
    async readInto(target: Buffer): Promise<number> {
      if (!open) throw new DriverError('driver-failure', 'read from a closed save stream');
      refreshDirty();
      return fill(target.length > due() ? target.subarray(0, due()) : target);
    },
    async stopCopyBytes(): Promise<number> {
      refreshDirty();
      return carry.length + (initialLeft() + dirty.length) * recordBytes;
    },
    async precopyInfo(): Promise<PrecopyInfo> {
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

/** Where a resume's pages go: the driver stages them as its device would, and applies them at commit. */
export interface PageSink {
  /** Page `index` as it came (a later one replaces an earlier); may refuse it (`corrupt-state`). The bytes are the caller's. */
  page(index: number, bytes: Buffer): void;
  /** Every page has come at least once: validate the whole, then apply it. */
  commit(): Promise<void> | void;
  /** The resume is over without a commit: drop what was staged. */
  abort(): void;
}

/** A resume of `pageCount` pages of `pageSize` bytes into `sink`, which gets each page whole, however the writes cut them. */
export function pagedLoadStream(pageSize: number, pageCount: number, sink: PageSink): DeviceLoadStream {
  const recordBytes = INDEX_BYTES + pageSize;
  const seen = new Uint8Array(pageCount);
  let seenCount = 0;
  let open = true;
  /** A page record cut by the end of a write. */
  let partial = Buffer.alloc(0);
  const take = (record: Buffer): void => {
    if (!open) fail('the resume stream is closed');
    const index = record.readUInt32LE(0);
    if (index >= pageCount) throw new DriverError('corrupt-state', `page ${index} is past the ${pageCount} pages of this state`);
    sink.page(index, record.subarray(INDEX_BYTES));
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
      if (!open) fail('the resume stream is closed');
      open = false;
      if (partial.length > 0) throw new DriverError('corrupt-state', `the state ends inside a page record (${partial.length} of ${recordBytes} bytes)`);
      if (seenCount !== pageCount) throw new DriverError('corrupt-state', `${pageCount - seenCount} of the ${pageCount} pages never came`);
      await sink.commit();
    },
    abort(): void {
      open = false;
      sink.abort();
    },
  };
}

function fail(message: string): never {
  throw new DriverError('driver-failure', message);
}
