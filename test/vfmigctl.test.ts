/**
 * vfmigctl, the operator's CLI, run as a person runs it: the built
 * dist/agent/cli/vfmigctl.js spawned on this Node, against two real agent
 * processes (nvme-emu with pre-copy, on loopback TCP and mutual TLS),
 * shared by the tests of this file, each test on VFs of its own. Output
 * under --json is checked against the methods' result schemas; exit codes
 * against what the README says; migrations against a busy guest whose
 * every command must complete exactly once, wherever the device ends up.
 * The tests run at once: each migrates VFs no other test touches.
 */
import test, { type ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exitCodeTable } from '../agent/cli/exit-codes.ts';
import type { Side } from './support/migration-rig.ts';
import { busyGuest, finishClean, pauseWithCommandsInFlight, startSide, vfConfig } from './support/migration-rig.ts';
import { tempDir } from './support/agent-process.ts';
import { waitUntil } from './support/harness.ts';
import { copyGuestMemory } from './support/host-port.ts';
import { makePluginPki, PLUGIN_PRINCIPAL, tlsAgentConfig, type PluginPki } from './support/plugin-tls.ts';
import { readSection } from './support/readme-tables.ts';
import { schemas } from './support/rpc-client.ts';
import { pathsTaken, wireRecorder, type WireRecorder } from './support/wire-recorder.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const CLI = join(HERE, '..', 'agent', 'cli', 'vfmigctl.js');
const GATE = join(HERE, 'support', 'before-resume-gate.js');

const bdfOf = (index: number): string => vfConfig('', index).bdf;
/** The lease the busy migration asks for: short, so that its --before-resume command outlasts it, and long enough that a renewal a third of it in is never late on a loaded machine. */
const LEASE_MS = 1500;

interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

interface RunningCli {
  readonly child: ChildProcess;
  readonly done: Promise<CliRun>;
  stderr(): string;
  stdout(): string;
}

