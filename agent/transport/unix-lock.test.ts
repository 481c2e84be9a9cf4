/**
 * The lock beside a Unix socket: only a live agent on the path keeps
 * another from taking it. A lock naming a dead PID, or a live process that
 * does not serve the socket (a planted lock, a reused PID), is stale and
 * replaced; a lock whose socket accepts connections is refused with
 * SocketInUseError and left as it was, socket included.
 */
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SocketInUseError, lockSocketPath } from './unix-lock.ts';

/** A live process that is not an agent: the test runner's parent. */
const UNRELATED_LIVE_PID = process.ppid;

function socketPath(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'vfmigd-lock-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'agent.sock');
}

/** A lock as another process would have left it, written `ageMs` ago. */
function plantLock(path: string, pid: number, ageMs = 60_000): void {
  writeFileSync(`${path}.lock`, `${pid}\n`);
  const when = (Date.now() - ageMs) / 1000;
  utimesSync(`${path}.lock`, when, when);
}

function lockOwner(path: string): number {
  return Number.parseInt(readFileSync(`${path}.lock`, 'utf8'), 10);
}

async function listen(t: ExecutionContext, path: string): Promise<Server> {
  const server = createServer((socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, resolve);
  });
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return server;
}

/** A socket file whose listener died without closing it, as a SIGKILLed agent leaves it. */
function leaveStaleSocket(path: string): void {
  const script = `require('node:net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`;
  spawnSync(process.execPath, ['-e', script]);
  if (!existsSync(path)) throw new Error('the stale socket was not left behind');
}

function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', '0']);
  return child.pid ?? 0;
}

test('a free path is taken; release removes the lock and the socket', (t) => {
  const path = socketPath(t);
  const lock = lockSocketPath(path);
  t.is(lockOwner(path), process.pid);
  writeFileSync(path, '');
  lock.release();
  t.false(existsSync(`${path}.lock`));
  t.false(existsSync(path));
});

test('a lock naming a dead PID is stale and replaced', (t) => {
  const path = socketPath(t);
  plantLock(path, deadPid());
  leaveStaleSocket(path);
  lockSocketPath(path).release();
  t.pass();
});

test('a planted lock naming a live unrelated PID, with no socket, is replaced', (t) => {
  const path = socketPath(t);
  plantLock(path, UNRELATED_LIVE_PID);
  const lock = lockSocketPath(path);
  t.is(lockOwner(path), process.pid);
  lock.release();
});

test('a planted lock naming a live unrelated PID over a socket nobody listens on is replaced, socket and all', (t) => {
  const path = socketPath(t);
  leaveStaleSocket(path);
  plantLock(path, 1);
  const lock = lockSocketPath(path);
  t.is(lockOwner(path), process.pid);
  t.false(existsSync(path), 'the stale socket file was removed');
  lock.release();
});

test('a lock whose socket accepts connections is refused, and the lock and socket are left alone', async (t) => {
  const path = socketPath(t);
  await listen(t, path);
  for (const owner of [UNRELATED_LIVE_PID, process.pid]) {
    plantLock(path, owner);
    const error = t.throws(() => lockSocketPath(path), { instanceOf: SocketInUseError });
    t.true(error?.message.includes(`pid ${owner}`));
    t.is(lockOwner(path), owner);
    t.true(existsSync(path));
  }
});

test('a fresh lock of a live process gets the start-up grace, then counts as stale if its socket never answers', (t) => {
  const path = socketPath(t);
  plantLock(path, UNRELATED_LIVE_PID, 0);
  const lock = lockSocketPath(path, { startGraceMs: 50 });
  t.is(lockOwner(path), process.pid);
  lock.release();
});
