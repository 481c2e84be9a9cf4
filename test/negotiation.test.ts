/**
 * Negotiation before anything stops: the formats a VF saves and loads, the
 * descriptor a source hands out while it runs, a destination's verdict on
 * it (touching nothing), and a save in the format asked for. Real agents,
 * nvme-emu VFs of the same and of another identity.
 */
import test from 'ava';
import { join } from 'node:path';
import type { NvmeEmuVf } from '../schemas/types.ts';
import { startAgentProcess, tempDir } from './support/agent-process.ts';
import { RpcClient } from './support/rpc-client.ts';

const VF = 'nvme0';

async function agentWith(t: { teardown(fn: () => Promise<void> | void): void }, vf: NvmeEmuVf): Promise<RpcClient> {
  const agent = await startAgentProcess({ config: { drivers: [{ driver: 'nvme-emu', options: { vfs: [vf] } }] } });
  t.teardown(async () => { await agent.stop(); });
  const rpc = await RpcClient.connect(agent.tcp);
  t.teardown(() => rpc.destroy());
  return rpc;
}

function vfConfig(dir: string, serial = 'VFMIG-NEGOTIATE'): NvmeEmuVf {
  return { id: VF, bdf: '0000:3b:00.2', serial, namespaces: [{ path: join(dir, `${serial}.img`), sizeBytes: 4 * 1024 * 1024 }] };
}

test('a source hands out its descriptor while it runs; a destination judges it touching nothing, and says why not', async (t) => {
  const dir = tempDir();
  const source = await agentWith(t, vfConfig(dir));
  const twin = await agentWith(t, vfConfig(dir));
  const other = await agentWith(t, vfConfig(dir, 'SOMEONE-ELSE'));

  const { formats } = await source.call('vf.formats', { vf: VF });
  t.true(formats.length >= 1);
  t.like(formats[0], { save: true, load: true });
  const { descriptor } = await source.call('vf.stateDescriptor', { vf: VF });
  t.is((await source.call('vf.getState', { vf: VF })).state, 'RUNNING', 'the source was not stopped');
  t.is((await source.call('vf.get', { vf: VF })).session, null, 'and nothing was opened');
  t.like(descriptor, { format: { name: formats[0]?.name, version: formats[0]?.version, vendor: formats[0]?.vendor }, identity: { serialNumber: 'VFMIG-NEGOTIATE' } });

  t.like(await twin.call('vf.checkCompatibility', { vf: VF, descriptor }), { compatible: true, reason: null, format: { name: descriptor.format.name } });
  const foreign = await other.call('vf.checkCompatibility', { vf: VF, descriptor });
  t.false(foreign.compatible);
  t.regex(foreign.reason ?? '', /serialNumber differs/);
  t.is(foreign.format, null);
  const newer = await twin.call('vf.checkCompatibility', { vf: VF, descriptor: { ...descriptor, format: { ...descriptor.format, version: descriptor.format.version + 1 } } });
  t.false(newer.compatible);
  t.regex(newer.reason ?? '', /is not one VF nvme0 loads/);
  const otherVendor = await twin.call('vf.checkCompatibility', { vf: VF, descriptor: { ...descriptor, format: { ...descriptor.format, vendor: '00000000-0000-4000-8000-000000000001' } } });
  t.false(otherVendor.compatible, 'a format of the same name from another vendor is another format');
  for (const rpc of [twin, other]) {
    t.is((await rpc.call('vf.getState', { vf: VF })).state, 'RUNNING', 'the destination was touched by nothing');
    t.is((await rpc.call('vf.get', { vf: VF })).session, null);
  }
});

test('a save is in the format asked for; a format the VF does not save in is refused, and nothing moves', async (t) => {
  const dir = tempDir();
  const source = await agentWith(t, vfConfig(dir));
  const { formats } = await source.call('vf.formats', { vf: VF });
  const format = { name: formats[0]?.name ?? '', version: formats[0]?.version ?? 0 };
  await source.call('vf.quiesce', { vf: VF });
  const refused = await source.callError('vf.save', { vf: VF, format: { name: 'no-such-format', version: 1 } });
  t.like(refused.data, { code: 'STATE_INCOMPATIBLE', state: 'STOP' });
  t.is((await source.call('vf.get', { vf: VF })).session, null, 'no save was opened');
  const slice = await source.call('vf.save', { vf: VF, maxBytes: 100, format });
  t.is(slice.offset, 0);
  t.like((await source.callError('vf.save', { vf: VF, format: { ...format, version: format.version + 1 } })).data, { code: 'STATE_INCOMPATIBLE' }, 'the open save is in another format');
  t.is((await source.call('vf.save', { vf: VF, maxBytes: 100 })).offset, 100, 'and the refusal moved nothing');
});
