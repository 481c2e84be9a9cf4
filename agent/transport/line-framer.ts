/**
 * Newline-delimited framing: one JSON text per line, as jayson's TCP client
 * and `nc`/`socat` users send it. Each byte is scanned once (the newline
 * search covers only the new chunk), so a 1 MiB message costs linear time
 * however it is split into packets, and no more than `maxMessageBytes` of
 * an unfinished message is ever held.
 */
import { isAscii } from 'node:buffer';

export class MessageTooLargeError extends Error {
  readonly limit: number;
  /** Complete messages that came before the oversized one in the same chunk. */
  readonly before: readonly string[];
  constructor(limit: number, before: readonly string[]) {
    super(`message exceeds ${limit} bytes`);
    this.name = 'MessageTooLargeError';
    this.limit = limit;
    this.before = before;
  }
}

const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;

export class LineFramer {
  private readonly maxMessageBytes: number;
  /** Pieces of the message being received, before its newline arrives. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(maxMessageBytes: number) {
    this.maxMessageBytes = maxMessageBytes;
  }

  /** Feeds a chunk; returns the complete messages it finished, blank lines skipped. */
  push(chunk: Buffer): string[] {
    const messages: string[] = [];
    let start = 0;
    for (let newline = chunk.indexOf(NEWLINE); newline !== -1; newline = chunk.indexOf(NEWLINE, start)) {
      const piece = chunk.subarray(start, newline);
      this.ensureFits(piece.length, messages);
      const line = this.pendingBytes === 0 ? piece : Buffer.concat([...this.pending, piece], this.pendingBytes + piece.length);
      this.pending = [];
      this.pendingBytes = 0;
      const text = decodeLine(line);
      if (text !== undefined) messages.push(text);
      start = newline + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      this.ensureFits(rest.length, messages);
      this.pending.push(rest);
      this.pendingBytes += rest.length;
    }
    return messages;
  }

  /** Bytes of an unfinished message held now. */
  get buffered(): number {
    return this.pendingBytes;
  }

  private ensureFits(more: number, framedSoFar: readonly string[]): void {
    if (this.pendingBytes + more > this.maxMessageBytes) {
      this.pending = [];
      this.pendingBytes = 0;
      throw new MessageTooLargeError(this.maxMessageBytes, framedSoFar);
    }
  }
}

/** The line's text without a trailing CR; undefined for a blank line. */
function decodeLine(line: Buffer): string | undefined {
  let end = line.length;
  if (end > 0 && line[end - 1] === CARRIAGE_RETURN) end -= 1;
  const body = line.subarray(0, end);
  // Pure ASCII (every base64 payload) decodes faster as latin1, to the same string.
  const text = isAscii(body) ? body.toString('latin1') : body.toString('utf8');
  return text.trim() === '' ? undefined : text;
}
