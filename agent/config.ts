/**
 * The agent's configuration: a file checked against schemas/config.json,
 * overlaid on the defaults that schema declares. A bad file names the bad
 * field and the agent does not start.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config, Grant, TlsConfig } from '../schemas/types.ts';
import { DEFAULT_GRANTS } from './rpc/policy.ts';
import { SCHEMAS_DIR, type SchemaRegistry } from './rpc/schema-registry.ts';
import { parseListenAddress } from './transport/listen-address.ts';
import { resolveGroup, resolveUser, type UnixSocketAccess } from './transport/unix-access.ts';

export type ResolvedLimits = Required<NonNullable<Config['limits']>>;
export type ResolvedLeases = Required<NonNullable<Config['leases']>>;

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
  /** Where the Prometheus metrics are served; undefined: nowhere. */
  readonly metrics: { readonly host: string; readonly port: number } | undefined;
  readonly limits: ResolvedLimits;
  readonly leases: ResolvedLeases;
  readonly stateDir: string | undefined;
  readonly drivers: NonNullable<Config['drivers']>;
}

/** The config schema's own `default`s: the one place a default is written. */
const CONFIG_SCHEMA = JSON.parse(readFileSync(join(SCHEMAS_DIR, 'config.json'), 'utf8')) as ConfigSchema;

interface ConfigSchema {
  readonly properties: Record<string, { readonly default?: unknown; readonly properties?: Record<string, { readonly default?: unknown }> }>;
}

function defaultsOf(section: string): Record<string, unknown> {
  const properties = CONFIG_SCHEMA.properties[section]?.properties ?? {};
  return Object.fromEntries(Object.entries(properties).map(([name, p]) => {
    if (p.default === undefined) throw new Error(`schemas/config.json: ${section}.${name} has no default`);
    return [name, p.default];
  }));
}

function defaultOf<T>(path: string): T {
  const [section, name] = path.split('.') as [string, string | undefined];
  const node = name === undefined ? CONFIG_SCHEMA.properties[section] : CONFIG_SCHEMA.properties[section]?.properties?.[name];
  if (node?.default === undefined) throw new Error(`schemas/config.json: ${path} has no default`);
  return node.default as T;
}

const DEFAULT_LIMITS = defaultsOf('limits') as unknown as ResolvedLimits;
const DEFAULT_LEASES = defaultsOf('leases') as unknown as ResolvedLeases;
export const DEFAULT_LISTEN = defaultOf<string[]>('listen');

/** A config file that names no driver: the software NVMe driver, its defaults, and its host port on so a guest can use it. */
const DEFAULT_DRIVERS: NonNullable<Config['drivers']> = [{ driver: 'nvme-emu', options: { hostPort: true } }];

/**
 * With no config file at all (`npm start`): the same VFs, their controllers
 * in a device process of their own that the agent starts, or attaches to
 * if one already runs, and that outlives it, as hardware does.
 */
export const STANDALONE_CONFIG: Config = { drivers: [{ driver: 'nvme-emu', options: { hostPort: true, device: { mode: 'supervised' } } }] };

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
  const logLevel = overrides.logLevel ?? file.logLevel ?? defaultOf<string>('logLevel');
  if (!isLogLevel(logLevel)) throw new ConfigError(`log level "${logLevel}" is not one of fatal, error, warn, info, debug, trace, silent`);
  const limits = { ...DEFAULT_LIMITS, ...file.limits };
  // A batch runs whole, so it can be no longer than the in-flight limit; lowering only that one lowers both.
  if (file.limits?.maxBatchLength === undefined) limits.maxBatchLength = Math.min(limits.maxBatchLength, limits.maxInFlightPerConnection);
  if (limits.maxBatchLength > limits.maxInFlightPerConnection) {
    throw new ConfigError(`limits.maxBatchLength (${limits.maxBatchLength}) must not exceed limits.maxInFlightPerConnection (${limits.maxInFlightPerConnection}): a batch runs whole`);
  }
  const leases = { ...DEFAULT_LEASES, ...file.leases };
  if (leases.defaultMs > leases.maxMs) throw new ConfigError(`leases.defaultMs (${leases.defaultMs}) must not exceed leases.maxMs (${leases.maxMs})`);
  const listen = overrides.listen !== undefined && overrides.listen.length > 0 ? overrides.listen : file.listen ?? DEFAULT_LISTEN;
  if (file.tls === undefined && listen.some((l) => l.startsWith('tls://'))) {
    throw new ConfigError('a tls:// listener needs the "tls" section (cert, key, ca)');
  }
  return {
    listen,
    insecure: file.insecure ?? defaultOf<boolean>('insecure'),
    tls: file.tls === undefined ? undefined : {
      cert: file.tls.cert,
      key: file.tls.key,
      ca: file.tls.ca,
      crl: file.tls.crl,
      minVersion: file.tls.minVersion ?? defaultOf<'TLSv1.3'>('tls.minVersion'),
      handshakeTimeoutMs: file.tls.handshakeTimeoutMs ?? defaultOf<number>('tls.handshakeTimeoutMs'),
    },
    unixSocket: unixSocketAccess(file.unixSocket),
    grants: file.authorization?.grants ?? DEFAULT_GRANTS,
    logLevel,
    auditLog: file.auditLog,
    metrics: file.metrics === undefined ? undefined : metricsAddress(file.metrics.listen),
    limits,
    leases,
    stateDir: file.stateDir,
    drivers: file.drivers ?? DEFAULT_DRIVERS,
  };
}

function unixSocketAccess(given: Config['unixSocket']): UnixSocketAccess {
  try {
    return {
      mode: Number.parseInt(given?.mode ?? defaultOf<string>('unixSocket.mode'), 8),
      uid: given?.owner === undefined ? undefined : resolveUser(given.owner),
      gid: given?.group === undefined ? undefined : resolveGroup(given.group),
    };
  } catch (error) {
    throw new ConfigError(`unixSocket: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** `HOST:PORT`, read as the RPC listeners' `tcp://HOST:PORT` is (the schema checked its form; the port's range is checked here). */
function metricsAddress(listen: string): { host: string; port: number } {
  try {
    const address = parseListenAddress(`tcp://${listen}`);
    if (address.kind === 'unix') throw new Error('not HOST:PORT');
    return { host: address.host, port: address.port };
  } catch {
    throw new ConfigError(`metrics.listen "${listen}" is not HOST:PORT with a port from 0 to 65535 (e.g. 127.0.0.1:9770 or [::1]:9770)`);
  }
}

function isLogLevel(level: string): level is ResolvedConfig['logLevel'] {
  return ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(level);
}
