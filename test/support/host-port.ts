/**
 * The guest's view of a VF: BAR0 registers, the guest RAM the VF DMAs into,
 * and the interrupts it raised. A guest driver in a VM sees exactly this
 * through MMIO and its own memory; the tests reach it either in-process
 * (the driver's synchronous `HostPort`) or over the agent's `emu.*` JSON-RPC
 * methods, so every call is async.
 */
import type { HostPort } from '../../vendor-drivers/driver.ts';

export interface GuestHostPort {
  mmioRead32(offset: number): Promise<number>;
  mmioWrite32(offset: number, value: number): Promise<void>;
  memRead(address: number, length: number): Promise<Uint8Array>;
  memWrite(address: number, data: Uint8Array): Promise<void>;
  interruptCounts(): Promise<readonly number[]>;
}

export interface GuestMemoryRegion {
  readonly address: number;
  readonly length: number;
}

/** Wraps a driver's in-process host port. Copies data in both directions so
 * the guest never aliases device-owned buffers (as it could not on real HW). */
export function inProcessHostPort(port: HostPort): GuestHostPort {
  return {
    mmioRead32: async (offset) => port.mmioRead32(offset) >>> 0,
    mmioWrite32: async (offset, value) => port.mmioWrite32(offset, value >>> 0),
    memRead: async (address, length) => Uint8Array.from(port.memRead(address, length)),
    memWrite: async (address, data) => port.memWrite(address, Uint8Array.from(data)),
    interruptCounts: async () => [...port.interruptCounts()],
  };
}

export type RpcCall = (method: string, params: object) => Promise<unknown>;

/** The same port over the agent's `emu.*` methods. Results are checked,
 * because a malformed answer must fail loudly rather than turn into a
 * silently wrong register value or a short DMA buffer. */
export function rpcHostPort(call: RpcCall, vf: string): GuestHostPort {
  async function invoke(method: string, params: object): Promise<Record<string, unknown>> {
    const result = await call(method, params);
    if (typeof result !== 'object' || result === null || Array.isArray(result)) {
      throw new HostPortProtocolError(method, `expected an object result, got ${describe(result)}`);
    }
    return result as Record<string, unknown>;
  }

  return {
    async mmioRead32(offset) {
      const result = await invoke('emu.mmioRead', { vf, offset });
      const value = result['value'];
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0xffff_ffff) {
        throw new HostPortProtocolError('emu.mmioRead', `result.value must be an integer in [0, 2^32), got ${describe(value)}`);
      }
      return value;
    },
    async mmioWrite32(offset, value) {
      await invoke('emu.mmioWrite', { vf, offset, value: value >>> 0 });
    },
    async memRead(address, length) {
      const result = await invoke('emu.memRead', { vf, address, length });
      const data = result['data'];
      if (typeof data !== 'string' || !BASE64.test(data)) {
        throw new HostPortProtocolError('emu.memRead', `result.data must be a base64 string, got ${describe(data)}`);
      }
      const bytes = new Uint8Array(Buffer.from(data, 'base64'));
      if (bytes.length !== length) {
        throw new HostPortProtocolError('emu.memRead', `asked for ${length} bytes at 0x${address.toString(16)}, got ${bytes.length}`);
      }
      return bytes;
    },
    async memWrite(address, data) {
      await invoke('emu.memWrite', { vf, address, data: Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64') });
    },
    async interruptCounts() {
      const result = await invoke('emu.interrupts', { vf });
      const counts = result['counts'];
      if (!Array.isArray(counts) || !counts.every((c) => typeof c === 'number' && Number.isInteger(c) && c >= 0)) {
        throw new HostPortProtocolError('emu.interrupts', `result.counts must be an array of non-negative integers, got ${describe(counts)}`);
      }
      return counts as number[];
    },
  };
}

export class HostPortProtocolError extends Error {
  readonly method: string;
  constructor(method: string, message: string) {
    super(`${method}: malformed result: ${message}`);
    this.name = 'HostPortProtocolError';
    this.method = method;
  }
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const COPY_CHUNK_BYTES = 1 << 20;

export interface MemoryCopyStats {
  readonly bytes: number;
  readonly chunks: number;
}

/**
 * What the VMM does with guest RAM during migration: copy every region the
 * guest uses from the source to the destination, at most 1 MiB per transfer
 * so no single RPC carries an unbounded payload.
 */
export async function copyGuestMemory(
  from: GuestHostPort,
  to: GuestHostPort,
  regions: readonly GuestMemoryRegion[],
): Promise<MemoryCopyStats> {
  let bytes = 0;
  let chunks = 0;
  for (const region of regions) {
    for (let done = 0; done < region.length; done += COPY_CHUNK_BYTES) {
      const length = Math.min(COPY_CHUNK_BYTES, region.length - done);
      const data = await from.memRead(region.address + done, length);
      await to.memWrite(region.address + done, data);
      bytes += length;
      chunks += 1;
    }
  }
  return { bytes, chunks };
}

function describe(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) return String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
