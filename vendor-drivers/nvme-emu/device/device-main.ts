/**
 * The nvme-emu device process: the stand-in for a DPU's device firmware.
 * It runs the controllers, serves the control link that the agent's
 * nvme-emu driver uses (a Unix socket) and, when asked, the host port that
 * guests reach (loopback TCP). It outlives the agent: the agent starts it
 * and attaches to it again after a restart.
 *
 *   node dist/vendor-drivers/nvme-emu/device/device-main.js \
 *     --control PATH (--options FILE | --options-json JSON) [--host-port tcp://HOST:PORT]
 *
 * The agent that supervises it passes its options as JSON; a unit of its
 * own (deploy/vfmigd-nvme-emu.service) names a file, checked against
 * schemas/drivers/nvme-emu.json as the agent checks its config.
 *
 * Logs are pino JSON on stdout. SIGTERM or SIGINT stops it; the device's
 * state is gone then, as a powered-off device's is. Under systemd it says
 * READY=1 once the control socket listens, and STOPPING=1.
 */
import { chmodSync, existsSync, readFileSync, unlinkSync } from 'node:fs';
import { connect, type AddressInfo, type Server } from 'node:net';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { SchemaRegistry, violations } from '../../../agent/rpc/schema-registry.ts';
import { openServiceNotifier } from '../../../agent/service/sd-notify.ts';
import type { NvmeEmuOptions } from '../../../schemas/types.ts';
import { NvmeEmuDriver } from '../nvme-emu-driver.ts';
import { controlServer, type DeviceInfo } from './device-server.ts';
import { hostPortServer } from './host-port-server.ts';

const log = pino({ name: 'nvme-emu-device', base: { pid: process.pid } });

/** A socket file left by a device that died is removed; one that a live device answers on is not taken. */
async function claimSocket(path: string): Promise<void> {
  if (!existsSync(path)) return;
  const alive = await new Promise<boolean>((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => { probe.destroy(); resolve(true); });
    probe.once('error', () => resolve(false));
  });
  if (alive) throw new Error(`another device process serves ${path}`);
  unlinkSync(path);
}

function listen(server: Server, target: string | { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => { server.off('error', reject); resolve(); };
    if (typeof target === 'string') server.listen(target, done);
    else server.listen(target.port, target.host, done);
  });
}

/**
 * nvme-emu's options from FILE, refused unless they are valid options of
 * the driver. `device` says where an agent finds the controllers: this is
 * where they are, so it has no place here.
 */
function readOptionsFile(path: string): NvmeEmuOptions {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new Error(`--options ${path}: ${error instanceof Error ? error.message : String(error)}`);
  }
  const schemas = new SchemaRegistry(undefined, { lazy: true });
  const validate = schemas.ajv.getSchema('https://vfmigd.dev/schemas/drivers/nvme-emu.json');
  if (validate === undefined) throw new Error('schemas/drivers/nvme-emu.json is not loaded');
  if (!validate(value)) throw new Error(violations(validate.errors).map((v) => `--options ${path}: ${v.path} ${v.message}`).join('; '));
  const options = value as NvmeEmuOptions;
  if (options.device !== undefined) throw new Error(`--options ${path}: /device is the agent's side of the link (where it finds this process), not an option of the device`);
  return options;
}

async function main(): Promise<void> {
  const usage = 'usage: device-main --control PATH (--options FILE | --options-json JSON) [--host-port tcp://HOST:PORT]';
  const { values } = parseArgs({ options: { control: { type: 'string' }, options: { type: 'string' }, 'options-json': { type: 'string' }, 'host-port': { type: 'string' } } });
  if (values.control === undefined || (values.options === undefined) === (values['options-json'] === undefined)) throw new Error(usage);
  const hostPortAt = values['host-port'] === undefined ? undefined : /^tcp:\/\/(.+):(\d+)$/.exec(values['host-port']);
  if (values['host-port'] !== undefined && (hostPortAt === null || hostPortAt === undefined)) throw new Error(`--host-port ${values['host-port']}: want tcp://HOST:PORT`);
  const options = values.options === undefined ? JSON.parse(values['options-json'] as string) as NvmeEmuOptions : readOptionsFile(values.options);
  const notifier = openServiceNotifier(log);
  const driver = new NvmeEmuDriver({ ...options, hostPort: hostPortAt !== undefined });
  await driver.start(log);

  let hostPort: string | null = null;
  const servers: Server[] = [];
  if (hostPortAt !== undefined && hostPortAt !== null) {
    const server = hostPortServer((vf) => driver.hostPort(driver.idOf(vf)));
    await listen(server, { host: hostPortAt[1] as string, port: Number(hostPortAt[2]) });
    const address = server.address() as AddressInfo;
    hostPort = `tcp://${address.address}:${address.port}`;
    servers.push(server);
  }
  const startedAt = new Date().toISOString();
  const info = (): DeviceInfo => ({
    pid: process.pid,
    startedAt,
    hostPort,
    capabilities: driver.capabilities,
    stateFormats: driver.stateFormats,
    saveFormats: driver.saveFormats,
    vfs: driver.listVfs(),
  });
  await claimSocket(values.control);
  const control = controlServer(driver, info);
  await listen(control, values.control);
  // The control link is the device's firmware interface: its owner's (the agent's user) alone.
  chmodSync(values.control, 0o600);
  servers.push(control);
  log.info({ control: values.control, hostPort, vfs: driver.listVfs().length }, 'device ready');

  const stop = (signal: string): void => {
    log.info({ signal }, 'device stopping');
    notifier.stopping();
    notifier.close();
    for (const server of servers) server.close();
    void driver.stop().finally(() => process.exit(0));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  // After the handlers: a SIGTERM sent the moment READY=1 is heard stops the device cleanly.
  notifier.ready(`${driver.listVfs().length} VFs, control socket ${values.control}${hostPort === null ? '' : `, host port ${hostPort}`}`);
}

main().catch((error: unknown) => {
  log.fatal({ err: error instanceof Error ? error.message : String(error) }, 'device failed to start');
  process.exit(1);
});
