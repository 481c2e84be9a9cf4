/**
 * Prometheus metrics end to end: a real agent process with the metrics
 * listener on, driven over real sockets (calls that succeed, fail, are
 * refused or name no method; a TLS handshake that fails; a connection over
 * the per-peer cap; a migration there and back with a second agent; one
 * lease that expires into a cancel and one into a stranded VF), then
 * scraped over HTTP and read with a Prometheus text-format parser. Every
 * count the test controls is checked exactly, against what its clients saw.
 */
import test, { type ExecutionContext } from 'ava';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { performance } from 'node:perf_hooks';
import { VFIO_STATES } from '../agent/core/vfio-states.ts';
import { parsePrometheusText, type MetricFamily, type Series } from './support/prometheus-text.ts';
import { startAgentProcess, tempDir, type AgentProcess } from './support/agent-process.ts';
import { TestCa, writePem, writeText } from './support/pki.ts';
import { rawConnect } from './support/raw-connection.ts';
import { RpcClient, schemas } from './support/rpc-client.ts';

const MiB = 1024 * 1024;
const VF_COUNT = 4;
/** The per-peer connection cap of the agent under test: the test's own connections reach it. */
const PEER_CAP = 3;
const SHORT_LEASE_MS = 100;
const METHODS = new Set(schemas().methods.keys());

type Json = Record<string, unknown>;

/** What the test's clients saw, as the agent should have counted it. */
class Tally {
  readonly calls = new Map<string, number>();
  readonly errors = new Map<string, number>();

  record(method: string, response: Json): void {
    const code = ((response.error as Json | undefined)?.data as Json | undefined)?.code as string | undefined;
    const outcome = code === undefined ? 'ok' : code === 'UNAUTHORIZED' || code === 'NOT_SESSION_OWNER' ? 'refused' : 'failed';
    const key = labelKey({ method: METHODS.has(method) ? method : 'unknown', outcome });
    this.calls.set(key, (this.calls.get(key) ?? 0) + 1);
    if (code !== undefined) this.errors.set(labelKey({ code }), (this.errors.get(labelKey({ code })) ?? 0) + 1);
  }

  callsOf(method: string): number {
    let n = 0;
    for (const [key, count] of this.calls) if ((JSON.parse(key) as Json).method === method) n += count;
    return n;
  }
}

/** A client whose every call is tallied. */
class Caller {
  private nextId = 1;
  private readonly rpc: RpcClient;
  private readonly tally: Tally;

  constructor(rpc: RpcClient, tally: Tally) {
    this.rpc = rpc;
    this.tally = tally;
  }

  async response(method: string, params: Json): Promise<Json> {
    const response = await this.rpc.request({ jsonrpc: '2.0', method, params, id: this.nextId++ });
    this.tally.record(method, response);
    return response;
  }

  async ok(method: string, params: Json = {}): Promise<Json> {
    const response = await this.response(method, params);
    if (!('result' in response)) throw new Error(`${method} failed: ${JSON.stringify(response.error)}`);
    return response.result as Json;
  }

  async error(method: string, params: Json): Promise<string> {
    const response = await this.response(method, params);
    const code = ((response.error as Json | undefined)?.data as Json | undefined)?.code;
    if (typeof code !== 'string') throw new Error(`${method} succeeded: ${JSON.stringify(response.result)}`);
    return code;
  }
}

function labelKey(labels: Readonly<Record<string, string>>): string {
  return JSON.stringify(Object.fromEntries(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b))));
}

interface Scrape {
  readonly text: string;
  readonly families: ReadonlyMap<string, MetricFamily>;
}

async function scrape(url: string): Promise<Scrape> {
  const response = await fetch(url);
  if (response.status !== 200) throw new Error(`GET ${url}: ${response.status}`);
  const text = await response.text();
  return { text, families: parsePrometheusText(text) };
}

function family(s: Scrape, name: string, type: MetricFamily['type']): MetricFamily {
  const found = s.families.get(name);
  if (found === undefined) throw new Error(`no metric ${name}`);
  if (found.type !== type) throw new Error(`${name} is a ${found.type}, not a ${type}`);
  return found;
}

/** Every sample of a counter or gauge, by its labels, in the order of their keys (Map equality is ordered). */
function values(s: Scrape, name: string, type: 'counter' | 'gauge'): Map<string, number> {
  return sorted(new Map(family(s, name, type).series.map((m) => [labelKey(m.labels), m.value ?? NaN])));
}

