/** rpc.discover, rpc.enableAttachments, agent.info, agent.health: the agent itself and the connection. */
import type { MigrationCore } from '../core/migration-core.ts';
import type { OpenrpcDocument, SocFacts } from '../../schemas/types.ts';
import type { MethodHandlers } from './method-table.ts';

export interface AgentFacts {
  readonly version: string;
  readonly apiVersion: string;
  readonly startedAt: Date;
  readonly listeners: () => readonly string[];
  /** The metrics URL, once served; undefined when none is configured. */
  readonly metrics: () => string | undefined;
  /** Gathered once at start-up. */
  readonly soc: Promise<SocFacts>;
  readonly openRpc: OpenrpcDocument;
  /** The longest attachment a connection takes: the message size limit. */
  readonly maxAttachmentBytes: number;
}

type AgentHandlers = Pick<MethodHandlers, 'rpc.discover' | 'rpc.enableAttachments' | 'agent.info' | 'agent.health'>;

export function agentHandlers(core: MigrationCore, facts: AgentFacts): AgentHandlers {
  return {
    'rpc.discover': async () => facts.openRpc,
    'rpc.enableAttachments': async (_params, ctx) => {
      ctx.enableAttachments();
      return { version: 1, maxBytes: facts.maxAttachmentBytes };
    },
    'agent.info': async () => ({
      name: 'vfmigd',
      version: facts.version,
      apiVersion: facts.apiVersion,
      startedAt: facts.startedAt.toISOString(),
      uptimeSeconds: (Date.now() - facts.startedAt.getTime()) / 1000,
      listeners: [...facts.listeners()],
      metrics: facts.metrics() ?? null,
      memory: (({ rss, heapUsed, heapTotal, external }) => ({ rss, heapUsed, heapTotal, external }))(process.memoryUsage()),
      drivers: core.driverSummaries().map((d) => ({
        name: d.name,
        capabilities: { ...d.capabilities },
        stateFormats: d.stateFormats.map((f) => ({ ...f })),
        vfCount: d.vfCount,
      })),
      soc: await facts.soc,
    }),
    'agent.health': async () => {
      const checks = await core.health();
      return { status: checks.every((c) => c.ok) ? 'ok' : 'degraded', checks };
    },
  };
}
