/**
 * NVMe completion status values, as the 15-bit Status Field of a CQE
 * (DW3 bits 31:17): SC in bits 7:0, SCT in bits 10:8, M in bit 13, DNR in bit 14.
 *
 * Errors that would fail the same way on a retry carry Do Not Retry, so
 * a host driver does not spin on a malformed command.
 */
const DNR = 1 << 14;
/** More: the Error Information log holds an entry for this command (set when the entry is made, not part of the Status values below). */
export const STATUS_MORE = 1 << 13;

const GENERIC = 0x0;
const COMMAND_SPECIFIC = 0x1;
const MEDIA = 0x2;

function status(sct: number, sc: number, doNotRetry: boolean): number {
  return (doNotRetry ? DNR : 0) | (sct << 8) | sc;
}

export const Status = {
  SUCCESS: 0,
  // Generic command status (SCT 0).
  INVALID_OPCODE: status(GENERIC, 0x01, true),
  INVALID_FIELD: status(GENERIC, 0x02, true),
  DATA_TRANSFER_ERROR: status(GENERIC, 0x04, true),
  INTERNAL_ERROR: status(GENERIC, 0x06, false),
  ABORT_REQUESTED: status(GENERIC, 0x07, false),
  ABORTED_SQ_DELETION: status(GENERIC, 0x08, false),
  INVALID_NAMESPACE: status(GENERIC, 0x0b, true),
  COMMAND_SEQUENCE_ERROR: status(GENERIC, 0x0c, true),
  INVALID_PRP_OFFSET: status(GENERIC, 0x13, true),
  LBA_OUT_OF_RANGE: status(GENERIC, 0x80, true),
  // Command specific status (SCT 1).
  COMPLETION_QUEUE_INVALID: status(COMMAND_SPECIFIC, 0x00, true),
  INVALID_QUEUE_ID: status(COMMAND_SPECIFIC, 0x01, true),
  INVALID_QUEUE_SIZE: status(COMMAND_SPECIFIC, 0x02, true),
  AER_LIMIT_EXCEEDED: status(COMMAND_SPECIFIC, 0x05, true),
  INVALID_INTERRUPT_VECTOR: status(COMMAND_SPECIFIC, 0x08, true),
  INVALID_LOG_PAGE: status(COMMAND_SPECIFIC, 0x09, true),
  INVALID_QUEUE_DELETION: status(COMMAND_SPECIFIC, 0x0c, true),
  FEATURE_NOT_SAVEABLE: status(COMMAND_SPECIFIC, 0x0d, true),
  // Media and data integrity errors (SCT 2): the backing file failed.
  WRITE_FAULT: status(MEDIA, 0x80, false),
  UNRECOVERED_READ_ERROR: status(MEDIA, 0x81, false),
} as const;

/** Status Code Type of a status value. */
export function statusCodeType(value: number): number {
  return (value >> 8) & 0x7;
}

/** Status Code of a status value. */
export function statusCode(value: number): number {
  return value & 0xff;
}

/**
 * Whether a failed command belongs in the Error Information log. Aborts are
 * the host's own doing and not errors of the command.
 */
export function isLoggedError(value: number): boolean {
  return value !== Status.SUCCESS && value !== Status.ABORT_REQUESTED && value !== Status.ABORTED_SQ_DELETION;
}

/** What a command produces: the status and CQE dword 0. */
export interface Completion {
  readonly status: number;
  readonly dw0: number;
}

export function completion(statusValue: number, dw0 = 0): Completion {
  return { status: statusValue, dw0 };
}

export const OK: Completion = Object.freeze({ status: Status.SUCCESS, dw0: 0 });
