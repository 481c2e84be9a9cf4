/**
 * Assembles a running agent from a resolved config, layer by layer:
 * drivers → migration core → method handlers → call pipeline → envelope →
 * listeners. `assembleAgent` stops short of the listeners, so that tests
 * can drive the whole call path in process (`inject`) without a socket.
 */
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { createDriver } from '../vendor-drivers/index.ts';
import { AuditLog } from './audit-log.ts';
import type { ResolvedConfig } from './config.ts';
import { MigrationCore } from './core/migration-core.ts';
import { Fault } from './core/faults.ts';
import { allHandlers } from './methods/index.ts';
import { AgentMetrics } from './metrics/agent-metrics.ts';
import { serveMetrics, type MetricsServer } from './metrics/metrics-server.ts';
import { Dispatcher } from './rpc/envelope.ts';
import { errorResponse } from './rpc/error-catalogue.ts';
import { buildOpenRpcDocument } from './rpc/openrpc.ts';
import { CallPipeline, type CallObserver, type MethodHandler } from './rpc/pipeline.ts';
import { Policy } from './rpc/policy.ts';
import { SchemaRegistry } from './rpc/schema-registry.ts';
import { gatherSocFacts } from './soc-facts.ts';
import { formatListenAddress, parseListenAddress } from './transport/listen-address.ts';
import { Listeners } from './transport/listener.ts';
import type { ConnectionLink, Reply } from './transport/connection.ts';
import { LOCAL_PRINCIPAL, type PeerInfo } from './transport/peer.ts';
import { TlsCredentials } from './transport/tls-credentials.ts';
import type { OpenrpcDocument } from '../schemas/types.ts';

/** MAJOR.MINOR of the JSON-RPC API; clients (the VMM plugin) check the major. */
export const API_VERSION = '1.0';

/** The agent without its sockets: everything a message meets after the transport. */
export interface AgentApp {
  readonly core: MigrationCore;
  readonly dispatcher: Dispatcher;
  /**
   * Handles one message as if it came over a connection of `peer` (by
   * default a local caller), and resolves to the parsed response, or
   * undefined when none is owed.
   */
  inject(message: string | object, peer?: Partial<PeerInfo>): Promise<unknown>;
  close(): Promise<void>;
}

export interface RunningAgent {
  /** Bound addresses, e.g. `tcp://127.0.0.1:7700`. */
  readonly listening: readonly string[];
  /** Where the Prometheus metrics are served, e.g. `http://127.0.0.1:9770/metrics`; undefined when nowhere. */
  readonly metrics: string | undefined;
  /** Reads the TLS credentials again; throws (keeping the old ones) when they are unusable. */
  reloadTls(): void;
  close(): Promise<void>;
  /** The VFs and their events (the service status line follows them). */
  readonly core: MigrationCore;
}

export interface AssembleOptions {
  readonly schemas?: SchemaRegistry;
  /** Observers of every call beside the audit log. */
  readonly observers?: readonly CallObserver[];
  readonly audit?: AuditLog;
  readonly listeners?: () => readonly string[];
  readonly metrics?: () => string | undefined;
}

/** An injected call's link: no framing, so no attachments; no connection, so a notification has nowhere to go. */
const NO_CONNECTION: ConnectionLink = {
  attachments: false,
  enableAttachments: () => undefined,
  notify: () => 'closed',
  whenDrained: () => undefined,
  onClose: (listener) => queueMicrotask(listener),
  hold: () => () => undefined,
};

function replyText(reply: Reply): string {
  const text = typeof reply === 'object' && 'attachment' in reply ? reply.text : reply;
  return typeof text === 'string' ? text : text.join('');
}

