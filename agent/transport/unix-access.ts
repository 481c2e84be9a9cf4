/**
 * Who may connect to a Unix socket: its file mode, owner and group. The
 * socket is created under a umask that leaves it reachable by its owner
 * alone, and only then opened up to the configured mode, so no other user
 * can connect in between (the process umask alone, e.g. 000, would leave
 * it open to everyone).
 */
import { chmodSync, chownSync, readFileSync } from 'node:fs';

export interface UnixSocketAccess {
  /** File mode, e.g. 0o660. */
  readonly mode: number;
  readonly uid?: number | undefined;
  readonly gid?: number | undefined;
}

/** Runs `bind`, which must create the socket synchronously, under a umask of 0177. */
export function bindOwnerOnly(bind: () => void): void {
  const previous = process.umask(0o177);
  try {
    bind();
  } finally {
    process.umask(previous);
  }
}

export function applyAccess(path: string, access: UnixSocketAccess): void {
  if (access.uid !== undefined || access.gid !== undefined) chownSync(path, access.uid ?? -1, access.gid ?? -1);
  chmodSync(path, access.mode);
}

/** A user name or uid, as the config gives it, as a uid. */
export function resolveUser(user: string | number): number {
  return resolveId(user, '/etc/passwd', 'user');
}

/** A group name or gid, as the config gives it, as a gid. */
export function resolveGroup(group: string | number): number {
  return resolveId(group, '/etc/group', 'group');
}

function resolveId(name: string | number, database: string, what: string): number {
  if (typeof name === 'number') return name;
  if (/^\d+$/.test(name)) return Number(name);
  // name:password:id:... — the same field layout in both files.
  for (const line of readFileSync(database, 'utf8').split('\n')) {
    const fields = line.split(':');
    if (fields[0] === name && fields[2] !== undefined && /^\d+$/.test(fields[2])) return Number(fields[2]);
  }
  throw new Error(`no ${what} named "${name}" in ${database}`);
}
