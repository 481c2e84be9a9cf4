/**
 * NVMe command and completion formats (NVMe Base Specification 2.x,
 * sections 4.2 and 4.6) and builders for the admin and NVM commands the
 * guest driver issues. Builders describe a command; the driver turns the
 * `data` buffer into PRP entries when it places the command in a queue.
 */

export const SQE_BYTES = 64;
export const CQE_BYTES = 16;

export const ADMIN_OPCODE = {
  DELETE_IO_SQ: 0x00,
  CREATE_IO_SQ: 0x01,
  GET_LOG_PAGE: 0x02,
  DELETE_IO_CQ: 0x04,
  CREATE_IO_CQ: 0x05,
  IDENTIFY: 0x06,
  ABORT: 0x08,
  SET_FEATURES: 0x09,
  GET_FEATURES: 0x0a,
} as const;

export const NVM_OPCODE = {
  FLUSH: 0x00,
  WRITE: 0x01,
  READ: 0x02,
  WRITE_ZEROES: 0x08,
  DATASET_MANAGEMENT: 0x09,
} as const;

export const FEATURE = {
  ARBITRATION: 0x01,
  POWER_MANAGEMENT: 0x02,
  TEMPERATURE_THRESHOLD: 0x04,
  VOLATILE_WRITE_CACHE: 0x06,
  NUMBER_OF_QUEUES: 0x07,
  INTERRUPT_COALESCING: 0x08,
  INTERRUPT_VECTOR_CONFIGURATION: 0x09,
  ASYNC_EVENT_CONFIGURATION: 0x0b,
} as const;

export const LOG_PAGE = {
  ERROR_INFORMATION: 0x01,
  SMART_HEALTH: 0x02,
  FIRMWARE_SLOT: 0x03,
} as const;

/** A guest-physical buffer the command transfers to or from. */
export interface DataBuffer {
  readonly address: number;
  readonly length: number;
}

/** A command before it gets a CID and PRPs. Unset dwords are zero. */
export interface NvmeCommand {
  readonly opcode: number;
  readonly nsid?: number;
  readonly cdw2?: number;
  readonly cdw3?: number;
  readonly cdw10?: number;
  readonly cdw11?: number;
  readonly cdw12?: number;
  readonly cdw13?: number;
  readonly cdw14?: number;
  readonly cdw15?: number;
  /** Data to transfer; the driver builds PRP1/PRP2 (and a PRP list) for it. */
  readonly data?: DataBuffer;
  /** An explicit PRP1 when the command names a region itself (queue creation). */
  readonly prp1?: number;
}

export interface NvmeStatus {
  /** Status Code Type (SCT) and Status Code (SC). */
  readonly sct: number;
  readonly sc: number;
  readonly more: boolean;
  readonly doNotRetry: boolean;
  readonly retryDelay: number;
}

export interface NvmeCompletion {
  /** The CQ the entry was read from. */
  readonly cqid: number;
  readonly sqid: number;
  readonly sqHead: number;
  readonly cid: number;
  readonly phase: number;
  readonly dw0: number;
  readonly dw1: number;
  readonly status: NvmeStatus;
}

export function completionSucceeded(completion: NvmeCompletion): boolean {
  return completion.status.sct === 0 && completion.status.sc === 0;
}

/** 64-bit value as two dwords, low first (guest addresses exceed 2^32). */
export function splitU64(value: number): [number, number] {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`not a u64: ${value}`);
  return [value >>> 0, Math.floor(value / 0x1_0000_0000) >>> 0];
}

export function encodeSubmissionEntry(command: NvmeCommand, cid: number, prp1: number, prp2: number): Uint8Array {
  const entry = new Uint8Array(SQE_BYTES);
  const view = new DataView(entry.buffer);
  // CDW0: opcode, FUSE=0, PSDT=00b (PRPs), CID.
  view.setUint32(0, ((command.opcode & 0xff) | ((cid & 0xffff) << 16)) >>> 0, true);
  view.setUint32(4, (command.nsid ?? 0) >>> 0, true);
  view.setUint32(8, (command.cdw2 ?? 0) >>> 0, true);
  view.setUint32(12, (command.cdw3 ?? 0) >>> 0, true);
  // MPTR (bytes 16..23) stays zero: no separate metadata.
  const [p1lo, p1hi] = splitU64(prp1);
  const [p2lo, p2hi] = splitU64(prp2);
  view.setUint32(24, p1lo, true);
  view.setUint32(28, p1hi, true);
  view.setUint32(32, p2lo, true);
  view.setUint32(36, p2hi, true);
  const dwords = [command.cdw10, command.cdw11, command.cdw12, command.cdw13, command.cdw14, command.cdw15];
  dwords.forEach((value, index) => view.setUint32(40 + 4 * index, (value ?? 0) >>> 0, true));
  return entry;
}

