/**
 * Ends the agent when the launcher that started it as a child is gone.
 *
 * bin/vfmigd.mjs runs the agent as a child process when the Node first on
 * PATH is too old (or VFMIGD_FORCE_CHILD=1). It then hands the child one end
 * of a pipe and names its descriptor in VFMIGD_PARENT_FD. The launcher never
 * writes to it: when the launcher ends, however it ends (SIGKILL included,
 * where it can run no code), the kernel closes its end and the agent reads
 * EOF. The agent then stops as on SIGTERM: it closes gracefully and exits,
 * instead of serving its port with nobody left to stop it.
 */
import { Socket } from 'node:net';
import type { Logger } from 'pino';

/** Set by the launcher: the descriptor of the pipe whose EOF means "the launcher is gone". */
export const PARENT_FD_ENV = 'VFMIGD_PARENT_FD';

/** Watches the launcher's pipe when there is one; does nothing when the agent was started directly. */
export function watchParent(log: Logger, env: NodeJS.ProcessEnv = process.env): void {
  const named = env[PARENT_FD_ENV];
  if (named === undefined) return;
  // Nothing the agent starts should take the pipe for its own.
  delete env[PARENT_FD_ENV];
  const fd = Number(named);
  if (!Number.isInteger(fd) || fd < 3) {
    log.warn({ [PARENT_FD_ENV]: named }, 'not a descriptor the launcher could have passed; not watching the launcher');
    return;
  }
  let pipe: Socket;
  try {
    pipe = new Socket({ fd, readable: true, writable: false });
  } catch (error) {
    // Not open, or not a pipe: the variable came from somewhere other than the launcher.
    log.warn({ [PARENT_FD_ENV]: named, err: error }, 'cannot watch the launcher\'s pipe');
    return;
  }
  // The pipe alone never keeps the agent running.
  pipe.unref();
  let gone = false;
  const launcherGone = (how: string): void => {
    if (gone) return;
    gone = true;
    pipe.destroy();
    log.info({ how }, 'launcher gone; stopping');
    // Exactly the path an operator's SIGTERM takes (agent/main.ts).
    process.kill(process.pid, 'SIGTERM');
  };
  // The launcher writes nothing; reading is only how EOF is seen.
  pipe.on('data', () => undefined);
  pipe.once('end', () => launcherGone('end of its pipe'));
  pipe.once('error', (error) => launcherGone(`error on its pipe: ${error.message}`));
  pipe.once('close', () => launcherGone('its pipe closed'));
}
