/**
 * Small calls: vf.getState calls per second from 1 and from 16 clients,
 * each with one call in flight, against the agent and against a bare
 * jayson TCP server answering the same call with the same result. On a
 * shared 2-core machine one measurement swings by ±15 %, so the two are
 * measured in alternating rounds and the medians compared. Over mutual TLS,
 * the same calls against the same agent's plaintext listener.
 */
import { performance } from 'node:perf_hooks';
import { startAgentProcess } from '../test/support/agent-process.ts';
import { LeanClient } from './lean-client.ts';
import { startPeer } from './processes.ts';
import { fmt, median, type BenchRow } from './stats.ts';
import { benchTls } from './tls-fixture.ts';

type Connect = () => Promise<LeanClient>;

async function callsPerSecond(connect: Connect, vf: string, clients: number, durationMs: number): Promise<number> {
  const connections = await Promise.all(Array.from({ length: clients }, connect));
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


/** Medians of alternating rounds (who goes first alternates, so neither always gets the warmer machine). */
async function alternate(ours: Connect, theirs: Connect, clients: number, durationMs: number, rounds: number): Promise<[number, number]> {
  const oursRounds: number[] = [];
  const theirsRounds: number[] = [];
  for (let round = 0; round < rounds; round += 1) {
    if (round % 2 === 0) oursRounds.push(await callsPerSecond(ours, 'blob0', clients, durationMs));
    theirsRounds.push(await callsPerSecond(theirs, 'blob0', clients, durationMs));
    if (round % 2 === 1) oursRounds.push(await callsPerSecond(ours, 'blob0', clients, durationMs));
  }
  return [median(oursRounds), median(theirsRounds)];
}

function describe(clients: number, rounds: number, durationMs: number): string {
  return `${clients} client${clients > 1 ? 's' : ''} (1 call in flight each; median of ${rounds} alternating rounds of ${durationMs / 1000} s)`;
}

export async function smallCalls(durationMs: number, rounds: number): Promise<BenchRow[]> {
  const agent = await startAgentProcess({ config: { drivers: [{ driver: 'blob-bench', options: { vfCount: 1, stateBytes: 4096 } }] } });
  const jayson = await startPeer('jayson');
  const rows: BenchRow[] = [];
  try {
    for (const clients of [1, 16]) {
      const [ours, theirs] = await alternate(() => LeanClient.connect(agent.tcp.port), () => LeanClient.connect(jayson.port), clients, durationMs, rounds);
      rows.push({
        bench: `vf.getState, ${describe(clients, rounds, durationMs)}`,
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

/** vf.getState over mutual TLS against the same agent's plaintext TCP listener, in the same run. */
export async function smallCallsTls(durationMs: number, rounds: number): Promise<BenchRow[]> {
  const tls = await benchTls();
  const agent = await startAgentProcess({
    config: { listen: ['tcp://127.0.0.1:0', 'tls://127.0.0.1:0'], ...tls.agentConfig, drivers: [{ driver: 'blob-bench', options: { vfCount: 1, stateBytes: 4096 } }] },
  });
  const rows: BenchRow[] = [];
  try {
    const tlsPort = agent.tls?.port ?? 0;
    for (const clients of [1, 16]) {
      const [overTls, plain] = await alternate(() => LeanClient.connect(tlsPort, '127.0.0.1', tls.client), () => LeanClient.connect(agent.tcp.port), clients, durationMs, rounds);
      rows.push({
        bench: `vf.getState over mutual TLS 1.3, ${describe(clients, rounds, durationMs)}`,
        measured: `${fmt(overTls, 0)} calls/s`,
        baseline: `same agent, plain TCP ${fmt(plain, 0)} calls/s`,
        ratio: `${fmt(overTls / plain)}×`,
        target: '–',
      });
    }
  } finally {
    await agent.stop();
    tls.dispose();
  }
  return rows;
}
