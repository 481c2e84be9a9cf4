/**
 * The v2 state stream: the documented layout, read back however it is cut
 * into chunks; unknown optional records skipped and unknown mandatory ones
 * refused as incompatible; every kind of damage refused with the fault a
 * caller acts on (each single-byte change, truncation at every length, a
 * record lost whole, records out of place, oversized announcements); and a
 * v1 envelope read through the same reader.
 */
import test from 'ava';
import { crc32c } from '@node-rs/crc32';
import { Fault, type FaultName } from './faults.ts';
import { encodeEnvelope } from './state-envelope.ts';
import { OPTIONAL, RecordStreamReader, RecordStreamWriter, TAG, type StreamDescriptor, type StreamEvent } from './state-records.ts';

const LIMITS = { maxRecordBytes: 1 << 20, maxV1StateBytes: 1 << 20 };
const DESCRIPTOR: StreamDescriptor = {
  format: { name: 'test-format', version: 3, vendor: '8e3b2c1a-5f7d-4e0b-9a61-2f4c8d9e0b1a' },
  identity: { model: 'vfmigd/test', serial: 'S1' },
};

function bytes(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i += 1) out[i] = (i * 31 + seed * 7) & 0xff;
  return out;
}

const DATA = [bytes(1, 1), bytes(4093, 2), bytes(0, 3), bytes(70_000, 4)];

/** A stream with data records of odd sizes and an optional record this reader does not know. */
function sampleStream(): Buffer {
  const writer = new RecordStreamWriter();
  const pieces = [...writer.begin(DESCRIPTOR), ...writer.data(DATA[0] as Buffer), ...writer.other(0x7000_0001, OPTIONAL, Buffer.from('a hint from a newer agent'))];
  for (const d of DATA.slice(1)) pieces.push(...writer.data(d));
  pieces.push(...writer.end());
  return Buffer.concat(pieces);
}

interface Read {
  descriptor: StreamDescriptor | undefined;
  data: Buffer;
  ended: boolean;
}

function readAll(chunks: Iterable<Uint8Array>): Read {
  const reader = new RecordStreamReader(LIMITS);
  const events: StreamEvent[] = [];
  for (const chunk of chunks) events.push(...reader.push(chunk));
  reader.finish();
  return {
    descriptor: events.find((e) => e.type === 'descriptor')?.descriptor,
    data: Buffer.concat(events.flatMap((e) => (e.type === 'data' ? e.pieces : []))),
    ended: events.at(-1)?.type === 'end',
  };
}

function* chunksOf(stream: Buffer, size: number): Generator<Buffer> {
  for (let i = 0; i < stream.length; i += size) yield stream.subarray(i, i + size);
}

function faultOf(fn: () => unknown): FaultName | 'none' | 'not a Fault' {
  try {
    fn();
    return 'none';
  } catch (error) {
    return error instanceof Fault ? error.fault : 'not a Fault';
  }
}

test('the stream is read back whole, in one chunk or in chunks of any size', (t) => {
  const stream = sampleStream();
  for (const size of [stream.length, 1, 2, 7, 16, 17, 4096, 65536]) {
    const read = readAll(chunksOf(stream, size));
    t.deepEqual(read.descriptor, DESCRIPTOR, `chunks of ${size}`);
    t.true(read.data.equals(Buffer.concat(DATA)), `chunks of ${size}`);
    t.true(read.ended);
  }
});

test('a cut at every byte boundary reads the same', (t) => {
  const writer = new RecordStreamWriter();
  const stream = Buffer.concat([...writer.begin(DESCRIPTOR), ...writer.data(bytes(40, 9)), ...writer.end()]);
  for (let cut = 0; cut <= stream.length; cut += 1) {
    const read = readAll([stream.subarray(0, cut), stream.subarray(cut)]);
    t.true(read.data.equals(bytes(40, 9)) && read.ended, `cut at ${cut}`);
  }
});

/** A record built from the documented layout, independently of encodeRecord. */
function record(tag: number, flags: number, body: Buffer): Buffer {
  const header = Buffer.alloc(16);
  header.writeUInt32LE(tag, 0);
  header.writeUInt32LE(flags, 4);
  header.writeBigUInt64LE(BigInt(body.length), 8);
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(crc32c(Buffer.concat([header, body])));
  return Buffer.concat([header, body, crc]);
}

function preamble(version = 2): Buffer {
  const out = Buffer.alloc(16);
  out.write('VFMIGST\n', 0, 'latin1');
  out.writeUInt16LE(version, 8);
  return out;
}

function endBody(dataBytes: number, records: number): Buffer {
  const body = Buffer.alloc(12);
  body.writeBigUInt64LE(BigInt(dataBytes), 0);
  body.writeUInt32LE(records, 8);
  return body;
}

const descriptorRecord = record(TAG.DESCRIPTOR, 0, Buffer.from(JSON.stringify(DESCRIPTOR)));

test('a stream built from the documented layout is read, and the writer writes exactly that layout', (t) => {
  const body = bytes(100, 5);
  const stream = Buffer.concat([preamble(), descriptorRecord, record(TAG.DEVICE_DATA, 0, body), record(TAG.END, 0, endBody(100, 2))]);
  const read = readAll([stream]);
  t.deepEqual(read.descriptor, DESCRIPTOR);
  t.true(read.data.equals(body));
  const writer = new RecordStreamWriter();
  t.true(Buffer.concat([...writer.begin(DESCRIPTOR), ...writer.data(body), ...writer.end()]).equals(stream));
});

