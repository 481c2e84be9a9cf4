/**
 * The JSON text framer: whatever way TCP cuts the byte stream, the same
 * texts come out, whether they come one per line, pretty-printed across
 * lines (SPDK's rpc.py), back to back, with CRLF, after a byte order mark
 * or with no final newline; UTF-8 stays intact; a broken text does not
 * swallow the next line's request; a text longer than the limit is refused
 * as soon as it is known to be too long, and what was held for it is dropped.
 */
import test from 'ava';
import fc from 'fast-check';
import { attachmentFrameHeader, isAttached, JsonTextFramer, MessageTooLargeError, NOT_UTF8, type FramedMessage, type FramedText } from './json-text-framer.ts';

/** Feeds `chunks` in order and returns every text framed. */
function frameAll(framer: JsonTextFramer, chunks: Iterable<Buffer>): FramedMessage[] {
  const out: FramedMessage[] = [];
  for (const chunk of chunks) out.push(...framer.push(chunk));
  return out;
}

function* chunksOf(bytes: Buffer, size: number): Generator<Buffer> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

/** Parsed values of the framed texts (the framer hands on text; equality of values is what matters). */
function values(texts: readonly FramedMessage[]): unknown[] {
  const value = (text: FramedText): unknown => (text === NOT_UTF8 ? NOT_UTF8 : JSON.parse(text));
  return texts.map((m) => (isAttached(m) ? { value: value(m.text), attachments: m.attachments.map((a) => Buffer.concat(a.pieces).toString('hex')) } : value(m)));
}

const REQUESTS = [
  { jsonrpc: '2.0', method: 'vf.list', id: 1 },
  { jsonrpc: '2.0', method: 'vf.get', params: { vf: 'é€😀 {[\\"' }, id: 'ü' },
  [{ jsonrpc: '2.0', method: 'a', id: 2 }, { jsonrpc: '2.0', method: 'b', params: [1, -2.5e-3, true, null, [], {}] }],
  { jsonrpc: '2.0', method: 'agent.info', params: {}, id: null },
];

/**
 * Every style at once: a byte order mark, pretty-printed with LF and with
 * CRLF (as Python's json.dumps(indent=2) writes), one per line, back to back
 * with no space, and no newline at the end.
 */
const SAMPLE = Buffer.from(
  `\ufeff${JSON.stringify(REQUESTS[0], null, 2)}${JSON.stringify(REQUESTS[1], null, '\t').replaceAll('\n', '\r\n')}\n\n`
  + `${JSON.stringify(REQUESTS[2])}${JSON.stringify(REQUESTS[3], null, 4)}`,
  'utf8',
);

test('pretty-printed, CRLF, back-to-back and newline-free texts after a byte order mark come out in order', (t) => {
  const framer = new JsonTextFramer(4096);
  t.deepEqual(values(framer.push(SAMPLE)), REQUESTS);
  t.is(framer.buffered, 0);
});

test('a split at every byte boundary gives the same texts', (t) => {
  for (let cut = 0; cut <= SAMPLE.length; cut += 1) {
    const framer = new JsonTextFramer(4096);
    t.deepEqual(values(frameAll(framer, [SAMPLE.subarray(0, cut), SAMPLE.subarray(cut)])), REQUESTS, `cut at ${cut}`);
    t.is(framer.buffered, 0);
  }
});

test('a split at every pair of byte boundaries gives the same texts', (t) => {
  const expected = JSON.stringify(REQUESTS);
  for (let a = 0; a <= SAMPLE.length; a += 1) {
    for (let b = a; b <= SAMPLE.length; b += 1) {
      const got = frameAll(new JsonTextFramer(4096), [SAMPLE.subarray(0, a), SAMPLE.subarray(a, b), SAMPLE.subarray(b)]);
      if (JSON.stringify(values(got)) !== expected) {
        t.fail(`cuts at ${a} and ${b}: ${JSON.stringify(got)}`);
        return;
      }
    }
  }
  t.pass();
});

