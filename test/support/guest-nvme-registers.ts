/**
 * NVMe controller registers (NVMe Base Specification 2.x, section 3.1):
 * offsets and the fields a host driver needs to bring a controller up.
 * 64-bit registers are accessed as two 32-bit halves, low half first,
 * because the host port only does 32-bit MMIO.
 */

export const REG = {
  CAP_LO: 0x00,
  CAP_HI: 0x04,
  VS: 0x08,
  INTMS: 0x0c,
  INTMC: 0x10,
  CC: 0x14,
  CSTS: 0x1c,
  AQA: 0x24,
  ASQ_LO: 0x28,
  ASQ_HI: 0x2c,
  ACQ_LO: 0x30,
  ACQ_HI: 0x34,
  DOORBELL_BASE: 0x1000,
} as const;

export const CC = {
  EN: 1 << 0,
  CSS_SHIFT: 4,
  MPS_SHIFT: 7,
  AMS_SHIFT: 11,
  SHN_SHIFT: 14,
  SHN_MASK: 0b11 << 14,
  SHN_NORMAL: 0b01 << 14,
  IOSQES_SHIFT: 16,
  IOCQES_SHIFT: 20,
} as const;

export const CSTS = {
  RDY: 1 << 0,
  CFS: 1 << 1,
  SHST_MASK: 0b11 << 2,
  SHST_COMPLETE: 0b10 << 2,
} as const;

/** Controller Capabilities, decoded. */
export interface ControllerCapabilities {
  /** Largest queue the controller supports, in entries (MQES + 1). */
  readonly maxQueueEntries: number;
  /** Queues must be physically contiguous (CQR). */
  readonly contiguousQueuesRequired: boolean;
  /** Worst-case time to become ready or not ready, in ms (TO is in 500 ms units). */
  readonly readyTimeoutMs: number;
  /** Doorbell stride in bytes: 4 << DSTRD. */
  readonly doorbellStrideBytes: number;
  readonly nvmCommandSetSupported: boolean;
  readonly subsystemResetSupported: boolean;
  /** Smallest and largest memory page size, in bytes (4 KiB << MPSMIN/MPSMAX). */
  readonly minPageBytes: number;
  readonly maxPageBytes: number;
}

export function decodeCapabilities(low: number, high: number): ControllerCapabilities {
  const toUnits = (low >>> 24) & 0xff;
  return {
    maxQueueEntries: (low & 0xffff) + 1,
    contiguousQueuesRequired: ((low >>> 16) & 1) === 1,
    readyTimeoutMs: toUnits * 500,
    doorbellStrideBytes: 4 << (high & 0xf),
    nvmCommandSetSupported: ((high >>> 5) & 1) === 1, // CSS bit 0 is CAP bit 37
    subsystemResetSupported: ((high >>> 4) & 1) === 1,
    minPageBytes: 4096 * 2 ** ((high >>> 16) & 0xf),
    maxPageBytes: 4096 * 2 ** ((high >>> 20) & 0xf),
  };
}

export interface NvmeVersion {
  readonly major: number;
  readonly minor: number;
  readonly tertiary: number;
}

export function decodeVersion(vs: number): NvmeVersion {
  return { major: vs >>> 16, minor: (vs >>> 8) & 0xff, tertiary: vs & 0xff };
}

/** SQ y tail doorbell: 0x1000 + (2y) * stride. */
export function sqTailDoorbell(qid: number, strideBytes: number): number {
  return REG.DOORBELL_BASE + 2 * qid * strideBytes;
}

/** CQ y head doorbell: 0x1000 + (2y + 1) * stride. */
export function cqHeadDoorbell(qid: number, strideBytes: number): number {
  return REG.DOORBELL_BASE + (2 * qid + 1) * strideBytes;
}

/** CC for an enabled controller: NVM command set, 4 KiB pages, round-robin
 * arbitration, 64-byte SQEs (2^6) and 16-byte CQEs (2^4). */
export function enabledConfiguration(): number {
  return (CC.EN | (0 << CC.CSS_SHIFT) | (0 << CC.MPS_SHIFT) | (0 << CC.AMS_SHIFT) | (6 << CC.IOSQES_SHIFT) | (4 << CC.IOCQES_SHIFT)) >>> 0;
}