test('unknown records: an optional one is skipped, a mandatory one is refused as incompatible, and so are unknown flags', (t) => {
  const body = bytes(10, 6);
  const withRecord = (extra: Buffer): Buffer => Buffer.concat([preamble(), descriptorRecord, extra, record(TAG.DEVICE_DATA, 0, body), record(TAG.END, 0, endBody(10, 3))]);
  t.true(readAll([withRecord(record(0x1234, OPTIONAL, Buffer.from('skip me')))]).data.equals(body));
  t.true(readAll([withRecord(record(0x1234, OPTIONAL | 0x80, Buffer.from('and me')))]).data.equals(body));
  t.is(faultOf(() => readAll([withRecord(record(0x1234, 0, Buffer.from('I matter')))])), 'STATE_INCOMPATIBLE');
  t.is(faultOf(() => readAll([withRecord(record(TAG.DEVICE_DATA, 0x80, body))])), 'STATE_INCOMPATIBLE', 'a known tag with flags this reader does not know');
});

test('every single-byte change is refused', (t) => {
  const writer = new RecordStreamWriter();
  const stream = Buffer.concat([...writer.begin(DESCRIPTOR), ...writer.data(bytes(64, 7)), ...writer.end()]);
  for (let at = 0; at < stream.length; at += 1) {
    const damaged = Buffer.from(stream);
    damaged[at] = (damaged[at] as number) ^ 0x10;
    const fault = faultOf(() => readAll([damaged]));
    t.true(fault === 'STATE_CORRUPT' || fault === 'STATE_INCOMPATIBLE', `byte ${at}: ${fault}`);
  }
});

test('a stream cut short anywhere is refused, also at a record boundary', (t) => {
  const writer = new RecordStreamWriter();
  const stream = Buffer.concat([...writer.begin(DESCRIPTOR), ...writer.data(bytes(64, 8)), ...writer.data(bytes(64, 9)), ...writer.end()]);
  for (let length = 0; length < stream.length; length += 1) {
    t.is(faultOf(() => readAll([stream.subarray(0, length)])), 'STATE_CORRUPT', `${length} bytes`);
  }
});

test('a record lost whole, records out of place and oversized announcements are refused as corrupt', (t) => {
  const data = record(TAG.DEVICE_DATA, 0, bytes(20, 1));
  const cases: [string, Buffer][] = [
    ['a data record lost whole', Buffer.concat([preamble(), descriptorRecord, data, record(TAG.END, 0, endBody(40, 3))])],
    ['data before the descriptor', Buffer.concat([preamble(), data, descriptorRecord, record(TAG.END, 0, endBody(20, 2))])],
    ['a second descriptor', Buffer.concat([preamble(), descriptorRecord, descriptorRecord, record(TAG.END, 0, endBody(0, 2))])],
    ['bytes after the end', Buffer.concat([preamble(), descriptorRecord, record(TAG.END, 0, endBody(0, 1)), Buffer.from([0])])],
    ['an end record of the wrong size', Buffer.concat([preamble(), descriptorRecord, record(TAG.END, 0, Buffer.alloc(8))])],
    ['a descriptor that is not JSON', Buffer.concat([preamble(), record(TAG.DESCRIPTOR, 0, Buffer.from('{nope')), record(TAG.END, 0, endBody(0, 1))])],
    ['a descriptor without identity', Buffer.concat([preamble(), record(TAG.DESCRIPTOR, 0, Buffer.from('{"format":{"name":"f","version":1}}')), record(TAG.END, 0, endBody(0, 1))])],
    ['reserved preamble bytes', Buffer.concat([Buffer.concat([preamble().subarray(0, 15), Buffer.from([1])]), descriptorRecord, record(TAG.END, 0, endBody(0, 1))])],
  ];
  for (const [what, stream] of cases) t.is(faultOf(() => readAll([stream])), 'STATE_CORRUPT', what);
  t.is(faultOf(() => readAll([preamble(3)])), 'STATE_INCOMPATIBLE', 'a stream version this agent does not read');
});

test('a record announcing more than the limit is refused as soon as its header is in, before its body', (t) => {
  const header = Buffer.alloc(16);
  header.writeUInt32LE(TAG.DEVICE_DATA, 0);
  header.writeBigUInt64LE(BigInt(LIMITS.maxRecordBytes + 1), 8);
  const reader = new RecordStreamReader(LIMITS);
  reader.push(Buffer.concat([preamble(), descriptorRecord]));
  t.is(faultOf(() => reader.push(header)), 'STATE_CORRUPT');
  const descriptorHeader = Buffer.alloc(16);
  descriptorHeader.writeUInt32LE(TAG.DESCRIPTOR, 0);
  descriptorHeader.writeBigUInt64LE(65537n, 8);
  t.is(faultOf(() => new RecordStreamReader(LIMITS).push(Buffer.concat([preamble(), descriptorHeader]))), 'STATE_CORRUPT', 'a descriptor is small');
});

test('a v1 envelope reads through the same reader, cut anywhere', (t) => {
  const payload = bytes(300, 3);
  const envelope = encodeEnvelope({ format: { name: 'v1-format', version: 1 }, identity: { model: 'vfmigd/old' }, payload });
  for (let cut = 0; cut <= envelope.length; cut += 7) {
    const read = readAll([envelope.subarray(0, cut), envelope.subarray(cut)]);
    t.deepEqual(read.descriptor, { format: { name: 'v1-format', version: 1 }, identity: { model: 'vfmigd/old' } });
    t.true(read.data.equals(payload) && read.ended, `cut at ${cut}`);
  }
  const damaged = Buffer.from(envelope);
  damaged[100] = (damaged[100] as number) ^ 1;
  t.is(faultOf(() => readAll([damaged])), 'STATE_CORRUPT');
});
