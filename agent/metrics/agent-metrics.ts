/**
 * The agent's Prometheus metrics: one registry and its instruments. It
 * only observes: calls through the pipeline's observer interface,
 * connection refusals through the transport's hook, what happens to the
 * VFs through the core's event bus; and what is true now (VFs by state,
 * open sessions, stranded VFs, open connections) it asks for at each
 * scrape instead of counting, so it cannot drift. Labels are low
 * cardinality by construction: method names from the method table (any
 * other name is `unknown`), enums from the schemas; never a session, a VF
 * or a principal.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { CoreEvent, EventTopic } from '../core/core-events.ts';
import type { SessionInfo } from '../core/migration-session.ts';
import { VFIO_STATES, type VfioStateName } from '../core/vfio-states.ts';
import type { CallObserver, CallRecord } from '../rpc/pipeline.ts';
import { SCHEMAS_DIR } from '../rpc/schema-registry.ts';
import { REFUSAL_KINDS, type ConnectionRefusal, type OpenConnections } from '../transport/listener.ts';

export const METRIC_PREFIX = 'vfmigd_';

/** The label value of every method name that is not in the method table: a client can send any name. */
export const UNKNOWN_METHOD = 'unknown';

/** From 100 µs (a read) to 10 s (a quiesce that waits for the device, a large slice). */
const CALL_SECONDS_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** From 1 ms (nvme-emu's few kilobytes) to 30 s (a large state with no pre-copy). */
const DOWNTIME_SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export interface BuildFacts {
  readonly version: string;
  readonly apiVersion: string;
}

/** A VF as the gauges read it (the core's VfMachine). */
export interface ObservedVf {
  readonly state: VfioStateName;
  readonly stranded: boolean;
  readonly sessionInfo: SessionInfo | undefined;
}

/** What the metrics follow: the core's VFs and events, the listeners' connections. */
export interface ObservedAgent {
  readonly vfs: () => Iterable<ObservedVf>;
  readonly connections: () => OpenConnections;
  readonly events: { subscribe(listener: (event: CoreEvent) => void): () => void };
}

export interface AgentMetricsOptions {
  readonly build: BuildFacts;
  /** The method table: the only names a `method` label takes besides `unknown`. */
  readonly methods: Iterable<string>;
  /** prom-client's process and Node.js metrics (default on). */
  readonly processMetrics?: boolean;
}

export class AgentMetrics implements CallObserver {
  readonly registry = new Registry();
  private readonly methods: ReadonlySet<string>;
  private observed: ObservedAgent | undefined;
  /** Stream bytes already counted, per open session: progress events carry running totals. */
  private readonly countedBytes = new Map<string, number>();

  private readonly calls: Counter<'method' | 'outcome'>;
  private readonly callSeconds: Histogram<'method'>;
  private readonly callErrors: Counter<'code'>;
  private readonly refusals: Counter<'kind'>;
  private readonly sessions: Counter<'kind' | 'outcome'>;
  private readonly downtime: Histogram<'kind'>;
  private readonly savedBytes: Counter;
  private readonly loadedBytes: Counter;
  private readonly leaseExpiries: Counter<'action'>;
  private readonly strandings: Counter;

  constructor(options: AgentMetricsOptions) {
    this.methods = new Set(options.methods);
    const registers = [this.registry];
    const name = (base: string): string => `${METRIC_PREFIX}${base}`;
    new Gauge({ name: name('build_info'), help: 'Always 1; the labels say which vfmigd runs.', labelNames: ['version', 'api_version'], registers })
      .set({ version: options.build.version, api_version: options.build.apiVersion }, 1);
    this.calls = new Counter({ name: name('rpc_calls_total'), help: 'JSON-RPC calls finished, by method (`unknown`: no such method) and outcome (`ok`; `refused`: UNAUTHORIZED or NOT_SESSION_OWNER; `failed`: any other error).', labelNames: ['method', 'outcome'], registers });
    this.callSeconds = new Histogram({ name: name('rpc_call_duration_seconds'), help: 'Time from a call\'s authorization to its result, by method (time waiting for the connection\'s in-flight limit is not in it; a name no method has is not timed).', labelNames: ['method'], buckets: CALL_SECONDS_BUCKETS, registers });
    this.callErrors = new Counter({ name: name('rpc_errors_total'), help: 'JSON-RPC calls that failed or were refused, by `error.data.code` (the error catalogue): `UNAUTHORIZED` counts authorization refusals.', labelNames: ['code'], registers });
    this.refusals = new Counter({ name: name('connections_refused_total'), help: 'Connections turned away before their first request, by kind: `authentication` (a TLS handshake that failed, a client certificate refused or naming no principal), `limit` (maxConnections or maxConnectionsPerPeer).', labelNames: ['kind'], registers });
    this.sessions = new Counter({ name: name('migration_sessions_total'), help: 'Save sessions (this agent is the source) and resume sessions (the destination) ended, by kind and outcome (see the session.ended event).', labelNames: ['kind', 'outcome'], registers });
    this.downtime = new Histogram({ name: name('migration_downtime_seconds'), help: 'This agent\'s share of a completed migration\'s downtime, by kind: a save\'s from the VF\'s stop to its last byte read, a resume\'s from its last bytes loaded to the state applied.', labelNames: ['kind'], buckets: DOWNTIME_SECONDS_BUCKETS, registers });
    this.savedBytes = new Counter({ name: name('state_saved_bytes_total'), help: 'Device state stream bytes handed out by save sessions, counted as each slice goes.', registers });
    this.loadedBytes = new Counter({ name: name('state_loaded_bytes_total'), help: 'Device state stream bytes taken in by resume sessions, counted as each slice comes.', registers });
    this.leaseExpiries = new Counter({ name: name('lease_expiries_total'), help: 'Migration leases that expired, by what the agent did (see the lease.expired event).', labelNames: ['action'], registers });
    this.strandings = new Counter({ name: name('vf_strandings_total'), help: 'Times a VF was left stopped and stranded by a lease that expired (see the vf.stranded event).', registers });
    this.scrapeGauges(registers);

    // Every value of a bounded label is there from the start, at 0: an alerting rule's first increase is then seen.
    for (const outcome of ['ok', 'refused', 'failed'] as const) for (const method of this.methods) this.calls.inc({ method, outcome }, 0);
    for (const kind of REFUSAL_KINDS) this.refusals.inc({ kind }, 0);
    for (const kind of eventEnum('session.ended', 'kind')) {
      this.downtime.zero({ kind });
      for (const outcome of eventEnum('session.ended', 'outcome')) this.sessions.inc({ kind, outcome }, 0);
    }
    for (const action of eventEnum('lease.expired', 'action')) this.leaseExpiries.inc({ action }, 0);
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: METRIC_PREFIX });
  }

  observe(record: CallRecord): void {
    const method = this.methods.has(record.method) ? record.method : UNKNOWN_METHOD;
    this.calls.inc({ method, outcome: record.outcome });
    // A name no method has is answered at once: there is no call to time.
    if (method !== UNKNOWN_METHOD) this.callSeconds.observe({ method }, record.durationMs / 1000);
    if (record.error !== undefined) this.callErrors.inc({ code: record.error });
  }

  connectionRefused(refusal: ConnectionRefusal): void {
    this.refusals.inc({ kind: refusal.kind });
  }

  /**
   * Starts observing a running agent: its events from now on, its state at
   * each scrape. Sessions already open count from the bytes they have.
   * Returns the call that stops the events.
   */
  follow(agent: ObservedAgent): () => void {
    this.observed = agent;
    for (const vf of agent.vfs()) if (vf.sessionInfo !== undefined) this.countedBytes.set(vf.sessionInfo.id, vf.sessionInfo.bytes);
    return agent.events.subscribe((event) => this.onEvent(event));
  }

  /** Cheap and synchronous: the core calls it inline. */
  private onEvent(event: CoreEvent): void {
    switch (event.topic) {
      case 'session.progress':
        this.countBytes(event.params.session, event.params.kind, event.params.bytes);
        return;
      case 'session.ended': {
        const { session, kind, outcome, bytes, downtimeMs } = event.params;
        // Bytes a last slice moved without a progress event of its own still count.
        this.countBytes(session, kind, bytes);
        this.countedBytes.delete(session);
        this.sessions.inc({ kind, outcome });
        if (downtimeMs !== null) this.downtime.observe({ kind }, downtimeMs / 1000);
        return;
      }
      case 'lease.expired':
        this.leaseExpiries.inc({ action: event.params.action });
        return;
      case 'vf.stranded':
        this.strandings.inc();
        return;
      case 'vf.stateChanged':
        // VFs by state are counted at the scrape.
        return;
    }
  }

  /**
   * Bytes counted as they move, not when the session ends: a long transfer
   * shows its rate while it runs, and the bytes of a session that never
   * completes (cancelled, expired) did cross the wire.
   */
  private countBytes(session: string, kind: 'save' | 'resume', total: number): void {
    const delta = total - (this.countedBytes.get(session) ?? 0);
    this.countedBytes.set(session, total);
    if (delta <= 0) return;
    (kind === 'save' ? this.savedBytes : this.loadedBytes).inc(delta);
  }

  /** The gauges of what is true now, read from the agent at each scrape. */
  private scrapeGauges(registers: Registry[]): void {
    const vfs = (): Iterable<ObservedVf> => this.observed?.vfs() ?? [];
    const byState: Gauge<'state'> = new Gauge({
      name: `${METRIC_PREFIX}vfs`, help: 'VFs by VFIO state now.', labelNames: ['state'], registers,
      collect: () => {
        const count = new Map<string, number>(VFIO_STATES.map((state) => [state, 0]));
        for (const vf of vfs()) count.set(vf.state, (count.get(vf.state) ?? 0) + 1);
        for (const [state, n] of count) byState.set({ state }, n);
      },
    });
    const stranded: Gauge = new Gauge({
      name: `${METRIC_PREFIX}vfs_stranded`, help: 'VFs stranded now: stopped until vf.resume or vf.reset says which side runs.', registers,
      collect: () => {
        let n = 0;
        for (const vf of vfs()) if (vf.stranded) n += 1;
        stranded.set(n);
      },
    });
    const sessions: Gauge<'kind'> = new Gauge({
      name: `${METRIC_PREFIX}sessions_open`, help: 'Save and resume sessions open now, by kind.', labelNames: ['kind'], registers,
      collect: () => {
        const count = new Map<string, number>(eventEnum('session.ended', 'kind').map((kind) => [kind, 0]));
        for (const { sessionInfo } of vfs()) if (sessionInfo !== undefined) count.set(sessionInfo.kind, (count.get(sessionInfo.kind) ?? 0) + 1);
        for (const [kind, n] of count) sessions.set({ kind }, n);
      },
    });
    const connections: Gauge<'transport'> = new Gauge({
      name: `${METRIC_PREFIX}connections_open`, help: 'JSON-RPC connections being served now (past the caps and the TLS handshake), by transport.', labelNames: ['transport'], registers,
      collect: () => {
        const open = this.observed?.connections() ?? { tcp: 0, tls: 0, unix: 0 };
        for (const [transport, n] of Object.entries(open)) connections.set({ transport }, n);
      },
    });
  }
}

const enums = new Map<string, readonly string[]>();

/** The values an event's field takes, as its schema in schemas/events/ lists them: the label values, with no second copy. */
function eventEnum(topic: EventTopic, field: string): readonly string[] {
  const key = `${topic}.${field}`;
  let values = enums.get(key);
  if (values === undefined) {
    const schema = JSON.parse(readFileSync(join(SCHEMAS_DIR, 'events', `${topic}.json`), 'utf8')) as { $defs: { params: { properties: Record<string, { enum?: string[] }> } } };
    values = schema.$defs.params.properties[field]?.enum;
    if (values === undefined) throw new Error(`schemas/events/${topic}.json: ${field} has no enum`);
    enums.set(key, values);
  }
  return values;
}
