/**
 * The VFs this agent manages, across all configured drivers, each with its
 * state machine; looked up by id or by host-visible BDF.
 */
import type { Logger } from 'pino';
import type { VendorDriver } from '../../vendor-drivers/driver.ts';
import { Fault } from './faults.ts';
import { VfMachine, type VfMachineLimits } from './vf-machine.ts';

export class MigrationCore {
  readonly drivers: readonly VendorDriver[];
  private readonly machines: VfMachine[] = [];
  private readonly byRef = new Map<string, VfMachine>();
  private readonly limits: VfMachineLimits;
  private readonly log: Logger;

  constructor(drivers: readonly VendorDriver[], limits: VfMachineLimits, log: Logger) {
    this.drivers = drivers;
    this.limits = limits;
    this.log = log;
  }

  /** Starts every driver and takes on its VFs; refuses duplicate ids or BDFs. */
  async start(): Promise<void> {
    for (const driver of this.drivers) {
      await driver.start(this.log.child({ driver: driver.name }));
      for (const vf of driver.listVfs()) {
        for (const ref of [vf.id, vf.bdf]) {
          const other = this.byRef.get(ref);
          if (other !== undefined) throw new Error(`VF ${vf.id} of driver ${driver.name} reuses ${ref}, already taken by VF ${other.vf.id}`);
        }
        const machine = new VfMachine(vf, driver, this.limits, this.log.child({ vf: vf.id }));
        this.machines.push(machine);
        this.byRef.set(vf.id, machine);
        this.byRef.set(vf.bdf, machine);
      }
    }
  }

  async stop(): Promise<void> {
    await Promise.allSettled(this.drivers.map((d) => d.stop()));
  }

  list(): readonly VfMachine[] {
    return this.machines;
  }

  /** The VF named by `ref` (an id or a BDF). */
  lookup(ref: string): VfMachine {
    const machine = this.byRef.get(ref) ?? this.byRef.get(ref.toLowerCase());
    if (machine === undefined) throw new Fault('VF_UNKNOWN', `no VF with id or BDF "${ref}"`, { vf: ref });
    return machine;
  }
}
