/**
 * The agent's configuration: a file checked against schemas/config.json,
 * overlaid on the defaults below. A bad file names the bad field and the
 * agent does not start.
 */
import { readFileSync } from 'node:fs';
import type { Config, Grant, TlsConfig } from '../schemas/types.ts';
import { DEFAULT_GRANTS } from './rpc/policy.ts';
import type { SchemaRegistry } from './rpc/schema-registry.ts';
import { DEFAULT_SOCKET_MODE, resolveGroup, resolveUser, type UnixSocketAccess } from './transport/unix-access.ts';

export const DEFAULT_LISTEN = 'tcp://127.0.0.1:7700';

export type ResolvedLimits = Required<NonNullable<Config['limits']>>;

export interface ResolvedTls extends Required<Omit<TlsConfig, 'crl'>> {
  readonly crl: string | undefined;
}

export interface ResolvedConfig {
  readonly listen: readonly string[];
  readonly insecure: boolean;
  readonly tls: ResolvedTls | undefined;
  readonly unixSocket: UnixSocketAccess;
  readonly grants: readonly Grant[];
  readonly logLevel: NonNullable<Config['logLevel']>;
  readonly auditLog: string | undefined;
  readonly limits: ResolvedLimits;
  readonly drivers: NonNullable<Config['drivers']>;
}

const MiB = 1024 * 1024;

const DEFAULT_LIMITS: ResolvedLimits = {
  maxMessageBytes: 8 * MiB,
  maxConnections: 256,
  maxConnectionsPerPeer: 32,
  maxBatchLength: 32,
  maxInFlightPerConnection: 32,
  maxUnsentBytesPerConnection: 192 * MiB,
  maxUnsentBytesTotal: 256 * MiB,
  messageTimeoutMs: 30_000,
  idleTimeoutMs: 300_000,
  maxQueuedCallsPerVf: 64,
  maxStateBytes: 1024 * MiB,
};

const DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

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
  const limits = { ...DEFAULT_LIMITS, ...file.limits };
  // A batch runs whole, so it can be no longer than the in-flight limit; lowering only that one lowers both.
  if (file.limits?.maxBatchLength === undefined) limits.maxBatchLength = Math.min(limits.maxBatchLength, limits.maxInFlightPerConnection);
  if (limits.maxBatchLength > limits.maxInFlightPerConnection) {
    throw new ConfigError(`limits.maxBatchLength (${limits.maxBatchLength}) must not exceed limits.maxInFlightPerConnection (${limits.maxInFlightPerConnection}): a batch runs whole`);
  }
  const listen = overrides.listen !== undefined && overrides.listen.length > 0 ? overrides.listen : file.listen ?? [DEFAULT_LISTEN];
  if (file.tls === undefined && listen.some((l) => l.startsWith('tls://'))) {
    throw new ConfigError('a tls:// listener needs the "tls" section (cert, key, ca)');
  }
  return {
    listen,
    insecure: file.insecure ?? false,
    tls: file.tls === undefined ? undefined : {
      cert: file.tls.cert,
      key: file.tls.key,
      ca: file.tls.ca,
      crl: file.tls.crl,
      minVersion: file.tls.minVersion ?? 'TLSv1.3',
      handshakeTimeoutMs: file.tls.handshakeTimeoutMs ?? DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS,
    },
    unixSocket: unixSocketAccess(file.unixSocket),
    grants: file.authorization?.grants ?? DEFAULT_GRANTS,
    logLevel,
    auditLog: file.auditLog,
    limits,
    drivers: file.drivers ?? DEFAULT_DRIVERS,
  };
}

function unixSocketAccess(given: Config['unixSocket']): UnixSocketAccess {
  try {
    return {
      mode: given?.mode === undefined ? DEFAULT_SOCKET_MODE : Number.parseInt(given.mode, 8),
      uid: given?.owner === undefined ? undefined : resolveUser(given.owner),
      gid: given?.group === undefined ? undefined : resolveGroup(given.group),
    };
  } catch (error) {
    throw new ConfigError(`unixSocket: ${error instanceof Error ? error.message : String(error)}`);
  }
}

function isLogLevel(level: string): level is ResolvedConfig['logLevel'] {
  return ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(level);
}
