/**
 * Assembles a running agent from a resolved config, layer by layer:
 * drivers → migration core → method handlers → dispatcher → listeners.
 */
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { createDriver } from '../vendor-drivers/index.ts';
import type { ResolvedConfig } from './config.ts';
import { MigrationCore } from './core/migration-core.ts';
import { allHandlers } from './methods/index.ts';
import type { MethodHandler } from './rpc/dispatcher.ts';
import { Dispatcher } from './rpc/dispatcher.ts';
import { errorResponse } from './rpc/error-catalogue.ts';
import { buildOpenRpcDocument } from './rpc/openrpc.ts';
import { SchemaRegistry } from './rpc/schema-registry.ts';
import { gatherSocFacts } from './soc-facts.ts';
import { formatListenAddress, parseListenAddress } from './transport/listen-address.ts';
import { Listeners } from './transport/listener.ts';
import type { OpenrpcDocument } from '../schemas/types.ts';

/** MAJOR.MINOR of the JSON-RPC API; clients (the VMM plugin) check the major. */
export const API_VERSION = '1.0';

export interface RunningAgent {
  /** Bound addresses, e.g. `tcp://127.0.0.1:7700`. */
  readonly listening: readonly string[];
  close(): Promise<void>;
}

export async function startAgent(config: ResolvedConfig, log: Logger, schemas = new SchemaRegistry()): Promise<RunningAgent> {
  const startedAt = new Date();
  const version = packageVersion();
  const soc = gatherSocFacts();
  const drivers = config.drivers.map(createDriver);
  const core = new MigrationCore(drivers, { maxStateBytes: config.limits.maxStateBytes, maxQueuedCalls: config.limits.maxQueuedCallsPerVf }, log);
  await core.start();

  const listening: string[] = [];
  const openRpc = buildOpenRpcDocument(schemas, { version, apiVersion: API_VERSION }) as unknown as OpenrpcDocument;
  const handlers = allHandlers(core, { version, apiVersion: API_VERSION, startedAt, soc, openRpc, listeners: () => listening });
  const dispatcher = new Dispatcher(new Map(Object.entries(handlers) as [string, MethodHandler][]), schemas, config.limits, log);
  const listeners = new Listeners(dispatcher, config.limits, {
    messageTooLarge: (limit) => errorResponse(null, 'MESSAGE_TOO_LARGE', `a message may be at most ${limit} bytes; closing the connection`, { limit }),
    tooManyConnections: (limit) => errorResponse(null, 'TOO_MANY_CONNECTIONS', `the agent serves at most ${limit} connections; closing this one`, { limit }),
  }, log);
  try {
    for (const text of config.listen) {
      const bound = await listeners.listen(parseListenAddress(text));
      listening.push(formatListenAddress(bound.address));
    }
  } catch (error) {
    await listeners.close();
    await core.stop();
    throw error;
  }
  log.info({ listen: listening, vfs: core.list().length, drivers: drivers.map((d) => d.name), version }, 'listening');
  return {
    listening,
    close: async () => {
      await listeners.close();
      await core.stop();
    },
  };
}

export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL(import.meta.url.includes('/dist/') ? '../../package.json' : '../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}
