/**
 * Runs the QEMU-playing harness (vmm-plugin/test/harness.c) that loads the
 * plugin .so exactly as QEMU does and replays QEMU's call sequence.
 */
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

/** vmm-plugin/build at the repository root (from dist/test/support). */
const BUILD = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'vmm-plugin', 'build');

export interface HarnessBuild {
  readonly harness: string;
  readonly plugin: string;
}

export const PLUGIN_BUILD: HarnessBuild = { harness: join(BUILD, 'vfmigd-harness'), plugin: join(BUILD, 'libvfmigd-plugin.so') };
/** The AddressSanitizer + LeakSanitizer build: a leak or memory error makes the harness fail. */
export const ASAN_BUILD: HarnessBuild = { harness: join(BUILD, 'asan', 'vfmigd-harness'), plugin: join(BUILD, 'asan', 'libvfmigd-plugin.so') };

export function assertBuilt(build: HarnessBuild): void {
  for (const file of [build.harness, build.plugin]) {
    if (!existsSync(file)) throw new Error(`${file} is missing: run make -C vmm-plugin all asan (npm test does)`);
  }
}

/** One line of the harness's report, per device. */
export interface DeviceReport {
  readonly device: string;
  readonly ok: boolean;
  readonly bytes?: number;
  readonly stopCopyUs?: number;
  readonly resumeUs?: number;
  readonly op?: string;
  readonly rc?: number;
  readonly error?: string;
  /** Source, after a failure: QEMU's cancel (set_state RUNNING) was tried, and whether it succeeded. */
  readonly cancelled?: boolean;
  /** Source with --hold-file and the destination failed: the device runs again after the completed save. */
  readonly resumed?: boolean;
}

export interface HarnessRun {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly reports: DeviceReport[];
  readonly stderr: string;
  readonly elapsedMs: number;
}

export type HarnessMode = 'source' | 'destination' | 'cancel';

export interface HarnessOptions {
  readonly build?: HarnessBuild;
  readonly mode: HarnessMode;
  /** The plugin's `arg`, e.g. `tcp:127.0.0.1:7700,timeout_ms=2000`. */
  readonly arg: string;
  /** BDF → stream file (the cancel mode takes no file). */
  readonly devices: readonly { bdf: string; stream?: string }[];
  readonly extraArgs?: readonly string[];
  readonly timeoutMs?: number;
  /** When aborted, the harness is killed with SIGKILL, as a VMM that dies: no cleanup op, no exit handler. */
  readonly signal?: AbortSignal;
  /** Called with each piece of stderr as it comes: the plugin prints a failure's line as its op returns, so this times the return. */
  readonly onStderr?: (text: string) => void;
}

export function runHarness(options: HarnessOptions): Promise<HarnessRun> {
  const build = options.build ?? PLUGIN_BUILD;
  assertBuilt(build);
  const args = [options.mode, '--plugin', build.plugin, '--arg', options.arg];
  for (const d of options.devices) args.push('--device', d.stream === undefined ? d.bdf : `${d.bdf}=${d.stream}`);
  args.push(...(options.extraArgs ?? []));
  const started = performance.now();
  return new Promise((resolve) => {
    // LeakSanitizer must run at exit; a leak report fails the run (exit code 23).
    const child = spawn(build.harness, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=1:exitcode=23:abort_on_error=0', UBSAN_OPTIONS: 'halt_on_error=1:exitcode=24' },
      ...(options.signal === undefined ? {} : { signal: options.signal, killSignal: 'SIGKILL' as const }),
    });
    // An abort is reported as an error event (then close, with the signal): the close is what the caller gets.
    child.on('error', () => undefined);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      options.onStderr?.(d.toString());
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30000);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const reports = stdout.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as DeviceReport);
      resolve({ code, signal, reports, stderr, elapsedMs: performance.now() - started });
    });
  });
}

/** Polls `condition` every 20 ms until it holds; throws once `timeoutMs` have gone by without. */
export async function waitUntil(condition: () => Promise<boolean>, timeoutMs = 10000): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!(await condition())) {
    if (performance.now() > end) throw new Error('condition not met in time');
    await sleep(20);
  }
}

/**
 * A point where the harness waits for the test: it creates a file there
 * and goes on once the test removes it, so the test acts at exactly that
 * point with no guess of how long the harness takes to get there.
 */
export interface HarnessGate {
  /** The harness options that set it. */
  readonly args: string[];
  /** Resolves once the harness waits at the point; rejects if it ends before. */
  reached(running: Promise<HarnessRun>): Promise<void>;
  release(): void;
}

function fileGate(file: string, args: string[], what: string): HarnessGate {
  return {
    args,
    reached: (running) => Promise.race([
      waitUntil(async () => existsSync(file), 20_000),
      running.then((run) => { throw new Error(`the harness ended before ${what}: ${run.stderr}${JSON.stringify(run.reports)}`); }),
    ]),
    release: () => rmSync(file, { force: true }),
  };
}

/** --stall-file: the harness stops once `afterChunks` save or load chunks have moved (1 MiB each unless --chunk-bytes), until released. */
export function stallPoint(dir: string, afterChunks = 2): HarnessGate {
  const file = join(dir, 'stalled');
  return fileGate(file, ['--stall-after-chunks', String(afterChunks), '--stall-file', file], 'its stall point');
}

/** --hold-cancel-file: a source whose step failed waits here, before QEMU's cancel (set_state RUNNING), until released. */
export function cancelHold(dir: string): HarnessGate {
  const file = join(dir, 'cancel-held');
  return fileGate(file, ['--hold-cancel-file', file], 'it held its cancel');
}
