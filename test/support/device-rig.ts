/**
 * Agents whose nvme-emu controllers run in a device process of their own,
 * for the tests of what survives an agent (device-process, crash-recovery):
 * the agent's config, a way to start (and start again) an agent on it, the
 * guest's side of the VF's link at the device, and the device's pid. Every
 * device process is killed when its test ends.
 */
import type { ExecutionContext } from 'ava';
import { join } from 'node:path';
import type { Config } from '../../schemas/types.ts';
import { LineRpcClient } from '../../vendor-drivers/nvme-emu/device/line-rpc.ts';
import { startAgentProcess, tempDir, type AgentProcess } from './agent-process.ts';
import { rpcHostPort, type GuestHostPort } from './host-port.ts';
import { vfConfig } from './migration-rig.ts';
import { RpcClient } from './rpc-client.ts';

export const BDF = '0000:3b:00.2';

export interface DeviceRig {
  readonly config: Config;
  readonly socket: string;
  start(): Promise<{ agent: AgentProcess; rpc: RpcClient }>;
  /** The guest's side of the VF's link, at the device process. */
  guestPort(rpc: RpcClient): Promise<GuestHostPort>;
  devicePid(): Promise<number>;
}

/**
 * An agent config whose nvme-emu controllers run in a device process (its
 * socket `<name>.sock` in `dir`; with `stateDir`, a journal beside it). VFs
 * of rigs on one `dir` share their namespace files, as with shared storage.
 * `config` adds to the agent's config (listeners, TLS, grants, leases); a
 * listener the VMM is to find again after a restart needs a fixed port.
 */
export function deviceRig(t: ExecutionContext, options: { dir?: string; name?: string; stateDir?: boolean; config?: Partial<Config> } = {}): DeviceRig {
  const dir = options.dir ?? tempDir();
  const name = options.name ?? 'device';
  const socket = join(dir, `${name}.sock`);
  const config: Config = {
    ...options.config,
    ...(options.stateDir === true ? { stateDir: join(dir, `${name}-state`) } : {}),
    drivers: [{ driver: 'nvme-emu', options: { hostPort: true, serviceTimeUs: 2000, vfs: [vfConfig(dir)], device: { mode: 'supervised', socket, callTimeoutMs: 1000 } } }],
  };
  const devicePid = async (): Promise<number> => {
    const link = new LineRpcClient(socket);
    try {
      return ((await link.call('device.info', {}, 5000)) as { pid: number }).pid;
    } finally {
      link.close();
    }
  };
  t.teardown(async () => {
    try {
      process.kill(await devicePid(), 'SIGKILL');
    } catch {
      // the test killed it already
    }
  });
  return {
    config,
    socket,
    devicePid,
    start: async () => {
      const agent = await startAgentProcess({ config });
      t.teardown(async () => { await agent.stop(); });
      const rpc = await RpcClient.connect(agent.tcp);
      t.teardown(() => rpc.destroy());
      return { agent, rpc };
    },
    guestPort: async (rpc) => {
      const details = (await rpc.call('vf.get', { vf: BDF })).details as { hostPort?: string };
      const at = /^tcp:\/\/(.+):(\d+)$/.exec(details.hostPort ?? '');
      if (at === null) throw new Error(`vf.get says no host port: ${JSON.stringify(details)}`);
      const link = await RpcClient.connect({ host: at[1] as string, port: Number(at[2]) });
      t.teardown(() => link.destroy());
      return rpcHostPort(async (method, params) => link.callAny(method, params), BDF);
    },
  };
}
