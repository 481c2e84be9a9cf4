/**
 * A save or a resume of one VF, as an object of its own: the call that
 * opens it returns its id, the calls that continue it may name it, and it
 * knows its owner, its phase and its times. What a session is, is plain
 * data (`SessionInfo`), so that it can be journaled, leased and recovered
 * without reaching into the state machine; the state machine decides when
 * one opens and ends.
 *
 * Both sides stream: a save frames the driver's data into the v2 state
 * stream (state-records.ts) as slices are asked for, and a resume verifies
 * the stream record by record and hands the data to the driver as it
 * arrives. Neither holds more than a record and the last slice (kept so
 * that a slice whose answer was lost can be asked for again).
 */
import { randomUUID } from 'node:crypto';
import { DriverError, type DeviceLoadStream, type DeviceSaveStream, type PrecopyInfo } from '../../vendor-drivers/driver.ts';
import { Fault } from './faults.ts';
import { PREAMBLE_BYTES, RECORD_OVERHEAD, RecordStreamReader, RecordStreamWriter, type ReaderLimits, type StreamDescriptor, type StreamEvent } from './state-records.ts';

export type SessionKind = 'save' | 'resume';
/** Where a session is: saving in STOP_COPY, or resuming. */
export type SessionPhase = 'pre-copy' | 'stop-copy' | 'resuming';

export interface SessionInfo {
  readonly id: string;
  readonly kind: SessionKind;
  readonly vf: string;
  /** The principal whose migration it is. */
  readonly owner: string;
  readonly phase: SessionPhase;
  /** ISO 8601 times. */
  readonly createdAt: string;
  readonly lastActivityAt: string;
  /** Stream bytes handed out (save) or taken in (resume) so far. */
  readonly bytes: number;
}

/**
 * The bytes of one slice, in whatever form they arrived (base64 text is
 * decoded only when the bytes are wanted).
 */
export interface SliceSource {
  readonly length: number;
  /** The bytes, as the pieces they came in (not copied); throws if they turn out invalid. */
  pieces(): readonly Buffer[];
}

/** A slice that is already a buffer. */
export function bufferSlice(bytes: Buffer): SliceSource {
  return { length: bytes.length, pieces: () => [bytes] };
}

/** A slice that came in pieces (an attachment as it was received). */
export function piecesSlice(pieces: readonly Buffer[], length: number): SliceSource {
  return { length, pieces: () => pieces };
}

/** A slice's bytes as one buffer (a copy when it has several pieces). */
export function sliceBytes(slice: { readonly pieces: readonly Buffer[]; readonly length: number }): Buffer {
  return slice.pieces.length === 1 ? (slice.pieces[0] as Buffer) : Buffer.concat(slice.pieces, slice.length);
}

abstract class MigrationSession {
  readonly id: string;
  readonly vf: string;
  readonly owner: string;
  readonly createdAt: number;
  #lastActivityAt: number;
  readonly #now: () => number;

  /** `id`: a new one, or the one a session had before the agent restarted (recovered from the journal). */
  constructor(vf: string, owner: string, now: () => number, id: string = randomUUID()) {
    this.id = id;
    this.vf = vf;
    this.owner = owner;
    this.#now = now;
    this.createdAt = now();
    this.#lastActivityAt = this.createdAt;
  }

  abstract readonly kind: SessionKind;
  abstract readonly phase: SessionPhase;
  abstract readonly bytes: number;
  /** The session is over without finishing: release what the driver holds for it. */
  abstract abandon(): void;

  get lastActivityAt(): number {
    return this.#lastActivityAt;
  }

  /**
   * A call continuing this session: it must name this session, if it names
   * one. A name that is not this one is a session that ended (or one of an
   * agent that has since restarted): going on would mix two streams.
   */
  continueAs(named: string | undefined): void {
    if (named !== undefined && named !== this.id) {
      throw new Fault('SESSION_UNKNOWN', `VF ${this.vf} has no session ${named}; its open ${this.kind} session is ${this.id}`, { session: this.id });
    }
    this.#lastActivityAt = this.#now();
  }

