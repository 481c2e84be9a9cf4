/**
 * One timer for every deadline of every VF of a driver.
 *
 * Commands finish `serviceTimeUs` after they were fetched. Node timers tick
 * at about 1 ms, so a per-command timer would buy no precision and cost a
 * timer object each; instead the earliest pending deadline arms the single
 * timer, and when it fires every task whose deadline has passed runs in
 * that same turn. Commands fetched together therefore complete together, and
 * a drain of N in-flight commands costs one tick, not N. With nothing
 * pending no timer is armed, so an idle agent does not wake up at all.
 */

interface ClockTask {
  readonly at: number;
  readonly seq: number;
  run: (() => void) | undefined;
}

export interface ScheduledTask {
  cancel(): void;
}

export class ServiceClock {
  readonly #heap: ClockTask[] = [];
  #seq = 0;
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Infinity;
  #closed = false;

  /** Runs `run` once `performance.now()` has reached `at`. */
  schedule(at: number, run: () => void): ScheduledTask {
    const task: ClockTask = { at, seq: this.#seq++, run };
    this.#push(task);
    this.#arm();
    return {
      cancel: () => {
        task.run = undefined;
      },
    };
  }

  get pendingCount(): number {
    return this.#heap.length;
  }

  close(): void {
    this.#closed = true;
    this.#heap.length = 0;
    this.#disarm();
  }

  #fire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = performance.now();
    for (let top = this.#heap[0]; top && top.at <= now; top = this.#heap[0]) {
      this.#pop();
      const run = top.run;
      top.run = undefined;
      run?.();
    }
    this.#arm();
  }

  #arm(): void {
    if (this.#closed) return;
    const next = this.#heap[0];
    if (!next) {
      this.#disarm();
      return;
    }
    if (this.#timer && this.#timerAt <= next.at) return;
    this.#disarm();
    this.#timerAt = next.at;
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, Math.ceil(next.at - performance.now())));
  }

  #disarm(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
  }

  // A binary min-heap on (at, seq): equal deadlines run in scheduling order.
  #push(task: ClockTask): void {
    const heap = this.#heap;
    heap.push(task);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(task, heap[parent] as ClockTask)) break;
      heap[i] = heap[parent] as ClockTask;
      i = parent;
    }
    heap[i] = task;
  }

  #pop(): void {
    const heap = this.#heap;
    const last = heap.pop();
    if (!last || heap.length === 0) return;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && before(heap[right] as ClockTask, heap[left] as ClockTask) ? right : left;
      if (!before(heap[child] as ClockTask, last)) break;
      heap[i] = heap[child] as ClockTask;
      i = child;
    }
    heap[i] = last;
  }
}

function before(a: ClockTask, b: ClockTask): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
