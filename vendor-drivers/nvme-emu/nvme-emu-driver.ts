/**
 * The nvme-emu vendor driver: software NVMe VFs backed by namespace files,
 * behind the VendorDriver contract of the migration core.
 *
 * Creating the driver only builds the controller models (cheap, no I/O), so
 * an agent with a thousand VFs starts at once; namespace files are opened on
 * first use and a single timer serves every VF's service times.
 */
import { pino, type Logger } from 'pino';
import type { NvmeEmuDetails, NvmeEmuOptions } from '../../schemas/types.ts';
import {
  type DeviceIdentity,
  type DeviceLoadStream,
  type DeviceSaveStream,
  type DriverCapabilities,
  DriverError,
  type HealthCheck,
  type HostPort,
  type RunLevel,
  type RunLevelChange,
  type RunLevelOptions,
  type StateFormat,
  type VendorDriver,
  type VfDescription,
  type VfDescriptor,
} from '../driver.ts';
import { imageLoadStream, imageSaveStream, type ImageFraming } from '../image-streams.ts';
import { BackingFilePool } from './backing-files.ts';
import { NvmeController } from './controller.ts';
import { controllerProfile, type ControllerProfile } from './controller-profile.ts';
import { createHostPort } from './host-port.ts';
import { deviceIdentity, identityDifference } from './identity.ts';
import { NamespaceStore } from './namespace-store.ts';
import { resolveOptions, type ResolvedOptions, type VfConfig } from './options.ts';
import { ServiceClock } from './service-clock.ts';
import { imageLength } from './nvme-controller-state.ts';
import { STATE_CODECS, type StateCodec } from './state-codecs.ts';
import { HEADER_BYTES } from './state-format.ts';

interface Vf {
  readonly descriptor: VfDescriptor;
  readonly profile: ControllerProfile;
  readonly identity: DeviceIdentity;
  readonly namespaces: readonly NamespaceStore[];
  readonly controller: NvmeController;
  readonly hostPort: HostPort | undefined;
}

export class NvmeEmuDriver implements VendorDriver {
  readonly name = 'nvme-emu';
  readonly capabilities: DriverCapabilities;
  /** Loads and saves the same formats (the option `stateFormats`), the default save first. */
  readonly stateFormats: readonly StateFormat[];
  readonly saveFormats: readonly StateFormat[];
  readonly #codecs: readonly StateCodec[];

  readonly #vfs = new Map<string, Vf>();
  readonly #clock = new ServiceClock();
  readonly #files = new BackingFilePool();
  #log: Logger = pino({ enabled: false });
  readonly #vfLogs = new Map<string, Logger>();

  constructor(options: NvmeEmuOptions) {
    const resolved = resolveOptions(options);
    this.capabilities = Object.freeze({ p2p: resolved.p2p, preCopy: resolved.preCopy, dirtyTracking: false, hostPort: options.hostPort === true });
    this.#codecs = resolved.stateFormats.map((name) => STATE_CODECS[name]);
    this.stateFormats = this.#codecs.map((codec) => codec.format);
    this.saveFormats = this.stateFormats;
    for (const config of resolved.vfs) this.#vfs.set(config.id, this.#createVf(config, resolved));
  }

  async start(log: Logger): Promise<void> {
    this.#log = log;
    this.#vfLogs.clear();
    this.#log.info({ vfs: this.#vfs.size }, 'nvme-emu ready');
  }

