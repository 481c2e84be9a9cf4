/**
 * The device-state stream, version 2: a sequence of records that can be
 * written while the state is still being produced (PRE_COPY) and verified
 * record by record while it arrives, so neither side holds a whole state.
 *
 *   stream   preamble, DESCRIPTOR, (DEVICE_DATA | other)*, END
 *   preamble  0  8  magic "VFMIGST\n" (the v1 envelope's; `version` tells them apart)
 *             8  2  stream version (2), little-endian
 *            10  6  reserved, zero
 *   record    0  4  tag, little-endian
 *             4  4  flags: bit 0 OPTIONAL; the other bits are reserved, zero
 *             8  8  body length B, little-endian
 *            16  B  body
 *          16+B  4  CRC32C of the record's header and body, little-endian
 *
 * A reader skips a record it does not know if it is OPTIONAL, and refuses
 * it as incompatible otherwise (as the mlx5 and virtio streams do), so a
 * newer writer can add information an older reader may ignore. Core tags:
 *   DESCRIPTOR   JSON {format: {name, version, vendor}, identity}: first, once
 *   DEVICE_DATA  a piece of the driver's own byte stream, in order
 *   END          u64 device-data bytes, u32 records before it: last, once;
 *                a record lost whole, or a cut at a record boundary, shows here
 * The v1 envelope (state-envelope.ts) is read through the same interface.
 */
import { crc32c } from '@node-rs/crc32';
import type { DeviceIdentity } from '../../vendor-drivers/driver.ts';
import { Fault } from './faults.ts';
import { announcedLength, decodeEnvelope, HEADER_BYTES as V1_HEADER_BYTES } from './state-envelope.ts';

export const STREAM_VERSION = 2;
export const PREAMBLE_BYTES = 16;
const RECORD_HEADER_BYTES = 16;
const CRC_BYTES = 4;
const MAGIC = Buffer.from('VFMIGST\n', 'latin1');

export const TAG = { DESCRIPTOR: 1, DEVICE_DATA: 2, END: 3 } as const;
export const OPTIONAL = 1;
const KNOWN_FLAGS = OPTIONAL;

/** What a record costs beyond its body. */
export const RECORD_OVERHEAD = RECORD_HEADER_BYTES + CRC_BYTES;
/** A descriptor is a few hundred bytes; a larger one is corruption, not data. */
const MAX_DESCRIPTOR_BYTES = 64 * 1024;
const END_BODY_BYTES = 12;

export interface StreamFormat {
  readonly name: string;
  readonly version: number;
  /** The vendor that defines the format, as a UUID; v1 streams have none. */
  readonly vendor?: string;
}

export interface StreamDescriptor {
  readonly format: StreamFormat;
  readonly identity: DeviceIdentity;
}

export type StreamEvent =
  | { readonly type: 'descriptor'; readonly descriptor: StreamDescriptor }
  /** Device data, as views of the chunks pushed (no copy): valid as long as those are. */
  | { readonly type: 'data'; readonly pieces: readonly Buffer[] }
  | { readonly type: 'end' };

export function encodePreamble(): Buffer {
  const out = Buffer.alloc(PREAMBLE_BYTES);
  MAGIC.copy(out, 0);
  out.writeUInt16LE(STREAM_VERSION, 8);
  return out;
}

/** One record, as the pieces to write in order (the body is not copied). */
export function encodeRecord(tag: number, flags: number, body: Uint8Array): Buffer[] {
  const header = Buffer.allocUnsafe(RECORD_HEADER_BYTES);
  header.writeUInt32LE(tag >>> 0, 0);
  header.writeUInt32LE(flags >>> 0, 4);
  header.writeBigUInt64LE(BigInt(body.length), 8);
  const crc = Buffer.allocUnsafe(CRC_BYTES);
  crc.writeUInt32LE(crc32c(body, crc32c(header)), 0);
  return [header, Buffer.from(body.buffer, body.byteOffset, body.byteLength), crc];
}

/**
 * Writes a stream one record at a time and keeps what the END record
 * must say; the caller sends the pieces on in order.
 */
export class RecordStreamWriter {
  #records = 0;
  #dataBytes = 0;
  #ended = false;

