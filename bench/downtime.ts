/**
 * Downtime: the device part of a live migration's stop-and-copy, for
 * nvme-emu VFs with 16 I/O queue pairs and 64 commands in flight:
 * vf.quiesce on the source + vf.save of the whole state + vf.load on the
 * destination + vf.resume there. A guest (the tests' NVMe driver, over the
 * host port) puts the commands in flight before each run and checks after
 * each run that every one of them completes on the other side; guest RAM
 * is copied after the timed part, as QEMU copies RAM on its own. Runs go
 * back and forth between two agents. Then the same with many VFs at once.
 */
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { NvmeEmuVf } from '../schemas/types.ts';
import { startAgentProcess, tempDir, type AgentProcess } from '../test/support/agent-process.ts';
import { GuestNvme } from '../test/support/guest-nvme.ts';
import { copyGuestMemory, rpcHostPort, type GuestHostPort } from '../test/support/host-port.ts';
import { VerifyingWorkload } from '../test/support/verifying-workload.ts';
import { LeanClient } from './lean-client.ts';
import { fmt, summarize, type BenchRow } from './stats.ts';

const QUEUES = 16;
const IN_FLIGHT = 64;

export interface DowntimeOptions {
  readonly runs: number;
  readonly vfCount: number;
}

interface Agent {
  readonly process: AgentProcess;
  readonly client: LeanClient;
}

interface Guest {
  readonly bdf: string;
  readonly nvme: GuestNvme;
  readonly workload: VerifyingWorkload;
  readonly ports: readonly [GuestHostPort, GuestHostPort];
}

async function startAgent(vfs: NvmeEmuVf[]): Promise<Agent> {
  const process = await startAgentProcess({
    config: {
      limits: { maxInFlightPerConnection: 1024, maxQueuedCallsPerVf: 1024 },
      drivers: [{ driver: 'nvme-emu', options: { hostPort: true, maxIoQueues: QUEUES, vfs } }],
    },
    startTimeoutMs: 60000,
  });
  return { process, client: await LeanClient.connect(process.tcp.port) };
}

/**
 * The device part of one migration of one VF: the downtime it adds, in ms.
 * Pipelined, the client sends quiesce+save, then load+resume, without
 * waiting between the two of each pair: calls on one VF run in order, so a
 * VMM may do this (the state of an nvme-emu VF is one slice).
 */
async function migrateDevice(bdf: string, from: LeanClient, to: LeanClient, pipelined: boolean): Promise<number> {
  const started = performance.now();
  if (pipelined) {
    const [, slice] = await Promise.all([
      from.call('vf.quiesce', { vf: bdf }),
      from.call<{ offset: number; data: string; eof: boolean }>('vf.save', { vf: bdf, maxBytes: 1024 * 1024 }),
    ]);
    if (!slice.eof) throw new Error('the state did not fit one slice');
    await Promise.all([to.callWithBase64('vf.load', { vf: bdf, offset: 0 }, 'data', slice.data), to.call('vf.resume', { vf: bdf })]);
    return performance.now() - started;
  }
  await from.call('vf.quiesce', { vf: bdf });
  const slices: { offset: number; data: string }[] = [];
  for (let eof = false; !eof;) {
    const slice = await from.call<{ offset: number; data: string; eof: boolean }>('vf.save', { vf: bdf, maxBytes: 1024 * 1024 });
    slices.push(slice);
    eof = slice.eof;
  }
  for (const s of slices) await to.callWithBase64('vf.load', { vf: bdf, offset: s.offset }, 'data', s.data);
  await to.call('vf.resume', { vf: bdf });
  return performance.now() - started;
}

async function setUpGuest(bdf: string, ports: readonly [GuestHostPort, GuestHostPort], seed: number): Promise<Guest> {
  const nvme = new GuestNvme(ports[0]);
  await nvme.enable();
  await nvme.setNumberOfQueues(QUEUES);
  for (let qid = 1; qid <= QUEUES; qid += 1) await nvme.createIoQueuePair(qid, 64, qid);
  const queueIds = Array.from({ length: QUEUES }, (_, i) => i + 1);
  const workload = await VerifyingWorkload.create(nvme, { nsid: 1, queueIds, seed, queueDepth: IN_FLIGHT, initialContent: 'zeroes', lbaCount: 4096, maxBlocksPerCommand: 8 });
  return { bdf, nvme, workload, ports };
}

