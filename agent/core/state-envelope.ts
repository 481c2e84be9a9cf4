/**
 * The v1 device-state stream: one self-describing envelope around a whole
 * state image. Agents now write v2 streams (state-records.ts) and still
 * read this one; `encodeEnvelope` remains for tests that make v1 states.
 *
 *   offset  size  field
 *        0     8  magic "VFMIGST\n"
 *        8     2  envelope version (1), little-endian
 *       10     2  reserved, zero
 *       12     4  descriptor length D, little-endian
 *       16     8  payload length P, little-endian
 *       24     D  descriptor: UTF-8 JSON {format, formatVersion, identity}
 *   24 + D     P  payload (the driver's state image)
 *   24+D+P     4  CRC32C of every byte before it, little-endian
 */
import { crc32c } from '@node-rs/crc32';
import type { DeviceIdentity, StateFormat } from '../../vendor-drivers/driver.ts';
import { Fault } from './faults.ts';

const MAGIC = Buffer.from('VFMIGST\n', 'latin1');
const ENVELOPE_VERSION = 1;
export const HEADER_BYTES = 24;
const CRC_BYTES = 4;
/** A descriptor is a few hundred bytes; a larger one is corruption, not data. */
const MAX_DESCRIPTOR_BYTES = 64 * 1024;

/** What a v1 envelope carries: the state was one image. */
export interface StateImage {
  readonly format: StateFormat;
  readonly identity: DeviceIdentity;
  readonly payload: Uint8Array;
}

interface Descriptor {
  format: string;
  formatVersion: number;
  identity: DeviceIdentity;
}

/** Wraps a state image; the result is the byte stream `vf.save` hands out. */
export function encodeEnvelope(image: StateImage): Buffer {
  const descriptor: Descriptor = { format: image.format.name, formatVersion: image.format.version, identity: image.identity };
  const descriptorBytes = Buffer.from(JSON.stringify(descriptor), 'utf8');
  const total = HEADER_BYTES + descriptorBytes.length + image.payload.length + CRC_BYTES;
  const out = Buffer.allocUnsafe(total);
  MAGIC.copy(out, 0);
  out.writeUInt16LE(ENVELOPE_VERSION, 8);
  out.writeUInt16LE(0, 10);
  out.writeUInt32LE(descriptorBytes.length, 12);
  out.writeBigUInt64LE(BigInt(image.payload.length), 16);
  descriptorBytes.copy(out, HEADER_BYTES);
  out.set(image.payload, HEADER_BYTES + descriptorBytes.length);
  out.writeUInt32LE(crc32c(out.subarray(0, total - CRC_BYTES)), total - CRC_BYTES);
  return out;
}

/** Bytes the envelope adds around a payload whose descriptor is `descriptorBytes` long. */
export function envelopeOverhead(identity: DeviceIdentity, format: { name: string; version: number }): number {
  const descriptor: Descriptor = { format: format.name, formatVersion: format.version, identity };
  return HEADER_BYTES + Buffer.byteLength(JSON.stringify(descriptor), 'utf8') + CRC_BYTES;
}

/**
 * The total stream length announced by a header, once at least
 * HEADER_BYTES have arrived; refuses a header that is not ours.
 */
export function announcedLength(header: Buffer, maxStateBytes: number): number {
  if (!header.subarray(0, 8).equals(MAGIC)) throw new Fault('STATE_CORRUPT', 'not a vfmigd device state (bad magic)');
  const version = header.readUInt16LE(8);
  if (version !== ENVELOPE_VERSION) {
    throw new Fault('STATE_INCOMPATIBLE', `state envelope version ${version} is not supported (this agent reads ${ENVELOPE_VERSION})`);
  }
  const descriptorLength = header.readUInt32LE(12);
  if (descriptorLength === 0 || descriptorLength > MAX_DESCRIPTOR_BYTES) {
    throw new Fault('STATE_CORRUPT', `state descriptor length ${descriptorLength} is out of range`);
  }
  const payloadLength = header.readBigUInt64LE(16);
  const total = BigInt(HEADER_BYTES + descriptorLength + CRC_BYTES) + payloadLength;
  if (total > BigInt(maxStateBytes)) {
    throw new Fault('STATE_CORRUPT', `state announces ${total} bytes, more than the ${maxStateBytes} this agent accepts`);
  }
  return Number(total);
}

/** Checks magic, lengths and CRC of a complete stream and returns what it carries. */
export function decodeEnvelope(stream: Buffer, maxStateBytes: number): StateImage {
  if (stream.length < HEADER_BYTES) {
    throw new Fault('STATE_CORRUPT', `state is truncated: ${stream.length} bytes, not even a header`);
  }
  const total = announcedLength(stream, maxStateBytes);
  if (stream.length !== total) {
    throw new Fault('STATE_CORRUPT', `state is ${stream.length < total ? 'truncated' : 'overlong'}: ${stream.length} of ${total} bytes`);
  }
  const expectedCrc = stream.readUInt32LE(total - CRC_BYTES);
  const actualCrc = crc32c(stream.subarray(0, total - CRC_BYTES));
  if (expectedCrc !== actualCrc) {
    throw new Fault('STATE_CORRUPT', `state checksum mismatch (CRC32C ${hex(actualCrc)}, expected ${hex(expectedCrc)})`);
  }
  const descriptorLength = stream.readUInt32LE(12);
  const descriptor = parseDescriptor(stream.subarray(HEADER_BYTES, HEADER_BYTES + descriptorLength));
  return {
    format: { name: descriptor.format, version: descriptor.formatVersion },
    identity: descriptor.identity,
    payload: stream.subarray(HEADER_BYTES + descriptorLength, total - CRC_BYTES),
  };
}

function parseDescriptor(bytes: Buffer): Descriptor {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new Fault('STATE_CORRUPT', 'state descriptor is not valid JSON');
  }
  if (!isRecord(value) || typeof value.format !== 'string' || !Number.isInteger(value.formatVersion)
    || !isRecord(value.identity) || typeof value.identity.model !== 'string') {
    throw new Fault('STATE_CORRUPT', 'state descriptor lacks format, formatVersion or identity.model');
  }
  return value as unknown as Descriptor;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}
