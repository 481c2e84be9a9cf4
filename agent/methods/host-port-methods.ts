/**
 * emu.*: the host side of a software VF's PCIe link, so a guest driver can
 * use the VF over the network. These calls bypass the VF's serial queue on
 * purpose: a guest keeps ringing doorbells while a quiesce is in progress,
 * as it would on real hardware.
 */
import type { HostPort } from '../../vendor-drivers/driver.ts';
import { DriverError } from '../../vendor-drivers/driver.ts';
import { Fault } from '../core/faults.ts';
import type { MigrationCore } from '../core/migration-core.ts';
import { decodeBase64, markBase64, type MethodHandlers } from './method-table.ts';

type HostPortHandlers = Pick<MethodHandlers, 'emu.mmioRead' | 'emu.mmioWrite' | 'emu.memRead' | 'emu.memWrite' | 'emu.interrupts'>;

export function hostPortHandlers(core: MigrationCore): HostPortHandlers {
  const portOf = (ref: string): HostPort => {
    const machine = core.lookup(ref);
    const port = machine.driver.hostPort(machine.vf.id);
    if (port === undefined) {
      throw new Fault('FEATURE_DISABLED', `VF ${machine.vf.id} has no host port (driver ${machine.driver.name}; set hostPort in its options)`);
    }
    return port;
  };
  return {
    'emu.mmioRead': async ({ vf, offset }) => ({ value: access(() => portOf(vf).mmioRead32(offset)) }),
    'emu.mmioWrite': async ({ vf, offset, value }) => {
      access(() => portOf(vf).mmioWrite32(offset, value));
      return {};
    },
    'emu.memRead': async ({ vf, address, length }) => {
      const bytes = access(() => portOf(vf).memRead(address, length));
      return markBase64({ data: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64') }, 'data');
    },
    'emu.memWrite': async ({ vf, address, data }) => {
      const bytes = decodeBase64(data, '/data');
      access(() => portOf(vf).memWrite(address, bytes));
      return {};
    },
    'emu.interrupts': async ({ vf }) => ({ counts: [...portOf(vf).interruptCounts()] }),
  };
}

/** A refused access is the caller's fault, not a driver failure. */
function access<T>(operation: () => T): T {
  try {
    return operation();
  } catch (error) {
    if (error instanceof DriverError && error.kind === 'invalid-access') throw new Fault('DEVICE_ACCESS', error.message);
    throw error;
  }
}
