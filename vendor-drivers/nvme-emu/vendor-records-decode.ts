/**
 * Readers of the vendor-section records (one per tag, see STATE-FORMAT.md).
 * Each reads exactly its record's body; the caller checks nothing is left.
 */
import { getHex, getNulPadded, uuidFromHex } from './bytes.ts';
import { type ByteReader, corrupt } from './byte-cursor.ts';
import type { AsyncEvent, EventMask } from './async-events.ts';
import type { ControllerProfile, NamespaceProfile } from './controller-profile.ts';
import type { CqSnapshot, SqSnapshot } from './controller-snapshot.ts';
import type { RegisterFile } from './controller-core.ts';
import type { FeatureState, MoreFeatures } from './features.ts';
import { decodeErrorEntry, ERROR_ENTRY_BYTES, type ErrorLogEntry, type SmartCounters } from './log-pages.ts';
import { FIRMWARE_BYTES, MODEL_BYTES, RecordTag, SERIAL_BYTES, SUBNQN_BYTES } from './state-format.ts';

export interface AdminQueues {
  readonly sq: SqSnapshot | undefined;
  readonly cq: CqSnapshot | undefined;
}

export interface Latch {
  readonly qid: number;
  readonly value: number | undefined;
}

export interface VendorRecords {
  registers: { file: RegisterFile; interruptMask: number; latchedCc: number | undefined };
  adminQueues: AdminQueues;
  latches: { sqs: Latch[]; cqs: Latch[] };
  /** The features record; `queuesAllocated` and `ioQueuesCreated` come from the optional queue allocation record. */
  features: Omit<FeatureState, keyof MoreFeatures | 'queuesAllocated' | 'ioQueuesCreated'>;
  /** Absent when they are all the defaults. */
  moreFeatures?: MoreFeatures;
  /** Absent in a state written before 2026-12. */
  queueAllocation?: { queuesAllocated: boolean; ioQueuesCreated: boolean };
  interrupts: { vectorCount: number; pending: number[] };
  events: { outstanding: number[]; queued: AsyncEvent[]; masked: EventMask[] };
  smart: SmartCounters;
  errorLog: { errorCount: number; entries: ErrorLogEntry[] };
  profile: ControllerProfile;
}

type RecordReader = (r: ByteReader, into: Partial<VendorRecords>) => void;

