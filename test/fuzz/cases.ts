/**
 * What the fuzzer sends: valid requests for the fuzz agent's VFs, then
 * broken on purpose. Each case is one connection's worth of bytes: one to
 * three pieces (each a request, a batch or junk, maybe mutated) with
 * separators between, written in one or several writes.
 *
 * Mutations: truncation, bytes inserted, deleted or replaced (NUL, bytes
 * that are not UTF-8, control characters, structure), duplicate keys,
 * values replaced by other JSON, huge or odd numbers and deep nesting,
 * garbage batches (empty, nested, over the batch limit, mixed with valid
 * entries), random bytes, and large base64 payloads, mutated too.
 * Attachment frames (rpc.enableAttachments): frames before requests, of the
 * right length, a byte off, huge, two at once, before a batch; sent with
 * the call that turns them on or without it.
 */
import fc from 'fast-check';

/** The fuzz agent's VFs (see fuzzAgentConfig), by id. */
export const FUZZ_VF_IDS = ['blob0', 'blob1', 'nvme0'] as const;
/** Names the fuzzer calls them by: ids and BDFs. */
const FUZZ_VF_NAMES = [...FUZZ_VF_IDS, '0000:5e:00.1', '0000:3b:00.2'] as const;

/** Methods that may move a VF between VFIO states. */
export const STATE_CHANGING = new Set(['vf.quiesce', 'vf.save', 'vf.load', 'vf.setState', 'vf.resume', 'vf.reset']);

export interface Piece {
  readonly bytes: Buffer;
  /** True when bytes were changed after rendering: the piece may not be what it says. */
  readonly mutated: boolean;
}

export interface FuzzCase {
  readonly pieces: readonly Piece[];
  /** Bytes between the pieces (one fewer than the pieces). */
  readonly separators: readonly string[];
  /** Where the bytes are cut into writes, as fractions of their length. */
  readonly cuts: readonly number[];
  readonly kind: string;
}

export function caseBytes(c: FuzzCase): Buffer {
  const parts: Buffer[] = [];
  c.pieces.forEach((piece, i) => {
    if (i > 0) parts.push(Buffer.from(c.separators[i - 1] ?? ''));
    parts.push(piece.bytes);
  });
  return Buffer.concat(parts);
}

const vf = fc.constantFrom<string>(...FUZZ_VF_NAMES, 'nope', '', '0000:00:00.0');
const state = fc.constantFrom('RUNNING', 'STOP', 'STOP_COPY', 'RESUMING', 'RUNNING_P2P', 'PRE_COPY', 'PRE_COPY_P2P', 'ERROR', 'running', 'BOGUS');
const smallBase64 = fc.uint8Array({ maxLength: 48 }).map((b) => Buffer.from(b).toString('base64'));
const timeoutMs = fc.integer({ min: 1, max: 50 });
/** Leases long enough never to expire during a run (an expiry would move a VF between two calls), or refused. */
const leaseMs = fc.oneof(fc.integer({ min: 60_000, max: 86_400_000 }), fc.constantFrom(0, 49, -1, 1.5, 86_400_001));

