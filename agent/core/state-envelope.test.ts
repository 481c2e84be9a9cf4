/**
 * The state envelope: the layout documented in state-envelope.ts, a round
 * trip, and refusal of every kind of damage a destination can be handed
 * (each single-byte change, truncation, extra bytes, an oversized
 * announcement) with the fault name a caller acts on: STATE_CORRUPT, or
 * STATE_INCOMPATIBLE for an envelope version this agent does not read.
 */
import test from 'ava';
import { crc32c } from '@node-rs/crc32';
import { Fault, type FaultName } from './faults.ts';
import { HEADER_BYTES, announcedLength, decodeEnvelope, encodeEnvelope, envelopeOverhead, type StateImage } from './state-envelope.ts';

const MAX = 1 << 20;

function image(payloadBytes: number, model = 'vfmigd/test'): StateImage {
  const payload = Buffer.alloc(payloadBytes);
  for (let i = 0; i < payloadBytes; i += 1) payload[i] = (i * 31 + 7) & 0xff;
  return { format: { name: 'test-format', version: 3 }, identity: { model, vf: 'x0', stateBytes: payloadBytes }, payload };
}

/** An envelope built from the documented layout, independently of encodeEnvelope. */
function seal(descriptor: Buffer, payload: Buffer, version = 1): Buffer {
  const head = Buffer.alloc(24);
  head.write('VFMIGST\n', 0, 'latin1');
  head.writeUInt16LE(version, 8);
  head.writeUInt32LE(descriptor.length, 12);
  head.writeBigUInt64LE(BigInt(payload.length), 16);
  const body = Buffer.concat([head, descriptor, payload]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(crc32c(body));
  return Buffer.concat([body, crc]);
}

function faultOf(fn: () => unknown): FaultName | 'none' | 'not a Fault' {
  try {
    fn();
    return 'none';
  } catch (error) {
    return error instanceof Fault ? error.fault : 'not a Fault';
  }
}

test('CRC32C is the Castagnoli CRC (check value of "123456789")', (t) => {
  t.is(crc32c(Buffer.from('123456789')), 0xe3069283);
});

test('encodeEnvelope writes the documented layout', (t) => {
  const img = image(100);
  const stream = encodeEnvelope(img);
  const descriptor = Buffer.from(JSON.stringify({ format: 'test-format', formatVersion: 3, identity: img.identity }));
  t.deepEqual(stream, seal(descriptor, Buffer.from(img.payload)));
  t.is(stream.subarray(0, 8).toString('latin1'), 'VFMIGST\n');
  t.is(stream.readUInt16LE(8), 1);
  t.is(stream.readUInt16LE(10), 0);
  t.is(HEADER_BYTES, 24);
  t.is(envelopeOverhead(img.identity, img.format), stream.length - 100);
});

test('round trip: format, identity and payload come back unchanged', (t) => {
  for (const size of [0, 1, 100, 65537]) {
    const img = image(size);
    const stream = encodeEnvelope(img);
    const back = decodeEnvelope(stream, MAX);
    t.deepEqual(back.format, img.format);
    t.deepEqual(back.identity, img.identity);
    t.true(Buffer.from(back.payload).equals(Buffer.from(img.payload)), `payload of ${size} bytes`);
    t.is(announcedLength(stream, MAX), stream.length);
  }
});

/** What a change of the byte at `offset` must be refused as. */
function expectedFault(offset: number): FaultName {
  return offset === 8 || offset === 9 ? 'STATE_INCOMPATIBLE' : 'STATE_CORRUPT';
}

function region(offset: number, descriptorLength: number, total: number): string {
  if (offset < 8) return 'magic';
  if (offset < 10) return 'version';
  if (offset < 12) return 'reserved';
  if (offset < 16) return 'descriptor length';
  if (offset < 24) return 'payload length';
  if (offset < 24 + descriptorLength) return 'descriptor';
  if (offset < total - 4) return 'payload';
  return 'CRC';
}

test('every single-byte change anywhere in the stream is refused with the right fault', (t) => {
  const stream = encodeEnvelope(image(64));
  const descriptorLength = stream.readUInt32LE(12);
  const seen = new Set<string>();
  for (let offset = 0; offset < stream.length; offset += 1) {
    for (const mask of [0x01, 0x80, 0xff]) {
      const damaged = Buffer.from(stream);
      damaged[offset] = (damaged[offset] ?? 0) ^ mask;
      const where = `${region(offset, descriptorLength, stream.length)} byte ${offset} ^ 0x${mask.toString(16)}`;
      seen.add(region(offset, descriptorLength, stream.length));
      t.is(faultOf(() => decodeEnvelope(damaged, MAX)), expectedFault(offset), where);
    }
  }
  t.deepEqual([...seen], ['magic', 'version', 'reserved', 'descriptor length', 'payload length', 'descriptor', 'payload', 'CRC']);
});

test('the header alone already refuses a bad magic, a foreign version and impossible lengths', (t) => {
  const stream = encodeEnvelope(image(64));
  const header = (edit: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(stream.subarray(0, HEADER_BYTES));
    edit(b);
    return b;
  };
  t.is(faultOf(() => announcedLength(header((b) => b.write('VFMIGSX\n', 0, 'latin1')), MAX)), 'STATE_CORRUPT');
  t.is(faultOf(() => announcedLength(header((b) => b.writeUInt16LE(2, 8)), MAX)), 'STATE_INCOMPATIBLE');
  t.is(faultOf(() => announcedLength(header((b) => b.writeUInt32LE(0, 12)), MAX)), 'STATE_CORRUPT');
  t.is(faultOf(() => announcedLength(header((b) => b.writeUInt32LE(0xffffffff, 12)), MAX)), 'STATE_CORRUPT');
  t.is(faultOf(() => announcedLength(header((b) => b.writeBigUInt64LE(2n ** 64n - 1n, 16)), MAX)), 'STATE_CORRUPT');
});

test('a stream cut short anywhere is refused as corrupt', (t) => {
  const stream = encodeEnvelope(image(64));
  for (let length = 0; length < stream.length; length += 1) {
    t.is(faultOf(() => decodeEnvelope(stream.subarray(0, length), MAX)), 'STATE_CORRUPT', `${length} of ${stream.length} bytes`);
  }
});

test('a stream with bytes after its CRC is refused as corrupt', (t) => {
  const stream = encodeEnvelope(image(64));
  for (const extra of [1, 4, 1000]) {
    t.is(faultOf(() => decodeEnvelope(Buffer.concat([stream, Buffer.alloc(extra)]), MAX)), 'STATE_CORRUPT', `${extra} extra bytes`);
  }
});

test('the maximum state size is enforced from the announced length', (t) => {
  const stream = encodeEnvelope(image(1000));
  t.notThrows(() => decodeEnvelope(stream, stream.length));
  t.is(faultOf(() => decodeEnvelope(stream, stream.length - 1)), 'STATE_CORRUPT');
  t.is(faultOf(() => announcedLength(stream, stream.length - 1)), 'STATE_CORRUPT');
  // A header announcing 2^63 bytes is refused without trying to hold them.
  const huge = Buffer.from(stream.subarray(0, HEADER_BYTES));
  huge.writeBigUInt64LE(2n ** 63n, 16);
  t.is(faultOf(() => announcedLength(huge, 64 * 1024 ** 3)), 'STATE_CORRUPT');
});

test('a descriptor that is not JSON, or lacks format/identity.model, is refused even with a valid CRC', (t) => {
  const payload = Buffer.from('payload');
  const cases: [string, string][] = [
    ['not JSON', '{"format":'],
    ['not an object', '[1,2]'],
    ['no format', JSON.stringify({ formatVersion: 1, identity: { model: 'm' } })],
    ['formatVersion not an integer', JSON.stringify({ format: 'f', formatVersion: 1.5, identity: { model: 'm' } })],
    ['no identity', JSON.stringify({ format: 'f', formatVersion: 1 })],
    ['identity without model', JSON.stringify({ format: 'f', formatVersion: 1, identity: { vf: 'x' } })],
    ['model not a string', JSON.stringify({ format: 'f', formatVersion: 1, identity: { model: 7 } })],
  ];
  for (const [label, descriptor] of cases) {
    t.is(faultOf(() => decodeEnvelope(seal(Buffer.from(descriptor), payload), MAX)), 'STATE_CORRUPT', label);
  }
  // ...and a valid one built the same way is accepted.
  const ok = decodeEnvelope(seal(Buffer.from(JSON.stringify({ format: 'f', formatVersion: 1, identity: { model: 'm' } })), payload), MAX);
  t.deepEqual(ok.format, { name: 'f', version: 1 });
  t.true(Buffer.from(ok.payload).equals(payload));
});

test('an envelope of another version with a valid CRC is refused as incompatible, not corrupt', (t) => {
  const descriptor = Buffer.from(JSON.stringify({ format: 'f', formatVersion: 1, identity: { model: 'm' } }));
  t.is(faultOf(() => decodeEnvelope(seal(descriptor, Buffer.from('p'), 2), MAX)), 'STATE_INCOMPATIBLE');
  t.is(faultOf(() => decodeEnvelope(seal(descriptor, Buffer.from('p'), 0), MAX)), 'STATE_INCOMPATIBLE');
});