export const RECORD_READERS: Readonly<Record<number, RecordReader>> = {
  [RecordTag.REGISTERS]: (r, into) => {
    const file = {
      cc: r.u32('CC'),
      csts: r.u32('CSTS'),
      aqa: r.u32('AQA'),
      asqLo: 0,
      asqHi: 0,
      acqLo: 0,
      acqHi: 0,
    };
    const interruptMask = r.u32('INTMS');
    file.asqLo = r.u32('ASQ low');
    file.asqHi = r.u32('ASQ high');
    file.acqLo = r.u32('ACQ low');
    file.acqHi = r.u32('ACQ high');
    const latchedCc = optional(r.u32('latched CC flag'), r.u32('latched CC'), 'latched CC flag');
    into.registers = { file, interruptMask, latchedCc };
  },
  [RecordTag.ADMIN_QUEUES]: (r, into) => {
    const present = r.u32('present');
    if (present > 1) throw corrupt(`admin queues: present flag ${present}`);
    const sqBase = r.u64('SQ base');
    const sqSize = r.u16('SQ size');
    const sqHead = r.u16('SQ head');
    const sqTail = r.u16('SQ tail');
    const sqLatched = optional(r.u16('SQ latched flag'), r.u32('SQ latched tail'), 'admin SQ latched flag');
    const cqBase = r.u64('CQ base');
    const cqSize = r.u16('CQ size');
    const cqHead = r.u16('CQ head');
    const cqTail = r.u16('CQ tail');
    const cqPhase = r.u8('CQ phase');
    const cqLatched = optional(r.u8('CQ latched flag'), r.u32('CQ latched head'), 'admin CQ latched flag');
    if (cqPhase > 1) throw corrupt(`admin CQ phase ${cqPhase}`);
    into.adminQueues =
      present === 1
        ? {
            sq: { id: 0, base: sqBase, size: sqSize, cqid: 0, priority: 0, head: sqHead, tail: sqTail, latchedTail: sqLatched },
            cq: { id: 0, base: cqBase, size: cqSize, interruptsEnabled: true, vector: 0, head: cqHead, tail: cqTail, phase: cqPhase, latchedHead: cqLatched },
          }
        : { sq: undefined, cq: undefined };
  },
  [RecordTag.IO_QUEUE_LATCHES]: (r, into) => {
    const sqCount = r.u16('SQ count');
    const cqCount = r.u16('CQ count');
    const latch = (what: string): Latch => {
      const qid = r.u16(`${what} QID`);
      return { qid, value: optional(r.u16(`${what} flag`), r.u32(`${what} value`), `${what} ${qid} latch flag`) };
    };
    into.latches = {
      sqs: Array.from({ length: sqCount }, () => latch('SQ')),
      cqs: Array.from({ length: cqCount }, () => latch('CQ')),
    };
  },
  [RecordTag.FEATURES]: (r, into) => {
    const nsqa = r.u16('NSQA');
    const ncqa = r.u16('NCQA');
    const vwc = r.u8('VWC');
    const coalescingThreshold = r.u8('coalescing THR');
    const coalescingTime = r.u8('coalescing TIME');
    r.reserved(1, 'byte 7');
    const asyncEventConfig = r.u32('AEC');
    if (vwc > 1) throw corrupt(`features: VWC ${vwc}`);
    into.features = { nsqa, ncqa, volatileWriteCache: vwc === 1, coalescingThreshold, coalescingTime, asyncEventConfig };
  },
  [RecordTag.MORE_FEATURES]: (r, into) => {
    const arbitration = r.u32('arbitration');
    const workloadHint = r.u8('workload hint');
    const dn = r.u8('write atomicity DN');
    const vectorCount = r.u16('coalescing-disabled vector count');
    const overTemperatureThreshold = r.u16('over-temperature threshold');
    const underTemperatureThreshold = r.u16('under-temperature threshold');
    const timeLimitedErrorRecovery = r.u16('TLER');
    r.reserved(2, 'bytes 14..15');
    const coalescingDisabledVectors = Array.from({ length: vectorCount }, (_, i) => r.u16(`coalescing-disabled vector ${i}`));
    r.skipPadding(4, 'coalescing-disabled vectors padding');
    if (workloadHint > 7 || dn > 1 || (arbitration & 0xf8) !== 0) throw corrupt(`more features: arbitration 0x${arbitration.toString(16)}, workload hint ${workloadHint}, DN ${dn}`);
    into.moreFeatures = { arbitration, workloadHint, disableNormalAtomicity: dn === 1, overTemperatureThreshold, underTemperatureThreshold, timeLimitedErrorRecovery, coalescingDisabledVectors };
  },
  [RecordTag.QUEUE_ALLOCATION]: (r, into) => {
    const flags = r.u8('flags');
    if ((flags & ~0x3) !== 0) throw corrupt(`queue allocation: flags 0x${flags.toString(16)}`);
    r.reserved(3, 'bytes 1..3');
    into.queueAllocation = { queuesAllocated: (flags & 1) !== 0, ioQueuesCreated: (flags & 2) !== 0 };
  },
  [RecordTag.INTERRUPTS]: (r, into) => {
    const vectorCount = r.u16('vector count');
    const pendingCount = r.u16('pending count');
    const pending = Array.from({ length: pendingCount }, (_, i) => r.u16(`pending vector ${i}`));
    into.interrupts = { vectorCount, pending };
  },
  [RecordTag.ASYNC_EVENTS]: (r, into) => {
    const outstandingCount = r.u8('outstanding AER count');
    const queuedCount = r.u8('queued event count');
    const maskedCount = r.u8('masked type count');
    r.reserved(1, 'byte 3');
    const outstanding = Array.from({ length: outstandingCount }, (_, i) => r.u16(`AER CID ${i}`));
    r.skipPadding(4, 'CID padding');
    const queued = Array.from({ length: queuedCount }, (_, i) => {
      const event = { type: r.u8(`event ${i} type`), info: r.u8(`event ${i} info`), logPage: r.u8(`event ${i} log page`) };
      r.reserved(1, `event ${i} byte 3`);
      return event;
    });
    const masked = Array.from({ length: maskedCount }, (_, i) => {
      const mask = { type: r.u8(`mask ${i} type`), logPage: r.u8(`mask ${i} log page`) };
      r.reserved(2, `mask ${i} bytes 2..3`);
      return mask;
    });
    into.events = { outstanding, queued, masked };
  },
  [RecordTag.SMART]: (r, into) => {
    into.smart = {
      unitsRead: r.u64('data units read'),
      unitsWritten: r.u64('data units written'),
      hostReadCommands: r.u64('host read commands'),
      hostWriteCommands: r.u64('host write commands'),
    };
  },
  [RecordTag.ERROR_LOG]: (r, into) => {
    const errorCount = r.u64('error count');
    const count = r.u16('entry count');
    r.reserved(6, 'bytes 10..15');
    const entries = Array.from({ length: count }, (_, i) => decodeErrorEntry(r.bytes(ERROR_ENTRY_BYTES, `entry ${i}`), 0));
    into.errorLog = { errorCount, entries };
  },
  [RecordTag.IDENTITY]: (r, into) => {
    const cntlid = r.u16('CNTLID');
    const namespaceCount = r.u16('namespace count');
    const mqes = r.u32('MQES');
    const maxIoQueues = r.u16('max I/O queues');
    const vectorCount = r.u16('vector count');
    const serial = getNulPadded(r.bytes(SERIAL_BYTES, 'SN'), 0, SERIAL_BYTES);
    const model = getNulPadded(r.bytes(MODEL_BYTES, 'MN'), 0, MODEL_BYTES);
    const firmware = getNulPadded(r.bytes(FIRMWARE_BYTES, 'FR'), 0, FIRMWARE_BYTES);
    const subnqn = getNulPadded(r.bytes(SUBNQN_BYTES, 'SUBNQN'), 0, SUBNQN_BYTES);
    const namespaces = Array.from({ length: namespaceCount }, (_, i): NamespaceProfile => {
      const nsid = r.u32(`namespace ${i} NSID`);
      const blockSize = r.u32(`namespace ${i} block size`);
      const sizeBytes = r.u64(`namespace ${i} size`);
      const ids = r.bytes(40, `namespace ${i} identifiers`);
      return { nsid, sizeBytes, blockSize, nguid: getHex(ids, 0, 16), eui64: getHex(ids, 16, 8), uuid: uuidFromHex(getHex(ids, 24, 16)) };
    });
    into.profile = { cntlid, serial, model, firmware, subnqn, mqes, maxIoQueues, vectorCount, namespaces };
  },
  [RecordTag.SEAL]: (r) => {
    r.u32('CRC-32C');
  },
};

function optional(flag: number, value: number, field: string): number | undefined {
  if (flag > 1) throw corrupt(`${field} is ${flag}`);
  return flag === 1 ? value : undefined;
}
