/**
 * Bad input against blob-bench VFs in a real agent: malformed JSON, wrong
 * types, unknown and missing fields, positional params, unknown VFs,
 * blocked transitions, save/load in the wrong state, and every way a state
 * handed to vf.load can be wrong (truncated, corrupted, another model,
 * another size, a gap, bad base64, too big). Each is refused with its
 * catalogued error, and afterwards the agent still serves and the VF is as
 * it was: same state, and for refused loads a stopped VF whose fresh save
 * is byte-identical to the save taken before.
 *
 * Tests run concurrently; each owns one VF of the shared agent.
 */
import test, { type ExecutionContext } from 'ava';
import { RecordStreamReader, RecordStreamWriter, type StreamDescriptor } from '../agent/core/state-records.ts';
import { startAgentProcess, type AgentProcess } from './support/agent-process.ts';
import { base64Of, RpcClient, type RpcError } from './support/rpc-client.ts';

const STATE_BYTES = 100000;
const VF_COUNT = 24;
const MiB = 1024 * 1024;

let agent: AgentProcess;
/** A second agent: VFs of another state size and without P2P. */
let other: AgentProcess;

test.before(async () => {
  [agent, other] = await Promise.all([
    startAgentProcess({ config: { limits: { maxMessageBytes: MiB }, drivers: [{ driver: 'blob-bench', options: { vfCount: VF_COUNT, stateBytes: STATE_BYTES, p2p: true } }] } }),
    startAgentProcess({ config: { drivers: [{ driver: 'blob-bench', options: { vfCount: 1, stateBytes: 50000, p2p: false } }] } }),
  ]);
});

test.after.always(async () => {
  await Promise.all([agent?.stop(), other?.stop()]);
});

let vfs = 0;
/** A VF of the shared agent for one test alone. */
function ownVf(): { id: string; bdf: string } {
  const i = vfs++;
  if (i >= VF_COUNT) throw new Error('raise VF_COUNT');
  return { id: `blob${i}`, bdf: `0000:5e:${((i >> 3) & 0x1f).toString(16).padStart(2, '0')}.${i & 7}` };
}

async function connect(t: ExecutionContext, target: AgentProcess = agent): Promise<RpcClient> {
  const c = await RpcClient.connect(target.tcp);
  t.teardown(() => c.destroy());
  return c;
}

type Rpc = RpcClient;

async function stateOf(c: Rpc, vf: string): Promise<string> {
  return (await c.call('vf.getState', { vf })).state;
}

/** Reads the whole save stream from STOP or STOP_COPY; leaves the VF in STOP_COPY. */
async function readStream(c: Rpc, vf: string, from?: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let first = true;
  for (;;) {
    const slice = await c.call('vf.save', first && from !== undefined ? { vf, maxBytes: 30000, offset: from } : { vf, maxBytes: 30000 });
    first = false;
    parts.push(Buffer.from(base64Of(slice.data), 'base64'));
    if (slice.eof) return Buffer.concat(parts);
  }
}

/** Stops the VF, reads its whole state and leaves it in STOP. */
async function snapshot(c: Rpc, vf: string): Promise<Buffer> {
  await c.call('vf.quiesce', { vf });
  const bytes = await readStream(c, vf);
  await c.call('vf.setState', { vf, state: 'STOP' });
  return bytes;
}

/** Writes `bytes` with vf.load in slices starting at `offset`. */
async function load(c: Rpc, vf: string, bytes: Buffer, offset = 0, slice = 30000): Promise<void> {
  for (let at = 0; at < bytes.length; at += slice) {
    await c.call('vf.load', { vf, offset: offset + at, data: bytes.subarray(at, at + slice).toString('base64') });
  }
}

