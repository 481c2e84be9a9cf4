/**
 * The mutable state of one NVMe controller, in one place: registers,
 * queues, features, async events, logs and interrupt state. The modules that
 * act on the controller (registers, commands, engine, snapshot) all work on
 * this object; it has no behaviour beyond lookups and resets.
 */
import { AsyncEventState } from './async-events.ts';
import type { ControllerProfile } from './controller-profile.ts';
import { maxNsid } from './nsid.ts';
import { defaultFeatures, type FeatureState } from './features.ts';
import type { GuestMemory } from './guest-memory.ts';
import type { InterruptController } from './interrupts.ts';
import { emptySmartCounters, ErrorLog, type SmartCounters } from './log-pages.ts';
import type { NamespaceStore } from './namespace-store.ts';
import type { CompletionQueue, SubmissionQueue } from './queues.ts';

export interface RegisterFile {
  cc: number;
  csts: number;
  aqa: number;
  asqLo: number;
  asqHi: number;
  acqLo: number;
  acqHi: number;
}

export class ControllerCore {
  readonly profile: ControllerProfile;
  readonly memory: GuestMemory;
  readonly namespaces: ReadonlyMap<number, NamespaceStore>;
  readonly interrupts: InterruptController;
  /** Identify Controller's NN: NSIDs above it are invalid, those below it with no namespace inactive. */
  readonly nn: number;

  registers: RegisterFile = emptyRegisters();
  /** A CC write made while the VF was not running, applied when it runs again. */
  latchedCc: number | undefined;
  adminSq: SubmissionQueue | undefined;
  adminCq: CompletionQueue | undefined;
  readonly ioSqs = new Map<number, SubmissionQueue>();
  readonly ioCqs = new Map<number, CompletionQueue>();
  features: FeatureState;
  readonly events = new AsyncEventState();
  smart: SmartCounters = emptySmartCounters();
  readonly errorLog = new ErrorLog();

  constructor(profile: ControllerProfile, memory: GuestMemory, namespaces: ReadonlyMap<number, NamespaceStore>, interrupts: InterruptController) {
    this.profile = profile;
    this.memory = memory;
    this.namespaces = namespaces;
    this.interrupts = interrupts;
    this.nn = maxNsid(profile);
    this.features = defaultFeatures(profile.maxIoQueues);
  }

  sq(id: number): SubmissionQueue | undefined {
    return id === 0 ? this.adminSq : this.ioSqs.get(id);
  }

  cq(id: number): CompletionQueue | undefined {
    return id === 0 ? this.adminCq : this.ioCqs.get(id);
  }

  /** Admin SQ first, then I/O SQs by id: the round-robin order of fetching. */
  submissionQueues(): SubmissionQueue[] {
    const ioSqs = [...this.ioSqs.values()].sort((a, b) => a.id - b.id);
    return this.adminSq ? [this.adminSq, ...ioSqs] : ioSqs;
  }

  completionQueues(): CompletionQueue[] {
    const ioCqs = [...this.ioCqs.values()].sort((a, b) => a.id - b.id);
    return this.adminCq ? [this.adminCq, ...ioCqs] : ioCqs;
  }

  /**
   * What a controller reset (CC.EN 1 -> 0) discards: all queues, outstanding
   * AERs and events, feature values, interrupt state, and the Error
   * Information log's entries (they name queues and commands that are gone).
   * SMART counters, and the count of errors ever logged, are NVM-subsystem
   * history and stay.
   */
  resetController(): void {
    this.adminSq = undefined;
    this.adminCq = undefined;
    this.ioSqs.clear();
    this.ioCqs.clear();
    this.features = defaultFeatures(this.profile.maxIoQueues);
    this.events.clear();
    this.interrupts.reset();
    this.errorLog.clear();
  }

  /** Function-level reset: a controller reset plus every register back to its power-on value. */
  resetFunction(): void {
    this.resetController();
    this.registers = emptyRegisters();
    this.latchedCc = undefined;
  }
}

function emptyRegisters(): RegisterFile {
  return { cc: 0, csts: 0, aqa: 0, asqLo: 0, asqHi: 0, acqLo: 0, acqHi: 0 };
}
