/**
 * The operator's --before-resume command: run through /bin/sh once both
 * VFs are stopped and the destination has applied the state, before it
 * runs. It is where a VMM would move the guest's last dirty RAM, or an
 * orchestrator switch the VM over. Its output goes to stderr (stdout is
 * the CLI's result); the environment names both sides. Exit 0 lets the
 * migration go on; anything else, or an interrupt (which kills it), fails
 * it.
 */
import { spawn } from 'node:child_process';
import type { MigrationSide } from './migration-side.ts';

export class CommandFailed extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CommandFailed';
  }
}

export function runBeforeResume(command: string, source: MigrationSide, destination: MigrationSide, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    signal.throwIfAborted();
    const child = spawn('/bin/sh', ['-c', command], {
      stdio: ['ignore', process.stderr, process.stderr],
      env: {
        ...process.env,
        VFMIGCTL_SOURCE_AGENT: source.target.name,
        VFMIGCTL_SOURCE_VF: source.vf,
        VFMIGCTL_DESTINATION_AGENT: destination.target.name,
        VFMIGCTL_DESTINATION_VF: destination.vf,
      },
    });
    const onAbort = (): void => { child.kill('SIGTERM'); };
    signal.addEventListener('abort', onAbort, { once: true });
    child.once('error', (error) => {
      signal.removeEventListener('abort', onAbort);
      reject(new CommandFailed(`--before-resume could not be started: ${error.message}`));
    });
    child.once('close', (code, killed) => {
      signal.removeEventListener('abort', onAbort);
      if (signal.aborted) reject(signal.reason);
      else if (code === 0) resolve();
      else reject(new CommandFailed(`--before-resume ${killed === null ? `exited with ${code}` : `was killed by ${killed}`}`));
    });
  });
}