/** Writes `bytes` in 30000-byte slices until one is refused: that refusal and its offset. */
async function loadUntilRefused(c: Rpc, vf: string, bytes: Buffer): Promise<{ error: RpcError; offset: number }> {
  for (let at = 0; at < bytes.length; at += 30000) {
    const error = await c.callError('vf.load', { vf, offset: at, data: bytes.subarray(at, at + 30000).toString('base64') }).catch(() => undefined);
    if (error !== undefined) return { error, offset: at };
  }
  throw new Error('every slice was taken');
}

/** The agent answers on a fresh connection, and the VF is in `state`. */
async function stillServes(t: ExecutionContext, vf: string, state: string): Promise<void> {
  const c = await connect(t);
  t.is((await c.call('vf.list', {})).vfs.length, VF_COUNT);
  t.is(await stateOf(c, vf), state, `${vf} should still be ${state}`);
  c.destroy();
}

/** After a refused load: the VF is stopped and saves exactly what it saved before. */
async function unchangedAfterLoad(t: ExecutionContext, c: Rpc, vf: string, before: Buffer): Promise<void> {
  t.is(await stateOf(c, vf), 'STOP');
  const after = await readStream(c, vf);
  await c.call('vf.setState', { vf, state: 'STOP' });
  t.true(after.equals(before), `the state of ${vf} changed: ${after.length} bytes, ${before.length} before`);
  await stillServes(t, vf, 'STOP');
}

function expectError(t: ExecutionContext, error: RpcError, code: number, name: string): void {
  t.is(error.code, code, `${error.message}`);
  t.is(error.data?.code, name);
}

/** Rebuilds a saved (v2) stream around a changed descriptor, every record with a valid CRC32C. */
function reseal(stream: Buffer, edit: (descriptor: Record<string, unknown>) => void): Buffer {
  const reader = new RecordStreamReader({ maxRecordBytes: 16 * 1024 * 1024, maxV1StateBytes: 1 });
  const events = reader.push(stream);
  reader.finish();
  const writer = new RecordStreamWriter();
  const pieces: Buffer[] = [];
  for (const event of events) {
    if (event.type === 'descriptor') {
      const descriptor = structuredClone(event.descriptor) as unknown as Record<string, unknown>;
      edit(descriptor);
      pieces.push(...writer.begin(descriptor as unknown as StreamDescriptor));
    } else if (event.type === 'data') {
      pieces.push(...writer.data(Buffer.concat(event.pieces)));
    } else {
      pieces.push(...writer.end());
    }
  }
  return Buffer.concat(pieces);
}

// ---------------------------------------------------------------- protocol-level

test('malformed JSON gets -32700 Parse error, the connection stays usable, the VF is untouched', async (t) => {
  const { id: vf } = ownVf();
  const c = await connect(t);
  const texts = [
    // Truncated: a text may go on across lines, so it is known to be broken when the next line begins.
    `{"jsonrpc":"2.0","method":"vf.quiesce","params":{"vf":"${vf}"},"id":1`,
    `{"jsonrpc":"2.0","method":"vf.quiesce","params":{"vf":"${vf}",},"id":1}`,
    `{'jsonrpc':'2.0','method':'vf.quiesce','params':{'vf':'${vf}'},'id':1}`,
    'vf.quiesce blob0',
  ];
  c.sendRaw(texts.map((text) => `${text}\n`).join(''));
  for (const text of texts) {
    const r = await c.nextUnmatched() as { id: unknown; error: { code: number; data: { code: string } } };
    t.is(r.id, null, text);
    t.is(r.error.code, -32700, text);
    t.is(r.error.data.code, 'PARSE_ERROR', text);
  }
  c.sendRaw(Buffer.from([0xff, 0xfe, 0x7b, 0x7d, 0x0a]));
  t.like(await c.nextUnmatched() as object, { error: { code: -32700 } });
  t.is(await stateOf(c, vf), 'RUNNING');
  await stillServes(t, vf, 'RUNNING');
});

