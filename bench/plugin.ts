/**
 * The VMM plugin path: the time QEMU's stop-and-copy spends in the plugin
 * for one nvme-emu VF (16 I/O queues set up by a guest): on the source from
 * set_state(SAVING) to the last byte of save(), on the destination from
 * set_state(RESUMING) to the return of set_state(RUNNING), as the harness
 * measures them inside the QEMU-playing process. Beside it, the same work
 * done with direct JSON-RPC calls from a client (the baseline). The VF goes
 * back and forth between two agents; the two paths alternate run by run.
 */
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { NvmeEmuVf } from '../schemas/types.ts';
import { startAgentProcess, tempDir, type AgentProcess } from '../test/support/agent-process.ts';
import { GuestNvme } from '../test/support/guest-nvme.ts';
import { runHarness } from '../test/support/harness.ts';
import { rpcHostPort } from '../test/support/host-port.ts';
import { LeanClient } from './lean-client.ts';
import { fmt, summarize, type BenchRow } from './stats.ts';

const BDF = '0000:3b:00.2';
const CHUNK = 1024 * 1024;

interface Agent {
  readonly process: AgentProcess;
  readonly client: LeanClient;
}

async function startAgent(vf: NvmeEmuVf): Promise<Agent> {
  const process = await startAgentProcess({ config: { drivers: [{ driver: 'nvme-emu', options: { hostPort: true, vfs: [vf] } }] } });
  return { process, client: await LeanClient.connect(process.tcp.port) };
}

/** Source then destination with direct JSON-RPC calls, as the plugin would make them; times in ms. */
async function direct(from: LeanClient, to: LeanClient): Promise<{ source: number; destination: number }> {
  let started = performance.now();
  await from.call('vf.setState', { vf: BDF, state: 'STOP_COPY' });
  const { pendingBytes } = await from.call<{ pendingBytes: number }>('vf.pending', { vf: BDF });
  const slices: string[] = [];
  for (let done = 0; done < pendingBytes;) {
    const slice = await from.call<{ data: string; length: number }>('vf.save', { vf: BDF, maxBytes: Math.min(CHUNK, pendingBytes - done) });
    slices.push(slice.data);
    done += slice.length;
  }
  const source = performance.now() - started;
  await from.call('vf.setState', { vf: BDF, state: 'STOP' });
  started = performance.now();
  await to.call('vf.setState', { vf: BDF, state: 'RESUMING' });
  let offset = 0;
  for (const data of slices) {
    await to.callWithBase64('vf.load', { vf: BDF, offset }, 'data', data);
    offset += Buffer.byteLength(data, 'base64');
  }
  await to.call('vf.setState', { vf: BDF, state: 'RUNNING' });
  return { source, destination: performance.now() - started };
}

/** The same through the plugin, timed inside the harness; in ms. */
async function viaPlugin(from: AgentProcess, to: AgentProcess, stream: string): Promise<{ source: number; destination: number }> {
  const arg = (a: AgentProcess): string => `tcp:${a.tcp.host}:${a.tcp.port}`;
  const saved = await runHarness({ mode: 'source', arg: arg(from), devices: [{ bdf: BDF, stream }], extraArgs: ['--precopy-polls', '3'] });
  const loaded = await runHarness({ mode: 'destination', arg: arg(to), devices: [{ bdf: BDF, stream }] });
  const source = saved.reports[0]?.stopCopyUs;
  const destination = loaded.reports[0]?.resumeUs;
  if (saved.code !== 0 || loaded.code !== 0 || source === undefined || destination === undefined) {
    throw new Error(`harness failed: ${saved.stderr}${loaded.stderr}`);
  }
  return { source: source / 1000, destination: destination / 1000 };
}

export async function pluginPath(runs: number): Promise<BenchRow[]> {
  const dir = tempDir('vfmigd-plugin-bench-');
  const vf: NvmeEmuVf = { id: 'nvme0', bdf: BDF, namespaces: [{ path: join(dir, 'ns.img'), sizeBytes: 16 * 1024 * 1024 }] };
  const agents = [await startAgent(vf), await startAgent(vf)] as const;
  const stream = join(dir, 'state.stream');
  try {
    // A guest sets up 16 I/O queue pairs, so the state is that of a VF in use.
    const nvme = new GuestNvme(rpcHostPort((m, p) => agents[0].client.call(m, p), BDF));
    await nvme.enable();
    await nvme.setNumberOfQueues(16);
    for (let qid = 1; qid <= 16; qid += 1) await nvme.createIoQueuePair(qid, 64, qid);

    const plugin = { source: [] as number[], destination: [] as number[] };
    const rpc = { source: [] as number[], destination: [] as number[] };
    let at = 0;
    for (let run = 0; run < runs; run += 1) {
      for (const path of run % 2 === 0 ? ['plugin', 'rpc'] : ['rpc', 'plugin']) {
        const from = agents[at] as Agent;
        const to = agents[1 - at] as Agent;
        const times = path === 'plugin' ? await viaPlugin(from.process, to.process, stream) : await direct(from.client, to.client);
        const into = path === 'plugin' ? plugin : rpc;
        into.source.push(times.source);
        into.destination.push(times.destination);
        at = 1 - at;
      }
    }
    const row = (side: 'source' | 'destination', what: string): BenchRow => {
      const p = summarize(plugin[side]);
      const r = summarize(rpc[side]);
      return {
        bench: `QEMU plugin, one nvme-emu VF with 16 queues: ${what} (${runs} runs)`,
        measured: `p50 ${fmt(p.p50)} ms, p99 ${fmt(p.p99)} ms`,
        baseline: `direct JSON-RPC p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms`,
        ratio: `${p.p50 >= r.p50 ? '+' : '−'}${fmt(Math.abs(p.p50 / r.p50 - 1) * 100, 0)} % at p50`,
        target: '< +10 %',
      };
    };
    return [row('source', 'source, SAVING to the last save byte'), row('destination', 'destination, RESUMING to RUNNING')];
  } finally {
    for (const a of agents) {
      a.client.close();
      await a.process.stop();
    }
  }
}
