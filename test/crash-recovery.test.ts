/**
 * Crash-safe sessions (issue 8 §3): agents with a journal (`stateDir`) and
 * nvme-emu in a device process, killed with SIGKILL in the middle of a
 * migration, with a guest whose commands are in flight. The restarted
 * agent reads the journal, checks it against the device, and the VMM goes
 * on where that is safe: a stopped source hands out its stream again under
 * the same session, byte for byte (the destination's record checks would
 * refuse anything else), from the offset the VMM had reached. A
 * destination loses what it had received, and says so. A torn journal is
 * refused line by line and never stops the agent.
 */
import test, { type ExecutionContext } from 'ava';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, type AgentProcess } from './support/agent-process.ts';
import { BDF, deviceRig, type DeviceRig } from './support/device-rig.ts';
import { copyGuestMemory } from './support/host-port.ts';
import { busyGuest, finishClean, loadAll, pauseWithCommandsInFlight, type BusyGuest } from './support/migration-rig.ts';
import { base64Of, type RpcClient } from './support/rpc-client.ts';

const SLICE = 509;

/** Two agents on one storage, journals on; a busy guest on the source, its VF quiesced with commands in flight. */
async function quiescedSource(t: ExecutionContext, seed: number): Promise<{ source: DeviceRig; destination: DeviceRig; src: { agent: AgentProcess; rpc: RpcClient }; guest: BusyGuest }> {
  const dir = tempDir();
  const source = deviceRig(t, { dir, name: 'source', stateDir: true });
  const destination = deviceRig(t, { dir, name: 'destination', stateDir: true });
  const src = await source.start();
  const guest = await busyGuest(await source.guestPort(src.rpc), seed);
  await pauseWithCommandsInFlight(t, guest.workload);
  await src.rpc.call('vf.quiesce', { vf: BDF });
  return { source, destination, src, guest };
}

/** `count` slices of the save stream from `offset`, naming `session` when given. */
async function saveSlices(rpc: RpcClient, offset: number, count: number, session?: string): Promise<{ slices: Buffer[]; session: string; eof: boolean }> {
  const slices: Buffer[] = [];
  let at = offset;
  let id = session;
  for (let n = 0; n < count; n += 1) {
    const slice = await rpc.call('vf.save', { vf: BDF, maxBytes: SLICE, offset: at, ...(id === undefined ? {} : { session: id }) });
    id = slice.session;
    const bytes = Buffer.from(base64Of(slice.data), 'base64');
    slices.push(bytes);
    at += bytes.length;
    if (slice.eof) return { slices, session: id, eof: true };
  }
  return { slices, session: id as string, eof: false };
}

test('SIGKILL of the source agent in the middle of the save: the restarted agent reopens the same session, and the VMM reads on from its offset to a destination that takes it', async (t) => {
  const { source, destination, src: before, guest: { nvme, workload } } = await quiescedSource(t, 0xc4a5);
  const first = await saveSlices(before.rpc, 0, 2);
  t.false(first.eof);
  before.agent.kill();

  const after = await source.start();
  const recovered = await after.agent.waitForLog('migration recovered from the journal');
  t.like(recovered, { state: 'STOP_COPY', owner: 'local', session: first.session });
  t.like(await after.rpc.call('vf.get', { vf: BDF }), { state: 'STOP_COPY', stranded: false, session: { id: first.session }, migration: { owner: 'local', role: 'source' } });
  const offset = first.slices.reduce((n, b) => n + b.length, 0);
  const rest = await saveSlices(after.rpc, offset, 1000, first.session);
  t.true(rest.eof);
  t.is(rest.session, first.session, 'the same session, named by every slice');

  // The destination verifies every record: the stream is whole and unchanged.
  const target = await destination.start();
  const sourcePort = await source.guestPort(after.rpc);
  const destinationPort = await destination.guestPort(target.rpc);
  await copyGuestMemory(sourcePort, destinationPort, nvme.memoryRegions());
  await target.rpc.call('vf.setState', { vf: BDF, state: 'STOP' });
  await loadAll(target.rpc, BDF, [...first.slices, ...rest.slices]);
  t.like(await target.rpc.call('vf.resume', { vf: BDF }), { state: 'RUNNING' });
  await nvme.attach(destinationPort);
  await finishClean(t, { nvme, workload }, 500);
});

test('SIGKILL of the destination agent in the middle of the load: its bytes are lost, the session ends with a clear error, and the source is cancelled with nothing lost', async (t) => {
  const { destination, src, guest } = await quiescedSource(t, 0xde5d);
  const whole = await saveSlices(src.rpc, 0, 1000);
  const before = await destination.start();
  await before.rpc.call('vf.setState', { vf: BDF, state: 'STOP' });
  const loaded = await before.rpc.call('vf.load', { vf: BDF, offset: 0, data: (whole.slices[0] ?? Buffer.alloc(0)).toString('base64') });
  before.agent.kill();

  const after = await destination.start();
  await after.agent.waitForLog('migration recovered from the journal');
  t.like(await after.rpc.call('vf.get', { vf: BDF }), { state: 'STOP', session: null, migration: { role: 'destination', applied: false } });
  const refused = await after.rpc.callError('vf.load', { vf: BDF, offset: whole.slices[0]?.length ?? 0, session: loaded.session, data: (whole.slices[1] ?? Buffer.alloc(0)).toString('base64') });
  t.is(refused.data?.code, 'SESSION_UNKNOWN');
  t.is(refused.data?.state, 'STOP');
  // A VMM that goes to RUNNING naming its resume session is refused too: the VF would run its state from before.
  const run = await after.rpc.callError('vf.setState', { vf: BDF, state: 'RUNNING', session: loaded.session });
  t.like(run.data, { code: 'SESSION_UNKNOWN', state: 'STOP' });

  // The migration failed: the source's VMM cancels, and the source runs on.
  t.like(await src.rpc.call('vf.resume', { vf: BDF }), { state: 'RUNNING' });
  await finishClean(t, guest, 500);
});

