/**
 * Sequential little-endian writing and bounds-checked reading of binary
 * layouts. A read past the end throws a `corrupt-state` DriverError naming
 * the field, so a truncated payload is reported precisely.
 */
import { DriverError } from '../driver.ts';

export class ByteWriter {
  #bytes: Uint8Array;
  #view: DataView;
  #length = 0;

  constructor(initialCapacity = 256) {
    this.#bytes = new Uint8Array(initialCapacity);
    this.#view = new DataView(this.#bytes.buffer);
  }

  get length(): number {
    return this.#length;
  }

  u8(value: number): this {
    this.#reserve(1).setUint8(this.#length - 1, value);
    return this;
  }

  u16(value: number): this {
    this.#reserve(2).setUint16(this.#length - 2, value, true);
    return this;
  }

  u32(value: number): this {
    this.#reserve(4).setUint32(this.#length - 4, value >>> 0, true);
    return this;
  }

  /** Values below 2^53 (addresses, counters). */
  u64(value: number): this {
    this.u32(value % 2 ** 32);
    return this.u32(Math.floor(value / 2 ** 32));
  }

  bytes(data: Uint8Array): this {
    this.#reserve(data.length);
    this.#bytes.set(data, this.#length - data.length);
    return this;
  }

  zeros(count: number): this {
    this.#reserve(count);
    this.#bytes.fill(0, this.#length - count, this.#length);
    return this;
  }

  padTo(alignment: number): this {
    return this.zeros((alignment - (this.#length % alignment)) % alignment);
  }

  /** Overwrites a u32 written earlier (sizes known only at the end). */
  patchU32(offset: number, value: number): void {
    this.#view.setUint32(offset, value >>> 0, true);
  }

  finish(): Uint8Array {
    return this.#bytes.slice(0, this.#length);
  }

  #reserve(count: number): DataView {
    const needed = this.#length + count;
    if (needed > this.#bytes.length) {
      const grown = new Uint8Array(Math.max(needed, this.#bytes.length * 2));
      grown.set(this.#bytes.subarray(0, this.#length));
      this.#bytes = grown;
      this.#view = new DataView(grown.buffer);
    }
    this.#length = needed;
    return this.#view;
  }
}

export class ByteReader {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  readonly #context: string;
  #offset: number;
  readonly #end: number;

  /** Reads `bytes[start, end)`; `context` names the structure in error messages. */
  constructor(bytes: Uint8Array, context: string, start = 0, end = bytes.length) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#context = context;
    this.#offset = start;
    this.#end = end;
  }

  get offset(): number {
    return this.#offset;
  }

  get remaining(): number {
    return this.#end - this.#offset;
  }

  u8(field: string): number {
    return this.#view.getUint8(this.#take(1, field));
  }

  u16(field: string): number {
    return this.#view.getUint16(this.#take(2, field), true);
  }

  u32(field: string): number {
    return this.#view.getUint32(this.#take(4, field), true);
  }

  /** A 64-bit value; values of 2^53 and more are refused rather than rounded. */
  u64(field: string): number {
    const at = this.#take(8, field);
    const hi = this.#view.getUint32(at + 4, true);
    if (hi >= 2 ** 21) throw corrupt(`${this.#context}: ${field} at byte ${at} does not fit 53 bits`);
    return hi * 2 ** 32 + this.#view.getUint32(at, true);
  }

  bytes(count: number, field: string): Uint8Array {
    const at = this.#take(count, field);
    return this.#bytes.subarray(at, at + count);
  }

  /** Reserved bytes must be zero: anything else is not what this version wrote. */
  reserved(count: number, field: string): void {
    const at = this.#take(count, field);
    if (this.#bytes.subarray(at, at + count).some((b) => b !== 0)) throw corrupt(`${this.#context}: reserved ${field} at byte ${at} is not zero`);
  }

  skipPadding(alignment: number, field: string): void {
    this.reserved((alignment - (this.#offset % alignment)) % alignment, field);
  }

  expectEnd(): void {
    if (this.remaining !== 0) throw corrupt(`${this.#context}: ${this.remaining} unexpected trailing bytes at byte ${this.#offset}`);
  }

  #take(count: number, field: string): number {
    if (this.#offset + count > this.#end) {
      throw corrupt(`${this.#context}: truncated at ${field} (needs ${count} bytes at byte ${this.#offset}, ${this.remaining} left)`);
    }
    const at = this.#offset;
    this.#offset += count;
    return at;
  }
}

export function corrupt(message: string): DriverError {
  return new DriverError('corrupt-state', message);
}
