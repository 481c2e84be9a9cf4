/**
 * Reads a state of the full format back into a controller snapshot, checking its
 * structure: lengths, versions, reserved fields, the seal (CRC-32C) and the
 * presence of every record. Whether the values make sense for a given VF is
 * state-validate.ts's job. Nothing here touches a controller.
 */
import { crc32c } from '@node-rs/crc32';
import { ByteReader, corrupt } from './byte-cursor.ts';
import type { ControllerSnapshot } from './controller-snapshot.ts';
import { DEFAULT_MORE_FEATURES } from './features.ts';
import { type ImageKind, incompatible, readHeader, readIoQueues, requireKind, type Section, type StandardQueues } from './nvme-controller-state.ts';
import {
  HEADER_BYTES,
  isOptionalTag,
  mayBeAbsent,
  RECORD_HEADER_BYTES,
  RECORD_NAMES,
  RECORD_VERSION,
  RecordTag,
  VENDOR_LAYOUT_VERSION,
  VENDOR_MAGIC,
} from './state-format.ts';
import { type Latch, RECORD_READERS, type VendorRecords } from './vendor-records-decode.ts';

/**
 * A state of the full format. Only an image taken with the VF stopped can be
 * applied; `accept: 'any'` also takes one taken while it ran (a pre-copy
 * image, decoded only to check it).
 */
export function decodeState(payload: Uint8Array, accept: ImageKind = 'suspended'): ControllerSnapshot {
  const header = readHeader(payload);
  checkSeal(payload);
  const queues = readIoQueues(payload, header.nvme);
  const records = readVendorRecords(payload, header.vendor);
  const snapshot = assemble(queues, records);
  requireKind(header, accept);
  return snapshot;
}

/** The last record is the seal: tag, version, length 4, then CRC-32C of all bytes before the value. */
function checkSeal(payload: Uint8Array): void {
  const at = payload.length - RECORD_HEADER_BYTES - 4;
  const r = new ByteReader(payload, 'seal', Math.max(HEADER_BYTES, at));
  if (at < HEADER_BYTES || r.u16('tag') !== RecordTag.SEAL || r.u16('version') !== RECORD_VERSION || r.u32('length') !== 4) {
    throw corrupt('payload does not end with the seal record');
  }
  const stored = r.u32('CRC-32C');
  const actual = crc32c(Buffer.from(payload.buffer, payload.byteOffset, payload.length - 4)) >>> 0;
  if (stored !== actual) throw corrupt(`payload checksum mismatch: sealed CRC-32C 0x${hex(stored)}, computed 0x${hex(actual)}`);
}

function readVendorRecords(payload: Uint8Array, section: Section): VendorRecords {
  const r = new ByteReader(payload, 'vendor section', section.start, section.end);
  const magic = r.u32('magic');
  if (magic !== VENDOR_MAGIC) throw corrupt(`vendor section magic 0x${hex(magic)} is not nvme-emu's 0x${hex(VENDOR_MAGIC)}`);
  const layout = r.u16('layout version');
  if (layout !== VENDOR_LAYOUT_VERSION) throw incompatible(`vendor section layout ${layout}; this VF reads layout ${VENDOR_LAYOUT_VERSION}`);
  const count = r.u16('record count');
  const seen = new Set<number>();
  const into: Partial<VendorRecords> = {};
  for (let i = 0; i < count; i++) {
    const tag = r.u16(`record ${i} tag`);
    const version = r.u16(`record ${i} version`);
    const length = r.u32(`record ${i} length`);
    const name = RECORD_NAMES[tag];
    const read = RECORD_READERS[tag];
    if (!name || !read) {
      // As the stream's records: a newer writer's optional record is skipped (the seal still covers it), a mandatory one refused.
      if (!isOptionalTag(tag)) throw incompatible(`vendor section: record tag 0x${hex(tag)} at byte ${r.offset - RECORD_HEADER_BYTES} is mandatory and unknown to this VF`);
      r.bytes(length, `optional record 0x${hex(tag)} body`);
      r.skipPadding(4, `optional record 0x${hex(tag)} padding`);
      continue;
    }
    if (seen.has(tag)) throw corrupt(`vendor section: ${name} record appears twice`);
    seen.add(tag);
    if (version !== RECORD_VERSION) throw incompatible(`vendor ${name} record version ${version}; this VF reads version ${RECORD_VERSION}`);
    if (tag === RecordTag.SEAL && i !== count - 1) throw corrupt('vendor section: seal record is not the last record');
    const bodyStart = r.offset;
    r.bytes(length, `${name} record body`);
    const body = new ByteReader(payload, `vendor ${name} record`, bodyStart, bodyStart + length);
    read(body, into);
    body.expectEnd();
    r.skipPadding(4, `${name} record padding`);
  }
  r.expectEnd();
  for (const [tag, name] of Object.entries(RECORD_NAMES)) {
    if (!seen.has(Number(tag)) && !mayBeAbsent(Number(tag))) throw corrupt(`vendor section lacks the ${name} record`);
  }
  return into as VendorRecords;
}

/** Joins the standard queue entries with their vendor-section latches. */
function assemble(queues: StandardQueues, v: VendorRecords): ControllerSnapshot {
  const { sqs, cqs } = v.latches;
  if (sqs.length !== queues.sqs.length || cqs.length !== queues.cqs.length) {
    throw corrupt(`I/O queue latches cover ${sqs.length} SQs and ${cqs.length} CQs; the state has ${queues.sqs.length} and ${queues.cqs.length}`);
  }
  const ioSqs = queues.sqs.map((sq, i) => ({ ...sq, latchedTail: matchingLatch(sqs[i], sq.id, 'SQ') }));
  const ioCqs = queues.cqs.map((cq, i) => ({ ...cq, latchedHead: matchingLatch(cqs[i], cq.id, 'CQ') }));
  return {
    registers: v.registers.file,
    interruptMask: v.registers.interruptMask,
    latchedCc: v.registers.latchedCc,
    adminSq: v.adminQueues.sq,
    adminCq: v.adminQueues.cq,
    ioSqs,
    ioCqs,
    // A state written before the queue allocation record: nothing set, and created if any I/O queue is there now.
    features: { ...v.features, ...(v.moreFeatures ?? DEFAULT_MORE_FEATURES), ...(v.queueAllocation ?? { queuesAllocated: false, ioQueuesCreated: queues.sqs.length + queues.cqs.length > 0 }) },
    vectorCount: v.interrupts.vectorCount,
    pendingVectors: v.interrupts.pending,
    events: v.events,
    smart: v.smart,
    errorCount: v.errorLog.errorCount,
    errorLog: v.errorLog.entries,
    profile: v.profile,
  };
}

function matchingLatch(latch: Latch | undefined, qid: number, what: string): number | undefined {
  if (!latch || latch.qid !== qid) throw corrupt(`I/O ${what} latch for QID ${latch?.qid ?? '?'} does not match I/O ${what} ${qid}`);
  return latch.value;
}

function hex(value: number): string {
  return value.toString(16).padStart(8, '0');
}
