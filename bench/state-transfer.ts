/**
 * State transfer: a large device state (blob-bench, standing in for an
 * mlx5-sized device) moved with vf.save on a source agent → vf.load on a
 * destination agent in 1 MiB slices over loopback TCP, by a client in the
 * middle as a VMM would be. Baselines, measured in the same run:
 *  - raw TCP relaying the same number of bytes source → client → sink;
 *  - the load half alone against a bare jayson TCP server receiving the
 *    same vf.load messages (a smaller state: jayson is slow at this size).
 * And the same over mutual TLS, against a raw TLS relay (the client
 * decrypts from one TLS peer and encrypts to another, as the VMM does).
 * Each over the binary attachment path (rpc.enableAttachments) and over
 * base64 inside JSON.
 */
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { performance } from 'node:perf_hooks';
import { startAgentProcess, type AgentProcess } from '../test/support/agent-process.ts';
import { LeanClient, type WithBase64Bytes } from './lean-client.ts';
import { startPeer } from './processes.ts';
import { fmt, median, type BenchRow } from './stats.ts';
import { benchTls, type BenchTls } from './tls-fixture.ts';

const MiB = 1024 * 1024;

export interface TransferOptions {
  readonly stateMiB: number;
  readonly jaysonMiB: number;
  readonly sliceBytes: number;
  /** Calls in flight on each connection. */
  readonly depth: number;
  readonly rounds: number;
}


interface SaveMeta { offset: number; length: number; eof: boolean; totalBytes: number }
type SaveResult = WithBase64Bytes<SaveMeta>;

/** How state bytes travel between the client and the agents. */
export type DataPath = 'attachments' | 'base64';

/** A save slice's bytes as they came (raw or base64 text), and a load of them the same way. */
interface PathOps {
  save(client: LeanClient, params: object): Promise<SaveResult>;
  load(client: LeanClient, params: object, slice: SaveResult): Promise<unknown>;
}

const PATHS: Record<DataPath, PathOps> = {
  attachments: {
    save: (client, params) => client.call<SaveResult>('vf.save', params),
    load: (client, params, slice) => client.callWithAttachment('vf.load', params, 'data', slice.bytes, slice.release),
  },
  base64: {
    save: (client, params) => client.callForBase64<SaveMeta>('vf.save', params, 'data'),
    load: (client, params, slice) => client.callWithBase64('vf.load', params, 'data', slice.bytes, slice.release),
  },
};

function blobAgent(stateBytes: number, tls?: BenchTls): Promise<AgentProcess> {
  return startAgentProcess({
    config: {
      limits: { maxStateBytes: stateBytes + 64 * MiB },
      drivers: [{ driver: 'blob-bench', options: { vfCount: 1, stateBytes } }],
      ...(tls === undefined ? {} : { listen: ['tcp://127.0.0.1:0', 'tls://127.0.0.1:0'], ...tls.agentConfig }),
    },
    startTimeoutMs: 120000,
  });
}

/** A benchmark client of the agent: over TLS when the agent was started with it; attachments on for that path. */
async function connectTo(agent: AgentProcess, path: DataPath, tls?: BenchTls): Promise<LeanClient> {
  if (tls !== undefined && agent.tls === undefined) throw new Error('the agent has no tls:// listener');
  const client = tls === undefined || agent.tls === undefined ? await LeanClient.connect(agent.tcp.port) : await LeanClient.connect(agent.tls.port, '127.0.0.1', tls.client);
  if (path === 'attachments') await client.enableAttachments();
  return client;
}

/** Saves the whole stream with `depth` calls in flight; hands each slice to `onSlice` in order. */
async function pipelinedSave(client: LeanClient, path: DataPath, sliceBytes: number, depth: number, onSlice: (s: SaveResult) => Promise<unknown>): Promise<number> {
  const { save } = PATHS[path];
  const first = await save(client, { vf: 'blob0', maxBytes: sliceBytes, offset: 0 });
  const total = first.totalBytes;
  const sinks: Promise<unknown>[] = [onSlice(first)];
  let next = first.length;
  const inFlight: Promise<SaveResult>[] = [];
  const issue = (): void => {
    if (next >= total) return;
    inFlight.push(save(client, { vf: 'blob0', maxBytes: sliceBytes, offset: next }));
    next += sliceBytes;
  };
  for (let i = 0; i < depth; i += 1) issue();
  while (inFlight.length > 0) {
    const slice = await (inFlight.shift() as Promise<SaveResult>);
    issue();
    sinks.push(onSlice(slice));
    // Keep the load side at most `depth` ahead as well.
    if (sinks.length > depth) await sinks[sinks.length - depth - 1];
  }
  await Promise.all(sinks);
  return total;
}

async function rawRelay(bytes: number, tls?: BenchTls): Promise<number> {
  const credentials = tls === undefined ? [] : [tls.serverFiles.cert, tls.serverFiles.key];
  const source = await startPeer('raw-source', String(bytes), ...credentials);
  const sink = await startPeer('raw-sink', String(bytes), ...credentials);
  const open = (port: number): Socket => (tls === undefined ? connect(port, '127.0.0.1') : tlsConnect({ port, host: '127.0.0.1', ...tls.client }));
  try {
    const started = performance.now();
    await new Promise<void>((resolve, reject) => {
      const out = open(sink.port);
      const src = open(source.port);
      src.pipe(out, { end: false });
      out.on('data', (d: Buffer) => { if (d.toString().includes('ok')) { out.destroy(); src.destroy(); resolve(); } });
      out.on('error', reject);
      src.on('error', reject);
    });
    return performance.now() - started;
  } finally {
    source.stop();
    sink.stop();
  }
}

