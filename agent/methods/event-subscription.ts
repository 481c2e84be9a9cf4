/**
 * One connection's subscription to the core's events: the events of its
 * topics on its VFs go out as notifications, in order. While the client
 * reads, each is written at once; while it does not, they wait here, at
 * most `maxQueued` of them, and one more drops the subscription with a
 * final events.dropped notice. The agent never waits for a subscriber.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { CoreEvent, CoreEvents, EventTopic } from '../core/core-events.ts';
import type { NotificationChannel } from '../rpc/context.ts';

export interface SubscriptionFilter {
  readonly topics: ReadonlySet<EventTopic>;
  /** VF ids. */
  readonly vfs: ReadonlySet<string>;
}

export class EventSubscription {
  readonly id = randomUUID();
  readonly maxQueued: number;
  private readonly channel: NotificationChannel;
  private readonly filter: SubscriptionFilter;
  private readonly log: Logger;
  private readonly waiting: CoreEvent[] = [];
  private readonly stopListening: () => void;
  private readonly release: () => void;
  private drainAwaited = false;
  private ended = false;

  constructor(events: CoreEvents, channel: NotificationChannel, filter: SubscriptionFilter, maxQueued: number, log: Logger) {
    this.channel = channel;
    this.filter = filter;
    this.maxQueued = maxQueued;
    this.log = log;
    this.release = channel.hold();
    this.stopListening = events.subscribe((event) => this.deliver(event));
  }

  /** Ends it: nothing more is sent, what waits is discarded. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.stopListening();
    this.release();
    this.waiting.length = 0;
  }

  private deliver(event: CoreEvent): void {
    if (!this.filter.topics.has(event.topic) || !this.filter.vfs.has(event.params.vf)) return;
    if (this.waiting.length === 0 && this.send(event)) return;
    if (this.ended) return;
    if (this.waiting.length >= this.maxQueued) {
      this.drop();
      return;
    }
    this.waiting.push(event);
    this.awaitDrain();
  }

  /** True once sent (or the connection is gone, which ends the subscription); false when the client is behind. */
  private send(event: CoreEvent): boolean {
    const outcome = this.channel.notify(event.topic, event.params);
    if (outcome === 'closed') this.end();
    return outcome !== 'busy';
  }

  private awaitDrain(): void {
    if (this.drainAwaited) return;
    this.drainAwaited = true;
    this.channel.whenDrained(() => {
      this.drainAwaited = false;
      this.flush();
    });
  }

  private flush(): void {
    while (!this.ended && this.waiting.length > 0) {
      if (!this.send(this.waiting[0] as CoreEvent)) {
        this.awaitDrain();
        return;
      }
      this.waiting.shift();
    }
  }

  private drop(): void {
    const discarded = this.waiting.length + 1;
    const reason = `the subscriber fell ${this.maxQueued} notifications behind (limits.maxQueuedEvents)`;
    this.log.warn({ phase: 'events', subscription: this.id, discarded }, 'slow events subscriber dropped');
    this.end();
    this.channel.notify('events.dropped', { subscription: this.id, discarded, reason, at: new Date().toISOString() }, true);
  }
}