test('params of the wrong type get -32602 naming the path, and nothing runs', async (t) => {
  const { id: vf } = ownVf();
  const c = await connect(t);
  const cases: [string, Record<string, unknown>, string][] = [
    ['vf.getState', { vf: 5 }, '/vf'],
    ['vf.getState', { vf: null }, '/vf'],
    ['vf.getState', { vf: '' }, '/vf'],
    ['vf.quiesce', { vf, timeoutMs: '5' }, '/timeoutMs'],
    ['vf.quiesce', { vf, timeoutMs: 0 }, '/timeoutMs'],
    ['vf.quiesce', { vf, timeoutMs: 1.5 }, '/timeoutMs'],
    ['vf.setState', { vf, state: 'FOO' }, '/state'],
    ['vf.setState', { vf, state: 1 }, '/state'],
    ['vf.setState', { vf, state: 'stop' }, '/state'],
    ['vf.save', { vf, maxBytes: '1' }, '/maxBytes'],
    ['vf.save', { vf, maxBytes: 0 }, '/maxBytes'],
    ['vf.save', { vf, maxBytes: 4 * MiB + 1 }, '/maxBytes'],
    ['vf.save', { vf, offset: -1 }, '/offset'],
    ['vf.save', { vf, offset: 1.5 }, '/offset'],
    ['vf.load', { vf, offset: 0, data: 123 }, '/data'],
    ['vf.load', { vf, offset: '0', data: '' }, '/offset'],
    ['vf.list', { driver: 7 }, '/driver'],
  ];
  for (const [method, params, path] of cases) {
    const error = await c.callError(method, params);
    expectError(t, error, -32602, 'INVALID_PARAMS');
    const errors = error.data?.errors as { path: string; message: string }[] | undefined;
    t.true(errors?.some((e) => e.path === path), `${method} ${JSON.stringify(params)}: errors ${JSON.stringify(errors)} do not name ${path}`);
  }
  await stillServes(t, vf, 'RUNNING');
});

test('unknown fields are refused with -32602 whose data.errors names the field\'s path', async (t) => {
  const { id: vf } = ownVf();
  const c = await connect(t);
  const cases: [string, Record<string, unknown>, string][] = [
    ['vf.getState', { vf, extra: 1 }, '/extra'],
    ['vf.setState', { vf, state: 'STOP', force: true }, '/force'],
    ['vf.quiesce', { vf, timeout: 100 }, '/timeout'],
    ['vf.save', { vf, maxbytes: 10 }, '/maxbytes'],
    ['vf.load', { vf, offset: 0, data: '', length: 0 }, '/length'],
    ['vf.list', { drivers: 'blob-bench' }, '/drivers'],
    ['rpc.discover', { verbose: true }, '/verbose'],
    ['agent.info', { x: 1 }, '/x'],
  ];
  for (const [method, params, path] of cases) {
    const error = await c.callError(method, params);
    expectError(t, error, -32602, 'INVALID_PARAMS');
    const errors = error.data?.errors as { path: string; message: string }[] | undefined;
    t.true(errors?.some((e) => e.path === path), `${method}: errors ${JSON.stringify(errors)} do not name ${path}`);
  }
  // The setState with an unknown field did not run.
  await stillServes(t, vf, 'RUNNING');
});

test('missing required params are refused with -32602 naming the missing field', async (t) => {
  const { id: vf } = ownVf();
  const c = await connect(t);
  const cases: [string, Record<string, unknown> | undefined, string][] = [
    ['vf.getState', {}, 'vf'],
    ['vf.getState', undefined, 'vf'],
    ['vf.setState', { vf }, 'state'],
    ['vf.setState', { state: 'STOP' }, 'vf'],
    ['vf.load', { vf, offset: 0 }, 'data'],
    ['vf.load', { vf, data: '' }, 'offset'],
    ['vf.quiesce', {}, 'vf'],
  ];
  for (const [method, params, field] of cases) {
    const error = params === undefined
      ? await c.request({ jsonrpc: '2.0', method, id: `${method}-no-params` }).then((r) => r.error as RpcError)
      : await c.callError(method, params);
    t.is(error.code, -32602, `${method} without ${field}`);
    const errors = error.data?.errors as { path: string; message: string }[] | undefined;
    t.true(errors?.some((e) => e.message.includes(field) || e.path === `/${field}`), `${method}: errors ${JSON.stringify(errors)} do not name ${field}`);
  }
  await stillServes(t, vf, 'RUNNING');
});

