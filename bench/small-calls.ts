/**
 * Small calls: vf.getState calls per second from 1 and from 16 clients,
 * each with one call in flight, against the agent and against a bare
 * jayson TCP server answering the same call with the same result. On a
 * shared 2-core machine one measurement swings by ±15 %, so the two are
 * measured in alternating rounds and the medians compared.
 */
import { performance } from 'node:perf_hooks';
import { startAgentProcess } from '../test/support/agent-process.ts';
import { LeanClient } from './lean-client.ts';
import { startPeer } from './processes.ts';
import { fmt, median, type BenchRow } from './stats.ts';

async function callsPerSecond(port: number, vf: string, clients: number, durationMs: number): Promise<number> {
  const connections = await Promise.all(Array.from({ length: clients }, () => LeanClient.connect(port)));
  // Warm up both sides (JIT, connection buffers) before measuring.
  await Promise.all(connections.map(async (c) => { for (let i = 0; i < 200; i += 1) await c.call('vf.getState', { vf }); }));
  let calls = 0;
  const started = performance.now();
  const deadline = started + durationMs;
  await Promise.all(connections.map(async (c) => {
    while (performance.now() < deadline) {
      await c.call('vf.getState', { vf });
      calls += 1;
    }
  }));
  const elapsed = performance.now() - started;
  for (const c of connections) c.close();
  return calls / (elapsed / 1000);
}


export async function smallCalls(durationMs: number, rounds: number): Promise<BenchRow[]> {
  const agent = await startAgentProcess({ config: { drivers: [{ driver: 'blob-bench', options: { vfCount: 1, stateBytes: 4096 } }] } });
  const jayson = await startPeer('jayson');
  const rows: BenchRow[] = [];
  try {
    for (const clients of [1, 16]) {
      const oursRounds: number[] = [];
      const theirsRounds: number[] = [];
      for (let round = 0; round < rounds; round += 1) {
        // Alternate who goes first, so neither always gets the warmer machine.
        if (round % 2 === 0) oursRounds.push(await callsPerSecond(agent.tcp.port, 'blob0', clients, durationMs));
        theirsRounds.push(await callsPerSecond(jayson.port, 'blob0', clients, durationMs));
        if (round % 2 === 1) oursRounds.push(await callsPerSecond(agent.tcp.port, 'blob0', clients, durationMs));
      }
      const ours = median(oursRounds);
      const theirs = median(theirsRounds);
      rows.push({
        bench: `vf.getState, ${clients} client${clients > 1 ? 's' : ''} (1 call in flight each; median of ${rounds} alternating rounds of ${durationMs / 1000} s)`,
        measured: `${fmt(ours, 0)} calls/s`,
        baseline: `bare jayson TCP ${fmt(theirs, 0)} calls/s`,
        ratio: `${fmt(ours / theirs)}×`,
        target: '≥ 1.0×',
      });
    }
  } finally {
    jayson.stop();
    await agent.stop();
  }
  return rows;
}
