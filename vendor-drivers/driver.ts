/**
 * The contract between the migration core and a vendor driver.
 *
 * The core owns the VFIO v2 state machine, the save/load streams and the
 * state envelope; a driver owns one kind of device and knows how to stop it,
 * read its state out and put a state back. Nothing in here is NVMe-specific,
 * and nothing in here imports from `agent/`: drivers sit below the core.
 */
import type { Logger } from 'pino';

/** A JSON value, as it travels in identities and descriptions. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** Optional VFIO migration features (VFIO_MIGRATION_* flags); STOP_COPY is always present. */
export interface DriverCapabilities {
  /** VFIO_MIGRATION_P2P: the VF has a RUNNING_P2P state between RUNNING and STOP. */
  readonly p2p: boolean;
  /** VFIO_MIGRATION_PRE_COPY: state can be read while the VF runs. */
  readonly preCopy: boolean;
  /** Device DMA dirty-page tracking of guest memory. */
  readonly dirtyTracking: boolean;
  /** The driver's VFs have a host port (`hostPort` returns one): software VFs, for test guests. */
  readonly hostPort: boolean;
}

/** A device-state format a driver can produce or accept. */
export interface StateFormat {
  readonly name: string;
  readonly version: number;
  /** The vendor that defines the format, as a UUID (as NVMe names controller-state formats). */
  readonly vendor?: string;
}

/**
 * What a destination VF must match for a state to be loadable: everything a
 * guest can observe and would break on if it changed under it.
 * `model` names the device model; the other keys are driver-defined.
 */
export interface DeviceIdentity {
  readonly model: string;
  readonly [key: string]: JsonValue;
}

export interface VfDescriptor {
  /** Stable id, unique within this agent (e.g. `nvme0`). */
  readonly id: string;
  /** Host-visible PCI address, `DDDD:BB:DD.F`, lower-case hex. */
  readonly bdf: string;
  /** Device class, e.g. `nvme`. */
  readonly kind: string;
}

export interface VfDescription<Details extends object = object> extends VfDescriptor {
  readonly identity: DeviceIdentity;
  /**
   * What the driver tells about the VF beyond the core's view (for example
   * queues and namespaces), as plain JSON data: it must match `$defs/details` of
   * the driver's schema file, `schemas/drivers/<name>.json` (the type
   * generated from it is the natural `Details`), and `vf.get` returns it
   * as is.
   */
  readonly details: Details;
}

/**
 * How far a VF is from running, as the VFIO states need it:
 * - `running`: RUNNING (and PRE_COPY): takes new work from the guest and
 *   does it, with DMA and interrupts.
 * - `p2p-quiesced`: RUNNING_P2P: takes no new work; work already taken
 *   completes (its completions and interrupts are still delivered, and the
 *   guest's acknowledgements of them still act, or a drain that waits for
 *   room to complete into could never finish). New work the guest posts
 *   is latched.
 * - `stopped`: STOP, STOP_COPY, RESUMING: no work, no DMA, no interrupts,
 *   no change to device state. Register reads still answer; register
 *   writes are latched and acted on after a return to running.
 */
export type RunLevel = 'running' | 'p2p-quiesced' | 'stopped';

export interface RunLevelOptions {
  /** `performance.now()` time by which draining must be done. */
  readonly deadline: number;
}

export interface RunLevelChange {
  /** Commands that were fetched and had to be completed before this call returned. */
  readonly drainedCommands: number;
}

/** PRE_COPY information, as VFIO's VFIO_MIG_GET_PRECOPY_INFO (v2) reports it. */
export interface PrecopyInfo {
  /** Bytes of the initial state still to be read; falls to 0 and stays there. */
  readonly initialBytes: number;
  /** Bytes of state changed since it was read, still to be read. */
  readonly dirtyBytes: number;
  /** The device has restarted its stream: what was read before is to be read again. */
  readonly reinit: boolean;
}

/**
 * The device data of one save, read in order: VFIO's saving data fd, in
 * the shape of libvfio-user's `read_data`. The core frames it into the
 * state stream; what the bytes mean is the driver's own business.
 */
export interface DeviceSaveStream {
  /**
   * Up to `maxBytes` of the data, in order. Fewer than `maxBytes` only when
   * no more is there now: with the VF stopped that is the end of the data
   * (and every later read returns nothing); while it runs (PRE_COPY), for
   * now. The bytes are the caller's from then on: the driver must not
   * change them (the core hands them out without copying).
   */
  read(maxBytes: number): Promise<Uint8Array>;
  /**
   * `read` into the caller's buffer, as libvfio-user's `read_data(buf,
   * count)`: fills `target` from its start with up to `target.length` bytes
   * and returns how many, fewer exactly when `read` would return fewer. A
   * driver that has it lets the core reuse its buffers from read to read
   * instead of leaving one per read to the garbage collector.
   */
  readInto?(target: Buffer): Promise<number>;
  /** Bytes reads would still return if the VF stopped now: exact once it is stopped (VFIO's MIG_DATA_SIZE). */
  stopCopyBytes(): Promise<number>;
  /** While the VF runs (PRE_COPY) only. */
  precopyInfo(): Promise<PrecopyInfo>;
  /** The save is over, finished or not: release what it holds. */
  close(): void;
}

/**
 * The device data of one resume, written in order: VFIO's resuming data
 * fd, in the shape of libvfio-user's `write_data`. Nothing reaches the VF
 * before `commit`.
 */
