import { Fault, type FaultDetails } from './faults.ts';

/**
 * Runs operations one at a time, in arrival order. A VF's calls go through
 * one of these so that no two of them touch the device at once; calls for
 * different VFs use different queues and run in parallel.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private waiting = 0;
  private readonly maxWaiting: number;
  private readonly label: string;
  /** Facts added to a VF_BUSY refusal (the VF's state), read when it is made. */
  private readonly busyDetails: () => FaultDetails;

  constructor(label: string, maxWaiting: number, busyDetails: () => FaultDetails = () => ({})) {
    this.label = label;
    this.maxWaiting = maxWaiting;
    this.busyDetails = busyDetails;
  }

  /** Operations queued or running. */
  get depth(): number {
    return this.waiting;
  }

  run<T>(operation: () => Promise<T>): Promise<T> {
    if (this.waiting >= this.maxWaiting) {
      return Promise.reject(new Fault('VF_BUSY', `${this.label} already has ${this.waiting} calls queued; retry later`, { ...this.busyDetails(), queued: this.waiting }));
    }
    return this.runAlways(operation);
  }

  /** Queues the agent's own work (a lease's expiry): never refused as busy, since nobody could retry it. */
  runAlways<T>(operation: () => Promise<T>): Promise<T> {
    this.waiting += 1;
    const result = this.tail.then(operation);
    // The next operation waits for this one whatever its outcome.
    this.tail = result.then(
      () => { this.waiting -= 1; },
      () => { this.waiting -= 1; },
    );
    return result;
  }
}
