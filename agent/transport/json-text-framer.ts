/**
 * Framing of a byte stream into JSON texts, as every client of ours sends
 * them: one per line (jayson, `nc`, the VMM plugin), pretty-printed across
 * lines with no delimiter (SPDK's `rpc.py` and the DPU tools built on it),
 * several back to back with or without whitespace between, CRLF line ends,
 * a UTF-8 byte order mark, no trailing newline.
 *
 * The framer only finds where each text ends; it does not build values.
 * It follows the JSON grammar closely enough to tell where an object or
 * array closes (strings, escapes, nesting), and to notice a syntax error
 * where a line-by-line client would have started a new line, so that one
 * broken text does not swallow the requests after it. Deciding that a text
 * is invalid is left to the one parser that reads it (rpc/parse-message).
 *
 * Cost: each byte is looked at once. String contents, which are nearly all
 * of the bytes (a megabyte of base64 in vf.load), are skipped with
 * memchr-speed searches whose results are kept until passed, so many short
 * strings in one chunk cost no more than one long one. No more than
 * `maxMessageBytes` of an unfinished text is ever held.
 *
 * Recovery after a syntax error (the text is handed on anyway and the
 * parser answers it with a parse error):
 * - at a raw line feed inside a string, or at the first non-blank byte of a
 *   later line of the text, the broken text ends there and a new one may
 *   start at that byte;
 * - elsewhere, the broken text runs to the end of its line.
 * A text that starts with neither `{` nor `[` (never a valid JSON-RPC
 * message) runs to the end of its line, as every text did before.
 *
 * Attachments (once `acceptAttachments()` was called for the connection):
 * between texts, a 0x00 byte (which no JSON text holds raw) starts an
 * attachment frame: a 4-byte big-endian length N, then N raw bytes, which
 * belong to the text that follows. Its bytes are kept as views of the
 * chunks they came in (never copied here) and count against the same limit
 * as a text.
 */
import { isAscii } from 'node:buffer';

export class MessageTooLargeError extends Error {
  readonly limit: number;
  /** Complete messages that came before the oversized one in the same chunk. */
  readonly before: readonly FramedMessage[];
  constructor(limit: number, before: readonly FramedMessage[]) {
    super(`message exceeds ${limit} bytes`);
    this.name = 'MessageTooLargeError';
    this.limit = limit;
    this.before = before;
  }
}

/** A text whose bytes are not valid UTF-8 (RFC 8259 section 8.1: JSON is UTF-8). */
export const NOT_UTF8: unique symbol = Symbol('vfmigd.notUtf8');
export type FramedText = string | typeof NOT_UTF8;

/** The bytes of one attachment frame, as views of the chunks they came in. */
export interface FramedAttachment {
  readonly pieces: readonly Buffer[];
  readonly length: number;
}

/** A text and the attachment frames that stood before it (one, unless the client broke the rule). */
export interface AttachedText {
  readonly text: FramedText;
  readonly attachments: readonly FramedAttachment[];
}

/** What the framer hands on: a text, or a text with its attachments. */
export type FramedMessage = FramedText | AttachedText;

export function isAttached(message: FramedMessage): message is AttachedText {
  return typeof message === 'object';
}

/** The frame header an attachment of `length` bytes is sent behind: 0x00, then the length, big-endian. */
export function attachmentFrameHeader(length: number): Buffer {
  const header = Buffer.allocUnsafe(1 + ATTACHMENT_LENGTH_BYTES);
  header[0] = NUL;
  header.writeUInt32BE(length, 1);
  return header;
}

const LF = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const TAB = 0x09;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const BOM = [0xef, 0xbb, 0xbf] as const;
const NUL = 0x00;
const ATTACHMENT_LENGTH_BYTES = 4;

