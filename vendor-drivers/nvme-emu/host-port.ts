/**
 * The host side of a VF's PCIe link, as a guest driver sees it: 32-bit BAR0
 * accesses, guest RAM, and interrupt counts. Anything a real PCIe link would
 * not carry (unaligned or odd-sized accesses, addresses outside BAR0 or
 * beyond 52 bits), and a memory write beyond the VF's guest memory cap, is
 * refused with `invalid-access`.
 */
import { DriverError, type HostPort } from '../driver.ts';
import type { NvmeController } from './controller.ts';
import { GuestMemory, GuestMemoryFullError } from './guest-memory.ts';
import { BAR0_BYTES } from './nvme-defs.ts';

/** Largest single guest-memory access through the port (a bound on one allocation). */
export const MAX_HOST_ACCESS_BYTES = 64 * 1024 * 1024;

export function createHostPort(controller: NvmeController): HostPort {
  return {
    mmioRead32(offset: number): number {
      checkBarOffset(offset);
      return controller.mmioRead32(offset) >>> 0;
    },
    mmioWrite32(offset: number, value: number): void {
      checkBarOffset(offset);
      if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
        throw new DriverError('invalid-access', `BAR0 write of ${value} at 0x${offset.toString(16)}: not a 32-bit unsigned value`);
      }
      controller.mmioWrite32(offset, value);
    },
    memRead(address: number, length: number): Uint8Array {
      checkGuestRange(address, length);
      return controller.memory.read(address, length);
    },
    memWrite(address: number, data: Uint8Array): void {
      if (!(data instanceof Uint8Array)) throw new DriverError('invalid-access', 'guest memory write data is not bytes');
      checkGuestRange(address, data.length);
      try {
        controller.memory.write(address, data);
      } catch (error) {
        if (error instanceof GuestMemoryFullError) throw new DriverError('invalid-access', error.message, { cause: error });
        throw error;
      }
    },
    interruptCounts(): readonly number[] {
      return controller.core.interrupts.counts();
    },
  };
}

function checkBarOffset(offset: number): void {
  if (!Number.isInteger(offset) || offset < 0 || offset + 4 > BAR0_BYTES || offset % 4 !== 0) {
    throw new DriverError('invalid-access', `BAR0 offset ${offset}: accesses are 32-bit and 4-byte aligned within 0x0..0x${(BAR0_BYTES - 1).toString(16)}`);
  }
}

function checkGuestRange(address: number, length: number): void {
  if (!GuestMemory.isValidRange(address, length)) {
    throw new DriverError('invalid-access', `guest memory range ${address}+${length} is outside 0..2^52`);
  }
  if (length > MAX_HOST_ACCESS_BYTES) {
    throw new DriverError('invalid-access', `guest memory access of ${length} bytes exceeds ${MAX_HOST_ACCESS_BYTES} per call`);
  }
}
