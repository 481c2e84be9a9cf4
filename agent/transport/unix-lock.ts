/**
 * A lock file beside a Unix socket (`PATH.lock`, holding the owner's PID).
 * It lets an agent tell a stale socket left by a crashed agent, which it
 * may replace, from the socket of a live agent, which it must not touch.
 * Node has no flock(), so liveness is the PID: the lock is stale when that
 * process is gone.
 */
import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';

export class SocketInUseError extends Error {
  constructor(path: string, pid: number) {
    super(`${path} is in use by a running agent (pid ${pid}); refusing to start a second one on it`);
    this.name = 'SocketInUseError';
  }
}

export interface SocketLock {
  release(): void;
}

export function lockSocketPath(socketPath: string): SocketLock {
  const lockPath = `${socketPath}.lock`;
  for (let attempt = 0; attempt < 2; attempt += 1) {
    try {
      const fd = openSync(lockPath, 'wx', 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      // We own the path now: whatever socket file is there is stale.
      rmSync(socketPath, { force: true });
      return { release: () => releaseLock(lockPath, socketPath) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const owner = readOwner(lockPath);
    if (owner !== undefined && owner !== process.pid && isAlive(owner)) throw new SocketInUseError(socketPath, owner);
    rmSync(lockPath, { force: true });
  }
  throw new Error(`could not take the lock ${lockPath}: another agent is starting on the same path`);
}

function releaseLock(lockPath: string, socketPath: string): void {
  if (readOwner(lockPath) !== process.pid) return;
  rmSync(socketPath, { force: true });
  rmSync(lockPath, { force: true });
}

function readOwner(lockPath: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(lockPath, 'utf8'), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
