/**
 * The log pages that describe the controller rather than its history, which
 * the NVMe Base specification makes mandatory for a controller reporting a
 * version after 1.4 (Firmware Slot Information for every controller):
 * Supported Log Pages (00h), Firmware Slot Information (03h), Commands
 * Supported and Effects (05h) and Feature Identifiers Supported and Effects
 * (12h). Each is made from the tables the controller itself dispatches on,
 * so a page cannot claim a command, log or feature the controller lacks.
 */
import { putAsciiPadded, view } from './bytes.ts';
import { AdminOpcode, IoOpcode, LogPageId } from './nvme-defs.ts';

export const SUPPORTED_LOG_PAGES_BYTES = 1024;
export const FIRMWARE_SLOT_LOG_BYTES = 512;
export const COMMANDS_EFFECTS_LOG_BYTES = 4096;
export const FEATURES_EFFECTS_LOG_BYTES = 1024;

/** Supported Log Pages entry: LSUPP. */
const LOG_SUPPORTED = 1 << 0;
/** Commands Supported and Effects entry: CSUPP, and LBCC for commands that change logical block content. */
const COMMAND_SUPPORTED = 1 << 0;
const LOGICAL_BLOCK_CONTENT_CHANGE = 1 << 1;
/** Feature Identifiers Supported and Effects entry: FSUPP, and FSP's controller scope (bit 21). */
const FEATURE_SUPPORTED = 1 << 0;
const CONTROLLER_SCOPE = 1 << 21;

/** Every log page this controller returns. */
export const SUPPORTED_LOG_PAGES: readonly number[] = Object.values(LogPageId);

const WRITES_BLOCKS: ReadonlySet<number> = new Set([IoOpcode.WRITE, IoOpcode.WRITE_ZEROES, IoOpcode.DATASET_MANAGEMENT]);

export function supportedLogPagesPage(): Uint8Array {
  return entries(SUPPORTED_LOG_PAGES_BYTES, SUPPORTED_LOG_PAGES.map((lid) => [lid, LOG_SUPPORTED]));
}

/** One read-only slot (Identify's FRMW says so), active, holding `revision`. */
export function firmwareSlotPage(revision: string): Uint8Array {
  const page = new Uint8Array(FIRMWARE_SLOT_LOG_BYTES);
  page[0] = 1; // AFI: slot 1 is active; no slot is named for the next reset
  putAsciiPadded(page, 8, 8, revision); // FRS1
  return page;
}

export function commandsEffectsPage(): Uint8Array {
  const admin = Object.values(AdminOpcode).map((opcode): [number, number] => [opcode, COMMAND_SUPPORTED]);
  const io = Object.values(IoOpcode).map((opcode): [number, number] => [256 + opcode, COMMAND_SUPPORTED | (WRITES_BLOCKS.has(opcode) ? LOGICAL_BLOCK_CONTENT_CHANGE : 0)]);
  return entries(COMMANDS_EFFECTS_LOG_BYTES, [...admin, ...io]);
}

export function featuresEffectsPage(supported: readonly number[]): Uint8Array {
  return entries(FEATURES_EFFECTS_LOG_BYTES, supported.map((fid) => [fid, FEATURE_SUPPORTED | CONTROLLER_SCOPE]));
}

/** A page of 4-byte entries, entry `index` at byte 4 × index. */
function entries(bytes: number, values: readonly (readonly [number, number])[]): Uint8Array {
  const page = new Uint8Array(bytes);
  const dv = view(page);
  for (const [index, value] of values) dv.setUint32(index * 4, value >>> 0, true);
  return page;
}