  info(): SessionInfo {
    return {
      id: this.id,
      kind: this.kind,
      vf: this.vf,
      owner: this.owner,
      phase: this.phase,
      createdAt: new Date(this.createdAt).toISOString(),
      lastActivityAt: new Date(this.#lastActivityAt).toISOString(),
      bytes: this.bytes,
    };
  }
}

export interface SaveSlice {
  /**
   * The slice's bytes, as views of the stream's records (not copied). They
   * may live in a buffer the session reuses: valid until `release` is
   * called, which the caller must do once it has sent or copied them.
   */
  readonly pieces: readonly Buffer[];
  /** The caller is done with the bytes (sent, or encoded): idempotent. */
  readonly release: () => void;
  readonly length: number;
  readonly offset: number;
  /** Stream bytes after this slice: exact, since the VF is stopped. */
  readonly remaining: number;
  readonly totalBytes: number;
  readonly eof: boolean;
}

/**
 * Device data per DEVICE_DATA record. Fixed, so that the stream's length
 * follows from the driver's byte count alone, whatever slices callers ask for.
 */
export const RECORD_DATA_BYTES = 1024 * 1024;
/** The end record: its header, 12 bytes of counts, its CRC. */
const END_RECORD_BYTES = RECORD_OVERHEAD + 12;

/** Stream bytes that `dataBytes` of device data still to come will take, the end record included. */
function framedBytes(dataBytes: number): number {
  return dataBytes + Math.ceil(dataBytes / RECORD_DATA_BYTES) * RECORD_OVERHEAD + END_RECORD_BYTES;
}

/** The whole stream a save of `dataBytes` with this descriptor will be: for `vf.pending` before a save opens. */
export function streamBytes(descriptor: StreamDescriptor, dataBytes: number): number {
  return PREAMBLE_BYTES + RECORD_OVERHEAD + Buffer.byteLength(JSON.stringify(descriptor), 'utf8') + framedBytes(dataBytes);
}

/**
 * A buffer the driver reads into (`readInto`), held by the record pieces
 * still queued and by the slices made from it; back in the session's pool
 * once none holds it. Only a buffer that nothing holds is ever read into.
 */
class PooledBuffer {
  readonly bytes = Buffer.allocUnsafe(RECORD_DATA_BYTES);
  holds = 0;
}

/** Free buffers kept for reuse: enough for the slices a VMM keeps in flight, and a few more. */
const POOL_KEPT = 8;

/**
 * A slice as the session keeps it: free to give its buffers back once it
 * is no longer the last slice (which may be asked for again) and every
 * caller it was handed to has released it.
 */
class HeldSlice {
  readonly owners: readonly PooledBuffer[];
  #callers = 0;
  #last = true;
  readonly #free: (owner: PooledBuffer) => void;

  constructor(owners: readonly PooledBuffer[], free: (owner: PooledBuffer) => void) {
    this.owners = owners;
    this.#free = free;
  }

  /** One more caller has the slice; the function it gets lets go of it, once. */
  handOut(): () => void {
    this.#callers += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#callers -= 1;
      this.#settle();
    };
  }

  superseded(): void {
    this.#last = false;
    this.#settle();
  }

  #settle(): void {
    if (this.#last || this.#callers > 0) return;
    for (const owner of this.owners) this.#free(owner);
  }
}

/** The saving side: the driver's data, framed into the state stream as slices are asked for. */
export class SaveSession extends MigrationSession {
  readonly kind = 'save';
  #phase: 'pre-copy' | 'stop-copy';
  /** What the stream says it is. */
  readonly descriptor: StreamDescriptor;
  readonly #device: DeviceSaveStream;
  readonly #writer = new RecordStreamWriter();
  /** Stream bytes made and not yet handed out, in order, with the pooled buffer each lives in (if any). */
  #queued: Buffer[] = [];
  #queuedOwners: (PooledBuffer | undefined)[] = [];
  readonly #pool: PooledBuffer[] = [];
  #queuedBytes = 0;
  /** Of the device data read in PRE_COPY and not yet handed out: how much was initial, and how much dirty. */
  #queuedInitial = 0;
  #queuedDirty = 0;
  #dataEnded = false;
  /** Stream bytes handed out before the next slice. */
  #offset = 0;
  /** The last slice, for a caller whose answer was lost. */
  #last: { slice: Omit<SaveSlice, 'release'>; held: HeldSlice } | undefined;
  /**
   * A session recovered after a restart: the stream is made again from the
   * stopped VF, byte for byte the same, and the caller's first slice may be
   * at any offset in it (where it had reached); what comes before is skipped.
   */
  #resumable: boolean;

