/**
 * Domain faults raised by the migration core. Each name is a stable string
 * that callers see as `error.data.code`; the RPC layer's error catalogue
 * gives each one its JSON-RPC code and message.
 */
export type FaultName =
  | 'VF_UNKNOWN'
  | 'ILLEGAL_TRANSITION'
  | 'VF_BUSY'
  | 'QUIESCE_TIMEOUT'
  | 'NO_SAVE_STREAM'
  | 'STREAM_OFFSET'
  | 'STATE_CORRUPT'
  | 'STATE_INCOMPATIBLE'
  | 'DEVICE_ACCESS'
  | 'FEATURE_DISABLED'
  | 'DRIVER_FAILURE'
  | 'NOT_SESSION_OWNER'
  | 'SESSION_UNKNOWN'
  | 'NO_MIGRATION'
  | 'DEVICE_UNREACHABLE';

/** Facts a caller needs to act on a fault (current state, expected offset, ...). */
export type FaultDetails = Record<string, string | number | boolean | null | string[]>;

export class Fault extends Error {
  readonly fault: FaultName;
  readonly details: FaultDetails;
  constructor(fault: FaultName, message: string, details: FaultDetails = {}, options?: ErrorOptions) {
    super(message, options);
    this.name = 'Fault';
    this.fault = fault;
    this.details = details;
  }
}
