/**
 * The controller state as plain data: what `captureState` encodes and
 * `restoreState` decodes. Taking and applying a snapshot needs the VF
 * stopped, when nothing is in flight and no completion is waiting.
 */
import type { AsyncEventSnapshot } from './async-events.ts';
import type { ControllerCore, RegisterFile } from './controller-core.ts';
import type { ControllerProfile } from './controller-profile.ts';
import { coalescingOf, type FeatureState } from './features.ts';
import type { ErrorLogEntry, SmartCounters } from './log-pages.ts';
import { CompletionQueue, SubmissionQueue } from './queues.ts';

export interface SqSnapshot {
  readonly id: number;
  readonly base: number;
  /** Entries, 1's based. */
  readonly size: number;
  readonly cqid: number;
  readonly priority: number;
  readonly head: number;
  readonly tail: number;
  readonly latchedTail: number | undefined;
}

export interface CqSnapshot {
  readonly id: number;
  readonly base: number;
  readonly size: number;
  readonly interruptsEnabled: boolean;
  readonly vector: number;
  readonly head: number;
  readonly tail: number;
  readonly phase: number;
  readonly latchedHead: number | undefined;
}

export interface ControllerSnapshot {
  readonly registers: Readonly<RegisterFile>;
  readonly interruptMask: number;
  readonly latchedCc: number | undefined;
  readonly adminSq: SqSnapshot | undefined;
  readonly adminCq: CqSnapshot | undefined;
  readonly ioSqs: readonly SqSnapshot[];
  readonly ioCqs: readonly CqSnapshot[];
  readonly features: Readonly<FeatureState>;
  readonly vectorCount: number;
  readonly pendingVectors: readonly number[];
  readonly events: AsyncEventSnapshot;
  readonly smart: Readonly<SmartCounters>;
  readonly errorCount: number;
  readonly errorLog: readonly ErrorLogEntry[];
  readonly profile: ControllerProfile;
}

export function captureSnapshot(core: ControllerCore): ControllerSnapshot {
  const interrupts = core.interrupts.snapshot();
  return {
    registers: { ...core.registers },
    interruptMask: interrupts.mask,
    latchedCc: core.latchedCc,
    adminSq: core.adminSq && sqSnapshot(core.adminSq),
    adminCq: core.adminCq && cqSnapshot(core.adminCq),
    ioSqs: [...core.ioSqs.values()].sort((a, b) => a.id - b.id).map(sqSnapshot),
    ioCqs: [...core.ioCqs.values()].sort((a, b) => a.id - b.id).map(cqSnapshot),
    features: { ...core.features },
    vectorCount: core.interrupts.vectorCount,
    pendingVectors: interrupts.pendingVectors,
    events: core.events.snapshot(),
    smart: { ...core.smart },
    errorCount: core.errorLog.errorCount,
    errorLog: [...core.errorLog.entries],
    profile: core.profile,
  };
}

/** Replaces the controller state; the snapshot has been validated against this controller. */
export function applySnapshot(core: ControllerCore, snapshot: ControllerSnapshot): void {
  core.resetFunction();
  core.registers = { ...snapshot.registers };
  core.latchedCc = snapshot.latchedCc;
  core.adminSq = snapshot.adminSq && toSq(snapshot.adminSq);
  core.adminCq = snapshot.adminCq && toCq(snapshot.adminCq);
  for (const sq of snapshot.ioSqs) core.ioSqs.set(sq.id, toSq(sq));
  for (const cq of snapshot.ioCqs) core.ioCqs.set(cq.id, toCq(cq));
  core.features = { ...snapshot.features };
  core.interrupts.restore({ mask: snapshot.interruptMask, pendingVectors: snapshot.pendingVectors });
  core.interrupts.setCoalescing(coalescingOf(snapshot.features));
  core.events.restore(snapshot.events);
  core.smart = { ...snapshot.smart };
  core.errorLog.restore(snapshot.errorLog, snapshot.errorCount);
}

function sqSnapshot(sq: SubmissionQueue): SqSnapshot {
  return { id: sq.id, base: sq.base, size: sq.size, cqid: sq.cqid, priority: sq.priority, head: sq.head, tail: sq.tail, latchedTail: sq.latchedTail };
}

function cqSnapshot(cq: CompletionQueue): CqSnapshot {
  return {
    id: cq.id,
    base: cq.base,
    size: cq.size,
    interruptsEnabled: cq.interruptsEnabled,
    vector: cq.vector,
    head: cq.head,
    tail: cq.tail,
    phase: cq.phase,
    latchedHead: cq.latchedHead,
  };
}

function toSq(s: SqSnapshot): SubmissionQueue {
  const sq = new SubmissionQueue(s.id, s.base, s.size, s.cqid, s.priority);
  sq.head = s.head;
  sq.tail = s.tail;
  sq.latchedTail = s.latchedTail;
  return sq;
}

function toCq(s: CqSnapshot): CompletionQueue {
  const cq = new CompletionQueue(s.id, s.base, s.size, s.interruptsEnabled, s.vector);
  cq.head = s.head;
  cq.tail = s.tail;
  cq.phase = s.phase;
  cq.latchedHead = s.latchedHead;
  return cq;
}
