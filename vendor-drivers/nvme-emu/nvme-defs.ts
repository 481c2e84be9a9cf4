/**
 * Fixed properties of the emulated controller and the NVMe numbers it uses
 * (opcodes, feature and log page identifiers, register offsets).
 */

/** Memory page size: CAP.MPSMIN = CAP.MPSMAX = 0, so CC.MPS must be 0 (4 KiB). */
export const PAGE_SIZE = 4096;
/** Submission and completion queue entry sizes (CC.IOSQES = 6, CC.IOCQES = 4). */
export const SQE_BYTES = 64;
export const CQE_BYTES = 16;
export const IOSQES = 6;
export const IOCQES = 4;

/** NVMe 2.1. */
export const NVME_VERSION = 0x00020100;
/** CAP.TO in 500 ms units: the controller is ready at once, but hosts wait at most this. */
export const CAP_TIMEOUT_UNITS = 15;
/** Largest admin queue (AQA.ASQS/ACQS are 12 bits, 0's based). */
export const MAX_ADMIN_QUEUE_ENTRIES = 4096;

/** Identify MDTS: 2^7 pages = 512 KiB per command. */
export const MDTS = 7;
export const MAX_TRANSFER_BYTES = PAGE_SIZE << MDTS;
/** Identify AERL (0's based): four Asynchronous Event Requests may be outstanding. */
export const AERL = 3;
/** Identify ACL (0's based). */
export const ACL = 3;
/** Identify ELPE (0's based): the Error Information log holds 64 entries. */
export const ELPE = 63;
export const ERROR_LOG_ENTRIES = ELPE + 1;
/** Async events the controller keeps while no AER is outstanding. */
export const MAX_QUEUED_EVENTS = 16;
/** Commands one controller executes at once; fetching pauses beyond this. */
export const MAX_COMMANDS_IN_FLIGHT = 1024;
/** Dataset Management carries at most 256 ranges. */
export const DSM_RANGE_BYTES = 16;

export const FIRMWARE_REVISION = '1.0';
/** PCI vendor ids reported in Identify Controller (those of emulated NVMe controllers). */
export const PCI_VENDOR_ID = 0x1b36;
export const PCI_SUBSYSTEM_VENDOR_ID = 0x1af4;

/** BAR0 layout. */
export const Reg = {
  CAP_LO: 0x00,
  CAP_HI: 0x04,
  VS: 0x08,
  INTMS: 0x0c,
  INTMC: 0x10,
  CC: 0x14,
  CSTS: 0x1c,
  NSSR: 0x20,
  AQA: 0x24,
  ASQ_LO: 0x28,
  ASQ_HI: 0x2c,
  ACQ_LO: 0x30,
  ACQ_HI: 0x34,
} as const;
export const DOORBELL_BASE = 0x1000;
/** BAR0 is 8 KiB: registers, then doorbells for up to 65 queue pairs (DSTRD = 0). */
export const BAR0_BYTES = 0x2000;

export const AdminOpcode = {
  DELETE_IO_SQ: 0x00,
  CREATE_IO_SQ: 0x01,
  GET_LOG_PAGE: 0x02,
  DELETE_IO_CQ: 0x04,
  CREATE_IO_CQ: 0x05,
  IDENTIFY: 0x06,
  ABORT: 0x08,
  SET_FEATURES: 0x09,
  GET_FEATURES: 0x0a,
  ASYNC_EVENT_REQUEST: 0x0c,
} as const;

export const IoOpcode = {
  FLUSH: 0x00,
  WRITE: 0x01,
  READ: 0x02,
  WRITE_ZEROES: 0x08,
  DATASET_MANAGEMENT: 0x09,
} as const;

export const FeatureId = {
  ARBITRATION: 0x01,
  POWER_MANAGEMENT: 0x02,
  TEMPERATURE_THRESHOLD: 0x04,
  ERROR_RECOVERY: 0x05,
  VOLATILE_WRITE_CACHE: 0x06,
  NUMBER_OF_QUEUES: 0x07,
  INTERRUPT_COALESCING: 0x08,
  INTERRUPT_VECTOR_CONFIGURATION: 0x09,
  WRITE_ATOMICITY_NORMAL: 0x0a,
  ASYNC_EVENT_CONFIGURATION: 0x0b,
} as const;

/** The log pages this controller returns (capability-logs.ts lists them in Supported Log Pages). */
export const LogPageId = {
  SUPPORTED_LOG_PAGES: 0x00,
  ERROR_INFORMATION: 0x01,
  SMART_HEALTH: 0x02,
  FIRMWARE_SLOT: 0x03,
  COMMANDS_EFFECTS: 0x05,
  FEATURES_EFFECTS: 0x12,
} as const;

export const IdentifyCns = {
  NAMESPACE: 0x00,
  CONTROLLER: 0x01,
  ACTIVE_NAMESPACES: 0x02,
  NAMESPACE_DESCRIPTORS: 0x03,
} as const;

/** Asynchronous event types (CQE DW0 bits 2:0) and the error-status infos we raise. */
export const AsyncEventType = {
  ERROR_STATUS: 0x0,
} as const;
export const AsyncEventInfo = {
  INVALID_DOORBELL_REGISTER: 0x00,
  INVALID_DOORBELL_VALUE: 0x01,
} as const;

/** NSID meaning "all namespaces" (Flush, Get Log Page). */
export const NSID_BROADCAST = 0xffffffff;
