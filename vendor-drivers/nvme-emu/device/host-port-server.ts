/**
 * The host port of the device process: what a guest's PCIe link reaches
 * (BAR0 accesses, guest RAM, interrupt counts), with the methods, params
 * and errors of the agent's emu.* (schemas/methods/emu.*.json), so a guest
 * client talks to either the same way. Served here, by the device, so that
 * guest I/O goes on while the agent is down.
 */
import type { Server } from 'node:net';
import { decodeBase64 } from '../../../agent/methods/method-table.ts';
import { InvalidParamsError } from '../../../agent/rpc/call-errors.ts';
import { wireError } from '../../../agent/rpc/error-catalogue.ts';
import { DriverError, type HostPort } from '../../driver.ts';
import { lineRpcServer, paramReader, RpcFailureError, type RpcFailure } from './line-rpc.ts';

function invalid(path: string, what: string): RpcFailureError {
  return new RpcFailureError(wireError('INVALID_PARAMS', `params/${path} ${what}`, { errors: [{ path: `/${path}`, message: what }] }));
}

const { integer } = paramReader(invalid);

/** Strict base64, decoded as the agent's emu.memWrite decodes it. */
function base64(params: Record<string, unknown>, name: string): Buffer {
  const value = params[name];
  if (typeof value !== 'string') throw invalid(name, 'must be padded base64');
  try {
    return decodeBase64(value, `/${name}`);
  } catch (error) {
    if (error instanceof InvalidParamsError) throw invalid(name, 'is not valid padded base64');
    throw error;
  }
}

function failureOf(error: unknown): RpcFailure {
  if (error instanceof DriverError && error.kind === 'invalid-access') return wireError('DEVICE_ACCESS', error.message);
  if (error instanceof DriverError) return wireError('VF_UNKNOWN', error.message);
  return wireError('INTERNAL_ERROR', error instanceof Error ? error.message : String(error));
}

/** `portOf(vf)`: the host port of a VF by id or BDF; throws a DriverError if there is none. */
export function hostPortServer(portOf: (vf: string) => HostPort): Server {
  const port = (params: Record<string, unknown>): HostPort => {
    const vf = params.vf;
    if (typeof vf !== 'string') throw invalid('vf', 'must be a VF id or BDF');
    return portOf(vf);
  };
  return lineRpcServer<undefined>({
    open: () => undefined,
    close: () => undefined,
    failureOf,
    methods: {
      'emu.mmioRead': async (params) => ({ value: port(params).mmioRead32(integer(params, 'offset')) }),
      'emu.mmioWrite': async (params) => {
        port(params).mmioWrite32(integer(params, 'offset'), integer(params, 'value'));
        return {};
      },
      'emu.memRead': async (params) => {
        const bytes = port(params).memRead(integer(params, 'address'), integer(params, 'length'));
        return { data: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64') };
      },
      'emu.memWrite': async (params) => {
        port(params).memWrite(integer(params, 'address'), base64(params, 'data'));
        return {};
      },
      'emu.interrupts': async (params) => ({ counts: [...port(params).interruptCounts()] }),
    },
  });
}
