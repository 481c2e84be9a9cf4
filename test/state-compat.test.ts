/**
 * States saved by older agents still load: a v1 envelope written by the
 * agent of 2026-12 (test/fixtures/README.md says how) is loaded into a VF of
 * the same configuration, and the VF runs on with the controller state it
 * carried.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { NvmeEmuDetails, NvmeEmuVf } from '../schemas/types.ts';
import { startAgentProcess, tempDir } from './support/agent-process.ts';
import { RpcClient } from './support/rpc-client.ts';

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