export async function assembleAgent(config: ResolvedConfig, log: Logger, options: AssembleOptions = {}): Promise<AgentApp> {
  const schemas = options.schemas ?? new SchemaRegistry();
  const startedAt = new Date();
  const version = packageVersion();
  const drivers = config.drivers.map(createDriver);
  const core = new MigrationCore(drivers, {
    maxStateBytes: config.limits.maxStateBytes,
    maxQueuedCalls: config.limits.maxQueuedCallsPerVf,
    defaultLeaseMs: config.leases.defaultMs,
    maxLeaseMs: config.leases.maxMs,
  }, log, config.stateDir);
  await core.start();

  const openRpc = buildOpenRpcDocument(schemas, { version, apiVersion: API_VERSION }) as unknown as OpenrpcDocument;
  const handlers = allHandlers(core, { version, apiVersion: API_VERSION, startedAt, soc: gatherSocFacts(), openRpc, listeners: options.listeners ?? (() => []), metrics: options.metrics ?? (() => undefined), maxAttachmentBytes: config.limits.maxMessageBytes }, { topics: schemas.eventTopics, maxQueued: config.limits.maxQueuedEvents });
  const pipeline = new CallPipeline({
    handlers: new Map(Object.entries(handlers) as [string, MethodHandler][]),
    schemas,
    policy: new Policy(config.grants),
    resolveVf: (ref) => {
      try {
        return core.lookup(ref).vf;
      } catch (error) {
        if (error instanceof Fault) return undefined;
        throw error;
      }
    },
    observers: [...(options.audit === undefined ? [] : [options.audit]), ...(options.observers ?? [])],
  });
  const dispatcher = new Dispatcher(pipeline, config.limits, log);
  let nextInjected = 1_000_000_000;
  return {
    core,
    dispatcher,
    inject: async (message, peer = {}) => {
      const session = dispatcher.openSession({
        connectionId: nextInjected++,
        transport: 'unix',
        listener: 'inject',
        remote: 'inject',
        principal: LOCAL_PRINCIPAL,
        authentication: 'local',
        ...peer,
      });
      // No framing here, so no attachments: bytes go as base64.
      const response = await session.handle(typeof message === 'string' ? message : JSON.stringify(message), NO_CONNECTION);
      return response === undefined ? undefined : JSON.parse(replyText(response));
    },
    close: () => core.stop(),
  };
}

export async function startAgent(config: ResolvedConfig, log: Logger, schemas = new SchemaRegistry()): Promise<RunningAgent> {
  const tls = config.tls === undefined ? undefined : new TlsCredentials(config.tls);
  const audit = AuditLog.open(config.auditLog);
  const listening: string[] = [];
  const metrics = config.metrics === undefined ? undefined : new AgentMetrics({ build: { version: packageVersion(), apiVersion: API_VERSION }, methods: schemas.methods.keys() });
  let metricsServer: MetricsServer | undefined;
  const app = await assembleAgent(config, log, {
    schemas, audit, listeners: () => listening, metrics: () => metricsServer?.url, observers: metrics === undefined ? [] : [metrics],
  });
  const listeners = new Listeners(app.dispatcher, {
    limits: { ...config.limits, tlsHandshakeTimeoutMs: config.tls?.handshakeTimeoutMs ?? 0 },
    tls,
    unixSocket: config.unixSocket,
    insecure: config.insecure,
  }, {
    messageTooLarge: (limit) => errorResponse(null, 'MESSAGE_TOO_LARGE', `a message may be at most ${limit} bytes; closing the connection`, { limit }),
    tooManyConnections: (limit, scope) => errorResponse(null, 'TOO_MANY_CONNECTIONS', scope === 'agent'
      ? `the agent serves at most ${limit} connections; closing this one`
      : `the agent serves at most ${limit} connections from one peer; closing this one`, { limit }),
  }, {
    onRefusal: (refusal) => {
      audit.connectionRefused(refusal);
      metrics?.connectionRefused(refusal);
    },
  }, log);
  const unfollow = metrics?.follow({ vfs: () => app.core.list(), connections: () => listeners.openConnections(), events: app.core.events });
  try {
    for (const text of config.listen) {
      const bound = await listeners.listen(parseListenAddress(text));
      listening.push(formatListenAddress(bound.address));
    }
    // After the listeners: a scraper that reaches the agent finds it serving.
    if (metrics !== undefined && config.metrics !== undefined) metricsServer = await serveMetrics(metrics.registry, config.metrics, log);
  } catch (error) {
    unfollow?.();
    await listeners.close();
    await app.close();
    throw error;
  }
  log.info({ listen: listening, metrics: metricsServer?.url, vfs: app.core.list().length, drivers: app.core.drivers.map((d) => d.name), version: packageVersion() }, 'listening');
  return {
    listening,
    metrics: metricsServer?.url,
    reloadTls: () => {
      if (tls === undefined) return;
      tls.reload();
    },
    close: async () => {
      await metricsServer?.close();
      unfollow?.();
      await listeners.close();
      await app.close();
    },
    core: app.core,
  };
}

export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL(import.meta.url.includes('/dist/') ? '../../package.json' : '../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}
