/**
 * The controller's log data: SMART / Health counters and the Error
 * Information log, and their Get Log Page encodings. The SMART counters
 * are NVM-subsystem history, so they survive controller resets; both travel
 * with the state. Also the pages that only describe the controller (what it
 * supports, its firmware slot), made from the same tables the commands use.
 */
import { getU64, setU64, view } from './bytes.ts';
import { ERROR_LOG_ENTRIES } from './nvme-defs.ts';

export const SMART_LOG_BYTES = 512;
export const ERROR_ENTRY_BYTES = 64;

export interface SmartCounters {
  /** Bytes read and written by host commands, in 512-byte units (reported in thousands, rounded up). */
  unitsRead: number;
  unitsWritten: number;
  hostReadCommands: number;
  hostWriteCommands: number;
}

export interface ErrorLogEntry {
  /** Unique, increasing id of the error (Error Count). */
  readonly errorCount: number;
  readonly sqid: number;
  readonly cid: number;
  /** Status Field of the failed completion (15 bits). */
  readonly status: number;
  /** Byte and bit of the command field in error, 0xffff if not known. */
  readonly parameterErrorLocation: number;
  readonly lba: number;
  readonly nsid: number;
}

export function emptySmartCounters(): SmartCounters {
  return { unitsRead: 0, unitsWritten: 0, hostReadCommands: 0, hostWriteCommands: 0 };
}

export class ErrorLog {
  /** Newest first, at most ELPE+1 entries. */
  #entries: ErrorLogEntry[] = [];
  #errorCount = 0;

  get entries(): readonly ErrorLogEntry[] {
    return this.#entries;
  }

  /** Errors recorded over the log's life (SMART "Number of Error Information Log Entries"). */
  get errorCount(): number {
    return this.#errorCount;
  }

  record(entry: Omit<ErrorLogEntry, 'errorCount'>): void {
    this.#errorCount += 1;
    this.#entries.unshift({ ...entry, errorCount: this.#errorCount });
    if (this.#entries.length > ERROR_LOG_ENTRIES) this.#entries.length = ERROR_LOG_ENTRIES;
  }

  /** The entries go; the count of errors ever logged stays (SMART reports it). */
  clear(): void {
    this.#entries = [];
  }

  restore(entries: readonly ErrorLogEntry[], errorCount: number): void {
    this.#entries = [...entries];
    this.#errorCount = errorCount;
  }
}

/** The composite temperature the controller reports, in kelvin (40 C): a software device does not warm up. */
export const COMPOSITE_TEMPERATURE_K = 313;
/** SMART critical warning bit 1: a temperature is above an over-temperature threshold or below an under-temperature one. */
const TEMPERATURE_WARNING = 1 << 1;

export function smartLogPage(counters: SmartCounters, errorCount: number, thresholds: { readonly overTemperatureThreshold: number; readonly underTemperatureThreshold: number }): Uint8Array {
  const page = new Uint8Array(SMART_LOG_BYTES);
  const dv = view(page);
  const outOfRange = COMPOSITE_TEMPERATURE_K > thresholds.overTemperatureThreshold || COMPOSITE_TEMPERATURE_K < thresholds.underTemperatureThreshold;
  page[0] = outOfRange ? TEMPERATURE_WARNING : 0; // critical warning
  dv.setUint16(1, COMPOSITE_TEMPERATURE_K, true); // composite temperature
  page[3] = 100; // available spare, percent
  page[4] = 10; // available spare threshold
  page[5] = 0; // percentage used
  setU64(dv, 32, Math.ceil(counters.unitsRead / 1000));
  setU64(dv, 48, Math.ceil(counters.unitsWritten / 1000));
  setU64(dv, 64, counters.hostReadCommands);
  setU64(dv, 80, counters.hostWriteCommands);
  setU64(dv, 112, 1); // power cycles
  setU64(dv, 176, errorCount); // number of error information log entries
  return page;
}

export function errorLogPage(log: ErrorLog): Uint8Array {
  const page = new Uint8Array(ERROR_LOG_ENTRIES * ERROR_ENTRY_BYTES);
  log.entries.forEach((entry, i) => encodeErrorEntry(entry, page, i * ERROR_ENTRY_BYTES));
  return page;
}

/** The 64-byte Error Information Log Entry; the saved state reuses it. */
export function encodeErrorEntry(entry: ErrorLogEntry, bytes: Uint8Array, offset: number): void {
  const dv = view(bytes.subarray(offset, offset + ERROR_ENTRY_BYTES));
  setU64(dv, 0, entry.errorCount);
  dv.setUint16(8, entry.sqid, true);
  dv.setUint16(10, entry.cid, true);
  dv.setUint16(12, (entry.status << 1) & 0xffff, true); // bit 0 is the phase tag, not kept
  dv.setUint16(14, entry.parameterErrorLocation, true);
  setU64(dv, 16, entry.lba);
  dv.setUint32(24, entry.nsid, true);
}

export function decodeErrorEntry(bytes: Uint8Array, offset: number): ErrorLogEntry {
  const dv = view(bytes.subarray(offset, offset + ERROR_ENTRY_BYTES));
  return {
    errorCount: getU64(dv, 0),
    sqid: dv.getUint16(8, true),
    cid: dv.getUint16(10, true),
    status: dv.getUint16(12, true) >> 1,
    parameterErrorLocation: dv.getUint16(14, true),
    lba: getU64(dv, 16),
    nsid: dv.getUint32(24, true),
  };
}
