/**
 * Large states, the way a VMM moves them:
 *  - Downtime of a blob-bench VF that keeps changing while it runs: from
 *    the moment the source stops to the destination RUNNING, with PRE_COPY
 *    (pre-copy rounds while it runs, until what changed is small; then
 *    stop-and-copy of the rest) against stop-and-copy of the whole state,
 *    alternating in one run.
 *  - Peak memory of the source and destination agents while a 1 GiB state
 *    moves, against each one's idle RSS before the transfer.
 * Bytes move over binary attachments, save→load in 1 MiB slices.
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { startAgentProcess, type AgentProcess } from '../test/support/agent-process.ts';
import { LeanClient, type WithBase64Bytes } from './lean-client.ts';
import { fmt, median, type BenchRow } from './stats.ts';

const MiB = 1024 * 1024;
const SLICE = MiB;
const DEPTH = 4;

interface SaveMeta { offset: number; length: number; eof: boolean; totalBytes: number; remaining: number }
type Slice = WithBase64Bytes<SaveMeta>;

export interface LargeStateOptions {
  readonly stateMiB: number;
  readonly dirtyMiBPerSecond: number;
  readonly rounds: number;
  /** The state moved while memory is watched. */
  readonly rssStateMiB: number;
}

async function blobAgent(stateBytes: number, dirtyBytesPerSecond: number): Promise<{ agent: AgentProcess; client: LeanClient }> {
  const agent = await startAgentProcess({
    config: {
      limits: { maxStateBytes: stateBytes + 64 * MiB },
      drivers: [{ driver: 'blob-bench', options: { vfCount: 1, stateBytes, preCopy: true, dirtyBytesPerSecond } }],
    },
    startTimeoutMs: 120000,
  });
  const client = await LeanClient.connect(agent.tcp.port);
  await client.enableAttachments();
  return { agent, client };
}

/**
 * Copies what the source hands out now to the destination, `DEPTH` slices
 * in flight, until a slice comes back short (nothing more now: in PRE_COPY
 * for the moment, in STOP_COPY the end). Returns the bytes moved.
 */
async function copyAvailable(src: LeanClient, dst: LeanClient, at: { offset: number }, stopCopy: boolean): Promise<number> {
  let moved = 0;
  const loads: Promise<unknown>[] = [];
  for (;;) {
    const slices: Slice[] = [];
    // In STOP_COPY the stream's length is known: pipeline the slices. In PRE_COPY ask one at a time.
    const asks = stopCopy ? DEPTH : 1;
    const results = await Promise.all(Array.from({ length: asks }, (_, i) => src.call<Slice>('vf.save', { vf: 'blob0', maxBytes: SLICE, offset: at.offset + i * SLICE })
      .catch((error: unknown) => (i === 0 ? Promise.reject(error) : undefined))));
    for (const r of results) if (r !== undefined && r.length > 0) slices.push(r);
    for (const s of slices) {
      loads.push(dst.callWithAttachment('vf.load', { vf: 'blob0', offset: s.offset }, 'data', s.bytes, s.release));
      moved += s.length;
    }
    const last = results.filter((r) => r !== undefined).at(-1);
    at.offset = (last?.offset ?? at.offset) + (last?.length ?? 0);
    if (loads.length > DEPTH) await Promise.all(loads.splice(0, loads.length - DEPTH));
    if (last === undefined || last.eof || last.length < SLICE || (stopCopy && results.some((r) => r === undefined))) break;
  }
  await Promise.all(loads);
  return moved;
}

/** One migration of blob0; returns the downtime (source stopped → destination RUNNING) in ms and the bytes of each phase. */
async function migrate(src: LeanClient, dst: LeanClient, preCopy: boolean): Promise<{ downtimeMs: number; preCopyBytes: number; stopCopyBytes: number }> {
  await dst.call('vf.setState', { vf: 'blob0', state: 'STOP', timeoutMs: 60000 });
  const at = { offset: 0 };
  let preCopyBytes = 0;
  if (preCopy) {
    await src.call('vf.setState', { vf: 'blob0', state: 'PRE_COPY', timeoutMs: 60000 });
    // As QEMU does: iterate while the VF runs until what is left fits the downtime it is willing to pay.
    for (let round = 0; round < 30; round += 1) {
      preCopyBytes += await copyAvailable(src, dst, at, false);
      const info = await src.call<{ initialBytes: number; dirtyBytes: number }>('vf.precopyInfo', { vf: 'blob0' });
      if (info.initialBytes === 0 && info.dirtyBytes < 4 * MiB) break;
    }
  }
  const stopped = performance.now();
  await src.call('vf.setState', { vf: 'blob0', state: 'STOP_COPY', timeoutMs: 60000 });
  const stopCopyBytes = await copyAvailable(src, dst, at, true);
  await dst.call('vf.setState', { vf: 'blob0', state: 'RUNNING', timeoutMs: 60000 });
  const downtimeMs = performance.now() - stopped;
  // The source stays stopped until the migration is over; then it may run again for the next round.
  await src.call('vf.setState', { vf: 'blob0', state: 'STOP', timeoutMs: 60000 });
  await src.call('vf.setState', { vf: 'blob0', state: 'RUNNING', timeoutMs: 60000 });
  return { downtimeMs, preCopyBytes, stopCopyBytes };
}

