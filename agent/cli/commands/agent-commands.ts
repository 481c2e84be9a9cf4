/** The commands about the agent itself: health (agent.health) and info (agent.info). */
import type { Command } from 'commander';
import type { AgentInfoResult } from '../../../schemas/types.ts';
import type { CommandContext } from '../command-context.ts';
import { bytesText, fields, table } from '../output.ts';
import type { Colors } from 'picocolors/types.js';
import type { Act } from './act.ts';

export function addAgentCommands(program: Command, act: Act): void {
  program.command('health')
    .description('whether the agent is healthy, check by check (agent.health)')
    .action(act(async (ctx) => health(ctx)));
  program.command('info')
    .description('the agent\'s version, API, listeners, drivers and SoC (agent.info)')
    .action(act(async (ctx) => info(ctx)));
}

async function health(ctx: CommandContext): Promise<void> {
  const result = await ctx.withAgent((agent) => agent.call('agent.health', {}));
  ctx.out.result(result, (c) => {
    const status = result.status === 'ok' ? c.green('ok') : c.red(result.status);
    const checks = table(['CHECK', 'DRIVER', 'OK', 'DETAIL'], result.checks.map((k) => [k.name, k.driver, k.ok ? c.green('yes') : c.red('no'), k.detail]), c);
    return `${ctx.target().name}  ${status}\n\n${checks}`;
  });
}

async function info(ctx: CommandContext): Promise<void> {
  const result = await ctx.withAgent((agent) => agent.call('agent.info', {}));
  ctx.out.result(result, (c) => describeAgent(result, c));
}

function describeAgent(a: AgentInfoResult, c: Colors): string {
  const { soc } = a;
  return fields([
    ['agent', `${a.name} ${a.version}, API ${a.apiVersion}`],
    ['started', `${a.startedAt} (up ${Math.round(a.uptimeSeconds)} s)`],
    ['listeners', a.listeners.join(', ')],
    ['metrics', a.metrics ?? 'none'],
    ['drivers', a.drivers.map((d) => `${d.name} (${d.vfCount} VFs)`).join(', ')],
    ['soc', `${soc.hostname}: ${soc.cpu.manufacturer} ${soc.cpu.brand}, ${soc.cpu.cores} cores, ${bytesText(soc.memory.totalBytes)}; ${soc.os.distro} ${soc.os.release}, kernel ${soc.os.kernel} (${soc.os.arch})`],
    ['memory', `rss ${bytesText(a.memory.rss)}, heap ${bytesText(a.memory.heapUsed)} of ${bytesText(a.memory.heapTotal)}, external ${bytesText(a.memory.external)}`],
  ], c);
}
