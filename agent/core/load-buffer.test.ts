/**
 * The load buffer: a state stream written by `vf.load` in slices of any
 * size reassembles byte for byte; a retried slice that repeats what was
 * received is accepted; a slice that differs, leaves a gap or overlaps the
 * end is refused with STREAM_OFFSET and `expected` (and the buffer stays
 * usable); anything that makes the stream longer than announced, or an
 * announcement over the limit, is STATE_CORRUPT. Every refused slice leaves
 * the buffer exactly as it was.
 */
import test from 'ava';
import type { DeviceStateImage } from '../../vendor-drivers/driver.ts';
import { Fault, type FaultName } from './faults.ts';
import { LoadBuffer } from './load-buffer.ts';
import { HEADER_BYTES, encodeEnvelope } from './state-envelope.ts';

const MAX = 1 << 24;

function stream(payloadBytes: number): Buffer {
  const payload = Buffer.alloc(payloadBytes);
  for (let i = 0; i < payloadBytes; i += 1) payload[i] = (i * 131 + 17) & 0xff;
  const img: DeviceStateImage = { format: { name: 'test-format', version: 1 }, identity: { model: 'vfmigd/test' }, payload };
  return encodeEnvelope(img);
}

function refusal(fn: () => unknown): Fault {
  try {
    fn();
  } catch (error) {
    if (error instanceof Fault) return error;
    throw error;
  }
  throw new Error('expected a Fault, nothing was thrown');
}

function expectFault(t: { is: (a: unknown, b: unknown, m?: string) => void }, fn: () => unknown, name: FaultName, expected?: number, label = ''): void {
  const fault = refusal(fn);
  t.is(fault.fault, name, label);
  if (expected !== undefined) t.is(fault.details.expected, expected, `${label} expected`);
}

test('slices of any size, in order, reassemble the stream byte for byte', (t) => {
  const s = stream(10_000);
  for (const size of [1, 2, 3, 7, 23, 24, 25, 100, 4096, s.length - 1, s.length]) {
    const buffer = new LoadBuffer(MAX);
    t.is(buffer.totalBytes, null);
    for (let offset = 0; offset < s.length; offset += size) {
      buffer.write(offset, s.subarray(offset, offset + size));
      t.is(buffer.received, Math.min(s.length, offset + size));
      t.is(buffer.totalBytes, buffer.received >= HEADER_BYTES ? s.length : null, `slices of ${size}: total known once the header is in`);
      t.is(buffer.complete, buffer.received === s.length);
    }
    t.true(buffer.complete, `slices of ${size}`);
    t.true(buffer.contents().equals(s), `slices of ${size}: bytes differ`);
  }
});

test('slices of varying sizes reassemble too', (t) => {
  const s = stream(5000);
  const buffer = new LoadBuffer(MAX);
  let offset = 0;
  let k = 0;
  while (offset < s.length) {
    const size = [5, 1, 30, 2, 700, 13][k % 6] ?? 1;
    buffer.write(offset, s.subarray(offset, offset + size));
    offset = Math.min(s.length, offset + size);
    k += 1;
  }
  t.true(buffer.complete);
  t.true(buffer.contents().equals(s));
});

test('an identical repeated slice is accepted and changes nothing (before and after the header)', (t) => {
  const s = stream(1000);
  const buffer = new LoadBuffer(MAX);
  buffer.write(0, s.subarray(0, 10));
  t.notThrows(() => buffer.write(0, s.subarray(0, 10)));
  t.notThrows(() => buffer.write(3, s.subarray(3, 7)));
  t.is(buffer.received, 10);
  buffer.write(10, s.subarray(10, 500));
  t.notThrows(() => buffer.write(10, s.subarray(10, 500)));
  t.notThrows(() => buffer.write(0, s.subarray(0, 500)));
  t.notThrows(() => buffer.write(499, s.subarray(499, 500)));
  t.is(buffer.received, 500);
  buffer.write(500, s.subarray(500));
  t.notThrows(() => buffer.write(500, s.subarray(500)));
  t.true(buffer.complete);
  t.true(buffer.contents().equals(s));
});

test('a repeated slice that differs from what was received is refused with expected', (t) => {
  const s = stream(1000);
  for (const at of [5, 400]) {
    const buffer = new LoadBuffer(MAX);
    buffer.write(0, s.subarray(0, at + 10));
    const other = Buffer.from(s.subarray(at, at + 5));
    other[2] = (other[2] ?? 0) ^ 0x40;
    expectFault(t, () => buffer.write(at, other), 'STREAM_OFFSET', at + 10, `differing repeat at ${at}`);
    // Nothing was overwritten, and the stream continues where it was.
    t.true(buffer.contents().equals(s.subarray(0, at + 10)));
    buffer.write(at + 10, s.subarray(at + 10));
    t.true(buffer.complete);
    t.true(buffer.contents().equals(s));
  }
});

