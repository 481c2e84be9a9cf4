import type { MigrationCore } from '../core/migration-core.ts';
import { agentHandlers, type AgentFacts } from './agent-methods.ts';
import { eventHandlers, type EventLimits } from './event-methods.ts';
import { hostPortHandlers } from './host-port-methods.ts';
import type { MethodHandlers } from './method-table.ts';
import { vfHandlers } from './vf-methods.ts';

/** Every method the agent serves; the type makes a missing one a compile error. */
export function allHandlers(core: MigrationCore, facts: AgentFacts, events: EventLimits): MethodHandlers {
  return { ...agentHandlers(core, facts), ...vfHandlers(core), ...hostPortHandlers(core), ...eventHandlers(core, events) };
}
