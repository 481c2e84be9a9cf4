/**
 * The guest RAM a VF DMAs into: sparse 4 KiB pages, allocated on first
 * write, so a test can use addresses anywhere below 2^52 at no cost.
 * Unwritten bytes read as zero. Guest memory is not device state: it never
 * goes into the saved payload (a VMM moves RAM itself).
 */
import { PAGE_SIZE } from './nvme-defs.ts';

/** Highest guest physical address + 1 (52-bit physical addresses). */
export const GUEST_ADDRESS_LIMIT = 2 ** 52;

export class GuestMemory {
  readonly #pages = new Map<number, Uint8Array>();

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

  write(address: number, data: Uint8Array): void {
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
}