function startCli(args: readonly string[]): RunningCli {
  const env = { ...process.env };
  delete env.VFMIGD_AGENT;
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  const done = new Promise<CliRun>((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
  return { child, done, stderr: () => stderr, stdout: () => stdout };
}

function cli(...args: string[]): Promise<CliRun> {
  return startCli(args).done;
}

/** The whole of stdout as one JSON value: under --json nothing else may be there. */
function jsonOf(t: ExecutionContext, run: CliRun): Record<string, unknown> {
  try {
    return JSON.parse(run.stdout) as Record<string, unknown>;
  } catch {
    t.fail(`stdout is not one JSON text: ${run.stdout.slice(0, 300)} (stderr: ${run.stderr.slice(0, 300)})`);
    return {};
  }
}

/** `{error: {code, message, data}}`, as the CLI prints a failure under --json. */
function errorOf(t: ExecutionContext, run: CliRun): { code: number; message: string; data: Record<string, unknown> & { code: string; detail: string } } {
  const { error } = jsonOf(t, run) as { error?: { code: number; message: string; data: { code: string; detail: string } } };
  if (error === undefined) throw new Error(`no error in ${run.stdout.slice(0, 300)}`);
  t.is(typeof error.code, 'number');
  t.is(typeof error.message, 'string');
  return error;
}

function assertResult(t: ExecutionContext, method: string, run: CliRun): Record<string, unknown> {
  t.is(run.code, 0, run.stderr);
  const value = jsonOf(t, run);
  const schema = schemas().method(method);
  t.true(schema?.validateResult(value), `${method}: ${JSON.stringify(schema?.validateResult.errors)}`);
  return value;
}

/** The shared rig: two agents with the same VFs (nvme4's identity differs), the test PKI. */
interface Rig {
  readonly pki: PluginPki;
  readonly a: Side;
  readonly b: Side;
}

const teardowns: (() => unknown)[] = [];
let rig: Rig | undefined;
const shared = (): Rig => rig ?? (() => { throw new Error('the rig did not start'); })();

test.before(async () => {
  const pki = await makePluginPki();
  teardowns.push(() => pki.remove());
  const dir = tempDir();
  const same = [0, 1, 2, 3, 5, 6, 8].map((i) => vfConfig(dir, i));
  const registrar = { teardown: (fn: () => unknown) => { teardowns.push(fn); } };
  const config = tlsAgentConfig(pki, []);
  const [a, b] = await Promise.all([
    startSide(registrar, [...same, vfConfig(dir, 4)], 2000, config, { preCopy: true }),
    startSide(registrar, [...same, vfConfig(dir, 4, { serial: 'VFMIG-E2E-OTHER' })], 2000, config, { preCopy: true }),
  ]);
  rig = { pki, a, b };
});

test.after.always(async () => {
  for (const teardown of teardowns.reverse()) await teardown();
});

const tcp = (side: Side): string => `tcp://127.0.0.1:${side.agent.tcp.port}`;
const tls = (side: Side): string => `tls://127.0.0.1:${side.agent.tls?.port ?? 0}`;
const via = (recorder: WireRecorder): string => `tcp://127.0.0.1:${recorder.port}`;
const tlsFiles = (pki: PluginPki): string[] => ['--ca', pki.ca, '--cert', pki.plugin.cert, '--key', pki.plugin.key];

async function stateOn(side: Side, vf: string): Promise<string> {
  return (await side.rpc.call('vf.getState', { vf })).state;
}

async function recorder(t: ExecutionContext, side: Side, options: Parameters<typeof wireRecorder>[1] = {}): Promise<WireRecorder> {
  const made = await wireRecorder(side.agent.tcp, options);
  t.teardown(() => made.close());
  return made;
}

/** Waits until `file` exists; fails at once if the CLI ends first. */
function untilFile(file: string, running: RunningCli): Promise<void> {
  return Promise.race([
    waitUntil(async () => existsSync(file), 20_000),
    running.done.then((run) => { throw new Error(`vfmigctl ended (${run.code}) before ${file}: ${run.stderr}${run.stdout}`); }),
  ]);
}

test('migrate moves a busy NVMe VF between two agents: pre-copy, stop, copy in frames, apply, run; every command completes exactly once, on the destination only', async (t) => {
  const { a, b } = shared();
  const bdf = bdfOf(0);
  const guest = await busyGuest(a.portOf(bdf), 0xc11a);
  await pauseWithCommandsInFlight(t, guest.workload);
  const fromWire = await recorder(t, a);
  const toWire = await recorder(t, b);
  const gate = join(tempDir(), 'before-resume');

  // The source by its BDF, the destination by its id: two --vf.
  const running = startCli(['--json', 'migrate', '--from', via(fromWire), '--to', via(toWire), '--vf', bdf, '--vf', 'nvme0',
    '--before-resume', `'${process.execPath}' '${GATE}' '${gate}'`, '--lease-ms', String(LEASE_MS)]);
  await untilFile(gate, running);
  // While the command runs nobody calls either VF but the CLI's renewals: held past a whole lease, both must still be ours.
  const renewals = (side: Side, vf: string): number => side.agent.logs.filter((l) => l.includes('"method":"vf.renewLease"') && l.includes(`"vf":"${vf}"`) && l.includes('"outcome":"ok"')).length;
  await waitUntil(async () => renewals(a, bdf) >= 5 && renewals(b, 'nvme0') >= 5);
  // Both VFs stopped, the state applied on the destination: the moment the VMM moves the guest's RAM.
  t.is(await stateOn(a, bdf), 'STOP_COPY');
  t.is(await stateOn(b, bdf), 'STOP');
  const held = await b.rpc.call('vf.get', { vf: bdf });
  t.like(held.migration, { applied: true, stranded: null }, 'the destination applied the state, and its lease is kept');
  t.like((await a.rpc.call('vf.get', { vf: bdf })).migration, { readToEnd: true, stranded: null, lease: { leaseMs: LEASE_MS } });
  t.deepEqual(readFileSync(gate, 'utf8').trim().split('\n'), [
    `VFMIGCTL_SOURCE_AGENT=${via(fromWire)}`, `VFMIGCTL_SOURCE_VF=${bdf}`, `VFMIGCTL_DESTINATION_AGENT=${via(toWire)}`, 'VFMIGCTL_DESTINATION_VF=nvme0',
  ]);
  await copyGuestMemory(a.portOf(bdf), b.portOf(bdf), guest.nvme.memoryRegions());
  rmSync(gate);
  const run = await running.done;

  t.is(run.code, 0, run.stderr);
  const report = jsonOf(t, run) as unknown as {
    outcome: string; bytes: { total: number; preCopy: number; stopCopy: number }; preCopyRounds: number; downtimeMs: number; drainedCommands: number;
    phases: { name: string; ms: number }[]; source: { state: string; transport: string }; destination: { state: string; transport: string };
  };
  t.is(report.outcome, 'migrated');
  t.deepEqual(report.phases.map((p) => p.name), ['connect', 'check', 'prepare', 'pre-copy', 'stop', 'stop-copy', 'apply', 'before-resume', 'resume', 'cleanup']);
  t.true(report.preCopyRounds >= 1 && report.bytes.preCopy > 0, 'nvme-emu offers PRE_COPY: its state went once while the VF ran');
  t.true(report.bytes.stopCopy > 0);
  t.is(report.bytes.total, report.bytes.preCopy + report.bytes.stopCopy);
  const stopToRun = report.phases.filter((p) => ['stop', 'stop-copy', 'apply', 'before-resume', 'resume'].includes(p.name)).reduce((sum, p) => sum + p.ms, 0);
  t.true(report.downtimeMs > 0 && report.downtimeMs <= stopToRun + 1, `downtime ${report.downtimeMs} ms within the phases from stop to resume (${stopToRun} ms)`);
  t.like(report, { source: { state: 'STOP', transport: 'attachments' }, destination: { state: 'RUNNING', transport: 'attachments' } });
  t.regex(run.stderr, /stays in STOP, as QEMU leaves a migrated source/);

  const from = pathsTaken(fromWire.connections);
  const to = pathsTaken(toWire.connections);
  t.is(from.agreed, from.connections, 'every connection asked for attachments first');
  t.is(to.agreed, to.connections);
  t.true(from.framedSaves > 0 && to.framedLoads > 0);
  t.is(from.base64Saves + to.base64Loads + from.strayFrames + to.strayFrames, 0, 'no state byte in base64, no frame elsewhere');

  await guest.nvme.attach(b.portOf(bdf));
  await finishClean(t, guest, 500);
  t.is(await stateOn(a, bdf), 'STOP', 'the source stayed stopped while the guest ran on the destination');
  await a.rpc.call('vf.reset', { vf: bdf });
});

test('migrate interrupted by SIGINT in the middle of the state copy cancels: the source runs on, the destination drops what it got, every command completes once', async (t) => {
  const { a, b } = shared();
  const vf = 'nvme1';
  const guest = await busyGuest(a.portOf(bdfOf(1)), 0x51c1);
  await pauseWithCommandsInFlight(t, guest.workload);
  // The source's fourth slice stops half-way on the wire: the CLI waits in the middle of its copy for as long as it takes.
  const fromWire = await recorder(t, a, { fault: { frameIndex: 3, cutAfterBytes: 100, how: 'blackhole' } });
  const running = startCli(['--json', '--timeout-ms', '60000', 'migrate', '--from', via(fromWire), '--to', tcp(b), '--vf', vf, '--slice-bytes', '256', '--precopy-rounds', '0']);
  await Promise.race([
    waitUntil(async () => fromWire.faulted && running.stderr().includes('stop-copy: copying')),
    running.done.then((run) => { throw new Error(`vfmigctl ended (${run.code}) before the cut: ${run.stderr}`); }),
  ]);

  // Meanwhile, as `sessions` shows it: a save open on the source, a resume on the destination.
  const open = jsonOf(t, await cli('--json', '--agent', tcp(a), 'sessions')) as { sessions: { vf: string; session: { kind: string; phase: string } | null; migration: { role: string } | null }[] };
  t.like(open.sessions.find((s) => s.vf === vf), { session: { kind: 'save', phase: 'stop-copy' }, migration: { role: 'source' } });
  const loading = await b.rpc.call('vf.get', { vf });
  t.is(loading.state, 'RESUMING');
  t.true((loading.session?.bytes ?? 0) > 0, 'the destination has some of the state');

  running.child.kill('SIGINT');
  const run = await running.done;
  t.is(run.code, 4, run.stderr);
  const error = errorOf(t, run);
  t.is(error.data.code, 'MIGRATION_CANCELLED');
  t.like(error.data, { cause: { data: { code: 'INTERRUPTED' } }, report: { outcome: 'cancelled', failedIn: 'stop-copy', interrupted: true, cancel: { source: { ok: true, state: 'RUNNING' }, destination: { ok: true, state: 'RUNNING' } } } });
  t.true(fromWire.connections.length >= 2, 'the cancel went on a new connection: the old one was stuck');

  t.is(await stateOn(a, vf), 'RUNNING');
  t.like(await b.rpc.call('vf.get', { vf }), { state: 'RUNNING', session: null, migration: null });
  await finishClean(t, guest, 500);
});

test('mutual TLS: read and migrate with the client certificate; a certificate or CA the agent does not trust exits 3', async (t) => {
  const { a, b, pki } = shared();
  assertResult(t, 'vf.list', await cli('--json', '--agent', tls(a), ...tlsFiles(pki), 'list'));
  const run = await cli('--json', ...tlsFiles(pki), 'migrate', '--from', tls(a), '--to', tls(b), '--vf', 'nvme2');
  t.is(run.code, 0, run.stderr);
  t.like(jsonOf(t, run), { outcome: 'migrated', source: { transport: 'attachments', state: 'STOP' }, destination: { transport: 'attachments', state: 'RUNNING' } });
  t.is((await a.rpc.call('vf.get', { vf: 'nvme2' })).migration?.owner, PLUGIN_PRINCIPAL, 'the migration is the certificate\'s principal\'s');
  await a.rpc.call('vf.reset', { vf: 'nvme2' });

  const [outsider, untrusted] = await Promise.all([
    cli('--json', '--agent', tls(a), '--ca', pki.ca, '--cert', pki.outsider.cert, '--key', pki.outsider.key, 'list'),
    cli('--json', '--agent', tls(a), '--ca', pki.otherCa, '--cert', pki.plugin.cert, '--key', pki.plugin.key, 'list'),
  ]);
  t.is(outsider.code, 3);
  t.like(errorOf(t, outsider).data, { code: 'AGENT_UNREACHABLE', reason: 'closed' });
  t.regex(errorOf(t, outsider).data.detail, /refuses the client certificate/);
  t.is(untrusted.code, 3);
  t.like(errorOf(t, untrusted).data, { code: 'AGENT_UNREACHABLE', reason: 'tls' });
});

test('a cancel that cannot reach the source exits 5 and says what to run; the destination is reset all the same', async (t) => {
  const { a, b } = shared();
  const vf = 'nvme5';
  // The source's second slice goes silent on the wire; then the way to the source closes: the cancel cannot get through.
  const fromWire = await recorder(t, a, { fault: { frameIndex: 1, cutAfterBytes: 10, how: 'blackhole' } });
  const running = startCli(['--json', '--timeout-ms', '60000', 'migrate', '--from', via(fromWire), '--to', tcp(b), '--vf', vf, '--slice-bytes', '256', '--precopy-rounds', '0']);
  await Promise.race([
    waitUntil(async () => fromWire.faulted),
    running.done.then((run) => { throw new Error(`vfmigctl ended (${run.code}) before the cut: ${run.stderr}`); }),
  ]);
  fromWire.close();
  running.child.kill('SIGINT');
  const run = await running.done;
  t.is(run.code, 5, run.stderr);
  const error = errorOf(t, run);
  t.like(error.data, { code: 'MIGRATION_UNRESOLVED', report: { outcome: 'unresolved', cancel: { source: { ok: false, state: null }, destination: { ok: true, state: 'RUNNING' } } } });
  t.regex(error.data.detail, new RegExp(`vfmigctl --agent ${via(fromWire)} resume ${vf}`), 'the advice names the command that runs the source again');
  t.is(await stateOn(a, vf), 'STOP_COPY', 'the source waits, stopped: its lease would run it again');
  t.like(await b.rpc.call('vf.get', { vf }), { state: 'RUNNING', migration: null });
  await a.rpc.call('vf.resume', { vf });
});

test('an agent without attachments gets base64; a --before-resume command that fails cancels after the state was applied', async (t) => {
  const { a, b } = shared();
  const vf = 'nvme3';
  const older = await recorder(t, b, { olderAgent: true });
  const run = await cli('--json', 'migrate', '--from', tcp(a), '--to', via(older), '--vf', vf);
  t.is(run.code, 0, run.stderr);
  t.like(jsonOf(t, run), { source: { transport: 'attachments' }, destination: { transport: 'base64' } });
  const paths = pathsTaken(older.connections);
  t.true(paths.base64Loads > 0);
  t.is(paths.framedLoads, 0);
  await a.rpc.call('vf.reset', { vf });

  // Back again, and the operator's command fails once the state is in: nothing ran on a, so b runs on.
  const failed = await cli('--json', 'migrate', '--from', tcp(b), '--to', tcp(a), '--vf', vf, '--before-resume', 'exit 3');
  t.is(failed.code, 4, failed.stderr);
  const error = errorOf(t, failed);
  t.like(error.data, { code: 'MIGRATION_CANCELLED', cause: { data: { code: 'BEFORE_RESUME_FAILED' } }, report: { failedIn: 'before-resume', cancel: { source: { ok: true, state: 'RUNNING' }, destination: { ok: true } } } });
  t.regex(String((error.data.report as { cancel: { destination: { action: string } } }).cancel.destination.action), /vf\.reset/);
  t.is(await stateOn(b, vf), 'RUNNING');
  t.like(await a.rpc.call('vf.get', { vf }), { state: 'RUNNING', migration: null, session: null });
});

/** The notifications a `--json watch` printed, one JSON object a line, each checked against its schema in schemas/events/. */
function watched(t: ExecutionContext, stdout: string): { method: string; params: Record<string, unknown> }[] {
  return stdout.trim().split('\n').filter((line) => line !== '').map((line) => {
    const event = JSON.parse(line) as { method: string; params: Record<string, unknown> };
    const schema = schemas().notifications.get(event.method);
    t.truthy(schema, `${event.method} is an event of the API`);
    t.true(schema?.validate(event.params) ?? false, `${event.method}: ${JSON.stringify(schema?.validate.errors)}`);
    return event;
  });
}

test('watch prints both agents\' events of a migration as they come, a JSON object a line, and stops on SIGINT with 0', async (t) => {
  const { a, b } = shared();
  const vf = 'nvme8';
  const watchers = [a, b].map((side) => startCli(['--json', '--agent', tcp(side), 'watch', '--vf', vf]));
  t.teardown(() => { for (const w of watchers) w.child.kill('SIGKILL'); });
  await Promise.all(watchers.map((w) => waitUntil(async () => w.stderr().includes('watching'), 10_000)));
  const run = await cli('--json', 'migrate', '--from', tcp(a), '--to', tcp(b), '--vf', vf, '--reset-source');
  t.is(run.code, 0, run.stderr);
  const stdoutOf = (w: RunningCli): string => w.stdout();
  const ended = (w: RunningCli, kind: string): boolean => stdoutOf(w).split('\n').some((l) => l.includes('"session.ended"') && l.includes(`"kind":"${kind}"`));
  // The source's reset ends in RUNNING again; the destination's resume too.
  await waitUntil(async () => ended(watchers[0] as RunningCli, 'save') && /"to":"RUNNING"[^\n]*\n?$/.test(stdoutOf(watchers[0] as RunningCli)) && ended(watchers[1] as RunningCli, 'resume'), 10_000);
  for (const w of watchers) w.child.kill('SIGINT');
  const [fromA, fromB] = await Promise.all(watchers.map((w) => w.done));
  t.is(fromA?.code, 0, fromA?.stderr);
  t.is(fromB?.code, 0, fromB?.stderr);
  const onA = watched(t, fromA?.stdout ?? '');
  const onB = watched(t, fromB?.stdout ?? '');
  for (const event of [...onA, ...onB]) t.is(event.params.vf, vf, 'only the VF asked for');
  const save = onA.find((e) => e.method === 'session.ended');
  const resume = onB.find((e) => e.method === 'session.ended');
  t.like(save?.params, { kind: 'save', outcome: 'completed' });
  t.like(resume?.params, { kind: 'resume', outcome: 'completed' });
  t.is(save?.params.bytes, resume?.params.bytes, 'what the source handed out is what the destination took');
  t.is(typeof save?.params.downtimeMs, 'number');
  t.true(onA.some((e) => e.method === 'session.progress'), 'the save\'s progress');
  // The source left RUNNING for STOP (by pre-copy or not) and ran again once reset; the destination went through RESUMING to RUNNING.
  const states = (events: typeof onA): string[] => events.filter((e) => e.method === 'vf.stateChanged').map((e) => String(e.params.to));
  t.true(states(onA).includes('STOP'));
  t.is(states(onA).at(-1), 'RUNNING');
  t.true(states(onB).includes('RESUMING'));
  t.is(states(onB).at(-1), 'RUNNING');
});

test('check and migrate exit 6 when the destination cannot load the state, and change nothing', async (t) => {
  const { a, b } = shared();
  const [checked, compatible] = await Promise.all([
    cli('--json', 'check', '--from', tcp(a), '--to', tcp(b), '--vf', 'nvme4'),
    cli('--json', 'check', '--from', tcp(a), '--to', tcp(b), '--vf', 'nvme6'),
  ]);
  t.is(checked.code, 6);
  t.like(errorOf(t, checked).data, { code: 'NOT_COMPATIBLE' });
  t.regex(errorOf(t, checked).data.detail, /serial/i, 'the reason names what differs');
  t.is(compatible.code, 0, compatible.stderr);
  t.like(jsonOf(t, compatible), { compatible: true, defaultFormat: true });

  const refused = await cli('migrate', '--from', tcp(a), '--to', tcp(b), '--vf', 'nvme4');
  t.is(refused.code, 6);
  t.regex(refused.stderr, /cannot load the state/);
  for (const side of [a, b]) t.like(await side.rpc.call('vf.get', { vf: 'nvme4' }), { state: 'RUNNING', migration: null });
});

test('read commands under --json print exactly the method\'s result', async (t) => {
  const { a } = shared();
  const agent = ['--json', '--agent', tcp(a)];
  const [list, get, health, info, formats, state, sessions] = await Promise.all([
    cli(...agent, 'list'), cli(...agent, 'get', 'nvme0'), cli(...agent, 'health'), cli(...agent, 'info'),
    cli(...agent, 'formats', 'nvme0'), cli(...agent, 'state', bdfOf(0)), cli(...agent, 'sessions'),
  ]);
  t.is((assertResult(t, 'vf.list', list).vfs as unknown[]).length, 8);
  t.like(assertResult(t, 'vf.get', get), { id: 'nvme0', capabilities: { preCopy: true } });
  // ok or degraded: another test's migrated source is stranded for a moment before that test resets it.
  assertResult(t, 'agent.health', health);
  assertResult(t, 'agent.info', info);
  assertResult(t, 'vf.formats', formats);
  t.like(assertResult(t, 'vf.getState', state), { vf: 'nvme0' });
  t.is(sessions.code, 0);
  t.true(Array.isArray(jsonOf(t, sessions).sessions));
  for (const run of [list, get, health, info, formats, state, sessions]) t.is(run.stderr, '', 'nothing on stderr');
});

test('text output is a plain table when stdout is not a terminal', async (t) => {
  const run = await cli('--agent', tcp(shared().a), 'list');
  t.is(run.code, 0);
  const [head, ...rows] = run.stdout.trimEnd().split('\n');
  t.regex(head ?? '', /^ID\s+BDF\s+DRIVER\s+KIND\s+STATE\s+STRANDED$/);
  t.regex(rows[0] ?? '', /^nvme0\s+0000:3b:00\.2\s+nvme-emu\s+nvme\s+RUNNING\s+no$/);
  t.false(run.stdout.includes('\u001b['), 'no colour codes');
});

test('usage errors exit 2 and send nothing', async (t) => {
  const { a } = shared();
  const unknown = await cli('frobnicate');
  t.is(unknown.code, 2);
  t.regex(unknown.stderr, /unknown command 'frobnicate'/);

  // Other tests of this file call the agent at the same time, none on nvme7 (which does not exist: the agent would still audit the call).
  const setStates = (): number => a.agent.logs.filter((l) => l.includes('vf.setState') && l.includes('"vf":"nvme7"')).length;
  const calls = setStates();
  const badState = await cli('--json', '--agent', tcp(a), 'state', 'nvme7', 'SLEEPING');
  t.is(badState.code, 2);
  const error = errorOf(t, badState);
  t.is(error.data.code, 'USAGE');
  t.like(error.data, { errors: [{ path: '/state' }] });
  t.regex(error.data.detail, /RUNNING, STOP_COPY/, 'the schema\'s states are named');
  t.is(setStates(), calls, 'the agent saw no vf.setState');

  const [noVf, badTimeout, badAddress, hugeSlice, bareTls] = await Promise.all([
    cli('migrate', '--to', tcp(a)),
    cli('--timeout-ms', 'soon', 'list'),
    cli('--agent', 'http://x', 'list'),
    cli('migrate', '--to', tcp(a), '--vf', 'nvme7', '--slice-bytes', '9999999999'),
    cli('--agent', 'tls://127.0.0.1:1', 'list'),
  ]);
  t.is(noVf.code, 2, '--vf is required');
  t.is(badTimeout.code, 2);
  t.is(badAddress.code, 2);
  t.is(hugeSlice.code, 2, 'vf.save\'s maxBytes bound, from its schema');
  t.regex(hugeSlice.stderr, /maxBytes must be <= 4194304/);
  t.is(bareTls.code, 2, 'tls:// without credentials');
});

test('an unreachable agent exits 3', async (t) => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  const [closed, noSocket] = await Promise.all([cli('--json', '--agent', `tcp://127.0.0.1:${port}`, 'list'), cli('--agent', 'unix:/nonexistent/vfmigd.sock', 'health')]);
  t.is(closed.code, 3);
  t.like(errorOf(t, closed).data, { code: 'AGENT_UNREACHABLE', reason: 'connect' });
  t.regex(errorOf(t, closed).data.detail, /ECONNREFUSED/);
  t.is(noSocket.code, 3);
  t.regex(noSocket.stderr, /unix:\/nonexistent\/vfmigd\.sock: cannot connect: ENOENT/);
});

test('an agent\'s refusal exits 1 with its catalogue name, message and detail', async (t) => {
  const { a } = shared();
  const [missing, missingJson, illegal] = await Promise.all([
    cli('--agent', tcp(a), 'get', 'nvme9'),
    cli('--json', '--agent', tcp(a), 'get', 'nvme9'),
    cli('--json', '--agent', tcp(a), 'state', 'nvme4', 'ERROR'),
  ]);
  t.is(missing.code, 1);
  t.regex(missing.stderr, /refused vf\.get: VF_UNKNOWN \(Unknown VF\): .*nvme9/);
  t.is(missingJson.code, 1);
  t.like(errorOf(t, missingJson), { code: -33001, message: 'Unknown VF', data: { code: 'VF_UNKNOWN', method: 'vf.get', agent: tcp(a) } });
  t.is(illegal.code, 1);
  t.like(errorOf(t, illegal), { data: { code: 'ILLEGAL_TRANSITION', state: 'RUNNING' } });
});

test('the README\'s exit codes are the ones vfmigctl uses (npm run docs rewrites them)', (t) => {
  const readme = readFileSync(join(HERE, '..', '..', 'README.md'), 'utf8');
  t.is(readSection(readme, 'vfmigctl-exit-codes'), exitCodeTable());
});