test('a gap is refused with expected, and the next correct slice is still accepted', (t) => {
  const s = stream(1000);
  const buffer = new LoadBuffer(MAX);
  expectFault(t, () => buffer.write(1, s.subarray(1, 10)), 'STREAM_OFFSET', 0, 'gap at the start');
  buffer.write(0, s.subarray(0, 10));
  expectFault(t, () => buffer.write(11, s.subarray(11, 20)), 'STREAM_OFFSET', 10, 'gap in the header');
  buffer.write(10, s.subarray(10, 300));
  expectFault(t, () => buffer.write(301, s.subarray(301)), 'STREAM_OFFSET', 300, 'gap after the header');
  expectFault(t, () => buffer.write(s.length + 5, Buffer.from('x')), 'STREAM_OFFSET', 300, 'far past the end');
  t.is(buffer.received, 300);
  buffer.write(300, s.subarray(300));
  t.true(buffer.complete);
  t.true(buffer.contents().equals(s));
});

test('a slice that overlaps the received bytes and runs past them is refused with expected', (t) => {
  const s = stream(1000);
  const buffer = new LoadBuffer(MAX);
  buffer.write(0, s.subarray(0, 100));
  expectFault(t, () => buffer.write(50, s.subarray(50, 150)), 'STREAM_OFFSET', 100);
  t.is(buffer.received, 100);
});

test('bytes beyond the announced length are refused as corrupt', (t) => {
  const s = stream(1000);
  const whole = Buffer.concat([s, Buffer.from('extra')]);
  // In one slice (the header and the excess arrive together).
  expectFault(t, () => new LoadBuffer(MAX).write(0, whole), 'STATE_CORRUPT');
  // After the stream is complete.
  const b = new LoadBuffer(MAX);
  b.write(0, s);
  expectFault(t, () => b.write(s.length, Buffer.from('x')), 'STATE_CORRUPT');
  // A last slice that runs over.
  const c = new LoadBuffer(MAX);
  c.write(0, s.subarray(0, 500));
  expectFault(t, () => c.write(500, whole.subarray(500)), 'STATE_CORRUPT');
});

test('a header announcing more than the maximum is refused when the header completes', (t) => {
  const s = stream(1000);
  const buffer = new LoadBuffer(s.length - 1);
  buffer.write(0, s.subarray(0, HEADER_BYTES - 1));
  expectFault(t, () => buffer.write(HEADER_BYTES - 1, s.subarray(HEADER_BYTES - 1, HEADER_BYTES)), 'STATE_CORRUPT');
  // Exactly the maximum is fine.
  const exact = new LoadBuffer(s.length);
  exact.write(0, s);
  t.true(exact.complete);
  // A header announcing 2^62 bytes is refused, not allocated.
  const huge = Buffer.from(s.subarray(0, HEADER_BYTES));
  huge.writeBigUInt64LE(2n ** 62n, 16);
  expectFault(t, () => new LoadBuffer(1 << 30).write(0, huge), 'STATE_CORRUPT');
});

test('a header that is not a vfmigd state is refused when it completes', (t) => {
  const s = Buffer.from(stream(100));
  s.write('NOTOURS!', 0, 'latin1');
  const buffer = new LoadBuffer(MAX);
  buffer.write(0, s.subarray(0, 8));
  expectFault(t, () => buffer.write(8, s.subarray(8, 40)), 'STATE_CORRUPT');
});

test('a slice refused as corrupt leaves the buffer as it was, and the right slice is still accepted', (t) => {
  const s = stream(1000);
  // The slice that completes the header with garbage: the bytes before it stay, nothing of it is kept.
  const a = new LoadBuffer(MAX);
  a.write(0, s.subarray(0, 10));
  expectFault(t, () => a.write(10, Buffer.alloc(30, 0x41)), 'STATE_CORRUPT');
  t.is(a.received, 10);
  t.is(a.totalBytes, null);
  a.write(10, s.subarray(10));
  t.true(a.contents().equals(s));
  // A slice that runs past the announced end.
  const b = new LoadBuffer(MAX);
  b.write(0, s.subarray(0, 500));
  expectFault(t, () => b.write(500, Buffer.concat([s.subarray(500), Buffer.from('extra')])), 'STATE_CORRUPT');
  t.is(b.received, 500);
  b.write(500, s.subarray(500));
  t.true(b.complete);
  t.true(b.contents().equals(s));
  // A header over the limit, arriving whole.
  const c = new LoadBuffer(s.length - 1);
  expectFault(t, () => c.write(0, s), 'STATE_CORRUPT');
  t.is(c.received, 0);
});
