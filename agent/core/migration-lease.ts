/**
 * A lease on a VF's migration: a deadline that the owner's calls push
 * back, and a timer that, once the deadline passes with no call, asks the
 * VF to end its migration safely (see VfMachine's expiry rules). The
 * deadline is on a monotonic clock, so that a wall-clock step neither
 * expires a lease early nor keeps one alive.
 *
 * Time comes from a `LeaseClock`, so that unit tests drive it by hand
 * instead of sleeping.
 */
import { performance } from 'node:perf_hooks';

export interface LeaseTimer {
  cancel(): void;
}

export interface LeaseClock {
  /** Milliseconds on a monotonic clock. */
  monotonic(): number;
  /** Milliseconds since the epoch, for the times a lease reports. */
  wall(): number;
  /** Calls `fire` after `ms` (at the earliest); the timer must not keep the process alive. */
  setTimer(fire: () => void, ms: number): LeaseTimer;
}

export const SYSTEM_CLOCK: LeaseClock = {
  monotonic: () => performance.now(),
  wall: () => Date.now(),
  setTimer: (fire, ms) => {
    const timer = setTimeout(fire, ms);
    timer.unref();
    return { cancel: () => clearTimeout(timer) };
  },
};

export interface LeaseLimits {
  /** A migration's lease when its calls ask for none. */
  readonly defaultLeaseMs: number;
  /** The longest lease a call may ask for. */
  readonly maxLeaseMs: number;
}

export class Lease {
  #durationMs: number;
  #deadline: number;
  #timer: LeaseTimer | undefined;
  /** When the armed timer fires. */
  #timerAt = 0;
  #ended = false;
  readonly #clock: LeaseClock;
  readonly #onExpire: (lease: Lease) => void;

  /** A lease of `durationMs` from now; `onExpire` is called once its deadline has passed with no extension. */
  constructor(durationMs: number, clock: LeaseClock, onExpire: (lease: Lease) => void) {
    this.#durationMs = durationMs;
    this.#clock = clock;
    this.#onExpire = onExpire;
    this.#deadline = clock.monotonic() + durationMs;
    this.#arm();
  }

  get durationMs(): number {
    return this.#durationMs;
  }

  /** When it expires unless extended, as wall-clock milliseconds. */
  get expiresAt(): number {
    return this.#clock.wall() + Math.max(0, this.#deadline - this.#clock.monotonic());
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** The deadline has passed. */
  expired(): boolean {
    return this.#clock.monotonic() >= this.#deadline;
  }

  /**
   * `durationMs` (default: the length it has) from now on. A later deadline
   * leaves the timer as it is (when it fires early it waits again), so that
   * a call costs no timer; an earlier one (a shorter lease) re-arms it.
   */
  extend(durationMs: number = this.#durationMs): void {
    if (this.#ended) return;
    this.#durationMs = durationMs;
    this.#deadline = this.#clock.monotonic() + durationMs;
    if (this.#timer !== undefined && this.#deadline < this.#timerAt) {
      this.#timer.cancel();
      this.#arm();
    }
  }

  /** After an expiry found the lease extended after all: wait for the new deadline. */
  rearm(): void {
    if (!this.#ended && this.#timer === undefined) this.#arm();
  }

  /** The migration is over (or its lease handled): the lease never fires again. */
  end(): void {
    this.#ended = true;
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  #arm(): void {
    const wait = Math.max(0, this.#deadline - this.#clock.monotonic());
    this.#timerAt = this.#clock.monotonic() + wait;
    this.#timer = this.#clock.setTimer(() => this.#fire(), wait);
  }

  #fire(): void {
    this.#timer = undefined;
    if (this.#ended) return;
    if (!this.expired()) {
      this.#arm();
      return;
    }
    this.#onExpire(this);
  }
}
