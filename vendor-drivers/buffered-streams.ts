/**
 * Save and load streams for a driver whose whole device state is one
 * buffer it can capture at once (a few kilobytes of controller state, or a
 * software device's memory): the helpers a vendor reaches for before its
 * device streams its state for real.
 */
import { DriverError, type DeviceLoadStream, type DeviceSaveStream, type PrecopyInfo } from './driver.ts';

/** Hands out `bytes` in order, without copying: they must not change again (the VF is stopped, and a new state is a new buffer). */
export function bufferedSaveStream(bytes: Uint8Array): DeviceSaveStream {
  let at = 0;
  let open = true;
  return {
    async read(maxBytes: number): Promise<Uint8Array> {
      if (!open) throw new DriverError('driver-failure', 'read from a closed save stream');
      const end = Math.min(bytes.length, at + maxBytes);
      const slice = bytes.subarray(at, end);
      at = end;
      return slice;
    },
    stopCopyBytes: async () => bytes.length - at,
    async precopyInfo(): Promise<PrecopyInfo> {
      throw new DriverError('driver-failure', 'this save was opened with the VF stopped: there is no pre-copy information');
    },
    close(): void {
      open = false;
    },
  };
}

/**
 * Gathers the data of a resume, at most `maxBytes` of it, and hands it
 * whole to `apply` at commit, which validates it before touching the VF.
 */
export function bufferedLoadStream(maxBytes: number, apply: (bytes: Buffer) => Promise<void>): DeviceLoadStream {
  const pieces: Buffer[] = [];
  let received = 0;
  let open = true;
  return {
    async write(bytes: Uint8Array): Promise<void> {
      if (!open) throw new DriverError('driver-failure', 'write to a closed resume stream');
      if (received + bytes.length > maxBytes) {
        throw new DriverError('corrupt-state', `the state is longer than the ${maxBytes} bytes this device's state can be`);
      }
      pieces.push(Buffer.from(bytes));
      received += bytes.length;
    },
    async commit(): Promise<void> {
      if (!open) throw new DriverError('driver-failure', 'commit of a closed resume stream');
      open = false;
      await apply(Buffer.concat(pieces, received));
    },
    abort(): void {
      open = false;
      pieces.length = 0;
    },
  };
}
