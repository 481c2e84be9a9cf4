/**
 * The nvme-emu driver when the controllers run in a device process of
 * their own (options `device.mode` `supervised` or `attach`): the
 * VendorDriver contract, call for call, over the device's control link,
 * each call with a deadline, as a vendor driver talks to its firmware.
 *
 * `supervised`: at start, the driver attaches to the device process that
 * serves the socket, or starts one (detached: it outlives the agent, as
 * hardware does). `attach`: the device process is someone else's to run.
 * A device that does not answer makes calls fail with `device-unreachable`
 * (the core refuses them and changes nothing) and health say so.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, openSync, closeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino, type Logger } from 'pino';
import type { NvmeEmuOptions } from '../../schemas/types.ts';
import {
  DriverError, type DeviceIdentity, type DeviceLoadStream, type DeviceSaveStream, type DriverCapabilities, type DriverErrorKind, type HealthCheck,
  type PrecopyInfo, type RunLevel, type RunLevelChange, type RunLevelOptions, type StateFormat, type VendorDriver, type VfDescription, type VfDescriptor,
} from '../driver.ts';
import type { DeviceInfo } from './device/device-server.ts';
import { LineRpcClient, LinkDownError, RpcFailureError } from './device/line-rpc.ts';
import { dataDirOf } from './options.ts';

const DEVICE_MAIN = join(dirname(fileURLToPath(import.meta.url)), 'device', 'device-main.js');
/** How long a device process that was just started may take to answer. */
const START_TIMEOUT_MS = 20_000;

export interface DeviceLinkOptions {
  readonly mode: 'supervised' | 'attach';
  readonly socket: string;
  /** Where a supervised device serves the host port; undefined: none. */
  readonly hostPortListen: string | undefined;
  readonly callTimeoutMs: number;
}

/** The link's settings from the options, with their defaults. */
export function deviceLinkOptions(options: NvmeEmuOptions): DeviceLinkOptions | undefined {
  const device = options.device;
  if (device === undefined || device.mode === undefined || device.mode === 'in-agent') return undefined;
  return {
    mode: device.mode,
    socket: device.socket ?? join(dataDirOf(options), 'device.sock'),
    hostPortListen: options.hostPort === true ? (device.hostPortListen ?? 'tcp://127.0.0.1:0') : undefined,
    callTimeoutMs: device.callTimeoutMs ?? 5000,
  };
}

