/**
 * Physical Region Page walking (memory page size 4 KiB): turns PRP1/PRP2 of
 * a command into the guest ranges its data buffer occupies.
 *
 * PRP1 may start anywhere dword-aligned in a page. If the rest fits in one
 * page, PRP2 is that page. Otherwise PRP2 points to a PRP list; the last
 * entry of each list page points to the next list page when more entries
 * follow (list chaining). Every entry after PRP1 must be page-aligned.
 */
import { GuestMemory } from './guest-memory.ts';
import { PAGE_SIZE } from './nvme-defs.ts';
import { Status } from './nvme-status.ts';

export interface GuestRange {
  readonly address: number;
  readonly length: number;
}

export type PrpPlan = { readonly ok: true; readonly ranges: readonly GuestRange[] } | { readonly ok: false; readonly status: number };

const ENTRY_BYTES = 8;

export function planPrpTransfer(memory: GuestMemory, prp1: number, prp2: number, length: number): PrpPlan {
  const ranges: GuestRange[] = [];
  if (length === 0) return { ok: true, ranges };
  if (prp1 % 4 !== 0) return fail(Status.INVALID_PRP_OFFSET);
  const first = Math.min(length, PAGE_SIZE - (prp1 % PAGE_SIZE));
  if (!push(ranges, prp1, first)) return fail(Status.DATA_TRANSFER_ERROR);
  let remaining = length - first;
  if (remaining === 0) return { ok: true, ranges };
  if (remaining <= PAGE_SIZE) {
    if (prp2 % PAGE_SIZE !== 0) return fail(Status.INVALID_PRP_OFFSET);
    if (!push(ranges, prp2, remaining)) return fail(Status.DATA_TRANSFER_ERROR);
    return { ok: true, ranges };
  }
  let listPointer = prp2;
  if (listPointer % ENTRY_BYTES !== 0) return fail(Status.INVALID_PRP_OFFSET);
  // Each chain hop must be followed by a data entry, so a list that chains
  // more often than it has entries loops back on itself.
  let hopsLeft = Math.ceil(remaining / PAGE_SIZE);
  while (remaining > 0) {
    if (!GuestMemory.isValidRange(listPointer, ENTRY_BYTES)) return fail(Status.DATA_TRANSFER_ERROR);
    const lastSlotOfPage = listPointer % PAGE_SIZE === PAGE_SIZE - ENTRY_BYTES;
    if (lastSlotOfPage && remaining > PAGE_SIZE) {
      // More than one entry still needed: this slot chains to the next list page.
      if (hopsLeft-- === 0) return fail(Status.INVALID_FIELD);
      listPointer = memory.readU64(listPointer);
      if (listPointer % ENTRY_BYTES !== 0) return fail(Status.INVALID_PRP_OFFSET);
      continue;
    }
    const entry = memory.readU64(listPointer);
    listPointer += ENTRY_BYTES;
    if (entry % PAGE_SIZE !== 0) return fail(Status.INVALID_PRP_OFFSET);
    const chunk = Math.min(remaining, PAGE_SIZE);
    if (!push(ranges, entry, chunk)) return fail(Status.DATA_TRANSFER_ERROR);
    remaining -= chunk;
  }
  return { ok: true, ranges };
}

/** Device reads the data buffer from guest memory (a Write's payload). */
export function gatherFromGuest(memory: GuestMemory, ranges: readonly GuestRange[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let at = 0;
  for (const range of ranges) {
    memory.readInto(range.address, out.subarray(at, at + range.length));
    at += range.length;
  }
  return out;
}

/**
 * Device writes the data buffer into guest memory (a Read's or Identify's
 * result). False, with nothing written, when the guest memory cannot back
 * it (see GuestMemory): the command then ends with a data transfer error,
 * as a DMA that fails does.
 */
export function scatterToGuest(memory: GuestMemory, ranges: readonly GuestRange[], data: Uint8Array): boolean {
  if (!memory.fits(ranges)) return false;
  let at = 0;
  for (const range of ranges) {
    if (at >= data.length) break;
    memory.write(range.address, data.subarray(at, Math.min(at + range.length, data.length)));
    at += range.length;
  }
  return true;
}

/** Appends a range, merging it with the previous one when contiguous; false if outside guest memory. */
function push(ranges: GuestRange[], address: number, length: number): boolean {
  if (!GuestMemory.isValidRange(address, length)) return false;
  const last = ranges.at(-1);
  if (last && last.address + last.length === address) ranges[ranges.length - 1] = { address: last.address, length: last.length + length };
  else ranges.push({ address, length });
  return true;
}

function fail(status: number): PrpPlan {
  return { ok: false, status };
}
