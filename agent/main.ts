/**
 * `vfmigd`: the command line. Reads flags and the config file, starts the
 * agent, and stops it cleanly on SIGTERM or SIGINT. Under systemd
 * (deploy/vfmigd.service) it tells systemd when it is ready, what it holds
 * and when it stops, and keeps the watchdog fed (agent/service/).
 */
import { parseArgs } from 'node:util';
import { pino, type Logger } from 'pino';
import { API_VERSION, packageVersion, startAgent } from './agent.ts';
import { ConfigError, loadConfigFile, resolveConfig, STANDALONE_CONFIG, type ResolvedConfig } from './config.ts';
import { watchParent } from './parent-watch.ts';
import { SchemaRegistry } from './rpc/schema-registry.ts';
import { openServiceNotifier, type ServiceNotifier } from './service/sd-notify.ts';
import { followServiceStatus } from './service/service-status.ts';

const USAGE = `Usage: vfmigd [--config FILE] [--listen ADDR]... [--log-level LEVEL]

Serves JSON-RPC 2.0 for live migration of the VFs its drivers manage.
With no config, runs the software NVMe driver (nvme-emu) with 4 VFs in a device
process that it starts (or attaches to) and that outlives it.
SIGHUP reloads the TLS credentials; SIGTERM or SIGINT stops cleanly.

  --config FILE      JSON config (schema: schemas/config.json)
  --listen ADDR      tls://HOST:PORT, tcp://HOST:PORT or unix:PATH; repeatable; replaces the config's listeners
                     (default tcp://127.0.0.1:7700)
  --log-level LEVEL  fatal|error|warn|info|debug|trace|silent (else VFMIGD_LOG_LEVEL, else the config)
  --help, --version
`;

async function main(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        config: { type: 'string' },
        listen: { type: 'string', multiple: true },
        'log-level': { type: 'string' },
        help: { type: 'boolean' },
        version: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    process.stderr.write(`vfmigd: ${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (args.version) {
    process.stdout.write(`vfmigd ${packageVersion()} (API ${API_VERSION})\n`);
    return 0;
  }
  const schemas = new SchemaRegistry();
  let config;
  try {
    const file = args.config === undefined ? STANDALONE_CONFIG : loadConfigFile(args.config, schemas);
    config = resolveConfig(file, { listen: args.listen, logLevel: args['log-level'] ?? process.env.VFMIGD_LOG_LEVEL });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`vfmigd: invalid config: ${error.message}\n`);
    return 2;
  }
  const log = pino({ name: 'vfmigd', level: config.logLevel });
  watchParent(log);
  const notifier = openServiceNotifier(log);
  try {
    return await serve(config, schemas, log, notifier);
  } finally {
    notifier.close();
  }
}

async function serve(config: ResolvedConfig, schemas: SchemaRegistry, log: Logger, notifier: ServiceNotifier): Promise<number> {
  notifier.status('starting: drivers, then listeners');
  let agent;
  try {
    agent = await startAgent(config, log, schemas);
  } catch (error) {
    log.fatal({ err: error }, 'start-up failed');
    notifier.status(`start-up failed: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  }
  // startAgent resolves once every driver has started and every listener is bound: a client systemd lets in finds the agent serving.
  const unfollow = followServiceStatus(agent.core, agent.listening, (status) => notifier.status(status));
  // SIGHUP: read the TLS credentials again (rotated certificate, new CRL); open connections stay.
  process.on('SIGHUP', () => {
    try {
      agent.reloadTls();
      log.info({ phase: 'reload' }, 'TLS credentials reloaded');
    } catch (error) {
      log.error({ phase: 'reload', err: error instanceof Error ? error.message : String(error) }, 'TLS reload failed; the credentials in use stay');
    }
  });
  const stopped = new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      log.info({ signal }, 'stopping');
      notifier.stopping('stopping: closing listeners and drivers');
      resolve();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  // Only now: a SIGTERM that systemd sends the moment it hears READY=1 must find its handler.
  notifier.ready();
  await stopped;
  unfollow();
  await agent.close();
  log.info('stopped');
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