test('params as an array are refused with -32602 by every method', async (t) => {
  const { id: vf } = ownVf();
  const c = await connect(t);
  for (const [method, params] of [
    ['vf.getState', [vf]], ['vf.setState', [vf, 'STOP']], ['vf.quiesce', [vf]], ['vf.save', [vf, 10]],
    ['vf.load', [vf, 0, '']], ['vf.list', []], ['rpc.discover', []], ['agent.health', []],
  ] as const) {
    expectError(t, await c.callError(method, params), -32602, 'INVALID_PARAMS');
  }
  await stillServes(t, vf, 'RUNNING');
});

// ---------------------------------------------------------------- unknown VFs

test('an unknown VF, by id or by BDF, gets VF_UNKNOWN from every VF method', async (t) => {
  const { id: vf, bdf } = ownVf();
  const c = await connect(t);
  // The VF is found by id and by BDF (lower or upper case hex).
  t.is((await c.call('vf.getState', { vf: bdf })).vf, vf);
  t.is((await c.call('vf.getState', { vf: bdf.toUpperCase() })).vf, vf);
  for (const ref of ['blob9999', '0000:5e:1f.7', '0000:00:00.0', 'nvme0']) {
    for (const [method, params] of [
      ['vf.get', {}], ['vf.getState', {}], ['vf.setState', { state: 'STOP' }], ['vf.quiesce', {}], ['vf.resume', {}],
      ['vf.save', {}], ['vf.load', { offset: 0, data: '' }], ['vf.pending', {}], ['vf.reset', {}],
    ] as const) {
      const error = await c.callError(method, { vf: ref, ...params });
      expectError(t, error, -33001, 'VF_UNKNOWN');
      t.true(error.data?.detail.includes(ref), `${method}: the detail names ${ref}`);
    }
  }
  await stillServes(t, vf, 'RUNNING');
});

// ---------------------------------------------------------------- blocked transitions

test('STOP_COPY → PRE_COPY and → PRE_COPY_P2P are refused; the VF stays in STOP_COPY and its save stream goes on', async (t) => {
  const { id: vf } = ownVf();
  const c = await connect(t);
  const reference = await snapshot(c, vf);
  await c.call('vf.setState', { vf, state: 'STOP_COPY' });
  const head = Buffer.from(base64Of((await c.call('vf.save', { vf, maxBytes: 1000 })).data), 'base64');
  for (const target of ['PRE_COPY', 'PRE_COPY_P2P']) {
    const error = await c.callError('vf.setState', { vf, state: target });
    expectError(t, error, -33002, 'ILLEGAL_TRANSITION');
    t.is(error.data?.state, 'STOP_COPY');
    t.is(await stateOf(c, vf), 'STOP_COPY');
  }
  const rest = await readStream(c, vf);
  t.true(Buffer.concat([head, rest]).equals(reference), 'the save stream did not continue where it was');
  await c.call('vf.setState', { vf, state: 'STOP' });
  await stillServes(t, vf, 'STOP');
});

