/**
 * The commands on one agent's VFs: list, get, state, quiesce, resume,
 * reset, formats, sessions. Each is one or a few vf.* calls; under --json
 * each prints the method's result as it came.
 */
import type { Command } from 'commander';
import type { Colors } from 'picocolors/types.js';
import type { Transition, VfGetResult, VfioState } from '../../../schemas/types.ts';
import type { AgentConnection } from '../agent-connection.ts';
import type { CommandContext } from '../command-context.ts';
import { positiveInteger } from '../command-context.ts';
import { bytesText, fields, msText, stateText, table } from '../output.ts';
import type { Act } from './act.ts';

/** At most this many vf.get in flight at once: under the agent's per-connection limit. */
const PARALLEL_GETS = 16;

export function addVfCommands(program: Command, act: Act): void {
  program.command('list')
    .description('the VFs the agent manages (vf.list)')
    .option('--driver <name>', 'only the VFs of this driver')
    .action(act(async (ctx, options: { driver?: string }) => list(ctx, options.driver)));
  program.command('get')
    .description('one VF in detail: capabilities, formats, identity, its session and migration (vf.get)')
    .argument('<vf>', 'the VF\'s id or BDF')
    .action(act(async (ctx, vf: string) => get(ctx, vf)));
  program.command('state')
    .description('a VF\'s VFIO state (vf.getState), or move it to NEWSTATE (vf.setState)')
    .argument('<vf>', 'the VF\'s id or BDF')
    .argument('[newstate]', 'a VFIO state: RUNNING, STOP, STOP_COPY, RESUMING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P')
    .option('--drain-ms <ms>', 'how long draining in-flight commands may take (the agent\'s default: 5000)')
    .option('--lease-ms <ms>', 'the lease to ask for on the migration this begins or continues')
    .option('--session <id>', 'the save or resume session that must still be open (refused otherwise)')
    .action(act(async (ctx, vf: string, state: string | undefined, options: TransitionOptions) => (state === undefined ? getState(ctx, vf) : setState(ctx, vf, state, options))));
  program.command('quiesce')
    .description('stop a VF, draining the commands it fetched (vf.quiesce: RUNNING → RUNNING_P2P → STOP)')
    .argument('<vf>', 'the VF\'s id or BDF')
    .option('--drain-ms <ms>', 'how long draining may take (the agent\'s default: 5000)')
    .option('--lease-ms <ms>', 'the lease to ask for on the migration this begins')
    .action(act(async (ctx, vf: string, options: TransitionOptions) => quiesce(ctx, vf, options)));
  program.command('resume')
    .description('run a VF (vf.resume): cancels a save, or applies and runs a loaded state')
    .argument('<vf>', 'the VF\'s id or BDF')
    .option('--drain-ms <ms>', 'how long draining may take (the agent\'s default: 5000)')
    .option('--session <id>', 'the session that must still be open (refused otherwise)')
    .action(act(async (ctx, vf: string, options: TransitionOptions) => resume(ctx, vf, options)));
  program.command('reset')
    .description('reset a VF (vf.reset): the way out of ERROR, or of a stranded migration; drops any stream')
    .argument('<vf>', 'the VF\'s id or BDF')
    .action(act(async (ctx, vf: string) => transitionCall(ctx, (agent) => agent.call('vf.reset', { vf }))));
  program.command('formats')
    .description('the state formats a VF saves and loads (vf.formats)')
    .argument('<vf>', 'the VF\'s id or BDF')
    .action(act(async (ctx, vf: string) => formats(ctx, vf)));
  program.command('sessions')
    .description('the VFs in a migration or with a save or resume session open (vf.list, then vf.get of each)')
    .action(act(async (ctx) => sessions(ctx)));
}

interface TransitionOptions {
  readonly drainMs?: string;
  readonly leaseMs?: string;
  readonly session?: string;
}

async function list(ctx: CommandContext, driver: string | undefined): Promise<void> {
  const result = await ctx.withAgent((agent) => agent.call('vf.list', driver === undefined ? {} : { driver }));
  ctx.out.result(result, (c) => table(['ID', 'BDF', 'DRIVER', 'KIND', 'STATE', 'STRANDED'],
    result.vfs.map((v) => [v.id, v.bdf, v.driver, v.kind, stateText(v.state, c), v.stranded ? c.red('yes') : 'no']), c));
}

async function get(ctx: CommandContext, vf: string): Promise<void> {
  const result = await ctx.withAgent((agent) => agent.call('vf.get', { vf }));
  ctx.out.result(result, (c) => describeVf(result, c));
}

function describeVf(v: VfGetResult, c: Colors): string {
  const offered = Object.entries(v.capabilities).filter(([, on]) => on).map(([name]) => name);
  const session = v.session === null ? 'none'
    : `${v.session.kind} ${v.session.id}, ${v.session.phase}, ${bytesText(v.session.bytes)} so far, owner ${v.session.owner}`;
  const m = v.migration;
  const migration = m === null ? 'none'
    : [`${m.role} of ${m.owner}`, m.readToEnd ? 'state read to the end' : '', m.applied ? 'state applied' : '',
      m.lease === null ? 'no lease' : `lease ${m.lease.leaseMs} ms, expires ${m.lease.expiresAt}`,
      m.stranded === null ? '' : c.red(`stranded since ${m.stranded.since}: ${m.stranded.reason}`)].filter((s) => s !== '').join('; ');
  return fields([
    ['vf', `${v.id} (${v.bdf})`],
    ['driver', `${v.driver}, ${v.kind}`],
    ['state', `${stateText(v.state, c)}${v.stranded ? ` ${c.red('stranded')}` : ''}`],
    ['capabilities', offered.length === 0 ? 'none' : offered.join(' ')],
    ['formats', v.stateFormats.map(formatText).join(', ')],
    ['identity', JSON.stringify(v.identity)],
    ['session', session],
    ['migration', migration],
    ['details', JSON.stringify(v.details)],
  ], c);
}

