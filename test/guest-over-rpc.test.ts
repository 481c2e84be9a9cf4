/**
 * A guest NVMe driver using a VF of a real agent process only through its
 * host port over JSON-RPC, as a VM would use a pass-through VF: enable,
 * identify, create I/O queues, run a verifying read/write workload. What
 * the guest reads from Identify must be what the agent reports in vf.get.
 */
import test from 'ava';
import { join } from 'node:path';
import { startAgentProcess, tempDir } from './support/agent-process.ts';
import { GuestNvme } from './support/guest-nvme.ts';
import { rpcHostPort } from './support/host-port.ts';
import { RpcClient } from './support/rpc-client.ts';
import { VerifyingWorkload } from './support/verifying-workload.ts';
import type { NvmeEmuDetails, VfGetResult } from '../schemas/types.ts';

/** An nvme-emu VF's details (the RpcClient has checked them against their schema). */
function nvmeDetails(described: VfGetResult): NvmeEmuDetails {
  if (described.driver !== 'nvme-emu') throw new Error(`not an nvme-emu VF: ${described.driver}`);
  return described.details as NvmeEmuDetails;
}

test('the guest enables, identifies and runs a verified workload through the host port', async (t) => {
  const dir = tempDir();
  const agent = await startAgentProcess({
    config: {
      drivers: [{
        driver: 'nvme-emu',
        options: {
          hostPort: true,
          vfs: [{ id: 'nvme0', bdf: '0000:3b:00.2', serial: 'GUEST-RPC-1', namespaces: [{ path: join(dir, 'ns1.img'), sizeBytes: 32 * 1024 * 1024, blockSize: 4096 }] }],
        },
      }],
    },
  });
  t.teardown(async () => { await agent.stop(); });
  const rpc = await RpcClient.connect(agent.tcp);
  t.teardown(() => rpc.destroy());

  const nvme = new GuestNvme(rpcHostPort((method, params) => rpc.callAny(method, params), 'nvme0'));
  await nvme.enable();
  const described = await rpc.call('vf.get', { vf: 'nvme0' });
  const controller = await nvme.identifyController();
  t.is(controller.serialNumber, 'GUEST-RPC-1');
  t.is<unknown, unknown>(controller.serialNumber, described.identity.serialNumber);
  t.is<unknown, unknown>(controller.subnqn, described.identity.subnqn);
  t.is<unknown, unknown>(controller.cntlid, described.identity.cntlid);
  t.deepEqual(await nvme.activeNamespaces(), nvmeDetails(described).namespaces.map((n) => n.nsid));
  const namespace = await nvme.identifyNamespace(1);
  t.is(namespace.lbaBytes, 4096);
  t.is(namespace.nsze * namespace.lbaBytes, nvmeDetails(described).namespaces[0]?.sizeBytes ?? -1);
  t.is(namespace.nguid, nvmeDetails(described).namespaces[0]?.nguid ?? '');

  await nvme.setNumberOfQueues(4);
  for (let qid = 1; qid <= 4; qid += 1) await nvme.createIoQueuePair(qid, 128, qid);
  t.is(nvmeDetails(await rpc.call('vf.get', { vf: 'nvme0' })).queues.active, 4, 'vf.get counts the queues the guest created');

  const workload = await VerifyingWorkload.create(nvme, { nsid: 1, queueIds: [1, 2, 3, 4], seed: 0x9e57, queueDepth: 64, initialContent: 'zeroes', lbaCount: 2048 });
  await workload.runUntil(800);
  const report = await workload.finish();
  t.deepEqual(report.failures.map((f) => f.message), []);
  t.is(report.stats.completed, report.stats.submitted);
  t.true(report.stats.finalVerifiedLbas > 0);
  const interrupts = (await rpc.call('emu.interrupts', { vf: 'nvme0' })).counts;
  t.true(interrupts.slice(1, 5).every((n) => n > 0), `every I/O vector raised interrupts: ${interrupts.join(',')}`);
});