/** A method with params that are valid, or nearly. */
const call: fc.Arbitrary<{ method: string; params?: unknown }> = fc.oneof(
  fc.constant({ method: 'vf.list', params: {} }),
  fc.record({ method: fc.constant('vf.list'), params: fc.record({ driver: fc.constantFrom('blob-bench', 'nvme-emu', 'x') }) }),
  fc.constantFrom('agent.info', 'agent.health', 'rpc.discover', 'rpc.enableAttachments').map((method) => ({ method })),
  fc.record({ method: fc.constantFrom('vf.get', 'vf.getState', 'vf.pending', 'emu.interrupts', 'vf.reset'), params: fc.record({ vf }) }),
  fc.record({ method: fc.constant('vf.quiesce'), params: fc.record({ vf, timeoutMs, leaseMs }, { requiredKeys: ['vf'] }) }),
  fc.record({ method: fc.constant('vf.resume'), params: fc.record({ vf, timeoutMs }, { requiredKeys: ['vf'] }) }),
  fc.record({ method: fc.constant('vf.setState'), params: fc.record({ vf, state, timeoutMs, leaseMs }, { requiredKeys: ['vf', 'state'] }) }),
  fc.record({ method: fc.constant('vf.renewLease'), params: fc.record({ vf, leaseMs, session: fc.oneof(fc.uuid(), fc.string({ maxLength: 8 })) }, { requiredKeys: ['vf'] }) }),
  fc.record({ method: fc.constant('vf.save'), params: fc.record({ vf, maxBytes: fc.integer({ min: 1, max: 8192 }), offset: fc.nat({ max: 20000 }) }, { requiredKeys: ['vf'] }) }),
  fc.record({ method: fc.constant('vf.load'), params: fc.record({ vf, offset: fc.nat({ max: 20000 }), data: smallBase64 }) }),
  fc.record({ method: fc.constant('emu.memRead'), params: fc.record({ vf, address: fc.nat({ max: 1 << 24 }), length: fc.nat({ max: 4096 }) }) }),
  fc.record({ method: fc.constant('emu.memWrite'), params: fc.record({ vf, address: fc.nat({ max: 1 << 24 }), data: smallBase64 }) }),
  fc.record({ method: fc.constant('emu.mmioRead'), params: fc.record({ vf, offset: fc.nat({ max: 0x2000 }).map((n) => n * 4) }) }),
  fc.record({ method: fc.constant('emu.mmioWrite'), params: fc.record({ vf, offset: fc.constantFrom(0x0c, 0x10, 0x24, 0x28, 0x1000, 0x1004), value: fc.nat() }) }),
  fc.record({ method: fc.constant('vf.formats'), params: fc.record({ vf }) }),
  fc.record({ method: fc.constant('vf.precopyInfo'), params: fc.record({ vf }) }),
  fc.record({ method: fc.constant('vf.stateDescriptor'), params: fc.record({ vf, format: fc.record({ name: fc.constantFrom('nvme-controller-state+vfmigd-nvme-emu', 'blob-bench', 'x'), version: fc.nat({ max: 3 }) }) }, { requiredKeys: ['vf'] }) }),
  fc.record({ method: fc.constant('vf.checkCompatibility'), params: fc.record({ vf, descriptor: fc.record({ format: fc.record({ name: fc.constantFrom('blob-bench', 'nvme-controller-state+vfmigd-nvme-emu', ''), version: fc.nat({ max: 3 }) }), identity: fc.oneof(fc.constant({ model: 'vfmigd/blob-bench', vf: 'blob0', stateBytes: 8192 }), fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }))) }) }) }),
  fc.record({ method: fc.constantFrom('vf.nothing', 'rpc.other', '', 'VF.LIST'), params: fc.constant({}) }),
);

const id = fc.oneof(fc.integer(), fc.string({ maxLength: 12 }), fc.constant(null), fc.double({ noNaN: true, noDefaultInfinity: true }));

interface Request { jsonrpc: string; method: string; params?: unknown; id?: unknown }

/** A request; one in eight is a notification (no id). */
const request: fc.Arbitrary<Request> = fc.tuple(call, id, fc.nat({ max: 7 })).map(([c, i, n]) => {
  const r: Request = { jsonrpc: '2.0', method: c.method };
  if (c.params !== undefined) r.params = c.params;
  if (n !== 0) r.id = i;
  return r;
});

const render = fc.constantFrom<(v: unknown) => string>(
  (v) => JSON.stringify(v),
  (v) => JSON.stringify(v, null, 2),
  (v) => JSON.stringify(v, null, '\t').replaceAll('\n', '\r\n'),
);