/** Expected samples: labels and values. */
function series(...entries: readonly (readonly [Record<string, string>, number])[]): Map<string, number> {
  return sorted(new Map(entries.map(([labels, n]) => [labelKey(labels), n])));
}

function sorted<V>(map: ReadonlyMap<string, V>): Map<string, V> {
  return new Map([...map].sort(([a], [b]) => a.localeCompare(b)));
}

function value(s: Scrape, name: string, type: 'counter' | 'gauge', labels: Record<string, string> = {}): number | undefined {
  return values(s, name, type).get(labelKey(labels));
}

/** The samples that are not zero: what the test's own tally must equal. */
function nonZero(samples: ReadonlyMap<string, number>): Map<string, number> {
  return sorted(new Map([...samples].filter(([, n]) => n !== 0)));
}

/** A histogram's series is whole: cumulative buckets that never fall, +Inf equal to the count, a sum within [0, bound]. */
function checkHistogram(t: ExecutionContext, sample: Series, count: number, maxSum: number, what: string): void {
  t.is(sample.count, count, `${what}: _count`);
  const buckets = [...sample.buckets ?? []].map(([le, n]) => [le === '+Inf' ? Infinity : Number(le), n] as const).sort((a, b) => a[0] - b[0]);
  t.is(buckets.at(-1)?.[0], Infinity, `${what}: has +Inf`);
  t.is(buckets.at(-1)?.[1], count, `${what}: +Inf bucket is the count`);
  for (let i = 1; i < buckets.length; i += 1) t.true((buckets[i]?.[1] ?? 0) >= (buckets[i - 1]?.[1] ?? 0), `${what}: cumulative`);
  const sum = sample.sum ?? NaN;
  t.true(count === 0 ? sum === 0 : sum > 0 && sum <= maxSum, `${what}: _sum ${sum} within (0, ${maxSum}]`);
}

function histogram(s: Scrape, name: string, labels: Record<string, string>): Series {
  const found = family(s, name, 'histogram').series.find((m) => labelKey(m.labels) === labelKey(labels));
  if (found === undefined) throw new Error(`no ${name} series ${labelKey(labels)}`);
  return found;
}

/** The TCP ports a process listens on, from /proc: its socket inodes against the kernel's table. */
function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (match?.[1] !== undefined) inodes.add(match[1]);
    } catch {
      // closed while read
    }
  }
  const ports = new Set<number>();
  for (const table of ['tcp', 'tcp6']) {
    for (const line of readFileSync(`/proc/${pid}/net/${table}`, 'utf8').split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      // local_address is HEX_IP:HEX_PORT; state 0A is LISTEN; the inode is the tenth field.
      if (fields[3] === '0A' && inodes.has(fields[9] ?? '')) ports.add(Number.parseInt(fields[1]?.split(':')[1] ?? '', 16));
    }
  }
  return [...ports].sort((x, y) => x - y);
}

function portOf(address: string): number {
  return Number(/:(\d+)(\/|$)/.exec(address)?.[1]);
}

interface Rig {
  readonly agent: AgentProcess;
  /** The metrics URL, from the agent's `listening` line. */
  readonly url: string;
  /** The second agent: the migration's other end, with no metrics configured. */
  readonly plain: AgentProcess;
  readonly dataDir: string;
}

const nvmeEmu = (dataDir: string): NonNullable<Parameters<typeof startAgentProcess>[0]>['config'] => ({
  drivers: [{ driver: 'nvme-emu', options: { vfCount: VF_COUNT, namespaceBytes: MiB, dataDir } }],
});

let rigPromise: Promise<Rig> | undefined;
/** One agent with metrics (and one without) for the whole file: starting them is most of its time. */
function rig(): Promise<Rig> {
  rigPromise ??= (async () => {
    const dir = tempDir('vfmigd-metrics-');
    const ca = await TestCa.create('vfmigd metrics test CA');
    const server = writePem(dir, 'agent', await ca.issue({ cn: 'agent', dns: ['localhost'], ips: ['127.0.0.1'], usage: 'server' }));
    const dataDir = tempDir('vfmigd-metrics-data-');
    const [agent, plain] = await Promise.all([
      startAgentProcess({
        config: {
          ...nvmeEmu(dataDir),
          listen: ['tcp://127.0.0.1:0', 'tls://127.0.0.1:0'],
          tls: { cert: server.cert, key: server.key, ca: writeText(dir, 'ca.crt', ca.certPem) },
          metrics: { listen: '127.0.0.1:0' },
          // nvme2 is only readable, so that a call on it can be refused.
          authorization: { grants: [{ principal: 'local', permissions: ['admin'], vfs: ['nvme0', 'nvme1', 'nvme3'] }, { principal: 'local', permissions: ['read'], vfs: ['nvme2'] }] },
          limits: { maxConnectionsPerPeer: PEER_CAP },
        },
      }),
      startAgentProcess({ config: nvmeEmu(dataDir) }),
    ]);
    const listening = await agent.waitForLog('listening');
    if (typeof listening.metrics !== 'string') throw new Error(`the listening line names no metrics URL: ${JSON.stringify(listening)}`);
    return { agent, url: listening.metrics, plain, dataDir };
  })();
  return rigPromise;
}

