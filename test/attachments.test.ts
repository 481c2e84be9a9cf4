/**
 * Binary attachments (rpc.enableAttachments): state bytes in raw frames on
 * the same connection, byte for byte what base64 carries; every way a
 * client can get the framing wrong is answered and changes nothing. Real
 * agent, blob-bench VFs (self-checking states: a byte moved wrong fails
 * the load).
 */
import test from 'ava';
import { startAgentProcess, type AgentProcess } from './support/agent-process.ts';
import { attachmentOf, base64Of, RpcClient } from './support/rpc-client.ts';

const STATE_BYTES = 1024 * 1024;
const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

async function blobAgent(t: { teardown(fn: () => Promise<void> | void): void }): Promise<AgentProcess> {
  const agent = await startAgentProcess({
    config: { limits: { maxMessageBytes: MAX_MESSAGE_BYTES }, drivers: [{ driver: 'blob-bench', options: { vfCount: 2, stateBytes: STATE_BYTES } }] },
  });
  t.teardown(async () => { await agent.stop(); });
  return agent;
}

async function client(t: { teardown(fn: () => Promise<void> | void): void }, agent: AgentProcess): Promise<RpcClient> {
  const rpc = await RpcClient.connect(agent.tcp);
  t.teardown(() => rpc.destroy());
  return rpc;
}

function frame(bytes: Buffer, length = bytes.length): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(length, 1);
  return Buffer.concat([header, bytes]);
}

test('a state saved and loaded over attachments moves byte for byte, with no base64; a connection without them still gets base64', async (t) => {
  const agent = await blobAgent(t);
  const rpc = await client(t, agent);
  const plain = await client(t, agent);
  t.deepEqual(await rpc.enableAttachments(), { version: 1, maxBytes: MAX_MESSAGE_BYTES });
  t.deepEqual(await rpc.enableAttachments(), { version: 1, maxBytes: MAX_MESSAGE_BYTES }, 'a second call changes nothing');

  await rpc.call('vf.setState', { vf: 'blob0', state: 'STOP_COPY' });
  const slices: Buffer[] = [];
  let last = { offset: 0, length: 0 };
  for (let eof = false; !eof;) {
    const { response, attachment } = await rpc.requestAttached('vf.save', { vf: 'blob0', maxBytes: 100_003 });
    const result = response.result as { data: unknown; offset: number; length: number; eof: boolean };
    t.truthy(attachment, 'every slice comes as an attachment');
    t.deepEqual(result.data, { attachment: attachment?.length });
    t.is(result.length, attachment?.length ?? -1);
    slices.push(attachment ?? Buffer.alloc(0));
    last = result;
    eof = result.eof;
  }
  const stream = Buffer.concat(slices);
  t.true(stream.length > STATE_BYTES);
  // The last slice again, over a connection without attachments: the same bytes, in base64.
  const again = await plain.call('vf.save', { vf: 'blob0', offset: last.offset, maxBytes: 100_003 });
  t.true(Buffer.from(base64Of(again.data), 'base64').equals(slices.at(-1) ?? Buffer.alloc(0)));

  await rpc.call('vf.setState', { vf: 'blob1', state: 'STOP' });
  for (let offset = 0; offset < stream.length; offset += 65_537) {
    const piece = stream.subarray(offset, offset + 65_537);
    const { response } = await rpc.requestAttached('vf.load', { vf: 'blob1', offset, data: { attachment: piece.length } }, piece);
    t.true('result' in response, JSON.stringify(response).slice(0, 200));
  }
  // Leaving RESUMING has blob-bench check every page and the sums over them.
  t.like(await rpc.call('vf.setState', { vf: 'blob1', state: 'STOP' }), { state: 'STOP' });
  await rpc.call('vf.setState', { vf: 'blob0', state: 'STOP' });

  // Inside a batch a save answers in base64: a frame belongs to one message, not to an entry of one.
  await rpc.call('vf.setState', { vf: 'blob1', state: 'STOP_COPY' });
  rpc.sendRaw(`${JSON.stringify([{ jsonrpc: '2.0', id: 'b1', method: 'vf.save', params: { vf: 'blob1', maxBytes: 999 } }])}\n`);
  const batch = await rpc.nextUnmatched();
  t.true(Array.isArray(batch));
  const entry = (batch as { result: { data: unknown; length: number } }[])[0];
  t.is(typeof entry?.result.data, 'string');
  t.is(Buffer.from(base64Of(entry?.result.data as string), 'base64').length, entry?.result.length ?? -1);
  t.is(attachmentOf(batch as object), undefined);
});