/** Where the scanner is. Containers keep their kinds on a stack. */
const Scan = {
  /** Between texts: whitespace and byte order marks are skipped. */
  Between: 0,
  /** A text that is not an object or array: it ends at the end of its line. */
  Line: 1,
  /** After a syntax error: the broken text ends at the end of its line. */
  DiscardLine: 2,
  /** A value is expected (after `:` or `,` in an array). */
  Value: 3,
  /** Right after `[`: a value or `]`. */
  ArrayFirst: 4,
  /** Right after `{`: a key or `}`. */
  ObjectFirst: 5,
  /** After `,` in an object: a key. */
  ObjectKey: 6,
  /** After a key: `:`. */
  Colon: 7,
  /** After a value inside a container: `,` or the container's closer. */
  AfterValue: 8,
  /** Inside a string value, or a key. */
  String: 9,
  /** Right after a backslash inside a string. */
  Escape: 10,
  /** Inside a number or a literal (true, false, null), or junk made of the same characters. */
  Token: 11,
  /** After an attachment's 0x00: its length, big-endian. */
  AttachmentLength: 12,
  /** Inside an attachment's bytes. */
  AttachmentBody: 13,
} as const;
type Scan = (typeof Scan)[keyof typeof Scan];

const ARRAY = 0;
const OBJECT = 1;

function isWhitespace(byte: number): boolean {
  return byte === SPACE || byte === LF || byte === CR || byte === TAB;
}

/** Characters of numbers and literals, and of junk like them; the parser tells which is which. */
function isTokenByte(byte: number): boolean {
  return (byte >= 0x30 && byte <= 0x39) || (byte >= 0x61 && byte <= 0x7a) || (byte >= 0x41 && byte <= 0x5a) || byte === 0x2d || byte === 0x2b || byte === 0x2e;
}