  /** The preamble and the descriptor record: the start of every stream. */
  begin(descriptor: StreamDescriptor): Buffer[] {
    return [encodePreamble(), ...this.#record(TAG.DESCRIPTOR, 0, Buffer.from(JSON.stringify(descriptor), 'utf8'))];
  }

  data(bytes: Uint8Array): Buffer[] {
    this.#dataBytes += bytes.length;
    return this.#record(TAG.DEVICE_DATA, 0, bytes);
  }

  /** A record this core does not define, e.g. a hint an older reader may skip. */
  other(tag: number, flags: number, body: Uint8Array): Buffer[] {
    return this.#record(tag, flags, body);
  }

  end(): Buffer[] {
    const body = Buffer.alloc(END_BODY_BYTES);
    body.writeBigUInt64LE(BigInt(this.#dataBytes), 0);
    body.writeUInt32LE(this.#records, 8);
    const pieces = this.#record(TAG.END, 0, body);
    this.#ended = true;
    return pieces;
  }

  #record(tag: number, flags: number, body: Uint8Array): Buffer[] {
    if (this.#ended) throw new Error('the stream has ended');
    this.#records += 1;
    return encodeRecord(tag, flags, body);
  }
}

/** Where a reader was, to put it back there (see RecordStreamReader.checkpoint). */
export interface ReaderCheckpoint {
  readonly held: readonly Buffer[];
  readonly heldBytes: number;
  readonly need: number;
  readonly phase: RecordStreamReader['phase'];
  readonly version: number;
  readonly records: number;
  readonly dataBytes: number;
  readonly sawDescriptor: boolean;
  readonly consumed: number;
}

export interface ReaderLimits {
  /** The largest record body accepted: a reader holds one record at a time. */
  readonly maxRecordBytes: number;
  /** The largest v1 envelope accepted (read whole: it has no records). */
  readonly maxV1StateBytes: number;
}

/**
 * Reads a stream as it arrives, in chunks of any size, and hands out what
 * each verified record says. Throws a STATE_CORRUPT or STATE_INCOMPATIBLE
 * Fault at the first byte that proves the stream bad; after that the reader
 * is spent.
 */
export class RecordStreamReader {
  readonly #limits: ReaderLimits;
  /** Bytes of the unit being read (preamble, record, or a whole v1 envelope). */
  #held: Buffer[] = [];
  #heldBytes = 0;
  /** How many bytes the unit being read needs in all; 0 until its header says. */
  #need = PREAMBLE_BYTES;
  #phase: 'preamble' | 'record-header' | 'record' | 'v1' | 'ended' = 'preamble';
  #version = 0;
  #records = 0;
  #dataBytes = 0;
  #sawDescriptor = false;
  #consumed = 0;

  constructor(limits: ReaderLimits) {
    this.#limits = limits;
  }

  /** Bytes taken so far. */
  get consumed(): number {
    return this.#consumed;
  }

  get ended(): boolean {
    return this.#phase === 'ended';
  }

  get phase(): 'preamble' | 'record-header' | 'record' | 'v1' | 'ended' {
    return this.#phase;
  }

  /**
   * Where the reader is now, cheaply (the bytes held are shared, never
   * changed): a caller that refuses a whole chunk when any record in it is
   * bad puts the reader back with `restore`, as if the chunk never came.
   */
  checkpoint(): ReaderCheckpoint {
    return {
      held: [...this.#held], heldBytes: this.#heldBytes, need: this.#need, phase: this.#phase, version: this.#version,
      records: this.#records, dataBytes: this.#dataBytes, sawDescriptor: this.#sawDescriptor, consumed: this.#consumed,
    };
  }

  restore(to: ReaderCheckpoint): void {
    this.#held = [...to.held];
    this.#heldBytes = to.heldBytes;
    this.#need = to.need;
    this.#phase = to.phase;
    this.#version = to.version;
    this.#records = to.records;
    this.#dataBytes = to.dataBytes;
    this.#sawDescriptor = to.sawDescriptor;
    this.#consumed = to.consumed;
  }

  push(chunk: Uint8Array): StreamEvent[] {
    const events: StreamEvent[] = [];
    let bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    while (bytes.length > 0) {
      if (this.#phase === 'ended') throw new Fault('STATE_CORRUPT', `state has ${bytes.length} bytes after its end`);
      const take = Math.min(bytes.length, this.#need - this.#heldBytes);
      this.#held.push(bytes.subarray(0, take));
      this.#heldBytes += take;
      this.#consumed += take;
      bytes = bytes.subarray(take);
      if (this.#heldBytes === this.#need) this.#unit(events);
    }
    return events;
  }

  /** The stream is over: throws unless it ended properly. */
  finish(): void {
    if (this.#phase !== 'ended') {
      throw new Fault('STATE_CORRUPT', `state is truncated: ${this.#consumed} bytes, and ${this.#sawDescriptor ? 'no end record' : 'no descriptor'}`);
    }
  }

  /** A whole unit has arrived: act on it. */
  #unit(events: StreamEvent[]): void {
    if (this.#phase === 'record') {
      // A record's body is a megabyte: read through the pieces it came in, never joined.
      this.#record(this.#held, this.#heldBytes, events);
      if (this.#phase === 'record') this.#next('record-header', RECORD_HEADER_BYTES);
      return;
    }
    const unit = join(this.#held);
    switch (this.#phase) {
      case 'preamble':
        this.#preamble(unit);
        return;
      case 'record-header': {
        const length = unit.readBigUInt64LE(8);
        const limit = unit.readUInt32LE(0) === TAG.DESCRIPTOR ? MAX_DESCRIPTOR_BYTES : this.#limits.maxRecordBytes;
        if (length > BigInt(limit)) throw new Fault('STATE_CORRUPT', `record ${this.#records} announces ${length} bytes, more than the ${limit} a record may hold`);
        // Keep the header held: the CRC covers it.
        this.#need = RECORD_HEADER_BYTES + Number(length) + CRC_BYTES;
        this.#phase = 'record';
        return;
      }
      case 'v1':
        this.#v1(unit, events);
        return;
      default:
        throw new Error(`unreachable phase ${this.#phase}`);
    }
  }

  #next(phase: 'record-header' | 'v1', need: number): void {
    this.#held = [];
    this.#heldBytes = 0;
    this.#phase = phase;
    this.#need = need;
  }

  #preamble(unit: Buffer): void {
    if (!unit.subarray(0, MAGIC.length).equals(MAGIC)) throw new Fault('STATE_CORRUPT', 'not a vfmigd device state (bad magic)');
    this.#version = unit.readUInt16LE(8);
    if (this.#version === 1) {
      // A v1 envelope: its header (24 bytes) says its whole length; read it whole.
      this.#phase = 'v1';
      this.#need = V1_HEADER_BYTES;
      return;
    }
    if (this.#version !== STREAM_VERSION) {
      throw new Fault('STATE_INCOMPATIBLE', `state stream version ${this.#version} is not supported (this agent reads 1 and ${STREAM_VERSION})`);
    }
    if (!unit.subarray(10, PREAMBLE_BYTES).equals(Buffer.alloc(PREAMBLE_BYTES - 10))) throw new Fault('STATE_CORRUPT', 'reserved preamble bytes are not zero');
    this.#next('record-header', RECORD_HEADER_BYTES);
  }

  #v1(unit: Buffer, events: StreamEvent[]): void {
    if (unit.length === V1_HEADER_BYTES) {
      const total = announcedLength(unit, this.#limits.maxV1StateBytes);
      if (total > V1_HEADER_BYTES) {
        this.#need = total;
        return;
      }
    }
    const image = decodeEnvelope(unit, this.#limits.maxV1StateBytes);
    events.push({ type: 'descriptor', descriptor: { format: image.format, identity: image.identity } });
    if (image.payload.length > 0) events.push({ type: 'data', pieces: [Buffer.from(image.payload.buffer, image.payload.byteOffset, image.payload.byteLength)] });
    events.push({ type: 'end' });
    this.#held = [];
    this.#heldBytes = 0;
    this.#phase = 'ended';
  }

  #record(pieces: readonly Buffer[], total: number, events: StreamEvent[]): void {
    const index = this.#records;
    const header = join(range(pieces, 0, RECORD_HEADER_BYTES));
    const tag = header.readUInt32LE(0);
    const flags = header.readUInt32LE(4);
    const bodyEnd = total - CRC_BYTES;
    const expected = join(range(pieces, bodyEnd, total)).readUInt32LE(0);
    let actual = 0;
    for (const piece of range(pieces, 0, bodyEnd)) actual = crc32c(piece, actual);
    if (expected !== actual) throw new Fault('STATE_CORRUPT', `record ${index} (tag ${tag}) checksum mismatch (CRC32C ${hex(actual)}, expected ${hex(expected)})`);
    const bodyPieces = range(pieces, RECORD_HEADER_BYTES, bodyEnd);
    const optional = (flags & OPTIONAL) !== 0;
    if (!this.#sawDescriptor && tag !== TAG.DESCRIPTOR) throw new Fault('STATE_CORRUPT', `record ${index} (tag ${tag}) comes before the descriptor`);
    const known = tag === TAG.DESCRIPTOR || tag === TAG.DEVICE_DATA || tag === TAG.END;
    if (!known || (flags & ~KNOWN_FLAGS) !== 0) {
      if (optional) {
        this.#records += 1;
        return;
      }
      throw new Fault('STATE_INCOMPATIBLE', `record ${index} has tag ${tag} and flags ${hex(flags)}, which this agent does not know, and it is mandatory: a newer agent wrote it`);
    }
    switch (tag) {
      case TAG.DESCRIPTOR:
        if (this.#sawDescriptor) throw new Fault('STATE_CORRUPT', `record ${index} is a second descriptor`);
        this.#sawDescriptor = true;
        events.push({ type: 'descriptor', descriptor: parseDescriptor(join(bodyPieces)) });
        break;
      case TAG.DEVICE_DATA:
        this.#dataBytes += bodyEnd - RECORD_HEADER_BYTES;
        if (bodyPieces.length > 0) events.push({ type: 'data', pieces: bodyPieces });
        break;
      default:
        this.#end(join(bodyPieces), index);
        events.push({ type: 'end' });
        return;
    }
    this.#records += 1;
  }

  #end(body: Buffer, index: number): void {
    if (body.length !== END_BODY_BYTES) throw new Fault('STATE_CORRUPT', `the end record has ${body.length} bytes, not ${END_BODY_BYTES}`);
    const dataBytes = body.readBigUInt64LE(0);
    const records = body.readUInt32LE(8);
    if (dataBytes !== BigInt(this.#dataBytes) || records !== index) {
      throw new Fault('STATE_CORRUPT', `the end record counts ${records} records and ${dataBytes} data bytes; ${index} records and ${this.#dataBytes} data bytes came`);
    }
    this.#held = [];
    this.#heldBytes = 0;
    this.#phase = 'ended';
  }
}

/** Views of bytes [from, to) of the concatenation of `pieces`. */
function range(pieces: readonly Buffer[], from: number, to: number): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (const piece of pieces) {
    const end = start + piece.length;
    if (end > from && start < to) out.push(piece.subarray(Math.max(0, from - start), Math.min(piece.length, to - start)));
    if (end >= to) break;
    start = end;
  }
  return out;
}

function join(pieces: readonly Buffer[]): Buffer {
  return pieces.length === 1 ? (pieces[0] as Buffer) : Buffer.concat(pieces);
}

function parseDescriptor(bytes: Buffer): StreamDescriptor {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new Fault('STATE_CORRUPT', 'state descriptor is not valid JSON');
  }
  const format = isRecord(value) ? value.format : undefined;
  const identity = isRecord(value) ? value.identity : undefined;
  if (!isRecord(format) || typeof format.name !== 'string' || !Number.isSafeInteger(format.version)
    || (format.vendor !== undefined && typeof format.vendor !== 'string')
    || !isRecord(identity) || typeof identity.model !== 'string') {
    throw new Fault('STATE_CORRUPT', 'state descriptor lacks format.name, format.version or identity.model');
  }
  return value as unknown as StreamDescriptor;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function hex(n: number): string {
  return `0x${(n >>> 0).toString(16).padStart(8, '0')}`;
}
