/**
 * nvme-emu's controllers in a device process of their own (issue 8 §2):
 * the agent starts it, the guest reaches the VF's host port at the device,
 * and an agent killed with SIGKILL takes nothing of the device with it:
 * guest I/O goes on, a new agent attaches to the same device and reports
 * the VF's true state, asked of the device. A device that dies is reported
 * and refused, never pretended.
 */
import test, { type ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { LineRpcClient } from '../vendor-drivers/nvme-emu/device/line-rpc.ts';
import { AGENT_MAIN, tempDir } from './support/agent-process.ts';
import { BDF, deviceRig as rig } from './support/device-rig.ts';
import { RpcClient } from './support/rpc-client.ts';
import { busyGuest, finishClean, pauseWithCommandsInFlight } from './support/migration-rig.ts';

test('the agent starts the device process; the guest runs on it through the host port it serves, not through the agent', async (t) => {
  const r = rig(t);
  const { agent, rpc } = await r.start();
  await agent.waitForLog('nvme-emu device process started');
  const vf = await rpc.call('vf.get', { vf: BDF });
  t.false(vf.capabilities.hostPort, 'emu.* are not the agent\'s: the device serves them');
  t.regex(String((vf.details as { hostPort?: string }).hostPort), /^tcp:\/\/127\.0\.0\.1:\d+$/);
  t.like((await rpc.callError('emu.mmioRead', { vf: BDF, offset: 0 })).data, { code: 'FEATURE_DISABLED' });
  const health = await rpc.call('agent.health', {});
  t.like(health.checks.find((c) => c.name === 'device-process'), { ok: true });
  const guest = await busyGuest(await r.guestPort(rpc), 0xd1ce);
  await pauseWithCommandsInFlight(t, guest.workload);
  t.like(await rpc.call('vf.quiesce', { vf: BDF }), { state: 'STOP' });
  t.like(await rpc.call('vf.resume', { vf: BDF }), { state: 'RUNNING' });
  await finishClean(t, guest, 500);
});

test('SIGKILL of the agent leaves the device running: guest I/O goes on, and a new agent attaches and reports the VF as the device has it', async (t) => {
  const r = rig(t);
  const first = await r.start();
  const pid = await r.devicePid();
  const guest = await busyGuest(await r.guestPort(first.rpc), 0xa11e);
  first.agent.kill();
  // Nobody serves the VF's control path now; the guest does not notice.
  await guest.workload.runUntil(guest.workload.stats().completed + 500);
  const second = await r.start();
  await second.agent.waitForLog('attached to the running nvme-emu device process');
  t.is(await r.devicePid(), pid, 'the same device process');
  t.like((await second.rpc.call('vf.list', {})).vfs[0], { state: 'RUNNING', stranded: false });
  await pauseWithCommandsInFlight(t, guest.workload);
  t.like(await second.rpc.call('vf.quiesce', { vf: BDF }), { state: 'STOP' });
  t.like(await second.rpc.call('vf.resume', { vf: BDF }), { state: 'RUNNING' });
  await finishClean(t, guest, 500);
});

test('an agent killed after a quiesce restarts to find the VF stopped, as the device has it: stranded, never resumed by itself; a resume loses nothing', async (t) => {
  const r = rig(t);
  const first = await r.start();
  const guest = await busyGuest(await r.guestPort(first.rpc), 0x57a7);
  await pauseWithCommandsInFlight(t, guest.workload);
  await first.rpc.call('vf.quiesce', { vf: BDF });
  first.agent.kill();
  const second = await r.start();
  await second.agent.waitForLog('VF found out of RUNNING at start');
  const vf = await second.rpc.call('vf.get', { vf: BDF });
  t.like(vf, { state: 'STOP', stranded: true, migration: { lease: null } });
  t.regex(vf.migration?.stranded?.reason ?? '', /found stopped/);
  t.like(await second.rpc.call('vf.resume', { vf: BDF }), { state: 'RUNNING', path: ['RUNNING_P2P', 'RUNNING'] });
  await finishClean(t, guest, 500);
});

test('SIGKILL of the device process: health says so, calls on its VFs are refused with DEVICE_UNREACHABLE, and nothing pretends to work', async (t) => {
  const r = rig(t);
  const { rpc } = await r.start();
  process.kill(await r.devicePid(), 'SIGKILL');
  const health = await rpc.call('agent.health', {});
  t.is(health.status, 'degraded');
  const check = health.checks.find((c) => c.name === 'device-process');
  t.false(check?.ok);
  t.regex(check?.detail ?? '', /did not answer/);
  for (const [method, params] of [['vf.quiesce', { vf: BDF }], ['vf.get', { vf: BDF }], ['vf.pending', { vf: BDF }], ['vf.save', { vf: BDF }]] as const) {
    const refused = await rpc.callError(method, params);
    t.is(refused.data?.code, 'DEVICE_UNREACHABLE', method);
  }
  t.like((await rpc.call('vf.list', {})).vfs[0], { state: 'RUNNING' }, 'the state the agent last knew, unchanged');
});

/** `vfmigd` with no config file, as `npm start` runs it, its temp dir (and so nvme-emu's data dir) in `tmp`; resolves to its TCP port once it listens. */
function standalone(t: ExecutionContext, tmp: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [AGENT_MAIN, '--listen', 'tcp://127.0.0.1:0'], { env: { ...process.env, TMPDIR: tmp }, stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => { child.kill('SIGKILL'); });
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const entry = JSON.parse(line) as { msg?: string; listen?: string[] };
      const port = /:(\d+)$/.exec(entry.listen?.[0] ?? '')?.[1];
      if (entry.msg === 'listening' && port !== undefined) resolve({ child, port: Number(port) });
    });
    child.once('exit', (code) => reject(new Error(`vfmigd exited with ${code} before listening`)));
  });
}

test('with no config file (npm start) the VFs run in a device process that the agent starts, that outlives it, and that the next agent attaches to', async (t) => {
  const tmp = tempDir();
  const socket = join(tmp, 'vfmigd', 'device.sock');
  t.teardown(async () => {
    const link = new LineRpcClient(socket);
    try {
      process.kill(((await link.call('device.info', {}, 2000)) as { pid: number }).pid, 'SIGKILL');
    } catch {
      // not running
    } finally {
      link.close();
    }
  });
  const first = await standalone(t, tmp);
  const rpc = await RpcClient.connect({ host: '127.0.0.1', port: first.port });
  t.teardown(() => rpc.destroy());
  t.is((await rpc.call('vf.list', {})).vfs.length, 4);
  t.like((await rpc.call('agent.health', {})).checks.find((c) => c.name === 'device-process'), { ok: true });
  t.regex(String(((await rpc.call('vf.get', { vf: 'nvme0' })).details as { hostPort?: string }).hostPort), /^tcp:\/\/127\.0\.0\.1:\d+$/);
  const exited = new Promise((resolve) => first.child.once('exit', resolve));
  first.child.kill('SIGTERM');
  await exited;
  const link = new LineRpcClient(socket);
  t.teardown(() => link.close());
  const device = (await link.call('device.info', {}, 5000)) as { pid: number; vfs: unknown[] };
  t.is(device.vfs.length, 4, 'the device process runs on after the agent stopped');
  const second = await standalone(t, tmp);
  const again = await RpcClient.connect({ host: '127.0.0.1', port: second.port });
  t.teardown(() => again.destroy());
  const check = (await again.call('agent.health', {})).checks.find((c) => c.name === 'device-process');
  t.true(check?.ok);
  t.regex(check?.detail ?? '', new RegExp(`pid ${device.pid}`), 'the same device process');
});
