/**
 * MSI-X style interrupt delivery of one controller.
 *
 * A CQ with IEN that receives entries asks for its vector. Requests made in
 * the same turn of the event loop raise each vector once, as a device that
 * writes a batch of CQEs before its MSI-X message. A vector masked through
 * INTMS (vectors 0..31), or any vector while the VF is stopped, is left
 * pending and raised when unmasked or running again.
 *
 * Interrupt Coalescing (feature 08h) applies to I/O queues only: with both
 * THR and TIME non-zero, a vector is raised once THR+1 entries have
 * accumulated or TIME x 100 us after the first of them, whichever is first.
 */
import type { ScheduledTask, ServiceClock } from './service-clock.ts';

export interface CoalescingSetting {
  /** Aggregation threshold, 0's based entries. */
  readonly threshold: number;
  /** Aggregation time, in 100 us units. */
  readonly time: number;
  /** Vectors whose coalescing is disabled (Interrupt Vector Configuration CD): each entry raises them at once. */
  readonly disabledVectors: readonly number[];
}

export interface InterruptSnapshot {
  readonly mask: number;
  readonly pendingVectors: readonly number[];
}

export class InterruptController {
  readonly #clock: ServiceClock;
  readonly #counts: number[];
  readonly #aggregated: number[];
  readonly #timers = new Map<number, ScheduledTask>();
  readonly #pending = new Set<number>();
  readonly #requested = new Set<number>();
  #mask = 0;
  #held = false;
  #flushQueued = false;
  #coalescing: CoalescingSetting = { threshold: 0, time: 0, disabledVectors: [] };

  constructor(vectorCount: number, clock: ServiceClock) {
    this.#clock = clock;
    this.#counts = new Array<number>(vectorCount).fill(0);
    this.#aggregated = new Array<number>(vectorCount).fill(0);
  }

  get vectorCount(): number {
    return this.#counts.length;
  }

  /** INTMS / INTMC read value. */
  get mask(): number {
    return this.#mask;
  }

  counts(): readonly number[] {
    return [...this.#counts];
  }

  setCoalescing(setting: CoalescingSetting): void {
    this.#coalescing = setting;
  }

  /** An entry was posted to a CQ with interrupts enabled. */
  entryPosted(vector: number, adminQueue: boolean): void {
    const { threshold, time, disabledVectors } = this.#coalescing;
    if (adminQueue || threshold === 0 || time === 0 || disabledVectors.includes(vector)) {
      this.#request(vector);
      return;
    }
    const count = (this.#aggregated[vector] ?? 0) + 1;
    this.#aggregated[vector] = count;
    if (count > threshold) this.#request(vector);
    else if (!this.#timers.has(vector)) {
      this.#timers.set(vector, this.#clock.schedule(performance.now() + time * 100 / 1000, () => this.#request(vector)));
    }
  }

  /** Raises what coalescing still holds back; used when a drain completes. */
  flushAll(): void {
    this.#aggregated.forEach((count, vector) => {
      if (count > 0) this.#request(vector);
    });
    this.#flush();
  }

  writeMaskSet(bits: number): void {
    this.#mask = (this.#mask | bits) >>> 0;
  }

  writeMaskClear(bits: number): void {
    this.#mask = (this.#mask & ~bits) >>> 0;
    this.#deliverPending();
  }

  /** Stopped: interrupts stay pending until `release`. */
  hold(): void {
    this.#held = true;
  }

  release(): void {
    this.#held = false;
    this.#deliverPending();
  }

  /** Controller reset: masks, pending and coalescing state are cleared; counts are what the host saw and stay. */
  reset(): void {
    this.#mask = 0;
    this.#pending.clear();
    this.#requested.clear();
    this.#aggregated.fill(0);
    for (const timer of this.#timers.values()) timer.cancel();
    this.#timers.clear();
    this.#coalescing = { threshold: 0, time: 0, disabledVectors: [] };
  }

  snapshot(): InterruptSnapshot {
    return { mask: this.#mask, pendingVectors: [...this.#pending].sort((a, b) => a - b) };
  }

  restore(snapshot: InterruptSnapshot): void {
    this.reset();
    this.#mask = snapshot.mask >>> 0;
    for (const vector of snapshot.pendingVectors) this.#pending.add(vector);
  }

  #request(vector: number): void {
    this.#aggregated[vector] = 0;
    this.#timers.get(vector)?.cancel();
    this.#timers.delete(vector);
    this.#requested.add(vector);
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(() => this.#flush());
  }

  #flush(): void {
    this.#flushQueued = false;
    for (const vector of this.#requested) this.#raise(vector);
    this.#requested.clear();
  }

  #raise(vector: number): void {
    if (this.#held || this.#isMasked(vector)) {
      this.#pending.add(vector);
      return;
    }
    this.#counts[vector] = (this.#counts[vector] ?? 0) + 1;
  }

  #deliverPending(): void {
    if (this.#held) return;
    for (const vector of [...this.#pending]) {
      if (this.#isMasked(vector)) continue;
      this.#pending.delete(vector);
      this.#counts[vector] = (this.#counts[vector] ?? 0) + 1;
    }
  }

  #isMasked(vector: number): boolean {
    return vector < 32 && (this.#mask & (1 << vector)) !== 0;
  }
}
