/**
 * The commands between two agents: `check` (could this source's state
 * load there?) and `migrate` (move the VF's state from one to the other,
 * cancelling on any failure or Ctrl-C). Both name the source with --from
 * and the destination with --to; the first --vf is the source's VF, the
 * second the destination's (one --vf: the same name on both).
 */
import type { Command } from 'commander';
import type { Colors } from 'picocolors/types.js';
import { checkParams } from '../agent-connection.ts';
import { IncompatibleError, UsageError } from '../cli-errors.ts';
import { countOption, positiveInteger, type CommandContext } from '../command-context.ts';
import { bytesText, fields, msText } from '../output.ts';
import { formatName, judge } from '../migration/compatibility.ts';
import { migrate, type Endpoint, type MigrateOptions } from '../migration/migrate.ts';
import { Interrupted } from '../migration/migration-failure.ts';
import type { MigrationReport } from '../migration/migration-report.ts';
import { progressFor } from '../migration/progress.ts';
import { formatText } from './vf-commands.ts';
import type { Act } from './act.ts';

const MiB = 1024 * 1024;

interface PairOptions {
  readonly from?: string;
  readonly to?: string;
  readonly vf?: string[];
}

interface MigrateCommandOptions extends PairOptions {
  readonly sliceBytes: string;
  readonly precopyRounds: string;
  readonly precopyThreshold: string;
  readonly leaseMs?: string;
  readonly drainMs?: string;
  readonly beforeResume?: string;
  readonly resetSource?: boolean;
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

function pairOptions(command: Command): Command {
  return command
    .option('--from <agent>', 'the source agent (default: --agent)')
    .requiredOption('--to <agent>', 'the destination agent')
    .requiredOption('--vf <vf>', 'the source\'s VF, then the destination\'s (one --vf: the same on both)', collect);
}

export function addMigrationCommands(program: Command, act: Act): void {
  pairOptions(program.command('check'))
    .description('can the destination load the source\'s state? (vf.formats on both, vf.stateDescriptor on the source, vf.checkCompatibility on the destination; nothing is changed)')
    .action(act(async (ctx, options: PairOptions) => check(ctx, options)));
  pairOptions(program.command('migrate'))
    .description('move a VF\'s state from one agent to another: check, pre-copy where the source can, stop, copy, apply, run on the destination; cancelled on any failure or Ctrl-C, the source then runs on')
    .option('--slice-bytes <n>', 'bytes per vf.save / vf.load', String(MiB))
    .option('--precopy-rounds <n>', 'most pre-copy rounds while the VF runs (0: none)', '10')
    .option('--precopy-threshold <bytes>', 'stop pre-copying once the VF has changed no more than this since it was read', String(MiB))
    .option('--lease-ms <ms>', 'the lease both agents hold the migration under (default: theirs)')
    .option('--drain-ms <ms>', 'how long stopping a VF may take to drain its commands (the agent\'s default: 5000)')
    .option('--before-resume <command>', 'run through /bin/sh once the destination has applied the state, before it runs (e.g. to move the guest\'s last RAM); a non-zero exit cancels. Gets VFMIGCTL_SOURCE_AGENT, _SOURCE_VF, _DESTINATION_AGENT, _DESTINATION_VF')
    .option('--reset-source', 'reset the source VF after the migration (as vfio-pci resets a released device) instead of leaving it in STOP')
    .action(act(async (ctx, options: MigrateCommandOptions) => migrateCommand(ctx, options)));
}

function endpoints(ctx: CommandContext, options: PairOptions): { from: Endpoint; to: Endpoint } {
  const vfs = options.vf ?? [];
  if (vfs.length < 1 || vfs.length > 2) throw new UsageError('--vf names the source\'s VF and, if it differs, the destination\'s: once or twice');
  const [sourceVf, destinationVf = sourceVf] = vfs as [string, string?];
  return {
    from: { target: ctx.target(options.from), vf: sourceVf },
    to: { target: ctx.target(options.to), vf: destinationVf ?? sourceVf },
  };
}

async function check(ctx: CommandContext, options: PairOptions): Promise<void> {
  const { from, to } = endpoints(ctx, options);
  const verdict = await ctx.withAgent((source) => ctx.withAgent((destination) => judge({ agent: source, vf: from.vf }, { agent: destination, vf: to.vf }), to.target), from.target);
  const result = { source: { agent: from.target.name, vf: from.vf }, destination: { agent: to.target.name, vf: to.vf }, ...verdict };
  if (!verdict.compatible) {
    throw new IncompatibleError(`${to.vf} on ${to.target.name} cannot load the state of ${from.vf} on ${from.target.name}: ${verdict.reason ?? 'refused'}`, { verdict: result });
  }
  ctx.out.result(result, (c) => `${c.green('compatible')}: ${to.vf} on ${to.target.name} loads the state of ${from.vf} on ${from.target.name} in ${verdict.format === null ? '?' : formatText(verdict.format)}`);
}

async function migrateCommand(ctx: CommandContext, options: MigrateCommandOptions): Promise<void> {
  const { from, to } = endpoints(ctx, options);
  const settings: MigrateOptions = {
    sliceBytes: positiveInteger('--slice-bytes', options.sliceBytes),
    precopyRounds: countOption('--precopy-rounds', options.precopyRounds),
    precopyThreshold: countOption('--precopy-threshold', options.precopyThreshold),
    leaseMs: options.leaseMs === undefined ? undefined : positiveInteger('--lease-ms', options.leaseMs),
    drainMs: options.drainMs === undefined ? undefined : positiveInteger('--drain-ms', options.drainMs),
    beforeResume: options.beforeResume,
    resetSource: options.resetSource === true,
  };
  // Every value the migration will send, checked against the methods' schemas before anything moves.
  const lease = settings.leaseMs === undefined ? {} : { leaseMs: settings.leaseMs };
  const drain = settings.drainMs === undefined ? {} : { timeoutMs: settings.drainMs };
  checkParams(ctx.schemas, 'vf.save', { vf: from.vf, maxBytes: settings.sliceBytes, ...lease });
  checkParams(ctx.schemas, 'vf.quiesce', { vf: from.vf, ...drain, ...lease });
  checkParams(ctx.schemas, 'vf.setState', { vf: to.vf, state: 'STOP', ...drain, ...lease });

  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => {
    if (controller.signal.aborted) {
      ctx.out.note('still cancelling: each call ends within --timeout-ms');
      return;
    }
    ctx.out.note(`${signal}: cancelling the migration`);
    controller.abort(new Interrupted(signal));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const report = await migrate(ctx, from, to, settings, controller.signal, progressFor(ctx.out));
    for (const warning of report.warnings) ctx.out.warn(warning);
    ctx.out.result(report, (c) => reportText(report, c));
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function reportText(r: MigrationReport, c: Colors): string {
  const pre = r.preCopyRounds === 0 ? '' : `, pre-copy ${bytesText(r.bytes.preCopy)} in ${r.preCopyRounds} round${r.preCopyRounds === 1 ? '' : 's'}`;
  return [
    `${c.green('migrated')} ${r.source.vf} on ${r.source.agent} → ${r.destination.vf} on ${r.destination.agent}`,
    fields([
      ['format', r.format === null ? '?' : formatName(r.format)],
      ['bytes', `${bytesText(r.bytes.total)} (stop-copy ${bytesText(r.bytes.stopCopy)}${pre})`],
      ['downtime', `${r.downtimeMs === null ? '?' : msText(r.downtimeMs)} (source stopped → destination running; ${r.drainedCommands} commands drained)`],
      ['transport', `source ${r.source.transport ?? '?'}, destination ${r.destination.transport ?? '?'}`],
      ['phases', r.phases.map((p) => `${p.name} ${msText(p.ms)}`).join(', ')],
      ['total', msText(r.totalMs)],
      ['now', `source ${r.source.state ?? '?'}, destination ${r.destination.state ?? '?'}`],
    ], c),
  ].join('\n');
}
