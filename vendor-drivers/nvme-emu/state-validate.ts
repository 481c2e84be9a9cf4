/**
 * Checks a decoded snapshot against the VF it is to be loaded into: the
 * identity must match, and every queue, pointer, vector and count must be
 * one this controller could itself have produced. Throws `corrupt-state`
 * or `incompatible-state` naming the offending value; changes nothing.
 */
import { DriverError } from '../driver.ts';
import { MAX_OUTSTANDING_AERS } from './async-events.ts';
import { corrupt } from './byte-cursor.ts';
import type { ControllerProfile } from './controller-profile.ts';
import type { ControllerSnapshot, CqSnapshot, SqSnapshot } from './controller-snapshot.ts';
import { GuestMemory } from './guest-memory.ts';
import { deviceIdentity, identityDifference } from './identity.ts';
import { CQE_BYTES, ERROR_LOG_ENTRIES, MAX_ADMIN_QUEUE_ENTRIES, MAX_QUEUED_EVENTS, PAGE_SIZE, SQE_BYTES } from './nvme-defs.ts';
import { AQA_WRITABLE, CC_WRITABLE, ccEnabled, CSTS_CFS, CSTS_RDY, CSTS_SHST_MASK, QUEUE_BASE_MASK } from './registers.ts';

export function validateSnapshot(s: ControllerSnapshot, profile: ControllerProfile): void {
  const difference = identityDifference(deviceIdentity(s.profile), deviceIdentity(profile));
  if (difference) throw new DriverError('incompatible-state', `payload ${difference}`);
  if (s.vectorCount !== profile.vectorCount) throw corrupt(`interrupt record has ${s.vectorCount} vectors; the identity says ${profile.vectorCount}`);
  validateRegisters(s);
  validateAdminQueues(s);
  validateIoQueues(s, profile);
  validateInterrupts(s, profile);
  validateEvents(s);
  if (s.errorLog.length > ERROR_LOG_ENTRIES) throw corrupt(`error log has ${s.errorLog.length} entries; at most ${ERROR_LOG_ENTRIES}`);
  if (s.errorCount < s.errorLog.length) throw corrupt(`error count ${s.errorCount} is below the ${s.errorLog.length} logged entries`);
}

function validateRegisters(s: ControllerSnapshot): void {
  const r = s.registers;
  if ((r.cc & ~CC_WRITABLE) !== 0) throw corrupt(`CC 0x${hex(r.cc)} has reserved bits set`);
  if ((r.csts & ~(CSTS_RDY | CSTS_CFS | CSTS_SHST_MASK)) !== 0) throw corrupt(`CSTS 0x${hex(r.csts)} has reserved bits set`);
  if ((r.aqa & ~AQA_WRITABLE) !== 0) throw corrupt(`AQA 0x${hex(r.aqa)} has reserved bits set`);
  if ((r.asqLo & ~QUEUE_BASE_MASK) !== 0 || (r.acqLo & ~QUEUE_BASE_MASK) !== 0) throw corrupt('ASQ/ACQ are not page aligned');
  const ready = (r.csts & CSTS_RDY) !== 0;
  if (ready && !ccEnabled(r.cc)) throw corrupt('CSTS.RDY is set while CC.EN is clear');
  // A ready controller without admin queues is one loaded from a standard-format state that its guest has not reset yet.
  if (!ready && s.adminSq !== undefined) throw corrupt('CSTS.RDY is 0 but admin queues are present');
  if (!ready && (s.ioSqs.length > 0 || s.ioCqs.length > 0)) throw corrupt('I/O queues exist on a controller that is not ready');
}

function validateAdminQueues(s: ControllerSnapshot): void {
  const { adminSq: sq, adminCq: cq } = s;
  if (!sq || !cq) return;
  for (const [what, queue, entryBytes] of [['admin SQ', sq, SQE_BYTES], ['admin CQ', cq, CQE_BYTES]] as const) {
    if (queue.size < 2 || queue.size > MAX_ADMIN_QUEUE_ENTRIES) throw corrupt(`${what} has ${queue.size} entries; 2..${MAX_ADMIN_QUEUE_ENTRIES} allowed`);
    checkQueueMemory(what, queue.base, queue.size * entryBytes);
    checkPointers(what, queue.head, queue.tail, queue.size);
  }
}

