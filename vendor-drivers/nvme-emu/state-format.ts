/**
 * Constants of the saved-state payload. The layout is documented in
 * STATE-FORMAT.md next to this file; state-encode.ts and state-decode.ts
 * are its only writer and reader.
 */
import type { StateFormat } from '../driver.ts';

/** vfmigd's own vendor UUID, for the formats its drivers define. */
export const VFMIGD_VENDOR = '5f0c9a3e-2b7d-4c61-8e4a-9d1b6f2a7c30';

/**
 * The vendor of a format no vendor defines: the NVMe standard's own. NVM
 * Express names no UUID for it (Identify CNS 20h lists the standard
 * controller-state versions apart from vendors' UUIDs), and the StateFormat
 * of a stream names a vendor, so the nil UUID stands for "the standard".
 */
export const NVME_STANDARD_VENDOR = '00000000-0000-0000-0000-000000000000';

/** The full format: an NVMe 2.1 Controller State data structure whose vendor-specific section is nvme-emu layout 1. */
export const FULL_STATE_FORMAT: StateFormat = Object.freeze({ name: 'nvme-controller-state+vfmigd-nvme-emu', version: 1, vendor: VFMIGD_VENDOR });

/**
 * The standard format: the Controller State data structure with only its
 * standardized part (VSS = 0), NVMe controller state version 0, so the
 * version is 0. What a controller of another vendor could take.
 */
export const STANDARD_STATE_FORMAT: StateFormat = Object.freeze({ name: 'nvme-controller-state', version: 0, vendor: NVME_STANDARD_VENDOR });

/** Far above what one controller state is (its I/O queues and logs are a few kilobytes). */
export const MAX_IMAGE_BYTES = 1024 * 1024;

export const HEADER_BYTES = 48;
/** Header VER: the data structure version this controller writes and reads. */
export const HEADER_VERSION = 0;
/** Header CSATTR bit 0: the controller was suspended when the state was taken. */
export const CSATTR_SUSPENDED = 0x01;
/** NVMe Controller State version 0: 8-byte header, then 24-byte I/O SQ and I/O CQ entries. */
export const NVME_CS_VERSION = 0;
export const NVME_CS_HEADER_BYTES = 8;
export const QUEUE_ENTRY_BYTES = 24;
/** IOSQA / IOCQA bit 0: physically contiguous. */
export const QUEUE_ATTR_PC = 0x1;
export const IOCQA_IEN = 0x2;
export const IOCQA_S0PT = 0x4;

/** Vendor-specific section: "VFMG", layout version, record count, then records. */
export const VENDOR_MAGIC = 0x474d4656; // "VFMG" read as a little-endian u32
export const VENDOR_LAYOUT_VERSION = 1;
export const RECORD_HEADER_BYTES = 8;
export const RECORD_VERSION = 1;

export const RecordTag = {
  REGISTERS: 0x0001,
  ADMIN_QUEUES: 0x0002,
  IO_QUEUE_LATCHES: 0x0003,
  FEATURES: 0x0004,
  INTERRUPTS: 0x0005,
  ASYNC_EVENTS: 0x0006,
  SMART: 0x0007,
  ERROR_LOG: 0x0008,
  IDENTITY: 0x0009,
  /**
   * Mandatory, but written only when one of its values is not the default:
   * the features added in 2026-12. A reader from before refuses a state that
   * carries one (it would lose the guest's setting), and takes one that does not.
   */
  MORE_FEATURES: 0x000a,
  /** Optional (an older reader skips it): how Number of Queues stands since the last controller reset. */
  QUEUE_ALLOCATION: 0x8001,
  /** Last record: CRC-32C of every payload byte before its value. */
  SEAL: 0xffff,
} as const;

/**
 * Tags 0x8000-0xFFFE are optional: a reader that does not know one skips
 * it, so a newer nvme-emu can add information an older destination may
 * ignore. An unknown tag below 0x8000 is mandatory: the state is refused
 * as incompatible. (PNG marks its ancillary chunks with a bit the same way.)
 */
export const OPTIONAL_TAG_BIT = 0x8000;

/** Records a state may lack: the optional ones, and those written only when they hold something other than the defaults. */
export function mayBeAbsent(tag: number): boolean {
  return isOptionalTag(tag) || tag === RecordTag.MORE_FEATURES;
}

export function isOptionalTag(tag: number): boolean {
  return (tag & OPTIONAL_TAG_BIT) !== 0 && tag !== RecordTag.SEAL;
}

export const RECORD_NAMES: Readonly<Record<number, string>> = {
  [RecordTag.REGISTERS]: 'registers',
  [RecordTag.ADMIN_QUEUES]: 'admin queues',
  [RecordTag.IO_QUEUE_LATCHES]: 'I/O queue latches',
  [RecordTag.FEATURES]: 'features',
  [RecordTag.INTERRUPTS]: 'interrupts',
  [RecordTag.ASYNC_EVENTS]: 'async events',
  [RecordTag.SMART]: 'SMART counters',
  [RecordTag.ERROR_LOG]: 'error log',
  [RecordTag.IDENTITY]: 'identity',
  [RecordTag.MORE_FEATURES]: 'more features',
  [RecordTag.QUEUE_ALLOCATION]: 'queue allocation',
  [RecordTag.SEAL]: 'seal',
};

export const SERIAL_BYTES = 20;
export const MODEL_BYTES = 40;
export const FIRMWARE_BYTES = 8;
export const SUBNQN_BYTES = 256;
