/**
 * systemd's notify protocol (sd_notify(3)) for a `Type=notify` service:
 * READY=1, STATUS=, STOPPING=1 and the watchdog's WATCHDOG=1, each a
 * datagram to the AF_UNIX socket that systemd names in NOTIFY_SOCKET.
 * Outside systemd (no NOTIFY_SOCKET) every call does nothing.
 *
 * Node has no AF_UNIX datagram sockets, so each message goes through a
 * small Node-API addon of ours (native/sd_notify.c, built by
 * scripts/build-native.mjs into dist/native/<arch>/), which sends it as
 * libsystemd's sd_notify does. It is loaded only when NOTIFY_SOCKET is set:
 * the agent run by hand needs no native code.
 */
import { createRequire } from 'node:module';
import { arch } from 'node:os';
import type { Logger } from 'pino';

/** The addon's one function: a datagram to `address` (a path, or NUL and an abstract name); throws with the errno's name as `code`. */
interface NotifyAddon {
  sendDatagram(address: Buffer, message: Buffer): void;
}

/** Where scripts/build-native.mjs puts the build for this machine, relative to dist/agent/service/. */
const ADDON = `../../native/${arch() === 'arm64' ? 'arm64' : 'amd64'}/sd_notify.node`;

/** What systemd hands a notify service; taken out of the environment so that no child speaks for the service. */
const NOTIFY_ENV = ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID'] as const;

export interface ServiceNotifier {
  /** Whether systemd listens; when false every call does nothing. */
  readonly active: boolean;
  /** Every listener is bound and every driver started (and, optionally, the first STATUS=). */
  ready(status?: string): void;
  /** One line for `systemctl status`. */
  status(text: string): void;
  stopping(status?: string): void;
  /** No more messages, no more keep-alives. */
  close(): void;
}

const INACTIVE: ServiceNotifier = { active: false, ready: () => undefined, status: () => undefined, stopping: () => undefined, close: () => undefined };

/**
 * NOTIFY_SOCKET as a socket address: an absolute path, or `@name` for the
 * abstract name `\0name`. Undefined when unset or of a kind this does not
 * speak (systemd's `vsock:`).
 */
export function notifySocketAddress(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (value.startsWith('/')) return value;
  if (value.startsWith('@') && value.length > 1) return `\0${value.slice(1)}`;
  return undefined;
}

/**
 * How often to send WATCHDOG=1: half of WATCHDOG_USEC, as sd_watchdog_enabled(3)
 * advises, so that one late tick is not yet a missed deadline. Undefined when
 * there is no watchdog, or when WATCHDOG_PID says it watches another process
 * (this one was started by the service, not as it).
 */
export function watchdogPeriodMs(env: NodeJS.ProcessEnv, pid: number = process.pid): number | undefined {
  const usec = env.WATCHDOG_USEC;
  if (usec === undefined || !/^[1-9][0-9]*$/.test(usec)) return undefined;
  const watched = env.WATCHDOG_PID;
  if (watched !== undefined && watched !== String(pid)) return undefined;
  return Math.max(1, Math.floor(Number(usec) / 2000));
}

/** A message's assignments; a newline in a value would start another assignment, so it goes. */
function message(fields: Record<string, string>): Buffer {
  return Buffer.from(Object.entries(fields).map(([key, value]) => `${key}=${value.replace(/\n/g, ' ')}`).join('\n'));
}

/**
 * The notifier for this process, from NOTIFY_SOCKET, WATCHDOG_USEC and
 * WATCHDOG_PID (which it removes from `env`). With a watchdog it sends
 * WATCHDOG=1 from a timer from now on: a timer in the event loop, so an
 * event loop that is wedged stops sending and systemd restarts the service.
 */
export function openServiceNotifier(log: Logger, env: NodeJS.ProcessEnv = process.env): ServiceNotifier {
  const named = env.NOTIFY_SOCKET;
  const address = notifySocketAddress(named);
  const periodMs = watchdogPeriodMs(env);
  for (const key of NOTIFY_ENV) delete env[key];
  if (named === undefined) return INACTIVE;
  if (address === undefined) {
    log.warn({ NOTIFY_SOCKET: named }, 'NOTIFY_SOCKET is neither a path nor @abstract; systemd will not hear from this process');
    return INACTIVE;
  }
  let addon: NotifyAddon;
  try {
    addon = createRequire(import.meta.url)(ADDON) as NotifyAddon;
  } catch (error) {
    log.error({ err: error instanceof Error ? error.message : String(error) }, 'cannot load the notify addon (npm test and npm run package build it: scripts/build-native.mjs); systemd will not hear READY=1');
    return INACTIVE;
  }
  const to = Buffer.from(address);
  let closed = false;
  // One warning per run of failures: a watchdog tick every few seconds must not flood the log.
  let failing = false;
  const send = (fields: Record<string, string>): void => {
    if (closed) return;
    try {
      // Non-blocking: a systemd that is not reading costs a lost message (EAGAIN), never a wait.
      addon.sendDatagram(to, message(fields));
      failing = false;
    } catch (error) {
      if (!failing) log.warn({ err: error instanceof Error ? error.message : String(error), NOTIFY_SOCKET: named }, 'systemd did not take a notify message');
      failing = true;
    }
  };
  // Unref'd: the keep-alive alone never keeps the process running.
  const watchdog = periodMs === undefined ? undefined : setInterval(() => send({ WATCHDOG: '1' }), periodMs).unref();
  if (periodMs !== undefined) log.info({ periodMs }, 'sending systemd watchdog keep-alives');
  return {
    active: true,
    ready: (status) => send(status === undefined ? { READY: '1' } : { READY: '1', STATUS: status }),
    status: (text) => send({ STATUS: text }),
    stopping: (status) => send(status === undefined ? { STOPPING: '1' } : { STOPPING: '1', STATUS: status }),
    close: () => {
      if (closed) return;
      closed = true;
      clearInterval(watchdog);
    },
  };
}