test('framing mistakes are answered, change nothing, and leave the connection usable', async (t) => {
  const agent = await blobAgent(t);
  const rpc = await client(t, agent);
  const plain = await client(t, agent);
  await rpc.enableAttachments();
  await rpc.call('vf.setState', { vf: 'blob1', state: 'STOP' });
  const untouched = async (): Promise<void> => {
    t.like(await plain.call('vf.get', { vf: 'blob1' }), { state: 'STOP', session: null });
  };
  const bytes = Buffer.alloc(4096, 7);

  const noFrame = await rpc.requestAttached('vf.load', { vf: 'blob1', offset: 0, data: { attachment: 4096 } });
  t.like(noFrame.response, { error: { code: -32602, data: { code: 'INVALID_PARAMS', errors: [{ path: '/data', message: 'names an attachment, but none came before the request' }] } } });
  await untouched();

  const short = await rpc.requestAttached('vf.load', { vf: 'blob1', offset: 0, data: { attachment: 4097 } }, bytes);
  t.like(short.response, { error: { code: -32602, data: { errors: [{ path: '/data/attachment', message: 'is 4097, but the attachment holds 4096 bytes' }] } } });
  await untouched();

  const base64AndFrame = await rpc.requestAttached('vf.load', { vf: 'blob1', offset: 0, data: bytes.toString('base64') }, bytes);
  t.like(base64AndFrame.response, { error: { code: -32602, data: { errors: [{ path: '/', message: 'name no attachment in "data", but one came with the request' }] } } });
  await untouched();

  const takesNone = await rpc.requestAttached('vf.getState', { vf: 'blob1' }, bytes);
  t.like(takesNone.response, { error: { code: -32602, data: { errors: [{ path: '/', message: 'take no attachment, but one came with the request' }] } } });

  rpc.sendRaw(Buffer.concat([frame(bytes), frame(bytes), Buffer.from(`${JSON.stringify({ jsonrpc: '2.0', id: 'two', method: 'vf.load', params: { vf: 'blob1', offset: 0, data: { attachment: 4096 } } })}\n`)]));
  t.like(await rpc.nextUnmatched(), { id: 'two', error: { code: -32600, message: 'Invalid Request' } });
  await untouched();

  rpc.sendRaw(Buffer.concat([frame(bytes), Buffer.from(`${JSON.stringify([{ jsonrpc: '2.0', id: 'b', method: 'vf.load', params: { vf: 'blob1', offset: 0, data: { attachment: 4096 } } }])}\n`)]));
  t.like(await rpc.nextUnmatched(), { id: null, error: { code: -32600 } });
  await untouched();

  // Without rpc.enableAttachments a frame is junk, and a reference to one names nothing.
  const unnamed = await plain.callError('vf.load', { vf: 'blob1', offset: 0, data: { attachment: 1 } });
  t.like(unnamed, { code: -32602 });
  plain.sendRaw(Buffer.concat([frame(Buffer.from('x')), Buffer.from('\n')]));
  t.like(await plain.nextUnmatched(), { id: null, error: { code: -32700 } });
  await untouched();

  t.like(await rpc.call('vf.getState', { vf: 'blob1' }), { state: 'STOP' }, 'the connection still serves calls');

  // A frame longer than the limit is refused when its length is read, as an oversized message is.
  rpc.sendRaw(frame(Buffer.alloc(0), MAX_MESSAGE_BYTES + 1));
  t.like(await rpc.nextUnmatched(), { error: { data: { code: 'MESSAGE_TOO_LARGE' } } });
  await agent.waitForLog('message too large');
  await untouched();
});