export interface DeviceLoadStream {
  /**
   * The next bytes, in order; may refuse them (`corrupt-state`) as soon as
   * they are known bad. The bytes are the caller's: copy what is kept.
   */
  write(bytes: Uint8Array): Promise<void>;
  /**
   * All the data is in: validate the whole, then apply it; the VF is
   * `stopped` and stays so. Throws `corrupt-state` or `incompatible-state`
   * without touching the VF.
   */
  commit(): Promise<void>;
  /** The resume is over without a commit: drop what was written. */
  abort(): void;
}

/** A named check reported by `agent.health`. */
export interface HealthCheck {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

/**
 * The host side of the PCIe link of a software VF: what a guest driver in
 * the VM would see. Only software drivers have one, and only when configured.
 */
export interface HostPort {
  /** 32-bit read of BAR0 at `offset` (4-byte aligned). */
  mmioRead32(offset: number): number;
  /** 32-bit write of BAR0 at `offset` (4-byte aligned). */
  mmioWrite32(offset: number, value: number): void;
  /** Guest RAM that the VF DMAs into; unwritten bytes read as zero. */
  memRead(address: number, length: number): Uint8Array;
  memWrite(address: number, data: Uint8Array): void;
  /** Interrupts raised so far, indexed by MSI-X vector. */
  interruptCounts(): readonly number[];
}

/**
 * Errors a driver throws for the core to map onto the error catalogue.
 * Any other exception is reported as a driver failure.
 */
export type DriverErrorKind =
  | 'quiesce-timeout'
  /** The device did not answer (its process is down, its link is cut): the call did nothing the driver knows of. */
  | 'device-unreachable'
  | 'corrupt-state'
  | 'incompatible-state'
  | 'invalid-access'
  | 'driver-failure';

export class DriverError extends Error {
  readonly kind: DriverErrorKind;
  constructor(kind: DriverErrorKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'DriverError';
    this.kind = kind;
  }
}

/**
 * Calls per VF: the core makes at most one call at a time on a VF and
 * its open save or resume stream (`setRunLevel`, `openSave`, `openLoad`,
 * `reset`, and the streams' methods), in the order its callers asked (its
 * per-VF serial queue), so a driver needs no queue of its own and a reset
 * never lands inside a drain. Calls on different VFs may overlap.
 * `describe`, `stopCopyBytes`, `checkIdentity`, a save stream's
 * `stopCopyBytes` and `precopyInfo`, and the host port are not queued:
 * they read counters and must be safe
 * while a queued call is under way (the host port must be, since a drain
 * waits for the guest to acknowledge completions).
 *
 * Everything that asks the device is asynchronous, as a call to a DPU's
 * firmware is (a mailbox, an admin queue, a socket to a device process):
 * only the driver's name, capabilities, formats and VF list are fixed
 * facts it can answer at once. The host port is the exception: it is the
 * guest's side of the link, served where the device model runs.
 */
export interface VendorDriver {
  /** Registry name, e.g. `nvme-emu`. */
  readonly name: string;
  readonly capabilities: DriverCapabilities;
  /** Formats this driver can load. */
  readonly stateFormats: readonly StateFormat[];
  /** Formats this driver can save in, the default first. Absent: the first of `stateFormats` only. */
  readonly saveFormats?: readonly StateFormat[];

  /** Open backing resources; called once before the agent serves requests. */
  start(log: Logger): Promise<void>;
  /** Stop every VF's activity and release resources. */
  stop(): Promise<void>;

  /** The VFs, as they were when the driver started (the list does not change while it runs). */
  listVfs(): readonly VfDescriptor[];
  describe(vfId: string): Promise<VfDescription>;

  /**
   * Move the VF between run levels. Going down (towards `stopped`) stops
   * fetching and waits until every fetched command has completed. If that
   * does not happen by the deadline, the driver returns the VF to the run
   * level it had and throws a `quiesce-timeout` DriverError: a failed call
   * changes nothing. Going up resumes work, including work latched
   * while stopped.
   */
  setRunLevel(vfId: string, level: RunLevel, options: RunLevelOptions): Promise<RunLevelChange>;

  /**
   * Opens the device data of a save in `format` (one of `stateFormats`).
   * The VF is `stopped`, or running when the VF saves in PRE_COPY
   * (`capabilities.preCopy`). At most one save or resume is open per VF.
   */
  openSave(vfId: string, format: StateFormat): Promise<DeviceSaveStream>;
  /**
   * Throws `incompatible-state` if a state made by a VF of this identity
   * cannot be loaded into this one. Formats are the core's business: it
   * matches a state's format against `stateFormats`, in one place, before it
   * asks this.
   */
  checkIdentity(vfId: string, identity: DeviceIdentity): Promise<void>;
  /**
   * Opens a resume of data in `format`; the VF is `stopped`. The core has
   * already checked the format and, with `checkIdentity`, the identity of
   * the VF that saved it; what the data itself says is the driver's to check.
   */
  openLoad(vfId: string, format: StateFormat): Promise<DeviceLoadStream>;
  /** Bytes of data a save would hand out if the VF stopped now (VFIO's MIG_DATA_SIZE), with no save open. */
  stopCopyBytes(vfId: string): Promise<number>;
  /**
   * Where the VF is now, as the device knows it. A driver whose devices
   * outlive the agent has it: the core asks it at start (and after losing
   * the device) instead of assuming RUNNING.
   */
  runLevel?(vfId: string): Promise<RunLevel>;
  /** Function-level reset: a clean, disabled controller, running. Used to leave ERROR. */
  reset(vfId: string): Promise<void>;

  health(): Promise<readonly HealthCheck[]>;
  /** The host port of the VF: present when `capabilities.hostPort` is true. */
  hostPort?(vfId: string): HostPort;
}
