/**
 * The agent's configuration: a file checked against schemas/config.json,
 * overlaid on the defaults below. A bad file names the bad field and the
 * agent does not start.
 */
import { readFileSync } from 'node:fs';
import type { Config } from '../schemas/types.ts';
import type { SchemaRegistry } from './rpc/schema-registry.ts';

export const DEFAULT_LISTEN = 'tcp://127.0.0.1:7700';

export interface ResolvedLimits {
  readonly maxMessageBytes: number;
  readonly maxConnections: number;
  readonly maxBatchLength: number;
  readonly maxInFlightPerConnection: number;
  readonly maxQueuedCallsPerVf: number;
  readonly maxStateBytes: number;
}

export interface ResolvedConfig {
  readonly listen: readonly string[];
  readonly logLevel: NonNullable<Config['logLevel']>;
  readonly limits: ResolvedLimits;
  readonly drivers: NonNullable<Config['drivers']>;
}

const MiB = 1024 * 1024;

const DEFAULT_LIMITS: ResolvedLimits = {
  maxMessageBytes: 8 * MiB,
  maxConnections: 64,
  maxBatchLength: 256,
  maxInFlightPerConnection: 32,
  maxQueuedCallsPerVf: 64,
  maxStateBytes: 1024 * MiB,
};

/** With no config file: the software NVMe driver, its defaults, and its host port on so a guest can use it. */
const DEFAULT_DRIVERS: NonNullable<Config['drivers']> = [{ driver: 'nvme-emu', options: { hostPort: true } }];

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export function loadConfigFile(path: string, schemas: SchemaRegistry): Config {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new ConfigError(`${path}: ${error instanceof Error ? error.message : String(error)}`);
  }
  const problems = schemas.checkConfig(value);
  if (problems.length > 0) {
    throw new ConfigError(problems.map((p) => `${path}: ${p.path} ${p.message}`).join('; '));
  }
  return value as Config;
}

export function resolveConfig(file: Config, overrides: { listen?: readonly string[]; logLevel?: string | undefined }): ResolvedConfig {
  const logLevel = overrides.logLevel ?? file.logLevel ?? 'info';
  if (!isLogLevel(logLevel)) throw new ConfigError(`log level "${logLevel}" is not one of fatal, error, warn, info, debug, trace, silent`);
  return {
    listen: overrides.listen !== undefined && overrides.listen.length > 0 ? overrides.listen : file.listen ?? [DEFAULT_LISTEN],
    logLevel,
    limits: { ...DEFAULT_LIMITS, ...file.limits },
    drivers: file.drivers ?? DEFAULT_DRIVERS,
  };
}

function isLogLevel(level: string): level is ResolvedConfig['logLevel'] {
  return ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(level);
}
