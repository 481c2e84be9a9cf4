/**
 * A lease clock for unit tests of the VF machine: time passes only when the
 * test says so, so leases, expiries and measured times are exact.
 */
import type { LeaseClock, LeaseTimer } from '../../agent/core/migration-lease.ts';

/** Time that passes only when the test says so; due timers fire in deadline order. */
export class ManualClock implements LeaseClock {
  #now = 0;
  #timers: { at: number; fire: () => void; cancelled: boolean }[] = [];

  monotonic(): number { return this.#now; }
  wall(): number { return Date.UTC(2026, 11, 2) + this.#now; }
  setTimer(fire: () => void, ms: number): LeaseTimer {
    const timer = { at: this.#now + ms, fire, cancelled: false };
    this.#timers.push(timer);
    return { cancel: () => { timer.cancelled = true; } };
  }

  /** Moves time on by `ms`, firing what falls due, and lets the work they queue finish. */
  async advance(ms: number): Promise<void> {
    const until = this.#now + ms;
    for (;;) {
      const due = this.#timers.filter((t) => !t.cancelled && t.at <= until).sort((a, b) => a.at - b.at)[0];
      if (due === undefined) break;
      this.#timers = this.#timers.filter((t) => t !== due);
      this.#now = Math.max(this.#now, due.at);
      due.fire();
      await settle();
    }
    this.#now = until;
    await settle();
  }
}

/** Lets queued promise chains (an expiry through the VF's queue, the fake driver's awaits) run to their end. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i += 1) await new Promise((resolve) => setImmediate(resolve));
}