/** Raw JSON texts that JSON.stringify never writes: numbers beyond doubles, odd escapes, deep nesting. */
const oddValueText = fc.oneof(
  fc.constantFrom('1e400', '-1e400', '1e-400', '18446744073709551617', '9007199254740993', '-0', '0.10000000000000000001', '1E+2', '123456789012345678901234567890e-5'),
  fc.constantFrom('"\\u0000"', '"\\ud800"', '"\\udfff\\ud800"', '"\\u00e9\\/\\b\\f"', '"__proto__"', '{"__proto__":{"x":1}}', '{"constructor":{"prototype":{}}}'),
  fc.oneof(fc.integer({ min: 1, max: 2000 }), fc.integer({ min: 2000, max: 60_000 })).map((depth) => `${'['.repeat(depth)}${']'.repeat(depth)}`),
  fc.integer({ min: 1, max: 20_000 }).map((depth) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`),
  fc.integer({ min: 1, max: 40_000 }).map((n) => `"${'x'.repeat(n)}"`),
  fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
);

/** Bytes that break things: NUL, not UTF-8, control characters, structure. */
const nastyBytes = fc.oneof(
  fc.constantFrom([0x00], [0xff], [0xfe, 0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xef, 0xbb, 0xbf], [0x0a], [0x0d], [0x1f], [0x7f]),
  fc.constantFrom('{', '}', '[', ']', '"', '\\', ',', ':', '"id":', '"method":"vf.reset"', '\\u0000').map((s) => [...Buffer.from(s)]),
  fc.uint8Array({ minLength: 1, maxLength: 8 }).map((a) => [...a]),
);

type Mutation = (bytes: Buffer) => Buffer;

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.double({ min: 0, max: 1, noNaN: true }).map((f): Mutation => (b) => b.subarray(0, Math.floor(b.length * f))),
  fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), nastyBytes).map(([f, bytes]): Mutation => (b) => {
    const at = Math.floor(b.length * f);
    return Buffer.concat([b.subarray(0, at), Buffer.from(bytes), b.subarray(at)]);
  }),
  fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 1, max: 16 })).map(([f, n]): Mutation => (b) => {
    const at = Math.floor(b.length * f);
    return Buffer.concat([b.subarray(0, at), b.subarray(at + n)]);
  }),
  fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 0, max: 255 })).map(([f, byte]): Mutation => (b) => {
    const copy = Buffer.from(b);
    if (copy.length > 0) copy[Math.min(copy.length - 1, Math.floor(copy.length * f))] = byte;
    return copy;
  }),
);

/** A request text whose members are edited as text: duplicate keys, values replaced by odd JSON. */
const editedRequest: fc.Arbitrary<Buffer> = fc.tuple(
  request,
  fc.constantFrom('jsonrpc', 'method', 'params', 'id', 'vf', 'state', 'offset', 'data', 'maxBytes', 'timeoutMs'),
  oddValueText,
  fc.constantFrom('duplicate first', 'duplicate last', 'replace'),
).map(([generated, key, value, how]) => {
  // Generated values may be shown again when shrinking: edit a copy.
  const r = structuredClone(generated);
  const text = JSON.stringify(r);
  const member = `"${key}":`;
  // A duplicate of the key (JSON.parse keeps the last), placed first or last.
  if (how === 'duplicate first') return Buffer.from(`{${member}${value},${text.slice(1)}`);
  if (how === 'duplicate last') return Buffer.from(`${text.slice(0, -1)},${member}${value}}`);
  // The member's value replaced, at the top or in params (added if missing).
  const holder = (key in r || typeof r.params !== 'object' || r.params === null ? r : r.params) as Record<string, unknown>;
  holder[key] = '@@VALUE@@';
  return Buffer.from(JSON.stringify(r).replace('"@@VALUE@@"', value));
});

const batch: fc.Arbitrary<Buffer> = fc.oneof(
  fc.array(fc.oneof(request.map((r) => r as unknown), fc.jsonValue({ maxDepth: 2 }), fc.constant([])), { maxLength: 40 }),
  // Over the batch limit (the fuzz agent allows 32), or just at it.
  fc.integer({ min: 30, max: 300 }).chain((n) => fc.array(request, { minLength: n, maxLength: n })),
).chain((entries) => render.map((r) => Buffer.from(r(entries))));

const randomBytes = fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a));

/** A large vf.load or emu.memWrite, to reach the parser's fast path, mutated or not. */
const large: fc.Arbitrary<Buffer> = fc.tuple(
  fc.constantFrom('vf.load', 'emu.memWrite'),
  fc.constantFrom<string>(...FUZZ_VF_NAMES),
  fc.integer({ min: 48 * 1024, max: 160 * 1024 }),
  fc.boolean(),
).map(([method, target, size, pretty]) => {
  const data = Buffer.alloc(size, size & 0xff).toString('base64');
  const params = method === 'vf.load' ? { vf: target, offset: 0, data } : { vf: target, address: 4096, data };
  return Buffer.from(JSON.stringify({ jsonrpc: '2.0', method, params, id: 'large' }, null, pretty ? 1 : undefined));
});

const rendered = fc.tuple(request, render).map(([r, to]) => Buffer.from(to(r)));

function frameHeader(length: number): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(length >>> 0, 1);
  return header;
}

/** Attachment frames and the texts after them: right, a byte off, huge, doubled, before a batch or before junk. */
const attached: fc.Arbitrary<Buffer> = fc.tuple(
  fc.uint8Array({ maxLength: 9000 }).map((a) => Buffer.from(a)),
  fc.constantFrom(0, 0, 0, -1, 1, 0x7fffffff, 0xffffffff),
  fc.constantFrom<string>(...FUZZ_VF_NAMES),
  fc.nat({ max: 20000 }),
  fc.constantFrom('load', 'load', 'getState', 'batch', 'two', 'base64 too', 'junk'),
).map(([bytes, delta, target, offset, how]) => {
  const frame = Buffer.concat([frameHeader(bytes.length + delta), bytes]);
  const load = { jsonrpc: '2.0', id: 'att', method: 'vf.load', params: { vf: target, offset, data: { attachment: bytes.length } } };
  const text = (v: unknown): Buffer => Buffer.from(`${JSON.stringify(v)}\n`);
  switch (how) {
    case 'getState': return Buffer.concat([frame, text({ jsonrpc: '2.0', id: 'att', method: 'vf.getState', params: { vf: target } })]);
    case 'batch': return Buffer.concat([frame, text([load])]);
    case 'two': return Buffer.concat([frame, frame, text(load)]);
    case 'base64 too': return Buffer.concat([frame, text({ ...load, params: { ...load.params, data: bytes.toString('base64') } })]);
    case 'junk': return Buffer.concat([frame, Buffer.from('not json\n')]);
    default: return Buffer.concat([frame, text(load)]);
  }
});

const enable = Buffer.from(`${JSON.stringify({ jsonrpc: '2.0', id: 'enable', method: 'rpc.enableAttachments', params: {} })}\n`);

/** One piece, with what kind of thing it is, for the report. */
const piece: fc.Arbitrary<{ piece: Piece; kind: string }> = fc.oneof(
  { weight: 2, arbitrary: rendered.map((bytes) => ({ piece: { bytes, mutated: false }, kind: 'valid' })) },
  { weight: 6, arbitrary: fc.tuple(rendered, mutation).map(([bytes, m]) => ({ piece: { bytes: m(bytes), mutated: true }, kind: 'mutated' })) },
  { weight: 3, arbitrary: editedRequest.map((bytes) => ({ piece: { bytes, mutated: true }, kind: 'edited' })) },
  { weight: 2, arbitrary: fc.tuple(batch, fc.option(mutation, { freq: 2 })).map(([bytes, m]) => ({ piece: { bytes: m === null ? bytes : m(bytes), mutated: m !== null }, kind: 'batch' })) },
  { weight: 1, arbitrary: randomBytes.map((bytes) => ({ piece: { bytes, mutated: true }, kind: 'random' })) },
  { weight: 1, arbitrary: fc.tuple(large, fc.option(mutation, { freq: 2 })).map(([bytes, m]) => ({ piece: { bytes: m === null ? bytes : m(bytes), mutated: m !== null }, kind: 'large' })) },
  // Whether a frame counts depends on whether the agent had turned frames on when its bytes came: no exact replies to expect.
  { weight: 1, arbitrary: fc.constant({ piece: { bytes: enable, mutated: false }, kind: 'enable' }) },
  { weight: 2, arbitrary: fc.tuple(attached, fc.option(mutation, { freq: 3 })).map(([bytes, m]) => ({ piece: { bytes: m === null ? bytes : m(bytes), mutated: true }, kind: 'attached' })) },
);

export const fuzzCase: fc.Arbitrary<FuzzCase> = fc.array(piece, { minLength: 1, maxLength: 3 }).chain((pieces) => fc.record({
  pieces: fc.constant(pieces.map((p) => p.piece)),
  kind: fc.constant(pieces.map((p) => p.kind).join('+')),
  separators: fc.array(fc.constantFrom('', '\n', '\r\n', ' ', '\n\n'), { minLength: pieces.length - 1, maxLength: pieces.length - 1 }),
  cuts: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 3 }),
}));
