/**
 * Starts a real agent process (dist/agent/main.js) with a config written to
 * a temp dir, waits for its "listening" log line, and stops it. Tests talk
 * to it over real sockets.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config } from '../../schemas/types.ts';

/** dist/test/support → dist/agent/main.js */
export const AGENT_MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'agent', 'main.js');

export interface AgentProcess {
  readonly process: ChildProcess;
  readonly tcp: { host: string; port: number };
  /** The first `tls://` listener, if any. */
  readonly tls: { host: string; port: number } | undefined;
  /** Every address the agent reported, e.g. `unix:/tmp/x.sock`. */
  readonly listening: readonly string[];
  readonly dir: string;
  /** Log lines (pino JSON) so far. */
  readonly logs: string[];
  /**
   * The first log event whose `msg` contains `text`, already logged or still to
   * come: a socket closing can reach the test before the agent's log line about it.
   */
  waitForLog(text: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  stop(): Promise<number | null>;
  kill(): void;
}

export interface AgentOptions {
  /** Config file contents; `listen` defaults to an ephemeral loopback TCP port. */
  /** Config file contents; `listen` defaults to an ephemeral loopback TCP port. The log level must leave info on: start-up is detected by the "listening" event. */
  readonly config?: Config;
  readonly args?: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  readonly startTimeoutMs?: number;
  /** Keep every log line in `logs` (default). A long run (the fuzzer) keeps none after start-up. */
  readonly retainLogs?: boolean;
  /** Called with every log event, in order. */
  readonly onLog?: (entry: Record<string, unknown>) => void;
  /** Start the agent under this umask (through /bin/sh), e.g. 0 to see that sockets do not inherit it. */
  readonly umask?: number;
}

const madeDirs = new Set<string>();
const liveAgents = new Set<ChildProcess>();
/** An agent a test left running (a timeout, a failed assertion before its stop) dies with the test process. */
process.once('exit', () => { for (const child of liveAgents) child.kill('SIGKILL'); });

/**
 * A temp dir for one test's files (namespace files, configs, sockets). It
 * is removed when the process exits, whatever the test did: a test may
 * remove it sooner.
 */
export function tempDir(prefix = 'vfmigd-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (madeDirs.size === 0) process.once('exit', () => { for (const made of madeDirs) rmSync(made, { recursive: true, force: true }); });
  madeDirs.add(dir);
  return dir;
}

export async function startAgentProcess(options: AgentOptions = {}): Promise<AgentProcess> {
  const dir = tempDir();
  const config: Config = { listen: ['tcp://127.0.0.1:0'], logLevel: 'info', ...options.config };
  const configPath = join(dir, 'config.json');
  writeFileSync(configPath, JSON.stringify(config, null, 2));
  const argv = [AGENT_MAIN, '--config', configPath, ...(options.args ?? [])];
  const [command, args] = options.umask === undefined
    ? [process.execPath, argv]
    : ['/bin/sh', ['-c', `umask ${options.umask.toString(8).padStart(3, '0')} && exec "$0" "$@"`, process.execPath, ...argv]];
  const child = spawn(command, args, {
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  liveAgents.add(child);
  child.once('exit', () => liveAgents.delete(child));
  const logs: string[] = [];
  const logWaiters = new Set<(entry: Record<string, unknown>) => void>();
  let started = false;
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  const listening = await new Promise<string[]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent did not start within ${options.startTimeoutMs ?? 20000} ms: ${stderr}`)), options.startTimeoutMs ?? 20000);
    let partial = '';
    child.stdout?.on('data', (d: Buffer) => {
      partial += d.toString();
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        if (options.retainLogs !== false || !started) logs.push(line);
        try {
          const entry = JSON.parse(line) as { msg?: string; listen?: string[] };
          if (entry.msg === 'listening' && entry.listen) {
            started = true;
            clearTimeout(timer);
            resolve(entry.listen);
          }
          for (const waiter of logWaiters) waiter(entry);
          options.onLog?.(entry);
        } catch {
          // not a log line
        }
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
      reject(new Error(`agent exited with ${code} before listening: ${stderr}${logs.join('\n')}`));
    });
  });
  const tcpAddress = listening.find((a) => a.startsWith('tcp://'));
  const match = tcpAddress === undefined ? null : /^tcp:\/\/(.+):(\d+)$/.exec(tcpAddress);
  const tlsMatch = /^tls:\/\/(.+):(\d+)$/.exec(listening.find((a) => a.startsWith('tls://')) ?? '');
  const exited = new Promise<number | null>((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });
  // The config and anything the agent made in the dir go with the process.
  void exited.then(() => rmSync(dir, { recursive: true, force: true }));
  return {
    process: child,
    tcp: { host: match?.[1] ?? '127.0.0.1', port: Number(match?.[2] ?? 0) },
    tls: tlsMatch === null ? undefined : { host: tlsMatch[1] ?? '127.0.0.1', port: Number(tlsMatch[2]) },
    listening,
    dir,
    logs,
    waitForLog: (text, timeoutMs = 10_000) => waitForLogEvent(logs, logWaiters, text, timeoutMs),
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
    kill: () => { child.kill('SIGKILL'); },
  };
}

function logEventWith(line: string, text: string): Record<string, unknown> | undefined {
  try {
    const entry = JSON.parse(line) as Record<string, unknown>;
    return typeof entry.msg === 'string' && entry.msg.includes(text) ? entry : undefined;
  } catch {
    return undefined;
  }
}

function waitForLogEvent(
  logs: readonly string[],
  waiters: Set<(entry: Record<string, unknown>) => void>,
  text: string,
  timeoutMs: number,
): Promise<Record<string, unknown>> {
  for (const line of logs) {
    const entry = logEventWith(line, text);
    if (entry !== undefined) return Promise.resolve(entry);
  }
  return new Promise((resolve, reject) => {
    const waiter = (entry: Record<string, unknown>): void => {
      if (typeof entry.msg !== 'string' || !entry.msg.includes(text)) return;
      waiters.delete(waiter);
      clearTimeout(timer);
      resolve(entry);
    };
    const timer = setTimeout(() => {
      waiters.delete(waiter);
      reject(new Error(`no log event with "${text}" within ${timeoutMs} ms`));
    }, timeoutMs);
    waiters.add(waiter);
  });
}
