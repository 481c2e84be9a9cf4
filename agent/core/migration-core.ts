/**
 * The VFs this agent manages, across all configured drivers, each with its
 * state machine; looked up by id or by host-visible BDF.
 */
import type { Logger } from 'pino';
import type { DriverCapabilities, HealthCheck, HostPort, StateFormat, VendorDriver, VfDescription } from '../../vendor-drivers/driver.ts';
import { CoreEvents } from './core-events.ts';
import { Fault } from './faults.ts';
import type { SessionInfo } from './migration-session.ts';
import { SYSTEM_CLOCK } from './migration-lease.ts';
import { SessionJournal } from './session-journal.ts';
import { readFault, VfMachine, type MigrationInfo, type VfMachineLimits } from './vf-machine.ts';
import type { VfioStateName } from './vfio-states.ts';

/** A VF as listed: its names, its driver and its state. */
export interface VfSummary {
  readonly id: string;
  readonly bdf: string;
  readonly driver: string;
  readonly kind: string;
  readonly state: VfioStateName;
  /** Its lease expired and it stays stopped until a call says which side runs. */
  readonly stranded: boolean;
}

/** A VF in detail, as its driver describes it now. */
export interface VfDetails extends VfSummary {
  readonly capabilities: DriverCapabilities;
  readonly stateFormats: readonly StateFormat[];
  readonly description: VfDescription;
  /** The save or resume session open on the VF, if any. */
  readonly session: SessionInfo | undefined;
  /** The migration the VF is in, if any. */
  readonly migration: MigrationInfo | undefined;
}

export interface DriverSummary {
  readonly name: string;
  readonly capabilities: DriverCapabilities;
  readonly stateFormats: readonly StateFormat[];
  readonly vfCount: number;
}

/** A health check, attributed to the driver (or `core`) that made it. */
export interface AttributedHealthCheck extends HealthCheck {
  readonly driver: string;
}

export class MigrationCore {
  readonly drivers: readonly VendorDriver[];
  private readonly machines: VfMachine[] = [];
  private readonly byRef = new Map<string, VfMachine>();
  private readonly limits: VfMachineLimits;
  private readonly log: Logger;
  /** Where the journal of migrations lives; none: nothing of a migration survives a restart but the devices' own states. */
  private readonly stateDir: string | undefined;
  private journal: SessionJournal | undefined;
  /** What happens to the VFs (schemas/events/): for pushed notifications and metrics. */
  readonly events: CoreEvents;

  constructor(drivers: readonly VendorDriver[], limits: VfMachineLimits, log: Logger, stateDir?: string) {
    this.drivers = drivers;
    this.limits = limits;
    this.log = log;
    this.stateDir = stateDir;
    this.events = new CoreEvents((error) => {
      log.error({ phase: 'events', err: error instanceof Error ? error.message : String(error) }, 'an event listener failed');
    });
  }

  /**
   * Starts every driver and takes on its VFs; refuses duplicate ids or
   * BDFs. Each VF's state is asked of its device, and the journal's record
   * of its migration (if any) is checked against it.
   */
  async start(): Promise<void> {
    const opened = this.stateDir === undefined ? undefined : SessionJournal.open(this.stateDir, this.log);
    this.journal = opened?.journal;
    const journaled = opened?.reading.entries ?? new Map();
    for (const driver of this.drivers) {
      await driver.start(this.log.child({ driver: driver.name }));
      for (const vf of driver.listVfs()) {
        for (const ref of [vf.id, vf.bdf]) {
          const other = this.byRef.get(ref);
          if (other !== undefined) throw new Error(`VF ${vf.id} of driver ${driver.name} reuses ${ref}, already taken by VF ${other.vf.id}`);
        }
        const machine = new VfMachine(vf, driver, this.limits, this.log.child({ vf: vf.id }), SYSTEM_CLOCK, this.journal, this.events);
        await machine.adoptDeviceState(journaled.get(vf.id));
        this.machines.push(machine);
        this.byRef.set(vf.id, machine);
        this.byRef.set(vf.bdf, machine);
      }
    }
  }

  async stop(): Promise<void> {
    await Promise.allSettled(this.drivers.map((d) => d.stop()));
    this.journal?.close();
    this.journal = undefined;
  }

  list(): readonly VfMachine[] {
    return this.machines;
  }

  summary(machine: VfMachine): VfSummary {
    return { id: machine.vf.id, bdf: machine.vf.bdf, driver: machine.driver.name, kind: machine.vf.kind, state: machine.state, stranded: machine.stranded };
  }

  async details(ref: string): Promise<VfDetails> {
    const machine = this.lookup(ref);
    const description = await machine.driver.describe(machine.vf.id).catch((error: unknown) => { throw readFault(error, 'vf.get'); });
    return {
      ...this.summary(machine),
      capabilities: machine.driver.capabilities,
      stateFormats: machine.driver.stateFormats,
      description,
      session: machine.sessionInfo,
      migration: machine.migrationInfo,
    };
  }

  /**
   * Runs `access` on the VF's host port (the guest's side of its PCIe link);
   * FEATURE_DISABLED without one, DEVICE_ACCESS for an access the device refuses.
   */
  withHostPort<T>(ref: string, access: (port: HostPort) => T): T {
    return this.lookup(ref).hostAccess(access);
  }

  driverSummaries(): DriverSummary[] {
    return this.drivers.map((d) => ({
      name: d.name,
      capabilities: d.capabilities,
      stateFormats: d.stateFormats,
      vfCount: this.machines.filter((m) => m.driver === d).length,
    }));
  }

  /** Every driver's checks, and the core's own: no VF in ERROR, none stranded. A driver that fails its check is reported, not thrown. */
  async health(): Promise<AttributedHealthCheck[]> {
    const perDriver = await Promise.all(this.drivers.map(async (d) => {
      try {
        return (await d.health()).map((c) => ({ driver: d.name, name: c.name, ok: c.ok, detail: c.detail }));
      } catch (error) {
        return [{ driver: d.name, name: 'health', ok: false, detail: error instanceof Error ? error.message : String(error) }];
      }
    }));
    const inError = this.machines.filter((m) => m.state === 'ERROR').map((m) => m.vf.id);
    const stranded = this.machines.filter((m) => m.stranded).map((m) => m.vf.id);
    return [
      ...perDriver.flat(),
      { driver: 'core', name: 'vfs-not-in-error', ok: inError.length === 0, detail: inError.length === 0 ? 'no VF is in ERROR' : `in ERROR: ${inError.join(', ')}` },
      {
        driver: 'core', name: 'vfs-not-stranded', ok: stranded.length === 0,
        detail: stranded.length === 0 ? 'no VF is stranded' : `stranded (lease expired after the state left; stopped until vf.resume or vf.reset): ${stranded.join(', ')}`,
      },
    ];
  }

  /** The VF named by `ref` (an id or a BDF). */
  lookup(ref: string): VfMachine {
    const machine = this.byRef.get(ref) ?? this.byRef.get(ref.toLowerCase());
    if (machine === undefined) throw new Fault('VF_UNKNOWN', `no VF with id or BDF "${ref}"`, { vf: ref });
    return machine;
  }
}