  constructor(vf: string, owner: string, descriptor: StreamDescriptor, device: DeviceSaveStream, phase: 'pre-copy' | 'stop-copy' = 'stop-copy', now: () => number = Date.now, recoveredId?: string) {
    super(vf, owner, now, recoveredId);
    this.#resumable = recoveredId !== undefined;
    this.#phase = phase;
    this.descriptor = descriptor;
    this.#device = device;
    this.#queue(this.#writer.begin(descriptor));
  }

  get phase(): 'pre-copy' | 'stop-copy' {
    return this.#phase;
  }

  get bytes(): number {
    return this.#offset;
  }

  /**
   * Stream bytes still to be handed out if the VF stopped now: exact once it
   * has (STOP_COPY), the driver's estimate while it runs (PRE_COPY).
   */
  async pendingBytes(): Promise<number> {
    return this.#queuedBytes + (this.#dataEnded ? 0 : framedBytes(await this.#device.stopCopyBytes()));
  }

  async totalBytes(): Promise<number> {
    return this.#offset + (await this.pendingBytes());
  }

  /**
   * PRE_COPY only: what the driver says it has to hand out now (initial and
   * dirty bytes, and whether it restarted its stream), with the stream
   * bytes already made and not yet handed out counted as initial.
   */
  async precopyInfo(): Promise<PrecopyInfo> {
    if (this.#phase !== 'pre-copy') throw new Fault('NO_SAVE_STREAM', `VF ${this.vf} is saving in STOP_COPY: pre-copy information is for PRE_COPY`);
    const device = await this.#device.precopyInfo();
    return { ...device, initialBytes: device.initialBytes + this.#queuedInitial, dirtyBytes: device.dirtyBytes + this.#queuedDirty };
  }

  /** The VF has stopped (PRE_COPY → STOP_COPY): from now on a short read from the driver is the end of its data. */
  stopped(): void {
    this.#phase = 'stop-copy';
  }

  /**
   * The next `maxBytes` of the stream. `offset` may name where the caller
   * expects it (the next byte), or the start of the last slice, which is
   * then handed out again unchanged; anything else is refused before the
   * stream moves.
   */
  async slice(maxBytes: number, offset: number | undefined): Promise<SaveSlice> {
    if (this.#resumable) {
      this.#resumable = false;
      if (offset !== undefined && offset > this.#offset) await this.#skipTo(offset);
    }
    const last = this.#last;
    if (offset !== undefined && offset !== this.#offset) {
      if (last !== undefined && offset === last.slice.offset) return { ...last.slice, release: last.held.handOut() };
      const again = last === undefined ? '' : ` (or ${last.slice.offset}, to have the last slice again)`;
      throw new Fault('STREAM_OFFSET', `offset ${offset} is not where the save stream is: the next byte is ${this.#offset}${again}`, { expected: this.#offset });
    }
    // While the VF runs, the driver hands out what it has now; once stopped, until its data ends.
    while (this.#queuedBytes < maxBytes && !this.#dataEnded && (await this.#pull())) { /* pulled a full record */ }
    const { pieces, owners, length } = this.#take(maxBytes);
    const start = this.#offset;
    this.#offset += length;
    const remaining = await this.pendingBytes();
    const slice = { pieces, length, offset: start, remaining, totalBytes: this.#offset + remaining, eof: this.#dataEnded && this.#queuedBytes === 0 };
    const held = new HeldSlice(owners, (owner) => this.#unhold(owner));
    // Handed out before the previous slice lets go: a buffer both share is never free in between.
    const release = held.handOut();
    last?.held.superseded();
    this.#last = { slice, held };
    return { ...slice, release };
  }

  /** A recovered session's caller goes on at `offset`: the stream's bytes before it, made again, are dropped. */
  async #skipTo(offset: number): Promise<void> {
    while (this.#offset < offset) {
      while (this.#queuedBytes < offset - this.#offset && !this.#dataEnded && (await this.#pull())) { /* pulled a full record */ }
      const { owners, length } = this.#take(offset - this.#offset);
      for (const owner of owners) this.#unhold(owner);
      if (length === 0) throw new Fault('STREAM_OFFSET', `offset ${offset} is past the end of the stream (${this.#offset} bytes)`, { expected: this.#offset });
      this.#offset += length;
    }
  }

  abandon(): void {
    this.#device.close();
    // Buffers still held by a slice being sent are not taken back: the pool goes with the session.
    this.#pool.length = 0;
  }

  /**
   * One record's worth of data from the driver; true if it was a full one
   * (there may be more). A short read, with the VF stopped, is the end of
   * the data; while it runs, only the end of what there is now.
   */
  async #pull(): Promise<boolean> {
    // A driver hands out its initial state before what changed since (as VFIO's initial_bytes falls first).
    const initialBefore = this.#phase === 'pre-copy' ? (await this.#device.precopyInfo()).initialBytes : 0;
    const { data, owner } = await this.#read();
    const initial = Math.min(data.length, initialBefore);
    this.#queuedInitial += initial;
    this.#queuedDirty += data.length - initial;
    if (data.length > 0) this.#queue(this.#writer.data(data), owner);
    else if (owner !== undefined) this.#unhold(owner);
    if (data.length === RECORD_DATA_BYTES) return true;
    if (this.#phase === 'stop-copy') {
      this.#queue(this.#writer.end());
      this.#dataEnded = true;
      this.#device.close();
    }
    return false;
  }

  /** The driver's next data: into a pooled buffer (held once, for the queue) when it can read into one. */
  async #read(): Promise<{ data: Buffer; owner: PooledBuffer | undefined }> {
    if (this.#device.readInto === undefined) {
      const bytes = await this.#device.read(RECORD_DATA_BYTES);
      return { data: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), owner: undefined };
    }
    const owner = this.#pool.pop() ?? new PooledBuffer();
    owner.holds = 1;
    try {
      const length = await this.#device.readInto(owner.bytes);
      return { data: owner.bytes.subarray(0, length), owner };
    } catch (error) {
      this.#unhold(owner);
      throw error;
    }
  }

  #unhold(owner: PooledBuffer): void {
    owner.holds -= 1;
    if (owner.holds === 0 && this.#pool.length < POOL_KEPT) this.#pool.push(owner);
  }

  /** Queues a record's pieces; the one of them that is `owner`'s data (the body) keeps the hold `#read` took. */
  #queue(pieces: Buffer[], owner?: PooledBuffer): void {
    for (const piece of pieces) {
      const inOwner = owner !== undefined && piece.buffer === owner.bytes.buffer;
      if (piece.length > 0) {
        this.#queued.push(piece);
        this.#queuedOwners.push(inOwner ? owner : undefined);
      }
      this.#queuedBytes += piece.length;
    }
  }

  #take(maxBytes: number): { pieces: Buffer[]; owners: PooledBuffer[]; length: number } {
    const parts: Buffer[] = [];
    const owners: PooledBuffer[] = [];
    const hold = (owner: PooledBuffer | undefined): void => {
      if (owner === undefined || owners.includes(owner)) return;
      owner.holds += 1;
      owners.push(owner);
    };
    let taken = 0;
    while (taken < maxBytes && this.#queued.length > 0) {
      const head = this.#queued[0] as Buffer;
      const owner = this.#queuedOwners[0];
      const want = maxBytes - taken;
      hold(owner);
      if (head.length <= want) {
        parts.push(head);
        taken += head.length;
        this.#queued.shift();
        this.#queuedOwners.shift();
        // The queue's hold goes: the slice holds the buffer now.
        if (owner !== undefined) this.#unhold(owner);
      } else {
        parts.push(head.subarray(0, want));
        this.#queued[0] = head.subarray(want);
        taken += want;
      }
    }
    this.#queuedBytes -= taken;
    // What is handed out counts against the initial data first (the framing is not counted apart).
    const initial = Math.min(taken, this.#queuedInitial);
    this.#queuedInitial -= initial;
    this.#queuedDirty = Math.max(0, this.#queuedDirty - (taken - initial));
    // Views, not a copy: a pooled buffer is not read into again while a slice holds it.
    return { pieces: parts, owners, length: taken };
  }
}

export interface LoadProgress {
  readonly received: number;
  /** The stream's length, once its end has arrived. */
  readonly totalBytes: number | null;
  readonly complete: boolean;
}

/**
 * What a resume needs of the state machine when the stream's descriptor
 * arrives: its checks of format and identity (one place, the core's), and
 * the driver's stream to write into.
 */
export type OpenDeviceLoad = (descriptor: StreamDescriptor) => Promise<DeviceLoadStream>;

/** The resuming side: the state stream, verified record by record and handed to the driver as it arrives. */
export class ResumeSession extends MigrationSession {
  readonly kind = 'resume';
  readonly phase = 'resuming';
  readonly #reader: RecordStreamReader;
  readonly #openDevice: OpenDeviceLoad;
  #device: DeviceLoadStream | undefined;
  #received = 0;
  #ended = false;
  /** Set once the driver refused data it was given: the stream cannot go on. */
  #refused: Fault | undefined;
  /** The last slice taken, so that the same slice sent again (its answer lost) is taken as done. */
  #last: { offset: number; pieces: readonly Buffer[]; length: number } | undefined;

  constructor(vf: string, owner: string, limits: ReaderLimits, openDevice: OpenDeviceLoad, now: () => number = Date.now) {
    super(vf, owner, now);
    this.#reader = new RecordStreamReader(limits);
    this.#openDevice = openDevice;
  }

  get bytes(): number {
    return this.#received;
  }

  get progress(): LoadProgress {
    return { received: this.#received, totalBytes: this.#ended ? this.#received : null, complete: this.#ended };
  }

  /**
   * Takes the slice at `offset`. A slice that does not continue the stream
   * is refused; so is one with a bad record in it, and then nothing of it
   * was taken: the reader is put back and no byte of it reached the driver.
   */
  async write(offset: number, pieces: readonly Buffer[]): Promise<LoadProgress> {
    if (this.#refused !== undefined) throw this.#refused;
    const last = this.#last;
    const length = pieces.reduce((n, p) => n + p.length, 0);
    if (offset !== this.#received) {
      if (last !== undefined && offset === last.offset && length === last.length && sliceBytes({ pieces, length }).equals(sliceBytes(last))) return this.progress;
      throw new Fault('STREAM_OFFSET', `slice at offset ${offset} does not continue the stream at ${this.#received}`, { expected: this.#received });
    }
    const checkpoint = this.#reader.checkpoint();
    const events: StreamEvent[] = [];
    try {
      for (const piece of pieces) events.push(...this.#reader.push(piece));
      await this.#openOnDescriptor(events);
    } catch (error) {
      this.#reader.restore(checkpoint);
      throw error;
    }
    try {
      for (const event of events) {
        if (event.type === 'data') for (const piece of event.pieces) await (this.#device as DeviceLoadStream).write(piece);
        if (event.type === 'end') this.#ended = true;
      }
    } catch (error) {
      // Part of the slice reached the driver: there is no going back to before it.
      const kind = error instanceof DriverError && error.kind === 'incompatible-state' ? 'STATE_INCOMPATIBLE' : 'STATE_CORRUPT';
      this.#refused = new Fault(kind, `the driver refused the state at stream offset ${offset}: ${error instanceof Error ? error.message : String(error)}; this resume session cannot go on`, {}, { cause: error });
      throw error;
    }
    this.#received += length;
    this.#last = { offset, pieces, length };
    return this.progress;
  }

  /** The stream is in: the driver validates it whole and applies it. */
  async commit(): Promise<void> {
    if (this.#refused !== undefined) throw this.#refused;
    if (this.#received === 0) throw new Fault('STATE_CORRUPT', 'no state was loaded');
    this.#reader.finish();
    const device = this.#device as DeviceLoadStream;
    this.#device = undefined;
    await device.commit();
  }

  abandon(): void {
    this.#device?.abort();
    this.#device = undefined;
  }

  async #openOnDescriptor(events: readonly StreamEvent[]): Promise<void> {
    const descriptor = events.find((e) => e.type === 'descriptor');
    if (descriptor !== undefined && descriptor.type === 'descriptor') this.#device = await this.#openDevice(descriptor.descriptor);
  }
}