/** Sends `slices` as vf.load calls with `depth` in flight; returns elapsed ms. */
async function loadAll(port: number, slices: readonly SaveResult[], depth: number): Promise<number> {
  const client = await LeanClient.connect(port);
  try {
    const started = performance.now();
    const inFlight: Promise<unknown>[] = [];
    for (const s of slices) {
      inFlight.push(client.callWithBase64('vf.load', { vf: 'blob0', offset: s.offset }, 'data', s.bytes));
      if (inFlight.length >= depth) await inFlight.shift();
    }
    await Promise.all(inFlight);
    return performance.now() - started;
  } finally {
    client.close();
  }
}

/** Moves the state `rounds` times on each path, alternating with the raw relay baseline; over TLS with `tls`. */
async function transferRows(options: TransferOptions, tls?: BenchTls): Promise<BenchRow[]> {
  const stateBytes = options.stateMiB * MiB;
  const source = await blobAgent(stateBytes, tls);
  const destination = await blobAgent(stateBytes, tls);
  try {
    const rows: BenchRow[] = [];
    for (const path of ['attachments', 'base64'] as const) rows.push(await transferRow(options, source, destination, path, tls));
    return rows;
  } finally {
    await source.stop();
    await destination.stop();
  }
}

async function transferRow(options: TransferOptions, source: AgentProcess, destination: AgentProcess, path: DataPath, tls?: BenchTls): Promise<BenchRow> {
  {
    const src = await connectTo(source, path, tls);
    const dst = await connectTo(destination, path, tls);
    const { load } = PATHS[path];
    await src.call('vf.setState', { vf: 'blob0', state: 'STOP', timeoutMs: 60000 });
    // Rounds alternate with the raw baseline: this machine's speed drifts.
    const ours: number[] = [];
    const raw: number[] = [];
    const commits: number[] = [];
    let total = 0;
    for (let round = 0; round < options.rounds; round += 1) {
      // A save session per round (a stream is read once): the stopped VF saves the same state each time.
      await src.call('vf.setState', { vf: 'blob0', state: 'STOP_COPY', timeoutMs: 60000 });
      await dst.call('vf.setState', { vf: 'blob0', state: 'STOP' });
      const started = performance.now();
      total = await pipelinedSave(src, path, options.sliceBytes, options.depth, (s) => load(dst, { vf: 'blob0', offset: s.offset }, s));
      ours.push(total / MiB / ((performance.now() - started) / 1000));
      const commitStarted = performance.now();
      await dst.call('vf.setState', { vf: 'blob0', state: 'STOP', timeoutMs: 60000 });
      commits.push(performance.now() - commitStarted);
      await src.call('vf.setState', { vf: 'blob0', state: 'STOP', timeoutMs: 60000 });
      raw.push(total / MiB / ((await rawRelay(total, tls)) / 1000));
    }
    src.close();
    dst.close();
    const oursMedian = median(ours);
    const rawMedian = median(raw);
    const over = tls === undefined ? '' : ' over mutual TLS 1.3';
    return {
      bench: `state transfer${over}, ${path === 'attachments' ? 'binary attachments' : 'base64 in JSON'}, ${options.stateMiB} MiB, save→load in ${options.sliceBytes / MiB} MiB slices (${options.depth} in flight; median of ${options.rounds} rounds)`,
      measured: `${fmt(oursMedian, 0)} MiB/s (commit with CRC32C check: ${fmt(median(commits), 0)} ms)`,
      baseline: `raw ${tls === undefined ? 'TCP' : 'TLS'} relay ${fmt(rawMedian, 0)} MiB/s`,
      ratio: `${fmt(oursMedian / rawMedian)}×`,
      target: path === 'attachments' ? '≥ 0.85×' : '≥ 0.45×',
    };
  }
}

/** The state transfer over mutual TLS, against a raw TLS relay. */
export async function stateTransferTls(options: TransferOptions): Promise<BenchRow[]> {
  const tls = await benchTls();
  try {
    return await transferRows(options, tls);
  } finally {
    tls.dispose();
  }
}

export async function stateTransfer(options: TransferOptions): Promise<BenchRow[]> {
  const rows: BenchRow[] = await transferRows(options);

  // The load path alone, against a bare jayson TCP server, on the same messages.
  const smallBytes = options.jaysonMiB * MiB;
  const small = await blobAgent(smallBytes);
  const target = await blobAgent(smallBytes);
  const jayson = await startPeer('jayson');
  try {
    const client = await LeanClient.connect(small.tcp.port);
    await client.call('vf.setState', { vf: 'blob0', state: 'STOP_COPY' });
    const slices: SaveResult[] = [];
    await pipelinedSave(client, 'base64', options.sliceBytes, options.depth, async (s) => { slices.push(s); });
    // Warm both servers up on the first few messages before timing.
    await loadAll(jayson.port, slices.slice(0, 2), options.depth);
    client.close();
    const prep = await LeanClient.connect(target.tcp.port);
    await prep.call('vf.setState', { vf: 'blob0', state: 'STOP' });
    prep.close();
    const oursMs = await loadAll(target.tcp.port, slices, options.depth);
    const jaysonMs = await loadAll(jayson.port, slices, options.depth);
    const bytes = slices.reduce((n, s) => n + s.length, 0) / MiB;
    rows.push({
      bench: `vf.load only, ${options.jaysonMiB} MiB in ${options.sliceBytes / MiB} MiB messages`,
      measured: `${fmt(bytes / (oursMs / 1000), 0)} MiB/s`,
      baseline: `bare jayson TCP server ${fmt(bytes / (jaysonMs / 1000), 1)} MiB/s`,
      ratio: `${fmt(jaysonMs / oursMs, 1)}×`,
      target: '–',
    });
  } finally {
    jayson.stop();
    await small.stop();
    await target.stop();
  }
  return rows;
}
