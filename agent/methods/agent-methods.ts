/** rpc.discover, agent.info, agent.health: the agent itself. */
import type { MigrationCore } from '../core/migration-core.ts';
import type { OpenrpcDocument, SocFacts } from '../../schemas/types.ts';
import type { MethodHandlers } from './method-table.ts';

export interface AgentFacts {
  readonly version: string;
  readonly apiVersion: string;
  readonly startedAt: Date;
  readonly listeners: () => readonly string[];
  /** Gathered once at start-up. */
  readonly soc: Promise<SocFacts>;
  readonly openRpc: OpenrpcDocument;
}

type AgentHandlers = Pick<MethodHandlers, 'rpc.discover' | 'agent.info' | 'agent.health'>;

export function agentHandlers(core: MigrationCore, facts: AgentFacts): AgentHandlers {
  return {
    'rpc.discover': async () => facts.openRpc,
    'agent.info': async () => ({
      name: 'vfmigd',
      version: facts.version,
      apiVersion: facts.apiVersion,
      startedAt: facts.startedAt.toISOString(),
      uptimeSeconds: (Date.now() - facts.startedAt.getTime()) / 1000,
      listeners: [...facts.listeners()],
      drivers: core.drivers.map((d) => ({
        name: d.name,
        capabilities: { ...d.capabilities },
        stateFormats: d.stateFormats.map((f) => ({ ...f })),
        vfCount: core.list().filter((m) => m.driver === d).length,
      })),
      soc: await facts.soc,
    }),
    'agent.health': async () => {
      const perDriver = await Promise.all(core.drivers.map(async (d) => {
        try {
          return (await d.health()).map((c) => ({ driver: d.name, name: c.name, ok: c.ok, detail: c.detail }));
        } catch (error) {
          return [{ driver: d.name, name: 'health', ok: false, detail: error instanceof Error ? error.message : String(error) }];
        }
      }));
      const inError = core.list().filter((m) => m.state === 'ERROR').map((m) => m.vf.id);
      const checks = [
        ...perDriver.flat(),
        { driver: 'core', name: 'vfs-not-in-error', ok: inError.length === 0, detail: inError.length === 0 ? 'no VF is in ERROR' : `in ERROR: ${inError.join(', ')}` },
      ];
      return { status: checks.every((c) => c.ok) ? 'ok' : 'degraded', checks };
    },
  };
}