test('ERROR cannot be requested from any reachable state; the VF stays where it was', async (t) => {
  const { id: vf } = ownVf();
  const c = await connect(t);
  const refuse = async (state: string): Promise<void> => {
    const error = await c.callError('vf.setState', { vf, state: 'ERROR' });
    expectError(t, error, -33002, 'ILLEGAL_TRANSITION');
    t.is(error.data?.state, state);
    t.is(await stateOf(c, vf), state);
  };
  await refuse('RUNNING');
  await c.call('vf.setState', { vf, state: 'RUNNING_P2P' });
  await refuse('RUNNING_P2P');
  const reference = await snapshot(c, vf);
  await refuse('STOP');
  await c.call('vf.setState', { vf, state: 'STOP_COPY' });
  await refuse('STOP_COPY');
  t.true((await readStream(c, vf, 0)).equals(reference));
  await c.call('vf.setState', { vf, state: 'STOP' });
  // In RESUMING, the refusal leaves the resume session intact.
  await load(c, vf, reference.subarray(0, 5000));
  await refuse('RESUMING');
  await load(c, vf, reference.subarray(5000), 5000);
  await c.call('vf.setState', { vf, state: 'STOP' });
  await unchangedAfterLoad(t, c, vf, reference);
});

test('RUNNING_P2P on a VF without P2P, and PRE_COPY on any VF (no pre-copy), are refused', async (t) => {
  const c = await connect(t, other);
  for (const state of ['RUNNING_P2P', 'PRE_COPY', 'PRE_COPY_P2P']) {
    const error = await c.callError('vf.setState', { vf: 'blob0', state });
    expectError(t, error, -33002, 'ILLEGAL_TRANSITION');
    t.is(await stateOf(c, 'blob0'), 'RUNNING');
  }
  // From STOP too.
  await c.call('vf.quiesce', { vf: 'blob0' });
  expectError(t, await c.callError('vf.setState', { vf: 'blob0', state: 'RUNNING_P2P' }), -33002, 'ILLEGAL_TRANSITION');
  t.is(await stateOf(c, 'blob0'), 'STOP');
  await c.call('vf.resume', { vf: 'blob0' });
  // And on the P2P VFs of the main agent, PRE_COPY is not offered either.
  const { id: vf } = ownVf();
  const m = await connect(t);
  for (const state of ['PRE_COPY', 'PRE_COPY_P2P']) {
    expectError(t, await m.callError('vf.setState', { vf, state }), -33002, 'ILLEGAL_TRANSITION');
  }
  await stillServes(t, vf, 'RUNNING');
});

// ---------------------------------------------------------------- save and load in the wrong state

test('vf.save without a save stream (RUNNING, RUNNING_P2P, RESUMING) gets NO_SAVE_STREAM and changes nothing', async (t) => {
  const { id: vf } = ownVf();
  const c = await connect(t);
  let error = await c.callError('vf.save', { vf });
  expectError(t, error, -33005, 'NO_SAVE_STREAM');
  t.is(error.data?.state, 'RUNNING');
  t.is(await stateOf(c, vf), 'RUNNING');
  await c.call('vf.setState', { vf, state: 'RUNNING_P2P' });
  error = await c.callError('vf.save', { vf, offset: 0 });
  expectError(t, error, -33005, 'NO_SAVE_STREAM');
  t.is(await stateOf(c, vf), 'RUNNING_P2P');
  const reference = await snapshot(c, vf);
  await load(c, vf, reference.subarray(0, 100));
  error = await c.callError('vf.save', { vf });
  expectError(t, error, -33005, 'NO_SAVE_STREAM');
  t.is(await stateOf(c, vf), 'RESUMING');
  await load(c, vf, reference.subarray(100), 100);
  await c.call('vf.setState', { vf, state: 'STOP' });
  await unchangedAfterLoad(t, c, vf, reference);
});

