/**
 * Create / Delete I/O Submission and Completion Queue, with the status
 * codes NVMe prescribes for each way they can be wrong.
 */
import type { ControllerCore } from './controller-core.ts';
import { GuestMemory } from './guest-memory.ts';
import { CQE_BYTES, IOCQES, IOSQES, PAGE_SIZE, SQE_BYTES } from './nvme-defs.ts';
import { completion, type Completion, OK, Status } from './nvme-status.ts';
import { CompletionQueue, SubmissionQueue } from './queues.ts';
import { ccIocqes, ccIosqes } from './registers.ts';
import type { Sqe } from './sqe.ts';

export interface QueueCommandHost {
  readonly core: ControllerCore;
  /** Completes the SQ's in-flight commands as "aborted due to SQ deletion". */
  abortSubmissionQueue(sqid: number): void;
  /** Settles completions still waiting for room in a CQ that goes away. */
  discardWaitingCompletions(cq: CompletionQueue): void;
}

export function createIoCompletionQueue(core: ControllerCore, sqe: Sqe): Completion {
  const qid = sqe.cdw10 & 0xffff;
  const qsize = sqe.cdw10 >>> 16;
  const contiguous = (sqe.cdw11 & 1) === 1;
  const interruptsEnabled = ((sqe.cdw11 >> 1) & 1) === 1;
  const vector = sqe.cdw11 >>> 16;
  if (qid === 0 || qid > core.features.ncqa + 1 || core.ioCqs.has(qid)) return completion(Status.INVALID_QUEUE_ID);
  if (qsize === 0 || qsize > core.profile.mqes) return completion(Status.INVALID_QUEUE_SIZE);
  if (vector >= core.profile.vectorCount) return completion(Status.INVALID_INTERRUPT_VECTOR);
  // An entry size the host has not set (CC.IOCQES) makes every queue size wrong.
  if (ccIocqes(core.registers.cc) !== IOCQES) return completion(Status.INVALID_QUEUE_SIZE);
  // CAP.CQR = 1: queues must be physically contiguous.
  if (!contiguous) return completion(Status.INVALID_FIELD);
  const memory = queueMemoryStatus(sqe.prp1, (qsize + 1) * CQE_BYTES);
  if (memory !== undefined) return completion(memory);
  core.ioCqs.set(qid, new CompletionQueue(qid, sqe.prp1, qsize + 1, interruptsEnabled, vector));
  core.features.ioQueuesCreated = true;
  return OK;
}

export function createIoSubmissionQueue(core: ControllerCore, sqe: Sqe): Completion {
  const qid = sqe.cdw10 & 0xffff;
  const qsize = sqe.cdw10 >>> 16;
  const contiguous = (sqe.cdw11 & 1) === 1;
  const priority = (sqe.cdw11 >> 1) & 0x3;
  const cqid = sqe.cdw11 >>> 16;
  if (qid === 0 || qid > core.features.nsqa + 1 || core.ioSqs.has(qid)) return completion(Status.INVALID_QUEUE_ID);
  if (qsize === 0 || qsize > core.profile.mqes) return completion(Status.INVALID_QUEUE_SIZE);
  if (cqid === 0 || !core.ioCqs.has(cqid)) return completion(Status.COMPLETION_QUEUE_INVALID);
  if (ccIosqes(core.registers.cc) !== IOSQES) return completion(Status.INVALID_QUEUE_SIZE);
  if (!contiguous) return completion(Status.INVALID_FIELD);
  const memory = queueMemoryStatus(sqe.prp1, (qsize + 1) * SQE_BYTES);
  if (memory !== undefined) return completion(memory);
  core.ioSqs.set(qid, new SubmissionQueue(qid, sqe.prp1, qsize + 1, cqid, priority));
  core.features.ioQueuesCreated = true;
  return OK;
}

export function deleteIoSubmissionQueue(host: QueueCommandHost, sqe: Sqe): Completion {
  const qid = sqe.cdw10 & 0xffff;
  if (qid === 0 || !host.core.ioSqs.has(qid)) return completion(Status.INVALID_QUEUE_ID);
  host.abortSubmissionQueue(qid);
  host.core.ioSqs.delete(qid);
  return OK;
}

export function deleteIoCompletionQueue(host: QueueCommandHost, sqe: Sqe): Completion {
  const qid = sqe.cdw10 & 0xffff;
  const cq = host.core.ioCqs.get(qid);
  if (qid === 0 || !cq) return completion(Status.INVALID_QUEUE_ID);
  for (const sq of host.core.ioSqs.values()) {
    if (sq.cqid === qid) return completion(Status.INVALID_QUEUE_DELETION);
  }
  host.discardWaitingCompletions(cq);
  host.core.ioCqs.delete(qid);
  return OK;
}

/**
 * A contiguous queue starts on a page boundary (PRP1 with an offset is PRP
 * Offset Invalid, as the specification recommends) and lies within guest
 * memory (Invalid Field otherwise); undefined when it does both.
 */
function queueMemoryStatus(base: number, bytes: number): number | undefined {
  if (base % PAGE_SIZE !== 0) return Status.INVALID_PRP_OFFSET;
  return GuestMemory.isValidRange(base, bytes) ? undefined : Status.INVALID_FIELD;
}