test.after.always(async () => {
  if (rigPromise === undefined) return;
  const { agent, plain } = await rigPromise;
  await Promise.all([agent.stop(), plain.stop()]);
});

/** One VF from one agent to the other, as QEMU drives it; returns the stream's length. */
async function migrate(vf: string, from: Caller, to: Caller): Promise<number> {
  await to.ok('vf.setState', { vf, state: 'STOP' });
  await from.ok('vf.quiesce', { vf });
  let offset = 0;
  for (;;) {
    // Small slices: several progress events per session.
    const slice = await from.ok('vf.save', { vf, offset, maxBytes: 1024 }) as { data: string; length: number; eof: boolean };
    await to.ok('vf.load', { vf, offset, data: slice.data });
    offset += slice.length;
    if (slice.eof) break;
  }
  await to.ok('vf.resume', { vf });
  await from.ok('vf.setState', { vf, state: 'STOP' });
  return offset;
}

/** The rest of a save stream, from `from`; returns how many bytes that was. */
async function saveAll(caller: Caller, vf: string, from: number): Promise<number> {
  let offset = from;
  for (;;) {
    const slice = await caller.ok('vf.save', { vf, offset, maxBytes: 1024 }) as { length: number; eof: boolean };
    offset += slice.length;
    if (slice.eof) return offset - from;
  }
}