test('vf.load on a running VF (RUNNING, RUNNING_P2P) or during a save (STOP_COPY) gets ILLEGAL_TRANSITION and changes nothing', async (t) => {
  const { id: vf } = ownVf();
  const c = await connect(t);
  const data = Buffer.from('VFMIGST\n').toString('base64');
  let error = await c.callError('vf.load', { vf, offset: 0, data });
  expectError(t, error, -33002, 'ILLEGAL_TRANSITION');
  t.is(error.data?.state, 'RUNNING');
  t.is(await stateOf(c, vf), 'RUNNING');
  await c.call('vf.setState', { vf, state: 'RUNNING_P2P' });
  expectError(t, await c.callError('vf.load', { vf, offset: 0, data }), -33002, 'ILLEGAL_TRANSITION');
  t.is(await stateOf(c, vf), 'RUNNING_P2P');
  const reference = await snapshot(c, vf);
  await c.call('vf.setState', { vf, state: 'STOP_COPY' });
  const head = Buffer.from(base64Of((await c.call('vf.save', { vf, maxBytes: 777 })).data), 'base64');
  expectError(t, await c.callError('vf.load', { vf, offset: 0, data }), -33002, 'ILLEGAL_TRANSITION');
  t.is(await stateOf(c, vf), 'STOP_COPY');
  t.true(Buffer.concat([head, await readStream(c, vf)]).equals(reference), 'the save stream was disturbed');
  await c.call('vf.setState', { vf, state: 'STOP' });
  await stillServes(t, vf, 'STOP');
});

// ---------------------------------------------------------------- refused loads

test('a truncated state is refused (STATE_CORRUPT) when RESUMING ends, by vf.setState or vf.resume; the VF is left stopped and unchanged', async (t) => {
  const { id: vf } = ownVf();
  const c = await connect(t);
  const reference = await snapshot(c, vf);
  for (const [how, cut] of [['setState', reference.length - 1], ['resume', 10], ['setState', Math.floor(reference.length / 2)]] as const) {
    await load(c, vf, reference.subarray(0, cut));
    t.is(await stateOf(c, vf), 'RESUMING');
    const error = how === 'resume' ? await c.callError('vf.resume', { vf }) : await c.callError('vf.setState', { vf, state: 'STOP' });
    expectError(t, error, -33007, 'STATE_CORRUPT');
    t.is(error.data?.state, 'STOP', `${how} after ${cut} bytes`);
    await unchangedAfterLoad(t, c, vf, reference);
  }
  // Leaving RESUMING with nothing loaded is refused the same way.
  await c.call('vf.setState', { vf, state: 'RESUMING' });
  expectError(t, await c.callError('vf.setState', { vf, state: 'STOP' }), -33007, 'STATE_CORRUPT');
  await unchangedAfterLoad(t, c, vf, reference);
});

test('a state with one payload byte flipped is refused (STATE_CORRUPT); the VF is left stopped and unchanged', async (t) => {
  const { id: vf } = ownVf();
  const c = await connect(t);
  const reference = await snapshot(c, vf);
  // This VF's own state with one payload byte flipped, so the flip is the only difference.
  const damaged = Buffer.from(reference);
  const at = reference.length - 4 - 1000;
  damaged[at] = (damaged[at] ?? 0) ^ 0x01;
  // The record is checked as it arrives: the slice that completes it is refused, and only that one.
  const refusal = await loadUntilRefused(c, vf, damaged);
  expectError(t, refusal.error, -33007, 'STATE_CORRUPT');
  t.is(refusal.error.data?.state, 'RESUMING', 'a refused slice changes nothing: the resume is still open');
  t.is(refusal.offset, Math.floor((damaged.length - 1) / 30000) * 30000, 'refused with the slice that ends the damaged record');
  // Leaving RESUMING without the rest is refused, and the VF is as it was.
  expectError(t, await c.callError('vf.setState', { vf, state: 'STOP' }), -33007, 'STATE_CORRUPT');
  await unchangedAfterLoad(t, c, vf, reference);
});

