/**
 * Runs fuzz cases against a real agent process, one connection per case
 * (written, then half-closed), and checks after every case:
 * - crash: the agent is alive (a crash ends the run);
 * - hang: the connection closes within the hang deadline (every text answered);
 * - not JSON-RPC: every reply line is JSON, every response has the 2.0
 *   shape, a catalogued error with schema-valid data, and (for cases made
 *   only of intact pieces) a result that matches its method's schema;
 * - unknown id: no reply carries an id that is nowhere in what was sent;
 * - answered wrongly: for cases made only of intact pieces, where what the
 *   agent must answer is known exactly, each id is answered exactly as
 *   often as it was sent;
 * - state changed: no VF's state changed unless a state-changing call from
 *   that very connection succeeded (as the agent's audit events say; a
 *   call that failed but changed state is exactly what this catches).
 * "What was sent" is decided by JSON.parse on each piece the case was built
 * from: the specification's parser, not the agent's.
 */
import { connect } from 'node:net';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startAgentProcess, tempDir, type AgentProcess } from '../support/agent-process.ts';
import { checkResponseShape, RpcClient } from '../support/rpc-client.ts';
import type { Config } from '../../schemas/types.ts';
import { caseBytes, FUZZ_VF_IDS, STATE_CHANGING, type FuzzCase } from './cases.ts';

export const FINDING_KINDS = ['crash', 'hang', 'not JSON-RPC', 'unknown id', 'answered wrongly', 'state changed'] as const;
export type FindingKind = (typeof FINDING_KINDS)[number];

export interface Finding {
  readonly kind: FindingKind;
  readonly detail: string;
  /** The case's bytes, as JSON-escaped text (cut short). */
  readonly bytes: string;
  /** The case's bytes whole, base64 (for --json). */
  readonly base64: string;
}

export interface FuzzReport {
  cases: number;
  /** Cases by the kind of their first piece. */
  byKind: Record<string, number>;
  findings: Record<FindingKind, number>;
  /** The first few findings of each kind. */
  samples: Finding[];
  replies: number;
  stateChanges: number;
  /** The agent's RSS at the start and every `rssEvery` cases. */
  rss: { cases: number; mib: number }[];
  rssAfterMiB: number;
  peakRssMiB: number;
  /** CPU seconds of the agent and of the fuzzer (generating and checking), over the run. */
  agentCpuS: number;
  fuzzerCpuS: number;
  elapsedMs: number;
}

export interface FuzzOptions {
  readonly hangTimeoutMs?: number;
  /** Cases between readings of the agent's RSS (default 1000). */
  readonly rssEvery?: number;
  /**
   * Cases in flight at once (default 4). The state check is made after each
   * group: a change is explained only by a call of that group that succeeded.
   */
  readonly concurrency?: number;
  readonly onProgress?: (report: FuzzReport) => void;
}

type Json = Record<string, unknown>;

/** The fuzz agent's batch limit (cases.ts makes batches on both sides of it). */
const MAX_BATCH_LENGTH = 32;

/** The fuzz agent: two blob-bench VFs and one nvme-emu VF with its host port, guest memory capped. */
function fuzzAgentConfig(namespacePath: string): Config {
  return {
    listen: ['tcp://127.0.0.1:0'],
    logLevel: 'info',
    limits: { maxBatchLength: MAX_BATCH_LENGTH, maxInFlightPerConnection: MAX_BATCH_LENGTH, maxConnectionsPerPeer: 64 },
    drivers: [
      { driver: 'blob-bench', options: { vfCount: 2, stateBytes: 8192, p2p: true, preCopy: true, dirtyBytesPerSecond: 1024 * 1024 } },
      { driver: 'nvme-emu', options: { hostPort: true, maxGuestMemoryBytes: 16 * 1024 * 1024, vfs: [{ id: 'nvme0', bdf: '0000:3b:00.2', namespaces: [{ path: namespacePath, sizeBytes: 1024 * 1024 }] }] } },
    ],
  };
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** What the intact pieces of a case ask for, by JSON.parse. */
interface Expected {
  /** id (as JSON text) → how many requests carry it, and their methods. */
  readonly byId: Map<string, { count: number; methods: Set<string> }>;
}

/** The JSON value of a piece, or undefined if JSON.parse refuses it. */
function parsePiece(bytes: Buffer): unknown {
  try {
    return JSON.parse(strictUtf8.decode(bytes).replace(/^\ufeff/, ''));
  } catch {
    return undefined;
  }
}

function expectedOf(c: FuzzCase): Expected | undefined {
  if (c.pieces.some((p) => p.mutated)) return undefined;
  const byId = new Map<string, { count: number; methods: Set<string> }>();
  for (const piece of c.pieces) {
    const value = parsePiece(piece.bytes);
    if (value === undefined) return undefined;
    // A batch refused whole (empty, or over the limit) gets one reply with a null id.
    if (Array.isArray(value) && (value.length === 0 || value.length > MAX_BATCH_LENGTH)) continue;
    for (const entry of Array.isArray(value) ? value : [value]) {
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry) || !('id' in entry)) continue;
      if (!answeredAsSent((entry as Json).id)) continue;
      const key = idKey((entry as Json).id);
      const slot = byId.get(key) ?? { count: 0, methods: new Set<string>() };
      slot.count += 1;
      slot.methods.add(String((entry as Json).method));
      byId.set(key, slot);
    }
  }
  return { byId };
}

