/**
 * How the polled guest driver shares the event loop with an in-process
 * device: serialising the async steps on one queue, and yielding so the
 * device's timers and I/O get to run between polls.
 */

/** Serialises the async steps on one queue (slot reservation, SQE writes, doorbells; or one poll at a time). */
export class Mutex {
  #last: Promise<void> = Promise.resolve();
  async run<T>(task: () => Promise<T>): Promise<T> {
    const previous = this.#last;
    let release: () => void = () => {};
    this.#last = new Promise((resolve) => (release = resolve));
    await previous;
    try {
      return await task();
    } finally {
      release();
    }
  }
}

/** Lets the event loop run (in-process, that is when the device works); backs off to 1 ms sleeps after 50 idle rounds. */
export async function yieldToDevice(idleRounds: number): Promise<void> {
  if (idleRounds < 50) await new Promise((resolve) => setImmediate(resolve));
  else await new Promise((resolve) => setTimeout(resolve, 1));
}

/** Polls `check` until it returns a value, yielding in between; throws `onTimeout()` after `timeoutMs`. */
export async function pollUntil<T>(check: () => Promise<T | undefined>, timeoutMs: number, onTimeout: () => Error): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (let idle = 0; ; idle++) {
    const value = await check();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw onTimeout();
    await yieldToDevice(idle);
  }
}
