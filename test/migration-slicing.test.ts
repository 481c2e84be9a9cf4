/**
 * Moving a state in slices of any size, on a fast driver (blob-bench: a
 * 300 KiB state whose digest the destination checks at commit): the
 * stop-copy size is exact before the save opens and after every slice, a
 * slice whose answer was lost can be asked for again, and a destination
 * takes the stream in slices of another size than the source's.
 */
import test from 'ava';
import { startAgentProcess, type AgentProcess } from './support/agent-process.ts';
import { base64Of, RpcClient } from './support/rpc-client.ts';

const MiB = 1024 * 1024;
const STATE_BYTES = 300 * 1024;

async function agent(t: { teardown(fn: () => Promise<void> | void): void }): Promise<{ process: AgentProcess; rpc: RpcClient }> {
  const process = await startAgentProcess({ config: { drivers: [{ driver: 'blob-bench', options: { vfCount: 1, stateBytes: STATE_BYTES } }] } });
  t.teardown(async () => { await process.stop(); });
  const rpc = await RpcClient.connect(process.tcp);
  t.teardown(() => rpc.destroy());
  return { process, rpc };
}

for (const [saveBytes, loadBytes] of [[MiB, 509], [4093, MiB], [509, 4093]] as const) {
  test(`saved in ${saveBytes}-byte slices, loaded in ${loadBytes}-byte slices: exact sizes all the way, and the destination verifies every byte`, async (t) => {
    const source = await agent(t);
    const destination = await agent(t);
    await source.rpc.call('vf.quiesce', { vf: 'blob0' });
    const estimate = (await source.rpc.call('vf.pending', { vf: 'blob0' })).stopCopyBytes;
    const parts: Buffer[] = [];
    let session: string | undefined;
    for (let offset = 0; ;) {
      const slice = await source.rpc.call('vf.save', { vf: 'blob0', maxBytes: saveBytes, ...(session === undefined ? {} : { session }) });
      session = slice.session;
      t.is(slice.offset, offset);
      t.is(slice.totalBytes, estimate, 'the total is known exactly from the start');
      t.is(slice.remaining, estimate - offset - slice.length);
      t.is((await source.rpc.call('vf.pending', { vf: 'blob0' })).pendingBytes, slice.remaining);
      parts.push(Buffer.from(base64Of(slice.data), 'base64'));
      offset += slice.length;
      if (slice.eof) break;
      t.is(slice.length, saveBytes, 'every slice but the last is full');
    }
    const stream = Buffer.concat(parts);
    t.is(stream.length, estimate);
    t.true(stream.length > STATE_BYTES, 'the stream frames the state');

    await destination.rpc.call('vf.setState', { vf: 'blob0', state: 'STOP' });
    for (let at = 0; at < stream.length; at += loadBytes) {
      const progress = await destination.rpc.call('vf.load', { vf: 'blob0', offset: at, data: stream.subarray(at, at + loadBytes).toString('base64') });
      t.is(progress.complete, at + loadBytes >= stream.length);
    }
    t.is((await destination.rpc.call('vf.resume', { vf: 'blob0' })).state, 'RUNNING', 'the digest of the state checked out');
  });
}

test('a slice whose answer was lost can be asked for again, on both sides; nothing else out of order is taken', async (t) => {
  const source = await agent(t);
  const destination = await agent(t);
  await source.rpc.call('vf.quiesce', { vf: 'blob0' });
  const first = await source.rpc.call('vf.save', { vf: 'blob0', maxBytes: 100_000 });
  const again = await source.rpc.call('vf.save', { vf: 'blob0', maxBytes: 100_000, offset: 0 });
  t.is(again.data, first.data, 'the same slice again');
  const second = await source.rpc.call('vf.save', { vf: 'blob0', maxBytes: 100_000, offset: 100_000 });
  t.is(second.offset, 100_000);
  const stale = await source.rpc.callError('vf.save', { vf: 'blob0', maxBytes: 100_000, offset: 0 });
  t.like(stale.data, { code: 'STREAM_OFFSET', expected: 200_000 });
  const ahead = await source.rpc.callError('vf.save', { vf: 'blob0', maxBytes: 100_000, offset: 300_000 });
  t.like(ahead.data, { code: 'STREAM_OFFSET', expected: 200_000 });

  await destination.rpc.call('vf.setState', { vf: 'blob0', state: 'STOP' });
  const firstBytes = Buffer.from(base64Of(first.data), 'base64');
  const loaded = await destination.rpc.call('vf.load', { vf: 'blob0', offset: 0, data: first.data });
  t.like(await destination.rpc.call('vf.load', { vf: 'blob0', offset: 0, data: first.data }), { received: loaded.received }, 'the same slice again is taken as done');
  const changed = Buffer.from(firstBytes);
  changed[7] = (changed[7] ?? 0) ^ 1;
  t.like((await destination.rpc.callError('vf.load', { vf: 'blob0', offset: 0, data: changed.toString('base64') })).data, { code: 'STREAM_OFFSET', expected: 100_000 });
  t.like((await destination.rpc.callError('vf.load', { vf: 'blob0', offset: 100_001, data: 'AAAA' })).data, { code: 'STREAM_OFFSET', expected: 100_000 });
  t.like(await destination.rpc.call('vf.load', { vf: 'blob0', offset: 100_000, data: second.data }), { received: 200_000, complete: false });
});