/** One run for one guest: commands in flight, timed device migration, then RAM and the rest. */
async function prepareRun(guest: Guest, target: LeanClient): Promise<void> {
  await guest.workload.submitBurst(IN_FLIGHT);
  if (guest.workload.inFlight < IN_FLIGHT) throw new Error(`only ${guest.workload.inFlight} commands in flight`);
  guest.workload.quiesceGuestSide();
  await target.call('vf.setState', { vf: guest.bdf, state: 'STOP' });
}

async function finishRun(guest: Guest, fromIndex: 0 | 1): Promise<void> {
  const toIndex = fromIndex === 0 ? 1 : 0;
  await copyGuestMemory(guest.ports[fromIndex], guest.ports[toIndex], guest.nvme.memoryRegions());
  await guest.nvme.attach(guest.ports[toIndex]);
  guest.workload.resumeGuestSide();
  while (guest.workload.inFlight > 0) await guest.workload.pump();
}

export async function downtime(options: DowntimeOptions): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const cases = [[1, options.runs, false], [1, options.runs, true], [options.vfCount, Math.max(5, Math.round(options.runs / 10)), false]] as const;
  for (const [vfCount, runs, pipelined] of cases) {
    const dir = tempDir('vfmigd-downtime-');
    const vfs: NvmeEmuVf[] = Array.from({ length: vfCount }, (_, i) => {
      const devfn = 2 + i;
      const bdf = `0000:${(0x3b + (devfn >> 8)).toString(16)}:${((devfn >> 3) & 0x1f).toString(16).padStart(2, '0')}.${devfn & 7}`;
      return { id: `nvme${i}`, bdf, namespaces: [{ path: join(dir, `nvme${i}.img`), sizeBytes: 4 * 1024 * 1024 }] };
    });
    const agents = [await startAgent(vfs), await startAgent(vfs)] as const;
    try {
      const guests = await Promise.all(vfs.map((vf, i) => setUpGuest(vf.bdf, [
        rpcHostPort((m, p) => agents[0].client.call(m, p), vf.bdf),
        rpcHostPort((m, p) => agents[1].client.call(m, p), vf.bdf),
      ], 0xd0 + i)));
      const samples: number[] = [];
      for (let run = 0; run < runs; run += 1) {
        const from = (run % 2) as 0 | 1;
        const to = from === 0 ? 1 : 0;
        await Promise.all(guests.map((g) => prepareRun(g, agents[to].client)));
        const started = performance.now();
        await Promise.all(guests.map((g) => migrateDevice(g.bdf, agents[from].client, agents[to].client, pipelined)));
        samples.push(performance.now() - started);
        await Promise.all(guests.map((g) => finishRun(g, from)));
      }
      for (const g of guests) {
        const report = await g.workload.finish();
        if (!report.ok) throw new Error(`${g.bdf}: the guest workload failed: ${report.failures[0]?.message ?? ''}`);
      }
      const s = summarize(samples);
      rows.push({
        bench: `downtime, ${vfCount} nvme-emu VF${vfCount > 1 ? 's at once' : ''}, ${QUEUES} queues and ${IN_FLIGHT} commands in flight each (quiesce + save + load + resume${pipelined ? ', pipelined in two round trips' : ', four sequential calls'}; ${runs} runs, every command verified)`,
        measured: `p50 ${fmt(s.p50)} ms, p99 ${fmt(s.p99)} ms`,
        baseline: '–',
        ratio: '–',
        target: vfCount === 1 ? 'p99 < 5 ms' : '–',
      });
    } finally {
      for (const a of agents) {
        a.client.close();
        await a.process.stop();
      }
    }
  }
  return rows;
}