export function decodeCompletionEntry(bytes: Uint8Array, offset: number, cqid: number): NvmeCompletion {
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, CQE_BYTES);
  const dw2 = view.getUint32(8, true);
  const dw3 = view.getUint32(12, true);
  const statusField = dw3 >>> 17; // status field is bits 31:17, phase is bit 16
  return {
    cqid,
    dw0: view.getUint32(0, true),
    dw1: view.getUint32(4, true),
    sqHead: dw2 & 0xffff,
    sqid: dw2 >>> 16,
    cid: dw3 & 0xffff,
    phase: (dw3 >>> 16) & 1,
    status: {
      sc: statusField & 0xff,
      sct: (statusField >>> 8) & 0x7,
      retryDelay: (statusField >>> 11) & 0x3,
      more: ((statusField >>> 13) & 1) === 1,
      doNotRetry: ((statusField >>> 14) & 1) === 1,
    },
  };
}

export function phaseOf(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset + 14] ?? 0) & 1) as number;
}

// ---- admin command builders ------------------------------------------------

export const IDENTIFY_CNS = { NAMESPACE: 0x00, CONTROLLER: 0x01, ACTIVE_NAMESPACES: 0x02, NAMESPACE_DESCRIPTORS: 0x03 } as const;

export function identify(cns: number, nsid: number, data: DataBuffer): NvmeCommand {
  return { opcode: ADMIN_OPCODE.IDENTIFY, nsid, cdw10: cns & 0xff, data };
}

export function createIoCompletionQueue(qid: number, entries: number, base: number, vector: number): NvmeCommand {
  // PC=1 (physically contiguous), IEN=1 (interrupts enabled), IV=vector.
  return { opcode: ADMIN_OPCODE.CREATE_IO_CQ, prp1: base, cdw10: (qid | ((entries - 1) << 16)) >>> 0, cdw11: (0b11 | (vector << 16)) >>> 0 };
}

export function createIoSubmissionQueue(qid: number, entries: number, base: number, cqid: number): NvmeCommand {
  // PC=1, QPRIO=urgent(0) (ignored under round-robin), CQID=cqid.
  return { opcode: ADMIN_OPCODE.CREATE_IO_SQ, prp1: base, cdw10: (qid | ((entries - 1) << 16)) >>> 0, cdw11: (1 | (cqid << 16)) >>> 0 };
}

export function deleteIoSubmissionQueue(qid: number): NvmeCommand {
  return { opcode: ADMIN_OPCODE.DELETE_IO_SQ, cdw10: qid };
}

export function deleteIoCompletionQueue(qid: number): NvmeCommand {
  return { opcode: ADMIN_OPCODE.DELETE_IO_CQ, cdw10: qid };
}

export interface FeatureOptions {
  readonly nsid?: number;
  readonly data?: DataBuffer;
  /** Get Features SEL: 0 current, 1 default, 2 saved, 3 supported capabilities. */
  readonly select?: number;
  /** Set Features SV: make the value persist across power cycles. */
  readonly save?: boolean;
  readonly cdw11?: number;
}

export function getFeatures(fid: number, options: FeatureOptions = {}): NvmeCommand {
  const command: NvmeCommand = {
    opcode: ADMIN_OPCODE.GET_FEATURES,
    nsid: options.nsid ?? 0,
    cdw10: ((fid & 0xff) | ((options.select ?? 0) << 8)) >>> 0,
    cdw11: options.cdw11 ?? 0,
  };
  return options.data === undefined ? command : { ...command, data: options.data };
}

export function setFeatures(fid: number, value: number, options: FeatureOptions = {}): NvmeCommand {
  const command: NvmeCommand = {
    opcode: ADMIN_OPCODE.SET_FEATURES,
    nsid: options.nsid ?? 0,
    cdw10: ((fid & 0xff) | (options.save === true ? 0x8000_0000 : 0)) >>> 0,
    cdw11: value >>> 0,
  };
  return options.data === undefined ? command : { ...command, data: options.data };
}

export interface LogPageOptions {
  readonly nsid?: number;
  /** Byte offset into the log page (must be dword aligned). */
  readonly offset?: number;
  readonly logSpecificField?: number;
  readonly retainAsyncEvent?: boolean;
}

