/**
 * What happens to the VFs, as events: the one source for pushed
 * notifications (events.subscribe) and for metrics. Each event's shape is
 * its schema in schemas/events/ (the topic is the notification's method
 * name). Listeners are called synchronously, in the order they subscribed,
 * and must not throw or block: a slow consumer queues on its own side. A
 * listener that throws is reported and kept out of the core's way.
 */
import type { EventTopic, EventTypes } from '../../schemas/types.ts';

export type { EventTopic };

/** An event: its topic and what its notification carries. */
export type CoreEvent = { [T in EventTopic]: { readonly topic: T; readonly params: EventTypes[T] } }[EventTopic];

export type EventListener = (event: CoreEvent) => void;

export class CoreEvents {
  private readonly listeners = new Set<EventListener>();
  private readonly onListenerError: (error: unknown) => void;

  constructor(onListenerError: (error: unknown) => void = () => undefined) {
    this.onListenerError = onListenerError;
  }

  /** Calls `listener` with every event from now on; returns the call that stops it. */
  subscribe(listener: EventListener): () => void {
    // A function object of its own, so the same listener subscribed twice is two subscriptions.
    const entry: EventListener = (event) => listener(event);
    this.listeners.add(entry);
    return () => { this.listeners.delete(entry); };
  }

  /** Whether anyone listens: an event nobody hears is not even built. */
  get heard(): boolean {
    return this.listeners.size > 0;
  }

  emit<T extends EventTopic>(topic: T, params: EventTypes[T]): void {
    if (this.listeners.size === 0) return;
    const event = { topic, params } as CoreEvent;
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (error) {
        this.onListenerError(error);
      }
    }
  }
}
