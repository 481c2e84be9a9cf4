/** events.subscribe, events.unsubscribe: the core's events pushed to a connection. */
import type { MigrationCore } from '../core/migration-core.ts';
import type { EventTopic } from '../core/core-events.ts';
import { Fault } from '../core/faults.ts';
import type { NotificationChannel } from '../rpc/context.ts';
import { EventSubscription } from './event-subscription.ts';
import type { MethodHandlers } from './method-table.ts';

type EventHandlers = Pick<MethodHandlers, 'events.subscribe' | 'events.unsubscribe'>;

export interface EventLimits {
  /** Every topic a subscriber may ask for (the schemas'), the default. */
  readonly topics: readonly EventTopic[];
  /** Notifications that may wait for one subscriber. */
  readonly maxQueued: number;
}

export function eventHandlers(core: MigrationCore, { topics: allTopics, maxQueued }: EventLimits): EventHandlers {
  /** One subscription per connection; it ends with the connection. */
  const subscriptions = new WeakMap<NotificationChannel, EventSubscription>();
  const unsubscribe = (channel: NotificationChannel): boolean => {
    const open = subscriptions.get(channel);
    open?.end();
    subscriptions.delete(channel);
    return open !== undefined;
  };
  return {
    'events.subscribe': async ({ topics, vfs }, ctx) => {
      // Only VFs the caller may read; one it may not is not said to exist (as vf.list and vf.get).
      const readable = core.list().filter((m) => ctx.may('read', m.vf));
      const wanted = vfs === undefined ? readable : vfs.map((ref) => {
        const machine = core.lookup(ref);
        if (!readable.includes(machine)) throw new Fault('VF_UNKNOWN', `no VF with id or BDF "${ref}"`, { vf: ref });
        return machine;
      });
      const ids = [...new Set(wanted.map((m) => m.vf.id))];
      const wantedTopics: EventTopic[] = topics === undefined ? [...allTopics] : [...topics];
      unsubscribe(ctx.channel);
      const subscription = new EventSubscription(core.events, ctx.channel, { topics: new Set(wantedTopics), vfs: new Set(ids) }, maxQueued, ctx.log);
      subscriptions.set(ctx.channel, subscription);
      ctx.channel.onClose(() => { if (subscriptions.get(ctx.channel) === subscription) unsubscribe(ctx.channel); });
      ctx.log.debug({ phase: 'events', subscription: subscription.id, topics: wantedTopics, vfs: ids.length }, 'events subscribed');
      return { subscription: subscription.id, topics: wantedTopics, vfs: ids, maxQueued };
    },
    'events.unsubscribe': async (_params, ctx) => ({ unsubscribed: unsubscribe(ctx.channel) }),
  };
}