function validateIoQueues(s: ControllerSnapshot, profile: ControllerProfile): void {
  const { nsqa, ncqa } = s.features;
  if (nsqa >= profile.maxIoQueues || ncqa >= profile.maxIoQueues) {
    throw corrupt(`Number of Queues granted (NSQA ${nsqa}, NCQA ${ncqa}) exceeds the ${profile.maxIoQueues} queue pairs of this VF`);
  }
  const cqIds = new Set<number>();
  for (const cq of s.ioCqs) {
    checkIoQueue(`I/O CQ ${cq.id}`, cq, ncqa, cqIds, CQE_BYTES, profile);
    if (cq.vector >= profile.vectorCount) throw corrupt(`I/O CQ ${cq.id}: interrupt vector ${cq.vector}; this VF has ${profile.vectorCount}`);
  }
  const sqIds = new Set<number>();
  for (const sq of s.ioSqs) {
    checkIoQueue(`I/O SQ ${sq.id}`, sq, nsqa, sqIds, SQE_BYTES, profile);
    if (!cqIds.has(sq.cqid)) throw corrupt(`I/O SQ ${sq.id}: CQID ${sq.cqid} is not an I/O CQ of the state`);
  }
}

function checkIoQueue(what: string, q: SqSnapshot | CqSnapshot, granted: number, ids: Set<number>, entryBytes: number, profile: ControllerProfile): void {
  if (q.id === 0 || q.id > granted + 1) throw corrupt(`${what}: queue id outside 1..${granted + 1} (Number of Queues granted)`);
  if (ids.has(q.id)) throw corrupt(`${what} appears twice`);
  ids.add(q.id);
  if (q.size < 2 || q.size > profile.mqes + 1) throw corrupt(`${what}: ${q.size} entries; 2..${profile.mqes + 1} allowed (CAP.MQES)`);
  checkQueueMemory(what, q.base, q.size * entryBytes);
  checkPointers(what, q.head, q.tail, q.size);
}

function checkQueueMemory(what: string, base: number, bytes: number): void {
  if (base % PAGE_SIZE !== 0 || !GuestMemory.isValidRange(base, bytes)) throw corrupt(`${what}: base 0x${base.toString(16)} is not a page-aligned guest range of ${bytes} bytes`);
}

function checkPointers(what: string, head: number, tail: number, size: number): void {
  if (head >= size || tail >= size) throw corrupt(`${what}: head ${head} / tail ${tail} outside a queue of ${size} entries`);
}

function validateInterrupts(s: ControllerSnapshot, profile: ControllerProfile): void {
  const seen = new Set<number>();
  for (const vector of s.pendingVectors) {
    if (vector >= profile.vectorCount || seen.has(vector)) throw corrupt(`pending interrupt vector ${vector} is invalid or repeated`);
    seen.add(vector);
  }
}

function validateEvents(s: ControllerSnapshot): void {
  const { outstanding, queued, masked } = s.events;
  if (outstanding.length > MAX_OUTSTANDING_AERS) throw corrupt(`${outstanding.length} outstanding AERs; AERL allows ${MAX_OUTSTANDING_AERS}`);
  if (new Set(outstanding).size !== outstanding.length) throw corrupt('outstanding AER command ids repeat');
  if (outstanding.length > 0 && !s.adminSq) throw corrupt('outstanding AERs without an admin queue');
  if (queued.length > MAX_QUEUED_EVENTS) throw corrupt(`${queued.length} queued events; at most ${MAX_QUEUED_EVENTS}`);
  if ([...queued, ...masked].some((event) => event.type > 7)) throw corrupt('async event type above 7');
}

function hex(value: number): string {
  return (value >>> 0).toString(16).padStart(8, '0');
}
