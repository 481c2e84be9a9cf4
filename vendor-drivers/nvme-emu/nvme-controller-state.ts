/**
 * The standardized part of an NVMe 2.1 Controller State data structure
 * (TP4159): the 48-byte header and the NVMe controller state, version 0 (I/O
 * SQ and CQ entries). Both formats nvme-emu saves begin with it: the full one
 * adds its vendor-specific section (state-encode.ts, state-decode.ts), the
 * standard one is nothing else (standard-state.ts). Layout: STATE-FORMAT.md.
 */
import { DriverError } from '../driver.ts';
import { ByteReader, ByteWriter, corrupt } from './byte-cursor.ts';
import type { CqSnapshot, SqSnapshot } from './controller-snapshot.ts';
import { CompletionQueue } from './queues.ts';
import {
  CSATTR_SUSPENDED,
  HEADER_BYTES,
  HEADER_VERSION,
  IOCQA_IEN,
  IOCQA_S0PT,
  MAX_IMAGE_BYTES,
  NVME_CS_HEADER_BYTES,
  NVME_CS_VERSION,
  QUEUE_ATTR_PC,
  QUEUE_ENTRY_BYTES,
} from './state-format.ts';

/** An I/O queue as the standard entries describe it: no doorbell latches (those are nvme-emu's own). */
export type StandardSq = Omit<SqSnapshot, 'latchedTail'>;
export type StandardCq = Omit<CqSnapshot, 'latchedHead'>;

export interface StandardQueues {
  readonly sqs: readonly StandardSq[];
  readonly cqs: readonly StandardCq[];
}

export interface Section {
  readonly start: number;
  readonly end: number;
}

export interface Header {
  /** CSATTR bit 0: taken with the controller suspended (stopped), so it can be applied. */
  readonly suspended: boolean;
  readonly nvme: Section;
  readonly vendor: Section;
}

/** Whether an image must have been taken stopped (to be applied), or may have been taken running (a pre-copy image, only checked). */
export type ImageKind = 'suspended' | 'any';

/**
 * Refuses an image taken while the VF ran where only one taken stopped will
 * do: the commands the VF had fetched then are in none of it.
 */
export function requireKind(header: Header, accept: ImageKind): void {
  if (accept === 'suspended' && !header.suspended) {
    throw corrupt('the state was taken while the source VF ran (CSATTR bit 0 clear): only one taken stopped can be applied');
  }
}

/** The header of an image whose NVMe controller state and vendor section are these sizes (dword multiples). */
export function writeHeader(w: ByteWriter, suspended: boolean, nvmeBytes: number, vendorBytes: number): void {
  w.u16(HEADER_VERSION).u8(suspended ? CSATTR_SUSPENDED : 0).zeros(13);
  w.u32(nvmeBytes / 4).zeros(12); // NVMECSS, a 128-bit dword count
  w.u32(vendorBytes / 4).zeros(12); // VSS
}

/**
 * The length of the image whose header is `header` (its first 48 bytes or
 * more): how a reader of several images in a row knows where each ends.
 * Checks what the length depends on: the version, and that it is a size this
 * controller's state can have.
 */
export function imageLength(header: Uint8Array): number {
  const r = new ByteReader(header, 'header', 0, Math.min(header.length, HEADER_BYTES));
  const version = r.u16('VER');
  if (version !== HEADER_VERSION) throw incompatible(`Controller State data structure version ${version}; this VF reads version ${HEADER_VERSION}`);
  r.bytes(14, 'CSATTR and reserved bytes');
  const nvmeDwords = r.u32('NVMECSS');
  r.reserved(12, 'NVMECSS upper bytes');
  const vendorDwords = r.u32('VSS');
  r.reserved(12, 'VSS upper bytes');
  const length = HEADER_BYTES + 4 * (nvmeDwords + vendorDwords);
  if (length > MAX_IMAGE_BYTES) throw corrupt(`header sizes (NVMECSS ${nvmeDwords}, VSS ${vendorDwords} dwords) make a ${length}-byte state; a controller state is at most ${MAX_IMAGE_BYTES}`);
  return length;
}

export function readHeader(payload: Uint8Array): Header {
  if (payload.length < HEADER_BYTES) throw corrupt(`payload is ${payload.length} bytes, shorter than the ${HEADER_BYTES}-byte header`);
  const expected = imageLength(payload);
  const r = new ByteReader(payload, 'header', 2);
  const csattr = r.u8('CSATTR');
  // Bit 0 is the only attribute: set when taken stopped, clear in an image taken while the VF ran (pre-copy).
  if ((csattr & ~CSATTR_SUSPENDED) !== 0) throw corrupt(`header CSATTR is 0x${csattr.toString(16)}; only bit 0 (suspended) is defined`);
  r.reserved(13, 'bytes 3..15');
  const nvmeDwords = r.u32('NVMECSS');
  r.bytes(12, 'NVMECSS upper bytes');
  const vendorDwords = r.u32('VSS');
  if (payload.length !== expected) {
    throw corrupt(`payload is ${payload.length} bytes, header sizes (NVMECSS ${nvmeDwords}, VSS ${vendorDwords} dwords) say ${expected}`);
  }
  const nvmeEnd = HEADER_BYTES + 4 * nvmeDwords;
  return { suspended: (csattr & CSATTR_SUSPENDED) !== 0, nvme: { start: HEADER_BYTES, end: nvmeEnd }, vendor: { start: nvmeEnd, end: payload.length } };
}

/** The NVMe controller state: only I/O SQs and CQs, each in a 24-byte entry, ascending QID. */
export function encodeIoQueues(queues: StandardQueues): Uint8Array {
  const w = new ByteWriter();
  w.u16(NVME_CS_VERSION).u16(queues.sqs.length).u16(queues.cqs.length).u16(0);
  for (const sq of queues.sqs) {
    w.u64(sq.base).u16(sq.size - 1).u16(sq.id).u16(sq.cqid).u16(QUEUE_ATTR_PC | (sq.priority << 1));
    w.u16(sq.head).u16(sq.tail).zeros(4);
  }
  for (const cq of queues.cqs) {
    const s0pt = CompletionQueue.slot0PhaseTagOf(cq.phase, cq.tail);
    const iocqa = QUEUE_ATTR_PC | (cq.interruptsEnabled ? IOCQA_IEN : 0) | (s0pt ? IOCQA_S0PT : 0) | (cq.vector << 16);
    w.u64(cq.base).u16(cq.size - 1).u16(cq.id).u16(cq.head).u16(cq.tail).u32(iocqa).zeros(4);
  }
  return w.finish();
}

export function readIoQueues(payload: Uint8Array, section: Section): StandardQueues {
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
  const sqs = Array.from({ length: niosq }, (_, i): StandardSq => {
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
  const cqs = Array.from({ length: niocq }, (_, i): StandardCq => {
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

export function incompatible(message: string): DriverError {
  return new DriverError('incompatible-state', message);
}

function hex(value: number): string {
  return value.toString(16).padStart(8, '0');
}