const EMPTY = Buffer.alloc(0);
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export class JsonTextFramer {
  private readonly maxMessageBytes: number;
  /**
   * The text being received, once it spans chunks, in a buffer reused from
   * text to text: a fresh megabyte per message costs page faults (0.4 ms
   * per MiB measured) and garbage.
   */
  private spill: Buffer = EMPTY;
  private pendingBytes = 0;
  private state: Scan = Scan.Between;
  /** The state a string returns to when it closes (after a key: Colon). */
  private afterString: Scan = Scan.AfterValue;
  /** Container kinds, innermost last; a Uint8Array because a hostile text may nest millions deep. */
  private stack = new Uint8Array(64);
  private depth = 0;
  /** Bytes of a byte order mark matched so far, between texts. */
  private bomMatched = 0;
  /** True after a line feed inside the current text until the next non-blank byte. */
  private atLineStart = false;
  private attachmentsOn = false;
  /** The attachment being received: length bytes seen, its length, its bytes so far. */
  private attachmentLengthBytes = 0;
  private attachmentLength = 0;
  private attachmentPieces: Buffer[] = [];
  private attachmentReceived = 0;
  /** Attachments received whole, waiting for their text. */
  private attachments: FramedAttachment[] = [];
  private attachmentsHeld = 0;

  constructor(maxMessageBytes: number) {
    this.maxMessageBytes = maxMessageBytes;
  }

  /** Bytes of an unfinished message (text or attachment) held now. */
  get buffered(): number {
    return this.pendingBytes + this.bomMatched + this.attachmentsHeld + this.attachmentReceived + this.attachmentLengthBytes;
  }

  /** From the next byte on, a 0x00 between texts starts an attachment frame. */
  acceptAttachments(): void {
    this.attachmentsOn = true;
  }

  /**
   * The end of the stream: the text still unfinished, if any, as it is (the
   * parser answers it: a top-level scalar is complete at the end of the
   * stream; a cut object or array is a parse error). The framer starts afresh.
   */
  end(): FramedMessage | undefined {
    // An attachment with no text after it belongs to nothing: dropped.
    if (this.state === Scan.AttachmentLength || this.state === Scan.AttachmentBody) this.state = Scan.Between;
    this.dropAttachments();
    const held = this.state === Scan.Between ? undefined : this.take(EMPTY);
    if (held === undefined && this.bomMatched > 0) {
      this.bomMatched = 0;
      return NOT_UTF8;
    }
    this.state = Scan.Between;
    this.depth = 0;
    this.bomMatched = 0;
    this.atLineStart = false;
    return held;
  }

  /** Feeds a chunk; returns the texts it finished, in order. */
  push(chunk: Buffer): FramedMessage[] {
    const texts: FramedMessage[] = [];
    /** Where the current text starts in this chunk (0 when it began in an earlier one). */
    let start = 0;
    const caches: SearchCache = { quote: -1, backslash: -1, lf: -1 };
    const end = chunk.length;
    let i = 0;

    const finish = (until: number): void => {
      this.ensureFits(until - start, texts);
      const text = this.take(chunk.subarray(start, until));
      if (this.attachments.length === 0) {
        texts.push(text);
      } else {
        texts.push({ text, attachments: this.attachments });
        this.attachments = [];
        this.attachmentsHeld = 0;
      }
      this.state = Scan.Between;
      this.depth = 0;
      this.atLineStart = false;
    };
    /** A syntax error at byte i; returns where scanning goes on. */
    const syntaxError = (byte: number): number => {
      if (byte === LF || this.atLineStart) {
        finish(i);
        return byte === LF ? i + 1 : i;
      }
      this.state = Scan.DiscardLine;
      return i;
    };

    while (i < end) {
      const byte = chunk[i] as number;
      switch (this.state) {
        case Scan.Between: {
          if (this.bomMatched > 0 || byte === BOM[0]) {
            if (byte === BOM[this.bomMatched]) {
              this.bomMatched = this.bomMatched === 2 ? 0 : this.bomMatched + 1;
              i += 1;
              continue;
            }
            // Not a byte order mark after all: its bytes so far begin a line of junk.
            this.append(Buffer.from(BOM.slice(0, this.bomMatched)));
            this.bomMatched = 0;
            start = i;
            this.state = Scan.Line;
            continue;
          }
          if (isWhitespace(byte)) {
            i += 1;
            continue;
          }
          if (byte === NUL && this.attachmentsOn) {
            this.state = Scan.AttachmentLength;
            this.attachmentLengthBytes = 0;
            this.attachmentLength = 0;
            i += 1;
            continue;
          }
          start = i;
          if (byte === OPEN_OBJECT || byte === OPEN_ARRAY) {
            this.open(byte);
          } else {
            this.state = Scan.Line;
          }
          i += 1;
          continue;
        }
        case Scan.Line:
        case Scan.DiscardLine: {
          // The line feed is not part of the text; a CR before it is whitespace to the parser.
          if (caches.lf < i) caches.lf = indexOrEnd(chunk, LF, i);
          if (caches.lf === end) {
            i = end;
            continue;
          }
          i = caches.lf;
          finish(i);
          i += 1;
          continue;
        }
        case Scan.String: {
          i = this.endOfStringRun(chunk, i, caches);
          if (i === end) continue;
          const at = chunk[i] as number;
          if (at === QUOTE) {
            this.state = this.afterString;
            i += 1;
          } else if (at === BACKSLASH) {
            this.state = Scan.Escape;
            i += 1;
          } else {
            i = syntaxError(at);
          }
          continue;
        }
        case Scan.Escape: {
          // Which escapes are valid is the parser's business; a raw line feed cannot be escaped.
          if (byte === LF) {
            i = syntaxError(byte);
            continue;
          }
          this.state = Scan.String;
          i += 1;
          continue;
        }
        case Scan.AttachmentLength: {
          this.attachmentLength = this.attachmentLength * 256 + byte;
          this.attachmentLengthBytes += 1;
          i += 1;
          if (this.attachmentLengthBytes < ATTACHMENT_LENGTH_BYTES) continue;
          this.attachmentLengthBytes = 0;
          if (this.attachmentLength > this.maxMessageBytes) this.tooLarge(texts);
          this.state = Scan.AttachmentBody;
          if (this.attachmentLength === 0) this.attachmentDone();
          continue;
        }
        case Scan.AttachmentBody: {
          const take = Math.min(this.attachmentLength - this.attachmentReceived, end - i);
          this.attachmentPieces.push(chunk.subarray(i, i + take));
          this.attachmentReceived += take;
          i += take;
          if (this.attachmentReceived === this.attachmentLength) this.attachmentDone();
          continue;
        }
        case Scan.Token: {
          if (isTokenByte(byte)) {
            i += 1;
            continue;
          }
          this.state = Scan.AfterValue;
          continue;
        }
        default:
          break;
      }

      // Structural states: whitespace between tokens, then one token.
      if (isWhitespace(byte)) {
        if (byte === LF) this.atLineStart = true;
        i += 1;
        continue;
      }
      if (!this.structural(byte)) {
        i = syntaxError(byte);
        continue;
      }
      this.atLineStart = false;
      i += 1;
      // Depth 0 after a structural byte: the outermost container just closed.
      if (this.depth === 0) finish(i);
    }

    if (this.state !== Scan.Between && this.state !== Scan.AttachmentLength && this.state !== Scan.AttachmentBody) {
      this.ensureFits(end - start, texts);
      this.append(chunk.subarray(start, end));
    }
    return texts;
  }

  /**
   * Where the run of string contents from `i` ends: at a quote, a backslash
   * or a raw line feed, or at the chunk's end. Keys and short values end
   * within a few bytes, which a plain loop finds sooner than a native
   * search; long runs (base64) go to memchr-speed searches, whose results
   * are kept until passed.
   */
  private endOfStringRun(chunk: Buffer, from: number, caches: SearchCache): number {
    const shortEnd = Math.min(chunk.length, from + 24);
    for (let i = from; i < shortEnd; i += 1) {
      const byte = chunk[i];
      if (byte === QUOTE || byte === BACKSLASH || byte === LF) return i;
    }
    if (shortEnd === chunk.length) return shortEnd;
    if (caches.quote < shortEnd) caches.quote = indexOrEnd(chunk, QUOTE, shortEnd);
    if (caches.backslash < shortEnd) caches.backslash = indexOrEnd(chunk, BACKSLASH, shortEnd);
    if (caches.lf < shortEnd) caches.lf = indexOrEnd(chunk, LF, shortEnd);
    return Math.min(caches.quote, caches.backslash, caches.lf);
  }

  /** One structural byte in a structural state; false if the grammar has no place for it. */
  private structural(byte: number): boolean {
    switch (this.state) {
      case Scan.ObjectFirst:
        if (byte === CLOSE_OBJECT) return this.close(OBJECT);
        return this.key(byte);
      case Scan.ObjectKey:
        return this.key(byte);
      case Scan.Colon:
        if (byte !== COLON) return false;
        this.state = Scan.Value;
        return true;
      case Scan.ArrayFirst:
        if (byte === CLOSE_ARRAY) return this.close(ARRAY);
        return this.value(byte);
      case Scan.Value:
        return this.value(byte);
      case Scan.AfterValue:
        if (byte === COMMA) {
          this.state = this.stack[this.depth - 1] === OBJECT ? Scan.ObjectKey : Scan.Value;
          return true;
        }
        if (byte === CLOSE_OBJECT) return this.close(OBJECT);
        if (byte === CLOSE_ARRAY) return this.close(ARRAY);
        return false;
      default:
        return false;
    }
  }

  private key(byte: number): boolean {
    if (byte !== QUOTE) return false;
    this.state = Scan.String;
    this.afterString = Scan.Colon;
    return true;
  }

  private value(byte: number): boolean {
    if (byte === OPEN_OBJECT || byte === OPEN_ARRAY) {
      this.open(byte);
      return true;
    }
    if (byte === QUOTE) {
      this.state = Scan.String;
      this.afterString = Scan.AfterValue;
      return true;
    }
    if (isTokenByte(byte)) {
      this.state = Scan.Token;
      return true;
    }
    return false;
  }

  private open(byte: number): void {
    if (this.depth === this.stack.length) {
      const grown = new Uint8Array(this.stack.length * 2);
      grown.set(this.stack);
      this.stack = grown;
    }
    this.stack[this.depth] = byte === OPEN_OBJECT ? OBJECT : ARRAY;
    this.depth += 1;
    this.state = byte === OPEN_OBJECT ? Scan.ObjectFirst : Scan.ArrayFirst;
  }

  /** A closer: right only for the innermost container's kind. The outermost closing ends the text (state Between). */
  private close(kind: number): boolean {
    if (this.stack[this.depth - 1] !== kind) return false;
    this.depth -= 1;
    this.state = this.depth === 0 ? Scan.Between : Scan.AfterValue;
    if (this.depth === 0 && this.stack.length > 4096) this.stack = new Uint8Array(64);
    return true;
  }

  /** The text made of what was held plus `last`, decoded; the held bytes are released. */
  private take(last: Buffer): FramedText {
    let bytes = last;
    if (this.pendingBytes > 0) {
      this.append(last);
      bytes = this.spill.subarray(0, this.pendingBytes);
    }
    const text = decode(bytes);
    // A connection that sent one large message and then only small ones does not keep the large buffer.
    if (this.spill.length > 1024 * 1024 && bytes.length < this.spill.length / 4) this.spill = EMPTY;
    this.pendingBytes = 0;
    return text;
  }

  private append(bytes: Buffer): void {
    const needed = this.pendingBytes + bytes.length;
    if (needed > this.spill.length) {
      const grown = Buffer.allocUnsafe(Math.min(this.maxMessageBytes, Math.max(needed, this.spill.length * 2, 64 * 1024)));
      this.spill.copy(grown, 0, 0, this.pendingBytes);
      this.spill = grown;
    }
    bytes.copy(this.spill, this.pendingBytes);
    this.pendingBytes = needed;
  }

  /** An attachment received whole: it waits for its text. */
  private attachmentDone(): void {
    this.attachments.push({ pieces: this.attachmentPieces, length: this.attachmentReceived });
    this.attachmentsHeld += this.attachmentReceived;
    this.attachmentPieces = [];
    this.attachmentReceived = 0;
    this.state = Scan.Between;
  }

  private dropAttachments(): void {
    this.attachmentPieces = [];
    this.attachmentReceived = 0;
    this.attachmentLengthBytes = 0;
    this.attachments = [];
    this.attachmentsHeld = 0;
  }

  /** Refuses the text as soon as it is known to be too long, and forgets everything held for it. */
  private ensureFits(more: number, framedSoFar: readonly FramedMessage[]): void {
    if (this.pendingBytes + more <= this.maxMessageBytes) return;
    this.tooLarge(framedSoFar);
  }

  private tooLarge(framedSoFar: readonly FramedMessage[]): never {
    this.dropAttachments();
    this.spill = EMPTY;
    this.pendingBytes = 0;
    this.state = Scan.Between;
    this.depth = 0;
    this.bomMatched = 0;
    this.atLineStart = false;
    throw new MessageTooLargeError(this.maxMessageBytes, framedSoFar);
  }
}

/** Next positions in the chunk of the bytes that end a run; -1 until searched. */
interface SearchCache {
  quote: number;
  backslash: number;
  lf: number;
}

function indexOrEnd(chunk: Buffer, byte: number, from: number): number {
  const at = chunk.indexOf(byte, from);
  return at === -1 ? chunk.length : at;
}

function decode(bytes: Buffer): FramedText {
  // Pure ASCII (every base64 payload) decodes faster as latin1, to the same string.
  if (isAscii(bytes)) return bytes.toString('latin1');
  try {
    return utf8.decode(bytes);
  } catch {
    return NOT_UTF8;
  }
}
