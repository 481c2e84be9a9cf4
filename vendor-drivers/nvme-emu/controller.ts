/**
 * One emulated NVMe controller (one VF): BAR0 register and doorbell
 * semantics, enable / reset / shutdown, and the run levels of migration.
 *
 * Run levels:
 * - running: doorbells act at once, commands are fetched.
 * - p2p-quiesced: nothing is fetched; fetched commands complete. SQ tail
 *   doorbells are latched; CQ head doorbells still act, because completions
 *   may be waiting for room in a full CQ and the drain depends on them.
 * - stopped: no fetch, no completions, no DMA, no interrupts. Every doorbell
 *   and CC write is latched and acted on when the VF runs again; other
 *   register writes only store values (AQA/ASQ/ACQ, INTMS/INTMC).
 */
import type { Logger } from 'pino';
import { DriverError, type RunLevel } from '../driver.ts';
import { CommandEngine } from './command-engine.ts';
import { ControllerCore } from './controller-core.ts';
import type { ControllerProfile } from './controller-profile.ts';
import { applySnapshot, captureSnapshot, type ControllerSnapshot } from './controller-snapshot.ts';
import { GuestMemory } from './guest-memory.ts';
import { InterruptController } from './interrupts.ts';
import type { NamespaceStore } from './namespace-store.ts';
import { AsyncEventInfo, AsyncEventType, DOORBELL_BASE, LogPageId, Reg } from './nvme-defs.ts';
import { CompletionQueue, SubmissionQueue } from './queues.ts';
import {
  AQA_WRITABLE,
  aqaCqEntries,
  aqaSqEntries,
  CC_WRITABLE,
  ccAms,
  ccCss,
  ccEnabled,
  ccMps,
  ccShn,
  CSTS_CFS,
  CSTS_RDY,
  CSTS_SHST_COMPLETE,
  CSTS_SHST_MASK,
  QUEUE_BASE_MASK,
  queueAddress,
  readRegister,
} from './registers.ts';
import type { ServiceClock } from './service-clock.ts';

const LEVEL_RANK: Record<RunLevel, number> = { stopped: 0, 'p2p-quiesced': 1, running: 2 };

export interface ControllerOptions {
  readonly profile: ControllerProfile;
  readonly namespaces: ReadonlyMap<number, NamespaceStore>;
  readonly clock: ServiceClock;
  readonly serviceTimeUs: number;
  /** Cap on the guest RAM the VF's memory backs (see GuestMemory). */
  readonly maxGuestMemoryBytes: number;
  readonly log: () => Logger;
}

export class NvmeController {
  readonly core: ControllerCore;
  readonly engine: CommandEngine;
  readonly #log: () => Logger;
  #level: RunLevel = 'running';

  constructor(options: ControllerOptions) {
    const interrupts = new InterruptController(options.profile.vectorCount, options.clock);
    this.core = new ControllerCore(options.profile, new GuestMemory(options.maxGuestMemoryBytes), options.namespaces, interrupts);
    this.engine = new CommandEngine(this.core, { clock: options.clock, serviceTimeMs: options.serviceTimeUs / 1000, log: options.log });
    this.#log = options.log;
  }

  get runLevel(): RunLevel {
    return this.#level;
  }

  get memory(): GuestMemory {
    return this.core.memory;
  }

  /** 32-bit BAR0 read; the caller has checked alignment and range. */
  mmioRead32(offset: number): number {
    return offset >= DOORBELL_BASE ? 0 : readRegister(this.core, offset);
  }

  /** 32-bit BAR0 write; the caller has checked alignment, range and value. */
  mmioWrite32(offset: number, value: number): void {
    if (offset >= DOORBELL_BASE) this.#doorbellWritten(offset, value);
    else this.#registerWritten(offset, value);
  }

