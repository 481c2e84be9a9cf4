/**
 * Bookkeeping of one SQ/CQ pair as the guest sees it: positions, phase,
 * which command ids are outstanding, and the checks that turn a device's
 * queue-protocol mistakes into reported violations instead of silently
 * resolving the wrong command. Pure state, no I/O: the driver does the MMIO
 * and DMA around it.
 */
import { CQE_BYTES, SQE_BYTES, type NvmeCompletion } from './guest-nvme-commands.ts';
import type { ProtocolViolation, ProtocolViolationKind } from './guest-nvme-errors.ts';
import type { GuestAllocation } from './guest-nvme-memory.ts';

/** CID FFFFh is reserved (the Error Information log uses it for "no command"). */
const CID_SPACE = 0xffff;

export interface PendingCommand {
  readonly qid: number;
  readonly cid: number;
  readonly opcode: number;
  /** Position in the SQ counted from queue creation, not wrapped. */
  readonly sequence: number;
  doorbellRung: boolean;
  readonly prpPages: readonly GuestAllocation[];
  readonly resolve: (completion: NvmeCompletion) => void;
}

export interface CompletionVerdict {
  readonly command?: PendingCommand;
  readonly violations: readonly ProtocolViolation[];
}

export class QueuePair {
  readonly qid: number;
  readonly entries: number;
  readonly sq: GuestAllocation;
  readonly cq: GuestAllocation;
  readonly vector: number;
  /** Absolute SQ positions: written by the guest, announced by a doorbell, and fetched per the last valid SQHD. */
  #tail = 0;
  #rungTail = 0;
  #head = 0;
  #cqHead = 0;
  #phase = 1;
  #nextCid = 0;
  readonly #outstanding = new Map<number, PendingCommand>();
  /** CIDs this queue has ever used, to tell a duplicate completion from a made-up CID. */
  readonly #issued = new Uint8Array(CID_SPACE);
  submitted = 0;
  completed = 0;

  constructor(qid: number, entries: number, sq: GuestAllocation, cq: GuestAllocation, vector: number) {
    this.qid = qid;
    this.entries = entries;
    this.sq = sq;
    this.cq = cq;
    this.vector = vector;
  }

