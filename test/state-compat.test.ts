/**
 * States of other agents' versions: a v1 envelope written by the agent of
 * 2026-12 (test/fixtures/README.md says how) is loaded into a VF of the
 * same configuration, and the VF runs on with the controller state it
 * carried; a stream of a newer agent, with a record this one does not know,
 * loads if that record is optional and is refused, changing nothing, if it
 * is mandatory.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { NvmeEmuDetails, NvmeEmuVf } from '../schemas/types.ts';
import { startAgentProcess, tempDir } from './support/agent-process.ts';
import { OPTIONAL, RecordStreamWriter, TAG, type StreamDescriptor } from '../agent/core/state-records.ts';
import { base64Of, RpcClient } from './support/rpc-client.ts';

/** dist/test → test/fixtures in the source tree. */
const FIXTURES = new URL('../../test/fixtures/', import.meta.url);
const CSTS = 0x1c;

test('a v1 envelope saved by the agent of 2026-12 loads, and the VF runs with its three I/O queues', async (t) => {
  const stream = readFileSync(new URL('nvme-emu-v1-envelope.bin', FIXTURES));
  t.is(stream.subarray(0, 8).toString('latin1'), 'VFMIGST\n');
  t.is(stream.readUInt16LE(8), 1, 'an envelope of version 1');
  const dir = tempDir();
  const vf: NvmeEmuVf = { id: 'nvme0', bdf: '0000:3b:00.2', serial: 'VFMIG-V1-FIXTURE', namespaces: [{ nsid: 1, path: join(dir, 'ns1.img'), sizeBytes: 4 * 1024 * 1024, blockSize: 512 }] };
  const agent = await startAgentProcess({ config: { drivers: [{ driver: 'nvme-emu', options: { hostPort: true, vfs: [vf] } }] } });
  t.teardown(async () => { await agent.stop(); });
  const rpc = await RpcClient.connect(agent.tcp);
  t.teardown(() => rpc.destroy());

  t.is((await rpc.call('vf.setState', { vf: 'nvme0', state: 'STOP' })).state, 'STOP');
  // In two slices, at an odd boundary.
  await rpc.call('vf.load', { vf: 'nvme0', offset: 0, data: stream.subarray(0, 509).toString('base64') });
  await rpc.call('vf.load', { vf: 'nvme0', offset: 509, data: stream.subarray(509).toString('base64') });
  t.is((await rpc.call('vf.resume', { vf: 'nvme0' })).state, 'RUNNING');
  const details = (await rpc.call('vf.get', { vf: 'nvme0' })).details as NvmeEmuDetails;
  t.is(details.queues.active, 3);
  t.is((await rpc.call('emu.mmioRead', { vf: 'nvme0', offset: CSTS })).value & 1, 1, 'CSTS.RDY: the controller is enabled, as saved');
});

/** The records of a v2 stream: tag, flags and body of each, after the preamble. */
function recordsOf(stream: Buffer): { tag: number; flags: number; body: Buffer }[] {
  const records: { tag: number; flags: number; body: Buffer }[] = [];
  for (let at = 16; at < stream.length;) {
    const length = Number(stream.readBigUInt64LE(at + 8));
    records.push({ tag: stream.readUInt32LE(at), flags: stream.readUInt32LE(at + 4), body: stream.subarray(at + 16, at + 16 + length) });
    at += 16 + length + 4;
  }
  return records;
}

/** `stream` as a newer agent would write it: the same, with one more record after the descriptor. */
function withRecord(stream: Buffer, tag: number, flags: number, body: Buffer): Buffer {
  const writer = new RecordStreamWriter();
  const records = recordsOf(stream);
  const descriptor = JSON.parse((records[0]?.body ?? Buffer.alloc(0)).toString('utf8')) as StreamDescriptor;
  const pieces = [...writer.begin(descriptor), ...writer.other(tag, flags, body)];
  for (const r of records) if (r.tag === TAG.DEVICE_DATA) pieces.push(...writer.data(r.body));
  pieces.push(...writer.end());
  return Buffer.concat(pieces);
}

test('a newer agent\'s stream: an unknown optional record is skipped and the state loads; an unknown mandatory one is refused and nothing changes', async (t) => {
  const agent = await startAgentProcess({ config: { drivers: [{ driver: 'blob-bench', options: { vfCount: 2, stateBytes: 64 * 1024 } }] } });
  t.teardown(async () => { await agent.stop(); });
  const rpc = await RpcClient.connect(agent.tcp);
  t.teardown(() => rpc.destroy());
  await rpc.call('vf.setState', { vf: 'blob0', state: 'STOP_COPY' });
  const saved = await rpc.call('vf.save', { vf: 'blob0', maxBytes: 4 * 1024 * 1024 });
  t.true(saved.eof);
  const stream = Buffer.from(base64Of(saved.data), 'base64');
  const hint = Buffer.from(JSON.stringify({ migrationHint: 'from a newer agent' }));

  const mandatory = withRecord(stream, 0x7001, 0, hint);
  await rpc.call('vf.setState', { vf: 'blob1', state: 'STOP' });
  const refused = await rpc.callError('vf.load', { vf: 'blob1', offset: 0, data: mandatory.toString('base64') });
  t.is(refused.data?.code, 'STATE_INCOMPATIBLE');
  t.regex(refused.message + JSON.stringify(refused.data), /mandatory|record|7001|28673/i);
  t.like(await rpc.call('vf.get', { vf: 'blob1' }), { state: 'STOP', session: null }, 'the refused slice changed nothing');

  const optional = withRecord(stream, 0x7001, OPTIONAL, hint);
  t.true(optional.length > stream.length);
  // In two slices, the optional record cut between them.
  const cut = 16 + 16 + (recordsOf(stream)[0]?.body.length ?? 0) + 4 + 10;
  await rpc.call('vf.load', { vf: 'blob1', offset: 0, data: optional.subarray(0, cut).toString('base64') });
  await rpc.call('vf.load', { vf: 'blob1', offset: cut, data: optional.subarray(cut).toString('base64') });
  // Leaving RESUMING has blob-bench check every page against the version it names.
  t.is((await rpc.call('vf.resume', { vf: 'blob1' })).state, 'RUNNING');
});