test('forty saves in flight over attachments, answers queued in the agent: no buffer is read into again before it is written, and the state loads whole', async (t) => {
  const agent = await startAgentProcess({
    config: { limits: { maxMessageBytes: MAX_MESSAGE_BYTES, maxInFlightPerConnection: 64 }, drivers: [{ driver: 'blob-bench', options: { vfCount: 2, stateBytes: 32 * 1024 * 1024 } }] },
  });
  t.teardown(async () => { await agent.stop(); });
  const rpc = await client(t, agent);
  await rpc.enableAttachments();
  await rpc.call('vf.setState', { vf: 'blob0', state: 'STOP_COPY' });
  const first = await rpc.requestAttached('vf.save', { vf: 'blob0', maxBytes: 1024 * 1024, offset: 0 });
  const total = (first.response.result as { totalBytes: number }).totalBytes;
  const slices: Buffer[] = [first.attachment ?? Buffer.alloc(0)];
  // Every remaining slice asked for at once: the agent answers them in order, faster than the socket drains.
  const offsets: number[] = [];
  for (let at = 1024 * 1024; at < total; at += 1024 * 1024) offsets.push(at);
  t.true(offsets.length >= 30);
  const answers = await Promise.all(offsets.map((offset) => rpc.requestAttached('vf.save', { vf: 'blob0', maxBytes: 1024 * 1024, offset })));
  for (const a of answers) slices.push(a.attachment ?? Buffer.alloc(0));
  // And the last slice again, several times over, while its buffers may be wanted by nothing else.
  const again = await Promise.all([0, 1, 2].map(() => rpc.requestAttached('vf.save', { vf: 'blob0', maxBytes: 1024 * 1024, offset: offsets.at(-1) ?? 0 })));
  for (const a of again) t.true(a.attachment?.equals(slices.at(-1) ?? Buffer.alloc(0)), 'the last slice again, unchanged');
  const stream = Buffer.concat(slices);
  t.is(stream.length, total);
  await rpc.call('vf.setState', { vf: 'blob1', state: 'STOP' });
  for (let at = 0; at < stream.length; at += 1024 * 1024) {
    const piece = stream.subarray(at, at + 1024 * 1024);
    await rpc.requestAttached('vf.load', { vf: 'blob1', offset: at, data: { attachment: piece.length } }, piece);
  }
  // Every record's CRC32C, and blob-bench's check of every page against its version.
  t.is((await rpc.call('vf.resume', { vf: 'blob1' })).state, 'RUNNING');
});

test('a client that asks for forty slices and hangs up: the agent drops their answers, and the next migration of the VF moves byte for byte', async (t) => {
  const agent = await startAgentProcess({
    config: { limits: { maxMessageBytes: MAX_MESSAGE_BYTES, maxInFlightPerConnection: 64 }, drivers: [{ driver: 'blob-bench', options: { vfCount: 2, stateBytes: 32 * 1024 * 1024 } }] },
  });
  t.teardown(async () => { await agent.stop(); });
  const gone = await client(t, agent);
  await gone.enableAttachments();
  await gone.call('vf.setState', { vf: 'blob0', state: 'STOP_COPY' });
  const first = await gone.requestAttached('vf.save', { vf: 'blob0', maxBytes: 1024 * 1024, offset: 0 });
  t.truthy(first.attachment);
  for (let i = 1; i <= 40; i += 1) gone.sendRaw(`${JSON.stringify({ jsonrpc: '2.0', id: `s${i}`, method: 'vf.save', params: { vf: 'blob0', maxBytes: 1024 * 1024, offset: i * 1024 * 1024 } })}\n`);
  gone.destroy();
  // Another connection of the same principal cancels what is left of it (the VMM's cancel), then migrates again.
  const rpc = await client(t, agent);
  await rpc.enableAttachments();
  t.like(await rpc.call('vf.setState', { vf: 'blob0', state: 'RUNNING' }), { state: 'RUNNING' });
  await rpc.call('vf.setState', { vf: 'blob0', state: 'STOP_COPY' });
  await rpc.call('vf.setState', { vf: 'blob1', state: 'STOP' });
  let offset = 0;
  for (let eof = false; !eof;) {
    const { response, attachment } = await rpc.requestAttached('vf.save', { vf: 'blob0', maxBytes: 1024 * 1024 });
    const result = response.result as { offset: number; eof: boolean };
    t.is(result.offset, offset);
    const bytes = attachment ?? Buffer.alloc(0);
    await rpc.requestAttached('vf.load', { vf: 'blob1', offset, data: { attachment: bytes.length } }, bytes);
    offset += bytes.length;
    eof = result.eof;
  }
  t.is((await rpc.call('vf.resume', { vf: 'blob1' })).state, 'RUNNING', 'every record and every page checked');
});
