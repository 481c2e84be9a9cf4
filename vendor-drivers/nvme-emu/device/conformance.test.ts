/**
 * nvme-emu with its controllers in a device process, against the
 * vendor-driver conformance kit: the agent's end of the control link (the
 * driver the core sees) must pass what the in-agent driver passes. Each VF
 * is a device process of its own, started by the driver and stopped when
 * the case ends. The state changes (for PRE_COPY's dirty data) by a
 * register write through the device's host port; the quiesce-timeout case,
 * which needs guest commands in flight, is run on the in-agent driver only.
 */
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { NvmeEmuOptions } from '../../../schemas/types.ts';
import { conformanceSuite, type DriverVf } from '../../conformance/conformance-suite.ts';
import { deviceLinkOptions, NvmeEmuDeviceDriver } from '../device-driver.ts';
import { LineRpcClient } from './line-rpc.ts';
import { RpcClient } from '../../../test/support/rpc-client.ts';

const dataDir = mkdtempSync(join(tmpdir(), 'nvme-emu-device-conformance-'));
test.after.always(() => rmSync(dataDir, { recursive: true, force: true }));
let devices = 0;

/** Stops the device process at `socket` (SIGTERM, as its service manager would) and waits until it has exited: it holds files in `dataDir`. */
async function stopDevice(socket: string): Promise<void> {
  const link = new LineRpcClient(socket);
  let pid: number;
  try {
    pid = ((await link.call('device.info', {}, 5000)) as { pid: number }).pid;
  } finally {
    link.close();
  }
  process.kill(pid, 'SIGTERM');
  const alive = (): boolean => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  for (const deadline = performance.now() + 10_000; alive(); await new Promise((resolve) => setTimeout(resolve, 10))) {
    if (performance.now() > deadline) throw new Error(`device process ${pid} did not exit within 10 s of SIGTERM`);
  }
}

function vfOn(options: NvmeEmuOptions, serial?: string): () => Promise<DriverVf> {
  return async () => {
    const socket = join(dataDir, `d${devices++}.sock`);
    const vfs = [{ id: 'nvme0', bdf: '0000:3b:00.2', ...(serial === undefined ? {} : { serial }), namespaces: [{ path: join(dataDir, `${serial ?? 'shared'}.img`), sizeBytes: 16 * 1024 * 1024 }] }];
    const all: NvmeEmuOptions = { ...options, vfs, hostPort: true, device: { mode: 'supervised', socket } };
    const driver = new NvmeEmuDeviceDriver(all, deviceLinkOptions(all) ?? assertNever());
    await driver.start(pino({ enabled: false }));
    return { driver, vf: 'nvme0', close: async () => { await driver.stop(); await stopDevice(socket); } };
  };
}

let aqa = 0;

/** A register the controller keeps in its state (AQA, while it is disabled), written anew through the device's host port. */
async function change(subject: DriverVf): Promise<void> {
  const at = /^tcp:\/\/(.+):(\d+)$/.exec(String(((await subject.driver.describe(subject.vf)).details as { hostPort?: string }).hostPort));
  if (at === null) throw new Error('the device serves no host port');
  const port = await RpcClient.connect({ host: at[1] as string, port: Number(at[2]) });
  try {
    aqa = (aqa + 1) % 0x100;
    await port.callAny('emu.mmioWrite', { vf: subject.vf, offset: 0x24, value: (aqa << 16) | aqa });
  } finally {
    port.destroy();
  }
}

function assertNever(): never {
  throw new Error('device.mode supervised gives link options');
}

for (const [name, options] of [['nvme-emu in a device process', {}], ['nvme-emu in a device process, with PRE_COPY', { preCopy: true }]] as const) {
  conformanceSuite(test, name, {
    source: vfOn(options),
    destination: vfOn(options),
    foreign: vfOn(options, 'SOMEONE-ELSE'),
    change,
  });
}
