/**
 * One client connection: bytes in through the line framer, each message to
 * the dispatch session (several may be in flight at once), each response
 * out as one line. When the socket's write buffer is full, reading stops
 * until it drains, so a client that does not read its responses cannot make
 * the agent buffer more than its in-flight limit's worth of responses.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { LineFramer, MessageTooLargeError } from './line-framer.ts';

/** The dispatch layer, as the transport sees it. */
export interface MessageSession {
  /** A response as text, or as pieces written in order; undefined when none is owed. */
  handle(message: string): Promise<string | string[] | undefined>;
}

/** Error responses the transport sends on its own, written by the RPC layer. */
export interface TransportRefusals {
  messageTooLarge(limit: number): string;
  tooManyConnections(limit: number): string;
}

export function serveConnection(socket: Socket, session: MessageSession, maxMessageBytes: number, refusals: TransportRefusals, log: Logger): void {
  const framer = new LineFramer(maxMessageBytes);
  let waitingForDrain = false;
  let unanswered = 0;
  /** Set once a message was too large: the last words before closing. */
  let farewell: string | undefined;

  const closeIfDone = (): void => {
    if (farewell !== undefined && unanswered === 0 && !socket.destroyed) socket.end(`${farewell}\n`);
  };

  const send = (response: string | string[]): void => {
    if (socket.destroyed || !socket.writable) return;
    let flushed: boolean;
    if (typeof response === 'string') {
      flushed = socket.write(`${response}\n`);
    } else {
      // One write per piece, sent together.
      socket.cork();
      for (const piece of response) socket.write(piece);
      flushed = socket.write('\n');
      process.nextTick(() => socket.uncork());
    }
    if (!flushed && !waitingForDrain) {
      waitingForDrain = true;
      socket.pause();
    }
  };
  socket.on('drain', () => {
    if (!waitingForDrain) return;
    waitingForDrain = false;
    if (farewell === undefined) socket.resume();
  });

  const dispatch = (message: string): void => {
    unanswered += 1;
    session.handle(message).then(
      (response) => { if (response !== undefined) send(response); },
      (error: unknown) => { log.error({ err: error }, 'dispatch failed'); },
    ).finally(() => {
      unanswered -= 1;
      closeIfDone();
    });
  };

  socket.on('data', (chunk: Buffer) => {
    if (farewell !== undefined) return;
    let messages: readonly string[];
    try {
      messages = framer.push(chunk);
    } catch (error) {
      if (!(error instanceof MessageTooLargeError)) throw error;
      // Requests that came before the oversized message are served; then
      // the error, and the connection closes.
      log.warn({ limit: error.limit }, 'message too large; closing connection');
      farewell = refusals.messageTooLarge(error.limit);
      socket.pause();
      for (const message of error.before) dispatch(message);
      closeIfDone();
      return;
    }
    for (const message of messages) dispatch(message);
  });
  socket.on('error', (error) => log.debug({ err: error }, 'connection error'));
}
