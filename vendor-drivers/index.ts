/**
 * The drivers an agent can run, by the name a config selects them with.
 * An explicit list: adding a driver means adding it here and its options
 * schema to schemas/config.json.
 */
import type { Config } from '../schemas/types.ts';
import type { VendorDriver } from './driver.ts';
import { createBlobBenchDriver } from './blob-bench/index.ts';
import { createConfiguredNvmeEmuDriver } from './nvme-emu/index.ts';

export type DriverConfig = NonNullable<Config['drivers']>[number];

export function createDriver(config: DriverConfig): VendorDriver {
  switch (config.driver) {
    case 'nvme-emu':
      return createConfiguredNvmeEmuDriver(config.options ?? {});
    case 'blob-bench':
      return createBlobBenchDriver(config.options ?? {});
  }
}
