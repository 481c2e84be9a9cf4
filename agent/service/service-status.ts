/**
 * The line `systemctl status vfmigd` shows (sd_notify's STATUS=): the VFs
 * by state, the sessions open and where the agent listens, e.g.
 * "4 VFs (4 running), 0 sessions open, listening on tcp://127.0.0.1:7700 unix:/run/vfmigd/vfmigd.sock",
 * kept up to date from the core's events.
 */
import type { MigrationCore } from '../core/migration-core.ts';
import type { VfMachine } from '../core/vf-machine.ts';

function counted(count: number, one: string, many: string): string {
  return `${count} ${count === 1 ? one : many}`;
}

/** The status line for these VFs and listeners. */
export function serviceStatus(vfs: readonly VfMachine[], listening: readonly string[]): string {
  const byState = new Map<string, number>();
  for (const vf of vfs) byState.set(vf.state, (byState.get(vf.state) ?? 0) + 1);
  const states = [...byState].map(([state, count]) => (state === 'RUNNING' ? `${count} running` : `${count} in ${state}`));
  const stranded = vfs.filter((vf) => vf.stranded).length;
  const sessions = vfs.filter((vf) => vf.sessionInfo !== undefined).length;
  return [
    `${counted(vfs.length, 'VF', 'VFs')}${states.length === 0 ? '' : ` (${states.join(', ')})`}`,
    ...(stranded === 0 ? [] : [`${stranded} stranded`]),
    `${counted(sessions, 'session', 'sessions')} open`,
    `listening on ${listening.join(' ')}`,
  ].join(', ');
}

/**
 * Writes the status line now and whenever the core's events change it.
 * Events come in bursts (a slice of a save is one), synchronously inside
 * the core's work: the line is made once per turn of the event loop, after
 * the burst, and written only when it differs. Returns the call that stops.
 */
export function followServiceStatus(core: MigrationCore, listening: readonly string[], write: (status: string) => void): () => void {
  let last = serviceStatus(core.list(), listening);
  write(last);
  let pending: NodeJS.Immediate | undefined;
  const refresh = (): void => {
    pending = undefined;
    const now = serviceStatus(core.list(), listening);
    if (now === last) return;
    last = now;
    write(now);
  };
  const unsubscribe = core.events.subscribe(() => {
    pending ??= setImmediate(refresh);
  });
  return () => {
    unsubscribe();
    if (pending !== undefined) clearImmediate(pending);
  };
}
