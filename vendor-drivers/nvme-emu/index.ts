/** nvme-emu: the embedded default vendor driver, software NVMe VFs backed by files. */
import type { NvmeEmuOptions } from '../../schemas/types.ts';
import { NvmeEmuDriver } from './nvme-emu-driver.ts';

export type { NvmeEmuDriver };

export function createNvmeEmuDriver(options: NvmeEmuOptions): NvmeEmuDriver {
  return new NvmeEmuDriver(options);
}