export function getLogPage(lid: number, data: DataBuffer, options: LogPageOptions = {}): NvmeCommand {
  if (data.length % 4 !== 0 || data.length === 0) throw new RangeError('log page length must be a non-zero multiple of 4');
  const numd = data.length / 4 - 1; // 0-based dword count, split in NUMDL/NUMDU
  const [offsetLo, offsetHi] = splitU64(options.offset ?? 0);
  return {
    opcode: ADMIN_OPCODE.GET_LOG_PAGE,
    nsid: options.nsid ?? 0xffff_ffff,
    cdw10: ((lid & 0xff) | (((options.logSpecificField ?? 0) & 0x7f) << 8) | (options.retainAsyncEvent === true ? 0x8000 : 0) | ((numd & 0xffff) << 16)) >>> 0,
    cdw11: (numd >>> 16) & 0xffff,
    cdw12: offsetLo,
    cdw13: offsetHi,
    data,
  };
}

// ---- NVM command builders --------------------------------------------------

export interface BlockRange {
  readonly nsid: number;
  readonly slba: number;
  /** Number of logical blocks, 1-based (the command carries NLB 0-based). */
  readonly blocks: number;
}

function lbaDwords(range: BlockRange): { cdw10: number; cdw11: number; nlb: number } {
  if (range.blocks < 1 || range.blocks > 0x1_0000) throw new RangeError(`blocks must be in [1, 65536], got ${range.blocks}`);
  const [cdw10, cdw11] = splitU64(range.slba);
  return { cdw10, cdw11, nlb: range.blocks - 1 };
}

export function nvmRead(range: BlockRange, data: DataBuffer): NvmeCommand {
  const { cdw10, cdw11, nlb } = lbaDwords(range);
  return { opcode: NVM_OPCODE.READ, nsid: range.nsid, cdw10, cdw11, cdw12: nlb, data };
}

export function nvmWrite(range: BlockRange, data: DataBuffer, options: { forceUnitAccess?: boolean } = {}): NvmeCommand {
  const { cdw10, cdw11, nlb } = lbaDwords(range);
  return { opcode: NVM_OPCODE.WRITE, nsid: range.nsid, cdw10, cdw11, cdw12: (nlb | (options.forceUnitAccess === true ? 1 << 30 : 0)) >>> 0, data };
}

export function nvmFlush(nsid: number): NvmeCommand {
  return { opcode: NVM_OPCODE.FLUSH, nsid };
}

export function nvmWriteZeroes(range: BlockRange, options: { deallocate?: boolean } = {}): NvmeCommand {
  const { cdw10, cdw11, nlb } = lbaDwords(range);
  return { opcode: NVM_OPCODE.WRITE_ZEROES, nsid: range.nsid, cdw10, cdw11, cdw12: (nlb | (options.deallocate === true ? 1 << 25 : 0)) >>> 0 };
}

export interface DsmRange {
  readonly slba: number;
  readonly blocks: number;
  readonly contextAttributes?: number;
}

export const DSM_RANGE_BYTES = 16;

/** The range list a Dataset Management command points at (16 bytes per range). */
export function encodeDsmRanges(ranges: readonly DsmRange[]): Uint8Array {
  if (ranges.length < 1 || ranges.length > 256) throw new RangeError('a DSM command carries 1 to 256 ranges');
  const bytes = new Uint8Array(ranges.length * DSM_RANGE_BYTES);
  const view = new DataView(bytes.buffer);
  ranges.forEach((range, index) => {
    const [lo, hi] = splitU64(range.slba);
    view.setUint32(index * 16, (range.contextAttributes ?? 0) >>> 0, true);
    view.setUint32(index * 16 + 4, range.blocks >>> 0, true);
    view.setUint32(index * 16 + 8, lo, true);
    view.setUint32(index * 16 + 12, hi, true);
  });
  return bytes;
}

export function nvmDatasetManagement(
  nsid: number,
  rangeCount: number,
  rangeList: DataBuffer,
  attributes: { deallocate?: boolean; integralRead?: boolean; integralWrite?: boolean },
): NvmeCommand {
  const cdw11 = (attributes.integralRead === true ? 1 : 0) | (attributes.integralWrite === true ? 2 : 0) | (attributes.deallocate === true ? 4 : 0);
  return { opcode: NVM_OPCODE.DATASET_MANAGEMENT, nsid, cdw10: (rangeCount - 1) & 0xff, cdw11, data: rangeList };
}
