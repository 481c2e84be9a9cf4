/** nvme-emu: the embedded default vendor driver, software NVMe VFs backed by files, in the agent or in a device process of their own. */
import type { NvmeEmuOptions } from '../../schemas/types.ts';
import type { VendorDriver } from '../driver.ts';
import { deviceLinkOptions, NvmeEmuDeviceDriver } from './device-driver.ts';
import { NvmeEmuDriver } from './nvme-emu-driver.ts';

export type { NvmeEmuDriver };

/** The controllers in the agent (tests of the device model use this one). */
export function createNvmeEmuDriver(options: NvmeEmuOptions): NvmeEmuDriver {
  return new NvmeEmuDriver(options);
}

/** As the config says: in the agent, or the driver end of a device process. */
export function createConfiguredNvmeEmuDriver(options: NvmeEmuOptions): VendorDriver {
  const link = deviceLinkOptions(options);
  return link === undefined ? new NvmeEmuDriver(options) : new NvmeEmuDeviceDriver(options, link);
}
