/** Scale: one agent with 1024 nvme-emu VFs: start-up time, RSS, vf.list latency. */
import { performance } from 'node:perf_hooks';
import { startAgentProcess, tempDir } from '../test/support/agent-process.ts';
import { LeanClient } from './lean-client.ts';
import { rssBytes } from './processes.ts';
import { fmt, summarize, type BenchRow } from './stats.ts';

export async function scale(vfCount: number): Promise<BenchRow[]> {
  const started = performance.now();
  const agent = await startAgentProcess({
    config: { drivers: [{ driver: 'nvme-emu', options: { vfCount, namespaceBytes: 1024 * 1024, dataDir: tempDir('vfmigd-scale-') } }] },
    startTimeoutMs: 120000,
  });
  const startupMs = performance.now() - started;
  try {
    const client = await LeanClient.connect(agent.tcp.port);
    const samples: number[] = [];
    for (let i = 0; i < 120; i += 1) {
      const t = performance.now();
      const result = await client.call<{ vfs: unknown[] }>('vf.list', {});
      if (i >= 20) samples.push(performance.now() - t);
      if (result.vfs.length !== vfCount) throw new Error(`vf.list returned ${result.vfs.length} VFs, expected ${vfCount}`);
    }
    client.close();
    const rss = await rssBytes(agent.process.pid ?? 0);
    const list = summarize(samples);
    return [{
      bench: `scale: ${vfCount} nvme-emu VFs in one agent`,
      measured: `start-up ${fmt(startupMs, 0)} ms (process spawn to listening), RSS ${fmt(rss / 1024 / 1024, 0)} MiB, vf.list p50 ${fmt(list.p50)} ms / p99 ${fmt(list.p99)} ms`,
      baseline: '–',
      ratio: '–',
      target: '–',
    }];
  } finally {
    await agent.stop();
  }
}
