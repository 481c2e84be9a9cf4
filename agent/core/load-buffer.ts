/**
 * Reassembles a state stream written in slices of any size, in order. The
 * envelope header announces the total length, so the buffer is allocated
 * once, at its final size, and bounded by the configured maximum.
 *
 * A slice is taken whole or not at all: a refused slice (a gap, bytes that
 * differ from a retry, a header that is not ours, a stream longer than
 * announced, bytes that do not decode) leaves the buffer exactly as it was,
 * so a refused `vf.load` changes nothing and the session can go on.
 */
import { Fault } from './faults.ts';
import { HEADER_BYTES, announcedLength } from './state-envelope.ts';

/**
 * The bytes of one slice, in whatever form they arrived: written straight
 * into the stream buffer, so a megabyte slice is not first decoded into a
 * buffer of its own and then copied.
 */
export interface SliceSource {
  readonly length: number;
  /** The bytes as a buffer of their own. */
  toBuffer(): Buffer;
  /** Writes the bytes at `target[offset]`; throws, having written nothing that counts, if they turn out invalid. */
  writeTo(target: Buffer, offset: number): void;
}

/** A slice that is already a buffer. */
export function bufferSlice(bytes: Buffer): SliceSource {
  return { length: bytes.length, toBuffer: () => bytes, writeTo: (target, offset) => { bytes.copy(target, offset); } };
}

export class LoadBuffer {
  private readonly maxStateBytes: number;
  /** Bytes before the header has arrived in full. */
  private head: Buffer[] = [];
  private whole: Buffer | undefined;
  private receivedBytes = 0;

  constructor(maxStateBytes: number) {
    this.maxStateBytes = maxStateBytes;
  }

  get received(): number {
    return this.receivedBytes;
  }

  get totalBytes(): number | null {
    return this.whole?.length ?? null;
  }

  get complete(): boolean {
    return this.whole !== undefined && this.receivedBytes === this.whole.length;
  }

  /**
   * Appends `data` at `offset`. A slice that repeats bytes already received
   * (a retried call) is accepted if it matches them; a gap is refused.
   */
  write(offset: number, slice: SliceSource | Buffer): void {
    const data = Buffer.isBuffer(slice) ? bufferSlice(slice) : slice;
    if (offset < this.receivedBytes && offset + data.length <= this.receivedBytes) {
      if (this.matchesReceived(offset, data.toBuffer())) return;
      throw new Fault('STREAM_OFFSET', `slice at offset ${offset} differs from the bytes already received there`, { expected: this.receivedBytes });
    }
    if (offset !== this.receivedBytes) {
      throw new Fault('STREAM_OFFSET', `slice at offset ${offset} does not continue the stream at ${this.receivedBytes}`, { expected: this.receivedBytes });
    }
    if (this.whole === undefined) {
      this.writeHead(data);
      return;
    }
    if (this.receivedBytes + data.length > this.whole.length) {
      throw new Fault('STATE_CORRUPT', `state is overlong: ${this.receivedBytes + data.length} bytes, the header announced ${this.whole.length}`);
    }
    // Bytes a failed writeTo left past receivedBytes do not count: nothing changed.
    data.writeTo(this.whole, this.receivedBytes);
    this.receivedBytes += data.length;
  }

  /** The bytes received so far. */
  contents(): Buffer {
    if (this.whole === undefined) return Buffer.concat(this.head);
    return this.whole.subarray(0, this.receivedBytes);
  }

  /**
   * A slice before the whole header is in. The slice that completes the
   * header is checked with it (ours, within the limit, not overlong) before
   * any of it is kept.
   */
  private writeHead(data: SliceSource): void {
    const bytes = data.toBuffer();
    const received = this.receivedBytes + bytes.length;
    if (received < HEADER_BYTES) {
      this.head.push(bytes);
      this.receivedBytes = received;
      return;
    }
    const head = Buffer.concat([...this.head, bytes]);
    const total = announcedLength(head, this.maxStateBytes);
    if (head.length > total) throw new Fault('STATE_CORRUPT', `state is overlong: ${head.length} bytes, the header announced ${total}`);
    const whole = Buffer.allocUnsafe(total);
    head.copy(whole, 0);
    this.whole = whole;
    this.head = [];
    this.receivedBytes = received;
  }

  private matchesReceived(offset: number, data: Buffer): boolean {
    const received = this.contents();
    return received.subarray(offset, offset + data.length).equals(data);
  }
}
