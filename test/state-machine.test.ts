/**
 * The VFIO v2 state machine as the agent applies it to nvme-emu VFs, with
 * and without P2P: every (from, to) pair over JSON-RPC. The expected path
 * is the kernel's routing (agent/core/vfio-states.ts, itself checked against
 * an independent oracle in its unit test); here the point is that the agent
 * walks it on a real device, reports it, refuses what Linux refuses, and
 * leaves a refused VF where it was.
 */
import test from 'ava';
import { join } from 'node:path';
import { VFIO_STATES, routeTo, type VfioStateName } from '../agent/core/vfio-states.ts';
import { startAgentProcess, tempDir } from './support/agent-process.ts';
import { base64Of, RpcClient } from './support/rpc-client.ts';

const MiB = 1024 * 1024;

test('every (from, to) pair, with and without P2P, against the Linux next-step table', async (t) => {
  const dir = tempDir();
  const vf = (id: string, bdf: string) => ({ id, bdf, namespaces: [{ path: join(dir, `${id}.img`), sizeBytes: MiB }] });
  const agent = await startAgentProcess({
    config: {
      drivers: [
        { driver: 'nvme-emu', options: { p2p: true, vfs: [vf('withp2p', '0000:3b:00.2')] } },
        { driver: 'nvme-emu', options: { p2p: false, vfs: [vf('nop2p', '0000:3b:00.3')] } },
      ],
    },
  });
  t.teardown(async () => { await agent.stop(); });
  const rpc = await RpcClient.connect(agent.tcp);
  t.teardown(() => rpc.destroy());

  let pairs = 0;
  for (const [id, p2p] of [['withp2p', true], ['nop2p', false]] as const) {
    const features = { p2p, preCopy: false };
    t.is((await rpc.call('vf.get', { vf: id })).capabilities.p2p, p2p);
    // A state of this very VF, to put it in RESUMING with something valid to commit.
    await rpc.call('vf.setState', { vf: id, state: 'STOP_COPY' });
    const state = base64Of((await rpc.call('vf.save', { vf: id, offset: 0 })).data);

    const reachable = VFIO_STATES.filter((s) => s !== 'ERROR' && s !== 'PRE_COPY' && s !== 'PRE_COPY_P2P' && (p2p || s !== 'RUNNING_P2P'));
    for (const from of reachable) {
      for (const target of VFIO_STATES) {
        await rpc.call('vf.reset', { vf: id });
        await enter(rpc, id, from, state);
        t.is((await rpc.call('vf.getState', { vf: id })).state, from);
        const expected = routeTo(from, target, features);
        if (expected === undefined) {
          const refused = await rpc.callError('vf.setState', { vf: id, state: target });
          t.is(refused.data?.code, 'ILLEGAL_TRANSITION', `${id}: ${from} → ${target} must be refused`);
          t.is((await rpc.call('vf.getState', { vf: id })).state, from, `${id}: a refused ${from} → ${target} leaves the VF in ${from}`);
        } else {
          const done = await rpc.call('vf.setState', { vf: id, state: target });
          t.deepEqual(done.path, expected, `${id}: ${from} → ${target}`);
          t.is(done.from, from);
          t.is(done.state, target);
          t.is(done.value, VFIO_STATES.indexOf(target));
          t.is((await rpc.call('vf.getState', { vf: id })).state, target);
        }
        pairs += 1;
      }
    }
  }
  t.is(pairs, (5 + 4) * 8);
});

/** From RUNNING (after a reset) into `from`; RESUMING takes a loaded state. */
async function enter(rpc: RpcClient, vf: string, from: VfioStateName, state: string): Promise<void> {
  if (from === 'RUNNING') return;
  if (from === 'RESUMING') {
    await rpc.call('vf.setState', { vf, state: 'STOP' });
    await rpc.call('vf.load', { vf, offset: 0, data: state });
    return;
  }
  await rpc.call('vf.setState', { vf, state: from });
}