  /**
   * Moves between run levels. Going down waits until every fetched command
   * has completed (and its interrupt is raised); if the deadline passes
   * first, the previous run level is restored and `quiesce-timeout` thrown.
   */
  async setRunLevel(target: RunLevel, deadline: number): Promise<number> {
    const from = this.#level;
    if (target === from) return 0;
    if (LEVEL_RANK[target] > LEVEL_RANK[from]) {
      this.#raise(target);
      return 0;
    }
    this.engine.setFetching(false);
    this.#level = 'p2p-quiesced';
    const inFlight = this.engine.inFlightCount;
    const drained = await this.engine.waitForDrain(deadline);
    if (!drained) {
      const left = this.engine.inFlightCount;
      // Back to where the call found the VF; doorbells latched meanwhile are acted on.
      if (from === 'running') this.#raise('running');
      else this.#level = from;
      throw new DriverError('quiesce-timeout', `${left} of ${inFlight} in-flight commands still running at the deadline; back to ${from}`);
    }
    this.core.interrupts.flushAll();
    if (target === 'stopped') {
      this.engine.setPostingAllowed(false);
      this.core.interrupts.hold();
      this.#level = 'stopped';
    }
    return inFlight;
  }

  snapshot(): ControllerSnapshot {
    return captureSnapshot(this.core);
  }

  /** Loads a validated snapshot; the VF is and stays stopped. */
  restore(snapshot: ControllerSnapshot): void {
    this.engine.dropAll();
    applySnapshot(this.core, snapshot);
    this.core.interrupts.hold();
  }

  /**
   * Function-level reset: a disabled controller with power-on registers,
   * running. Guest memory stays: it is the host's RAM, not the function's.
   */
  resetFunction(): void {
    this.engine.dropAll();
    this.core.resetFunction();
    this.engine.setPostingAllowed(true);
    this.core.interrupts.release();
    this.#level = 'running';
    this.engine.setFetching(true);
  }

  close(): void {
    this.engine.close();
    this.engine.setPostingAllowed(false);
    this.core.interrupts.hold();
    this.#level = 'stopped';
  }