/**
 * Ids whose replies carry them back: strings and safe integers. A null id
 * comes back null like every refusal of an unreadable request; other
 * numbers may be refused (their value would not survive the trip), and
 * then their reply's id is null too.
 */
function answeredAsSent(id: unknown): boolean {
  return typeof id === 'string' || Number.isSafeInteger(id);
}

/** An id as a map key: its JSON text (ids nested too deep to write are all one key, never valid anyway). */
function idKey(id: unknown): string {
  try {
    return JSON.stringify(id) ?? 'undefined';
  } catch {
    return '<too deep>';
  }
}

/**
 * False only when `id` certainly is not in `sent`: a string of printable
 * ASCII with nothing to escape is written one way only. Other ids could
 * have been written with escapes or other digits, and pass.
 */
function couldHaveBeenSent(id: unknown, sent: string): boolean {
  // A number has many spellings (100, 1E+2, 100.0): only strings are checked.
  if (typeof id === 'string') {
    const text = JSON.stringify(id);
    return !/^[\x20-\x7e]*$/.test(text) || text.slice(1, -1).includes('\\') || sent.includes(text);
  }
  return true;
}

function excerpt(bytes: Buffer): string {
  const text = JSON.stringify(bytes.toString('latin1'));
  return text.length > 600 ? `${text.slice(0, 600)}… (${bytes.length} bytes)` : text;
}

function rssMiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const match = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1] ?? 0) / 1024;
}

/** User and system CPU seconds of a process, from /proc (clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Sends one case on its own connection: its local port and reply lines, or no lines if it did not close in time. */
function exchange(address: { host: string; port: number }, bytes: Buffer, cuts: readonly number[], timeoutMs: number): Promise<{ port: number; lines: string[] | undefined }> {
  return new Promise((resolve) => {
    const socket = connect({ host: address.host, port: address.port, noDelay: true });
    const received: Buffer[] = [];
    let port = 0;
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ port, lines: undefined });
    }, timeoutMs);
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ port, lines: replyLines(Buffer.concat(received)) });
    });
    socket.once('connect', () => {
      port = socket.localPort ?? 0;
      let from = 0;
      for (const at of cuts.map((f) => Math.floor(f * bytes.length)).sort((a, b) => a - b)) {
        socket.write(bytes.subarray(from, at));
        from = at;
      }
      socket.end(bytes.subarray(from));
    });
  });
}

/**
 * The reply texts of a connection, one per line. An attachment frame (a
 * 0x00 where a line starts, a length, the bytes) stands before a vf.save
 * result on a connection that turned them on: skipped whole.
 */
function replyLines(bytes: Buffer): string[] {
  const lines: string[] = [];
  let at = 0;
  while (at < bytes.length) {
    if (bytes[at] === 0 && at + 5 <= bytes.length) {
      at += 5 + bytes.readUInt32BE(at + 1);
      continue;
    }
    const end = bytes.indexOf(0x0a, at);
    const line = bytes.subarray(at, end === -1 ? bytes.length : end).toString('utf8');
    if (line !== '') lines.push(line);
    at = end === -1 ? bytes.length : end + 1;
  }
  return lines;
}

