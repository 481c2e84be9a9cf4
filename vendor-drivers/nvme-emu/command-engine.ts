/**
 * Fetching, executing and completing commands.
 *
 * A doorbell asks for a fetch pass (on the next turn of the event loop, so a
 * burst of doorbells is one pass). A pass takes commands round robin from
 * every non-empty SQ until they are empty or MAX_COMMANDS_IN_FLIGHT are in
 * the controller. Each fetched command starts at once and runs concurrently
 * with the others (the controller's internal parallelism); its completion is
 * posted when both its work is done and its service time, counted from the
 * fetch, has passed. A completion that finds its CQ full waits, in order,
 * until the host frees a slot; the command stays in flight until posted.
 *
 * Asynchronous Event Requests are parked, not run, and are not in flight.
 */
import type { Logger } from 'pino';
import { executeAdmin, type AdminHost } from './admin-commands.ts';
import type { ControllerCore } from './controller-core.ts';
import { GuestMemoryFullError } from './guest-memory.ts';
import { executeIo } from './io-commands.ts';
import { AdminOpcode, IoOpcode, MAX_COMMANDS_IN_FLIGHT, SQE_BYTES } from './nvme-defs.ts';
import { completion, type Completion, isLoggedError, Status, STATUS_MORE } from './nvme-status.ts';
import type { CompletionEntry, CompletionQueue, SubmissionQueue } from './queues.ts';
import { CSTS_CFS } from './registers.ts';
import type { ServiceClock } from './service-clock.ts';
import { decodeSqe, encodeCqe, type Sqe } from './sqe.ts';

interface InFlightCommand {
  readonly sqid: number;
  readonly sqe: Sqe;
  /** Its service time has passed. */
  due: boolean;
  result: Completion | undefined;
  /** Its CQE has been built (posted, or waiting for room in the CQ). */
  completing: boolean;
  settled: boolean;
  /** False once aborted or dropped: it must not DMA any more. */
  live: boolean;
}

export interface EngineOptions {
  readonly clock: ServiceClock;
  readonly serviceTimeMs: number;
  readonly log: () => Logger;
}

export class CommandEngine implements AdminHost {
  readonly core: ControllerCore;
  readonly #options: EngineOptions;
  readonly #inFlight = new Set<InFlightCommand>();
  readonly #drainWaiters = new Set<() => void>();
  #fetching = true;
  #postingAllowed = true;
  #fetchImmediate: NodeJS.Immediate | undefined;

  constructor(core: ControllerCore, options: EngineOptions) {
    this.core = core;
    this.#options = options;
  }

  /** Commands fetched and not yet completed (parked AERs excluded). */
  get inFlightCount(): number {
    return this.#inFlight.size;
  }

  setFetching(on: boolean): void {
    this.#fetching = on;
    if (on) this.requestFetch();
  }

  /** Stopped VFs post nothing: no completions, no DMA, no interrupts. */
  setPostingAllowed(on: boolean): void {
    this.#postingAllowed = on;
  }