test('the metrics count what the agent did: calls, refusals, migrations, downtime, bytes, leases; the gauges match the agent\'s own account', async (t) => {
  const { agent, url, plain } = await rig();
  const started = performance.now();
  const tally = new Tally();
  const main = await RpcClient.connect(agent.tcp);
  t.teardown(() => main.destroy());
  const a = new Caller(main, tally);
  const otherRpc = await RpcClient.connect(plain.tcp);
  t.teardown(() => otherRpc.destroy());
  const b = new Caller(otherRpc, new Tally());

  // Calls that succeed, fail with a domain error, are refused, name no method.
  const info = await a.ok('agent.info');
  t.is(info.metrics, url, 'agent.info names the same URL');
  t.is(await a.error('vf.save', { vf: 'nvme3', maxBytes: 1024 }), 'NO_SAVE_STREAM');
  t.is(await a.error('vf.quiesce', { vf: 'nvme2' }), 'UNAUTHORIZED');
  t.is(await a.error('no.such.method', {}), 'METHOD_NOT_FOUND');
  const longName = `probe.${'x'.repeat(200)}`;
  t.is(await a.error(longName, {}), 'METHOD_NOT_FOUND');

  // A TLS listener reached by something that is not TLS: the handshake fails, the connection is refused.
  await new Promise<void>((resolve, reject) => {
    const socket = netConnect(agent.tls?.port ?? 0, '127.0.0.1', () => socket.write('GET / HTTP/1.0\r\n\r\n'));
    socket.on('error', () => undefined);
    socket.once('close', () => resolve());
    setTimeout(() => reject(new Error('the TLS listener did not close a connection that sent no handshake')), 10_000).unref();
  });

  // The per-peer cap: the test's connection and two more are served, the next one is refused.
  const extra = await Promise.all(Array.from({ length: PEER_CAP - 1 }, () => RpcClient.connect(agent.tcp)));
  for (const rpc of extra) {
    t.teardown(() => rpc.destroy());
    await new Caller(rpc, tally).ok('vf.list');
  }
  const over = await rawConnect(t, agent.tcp);
  t.regex(await over.nextLine() ?? '', /TOO_MANY_CONNECTIONS/);

  // A migration there and back: nvme0 leaves this agent (a save) and comes back (a resume).
  const out = await migrate('nvme0', a, b);
  const back = await migrate('nvme0', b, a);

  // Two leases that run out: nvme3 quiesced only (cancelled: it runs again), nvme1 read to the end (stranded).
  await a.ok('vf.quiesce', { vf: 'nvme3' });
  await a.ok('vf.renewLease', { vf: 'nvme3', leaseMs: SHORT_LEASE_MS });
  await a.ok('vf.quiesce', { vf: 'nvme1' });
  // Bytes count as they move: a session still open has its slices counted, and shows as open.
  const first = await a.ok('vf.save', { vf: 'nvme1', offset: 0, maxBytes: 1024 }) as { length: number; eof: boolean };
  const midway = await scrape(url);
  t.is(value(midway, 'vfmigd_state_saved_bytes_total', 'counter'), out + first.length);
  t.is(value(midway, 'vfmigd_sessions_open', 'gauge', { kind: 'save' }), 1);
  t.false(first.eof);
  const stranded = first.length + await saveAll(a, 'nvme1', first.length);
  await a.ok('vf.renewLease', { vf: 'nvme1', leaseMs: SHORT_LEASE_MS });
  await Promise.all([agent.waitForLog('migration cancelled'), agent.waitForLog('VF stranded')]);

  const vfs = (await a.ok('vf.list')).vfs as { state: string; stranded: boolean }[];
  const s = await scrape(url);
  const elapsed = (performance.now() - started) / 1000;

  t.deepEqual(family(s, 'vfmigd_build_info', 'gauge').series, [{ value: 1, labels: { version: info.version as string, api_version: info.apiVersion as string } }]);

  // Calls: exactly what the clients saw, unknown names under one label, and no name a client made up.
  t.deepEqual(nonZero(values(s, 'vfmigd_rpc_calls_total', 'counter')), nonZero(tally.calls));
  t.is(value(s, 'vfmigd_rpc_calls_total', 'counter', { method: 'unknown', outcome: 'failed' }), 2);
  t.false(s.text.includes('no.such.method') || s.text.includes(longName), 'a made-up method name is no label value');
  t.deepEqual(nonZero(values(s, 'vfmigd_rpc_errors_total', 'counter')), nonZero(tally.errors));
  for (const sample of family(s, 'vfmigd_rpc_call_duration_seconds', 'histogram').series) {
    const method = sample.labels.method ?? '';
    t.true(METHODS.has(method), `method label ${method}`);
    checkHistogram(t, sample, tally.callsOf(method), elapsed, `calls of ${method}`);
  }
  t.deepEqual(
    [...new Set(family(s, 'vfmigd_rpc_call_duration_seconds', 'histogram').series.map((m) => m.labels.method))].sort(),
    [...new Set([...tally.calls.keys()].map((k) => (JSON.parse(k) as { method: string }).method))].filter((method) => method !== 'unknown').sort(),
    'a latency series for each method called, and only those',
  );

  // Connections: one handshake failure, one over the cap; the three served are open.
  t.deepEqual(values(s, 'vfmigd_connections_refused_total', 'counter'), series([{ kind: 'authentication' }, 1], [{ kind: 'limit' }, 1]));
  t.deepEqual(values(s, 'vfmigd_connections_open', 'gauge'), series([{ transport: 'tcp' }, PEER_CAP], [{ transport: 'tls' }, 0], [{ transport: 'unix' }, 0]));

  // Migrations: the save out and nvme1's save completed, the resume back completed; nothing else ended.
  t.deepEqual(nonZero(values(s, 'vfmigd_migration_sessions_total', 'counter')), series([{ kind: 'save', outcome: 'completed' }, 2], [{ kind: 'resume', outcome: 'completed' }, 1]));
  t.is(family(s, 'vfmigd_migration_sessions_total', 'counter').series.length, 10, 'every kind and outcome of schemas/events/session.ended.json, from the start');
  checkHistogram(t, histogram(s, 'vfmigd_migration_downtime_seconds', { kind: 'save' }), 2, elapsed, 'save downtime');
  checkHistogram(t, histogram(s, 'vfmigd_migration_downtime_seconds', { kind: 'resume' }), 1, elapsed, 'resume downtime');
  t.true(out > 1024 && back > 1024 && stranded > 1024, 'each stream took several slices');
  t.is(value(s, 'vfmigd_state_saved_bytes_total', 'counter'), out + stranded);
  t.is(value(s, 'vfmigd_state_loaded_bytes_total', 'counter'), back);

  // Leases: one cancelled, one stranded.
  t.deepEqual(nonZero(values(s, 'vfmigd_lease_expiries_total', 'counter')), series([{ action: 'cancelled' }, 1], [{ action: 'stranded' }, 1]));
  t.is(value(s, 'vfmigd_vf_strandings_total', 'counter'), 1);

  // What is true now: the agent's own vf.list, taken just before the scrape.
  const byState = series(...VFIO_STATES.map((state) => [{ state }, vfs.filter((vf) => vf.state === state).length] as const));
  t.deepEqual(values(s, 'vfmigd_vfs', 'gauge'), byState);
  t.is(value(s, 'vfmigd_vfs', 'gauge', { state: 'STOP' }), 1, 'nvme1, stranded');
  t.is(value(s, 'vfmigd_vfs_stranded', 'gauge'), vfs.filter((vf) => vf.stranded).length);
  t.is(value(s, 'vfmigd_vfs_stranded', 'gauge'), 1);
  t.deepEqual(values(s, 'vfmigd_sessions_open', 'gauge'), series([{ kind: 'save' }, 0], [{ kind: 'resume' }, 0]));

  // Process metrics, prefixed.
  t.true((value(s, 'vfmigd_process_resident_memory_bytes', 'gauge') ?? 0) > 0);
  t.true(family(s, 'vfmigd_nodejs_eventloop_lag_seconds', 'gauge').series.length === 1);
});