  async stop(): Promise<void> {
    for (const vf of this.#vfs.values()) vf.controller.close();
    this.#clock.close();
    await this.#files.closeAll();
    this.#log.info('nvme-emu stopped');
  }

  listVfs(): readonly VfDescriptor[] {
    return [...this.#vfs.values()].map((vf) => vf.descriptor);
  }

  async describe(vfId: string): Promise<VfDescription<NvmeEmuDetails>> {
    const vf = this.#vf(vfId);
    return {
      ...vf.descriptor,
      identity: vf.identity,
      details: {
        queues: { max: vf.profile.maxIoQueues, active: vf.controller.core.ioSqs.size },
        namespaces: vf.profile.namespaces.map((ns) => ({ ...ns })),
      },
    };
  }

  /** Where the VF's controller is now: what the device knows, whoever asks (an agent that restarted). */
  async runLevel(vfId: string): Promise<RunLevel> {
    return this.#vf(vfId).controller.runLevel;
  }

  /** The id of a VF named by id or BDF, as the host port is addressed. */
  idOf(ref: string): string {
    if (this.#vfs.has(ref)) return ref;
    const lower = ref.toLowerCase();
    for (const vf of this.#vfs.values()) if (vf.descriptor.bdf === lower) return vf.descriptor.id;
    throw new DriverError('driver-failure', `nvme-emu has no VF with id or BDF ${JSON.stringify(ref)}`);
  }

  async setRunLevel(vfId: string, level: RunLevel, options: RunLevelOptions): Promise<RunLevelChange> {
    const vf = this.#vf(vfId);
    const started = performance.now();
    const from = vf.controller.runLevel;
    const drainedCommands = await vf.controller.setRunLevel(level, options.deadline);
    this.#vfLog(vfId).debug({ from, to: level, drainedCommands, ms: round(performance.now() - started) }, 'run level changed');
    return { drainedCommands };
  }

  /**
   * The controller state is a few kilobytes: taken whole, as one image
   * (image-streams.ts). With the VF stopped that is the save; with
   * pre-copy, a save opened while it runs hands out an image at once, a new
   * one whenever the state has changed, and the final one once it stops.
   */
  async openSave(vfId: string, format: StateFormat): Promise<DeviceSaveStream> {
    const vf = this.#vf(vfId);
    if (!this.capabilities.preCopy) requireStopped(vf, 'a save');
    const codec = this.#codec(format);
    const { controller } = vf;
    const stream = imageSaveStream({
      capture: (final) => {
        if (final) requireStopped(vf, 'the final state image');
        return codec.encode(controller.snapshot(), final);
      },
      stopped: () => controller.runLevel === 'stopped',
    });
    this.#vfLog(vfId).debug({ format: format.name, running: controller.runLevel !== 'stopped', stopCopyBytes: await stream.stopCopyBytes() }, 'save opened');
    return stream;
  }

  async checkIdentity(vfId: string, identity: DeviceIdentity): Promise<void> {
    const difference = identityDifference(identity, this.#vf(vfId).identity);
    if (difference) throw new DriverError('incompatible-state', difference);
  }

  /**
   * Takes the images of a save in order (one, or several from a pre-copy
   * save), each decoded and validated against the VF as it completes, and
   * applies the last at commit, validated whole again: it must have been
   * taken stopped.
   */
  async openLoad(vfId: string, format: StateFormat): Promise<DeviceLoadStream> {
    const vf = this.#vf(vfId);
    const codec = this.#codec(format);
    requireStopped(vf, 'a resume');
    return imageLoadStream(CONTROLLER_STATE_FRAMING, {
      check: (image) => {
        codec.decode(image, vf.controller.snapshot(), 'any');
      },
      apply: (image) => {
        requireStopped(vf, 'applying a state');
        const snapshot = codec.decode(image, vf.controller.snapshot(), 'suspended');
        vf.controller.restore(snapshot);
        this.#vfLog(vfId).info({ bytes: image.length, format: format.name, ioQueues: snapshot.ioSqs.length }, 'state restored');
      },
    });
  }

  /** Of the default save format. Encoding is the only way to be exact, and costs microseconds. */
  async stopCopyBytes(vfId: string): Promise<number> {
    return this.#defaultCodec().encode(this.#vf(vfId).controller.snapshot(), true).length;
  }

  async reset(vfId: string): Promise<void> {
    this.#vf(vfId).controller.resetFunction();
    this.#vfLog(vfId).info('function level reset');
  }

  async health(): Promise<readonly HealthCheck[]> {
    const checks = [...this.#vfs.values()].flatMap((vf) => vf.namespaces.map((ns) => ns.check(vf.descriptor.id)));
    return Promise.all(checks);
  }

  hostPort(vfId: string): HostPort {
    const port = this.#vf(vfId).hostPort;
    if (port === undefined) throw new DriverError('driver-failure', `VF ${vfId} has no host port: hostPort is off in the nvme-emu options`);
    return port;
  }

  #createVf(config: VfConfig, options: ResolvedOptions): Vf {
    const profile = controllerProfile(config, options);
    const namespaces = config.namespaces.map((ns) => new NamespaceStore(ns, this.#files));
    const controller = new NvmeController({
      profile,
      namespaces: new Map(namespaces.map((ns) => [ns.nsid, ns])),
      clock: this.#clock,
      serviceTimeUs: options.serviceTimeUs,
      maxGuestMemoryBytes: options.maxGuestMemoryBytes,
      log: () => this.#vfLog(config.id),
    });
    return {
      descriptor: Object.freeze({ id: config.id, bdf: config.bdf, kind: 'nvme' }),
      profile,
      identity: deviceIdentity(profile),
      namespaces,
      controller,
      hostPort: options.hostPort ? createHostPort(controller) : undefined,
    };
  }

  /** The core passes one of `stateFormats`; anything else is a bug. */
  #codec(format: StateFormat): StateCodec {
    const codec = this.#codecs.find((c) => c.format.name === format.name && c.format.version === format.version && c.format.vendor === format.vendor);
    if (codec === undefined) throw new DriverError('driver-failure', `nvme-emu is not configured for state format ${format.name} v${format.version}`);
    return codec;
  }

  #defaultCodec(): StateCodec {
    return this.#codecs[0] as StateCodec;
  }

  #vf(vfId: string): Vf {
    const vf = this.#vfs.get(vfId);
    if (!vf) throw new DriverError('driver-failure', `nvme-emu has no VF ${JSON.stringify(vfId)}`);
    return vf;
  }

  #vfLog(vfId: string): Logger {
    let log = this.#vfLogs.get(vfId);
    if (!log) {
      log = this.#log.child({ vf: vfId });
      this.#vfLogs.set(vfId, log);
    }
    return log;
  }
}

/** Each image is a Controller State data structure, whose header says its length (STATE-FORMAT.md, "Device data"). */
const CONTROLLER_STATE_FRAMING: ImageFraming = { headerBytes: HEADER_BYTES, imageLength };

function requireStopped(vf: Vf, operation: string): void {
  const level = vf.controller.runLevel;
  if (level !== 'stopped') throw new DriverError('driver-failure', `${operation} needs VF ${vf.descriptor.id} stopped; it is ${level}`);
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