  requestFetch(): void {
    if (this.#fetchImmediate || !this.#fetching) return;
    this.#fetchImmediate = setImmediate(() => {
      this.#fetchImmediate = undefined;
      this.#fetchPass();
    });
  }

  /** Resolves true once nothing is in flight, false if `deadline` (performance.now() time) passes first. */
  waitForDrain(deadline: number): Promise<boolean> {
    if (this.#inFlight.size === 0) return Promise.resolve(true);
    const relax = this.#options.clock.hurry();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        relax();
        this.#drainWaiters.delete(onDrained);
        resolve(this.#inFlight.size === 0);
      }, Math.max(0, deadline - performance.now()));
      const onDrained = (): void => {
        relax();
        clearTimeout(timer);
        resolve(true);
      };
      this.#drainWaiters.add(onDrained);
    });
  }

  /** The CQ head moved: completions waiting for room go in now. */
  releaseWaitingCompletions(cq: CompletionQueue): void {
    while (cq.waiting.length > 0 && !cq.isFull) {
      const waiting = cq.waiting.shift();
      if (!waiting) break;
      this.#write(cq, waiting.entry);
      waiting.settle();
    }
    if (cq.id === 0) this.deliverEvents();
  }

  /** Controller reset: in-flight commands are dropped without completions, as NVMe allows. */
  dropAll(): void {
    for (const command of this.#inFlight) {
      command.settled = true;
      command.live = false;
    }
    this.#inFlight.clear();
    this.#notifyDrained();
  }

  close(): void {
    this.#fetching = false;
    if (this.#fetchImmediate) clearImmediate(this.#fetchImmediate);
    this.#fetchImmediate = undefined;
    this.dropAll();
  }

  // AdminHost

  abortCommand(sqid: number, cid: number): boolean {
    const adminCq = this.core.adminCq;
    // An aborted AER completes at once, so only when the admin CQ has room for it.
    if (sqid === 0 && adminCq && hasRoom(adminCq) && this.core.events.withdraw(cid)) {
      this.#write(adminCq, this.#entry(0, cid, completion(Status.ABORT_REQUESTED)));
      return true;
    }
    for (const command of this.#inFlight) {
      if (command.sqid !== sqid || command.sqe.cid !== cid || command.completing) continue;
      if (sqid === 0 && command.sqe.opcode === AdminOpcode.ABORT) continue;
      this.#finishEarly(command, Status.ABORT_REQUESTED);
      return true;
    }
    return false;
  }

  abortSubmissionQueue(sqid: number): void {
    for (const command of [...this.#inFlight]) {
      if (command.sqid === sqid && !command.completing) this.#finishEarly(command, Status.ABORTED_SQ_DELETION);
    }
  }

  discardWaitingCompletions(cq: CompletionQueue): void {
    for (const waiting of cq.waiting.splice(0)) waiting.settle();
  }

  /**
   * Events are reported only into free admin CQ slots: an AER stays
   * outstanding (and the event queued) rather than becoming a completion
   * that waits inside the controller, so both always fit the saved state.
   */
  deliverEvents(): void {
    const { adminCq } = this.core;
    if (!this.#postingAllowed || !adminCq) return;
    while (hasRoom(adminCq)) {
      const delivery = this.core.events.takeDelivery();
      if (!delivery) return;
      this.#write(adminCq, this.#entry(0, delivery.cid, completion(Status.SUCCESS, delivery.dw0)));
    }
  }

  // Fetch and execute

  #fetchPass(): void {
    let progress = true;
    while (progress && this.#fetching && this.#inFlight.size < MAX_COMMANDS_IN_FLIGHT) {
      progress = false;
      for (const sq of this.core.submissionQueues()) {
        // An admin command of this pass may have deleted the queue.
        if (sq.isEmpty || this.core.sq(sq.id) !== sq || this.#inFlight.size >= MAX_COMMANDS_IN_FLIGHT) continue;
        const sqe = decodeSqe(this.core.memory.read(sq.takeHeadSlot(), SQE_BYTES));
        this.#start(sq, sqe);
        progress = true;
      }
    }
  }

  #start(sq: SubmissionQueue, sqe: Sqe): void {
    const isAer = sq.id === 0 && sqe.opcode === AdminOpcode.ASYNC_EVENT_REQUEST;
    if (isAer && !this.core.events.isFull) {
      this.core.events.park(sqe.cid);
      this.deliverEvents();
      return;
    }
    const { serviceTimeMs, clock } = this.#options;
    const command: InFlightCommand = { sqid: sq.id, sqe, due: serviceTimeMs === 0, result: undefined, completing: false, settled: false, live: true };
    this.#inFlight.add(command);
    if (!command.due) {
      clock.schedule(performance.now() + serviceTimeMs, () => {
        command.due = true;
        this.#tryComplete(command);
      });
    }
    if (sq.id === 0) {
      const result = isAer ? completion(Status.AER_LIMIT_EXCEEDED) : executeAdmin(this, sqe);
      command.result ??= result;
      this.#tryComplete(command);
      return;
    }
    executeIo(this.#ioContext(command), sqe).then(
      (result) => this.#workDone(command, result),
      (error: unknown) => {
        this.#options.log().error({ err: describe(error), sqid: command.sqid, cid: sqe.cid }, 'I/O command failed unexpectedly');
        this.#workDone(command, completion(Status.INTERNAL_ERROR));
      },
    );
  }

  #ioContext(command: InFlightCommand): Parameters<typeof executeIo>[0] {
    return {
      core: this.core,
      isLive: () => command.live,
      storageError: (error) => {
        this.#options.log().warn({ err: describe(error), nsid: command.sqe.nsid, opcode: command.sqe.opcode }, 'namespace file operation failed');
      },
    };
  }

  #workDone(command: InFlightCommand, result: Completion): void {
    command.result ??= result;
    this.#tryComplete(command);
  }

  /** Aborts: the command completes now with `status`, whatever its work is doing. */
  #finishEarly(command: InFlightCommand, status: number): void {
    command.result = completion(status);
    command.live = false;
    command.due = true;
    this.#tryComplete(command);
  }

  #tryComplete(command: InFlightCommand): void {
    if (command.settled || command.completing || !command.due || !command.result) return;
    command.completing = true;
    let result = command.result;
    if (isLoggedError(result.status)) {
      this.#logError(command, result.status);
      // The completion says the log has more about it (M), so a host reads the entry.
      result = { ...result, status: result.status | STATUS_MORE };
    }
    const sq = this.core.sq(command.sqid);
    const cq = sq ? this.core.cq(sq.cqid) : undefined;
    if (!sq || !cq) {
      this.#settle(command);
      return;
    }
    this.#post(cq, this.#entry(sq.id, command.sqe.cid, result), () => this.#settle(command));
  }

  #logError(command: InFlightCommand, status: number): void {
    const { sqe } = command;
    const isReadWrite = command.sqid !== 0 && (sqe.opcode === IoOpcode.READ || sqe.opcode === IoOpcode.WRITE);
    this.core.errorLog.record({
      sqid: command.sqid,
      cid: sqe.cid,
      status,
      parameterErrorLocation: 0xffff,
      lba: isReadWrite ? sqe.cdw11 * 2 ** 32 + sqe.cdw10 : 0,
      nsid: sqe.nsid,
    });
  }

  // Completion posting

  #entry(sqid: number, cid: number, result: Completion): CompletionEntry {
    return { dw0: result.dw0, sqHead: this.core.sq(sqid)?.head ?? 0, sqId: sqid, cid, status: result.status };
  }

  #post(cq: CompletionQueue, entry: CompletionEntry, settle: () => void): void {
    if (!hasRoom(cq)) {
      cq.waiting.push({ entry, settle });
      return;
    }
    this.#write(cq, entry);
    settle();
  }

  #write(cq: CompletionQueue, entry: CompletionEntry): void {
    const slot = cq.takeTailSlot();
    try {
      this.core.memory.write(slot.address, encodeCqe(entry, slot.phase));
    } catch (error) {
      if (!(error instanceof GuestMemoryFullError)) throw error;
      // A completion that cannot reach its queue is what Controller Fatal Status is for
      // (NVMe Base 2.1, 3.1.4.2): the host sees CSTS.CFS and resets the controller.
      this.core.registers.csts |= CSTS_CFS;
      this.#options.log().warn({ cqid: cq.id, cid: entry.cid, err: error.message }, 'completion could not be posted: guest memory full; controller fatal status set');
      return;
    }
    if (cq.interruptsEnabled) this.core.interrupts.entryPosted(cq.vector, cq.id === 0);
  }

  #settle(command: InFlightCommand): void {
    command.settled = true;
    this.#inFlight.delete(command);
    if (this.#inFlight.size === 0) this.#notifyDrained();
    // Fetching paused at the in-flight limit resumes as soon as there is room.
    if (this.#inFlight.size === MAX_COMMANDS_IN_FLIGHT - 1) this.requestFetch();
  }

  #notifyDrained(): void {
    if (this.#drainWaiters.size === 0) return;
    // A drain means completions *and* their interrupts are out.
    this.core.interrupts.flushAll();
    const waiters = [...this.#drainWaiters];
    this.#drainWaiters.clear();
    for (const waiter of waiters) waiter();
  }
}

function hasRoom(cq: CompletionQueue): boolean {
  return cq.waiting.length === 0 && !cq.isFull;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
