/**
 * `vfmigctl watch`: the agent's events as they come (events.subscribe),
 * one line each: text for a person, or under --json one JSON object per
 * line (`{"method", "params"}`, as the notification came), so that a
 * script can read them as they arrive. It runs until Ctrl-C (exit 0),
 * `--count` events, or the agent ends the stream: a closed connection, or
 * a subscription dropped for reading too slowly (exit 3 either way, said
 * on stderr: events were missed).
 */
import type { Command } from 'commander';
import type { Colors } from 'picocolors/types.js';
import type { EventsSubscribeParams, EventTypes } from '../../../schemas/types.ts';
import { UnreachableError } from '../cli-errors.ts';
import { positiveInteger, type CommandContext } from '../command-context.ts';
import { bytesText, msText, stateText } from '../output.ts';
import type { Act } from './act.ts';

interface WatchOptions {
  readonly topic?: string[];
  readonly vf?: string[];
  readonly count?: string;
}

type Notification = { [M in keyof EventTypes]: { readonly method: M; readonly params: EventTypes[M] } }[keyof EventTypes];

export function addWatchCommand(program: Command, act: Act): void {
  program.command('watch')
    .description('the agent\'s events as they come, a line each, until Ctrl-C (events.subscribe)')
    .option('--topic <topic>', 'an event topic to watch (repeatable; default: all of them; a name the API does not know is refused with the list)', collect, [])
    .option('--vf <vf>', 'a VF to watch, by id or BDF (repeatable; default: every VF this client may read)', collect, [])
    .option('--count <n>', 'stop after this many events')
    .action(act(async (ctx, options: WatchOptions) => watch(ctx, options)));
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

async function watch(ctx: CommandContext, options: WatchOptions): Promise<void> {
  const limit = options.count === undefined ? Infinity : positiveInteger('--count', options.count);
  const agent = await ctx.connect();
  let seen = 0;
  let stopped: (() => void) | undefined;
  const done = new Promise<void>((resolve) => { stopped = resolve; });
  const onSignal = (): void => stopped?.();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    let dropped: UnreachableError | undefined;
    agent.onNotification((method, params) => {
      const event = { method, params } as Notification;
      if (event.method === 'events.dropped') {
        const { discarded, reason } = event.params;
        dropped = new UnreachableError(agent.agent.name, 'closed', `the agent dropped this subscription (${reason}); ${discarded} events were discarded`);
        stopped?.();
        return;
      }
      if (seen >= limit) return;
      seen += 1;
      process.stdout.write(ctx.out.json ? `${JSON.stringify(event)}\n` : `${eventLine(event, ctx.out.colors)}\n`);
      if (seen >= limit) stopped?.();
    });
    const subscribed = await agent.call('events.subscribe', {
      ...(options.topic !== undefined && options.topic.length > 0 ? { topics: options.topic as NonNullable<EventsSubscribeParams['topics']> } : {}),
      ...(options.vf !== undefined && options.vf.length > 0 ? { vfs: options.vf } : {}),
    });
    ctx.out.note(`watching ${subscribed.topics.join(', ')} on ${subscribed.vfs.length === 0 ? 'no VF' : subscribed.vfs.join(', ')} of ${agent.agent.name} (Ctrl-C stops)`);
    const ended = await Promise.race([done.then(() => undefined), agent.ended]);
    if (dropped !== undefined) throw dropped;
    if (ended !== undefined) throw ended;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    agent.close();
  }
}

/** `TIME  VF  EVENT  what happened`: one line a person can scan and grep. */
function eventLine(event: Exclude<Notification, { method: 'events.dropped' }>, c: Colors): string {
  const head = (vf: string): string => `${c.dim(event.params.at)}  ${vf}  ${c.bold(event.method)}`;
  switch (event.method) {
    case 'vf.stateChanged': {
      const { vf, from, to, stranded } = event.params;
      return `${head(vf)}  ${stateText(from, c)} → ${stateText(to, c)}${stranded ? c.red(' (stranded)') : ''}`;
    }
    case 'session.progress': {
      const { vf, session, kind, phase, bytes } = event.params;
      return `${head(vf)}  ${kind} ${phase}: ${bytesText(bytes)} (session ${session})`;
    }
    case 'session.ended': {
      const { vf, session, kind, outcome, bytes, downtimeMs } = event.params;
      const downtime = downtimeMs === null ? '' : `, downtime ${msText(downtimeMs)}`;
      return `${head(vf)}  ${kind} ${outcome === 'completed' ? c.green(outcome) : c.yellow(outcome)}: ${bytesText(bytes)}${downtime} (session ${session})`;
    }
    case 'lease.expired': {
      const { vf, owner, state, action } = event.params;
      return `${head(vf)}  ${owner}'s lease ran out in ${stateText(state, c)}: ${action === 'stranded' || action === 'failed' ? c.red(action) : action}`;
    }
    case 'vf.stranded': {
      const { vf, state, reason } = event.params;
      return `${head(vf)}  ${c.red('stranded')} in ${stateText(state, c)}: ${reason}`;
    }
  }
}