async function downtimeRows(options: LargeStateOptions): Promise<BenchRow[]> {
  const stateBytes = options.stateMiB * MiB;
  const dirty = options.dirtyMiBPerSecond * MiB;
  const a = await blobAgent(stateBytes, dirty);
  const b = await blobAgent(stateBytes, dirty);
  try {
    const withPreCopy: number[] = [];
    const stopCopyOnly: number[] = [];
    let last = { preCopyBytes: 0, stopCopyBytes: 0 };
    // Alternate the two, and the direction, so drift of this machine's speed hits both alike.
    for (let round = 0; round < options.rounds; round += 1) {
      const [src, dst] = round % 2 === 0 ? [a.client, b.client] : [b.client, a.client];
      const pre = await migrate(src, dst, true);
      withPreCopy.push(pre.downtimeMs);
      last = pre;
      stopCopyOnly.push((await migrate(dst, src, false)).downtimeMs);
    }
    const ours = median(withPreCopy);
    const baseline = median(stopCopyOnly);
    return [{
      bench: `large-state downtime, ${options.stateMiB} MiB blob-bench VF dirtying ${options.dirtyMiBPerSecond} MiB/s: stop → destination RUNNING, with PRE_COPY (last run: ${fmt(last.preCopyBytes / MiB, 0)} MiB pre-copied, ${fmt(last.stopCopyBytes / MiB, 1)} MiB stop-copy; median of ${options.rounds})`,
      measured: `${fmt(ours, 0)} ms`,
      baseline: `stop-and-copy only ${fmt(baseline, 0)} ms`,
      ratio: `${fmt((1 - ours / baseline) * 100, 0)} % lower`,
      target: '≥ 70 % lower',
    }];
  } finally {
    a.client.close();
    b.client.close();
    await a.agent.stop();
    await b.agent.stop();
  }
}

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? Number.NaN) / 1024;
}

/** Moves a `rssStateMiB` state once while sampling both agents' RSS every 20 ms. */
async function memoryRow(options: LargeStateOptions): Promise<BenchRow> {
  const stateBytes = options.rssStateMiB * MiB;
  const src = await blobAgent(stateBytes, 0);
  const dst = await blobAgent(stateBytes, 0);
  try {
    const pids = [src.agent.process.pid ?? 0, dst.agent.process.pid ?? 0] as const;
    // Idle: started, connected, a first small call served; settled for a moment.
    await src.client.call('vf.get', { vf: 'blob0' });
    await dst.client.call('vf.get', { vf: 'blob0' });
    await new Promise((resolve) => setTimeout(resolve, 500));
    const idle = pids.map(rssMiB);
    const peak = [...idle];
    const sampler = setInterval(() => pids.forEach((pid, i) => { peak[i] = Math.max(peak[i] ?? 0, rssMiB(pid)); }), 20);
    const started = performance.now();
    const moved = await (async () => {
      await src.client.call('vf.setState', { vf: 'blob0', state: 'STOP', timeoutMs: 60000 });
      await src.client.call('vf.setState', { vf: 'blob0', state: 'STOP_COPY', timeoutMs: 60000 });
      await dst.client.call('vf.setState', { vf: 'blob0', state: 'STOP', timeoutMs: 60000 });
      const bytes = await copyAvailable(src.client, dst.client, { offset: 0 }, true);
      await dst.client.call('vf.setState', { vf: 'blob0', state: 'RUNNING', timeoutMs: 60000 });
      return bytes;
    })();
    const seconds = (performance.now() - started) / 1000;
    clearInterval(sampler);
    pids.forEach((pid, i) => { peak[i] = Math.max(peak[i] ?? 0, rssMiB(pid)); });
    const growth = peak.map((p, i) => p - (idle[i] ?? 0));
    return {
      bench: `agent RSS while a ${fmt(moved / MiB / 1024, 2)} GiB state moves (${fmt(moved / MiB / seconds, 0)} MiB/s), peak of samples every 20 ms`,
      measured: `source ${fmt(peak[0] ?? 0, 0)} MiB (+${fmt(growth[0] ?? 0, 0)}), destination ${fmt(peak[1] ?? 0, 0)} MiB (+${fmt(growth[1] ?? 0, 0)})`,
      baseline: `idle: source ${fmt(idle[0] ?? 0, 0)} MiB, destination ${fmt(idle[1] ?? 0, 0)} MiB`,
      ratio: `+${fmt(Math.max(...growth), 0)} MiB`,
      target: '≤ +64 MiB',
    };
  } finally {
    src.client.close();
    dst.client.close();
    await src.agent.stop();
    await dst.agent.stop();
  }
}

export async function largeState(options: LargeStateOptions): Promise<BenchRow[]> {
  return [...await downtimeRows(options), await memoryRow(options)];
}