test('one byte at a time gives the same texts', (t) => {
  t.deepEqual(values(frameAll(new JsonTextFramer(4096), chunksOf(SAMPLE, 1))), REQUESTS);
});

test('one text per line, as before: CRLF and blank lines between are fine', (t) => {
  const lines = ['{"a":1}', '{"s":"é€😀"}', '[1,2,3]', '{"jsonrpc":"2.0","method":"vf.list","id":"ü"}'];
  const framer = new JsonTextFramer(1024);
  t.deepEqual(framer.push(Buffer.from(`${lines[0]}\n\n${lines[1]}\r\n  \n${lines[2]}\r\n\r\n${lines[3]}\n`)), lines);
});

test('braces, brackets, quotes and backslashes inside strings do not end a text', (t) => {
  const tricky = [{ s: '}]{[' }, { s: '\\' }, { s: '\\"}' }, { 'k}': ['"', '\\\\', ']'] }, { s: '\u0000\u001f\u2028' }];
  const bytes = Buffer.from(tricky.map((v) => JSON.stringify(v)).join(''));
  for (let cut = 0; cut <= bytes.length; cut += 1) {
    t.deepEqual(values(frameAll(new JsonTextFramer(1024), [bytes.subarray(0, cut), bytes.subarray(cut)])), tricky, `cut at ${cut}`);
  }
});

test('a text that is not an object or array runs to the end of its line, as every text did before', (t) => {
  const framer = new JsonTextFramer(1024);
  t.deepEqual(framer.push(Buffer.from('"a string"\n42 \r\nnot json at all\ntrue{"a":1}\n  null')), ['"a string"', '42 \r', 'not json at all', 'true{"a":1}']);
  t.true(framer.buffered > 0, 'the last line has no end yet');
  t.deepEqual(framer.push(Buffer.from('\n')), ['null']);
});

