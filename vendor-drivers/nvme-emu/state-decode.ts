/**
 * Reads a saved-state payload back into a controller snapshot, checking its
 * structure: lengths, versions, reserved fields, the seal (CRC-32C) and the
 * presence of every record. Whether the values make sense for a given VF is
 * state-validate.ts's job. Nothing here touches a controller.
 */
import { crc32c } from '@node-rs/crc32';
import { DriverError } from '../driver.ts';
import { ByteReader, corrupt } from './byte-cursor.ts';
import type { ControllerSnapshot, CqSnapshot, SqSnapshot } from './controller-snapshot.ts';
import { CompletionQueue } from './queues.ts';
import {
  CSATTR_SUSPENDED,
  HEADER_BYTES,
  HEADER_VERSION,
  IOCQA_IEN,
  IOCQA_S0PT,
  NVME_CS_HEADER_BYTES,
  NVME_CS_VERSION,
  QUEUE_ATTR_PC,
  QUEUE_ENTRY_BYTES,
  RECORD_HEADER_BYTES,
  RECORD_NAMES,
  RECORD_VERSION,
  RecordTag,
  VENDOR_LAYOUT_VERSION,
  VENDOR_MAGIC,
} from './state-format.ts';
import { type Latch, RECORD_READERS, type VendorRecords } from './vendor-records-decode.ts';

interface Section {
  readonly start: number;
  readonly end: number;
}

export function decodeState(payload: Uint8Array): ControllerSnapshot {
  const { nvme, vendor } = readHeader(payload);
  checkSeal(payload);
  const queues = readNvmeControllerState(payload, nvme);
  const records = readVendorRecords(payload, vendor);
  return assemble(queues, records);
}

function readHeader(payload: Uint8Array): { nvme: Section; vendor: Section } {
  if (payload.length < HEADER_BYTES) throw corrupt(`payload is ${payload.length} bytes, shorter than the ${HEADER_BYTES}-byte header`);
  const r = new ByteReader(payload, 'header');
  const version = r.u16('VER');
  if (version !== HEADER_VERSION) throw incompatible(`Controller State data structure version ${version}; this VF reads version ${HEADER_VERSION}`);
  const csattr = r.u8('CSATTR');
  if (csattr !== CSATTR_SUSPENDED) throw corrupt(`header CSATTR is 0x${csattr.toString(16)}; a saved state is taken suspended (0x01)`);
  r.reserved(13, 'bytes 3..15');
  const nvmeDwords = r.u32('NVMECSS');
  r.reserved(12, 'NVMECSS upper bytes');
  const vendorDwords = r.u32('VSS');
  r.reserved(12, 'VSS upper bytes');
  const expected = HEADER_BYTES + 4 * (nvmeDwords + vendorDwords);
  if (payload.length !== expected) {
    throw corrupt(`payload is ${payload.length} bytes, header sizes (NVMECSS ${nvmeDwords}, VSS ${vendorDwords} dwords) say ${expected}`);
  }
  const nvmeEnd = HEADER_BYTES + 4 * nvmeDwords;
  return { nvme: { start: HEADER_BYTES, end: nvmeEnd }, vendor: { start: nvmeEnd, end: payload.length } };
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

interface StandardQueues {
  readonly sqs: Omit<SqSnapshot, 'latchedTail'>[];
  readonly cqs: Omit<CqSnapshot, 'latchedHead'>[];
}

function readNvmeControllerState(payload: Uint8Array, section: Section): StandardQueues {
  const r = new ByteReader(payload, 'NVMe controller state', section.start, section.end);
  const version = r.u16('VER');
  if (version !== NVME_CS_VERSION) throw incompatible(`NVMe controller state version ${version}; this VF reads version ${NVME_CS_VERSION}`);
  const niosq = r.u16('NIOSQ');
  const niocq = r.u16('NIOCQ');
  r.reserved(2, 'bytes 6..7');
  const expected = NVME_CS_HEADER_BYTES + QUEUE_ENTRY_BYTES * (niosq + niocq);
  if (section.end - section.start !== expected) {
    throw corrupt(`NVMe controller state is ${section.end - section.start} bytes; NIOSQ ${niosq} and NIOCQ ${niocq} need ${expected}`);
  }
  const sqs = Array.from({ length: niosq }, (_, i) => {
    const field = (name: string): string => `I/O SQ entry ${i} ${name}`;
    const base = r.u64(field('IOSQPRP1'));
    const size = r.u16(field('QSIZE')) + 1;
    const id = r.u16(field('QID'));
    const cqid = r.u16(field('CQID'));
    const attributes = r.u16(field('IOSQA'));
    const head = r.u16(field('head'));
    const tail = r.u16(field('tail'));
    r.reserved(4, field('bytes 20..23'));
    if ((attributes & ~0x7) !== 0) throw corrupt(`I/O SQ ${id}: reserved IOSQA bits set (0x${hex(attributes)})`);
    if ((attributes & QUEUE_ATTR_PC) === 0) throw incompatible(`I/O SQ ${id} is not physically contiguous; this VF requires contiguous queues (CAP.CQR)`);
    return { id, base, size, cqid, priority: (attributes >> 1) & 0x3, head, tail };
  });
  const cqs = Array.from({ length: niocq }, (_, i) => {
    const field = (name: string): string => `I/O CQ entry ${i} ${name}`;
    const base = r.u64(field('IOCQPRP1'));
    const size = r.u16(field('QSIZE')) + 1;
    const id = r.u16(field('QID'));
    const head = r.u16(field('head'));
    const tail = r.u16(field('tail'));
    const attributes = r.u32(field('IOCQA'));
    r.reserved(4, field('bytes 20..23'));
    if ((attributes & 0xfff8) !== 0) throw corrupt(`I/O CQ ${id}: reserved IOCQA bits set (0x${hex(attributes)})`);
    if ((attributes & QUEUE_ATTR_PC) === 0) throw incompatible(`I/O CQ ${id} is not physically contiguous; this VF requires contiguous queues (CAP.CQR)`);
    const s0pt = (attributes & IOCQA_S0PT) !== 0 ? 1 : 0;
    return {
      id,
      base,
      size,
      interruptsEnabled: (attributes & IOCQA_IEN) !== 0,
      vector: attributes >>> 16,
      head,
      tail,
      phase: CompletionQueue.phaseFromSlot0(s0pt, tail),
    };
  });
  r.expectEnd();
  return { sqs, cqs };
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
    if (!name || !read) throw corrupt(`vendor section: unknown record tag 0x${hex(tag)} at byte ${r.offset - RECORD_HEADER_BYTES}`);
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
    if (!seen.has(Number(tag))) throw corrupt(`vendor section lacks the ${name} record`);
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
    features: v.features,
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

function incompatible(message: string): DriverError {
  return new DriverError('incompatible-state', message);
}

function hex(value: number): string {
  return value.toString(16).padStart(8, '0');
}