test('GET /metrics only: another path is 404, another method 405; the content type is the exposition format', async (t) => {
  const { url } = await rig();
  const got = await fetch(url);
  t.is(got.status, 200);
  t.is(got.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  await got.text();
  for (const method of ['POST', 'PUT', 'DELETE', 'HEAD']) {
    const refused = await fetch(url, { method, ...(method === 'POST' || method === 'PUT' ? { body: 'x' } : {}) });
    t.is(refused.status, 405, method);
    t.is(refused.headers.get('allow'), 'GET');
    await refused.text();
  }
  for (const path of ['/', '/metrics/', '/other', '/metricsx']) {
    const missing = await fetch(new URL(path, url));
    t.is(missing.status, 404, path);
    await missing.text();
  }
  t.is((await fetch(`${url}?name[]=vfmigd_vfs`)).status, 200, 'a query string is ignored');
});

test('a client that never finishes its request is closed; it does not hold the listener', async (t) => {
  const { url } = await rig();
  const address = new URL(url);
  const opened = performance.now();
  const closed = await new Promise<string>((resolve) => {
    const socket = netConnect(Number(address.port), address.hostname, () => socket.write('GET /metrics HTTP/1.1\r\nHost: x\r\n'));
    let reply = '';
    socket.on('data', (d: Buffer) => { reply += d.toString(); });
    socket.on('error', () => undefined);
    socket.once('close', () => resolve(reply));
  });
  const seconds = (performance.now() - opened) / 1000;
  t.regex(closed, /^HTTP\/1\.1 408|^$/, 'a timeout, not a response');
  t.true(seconds < 6, `closed after ${seconds.toFixed(1)} s`);
  t.is((await fetch(url)).status, 200, 'and the listener still serves');
});

test('no metrics listener unless the config names one: the agent without it listens on its RPC ports only', async (t) => {
  const { agent, plain, url } = await rig();
  const listening = await plain.waitForLog('listening');
  t.false('metrics' in listening);
  const rpc = await RpcClient.connect(plain.tcp);
  t.teardown(() => rpc.destroy());
  t.is((await rpc.call('agent.info', {})).metrics, null);
  t.deepEqual(listeningPorts(plain.process.pid ?? 0), plain.listening.map(portOf).sort((x, y) => x - y));
  t.deepEqual(listeningPorts(agent.process.pid ?? 0), [...agent.listening.map(portOf), portOf(url)].sort((x, y) => x - y));
});

test('a metrics address that is not HOST:PORT is refused at start, naming the field', async (t) => {
  for (const [listen, reason] of [['localhost', /\/metrics\/listen must match pattern/], ['127.0.0.1:70000', /metrics\.listen "127\.0\.0\.1:70000" is not HOST:PORT with a port from 0 to 65535/]] as const) {
    const error = await t.throwsAsync(startAgentProcess({ config: { metrics: { listen }, drivers: [{ driver: 'blob-bench', options: { vfCount: 1, stateBytes: 4096 } }] } }));
    t.regex(error?.message ?? '', /exited with 2/, listen);
    t.regex(error?.message ?? '', /invalid config/, listen);
    t.regex(error?.message ?? '', reason, listen);
  }
});