function checkReplies(lines: readonly string[], c: FuzzCase, sent: string, find: (kind: FindingKind, detail: string) => void): number {
  const expected = expectedOf(c);
  const answered = new Map<string, number>();
  let replies = 0;
  for (const line of lines) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      find('not JSON-RPC', `a reply line is not JSON: ${line.slice(0, 200)}`);
      continue;
    }
    for (const reply of Array.isArray(parsed) ? parsed : [parsed]) {
      replies += 1;
      const id = (reply as Json | null)?.id;
      const key = idKey(id);
      const methods = expected?.byId.get(key)?.methods;
      try {
        checkResponseShape(reply, methods?.size === 1 ? [...methods][0] : undefined);
      } catch (error) {
        find('not JSON-RPC', (error as Error).message);
        continue;
      }
      if (id === null) continue;
      if (!couldHaveBeenSent(id, sent)) find('unknown id', `a reply with id ${key}, which is nowhere in what was sent`);
      if (answeredAsSent(id)) answered.set(key, (answered.get(key) ?? 0) + 1);
    }
  }
  if (expected !== undefined) {
    for (const key of new Set([...expected.byId.keys(), ...answered.keys()])) {
      const want = expected.byId.get(key)?.count ?? 0;
      const got = answered.get(key) ?? 0;
      if (want !== got) find('answered wrongly', `id ${key}: sent ${want} times, answered ${got} times`);
    }
  }
  return replies;
}

const MARKER_VF = 'fuzz-sync-marker';

/** State-changing calls the agent audited as successful, by the peer address they came from. */
class AuditTrail {
  private readonly succeeded = new Set<string>();
  private markers = 0;
  private readonly waiters: { marker: number; resolve: () => void }[] = [];

  onLog(entry: Json): void {
    if (entry.audit !== true || entry.event !== 'call') return;
    if (entry.method === 'vf.reset' && entry.vf === MARKER_VF) {
      // The control connection's marker (a reset of a VF no case names): everything before it is in.
      this.markers += 1;
      for (const w of this.waiters.filter((x) => x.marker <= this.markers)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve();
      }
      return;
    }
    if (entry.outcome === 'ok' && STATE_CHANGING.has(String(entry.method))) this.succeeded.add(String(entry.peer));
  }

  /** Resolves once the agent's events up to now have arrived, by calling a marker through `control`. */
  async sync(control: RpcClient): Promise<void> {
    const marker = this.markers + this.waiters.length + 1;
    const arrived = new Promise<void>((resolve) => this.waiters.push({ marker, resolve }));
    await control.callError('vf.reset', { vf: MARKER_VF });
    await arrived;
  }

  succeededFrom(peer: string): boolean {
    return this.succeeded.has(peer);
  }

  clear(): void {
    this.succeeded.clear();
  }
}

async function statesOf(control: RpcClient): Promise<Map<string, string>> {
  const { vfs } = await control.call('vf.list', {});
  return new Map(vfs.map((v) => [v.id, v.state]));
}

/** Puts every VF back to RUNNING after a case legitimately moved it. */
async function restore(control: RpcClient, states: Map<string, string>): Promise<void> {
  for (const [vf, state] of states) {
    if (state === 'RUNNING') continue;
    try {
      await control.call('vf.setState', { vf, state: 'RUNNING', timeoutMs: 2000 });
    } catch {
      await control.call('vf.reset', { vf });
      if ((await control.call('vf.getState', { vf })).state !== 'RUNNING') await control.call('vf.setState', { vf, state: 'RUNNING', timeoutMs: 2000 });
    }
  }
}

