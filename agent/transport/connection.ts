/**
 * One client connection: bytes in through the framer (any stream of JSON
 * texts), each message to the dispatch session, each response out as one line.
 *
 * What one connection may hold is bounded, whatever the client does:
 * - Messages are handed on only while the session has room (its in-flight
 *   limit) and the socket's write buffer is not full; otherwise reading
 *   stops, so unread requests wait in the kernel, not here.
 * - Replies the client does not read stay in the write buffer; past
 *   `maxUnsentBytes` the connection is closed and they are dropped.
 * - A message left unfinished for `messageTimeoutMs`, or a connection idle
 *   (nothing received, nothing running) for `idleTimeoutMs`, is closed.
 * - A client that half-closes gets its answers, then the connection closes.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { attachmentFrameHeader, JsonTextFramer, MessageTooLargeError, type FramedMessage } from './json-text-framer.ts';

/** A response: its text (or pieces of it, written in order), and the attachment to send before it. */
/** The bytes of an attachment a reply sends, in pieces written in order, and their total. */
export interface OutgoingAttachment {
  readonly pieces: readonly Uint8Array[];
  readonly length: number;
}

/** A reply with an attachment says when its pieces are no longer needed: `onSent`, called once, written or dropped. */
export type Reply = string | readonly string[] | { readonly text: string | readonly string[]; readonly attachment: OutgoingAttachment; readonly onSent: () => void };

/** What the layer above may ask of the connection a message came on. */
export interface ConnectionLink {
  /** Whether attachment frames are on, both ways. */
  readonly attachments: boolean;
  /** Turns attachment frames on for the bytes after the message being served, and for every reply. */
  enableAttachments(): void;
  /**
   * Writes a message the agent sends on its own (a notification) between
   * replies. `sent`; `busy` when the client is not keeping up (more than
   * NOTIFY_BACKLOG_BYTES, or half the unsent limit, unread), so the caller keeps it and waits for
   * `whenDrained`; `closed` when the connection is gone. `force` writes it
   * even when busy: a last word that must not wait.
   */
  notify(text: string, force?: boolean): 'sent' | 'busy' | 'closed';
  /** Calls `listener` once, when what was written has drained. */
  whenDrained(listener: () => void): void;
  /** Calls `listener` once, when the connection closes. */
  onClose(listener: () => void): void;
  /**
   * Keeps the connection from being closed as idle until the returned
   * release is called: a subscriber waits for notifications, not replies.
   */
  hold(): () => void;
}

/**
 * Unread bytes past which a notification waits: a subscriber that falls
 * this far behind queues on its own side (bounded), never in the socket.
 */
const NOTIFY_BACKLOG_BYTES = 1024 * 1024;

/** The dispatch layer, as the transport sees it. */
export interface MessageSession {
  /** The response owed, undefined when none is. */
  handle(message: FramedMessage, link: ConnectionLink): Promise<Reply | undefined>;
  /** True while a new message would have to wait for room. */
  readonly saturated: boolean;
  /** Calls `listener` whenever room frees up. */
  whenCapacity(listener: () => void): void;
}

/** Error responses the transport sends on its own, written by the RPC layer. */
export interface TransportRefusals {
  messageTooLarge(limit: number): string;
  tooManyConnections(limit: number, scope: 'agent' | 'peer'): string;
}

export interface ConnectionLimits {
  readonly maxMessageBytes: number;
  readonly messageTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly maxUnsentBytesPerConnection: number;
}

export interface ConnectionHooks {
  /** Called after a write that left bytes unsent, so the listener can hold the total down. */
  readonly onBacklog: () => void;
}

