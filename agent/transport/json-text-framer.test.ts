/**
 * The newline framer: whatever way TCP cuts the byte stream, the same
 * messages come out, UTF-8 intact; CRLF and blank lines are tolerated; a
 * line longer than the limit is refused as soon as it is known to be too
 * long, and what was held for it is dropped.
 */
import test from 'ava';
import { LineFramer, MessageTooLargeError } from './line-framer.ts';

/** Feeds `chunks` in order and returns every message framed. */
function frameAll(framer: LineFramer, chunks: Iterable<Buffer>): string[] {
  const out: string[] = [];
  for (const chunk of chunks) out.push(...framer.push(chunk));
  return out;
}

function* chunksOf(bytes: Buffer, size: number): Generator<Buffer> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

/** Messages with 1-, 2-, 3- and 4-byte UTF-8 characters, CRLF and LF endings, and blank lines between. */
const SAMPLE_MESSAGES = ['{"a":1}', '{"s":"é€😀"}', '[1,2,3]', '{"jsonrpc":"2.0","method":"vf.list","id":"ü"}'];
const SAMPLE = Buffer.from(`${SAMPLE_MESSAGES[0]}\n\n${SAMPLE_MESSAGES[1]}\r\n  \n${SAMPLE_MESSAGES[2]}\r\n\r\n${SAMPLE_MESSAGES[3]}\n`, 'utf8');

test('several messages in one chunk come out in order; blank and whitespace-only lines are skipped', (t) => {
  const framer = new LineFramer(1024);
  t.deepEqual(framer.push(SAMPLE), SAMPLE_MESSAGES);
  t.is(framer.buffered, 0);
});

test('a split at every byte boundary gives the same messages', (t) => {
  for (let cut = 0; cut <= SAMPLE.length; cut += 1) {
    const framer = new LineFramer(1024);
    t.deepEqual(frameAll(framer, [SAMPLE.subarray(0, cut), SAMPLE.subarray(cut)]), SAMPLE_MESSAGES, `cut at ${cut}`);
    t.is(framer.buffered, 0);
  }
});

test('a split at every pair of byte boundaries gives the same messages', (t) => {
  for (let a = 0; a <= SAMPLE.length; a += 1) {
    for (let b = a; b <= SAMPLE.length; b += 1) {
      const framer = new LineFramer(1024);
      const got = frameAll(framer, [SAMPLE.subarray(0, a), SAMPLE.subarray(a, b), SAMPLE.subarray(b)]);
      if (got.join('\u0000') !== SAMPLE_MESSAGES.join('\u0000')) {
        t.fail(`cuts at ${a} and ${b}: ${JSON.stringify(got)}`);
        return;
      }
    }
  }
  t.pass();
});

test('one byte at a time gives the same messages', (t) => {
  const framer = new LineFramer(1024);
  t.deepEqual(frameAll(framer, chunksOf(SAMPLE, 1)), SAMPLE_MESSAGES);
});

test('UTF-8 characters split across chunks at every byte are decoded intact', (t) => {
  for (const ch of ['é', '€', '😀']) {
    const bytes = Buffer.from(`"${ch}${ch}"\n`, 'utf8');
    for (let cut = 1; cut < bytes.length; cut += 1) {
      const framer = new LineFramer(64);
      const got = frameAll(framer, [bytes.subarray(0, cut), bytes.subarray(cut)]);
      t.deepEqual(got, [`"${ch}${ch}"`], `${ch} cut at ${cut}`);
      t.false(got.join('').includes('\ufffd'), 'no replacement character');
    }
  }
});

test('CRLF: only the CR right before LF is removed', (t) => {
  const framer = new LineFramer(64);
  t.deepEqual(framer.push(Buffer.from('a\r\nb\rc\r\n\r\nd\r\r\n')), ['a', 'b\rc', 'd\r']);
  // CR and LF in separate chunks.
  t.deepEqual(frameAll(new LineFramer(64), [Buffer.from('x\r'), Buffer.from('\ny\r'), Buffer.from('\n')]), ['x', 'y']);
});

test('an unfinished message is held until its newline arrives', (t) => {
  const framer = new LineFramer(64);
  t.deepEqual(framer.push(Buffer.from('{"a":')), []);
  t.is(framer.buffered, 5);
  t.deepEqual(framer.push(Buffer.from('1}\n{"b"')), ['{"a":1}']);
  t.is(framer.buffered, 4);
  t.deepEqual(framer.push(Buffer.from(':2}\n')), ['{"b":2}']);
  t.is(framer.buffered, 0);
});

const MAX = 4096;

