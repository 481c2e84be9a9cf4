/**
 * Load: many clients at once for a while, half reading (vf.list, vf.get,
 * vf.getState, vf.pending on VFs of both agents), half migrating their own
 * VF back and forth between two agents (quiesce, save, load, resume, and
 * the source's save closed), as several VMMs and an operator's dashboards
 * would. Reports calls/s, errors (the target is none) and each agent's RSS
 * at the start and at the end (the target is flat: nothing held per call
 * or per migration).
 */
import { performance } from 'node:perf_hooks';
import { startAgentProcess, tempDir, type AgentProcess } from '../test/support/agent-process.ts';
import { LeanClient } from './lean-client.ts';
import { fmt, type BenchRow } from './stats.ts';

export interface LoadOptions {
  readonly clients: number;
  readonly seconds: number;
}

interface Tally { calls: number; errors: number; migrations: number; firstError: string | undefined }

const MiB = 1024 * 1024;

interface AgentMemory { rss: number; heapUsed: number; heapTotal: number; external: number }

/** The agent's own account of its memory (agent.info), on a connection of its own. */
async function memoryOf(agent: AgentProcess): Promise<AgentMemory> {
  const client = await LeanClient.connect(agent.tcp.port);
  try {
    return (await client.call<{ memory: AgentMemory }>('agent.info', {})).memory;
  } finally {
    client.close();
  }
}

function agentWith(vfCount: number, dataDir: string): Promise<AgentProcess> {
  return startAgentProcess({
    config: {
      limits: { maxConnectionsPerPeer: 1024, maxConnections: 1024 },
      drivers: [{ driver: 'nvme-emu', options: { vfCount, namespaceBytes: MiB, dataDir } }],
    },
    retainLogs: false,
    startTimeoutMs: 60000,
  });
}

async function counted<T>(tally: Tally, call: () => Promise<T>): Promise<T | undefined> {
  tally.calls += 1;
  try {
    return await call();
  } catch (error) {
    tally.errors += 1;
    tally.firstError ??= error instanceof Error ? error.message : String(error);
    return undefined;
  }
}

/** Moves `vf` from `from` to `to`, whole; false if a call failed. */
async function migrate(tally: Tally, vf: string, from: LeanClient, to: LeanClient): Promise<boolean> {
  if (await counted(tally, () => to.call('vf.setState', { vf, state: 'STOP' })) === undefined) return false;
  if (await counted(tally, () => from.call('vf.quiesce', { vf })) === undefined) return false;
  let offset = 0;
  for (;;) {
    const slice = await counted(tally, () => from.call<{ data: string; length: number; eof: boolean }>('vf.save', { vf, offset, maxBytes: MiB }));
    if (slice === undefined) return false;
    if (await counted(tally, () => to.call('vf.load', { vf, offset, data: slice.data })) === undefined) return false;
    offset += slice.length;
    if (slice.eof) break;
  }
  if (await counted(tally, () => to.call('vf.resume', { vf })) === undefined) return false;
  // QEMU's cleanup on the source: STOP_COPY → STOP ends the stream; the VF stays stopped, the next destination.
  if (await counted(tally, () => from.call('vf.setState', { vf, state: 'STOP' })) === undefined) return false;
  tally.migrations += 1;
  return true;
}

export async function load(options: LoadOptions): Promise<BenchRow[]> {
  const migrators = Math.floor(options.clients / 2);
  const readers = options.clients - migrators;
  const dir = tempDir('vfmigd-load-');
  // Both agents offer the same VFs (same identities, same namespace files, as with shared storage).
  const agents = [await agentWith(migrators, dir), await agentWith(migrators, dir)] as const;
  try {
    const tally: Tally = { calls: 0, errors: 0, migrations: 0, firstError: undefined };
    const until = performance.now() + options.seconds * 1000;
    const started = performance.now();
    // Memory every tenth of the run; 'flat' is judged from the first tenth (code compiled, files open, pools filled) on.
    const memory = (): Promise<AgentMemory[]> => Promise.all(agents.map(memoryOf));
    const samples: Promise<AgentMemory[]>[] = [];
    const sampler = setInterval(() => samples.push(memory()), (options.seconds * 1000) / 10);
    const migrating = Array.from({ length: migrators }, async (_, index) => {
      const vf = `nvme${index}`;
      const ends = await Promise.all(agents.map((a) => LeanClient.connect(a.tcp.port)));
      let [from, to] = ends as [LeanClient, LeanClient];
      try {
        while (performance.now() < until && await migrate(tally, vf, from, to)) [from, to] = [to, from];
      } finally {
        for (const end of ends) end.close();
      }
    });
    const reading = Array.from({ length: readers }, async (_, index) => {
      const client = await LeanClient.connect((agents[index % 2] as AgentProcess).tcp.port);
      try {
        for (let n = 0; performance.now() < until; n += 1) {
          const vf = `nvme${n % migrators}`;
          const method = ['vf.list', 'vf.get', 'vf.getState', 'vf.pending'][n % 4] as string;
          await counted(tally, () => client.call(method, method === 'vf.list' ? {} : { vf }));
        }
      } finally {
        client.close();
      }
    });
    await Promise.all([...migrating, ...reading]);
    clearInterval(sampler);
    const seconds = (performance.now() - started) / 1000;
    const curve = [...await Promise.all(samples), await memory()];
    const mib = (bytes: number | undefined): string => fmt((bytes ?? 0) / MiB, 0);
    const series = (i: number, field: keyof AgentMemory): string => curve.map((m) => mib(m[i]?.[field])).join(' ');
    const side = (i: number): string => `RSS ${series(i, 'rss')}; heap committed ${series(i, 'heapTotal')}; heap used ${series(i, 'heapUsed')}`;
    return [{
      bench: `load: ${options.clients} clients for ${options.seconds} s on two agents (${readers} reading, ${migrators} migrating their own nvme-emu VF back and forth)`,
      measured: `${fmt(tally.calls / seconds, 0)} calls/s, ${tally.migrations} migrations, ${tally.errors} errors${tally.firstError === undefined ? '' : ` (first: ${tally.firstError})`}; MiB at each tenth of the run, first agent: ${side(0)}; second agent: ${side(1)}`,
      baseline: '–',
      ratio: '–',
      target: '0 errors, memory flat',
    }];
  } finally {
    for (const agent of agents) await agent.stop();
  }
}