/** What came back from the device as the DriverError the core expects; a link that is down is `device-unreachable`. */
function driverErrorOf(error: unknown, what: string): DriverError {
  if (error instanceof DriverError) return error;
  if (error instanceof LinkDownError) return new DriverError('device-unreachable', `the nvme-emu device process did not answer ${what}: ${error.message}`, { cause: error });
  if (error instanceof RpcFailureError) {
    const kind = (error.failure.data?.kind as DriverErrorKind | undefined) ?? 'driver-failure';
    return new DriverError(kind, error.failure.message, { cause: error });
  }
  return new DriverError('driver-failure', `${what}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
}

export class NvmeEmuDeviceDriver implements VendorDriver {
  readonly name = 'nvme-emu';
  readonly #options: NvmeEmuOptions;
  readonly #link: DeviceLinkOptions;
  readonly #rpc: LineRpcClient;
  #info: DeviceInfo | undefined;
  #log: Logger = pino({ enabled: false });

  constructor(options: NvmeEmuOptions, link: DeviceLinkOptions) {
    this.#options = options;
    this.#link = link;
    this.#rpc = new LineRpcClient(link.socket);
  }

  /** The device's, except the host port: the guest reaches it at the device process (`details.hostPort`), not through the agent. */
  get capabilities(): DriverCapabilities {
    return { ...this.#known().capabilities, hostPort: false };
  }

  get stateFormats(): readonly StateFormat[] {
    return this.#known().stateFormats;
  }

  get saveFormats(): readonly StateFormat[] {
    return this.#known().saveFormats;
  }

  async start(log: Logger): Promise<void> {
    this.#log = log;
    try {
      this.#info = await this.#call<DeviceInfo>('device.info', {});
      log.info({ pid: this.#info.pid, socket: this.#link.socket, since: this.#info.startedAt }, 'attached to the running nvme-emu device process');
      return;
    } catch (error) {
      if (this.#link.mode === 'attach') throw new Error(`no nvme-emu device process answers at ${this.#link.socket}: ${error instanceof Error ? error.message : String(error)}`);
    }
    this.#startDevice();
    const deadline = performance.now() + START_TIMEOUT_MS;
    for (;;) {
      try {
        this.#info = await this.#call<DeviceInfo>('device.info', {});
        log.info({ pid: this.#info.pid, socket: this.#link.socket, hostPort: this.#info.hostPort }, 'nvme-emu device process started');
        return;
      } catch (error) {
        if (performance.now() > deadline) throw new Error(`the nvme-emu device process did not answer at ${this.#link.socket} within ${START_TIMEOUT_MS} ms`, { cause: error });
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  }

  /** The device keeps running: it is the hardware. Only the link closes. */
  async stop(): Promise<void> {
    this.#rpc.close();
  }

  listVfs(): readonly VfDescriptor[] {
    return this.#known().vfs;
  }

  async describe(vfId: string): Promise<VfDescription> {
    const description = await this.#call<VfDescription>('device.describe', { vf: vfId });
    const hostPort = this.#known().hostPort;
    return hostPort === null ? description : { ...description, details: { ...description.details, hostPort } };
  }

  async runLevel(vfId: string): Promise<RunLevel> {
    return (await this.#call<{ level: RunLevel }>('device.runLevel', { vf: vfId })).level;
  }

  setRunLevel(vfId: string, level: RunLevel, options: RunLevelOptions): Promise<RunLevelChange> {
    const timeoutMs = Math.max(1, Math.ceil(options.deadline - performance.now()));
    // The device has until the deadline to drain; the link waits that long and the usual call time on top.
    return this.#call<RunLevelChange>('device.setRunLevel', { vf: vfId, level, timeoutMs }, timeoutMs + this.#link.callTimeoutMs);
  }

  async openSave(vfId: string, format: StateFormat): Promise<DeviceSaveStream> {
    const { stream } = await this.#call<{ stream: number }>('device.openSave', { vf: vfId, format });
    return {
      read: async (maxBytes) => Buffer.from((await this.#call<{ data: string }>('device.saveRead', { stream, maxBytes })).data, 'base64'),
      stopCopyBytes: async () => (await this.#call<{ bytes: number }>('device.saveStopCopyBytes', { stream })).bytes,
      precopyInfo: () => this.#call<PrecopyInfo>('device.savePrecopyInfo', { stream }),
      close: () => this.#forget('device.saveClose', stream),
    };
  }

  async checkIdentity(vfId: string, identity: DeviceIdentity): Promise<void> {
    await this.#call('device.checkIdentity', { vf: vfId, identity });
  }

  async openLoad(vfId: string, format: StateFormat): Promise<DeviceLoadStream> {
    const { stream } = await this.#call<{ stream: number }>('device.openLoad', { vf: vfId, format });
    return {
      write: async (bytes) => {
        await this.#call('device.loadWrite', { stream, data: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64') });
      },
      commit: async () => {
        await this.#call('device.loadCommit', { stream });
      },
      abort: () => this.#forget('device.loadAbort', stream),
    };
  }

  async stopCopyBytes(vfId: string): Promise<number> {
    return (await this.#call<{ bytes: number }>('device.stopCopyBytes', { vf: vfId })).bytes;
  }

  async reset(vfId: string): Promise<void> {
    await this.#call('device.reset', { vf: vfId });
  }

  /** The link first: a device that does not answer is the news, not its namespace files. */
  async health(): Promise<readonly HealthCheck[]> {
    try {
      const [{ checks }, info] = await Promise.all([this.#call<{ checks: HealthCheck[] }>('device.health', {}), this.#call<DeviceInfo>('device.info', {})]);
      this.#noticeRestart(info);
      return [{ name: 'device-process', ok: true, detail: `the device process (pid ${info.pid}, since ${info.startedAt}) answers at ${this.#link.socket}` }, ...checks];
    } catch (error) {
      return [{ name: 'device-process', ok: false, detail: driverErrorOf(error, 'a health check').message }];
    }
  }

  async #call<T>(method: string, params: object, timeoutMs = this.#link.callTimeoutMs): Promise<T> {
    try {
      return await this.#rpc.call(method, params, timeoutMs) as T;
    } catch (error) {
      throw driverErrorOf(error, method);
    }
  }

  /** A stream the core is done with: closed on the device; if the link is down, the device closed it already. */
  #forget(method: string, stream: number): void {
    this.#call(method, { stream }).catch((error: unknown) => {
      this.#log.debug({ stream, err: error instanceof Error ? error.message : String(error) }, `${method} not answered`);
    });
  }

  /** A device process that is not the one attached to was started since: a reset device, which the log must say. */
  #noticeRestart(info: DeviceInfo): void {
    const known = this.#known();
    if (info.pid === known.pid && info.startedAt === known.startedAt) return;
    this.#log.warn({ pid: info.pid, was: known.pid, since: info.startedAt }, 'another nvme-emu device process answers now: the device was restarted, and its VFs with it');
    this.#info = info;
  }

  #known(): DeviceInfo {
    if (this.#info === undefined) throw new Error('the nvme-emu device driver is not started');
    return this.#info;
  }

  /** A device process of its own session: it is not the agent's child to die with it. Its log goes to a file beside the socket. */
  #startDevice(): void {
    const { device: _, ...deviceOptions } = this.#options;
    mkdirSync(dirname(this.#link.socket), { recursive: true });
    const logPath = `${this.#link.socket}.log`;
    const out = openSync(logPath, 'a', 0o600);
    try {
      const args = [DEVICE_MAIN, '--control', this.#link.socket, '--options-json', JSON.stringify(deviceOptions)];
      if (this.#link.hostPortListen !== undefined) args.push('--host-port', this.#link.hostPortListen);
      const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', out, out] });
      child.unref();
      this.#log.info({ pid: child.pid, socket: this.#link.socket, log: logPath }, 'starting the nvme-emu device process');
    } finally {
      closeSync(out);
    }
  }
}
