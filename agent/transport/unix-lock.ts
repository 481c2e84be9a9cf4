/**
 * A lock file beside a Unix socket (`PATH.lock`, holding the owner's PID).
 * It lets an agent tell a stale socket left by a crashed agent, which it
 * may replace, from the socket of a live agent, which it must not touch.
 *
 * Node has no flock(), so the lock is created with O_EXCL (two agents
 * starting at once cannot both take it) and judged by what it names. A dead
 * PID makes it stale. A live PID is not proof of a live agent: PIDs are
 * reused after a crash, and anyone who can write the directory can plant a
 * lock naming PID 1. So when the PID is alive the socket itself is asked: an
 * agent that owns the path accepts connections on it; when nothing does
 * (ECONNREFUSED, ENOENT), the lock is stale. An agent binds its socket
 * within microseconds of writing its lock, so a lock younger than the
 * start-up grace whose socket does not answer yet is given that long.
 */
import { closeSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { Worker } from 'node:worker_threads';

export class SocketInUseError extends Error {
  constructor(path: string, pid: number) {
    super(`${path} is in use by a running agent (pid ${pid}); refusing to start a second one on it`);
    this.name = 'SocketInUseError';
  }
}

export interface SocketLock {
  release(): void;
}

export interface SocketLockOptions {
  /** How long a fresh lock of a live process may go without its socket answering before it counts as stale. */
  readonly startGraceMs?: number;
  /** How long one connection attempt to the socket may take; no answer in time counts as an agent that is there. */
  readonly probeTimeoutMs?: number;
}

const DEFAULT_START_GRACE_MS = 1000;
const DEFAULT_PROBE_TIMEOUT_MS = 2000;
const GRACE_POLL_MS = 25;

export function lockSocketPath(socketPath: string, options: SocketLockOptions = {}): SocketLock {
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
    if (owner !== undefined && isAlive(owner) && ownerServes(socketPath, lockPath, options)) throw new SocketInUseError(socketPath, owner);
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

/**
 * Whether the live process a lock names serves the socket: something
 * accepts connections on it now, or does within the start-up grace of a
 * lock written moments ago.
 */
function ownerServes(socketPath: string, lockPath: string, options: SocketLockOptions): boolean {
  const graceMs = options.startGraceMs ?? DEFAULT_START_GRACE_MS;
  const probeTimeoutMs = options.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  // Counted from the first look, so a lock rewritten again and again cannot hold start-up forever.
  const graceEnds = Math.min(Date.now() + graceMs, lockWrittenAt(lockPath) + graceMs);
  for (;;) {
    if (socketAccepts(socketPath, probeTimeoutMs)) return true;
    if (Date.now() >= graceEnds) return false;
    sleepSync(GRACE_POLL_MS);
  }
}

function lockWrittenAt(lockPath: string): number {
  try {
    return statSync(lockPath).mtimeMs;
  } catch {
    return 0;
  }
}

const PROBE_PENDING = 0;
const PROBE_ACCEPTED = 1;
const PROBE_NOBODY = 2;

/**
 * Connects to the socket from a worker thread while this thread waits: the
 * lock is taken synchronously, at start-up, before anything is served, and
 * Node has no synchronous connect. ECONNREFUSED (a socket file nobody
 * listens on, or not a socket) and ENOENT mean nobody is there; any other
 * answer, or none in time, means somebody is.
 */
const PROBE_SOURCE = `
const { workerData } = process.getBuiltinModule('node:worker_threads');
const { connect } = process.getBuiltinModule('node:net');
const result = new Int32Array(workerData.result);
const socket = connect(workerData.path);
const answer = (value) => {
  socket.destroy();
  Atomics.store(result, 0, value);
  Atomics.notify(result, 0);
};
socket.once('connect', () => answer(${PROBE_ACCEPTED}));
socket.once('error', (error) => answer(error.code === 'ECONNREFUSED' || error.code === 'ENOENT' ? ${PROBE_NOBODY} : ${PROBE_ACCEPTED}));
`;

function socketAccepts(socketPath: string, timeoutMs: number): boolean {
  const result = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(PROBE_SOURCE, { eval: true, workerData: { path: socketPath, result: result.buffer } });
  worker.on('error', () => undefined);
  worker.unref();
  try {
    Atomics.wait(result, 0, PROBE_PENDING, timeoutMs);
    return Atomics.load(result, 0) !== PROBE_NOBODY;
  } finally {
    void worker.terminate();
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
