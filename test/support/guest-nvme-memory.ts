/**
 * The guest's own physical memory management: a page allocator over a
 * window of guest-physical addresses, and PRP construction for data
 * buffers. The allocator remembers every live region, because whatever the
 * driver placed in guest memory (queues, PRP lists, data buffers) is what
 * the VMM must copy to the destination during migration.
 */
import type { GuestMemoryRegion } from './host-port.ts';

export const PAGE_BYTES = 4096;

export interface GuestAllocation {
  readonly address: number;
  /** Rounded up to whole pages. */
  readonly length: number;
  readonly purpose: string;
}

export interface GuestMemoryWindow {
  /** First guest-physical address the driver may use; page aligned. */
  readonly base: number;
  readonly size: number;
}

export class GuestMemoryAllocator {
  readonly window: GuestMemoryWindow;
  #next: number;
  readonly #live = new Map<number, GuestAllocation>();
  /** Freed regions by page count: the driver reuses the same sizes over and over. */
  readonly #freeByPages = new Map<number, number[]>();

  constructor(window: GuestMemoryWindow) {
    if (window.base % PAGE_BYTES !== 0 || window.size % PAGE_BYTES !== 0 || window.size <= 0) {
      throw new RangeError('guest memory window must be page aligned and non-empty');
    }
    this.window = window;
    this.#next = window.base;
  }

  allocate(bytes: number, purpose: string): GuestAllocation {
    if (!Number.isInteger(bytes) || bytes <= 0) throw new RangeError(`cannot allocate ${bytes} bytes`);
    const pages = Math.ceil(bytes / PAGE_BYTES);
    let address = this.#freeByPages.get(pages)?.pop();
    if (address === undefined) {
      if (this.#next + pages * PAGE_BYTES > this.window.base + this.window.size) {
        throw new RangeError(`guest memory window exhausted allocating ${bytes} bytes for ${purpose}`);
      }
      address = this.#next;
      this.#next += pages * PAGE_BYTES;
    }
    const allocation = { address, length: pages * PAGE_BYTES, purpose };
    this.#live.set(address, allocation);
    return allocation;
  }

  free(address: number): void {
    const allocation = this.#live.get(address);
    if (allocation === undefined) throw new Error(`free of 0x${address.toString(16)}: not allocated`);
    this.#live.delete(address);
    const pages = allocation.length / PAGE_BYTES;
    const list = this.#freeByPages.get(pages) ?? [];
    list.push(address);
    this.#freeByPages.set(pages, list);
  }

  allocations(): readonly GuestAllocation[] {
    return [...this.#live.values()].sort((a, b) => a.address - b.address);
  }

  /** Live allocations with neighbours merged: the list a migration copies. */
  regions(): GuestMemoryRegion[] {
    const merged: { address: number; length: number }[] = [];
    for (const allocation of this.allocations()) {
      const last = merged.at(-1);
      if (last !== undefined && last.address + last.length === allocation.address) last.length += allocation.length;
      else merged.push({ address: allocation.address, length: allocation.length });
    }
    return merged;
  }
}

/** PRP entries for one command, and the PRP list pages to write before submitting it. */
export interface PrpPlan {
  readonly prp1: number;
  readonly prp2: number;
  readonly listPages: readonly GuestAllocation[];
  readonly listWrites: readonly { readonly address: number; readonly data: Uint8Array }[];
}

const ENTRIES_PER_LIST_PAGE = PAGE_BYTES / 8;

/**
 * PRP1/PRP2 for a buffer (NVMe Base 2.x, 4.3.1): PRP1 may carry a dword
 * aligned offset; every later entry is page aligned. Up to two pages fit in
 * PRP1/PRP2; beyond that PRP2 points at a PRP list, chained through the last
 * entry of each full list page.
 */
export function planPrps(buffer: { address: number; length: number }, allocator: GuestMemoryAllocator, purpose: string): PrpPlan {
  if (buffer.address % 4 !== 0) throw new RangeError(`data buffer 0x${buffer.address.toString(16)} is not dword aligned`);
  const offset = buffer.address % PAGE_BYTES;
  const firstBytes = Math.min(buffer.length, PAGE_BYTES - offset);
  const laterPages: number[] = [];
  const firstPage = buffer.address - offset;
  for (let covered = firstBytes, page = 1; covered < buffer.length; covered += PAGE_BYTES, page++) {
    laterPages.push(firstPage + page * PAGE_BYTES);
  }
  if (laterPages.length === 0) return { prp1: buffer.address, prp2: 0, listPages: [], listWrites: [] };
  if (laterPages.length === 1) return { prp1: buffer.address, prp2: laterPages[0] ?? 0, listPages: [], listWrites: [] };

  // Each list page holds 512 entries, or 511 and a pointer to the next page.
  const listPageCount = laterPages.length <= ENTRIES_PER_LIST_PAGE ? 1 : Math.ceil((laterPages.length - 1) / (ENTRIES_PER_LIST_PAGE - 1));
  const listPages = Array.from({ length: listPageCount }, () => allocator.allocate(PAGE_BYTES, `${purpose} PRP list`));
  const listWrites: { address: number; data: Uint8Array }[] = [];
  let next = 0;
  listPages.forEach((listPage, index) => {
    const isLast = index === listPages.length - 1;
    const count = isLast ? laterPages.length - next : ENTRIES_PER_LIST_PAGE - 1;
    const data = new Uint8Array((isLast ? count : ENTRIES_PER_LIST_PAGE) * 8);
    const view = new DataView(data.buffer);
    for (let entry = 0; entry < count; entry++) view.setBigUint64(entry * 8, BigInt(laterPages[next + entry] ?? 0), true);
    if (!isLast) view.setBigUint64(count * 8, BigInt(listPages[index + 1]?.address ?? 0), true);
    next += count;
    listWrites.push({ address: listPage.address, data });
  });
  return { prp1: buffer.address, prp2: listPages[0]?.address ?? 0, listPages, listWrites };
}