  /** At most entries-1 commands outstanding, so neither the SQ nor the CQ can overflow. */
  get capacity(): number {
    return this.entries - 1;
  }
  get outstandingCount(): number {
    return this.#outstanding.size;
  }
  freeSlots(): number {
    return this.capacity - this.#outstanding.size;
  }
  outstanding(): readonly PendingCommand[] {
    return [...this.#outstanding.values()];
  }
  /** What the guest believes the device has: SQ head/tail and CQ head, wrapped. */
  positions(): { sqHead: number; sqTail: number; sqRungTail: number; cqHead: number; phase: number } {
    return { sqHead: this.#head % this.entries, sqTail: this.#tail % this.entries, sqRungTail: this.#rungTail % this.entries, cqHead: this.#cqHead, phase: this.#phase };
  }

  reserve(opcode: number, prpPages: readonly GuestAllocation[], resolve: (completion: NvmeCompletion) => void): PendingCommand {
    if (this.freeSlots() <= 0) throw new Error(`queue ${this.qid} is full (${this.capacity} commands outstanding)`);
    const cid = this.#allocateCid();
    const command: PendingCommand = { qid: this.qid, cid, opcode, sequence: this.#tail, doorbellRung: false, prpPages, resolve };
    this.#tail += 1;
    this.#outstanding.set(cid, command);
    this.#issued[cid] = 1;
    this.submitted += 1;
    return command;
  }

  sqEntryAddress(sequence: number): number {
    return this.sq.address + (sequence % this.entries) * SQE_BYTES;
  }

  /** Marks every written entry as announced; returns the tail value for the doorbell. */
  ring(): number {
    for (const command of this.#outstanding.values()) command.doorbellRung = true;
    this.#rungTail = this.#tail;
    return this.#tail % this.entries;
  }

  get hasUnrungEntries(): boolean {
    return this.#rungTail !== this.#tail;
  }

  cqHeadAddress(): number {
    return this.cq.address + this.#cqHead * CQE_BYTES;
  }
  /** Entries from the head to the end of the CQ: the most one contiguous read can cover. */
  entriesUntilWrap(): number {
    return this.entries - this.#cqHead;
  }
  get expectedPhase(): number {
    return this.#phase;
  }
  get cqHead(): number {
    return this.#cqHead;
  }

  /** Consumes the entry at the CQ head: advance, and flip the expected phase on wrap. */
  advanceCqHead(): void {
    this.#cqHead += 1;
    if (this.#cqHead === this.entries) {
      this.#cqHead = 0;
      this.#phase ^= 1;
    }
  }

  /** Checks one CQE against what the guest submitted and finds its command. */
  accept(completion: NvmeCompletion): CompletionVerdict {
    const violations: ProtocolViolation[] = [];
    const report = (kind: ProtocolViolationKind, detail: string): void => {
      violations.push({ kind, cqid: completion.cqid, sqid: completion.sqid, cid: completion.cid, sqHead: completion.sqHead, detail });
    };
    if (completion.sqid !== this.qid) {
      report('wrong-sqid', `CQ ${this.qid} only serves SQ ${this.qid}, CQE names SQ ${completion.sqid} (cid ${completion.cid})`);
      return { violations };
    }
    const headValid = this.#applySqHead(completion.sqHead, report);
    const command = this.#outstanding.get(completion.cid);
    if (command === undefined) {
      if (this.#issued[completion.cid] === 1) report('duplicate-completion', `SQ ${this.qid} cid ${completion.cid} completed again; it is not outstanding`);
      else report('unknown-cid', `SQ ${this.qid} never issued cid ${completion.cid}`);
      return { violations };
    }
    if (!command.doorbellRung) {
      report('completion-before-doorbell', `SQ ${this.qid} cid ${completion.cid} completed before its tail doorbell was written`);
    } else if (headValid && command.sequence >= this.#head) {
      report('completion-before-fetch', `SQ ${this.qid} cid ${completion.cid} at slot ${command.sequence % this.entries} completed but SQHD ${completion.sqHead} says it was not fetched`);
    }
    this.#outstanding.delete(completion.cid);
    this.completed += 1;
    return { command, violations };
  }

  /** SQHD may only move forward, and never past the tail the guest rang. */
  #applySqHead(sqHead: number, report: (kind: ProtocolViolationKind, detail: string) => void): boolean {
    if (sqHead >= this.entries) {
      report('sq-head-beyond-tail', `SQ ${this.qid} SQHD ${sqHead} is outside a ${this.entries}-entry queue`);
      return false;
    }
    const current = this.#head % this.entries;
    const forward = (sqHead - current + this.entries) % this.entries;
    if (this.#head + forward <= this.#rungTail) {
      this.#head += forward;
      return true;
    }
    const backward = (current - sqHead + this.entries) % this.entries;
    const beyond = this.#head + forward - this.#rungTail;
    const rungTail = this.#rungTail % this.entries;
    if (backward <= beyond) report('sq-head-backwards', `SQ ${this.qid} SQHD went back from ${current} to ${sqHead} (tail ${rungTail})`);
    else report('sq-head-beyond-tail', `SQ ${this.qid} SQHD ${sqHead} is past the rung tail ${rungTail} (head was ${current})`);
    return false;
  }

  #allocateCid(): number {
    for (let tries = 0; tries < CID_SPACE; tries++) {
      const cid = this.#nextCid;
      this.#nextCid = (this.#nextCid + 1) % CID_SPACE;
      // Cycling through the whole CID space delays reuse as long as possible,
      // so a late duplicate completion is caught instead of hitting a new command.
      if (!this.#outstanding.has(cid)) return cid;
    }
    throw new Error(`queue ${this.qid}: no free command id`);
  }
}
