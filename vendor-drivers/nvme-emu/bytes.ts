/** Little-endian field access on byte buffers, as NVMe data structures are laid out. */

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();

export function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** 64-bit fields hold addresses and counters below 2^53 here; split into two 32-bit halves. */
export function setU64(dv: DataView, offset: number, value: number): void {
  dv.setUint32(offset, value % 2 ** 32, true);
  dv.setUint32(offset + 4, Math.floor(value / 2 ** 32), true);
}

export function getU64(dv: DataView, offset: number): number {
  return dv.getUint32(offset + 4, true) * 2 ** 32 + dv.getUint32(offset, true);
}

/** ASCII string field, padded with spaces (Identify SN, MN, FR). */
export function putAsciiPadded(bytes: Uint8Array, offset: number, length: number, text: string): void {
  bytes.fill(0x20, offset, offset + length);
  for (let i = 0; i < Math.min(length, text.length); i++) bytes[offset + i] = text.charCodeAt(i) & 0x7f;
}

/** String field padded with NULs (SUBNQN, and strings in the saved state). */
export function putNulPadded(bytes: Uint8Array, offset: number, length: number, text: string): void {
  bytes.fill(0, offset, offset + length);
  bytes.set(utf8Encoder.encode(text).subarray(0, length), offset);
}

export function getNulPadded(bytes: Uint8Array, offset: number, length: number): string {
  const field = bytes.subarray(offset, offset + length);
  const end = field.indexOf(0);
  return utf8Decoder.decode(end < 0 ? field : field.subarray(0, end));
}

export function putHex(bytes: Uint8Array, offset: number, hex: string): void {
  const clean = hex.replace(/-/g, '');
  for (let i = 0; i < clean.length / 2; i++) bytes[offset + i] = Number.parseInt(clean.slice(2 * i, 2 * i + 2), 16);
}

export function getHex(bytes: Uint8Array, offset: number, length: number): string {
  return Buffer.from(bytes.subarray(offset, offset + length)).toString('hex');
}

export function uuidFromHex(hex: string): string {
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}