export function formatText(f: { name: string; version: number; vendor?: string }): string {
  return `${f.name} v${f.version}${f.vendor === undefined ? '' : ` (vendor ${f.vendor})`}`;
}

async function getState(ctx: CommandContext, vf: string): Promise<void> {
  const result = await ctx.withAgent((agent) => agent.call('vf.getState', { vf }));
  ctx.out.result(result, (c) => `${result.vf}  ${stateText(result.state, c)}`);
}

async function setState(ctx: CommandContext, vf: string, state: string, options: TransitionOptions): Promise<void> {
  // The state's spelling is checked by vf.setState's schema before anything is sent.
  await transitionCall(ctx, (agent) => agent.call('vf.setState', { vf, state: state as VfioState, ...transitionParams(options) }));
}

async function quiesce(ctx: CommandContext, vf: string, options: TransitionOptions): Promise<void> {
  const { timeoutMs, leaseMs } = transitionParams(options);
  await transitionCall(ctx, (agent) => agent.call('vf.quiesce', { vf, ...(timeoutMs === undefined ? {} : { timeoutMs }), ...(leaseMs === undefined ? {} : { leaseMs }) }));
}

async function resume(ctx: CommandContext, vf: string, options: TransitionOptions): Promise<void> {
  const { timeoutMs, session } = transitionParams(options);
  await transitionCall(ctx, (agent) => agent.call('vf.resume', { vf, ...(timeoutMs === undefined ? {} : { timeoutMs }), ...(session === undefined ? {} : { session }) }));
}

function transitionParams(options: TransitionOptions): { timeoutMs?: number; leaseMs?: number; session?: string } {
  return {
    ...(options.drainMs === undefined ? {} : { timeoutMs: positiveInteger('--drain-ms', options.drainMs) }),
    ...(options.leaseMs === undefined ? {} : { leaseMs: positiveInteger('--lease-ms', options.leaseMs) }),
    ...(options.session === undefined ? {} : { session: options.session }),
  };
}

async function transitionCall(ctx: CommandContext, call: (agent: AgentConnection) => Promise<Transition>): Promise<void> {
  const result = await ctx.withAgent(call);
  ctx.out.result(result, (c) => transitionText(result, c));
}

/** `nvme0  RUNNING → STOP  (RUNNING_P2P, STOP; 3 commands drained; 1.20 ms)` */
export function transitionText(t: Transition, c: Colors): string {
  const path = t.path.length === 0 ? 'nothing changed' : t.path.join(', ');
  const drained = t.drainedCommands > 0 ? `; ${t.drainedCommands} commands drained` : '';
  return `${t.vf}  ${stateText(t.from, c)} → ${stateText(t.state, c)}  (${path}${drained}; ${msText(t.elapsedMs)})`;
}

async function formats(ctx: CommandContext, vf: string): Promise<void> {
  const result = await ctx.withAgent((agent) => agent.call('vf.formats', { vf }));
  ctx.out.result(result, (c) => table(['FORMAT', 'VERSION', 'VENDOR', 'SAVE', 'LOAD'],
    result.formats.map((f) => [f.name, f.version, f.vendor ?? '-', f.save ? 'yes' : 'no', f.load ? 'yes' : 'no']), c));
}

async function sessions(ctx: CommandContext): Promise<void> {
  const found = await ctx.withAgent(async (agent) => {
    const { vfs } = await agent.call('vf.list', {});
    const details: VfGetResult[] = [];
    for (let i = 0; i < vfs.length; i += PARALLEL_GETS) {
      details.push(...await Promise.all(vfs.slice(i, i + PARALLEL_GETS).map((v) => agent.call('vf.get', { vf: v.id }))));
    }
    return details.filter((v) => v.session !== null || v.migration !== null);
  });
  const result = { sessions: found.map(({ id, bdf, state, stranded, session, migration }) => ({ vf: id, bdf, state, stranded, session, migration })) };
  ctx.out.result(result, (c) => (found.length === 0 ? 'no VF is in a migration' : table(['VF', 'STATE', 'ROLE', 'OWNER', 'SESSION', 'BYTES', 'LEASE EXPIRES', 'STRANDED'],
    found.map((v) => [
      v.id,
      stateText(v.state, c),
      v.migration?.role ?? '-',
      v.migration?.owner ?? v.session?.owner ?? '-',
      v.session === null ? '-' : `${v.session.kind} ${v.session.phase} ${v.session.id}`,
      v.session === null ? '-' : bytesText(v.session.bytes),
      v.migration?.lease?.expiresAt ?? '-',
      v.stranded ? c.red('yes') : 'no',
    ]), c)));
}
