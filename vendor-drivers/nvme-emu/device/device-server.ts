/**
 * The nvme-emu device process's two faces: the control link that the
 * agent's driver uses, as a vendor driver talks to its device firmware
 * (the VendorDriver contract, method for method), and the host port that a
 * guest's PCIe link reaches (emu.*). The controllers live here, so they
 * outlive the agent: an agent that dies takes nothing of the device with it
 * but the streams its connection had open, which close as a file
 * descriptor's would.
 */
import type { Server } from 'node:net';
import { DriverError, type DeviceLoadStream, type DeviceSaveStream, type DriverErrorKind, type RunLevel, type StateFormat, type VendorDriver } from '../../driver.ts';
import { lineRpcServer, paramReader, RpcFailureError, type RpcFailure } from './line-rpc.ts';

/** What the device answers `device.info` with: the fixed facts the agent's driver needs at start. */
export interface DeviceInfo {
  readonly pid: number;
  readonly startedAt: string;
  /** Where the host port listens (`tcp://HOST:PORT`), or null without one. */
  readonly hostPort: string | null;
  readonly capabilities: VendorDriver['capabilities'];
  readonly stateFormats: readonly StateFormat[];
  readonly saveFormats: readonly StateFormat[];
  readonly vfs: ReturnType<VendorDriver['listVfs']>;
}

/** A driver failure on the link: JSON-RPC server error -32000, with the kind the agent's driver throws again. */
export const DEVICE_ERROR_CODE = -32000;

interface ControlConnection {
  readonly saves: Map<number, DeviceSaveStream>;
  readonly loads: Map<number, DeviceLoadStream>;
}

function failureOf(error: unknown): RpcFailure {
  const kind: DriverErrorKind = error instanceof DriverError ? error.kind : 'driver-failure';
  return { code: DEVICE_ERROR_CODE, message: error instanceof Error ? error.message : String(error), data: { kind } };
}

const { text, integer } = paramReader((name, what) => new RpcFailureError({ code: -32602, message: `Invalid params: ${name} ${what}` }));

function format(params: Record<string, unknown>): StateFormat {
  const value = params.format as StateFormat | undefined;
  if (typeof value !== 'object' || value === null || typeof value.name !== 'string' || typeof value.version !== 'number') {
    throw new RpcFailureError({ code: -32602, message: 'Invalid params: format must be {name, version, vendor?}' });
  }
  return value;
}

const RUN_LEVELS: readonly RunLevel[] = ['running', 'p2p-quiesced', 'stopped'];

/** The control link: the VendorDriver contract of `driver`, over a socket. */
export function controlServer(driver: VendorDriver & Required<Pick<VendorDriver, 'runLevel'>>, info: () => DeviceInfo): Server {
  let nextStream = 1;
  const save = (connection: ControlConnection, params: Record<string, unknown>): DeviceSaveStream => {
    const stream = connection.saves.get(integer(params, 'stream'));
    if (stream === undefined) throw new DriverError('driver-failure', `no save stream ${String(params.stream)} on this connection`);
    return stream;
  };
  const load = (connection: ControlConnection, params: Record<string, unknown>): DeviceLoadStream => {
    const stream = connection.loads.get(integer(params, 'stream'));
    if (stream === undefined) throw new DriverError('driver-failure', `no resume stream ${String(params.stream)} on this connection`);
    return stream;
  };
  return lineRpcServer<ControlConnection>({
    open: () => ({ saves: new Map(), loads: new Map() }),
    close: (connection) => {
      for (const stream of connection.saves.values()) stream.close();
      for (const stream of connection.loads.values()) stream.abort();
    },
    failureOf,
    methods: {
      'device.info': async () => info(),
      'device.describe': async (params) => driver.describe(text(params, 'vf')),
      'device.runLevel': async (params) => ({ level: await driver.runLevel(text(params, 'vf')) }),
      'device.setRunLevel': async (params) => {
        const level = params.level as RunLevel;
        if (!RUN_LEVELS.includes(level)) throw new RpcFailureError({ code: -32602, message: 'Invalid params: level' });
        // Clocks are per process: the deadline travels as the time left.
        return driver.setRunLevel(text(params, 'vf'), level, { deadline: performance.now() + integer(params, 'timeoutMs') });
      },
      'device.openSave': async (params, connection) => {
        const id = nextStream++;
        connection.saves.set(id, await driver.openSave(text(params, 'vf'), format(params)));
        return { stream: id };
      },
      'device.saveRead': async (params, connection) => {
        const bytes = await save(connection, params).read(integer(params, 'maxBytes'));
        return { data: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64') };
      },
      'device.saveStopCopyBytes': async (params, connection) => ({ bytes: await save(connection, params).stopCopyBytes() }),
      'device.savePrecopyInfo': async (params, connection) => save(connection, params).precopyInfo(),
      'device.saveClose': async (params, connection) => {
        save(connection, params).close();
        connection.saves.delete(integer(params, 'stream'));
        return {};
      },
      'device.checkIdentity': async (params) => {
        await driver.checkIdentity(text(params, 'vf'), params.identity as Parameters<VendorDriver['checkIdentity']>[1]);
        return {};
      },
      'device.openLoad': async (params, connection) => {
        const id = nextStream++;
        connection.loads.set(id, await driver.openLoad(text(params, 'vf'), format(params)));
        return { stream: id };
      },
      'device.loadWrite': async (params, connection) => {
        await load(connection, params).write(Buffer.from(text(params, 'data'), 'base64'));
        return {};
      },
      'device.loadCommit': async (params, connection) => {
        const stream = load(connection, params);
        connection.loads.delete(integer(params, 'stream'));
        await stream.commit();
        return {};
      },
      'device.loadAbort': async (params, connection) => {
        load(connection, params).abort();
        connection.loads.delete(integer(params, 'stream'));
        return {};
      },
      'device.stopCopyBytes': async (params) => ({ bytes: await driver.stopCopyBytes(text(params, 'vf')) }),
      'device.reset': async (params) => {
        await driver.reset(text(params, 'vf'));
        return {};
      },
      'device.health': async () => ({ checks: await driver.health() }),
    },
  });
}
