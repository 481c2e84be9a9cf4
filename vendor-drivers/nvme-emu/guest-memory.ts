/**
 * The guest RAM a VF DMAs into: sparse 4 KiB pages, allocated on first
 * write, so a test can use addresses anywhere below 2^52 at no cost.
 * Unwritten bytes read as zero. Guest memory is not device state: it never
 * goes into the saved payload (a VMM moves RAM itself).
 *
 * It models the host's RAM as the VF reaches it over the PCIe link, so
 * nothing the device does frees it: not a controller reset, not a function
 * level reset (an FLR resets the function, not the host's memory; a guest
 * driver finds its buffers where it left them). What bounds it instead is a
 * cap on the pages backed, `maxGuestMemoryBytes`: a write that would need
 * more pages than that is refused whole, with nothing written, whether it
 * comes from the host port or from the VF's own DMA.
 */
import { PAGE_SIZE } from './nvme-defs.ts';

/** Highest guest physical address + 1 (52-bit physical addresses). */
export const GUEST_ADDRESS_LIMIT = 2 ** 52;

/** A write that needs more pages than the memory may back; nothing of it was written. */
export class GuestMemoryFullError extends RangeError {
  constructor(address: number, length: number, newPages: number, backedPages: number, maxPages: number) {
    super(
      `guest memory write of ${length} bytes at 0x${address.toString(16)} needs ${newPages} new 4 KiB pages; ` +
      `${backedPages} of the ${maxPages} this VF may back (maxGuestMemoryBytes ${maxPages * PAGE_SIZE}) are in use`,
    );
    this.name = 'GuestMemoryFullError';
  }
}

export class GuestMemory {
  readonly #pages = new Map<number, Uint8Array>();
  readonly #maxPages: number;

  /** `maxBytes` is rounded down to whole pages. */
  constructor(maxBytes: number) {
    this.#maxPages = Math.floor(maxBytes / PAGE_SIZE);
  }

  /** Whether [address, address + length) is a valid guest range. */
  static isValidRange(address: number, length: number): boolean {
    return (
      Number.isSafeInteger(address) &&
      Number.isSafeInteger(length) &&
      address >= 0 &&
      length >= 0 &&
      address + length <= GUEST_ADDRESS_LIMIT
    );
  }

  /** Bytes of the pages written so far. */
  get backedBytes(): number {
    return this.#pages.size * PAGE_SIZE;
  }

  /** Whether writing all of `ranges` would stay within the cap (a DMA is checked whole before any of it lands). */
  fits(ranges: readonly { readonly address: number; readonly length: number }[]): boolean {
    const fresh = new Set<number>();
    for (const range of ranges) this.#forEachUnbackedPage(range.address, range.length, (index) => fresh.add(index));
    return this.#pages.size + fresh.size <= this.#maxPages;
  }

  read(address: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    this.readInto(address, out);
    return out;
  }

  readInto(address: number, out: Uint8Array): void {
    let done = 0;
    while (done < out.length) {
      const at = address + done;
      const offset = at % PAGE_SIZE;
      const chunk = Math.min(PAGE_SIZE - offset, out.length - done);
      const page = this.#pages.get(Math.floor(at / PAGE_SIZE));
      if (page) out.set(page.subarray(offset, offset + chunk), done);
      else out.fill(0, done, done + chunk);
      done += chunk;
    }
  }

  /** Throws GuestMemoryFullError, having written nothing, if the write needs pages beyond the cap. */
  write(address: number, data: Uint8Array): void {
    this.#reserve(address, data.length);
    let done = 0;
    while (done < data.length) {
      const at = address + done;
      const offset = at % PAGE_SIZE;
      const chunk = Math.min(PAGE_SIZE - offset, data.length - done);
      const index = Math.floor(at / PAGE_SIZE);
      let page = this.#pages.get(index);
      if (!page) {
        page = new Uint8Array(PAGE_SIZE);
        this.#pages.set(index, page);
      }
      page.set(data.subarray(done, done + chunk), offset);
      done += chunk;
    }
  }

  /** A little-endian 64-bit value (PRP entries); values of 2^53 and above lose precision but are out of range anyway. */
  readU64(address: number): number {
    const bytes = this.read(address, 8);
    const view = new DataView(bytes.buffer);
    return view.getUint32(4, true) * 2 ** 32 + view.getUint32(0, true);
  }

  #reserve(address: number, length: number): void {
    if (length === 0) return;
    const spanned = Math.floor((address + length - 1) / PAGE_SIZE) - Math.floor(address / PAGE_SIZE) + 1;
    // The usual case, well within the cap, costs no page lookups.
    if (this.#pages.size + spanned <= this.#maxPages) return;
    let fresh = 0;
    this.#forEachUnbackedPage(address, length, () => { fresh += 1; });
    if (this.#pages.size + fresh > this.#maxPages) throw new GuestMemoryFullError(address, length, fresh, this.#pages.size, this.#maxPages);
  }

  #forEachUnbackedPage(address: number, length: number, visit: (index: number) => void): void {
    if (length === 0) return;
    const last = Math.floor((address + length - 1) / PAGE_SIZE);
    for (let index = Math.floor(address / PAGE_SIZE); index <= last; index += 1) {
      if (!this.#pages.has(index)) visit(index);
    }
  }
}