test('a torn or corrupted journal is refused line by line: the agent starts, says which lines, and the device\'s state wins', async (t) => {
  const rig = deviceRig(t, { stateDir: true });
  const first = await rig.start();
  const guest = await busyGuest(await rig.guestPort(first.rpc), 0x7042);
  await pauseWithCommandsInFlight(t, guest.workload);
  await first.rpc.call('vf.quiesce', { vf: BDF });
  first.agent.kill();
  const journal = join(String(rig.config.stateDir), 'sessions.journal');
  const lines = readFileSync(journal, 'utf8').split('\n').filter((l) => l !== '');
  t.true(lines.length >= 1);
  // One flipped byte in the entry, and half an entry after it (a write torn by the crash).
  const last = lines.at(-1) as string;
  const flipped = `${last.slice(0, 20)}${last[20] === 'a' ? 'b' : 'a'}${last.slice(21)}`;
  writeFileSync(journal, `${[...lines.slice(0, -1), flipped].join('\n')}\n`);
  appendFileSync(journal, last.slice(0, last.length >> 1));

  const second = await rig.start();
  const refusedLog = await second.agent.waitForLog('journal lines failed their checksum');
  t.deepEqual(refusedLog.refusedLines, [lines.length, lines.length + 1]);
  // The entry that said "stopped by local" is gone: the device says stopped, so the VF is stranded, nobody's.
  t.like(await second.rpc.call('vf.get', { vf: BDF }), { state: 'STOP', stranded: true });
  t.like(await second.rpc.call('vf.resume', { vf: BDF }), { state: 'RUNNING' });
  await finishClean(t, guest, 500);
});

test('SIGKILL of the source agent after the last byte went out: the restarted agent knows the state left, and its lease ending strands the VF instead of resuming it', async (t) => {
  const { source, src: before, guest } = await quiescedSource(t, 0x1a57);
  const whole = await saveSlices(before.rpc, 0, 1000);
  t.true(whole.eof);
  before.agent.kill();

  const after = await source.start();
  await after.agent.waitForLog('migration recovered from the journal');
  t.like((await after.rpc.call('vf.get', { vf: BDF })).migration, { owner: 'local', readToEnd: true });
  // The VMM does not come back: its last call, as it were, asks for a short lease.
  await after.rpc.call('vf.renewLease', { vf: BDF, leaseMs: 100 });
  await after.agent.waitForLog('VF stranded');
  t.like((await after.rpc.call('vf.list', {})).vfs[0], { state: 'STOP', stranded: true });
  // The operator knows the destination never ran it.
  t.like(await after.rpc.call('vf.resume', { vf: BDF }), { state: 'RUNNING' });
  await finishClean(t, guest, 500);
});

test('SIGKILL of the destination agent after the load, before the resume: the applied state is the device\'s, and the VMM resumes it there', async (t) => {
  const { source, destination, src, guest: { nvme, workload } } = await quiescedSource(t, 0xaf7e);
  const whole = await saveSlices(src.rpc, 0, 1000);
  const before = await destination.start();
  const destinationPort = await destination.guestPort(before.rpc);
  await copyGuestMemory(await source.guestPort(src.rpc), destinationPort, nvme.memoryRegions());
  await before.rpc.call('vf.setState', { vf: BDF, state: 'STOP' });
  await loadAll(before.rpc, BDF, whole.slices);
  await before.rpc.call('vf.setState', { vf: BDF, state: 'STOP' });
  before.agent.kill();

  const after = await destination.start();
  await after.agent.waitForLog('migration recovered from the journal');
  t.like(await after.rpc.call('vf.get', { vf: BDF }), { state: 'STOP', stranded: false, migration: { role: 'destination', applied: true, owner: 'local' } });
  t.like(await after.rpc.call('vf.resume', { vf: BDF }), { state: 'RUNNING' });
  await nvme.attach(destinationPort);
  await finishClean(t, { nvme, workload }, 500);
  t.like((await src.rpc.call('vf.list', {})).vfs[0], { state: 'STOP_COPY' }, 'the source never ran again');
});

test('SIGKILL of the source agent after the quiesce: the restarted agent gives the migration back to its owner under a lease, and the lease ending cancels it with nothing lost', async (t) => {
  const { source, src: before, guest } = await quiescedSource(t, 0x9a1e);
  before.agent.kill();

  const after = await source.start();
  await after.agent.waitForLog('migration recovered from the journal');
  t.like(await after.rpc.call('vf.get', { vf: BDF }), { state: 'STOP', stranded: false, migration: { owner: 'local', role: 'source', readToEnd: false, lease: { leaseMs: 30_000 } } });
  // The VMM does not come back.
  await after.rpc.call('vf.renewLease', { vf: BDF, leaseMs: 100 });
  await after.agent.waitForLog('migration cancelled');
  t.like(await after.rpc.call('vf.get', { vf: BDF }), { state: 'RUNNING', migration: null });
  await finishClean(t, guest, 500);
});