test('a state whose CRC is valid but whose model is another is refused (STATE_INCOMPATIBLE); the VF is left stopped and unchanged', async (t) => {
  const { id: vf } = ownVf();
  const c = await connect(t);
  const reference = await snapshot(c, vf);
  const edits: [string, (d: Record<string, unknown>) => void][] = [
    ['another model', (d) => { (d.identity as Record<string, unknown>).model = 'acme/other-device'; }],
    ['another format', (d) => { (d.format as Record<string, unknown>).name = 'nvme-emu'; }],
    ['another format version', (d) => { (d.format as Record<string, unknown>).version = 99; }],
    ['another vendor', (d) => { (d.format as Record<string, unknown>).vendor = '00000000-0000-4000-8000-000000000001'; }],
  ];
  for (const [label, edit] of edits) {
    // The descriptor is the stream's first record: the first slice is refused, and the VF never leaves STOP.
    const refusal = await loadUntilRefused(c, vf, reseal(reference, edit));
    expectError(t, refusal.error, -33008, 'STATE_INCOMPATIBLE');
    t.is(refusal.offset, 0, label);
    t.is(refusal.error.data?.state, 'STOP', label);
    await unchangedAfterLoad(t, c, vf, reference);
  }
  // The same reseal with nothing changed is accepted: the refusals above are about the identity, not the envelope.
  await load(c, vf, reseal(reference, () => undefined));
  await c.call('vf.setState', { vf, state: 'STOP' });
  await unchangedAfterLoad(t, c, vf, reference);
});

test('a state of a VF with another state size is refused (STATE_INCOMPATIBLE); the VF is left stopped and unchanged', async (t) => {
  const { id: vf } = ownVf();
  const c = await connect(t);
  const reference = await snapshot(c, vf);
  const o = await connect(t, other);
  await o.call('vf.quiesce', { vf: 'blob0' });
  const foreign = await readStream(o, 'blob0', 0);
  await o.call('vf.setState', { vf: 'blob0', state: 'STOP' });
  t.not(foreign.length, reference.length);
  const refusal = await loadUntilRefused(c, vf, foreign);
  expectError(t, refusal.error, -33008, 'STATE_INCOMPATIBLE');
  t.is(refusal.offset, 0, 'refused with the descriptor, in the first slice');
  await unchangedAfterLoad(t, c, vf, reference);
});

test('a load slice with a gap gets STREAM_OFFSET with expected; the resume session goes on from there', async (t) => {
  const { id: vf } = ownVf();
  const c = await connect(t);
  const reference = await snapshot(c, vf);
  await load(c, vf, reference.subarray(0, 30000));
  const error = await c.callError('vf.load', { vf, offset: 30001, data: reference.subarray(30001, 40000).toString('base64') });
  expectError(t, error, -33006, 'STREAM_OFFSET');
  t.is(error.data?.expected, 30000);
  // A slice that differs from what was already received is refused the same way.
  const differing = Buffer.from(reference.subarray(100, 200));
  differing[5] = (differing[5] ?? 0) ^ 0xff;
  const error2 = await c.callError('vf.load', { vf, offset: 100, data: differing.toString('base64') });
  expectError(t, error2, -33006, 'STREAM_OFFSET');
  t.is(error2.data?.expected, 30000);
  // Nothing else moved: still RESUMING, nothing more received; the last slice sent again is fine.
  t.is(await stateOf(c, vf), 'RESUMING');
  const retry = await c.call('vf.load', { vf, offset: 0, data: reference.subarray(0, 30000).toString('base64') });
  t.like(retry, { state: 'RESUMING', received: 30000, totalBytes: null, complete: false });
  await load(c, vf, reference.subarray(30000), 30000);
  await c.call('vf.setState', { vf, state: 'STOP' });
  await unchangedAfterLoad(t, c, vf, reference);
});

