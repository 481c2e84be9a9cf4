/**
 * Every error the agent puts on the wire: a JSON-RPC code, the message
 * (the specification's own for its codes), and a stable name that travels
 * as `error.data.code`. The README table, the `errorData` schema and the
 * OpenRPC document are checked against this list by a test.
 *
 * Bands:
 *   -32700, -32600..-32603  JSON-RPC 2.0 protocol errors
 *   -32000..-32099          server errors: limits of this implementation
 *   -33000..-33099          application errors: access refusals and domain faults of a VF
 */
import type { FaultName } from '../core/faults.ts';

export interface CatalogueEntry {
  readonly code: number;
  readonly message: string;
  /** When a caller sees it, for the docs. */
  readonly meaning: string;
}

export type ProtocolErrorName =
  | 'PARSE_ERROR'
  | 'INVALID_REQUEST'
  | 'METHOD_NOT_FOUND'
  | 'INVALID_PARAMS'
  | 'INTERNAL_ERROR'
  | 'MESSAGE_TOO_LARGE'
  | 'BATCH_TOO_LARGE'
  | 'TOO_MANY_CONNECTIONS';

/** Refusals of who calls, as opposed to what is asked. */
export type AccessErrorName = 'UNAUTHORIZED';

export type ErrorName = ProtocolErrorName | AccessErrorName | FaultName;

export const ERROR_CATALOGUE: Readonly<Record<ErrorName, CatalogueEntry>> = {
  PARSE_ERROR: { code: -32700, message: 'Parse error', meaning: 'The message is not valid JSON.' },
  INVALID_REQUEST: { code: -32600, message: 'Invalid Request', meaning: 'The JSON is not a valid JSON-RPC 2.0 request object (or a batch entry is not).' },
  METHOD_NOT_FOUND: { code: -32601, message: 'Method not found', meaning: 'No method of that name.' },
  INVALID_PARAMS: { code: -32602, message: 'Invalid params', meaning: 'Params do not match the method\'s schema; `data.errors` lists each failing path and why.' },
  INTERNAL_ERROR: { code: -32603, message: 'Internal error', meaning: 'A bug in the agent; the log has the details.' },
  MESSAGE_TOO_LARGE: { code: -32001, message: 'Message too large', meaning: 'A message exceeded `limits.maxMessageBytes`; the agent closes the connection after this error.' },
  BATCH_TOO_LARGE: { code: -32002, message: 'Batch too large', meaning: 'A batch has more than `limits.maxBatchLength` entries; none of them ran.' },
  TOO_MANY_CONNECTIONS: { code: -32004, message: 'Too many connections', meaning: 'The agent already serves `limits.maxConnections` connections; it closes this one after the error.' },
  VF_UNKNOWN: { code: -33001, message: 'Unknown VF', meaning: 'No VF has that id or BDF.' },
  ILLEGAL_TRANSITION: { code: -33002, message: 'Illegal state transition', meaning: 'The VFIO v2 state machine refuses the request from the VF\'s current state (blocked arc, unsupported state, ERROR).' },
  VF_BUSY: { code: -33003, message: 'VF busy', meaning: 'Too many calls are already queued for this VF.' },
  QUIESCE_TIMEOUT: { code: -33004, message: 'Quiesce timed out', meaning: 'In-flight commands did not complete within `timeoutMs`; the VF was returned to the state it had.' },
  NO_SAVE_STREAM: { code: -33005, message: 'No save stream', meaning: '`vf.save` on a VF that is neither STOP nor STOP_COPY.' },
  STREAM_OFFSET: { code: -33006, message: 'Stream offset mismatch', meaning: 'A slice does not continue the stream; `data.expected` is the offset that does.' },
  STATE_CORRUPT: { code: -33007, message: 'Corrupt device state', meaning: 'The loaded state is truncated, overlong, fails its CRC32C or does not parse; nothing was applied.' },
  STATE_INCOMPATIBLE: { code: -33008, message: 'Incompatible device state', meaning: 'The state is of another format, device model or identity than the destination VF; nothing was applied.' },
  DEVICE_ACCESS: { code: -33009, message: 'Invalid device access', meaning: 'A host-port access outside the device\'s registers or memory, or misaligned.' },
  FEATURE_DISABLED: { code: -33010, message: 'Feature not enabled', meaning: 'The VF\'s driver does not offer this feature, or the config leaves it off (e.g. the host port).' },
  DRIVER_FAILURE: { code: -33011, message: 'Driver failure', meaning: 'The vendor driver failed unexpectedly; the VF is in ERROR and needs `vf.reset`.' },
  UNAUTHORIZED: { code: -33012, message: 'Unauthorized', meaning: 'The caller\'s principal is not granted the method\'s permission (`data.permission`) on that VF; whether the VF exists is not said.' },
  NOT_SESSION_OWNER: { code: -33013, message: 'Migration owned by another principal', meaning: 'The VF is in a migration another principal began (its first step away from RUNNING); only that principal, or one granted `admin`, may change it until it runs again.' },
  SESSION_UNKNOWN: { code: -33014, message: 'Unknown migration session', meaning: 'The call names a save or resume session the VF does not have open: it ended, or the agent restarted. `data.session` is the one open, if any; nothing was changed.' },
  NO_MIGRATION: { code: -33015, message: 'No migration in progress', meaning: 'The VF is in no migration whose lease can be renewed: it runs, it is in ERROR, or its lease has ended (`data.stranded` says whether it is stranded). Nothing was changed.' },
  DEVICE_UNREACHABLE: { code: -33016, message: 'Device unreachable', meaning: 'The VF\'s device (its firmware, or nvme-emu\'s device process) did not answer in time; the call changed nothing the agent knows of, and `agent.health` says so. Retry once the device answers.' },
};

export const ERROR_NAMES = Object.keys(ERROR_CATALOGUE) as ErrorName[];

/** A JSON-RPC error object as it goes on the wire. */
export interface WireError {
  code: number;
  message: string;
  data: { code: ErrorName; detail: string; [key: string]: unknown };
}

export function wireError(name: ErrorName, detail: string, extra: Record<string, unknown> = {}): WireError {
  const entry = ERROR_CATALOGUE[name];
  return { code: entry.code, message: entry.message, data: { ...extra, code: name, detail } };
}

/** A complete error response, for refusals made outside method dispatch. */
export function errorResponse(id: string | number | null, name: ErrorName, detail: string, extra?: Record<string, unknown>): string {
  return JSON.stringify({ jsonrpc: '2.0', error: wireError(name, detail, extra), id });
}
