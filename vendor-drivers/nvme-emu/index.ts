/** nvme-emu: the embedded default vendor driver, software NVMe VFs backed by files. */
import type { NvmeEmuOptions } from '../../schemas/types.ts';
import type { VendorDriver } from '../driver.ts';
import { NvmeEmuDriver } from './nvme-emu-driver.ts';

export function createNvmeEmuDriver(options: NvmeEmuOptions): VendorDriver {
  return new NvmeEmuDriver(options);
}
