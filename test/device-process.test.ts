/**
 * nvme-emu's controllers in a device process of their own (issue 8 §2):
 * the agent starts it, the guest reaches the VF's host port at the device,
 * and an agent killed with SIGKILL takes nothing of the device with it:
 * guest I/O goes on, a new agent attaches to the same device and reports
 * the VF's true state, asked of the device. A device that dies is reported
 * and refused, never pretended.
 */
import test from 'ava';
import { BDF, deviceRig as rig } from './support/device-rig.ts';
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