  #raise(target: RunLevel): void {
    if (this.#level === 'stopped') {
      this.engine.setPostingAllowed(true);
      this.core.interrupts.release();
      this.#level = 'p2p-quiesced';
      for (const cq of this.core.completionQueues()) this.#applyLatchedCqHead(cq);
      this.engine.deliverEvents();
    }
    if (target !== 'running') return;
    this.#level = 'running';
    const latchedCc = this.core.latchedCc;
    this.core.latchedCc = undefined;
    if (latchedCc !== undefined) this.#writeCc(latchedCc);
    for (const cq of this.core.completionQueues()) this.#applyLatchedCqHead(cq);
    for (const sq of this.core.submissionQueues()) {
      const tail = sq.latchedTail;
      sq.latchedTail = undefined;
      if (tail !== undefined) this.#applySqTail(sq.id, tail);
    }
    this.engine.deliverEvents();
    // Restored or latched SQ entries that were never fetched are fetched now.
    this.engine.setFetching(true);
  }

  #registerWritten(offset: number, value: number): void {
    const r = this.core.registers;
    switch (offset) {
      case Reg.INTMS:
        this.core.interrupts.writeMaskSet(value);
        return;
      case Reg.INTMC:
        this.core.interrupts.writeMaskClear(value);
        return;
      case Reg.CC:
        if (this.#level === 'running') this.#writeCc(value);
        else this.core.latchedCc = value;
        return;
      case Reg.AQA:
        r.aqa = (value & AQA_WRITABLE) >>> 0;
        return;
      case Reg.ASQ_LO:
        r.asqLo = (value & QUEUE_BASE_MASK) >>> 0;
        return;
      case Reg.ASQ_HI:
        r.asqHi = value;
        return;
      case Reg.ACQ_LO:
        r.acqLo = (value & QUEUE_BASE_MASK) >>> 0;
        return;
      case Reg.ACQ_HI:
        r.acqHi = value;
        return;
      default:
        // CAP, VS, CSTS are read-only; NSSR is not supported (CAP.NSSRS = 0); the rest is reserved.
        return;
    }
  }

  #writeCc(value: number): void {
    const r = this.core.registers;
    const previous = r.cc;
    const next = (value & CC_WRITABLE) >>> 0;
    r.cc = next;
    if (!ccEnabled(previous) && ccEnabled(next)) {
      r.csts = this.#enable() ? CSTS_RDY : CSTS_CFS;
    } else if (ccEnabled(previous) && !ccEnabled(next)) {
      // A controller reset: every register but AQA, ASQ and ACQ back to its reset value, CC and CSTS included.
      this.engine.dropAll();
      this.core.resetController();
      r.cc = 0;
      r.csts = 0;
      return;
    }
    if (ccShn(next) !== 0 && ccShn(previous) === 0) {
      // No data is cached in the device, so a shutdown has nothing to write back.
      r.csts = (r.csts & ~CSTS_SHST_MASK) | CSTS_SHST_COMPLETE;
    } else if (ccShn(next) === 0 && ccShn(previous) !== 0) {
      r.csts &= ~CSTS_SHST_MASK;
    }
  }

  /**
   * CC.EN 0 -> 1: the admin queues come up from AQA/ASQ/ACQ. An unusable
   * configuration (other command set, page size or arbitration, admin queues
   * too small or outside guest memory) leaves RDY clear and sets CFS.
   */
  #enable(): boolean {
    const r = this.core.registers;
    const sqEntries = aqaSqEntries(r.aqa);
    const cqEntries = aqaCqEntries(r.aqa);
    const asq = queueAddress(r.asqLo, r.asqHi);
    const acq = queueAddress(r.acqLo, r.acqHi);
    const usable =
      ccCss(r.cc) === 0 &&
      ccMps(r.cc) === 0 &&
      ccAms(r.cc) === 0 &&
      sqEntries >= 2 &&
      cqEntries >= 2 &&
      asq !== 0 &&
      acq !== 0 &&
      GuestMemory.isValidRange(asq, sqEntries * 64) &&
      GuestMemory.isValidRange(acq, cqEntries * 16);
    if (!usable) {
      this.#log().warn({ cc: r.cc, aqa: r.aqa }, 'controller enable refused: unusable configuration');
      return false;
    }
    this.core.adminSq = new SubmissionQueue(0, asq, sqEntries, 0, 0);
    this.core.adminCq = new CompletionQueue(0, acq, cqEntries, true, 0);
    return true;
  }

  #doorbellWritten(offset: number, value: number): void {
    if ((this.core.registers.csts & CSTS_RDY) === 0) return; // a disabled controller has no queues
    const index = (offset - DOORBELL_BASE) >> 2;
    const qid = index >> 1;
    const isCqHead = (index & 1) === 1;
    if (qid === 0 && this.core.adminSq === undefined) {
      // Ready without an admin queue: its state came in the standard format, which has none. Not the guest's error.
      this.#log().warn({ isCqHead }, 'admin doorbell written, but this controller has no admin queue (its state came in the standard format): the guest must reset the controller');
      return;
    }
    if (this.#level === 'running' || (isCqHead && this.#level === 'p2p-quiesced')) {
      if (isCqHead) this.#applyCqHead(qid, value);
      else this.#applySqTail(qid, value);
      return;
    }
    const sq = isCqHead ? undefined : this.core.sq(qid);
    const cq = isCqHead ? this.core.cq(qid) : undefined;
    if (sq) sq.latchedTail = value;
    else if (cq) cq.latchedHead = value;
    else this.#log().debug({ qid, isCqHead }, 'doorbell of a missing queue written while not running; ignored');
  }

  #applySqTail(qid: number, value: number): void {
    const sq = this.core.sq(qid);
    if (!sq) return this.#doorbellError(AsyncEventInfo.INVALID_DOORBELL_REGISTER);
    if (value >= sq.size) return this.#doorbellError(AsyncEventInfo.INVALID_DOORBELL_VALUE);
    sq.tail = value;
    this.engine.requestFetch();
  }

  #applyCqHead(qid: number, value: number): void {
    const cq = this.core.cq(qid);
    if (!cq) return this.#doorbellError(AsyncEventInfo.INVALID_DOORBELL_REGISTER);
    // The head may only move over entries the controller has posted.
    const posted = (cq.tail - cq.head + cq.size) % cq.size;
    const advance = (value - cq.head + cq.size) % cq.size;
    if (value >= cq.size || advance > posted) return this.#doorbellError(AsyncEventInfo.INVALID_DOORBELL_VALUE);
    cq.head = value;
    this.engine.releaseWaitingCompletions(cq);
  }

  #applyLatchedCqHead(cq: CompletionQueue): void {
    const head = cq.latchedHead;
    cq.latchedHead = undefined;
    if (head !== undefined) this.#applyCqHead(cq.id, head);
  }

  #doorbellError(info: number): void {
    this.core.events.raise({ type: AsyncEventType.ERROR_STATUS, info, logPage: LogPageId.ERROR_INFORMATION });
    this.engine.deliverEvents();
  }
}