export function serveConnection(socket: Socket, session: MessageSession, limits: ConnectionLimits, refusals: TransportRefusals, hooks: ConnectionHooks, log: Logger): void {
  const framer = new JsonTextFramer(limits.maxMessageBytes);
  /** Framed messages not yet handed to the session. */
  const queued: FramedMessage[] = [];
  let attachmentsOn = false;
  let holds = 0;
  const notifyBacklogBytes = Math.min(NOTIFY_BACKLOG_BYTES, limits.maxUnsentBytesPerConnection / 2);
  const link: ConnectionLink = {
    get attachments() {
      return attachmentsOn;
    },
    enableAttachments() {
      if (attachmentsOn) return;
      attachmentsOn = true;
      framer.acceptAttachments();
    },
    notify(text, force = false) {
      if (socket.destroyed || !socket.writable) return 'closed';
      if (!force && socket.writableLength > notifyBacklogBytes) return 'busy';
      socket.write(`${text}\n`);
      return 'sent';
    },
    whenDrained(listener) {
      socket.once('drain', listener);
    },
    onClose(listener) {
      if (socket.destroyed) queueMicrotask(listener);
      else socket.once('close', listener);
    },
    hold() {
      holds += 1;
      armTimers();
      let held = true;
      return () => {
        if (!held) return;
        held = false;
        holds -= 1;
        armTimers();
      };
    },
  };
  let waitingForDrain = false;
  let unanswered = 0;
  /** Set once a message was too large: the last words before closing. */
  let farewell: string | undefined;
  let messageTimer: NodeJS.Timeout | undefined;
  let idleTimer: NodeJS.Timeout | undefined;

  const close = (reason: string, fields: Record<string, unknown> = {}): void => {
    log.warn({ ...fields, remote: socket.remoteAddress }, reason);
    socket.destroy();
  };

  /** Set when the client has finished sending (a half-close): answer what came, then close. */
  let ended = false;

  const closeIfDone = (): void => {
    if ((farewell === undefined && !ended) || unanswered > 0 || queued.length > 0 || socket.destroyed) return;
    if (farewell !== undefined) socket.end(`${farewell}\n`);
    else socket.end();
  };

  const armTimers = (): void => {
    // A partial message counts against the client only while we are reading.
    if (framer.buffered > 0 && !socket.isPaused() && farewell === undefined) {
      messageTimer ??= setTimeout(() => close('message unfinished for too long; closing connection', { timeoutMs: limits.messageTimeoutMs, buffered: framer.buffered }), limits.messageTimeoutMs).unref();
    } else if (messageTimer !== undefined) {
      clearTimeout(messageTimer);
      messageTimer = undefined;
    }
    const idle = unanswered === 0 && queued.length === 0 && framer.buffered === 0 && !ended && holds === 0;
    if (idle) {
      idleTimer ??= setTimeout(() => close('connection idle for too long; closing it', { timeoutMs: limits.idleTimeoutMs }), limits.idleTimeoutMs).unref();
    } else if (idleTimer !== undefined) {
      clearTimeout(idleTimer);
      idleTimer = undefined;
    }
  };

  const send = (response: Reply): void => {
    const onSent = typeof response === 'object' && 'attachment' in response ? response.onSent : undefined;
    if (socket.destroyed || !socket.writable) {
      onSent?.();
      return;
    }
    let flushed: boolean;
    if (typeof response === 'string') {
      flushed = socket.write(`${response}\n`);
    } else {
      // One write per piece, sent together: the attachment's frame, then the text.
      socket.cork();
      const text = 'attachment' in response ? response.text : response;
      if ('attachment' in response) {
        socket.write(attachmentFrameHeader(response.attachment.length));
        for (const piece of response.attachment.pieces) socket.write(piece);
      }
      if (typeof text === 'string') socket.write(text);
      else for (const piece of text) socket.write(piece);
      // Called once everything before it was handed to the kernel, or with an error once the socket is gone.
      flushed = socket.write('\n', onSent === undefined ? undefined : () => onSent());
      process.nextTick(() => socket.uncork());
    }
    if (flushed) return;
    if (socket.writableLength > limits.maxUnsentBytesPerConnection) {
      close('client does not read its replies; closing connection', { unsentBytes: socket.writableLength, limit: limits.maxUnsentBytesPerConnection });
      return;
    }
    waitingForDrain = true;
    hooks.onBacklog();
  };

  /** Hands queued messages to the session while there is room, and reads only when all were handed on. */
  const pump = (): void => {
    while (queued.length > 0 && !waitingForDrain && !session.saturated && !socket.destroyed) {
      dispatch(queued.shift() as FramedMessage);
    }
    const blocked = queued.length > 0 || waitingForDrain || farewell !== undefined || ended;
    if (blocked && !socket.isPaused()) socket.pause();
    else if (!blocked && socket.isPaused() && !socket.destroyed) socket.resume();
    armTimers();
  };

  const dispatch = (message: FramedMessage): void => {
    unanswered += 1;
    session.handle(message, link).then(
      (response) => {
        if (response !== undefined) send(response);
      },
      (error: unknown) => { log.error({ err: error }, 'dispatch failed'); },
    ).finally(() => {
      unanswered -= 1;
      closeIfDone();
      pump();
    });
  };

  session.whenCapacity(pump);
  socket.on('drain', () => {
    waitingForDrain = false;
    pump();
  });

  socket.on('data', (chunk: Buffer) => {
    if (farewell !== undefined) return;
    try {
      const messages = framer.push(chunk);
      // The unfinished-message clock restarts with each message finished.
      if (messages.length > 0 && messageTimer !== undefined) {
        clearTimeout(messageTimer);
        messageTimer = undefined;
      }
      for (const message of messages) queued.push(message);
    } catch (error) {
      if (!(error instanceof MessageTooLargeError)) throw error;
      // Requests that came before the oversized message are served; then
      // the error, and the connection closes.
      log.warn({ limit: error.limit }, 'message too large; closing connection');
      farewell = refusals.messageTooLarge(error.limit);
      for (const message of error.before) queued.push(message);
    }
    pump();
    closeIfDone();
  });
  // `printf … | nc -N` sends its requests and half-closes: each is still answered.
  // A text left unfinished at the end goes to the parser as it is (a parse error).
  socket.on('end', () => {
    ended = true;
    if (farewell === undefined) {
      const rest = framer.end();
      if (rest !== undefined) queued.push(rest);
    }
    pump();
    closeIfDone();
  });
  socket.on('close', () => {
    clearTimeout(messageTimer);
    clearTimeout(idleTimer);
    queued.length = 0;
  });
  socket.on('error', (error) => log.debug({ err: error }, 'connection error'));
  armTimers();
}
