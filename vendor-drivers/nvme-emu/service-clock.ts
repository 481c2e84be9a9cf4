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
 *
 * While someone waits on the clock (a quiesce draining in-flight commands
 * counts against the VM's downtime), a timer tick is too coarse: a 100 µs
 * command would hold the drain for a whole millisecond. Then, for
 * deadlines less than a tick away, the clock checks on every event-loop
 * turn instead; that lasts at most one service time, and only during a
 * drain.
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
  #immediate: NodeJS.Immediate | undefined;
  #hurried = 0;
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

  /** Until the returned function is called, near deadlines are met to the event-loop turn. */
  hurry(): () => void {
    this.#hurried += 1;
    this.#arm();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#hurried -= 1;
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
    this.#disarm();
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
    const wait = next.at - performance.now();
    if (this.#hurried > 0 && wait < 1) {
      if (this.#immediate) return;
      this.#disarm();
      this.#immediate = setImmediate(() => this.#fire());
      return;
    }
    if ((this.#timer || this.#immediate) && this.#timerAt <= next.at) return;
    this.#disarm();
    this.#timerAt = next.at;
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, Math.ceil(wait)));
  }

  #disarm(): void {
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#immediate) clearImmediate(this.#immediate);
    this.#timer = undefined;
    this.#immediate = undefined;
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
