/**
 * Runs a VF's control operations (run-level changes, save, load, reset) one
 * at a time, in call order, so a reset cannot land in the middle of a drain.
 */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(job: () => T | Promise<T>): Promise<T> {
    const result = this.#tail.then(job);
    this.#tail = result.catch(() => undefined);
    return result;
  }
}
