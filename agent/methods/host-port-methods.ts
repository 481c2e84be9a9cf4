/**
 * emu.*: the host side of a software VF's PCIe link, so a guest driver can
 * use the VF over the network. These calls bypass the VF's serial queue on
 * purpose: a guest keeps ringing doorbells while a quiesce is in progress,
 * as it would on real hardware.
 */
import type { MigrationCore } from '../core/migration-core.ts';
import { markBase64 } from '../rpc/base64-fields.ts';
import { decodeBase64, type MethodHandlers } from './method-table.ts';

type HostPortHandlers = Pick<MethodHandlers, 'emu.mmioRead' | 'emu.mmioWrite' | 'emu.memRead' | 'emu.memWrite' | 'emu.interrupts'>;

export function hostPortHandlers(core: MigrationCore): HostPortHandlers {
  return {
    'emu.mmioRead': async ({ vf, offset }) => ({ value: core.withHostPort(vf, (port) => port.mmioRead32(offset)) }),
    'emu.mmioWrite': async ({ vf, offset, value }) => {
      core.withHostPort(vf, (port) => port.mmioWrite32(offset, value));
      return {};
    },
    'emu.memRead': async ({ vf, address, length }) => {
      const bytes = core.withHostPort(vf, (port) => port.memRead(address, length));
      return markBase64({ data: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64') }, 'data');
    },
    'emu.memWrite': async ({ vf, address, data }) => {
      const bytes = decodeBase64(data, '/data');
      core.withHostPort(vf, (port) => port.memWrite(address, bytes));
      return {};
    },
    'emu.interrupts': async ({ vf }) => ({ counts: [...core.withHostPort(vf, (port) => port.interruptCounts())] }),
  };
}
