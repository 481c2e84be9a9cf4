/**
 * Submission and completion queues as the controller sees them: where they
 * live in guest memory and the pointers the controller owns (SQ head, CQ
 * tail and phase) or learns from doorbells (SQ tail, CQ head).
 *
 * A doorbell written while the VF is not running is only recorded
 * (`latched*`) and acted on when it runs again.
 */
import { CQE_BYTES, SQE_BYTES } from './nvme-defs.ts';

export class SubmissionQueue {
  readonly id: number;
  readonly base: number;
  /** Entries (1's based). */
  readonly size: number;
  readonly cqid: number;
  /** QPRIO from Create I/O SQ; kept for the saved state (arbitration is round robin). */
  readonly priority: number;
  head = 0;
  tail = 0;
  latchedTail: number | undefined;

  constructor(id: number, base: number, size: number, cqid: number, priority: number) {
    this.id = id;
    this.base = base;
    this.size = size;
    this.cqid = cqid;
    this.priority = priority;
  }

  get isEmpty(): boolean {
    return this.head === this.tail;
  }

  /** Guest address of the next command to fetch; advances the head. */
  takeHeadSlot(): number {
    const address = this.base + this.head * SQE_BYTES;
    this.head = (this.head + 1) % this.size;
    return address;
  }
}

export interface CompletionEntry {
  readonly dw0: number;
  readonly sqHead: number;
  readonly sqId: number;
  readonly cid: number;
  readonly status: number;
}

/** A command's completion waiting for room in a full CQ; `settle` ends the command once posted (or discarded). */
export interface WaitingCompletion {
  readonly entry: CompletionEntry;
  readonly settle: () => void;
}

export class CompletionQueue {
  readonly id: number;
  readonly base: number;
  readonly size: number;
  readonly interruptsEnabled: boolean;
  readonly vector: number;
  head = 0;
  tail = 0;
  /** Phase Tag the controller writes in this pass; inverted on every wrap. */
  phase = 1;
  latchedHead: number | undefined;
  /** Completions that found the queue full, in order. */
  readonly waiting: WaitingCompletion[] = [];

  constructor(id: number, base: number, size: number, interruptsEnabled: boolean, vector: number) {
    this.id = id;
    this.base = base;
    this.size = size;
    this.interruptsEnabled = interruptsEnabled;
    this.vector = vector;
  }

  get isFull(): boolean {
    return (this.tail + 1) % this.size === this.head;
  }

  /**
   * Slot 0 Phase Tag (NVMe controller state): the phase bit now stored in
   * slot 0. Slots before the tail hold this pass's phase; with the tail at
   * 0, slot 0 still holds the previous pass's (inverted) phase.
   */
  static slot0PhaseTagOf(phase: number, tail: number): number {
    return tail === 0 ? phase ^ 1 : phase;
  }

  /** The inverse of `slot0PhaseTagOf`: the phase the controller writes next. */
  static phaseFromSlot0(slot0PhaseTag: number, tail: number): number {
    return tail === 0 ? slot0PhaseTag ^ 1 : slot0PhaseTag;
  }

  /** Guest address of the slot the next entry goes to; advances the tail (and the phase on wrap). */
  takeTailSlot(): { address: number; phase: number } {
    const slot = { address: this.base + this.tail * CQE_BYTES, phase: this.phase };
    this.tail = (this.tail + 1) % this.size;
    if (this.tail === 0) this.phase ^= 1;
    return slot;
  }
}