test('UTF-8 split across chunks at every byte is decoded intact; bytes that are not UTF-8 are said to be so', (t) => {
  for (const ch of ['é', '€', '😀']) {
    const bytes = Buffer.from(`{"s":"${ch}${ch}"}`, 'utf8');
    for (let cut = 1; cut < bytes.length; cut += 1) {
      const got = frameAll(new JsonTextFramer(64), [bytes.subarray(0, cut), bytes.subarray(cut)]);
      t.deepEqual(got, [`{"s":"${ch}${ch}"}`], `${ch} cut at ${cut}`);
    }
  }
  const broken = Buffer.concat([Buffer.from('{"s":"'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}{"ok":1}')]);
  t.deepEqual(new JsonTextFramer(64).push(broken), [NOT_UTF8, '{"ok":1}']);
  // A lone surrogate encoded in UTF-8 (CESU) is not UTF-8 either.
  t.deepEqual(new JsonTextFramer(64).push(Buffer.concat([Buffer.from('["'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"]')])), [NOT_UTF8]);
});

test('a broken text does not swallow the request on the next line', (t) => {
  const next = '{"jsonrpc":"2.0","method":"vf.list","id":9}';
  const cases: [string, string][] = [
    // A truncated line: the next line's `{` cannot follow a value, and is first on its line.
    ['{"jsonrpc":"2.0","method":"vf.list"', '{"jsonrpc":"2.0","method":"vf.list"\n'],
    // An unterminated string: a raw line feed cannot be inside one.
    ['{"jsonrpc":"2.0","method":"vf.li', '{"jsonrpc":"2.0","method":"vf.li'],
    // An error in the middle of a line: the rest of that line goes with it.
    ['{"jsonrpc":"2.0" "method":"x"} trailing', '{"jsonrpc":"2.0" "method":"x"} trailing'],
    ['{"a":]', '{"a":]'],
    ['{"a":1}}', '}'],
  ];
  for (const [broken, brokenText] of cases) {
    const bytes = Buffer.from(`${broken}\n${next}\n`);
    for (let cut = 0; cut <= bytes.length; cut += 1) {
      const got = frameAll(new JsonTextFramer(1024), [bytes.subarray(0, cut), bytes.subarray(cut)]);
      t.is(got.at(-1), next, `${broken}, cut at ${cut}`);
      t.true(got.slice(0, -1).every((text) => typeof text === 'string' && isInvalidJson(text)), `${broken}: ${JSON.stringify(got)}`);
      t.true(got.includes(brokenText) || got[0] === '{"a":1}', `${broken}: ${JSON.stringify(got)}`);
    }
  }
});

function isInvalidJson(text: string): boolean {
  try {
    JSON.parse(text);
    return text === '{"a":1}';
  } catch {
    return true;
  }
}

test('millions of levels of nesting are framed as one text, in one chunk or byte by byte', (t) => {
  const deep = `${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}`;
  const framer = new JsonTextFramer(4 * 1024 * 1024);
  const got = framer.push(Buffer.from(`${deep}{"after":1}`));
  t.is(got.length, 2);
  t.is((got[0] as string).length, 2_000_000);
  t.is(got[1], '{"after":1}');
  const mixed = `${'[{"a":'.repeat(1000)}1${'}]'.repeat(1000)}`;
  t.deepEqual(frameAll(new JsonTextFramer(64 * 1024), chunksOf(Buffer.from(mixed), 1)), [mixed]);
});

const MAX = 4096;

test('a text of exactly the maximum size is accepted; whitespace between texts does not count', (t) => {
  const body = `{"x":"${'x'.repeat(MAX - 8)}"}`;
  t.is(body.length, MAX);
  t.deepEqual(new JsonTextFramer(MAX).push(Buffer.from(`${' '.repeat(MAX)}\n${body}   ${body}`)), [body, body]);
  t.deepEqual(frameAll(new JsonTextFramer(MAX), chunksOf(Buffer.from(body), 1)), [body]);
  // Multi-byte characters count in bytes.
  const euros = `["${'€'.repeat((MAX - 4) / 3)}"]`;
  t.deepEqual(new JsonTextFramer(MAX).push(Buffer.from(euros)), [euros]);
});

test('a text of maximum + 1 bytes is refused, the texts before it are kept, and the bytes held for it are released', (t) => {
  const framer = new JsonTextFramer(MAX);
  const error = t.throws(() => framer.push(Buffer.from(`{"a":1}\n{"x":"${'x'.repeat(MAX - 7)}"}`)), { instanceOf: MessageTooLargeError });
  t.is(error?.limit, MAX);
  t.deepEqual(error?.before, ['{"a":1}']);
  t.is(framer.buffered, 0);
  // Lines count the same way.
  t.throws(() => new JsonTextFramer(MAX).push(Buffer.from(`${'x'.repeat(MAX + 1)}\n`)), { instanceOf: MessageTooLargeError });
});

test('maximum + 1 bytes of an unfinished text is refused as soon as the byte over the limit arrives', (t) => {
  for (const opening of ['{"x":"', '[', 'junk']) {
    const bytes = Buffer.from(opening + (opening === '[' ? '1,' : 'y').repeat(MAX));
    const framer = new JsonTextFramer(MAX);
    let refusedAt = -1;
    for (let i = 0; i < bytes.length; i += 1) {
      try {
        framer.push(bytes.subarray(i, i + 1));
      } catch (error) {
        t.true(error instanceof MessageTooLargeError);
        refusedAt = i + 1;
        break;
      }
      t.true(framer.buffered <= MAX, 'never holds more than the maximum');
    }
    t.is(refusedAt, MAX + 1, opening);
    t.is(framer.buffered, 0);
  }
});

test('a byte order mark cut short is junk, not silently dropped', (t) => {
  t.deepEqual(new JsonTextFramer(64).push(Buffer.from([0xef, 0xbb, 0x7b, 0x7d, 0x0a])), [NOT_UTF8]);
  t.deepEqual(new JsonTextFramer(64).push(Buffer.from([0xef, 0xbb, 0xbf, 0xef, 0xbb, 0xbf, 0x7b, 0x7d])), ['{}']);
});

/** About 1 MiB of texts of very different sizes, characters and layouts. */
function megabyteStream(): { bytes: Buffer; texts: unknown[] } {
  const texts: unknown[] = [];
  const parts: string[] = [];
  let seed = 12345;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const alphabet = ['a', 'b', 'é', '€', '😀', '"', '\\', ' ', '{', ']', '\n'];
  let bytes = 0;
  for (let i = 0; bytes < 1024 * 1024; i += 1) {
    const size = i % 50 === 7 ? 60_000 + rand(40_000) : rand(300);
    let text = '';
    for (let k = 0; k < size; k += 1) text += alphabet[rand(alphabet.length)];
    const value = { i, text, nested: [{ n: i }, []] };
    texts.push(value);
    const layout = i % 4;
    const rendered = layout === 0 ? JSON.stringify(value) : JSON.stringify(value, null, layout);
    const between = ['', '\n', '\r\n', ' \n\t'][rand(4)] as string;
    const part = `${i % 3 === 0 ? rendered.replaceAll('\n', '\r\n') : rendered}${between}`;
    parts.push(part);
    bytes += Buffer.byteLength(part);
  }
  return { bytes: Buffer.from(parts.join(''), 'utf8'), texts };
}

test('1 MiB fed in chunks of 1 byte up to 64 KiB gives the same texts every time', (t) => {
  const { bytes, texts } = megabyteStream();
  t.true(bytes.length >= 1024 * 1024);
  t.deepEqual(values(new JsonTextFramer(1024 * 1024).push(bytes)), texts);
  for (const size of [1, 2, 3, 7, 64, 1000, 1500, 4096, 16384, 65535, 65536]) {
    const framer = new JsonTextFramer(1024 * 1024);
    const got = values(frameAll(framer, chunksOf(bytes, size)));
    t.is(got.length, texts.length, `chunks of ${size}`);
    t.is(JSON.stringify(got), JSON.stringify(texts), `chunks of ${size}: texts differ`);
    t.is(framer.buffered, 0);
  }
});

test('property: any objects and arrays, in any layout, split anywhere, come out as they went in', (t) => {
  const layout = fc.constantFrom<(v: unknown) => string>(
    (v) => JSON.stringify(v),
    (v) => JSON.stringify(v, null, 2),
    (v) => JSON.stringify(v, null, '\t').replaceAll('\n', '\r\n'),
    (v) => `${JSON.stringify(v)}\n`,
  );
  const separator = fc.constantFrom('', ' ', '\n', '\r\n', '\t \n');
  const topLevel = fc.oneof(fc.dictionary(fc.string(), fc.jsonValue()), fc.array(fc.jsonValue()));
  fc.assert(fc.property(
    fc.array(fc.tuple(topLevel, layout, separator), { minLength: 1, maxLength: 8 }),
    fc.array(fc.nat(), { maxLength: 6 }),
    (items, cuts) => {
      const bytes = Buffer.from(items.map(([value, render, between]) => render(value) + between).join(''), 'utf8');
      const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
      const chunks: Buffer[] = [];
      let from = 0;
      for (const point of points) {
        chunks.push(bytes.subarray(from, point));
        from = point;
      }
      chunks.push(bytes.subarray(from));
      const framer = new JsonTextFramer(16 * 1024 * 1024);
      const got = values(frameAll(framer, chunks));
      // Compare as JSON.stringify does: -0 and 0 are the same text.
      return JSON.stringify(got) === JSON.stringify(items.map(([value]) => value)) && framer.buffered === 0;
    },
  ), { numRuns: 500 });
  t.pass();
});

test('at the end of the stream the unfinished text is handed on as it is, and the framer starts afresh', (t) => {
  const framer = new JsonTextFramer(64);
  t.deepEqual(framer.push(Buffer.from('{"a":1} "tail')), ['{"a":1}']);
  t.is(framer.end(), '"tail');
  t.is(framer.buffered, 0);
  t.is(framer.end(), undefined);
  t.deepEqual(framer.push(Buffer.from('[1,')), []);
  t.is(framer.end(), '[1,');
  t.deepEqual(framer.push(Buffer.from('{}')), ['{}']);
  t.deepEqual(framer.push(Buffer.from([0xef, 0xbb])), []);
  t.is(framer.end(), NOT_UTF8);
});

// Attachment frames (rpc.enableAttachments): 0x00, a big-endian u32 length, the bytes; they belong to the next text.

function attached(bytes: Buffer): Buffer {
  return Buffer.concat([attachmentFrameHeader(bytes.length), bytes]);
}

test('attachments: split at every byte boundary, each comes with the text after it, byte for byte', (t) => {
  const first = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 7) & 0xff));
  const stream = Buffer.concat([
    attached(first), Buffer.from('{"id":1}\n'),
    Buffer.from('{"id":2}\n'),
    attached(Buffer.alloc(0)), Buffer.from('\n  {"id":3}'),
    attached(Buffer.from('{"not":"json"}\n')), Buffer.from('[{"id":4}]'),
  ]);
  const expected = [
    { value: { id: 1 }, attachments: [first.toString('hex')] },
    { id: 2 },
    { value: { id: 3 }, attachments: [''] },
    { value: [{ id: 4 }], attachments: [Buffer.from('{"not":"json"}\n').toString('hex')] },
  ];
  for (let cut = 0; cut <= stream.length; cut += 1) {
    const framer = new JsonTextFramer(1024);
    framer.acceptAttachments();
    t.deepEqual(values(frameAll(framer, [stream.subarray(0, cut), stream.subarray(cut)])), expected, `cut at ${cut}`);
    t.is(framer.buffered, 0);
  }
  const framer = new JsonTextFramer(1024);
  framer.acceptAttachments();
  t.deepEqual(values(frameAll(framer, chunksOf(stream, 1))), expected, 'one byte at a time');
});

test('attachments: two before one text are both handed on (the dispatcher refuses that), held bytes are counted', (t) => {
  const framer = new JsonTextFramer(1024);
  framer.acceptAttachments();
  t.deepEqual(framer.push(Buffer.concat([attached(Buffer.from('ab')), attached(Buffer.from('c')).subarray(0, 3)])), []);
  t.is(framer.buffered, 2 + 2, 'a whole attachment and two bytes of the next frame header');
  const [message] = framer.push(Buffer.concat([attached(Buffer.from('c')).subarray(3), Buffer.from('{}')]));
  t.deepEqual(values([message as FramedMessage]), [{ value: {}, attachments: ['6162', '63'] }]);
});

test('attachments: a frame longer than the limit is refused as soon as its length is read; texts before it come out', (t) => {
  const framer = new JsonTextFramer(100);
  framer.acceptAttachments();
  const error = t.throws(() => framer.push(Buffer.concat([Buffer.from('{"id":1}'), attachmentFrameHeader(101)])), { instanceOf: MessageTooLargeError });
  t.deepEqual(values(error?.before ?? []), [{ id: 1 }]);
  const exact = new JsonTextFramer(100);
  exact.acceptAttachments();
  t.deepEqual(values(exact.push(Buffer.concat([attached(Buffer.alloc(100, 1)), Buffer.from('{}')]))), [{ value: {}, attachments: ['01'.repeat(100)] }]);
});

test('attachments: off (the default), a 0x00 is junk to the end of its line; at the end of the stream an attachment with no text is dropped', (t) => {
  const off = new JsonTextFramer(1024);
  t.deepEqual(off.push(Buffer.concat([attached(Buffer.from('x')), Buffer.from('{"id":1}\n{"id":2}\n')])).length, 2, 'the junk line, then the request after it');
  const on = new JsonTextFramer(1024);
  on.acceptAttachments();
  t.deepEqual(on.push(attached(Buffer.from('abc')).subarray(0, 6)), []);
  t.is(on.end(), undefined);
  t.is(on.buffered, 0);
  t.deepEqual(values(on.push(Buffer.from('{"id":5}'))), [{ id: 5 }], 'nothing of the dropped attachment sticks to the next text');
});