test('invalid base64 in vf.load data gets -32602 and the VF does not even enter RESUMING', async (t) => {
  const { id: vf } = ownVf();
  const c = await connect(t);
  const reference = await snapshot(c, vf);
  for (const data of ['!!!!', 'AAA', 'AA=A', 'A===', 'QUJD\nRA==', 'QUJDRA', ' QUJD']) {
    const error = await c.callError('vf.load', { vf, offset: 0, data });
    expectError(t, error, -32602, 'INVALID_PARAMS');
    const errors = error.data?.errors as { path: string }[] | undefined;
    t.true(errors?.some((e) => e.path === '/data'), `${JSON.stringify(data)}: ${JSON.stringify(errors)}`);
    t.is(await stateOf(c, vf), 'STOP', `after ${JSON.stringify(data)}`);
  }
  // Mid-stream, it leaves the session and what was received as they were.
  await load(c, vf, reference.subarray(0, 1000));
  expectError(t, await c.callError('vf.load', { vf, offset: 1000, data: 'not base64!' }), -32602, 'INVALID_PARAMS');
  const progress = await c.call('vf.load', { vf, offset: 1000, data: '' });
  t.like(progress, { state: 'RESUMING', received: 1000 });
  await load(c, vf, reference.subarray(1000), 1000);
  await c.call('vf.setState', { vf, state: 'STOP' });
  await unchangedAfterLoad(t, c, vf, reference);
});

test('base64url characters ("-", "_") in vf.load data are not RFC 4648 base64 and get -32602', async (t) => {
  // schemas/common.json: base64 is "RFC 4648, with padding"; "-" and "_" are the
  // URL-safe alphabet (RFC 4648 §5), not base64 (§4). Node's decoder takes both.
  const { id: vf } = ownVf();
  const c = await connect(t);
  await c.call('vf.quiesce', { vf });
  for (const data of ['QU-_', 'QUJD-w==', '__8=']) {
    const error = await c.callError('vf.load', { vf, offset: 0, data }).catch((e: unknown) => e as RpcError);
    t.is(error.code, -32602, `${data} was accepted as base64`);
    t.is(await stateOf(c, vf), 'STOP', `${data}: the VF entered RESUMING`);
  }
  await stillServes(t, vf, 'STOP');
});

test('a state longer than its header announces, or not a vfmigd state at all, is refused at once (STATE_CORRUPT) and the slice changes nothing', async (t) => {
  const { id: vf } = ownVf();
  const c = await connect(t);
  const reference = await snapshot(c, vf);
  // Extra bytes after the CRC: the slice is refused, the session keeps the whole state it had.
  await load(c, vf, reference);
  let error = await c.callError('vf.load', { vf, offset: reference.length, data: Buffer.from('more').toString('base64') });
  expectError(t, error, -33007, 'STATE_CORRUPT');
  t.is(error.data?.state, 'RESUMING');
  t.is(await stateOf(c, vf), 'RESUMING');
  await c.call('vf.setState', { vf, state: 'STOP' });
  await unchangedAfterLoad(t, c, vf, reference);
  // Not our magic.
  error = await c.callError('vf.load', { vf, offset: 0, data: Buffer.alloc(64, 0x41).toString('base64') });
  expectError(t, error, -33007, 'STATE_CORRUPT');
  await unchangedAfterLoad(t, c, vf, reference);
});

test('an oversized message gets MESSAGE_TOO_LARGE and closes its connection; the VF is untouched and the agent serves on', async (t) => {
  const { id: vf } = ownVf();
  const c = await connect(t);
  const reference = await snapshot(c, vf);
  const victim = await connect(t);
  const big = Buffer.alloc(MiB, 0x42).toString('base64');
  victim.sendRaw(`${JSON.stringify({ jsonrpc: '2.0', method: 'vf.load', params: { vf, offset: 0, data: big }, id: 1 })}\n`);
  const r = await victim.nextUnmatched() as { id: unknown; error: { code: number; data: { code: string; limit: number } } };
  t.is(r.id, null);
  t.is(r.error.code, -32001);
  t.is(r.error.data.code, 'MESSAGE_TOO_LARGE');
  t.is(r.error.data.limit, MiB);
  t.is(await victim.nextUnmatched(), undefined, 'the connection was not closed');
  t.true(victim.closed);
  await unchangedAfterLoad(t, c, vf, reference);
});