function* batches<T>(items: Iterable<T>, size: number): Generator<T[]> {
  let batch: T[] = [];
  for (const item of items) {
    batch.push(item);
    if (batch.length === size) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

function sameStates(a: Map<string, string>, b: Map<string, string>): boolean {
  return a.size === b.size && [...a].every(([vf, state]) => b.get(vf) === state);
}

/** Starts the fuzz agent, runs the cases against it, stops it. */
export async function fuzz(cases: Iterable<FuzzCase>, options: FuzzOptions = {}): Promise<FuzzReport> {
  const dir = tempDir('vfmigd-fuzz-');
  const trail = new AuditTrail();
  let agent: AgentProcess | undefined;
  try {
    agent = await startAgentProcess({ config: fuzzAgentConfig(join(dir, 'ns.img')), retainLogs: false, onLog: (entry) => trail.onLog(entry) });
    return await runCases(agent, trail, cases, options);
  } finally {
    await agent?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function runCases(agent: AgentProcess, trail: AuditTrail, cases: Iterable<FuzzCase>, options: FuzzOptions): Promise<FuzzReport> {
  const started = performance.now();
  const pid = agent.process.pid ?? 0;
  const hangTimeoutMs = options.hangTimeoutMs ?? 10_000;
  const report: FuzzReport = {
    cases: 0,
    byKind: {},
    findings: Object.fromEntries(FINDING_KINDS.map((k) => [k, 0])) as Record<FindingKind, number>,
    samples: [],
    replies: 0,
    stateChanges: 0,
    rss: [{ cases: 0, mib: rssMiB(pid, 'VmRSS') }],
    rssAfterMiB: 0,
    peakRssMiB: 0,
    agentCpuS: 0,
    fuzzerCpuS: 0,
    elapsedMs: 0,
  };
  const agentCpuAtStart = cpuSeconds(pid);
  const fuzzerCpuAtStart = process.cpuUsage();
  const find = (kind: FindingKind, detail: string, bytes: Buffer): void => {
    report.findings[kind] += 1;
    if (report.samples.filter((s) => s.kind === kind).length < 5) report.samples.push({ kind, detail, bytes: excerpt(bytes), base64: bytes.toString('base64') });
  };
  const control = await RpcClient.connect(agent.tcp);
  try {
    let baseline = await statesOf(control);
    if (baseline.size !== FUZZ_VF_IDS.length || [...baseline.values()].some((s) => s !== 'RUNNING')) throw new Error(`the fuzz agent's VFs are not all RUNNING: ${JSON.stringify([...baseline])}`);
    for (const batch of batches(cases, options.concurrency ?? 4)) {
      const runs = await Promise.all(batch.map(async (c) => {
        const bytes = caseBytes(c);
        const kind = c.kind.split('+')[0] ?? c.kind;
        report.byKind[kind] = (report.byKind[kind] ?? 0) + 1;
        return { c, bytes, ...(await exchange(agent.tcp, bytes, c.cuts, hangTimeoutMs)) };
      }));
      report.cases += batch.length;
      if (agent.process.exitCode !== null || agent.process.signalCode !== null) {
        find('crash', `the agent exited (${agent.process.exitCode ?? agent.process.signalCode}) during one of these cases`, Buffer.concat(runs.map((r) => r.bytes)));
        break;
      }
      for (const { c, bytes, lines } of runs) {
        if (lines === undefined) find('hang', `the connection was still open ${hangTimeoutMs} ms after the case was sent and half-closed`, bytes);
        else report.replies += checkReplies(lines, c, bytes.toString('latin1'), (kind, detail) => find(kind, detail, bytes));
      }
      const states = await statesOf(control);
      if (!sameStates(states, baseline)) {
        report.stateChanges += 1;
        await trail.sync(control);
        const explained = runs.some((r) => trail.succeededFrom(`127.0.0.1:${r.port}`));
        if (!explained) find('state changed', `${JSON.stringify([...baseline])} → ${JSON.stringify([...states])}, and no state-changing call of these ${runs.length} cases succeeded`, Buffer.concat(runs.map((r) => r.bytes)));
        await restore(control, states);
        baseline = await statesOf(control);
        trail.clear();
      }
      const every = options.rssEvery ?? 1000;
      if (Math.floor(report.cases / every) !== Math.floor((report.cases - batch.length) / every)) {
        report.rss.push({ cases: report.cases, mib: rssMiB(pid, 'VmRSS') });
        options.onProgress?.(report);
      }
    }
  } finally {
    control.destroy();
  }
  if (agent.process.exitCode === null) {
    report.rssAfterMiB = rssMiB(pid, 'VmRSS');
    report.peakRssMiB = rssMiB(pid, 'VmHWM');
    report.agentCpuS = cpuSeconds(pid) - agentCpuAtStart;
  }
  const fuzzerCpu = process.cpuUsage(fuzzerCpuAtStart);
  report.fuzzerCpuS = (fuzzerCpu.user + fuzzerCpu.system) / 1e6;
  report.elapsedMs = performance.now() - started;
  return report;
}