test('a message of exactly the maximum size is accepted, in one chunk or byte by byte', (t) => {
  const body = 'x'.repeat(MAX);
  t.deepEqual(new LineFramer(MAX).push(Buffer.from(`${body}\n`)), [body]);
  t.deepEqual(frameAll(new LineFramer(MAX), chunksOf(Buffer.from(`${body}\n`), 1)), [body]);
  // The CR of a CRLF ending is part of the line, the LF is not.
  t.deepEqual(new LineFramer(MAX).push(Buffer.from(`${'x'.repeat(MAX - 1)}\r\n`)), ['x'.repeat(MAX - 1)]);
  // Multi-byte characters count in bytes.
  const euros = '€'.repeat(MAX / 4); // 3 bytes each: 3/4 of MAX
  t.deepEqual(new LineFramer(MAX).push(Buffer.from(`${euros}\n`)), [euros]);
});

test('a message of maximum + 1 bytes is refused, and the bytes held for it are released', (t) => {
  const framer = new LineFramer(MAX);
  const error = t.throws(() => framer.push(Buffer.from(`${'x'.repeat(MAX + 1)}\n`)), { instanceOf: MessageTooLargeError });
  t.is(error?.limit, MAX);
  t.is(framer.buffered, 0);
});

test('maximum + 1 bytes without a newline is refused as soon as the byte over the limit arrives', (t) => {
  // One chunk.
  const a = new LineFramer(MAX);
  t.throws(() => a.push(Buffer.from('x'.repeat(MAX + 1))), { instanceOf: MessageTooLargeError });
  t.is(a.buffered, 0);
  // Exactly MAX held, then one more byte.
  const b = new LineFramer(MAX);
  t.deepEqual(b.push(Buffer.from('x'.repeat(MAX))), []);
  t.is(b.buffered, MAX);
  t.throws(() => b.push(Buffer.from('x')), { instanceOf: MessageTooLargeError });
  t.is(b.buffered, 0);
  // Byte by byte: the refusal comes at byte MAX + 1, never later.
  const c = new LineFramer(MAX);
  const bytes = Buffer.from('y'.repeat(MAX + 1000));
  let refusedAt = -1;
  for (let i = 0; i < bytes.length; i += 1) {
    try {
      c.push(bytes.subarray(i, i + 1));
    } catch (error) {
      t.true(error instanceof MessageTooLargeError);
      refusedAt = i + 1;
      break;
    }
    t.true(c.buffered <= MAX, 'never holds more than the maximum');
  }
  t.is(refusedAt, MAX + 1);
  t.is(c.buffered, 0);
});

test('messages that each fit are accepted however many share a chunk', (t) => {
  const body = 'z'.repeat(MAX);
  const framer = new LineFramer(MAX);
  t.deepEqual(framer.push(Buffer.from(`${body}\n${body}\n${body}\n`)), [body, body, body]);
});

/** About 1 MiB of newline-delimited messages of very different sizes and characters. */
function megabyteStream(): { bytes: Buffer; messages: string[] } {
  const messages: string[] = [];
  const parts: string[] = [];
  let seed = 12345;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const alphabet = ['a', 'b', 'é', '€', '😀', '"', '\\', ' '];
  let bytes = 0;
  let i = 0;
  while (bytes < 1024 * 1024) {
    const size = i % 50 === 7 ? 60_000 + rand(40_000) : rand(300);
    let text = '';
    for (let k = 0; k < size; k += 1) text += alphabet[rand(alphabet.length)];
    const message = JSON.stringify({ i, text });
    messages.push(message);
    const ending = i % 3 === 0 ? '\r\n' : '\n';
    const blank = i % 11 === 0 ? '\n \r\n' : '';
    const part = `${message}${ending}${blank}`;
    parts.push(part);
    bytes += Buffer.byteLength(part);
    i += 1;
  }
  return { bytes: Buffer.from(parts.join(''), 'utf8'), messages };
}

test('1 MiB fed in chunks of 1 byte up to 64 KiB gives the same messages every time', (t) => {
  const { bytes, messages } = megabyteStream();
  t.true(bytes.length >= 1024 * 1024);
  const whole = new LineFramer(1024 * 1024).push(bytes);
  t.deepEqual(whole, messages);
  for (const size of [1, 2, 3, 7, 64, 1000, 1500, 4096, 16384, 65535, 65536]) {
    const framer = new LineFramer(1024 * 1024);
    const got = frameAll(framer, chunksOf(bytes, size));
    t.is(got.length, messages.length, `chunks of ${size}`);
    t.true(got.every((m, k) => m === messages[k]), `chunks of ${size}: messages differ`);
    t.is(framer.buffered, 0);
  }
});
