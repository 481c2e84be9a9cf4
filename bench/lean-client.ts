/**
 * A minimal JSON-RPC client for benchmarks: one connection, newline
 * framing on Buffer, any number of calls in flight. Unlike the tests'
 * client it checks nothing, so it measures the server, not itself.
 */
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';

type Waiter = { resolve: (v: unknown) => void; reject: (e: Error) => void; base64Field?: string };

/** A result whose base64 field was kept as bytes (in a pooled buffer: call `release` when done with them). */
export type WithBase64Bytes<T> = T & { readonly bytes: Buffer; release(): void };

export class LeanClient {
  private readonly socket: Socket;
  private readonly waiters = new Map<number, Waiter>();
  /** The response being received, in a buffer reused across responses (as a C client would). */
  private spill = Buffer.alloc(0);
  private spilled = 0;
  private nextId = 1;
  /** Buffers for base64 payloads, reused once a request that carried one has been written. */
  private readonly pool: Buffer[] = [];
  /** Attachment frames (rpc.enableAttachments): on, the header being read, the body being read, the one read whole. */
  private attachments = false;
  private frameHeader: Buffer | undefined;
  private frameHeaderBytes = 0;
  private frame: { buffer: Buffer; length: number; received: number } | undefined;
  private frameDone: { buffer: Buffer; length: number } | undefined;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('close', () => {
      for (const w of this.waiters.values()) w.reject(new Error('connection closed'));
      this.waiters.clear();
    });
    socket.on('error', () => undefined);
  }

  /** Over TLS with `tls` (ca, cert, key, servername). */
  static connect(port: number, host = '127.0.0.1', tls?: ConnectionOptions): Promise<LeanClient> {
    if (tls !== undefined) {
      return new Promise((resolve, reject) => {
        const socket = tlsConnect({ port, host, ...tls });
        let client: LeanClient | undefined;
        socket.on('data', (chunk: Buffer) => client?.onData(chunk));
        socket.once('secureConnect', () => {
          client = new LeanClient(socket);
          resolve(client);
        });
        socket.once('error', reject);
      });
    }
    return new Promise((resolve, reject) => {
      // Reads go into one 1 MiB buffer (copied out before the next read), as a
      // C client would read: no buffer per 64 KiB chunk, 16× fewer read events.
      let client: LeanClient | undefined;
      const socket = connect({
        port,
        host,
        onread: {
          buffer: Buffer.allocUnsafe(1024 * 1024),
          callback: (n: number, buffer: Uint8Array): boolean => {
            client?.onData(Buffer.from(buffer.buffer, buffer.byteOffset, n));
            return true;
          },
        },
      });
      socket.once('connect', () => {
        client = new LeanClient(socket);
        resolve(client);
      });
      socket.once('error', reject);
    });
  }

  call<T = Record<string, unknown>>(method: string, params: object): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiters.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.socket.write(`${JSON.stringify({ jsonrpc: '2.0', method, params, id })}\n`);
    });
  }

  /**
   * Like `call`, with `base64` written into params[field] as it is, the way
   * a C client builds its request around the payload: JSON.stringify would
   * spend milliseconds scanning a megabyte of base64 for escapes.
   */
  callWithBase64<T = Record<string, unknown>>(method: string, params: object, field: string, base64: string | Buffer, onWritten?: () => void): Promise<T> {
    const id = this.nextId++;
    const head = JSON.stringify({ jsonrpc: '2.0', method, id, params: { ...params, [field]: '' } });
    // Just after the opening quote of the empty placeholder string.
    const cut = head.lastIndexOf(`"${field}":""`) + field.length + 4;
    return new Promise<T>((resolve, reject) => {
      this.waiters.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.socket.cork();
      this.socket.write(head.slice(0, cut));
      this.socket.write(base64);
      this.socket.write(`${head.slice(cut)}\n`, onWritten);
      this.socket.uncork();
    });
  }

  /**
   * Like `call`, for a result with a large base64 field (vf.save): the
   * field is not parsed but kept as the bytes that came in, in a pooled
   * buffer, ready to be forwarded (as a C client would).
   */
  callForBase64<T = Record<string, unknown>>(method: string, params: object, field: string): Promise<WithBase64Bytes<T>> {
    const id = this.nextId++;
    return new Promise<WithBase64Bytes<T>>((resolve, reject) => {
      this.waiters.set(id, { resolve: resolve as (v: unknown) => void, reject, base64Field: field });
      this.socket.write(`${JSON.stringify({ jsonrpc: '2.0', method, params, id })}\n`);
    });
  }

  /** Turns attachment frames on (rpc.enableAttachments): vf.save results then come as raw bytes. */
  async enableAttachments(): Promise<void> {
    await this.call('rpc.enableAttachments', {});
    this.attachments = true;
  }

  /** Like `callWithBase64`, with `bytes` raw in an attachment frame before the request. */
  callWithAttachment<T = Record<string, unknown>>(method: string, params: object, field: string, bytes: Buffer, onWritten?: () => void): Promise<T> {
    const id = this.nextId++;
    const header = Buffer.allocUnsafe(5);
    header[0] = 0;
    header.writeUInt32BE(bytes.length, 1);
    return new Promise<T>((resolve, reject) => {
      this.waiters.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.socket.cork();
      this.socket.write(header);
      this.socket.write(bytes);
      this.socket.write(`${JSON.stringify({ jsonrpc: '2.0', method, id, params: { ...params, [field]: { attachment: bytes.length } } })}\n`, onWritten);
      this.socket.uncork();
    });
  }

  close(): void {
    this.socket.destroy();
  }

  /** JSON.parse, except that a base64 result field a caller asked for is copied out as bytes, unparsed. */
  private parseResponse(line: Buffer): Response {
    const head = line.subarray(0, Math.min(line.length, 256)).toString('latin1');
    const id = /"id":(\d+)/.exec(head)?.[1] ?? /"id":(\d+)/.exec(line.subarray(-256).toString('latin1'))?.[1];
    const field = id === undefined ? undefined : this.waiters.get(Number(id))?.base64Field;
    const key = field === undefined ? -1 : line.indexOf(`"${field}":"`);
    if (field === undefined || key === -1) return JSON.parse(line.toString('utf8')) as Response;
    const start = key + field.length + 4;
    const end = line.indexOf(0x22, start);
    const rest = Buffer.concat([line.subarray(0, start), line.subarray(end)]).toString('utf8');
    const response = JSON.parse(rest) as Response & { result: Record<string, unknown> };
    const buffer = this.acquire(end - start);
    line.copy(buffer, 0, start, end);
    Object.assign(response.result, { bytes: buffer.subarray(0, end - start), release: () => this.pool.push(buffer) });
    delete response.result[field];
    return response;
  }

  private acquire(size: number): Buffer {
    const index = this.pool.findIndex((b) => b.length >= size);
    return index === -1 ? Buffer.allocUnsafeSlow(Math.max(size, 2 * 1024 * 1024)) : (this.pool.splice(index, 1)[0] as Buffer);
  }

  private keep(bytes: Buffer): void {
    if (this.spilled + bytes.length > this.spill.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.spilled + bytes.length, this.spill.length * 2));
      this.spill.copy(grown, 0, 0, this.spilled);
      this.spill = grown;
    }
    bytes.copy(this.spill, this.spilled);
    this.spilled += bytes.length;
  }

  /** Reads attachment-frame bytes from `at` into a pooled buffer; returns where they end in the chunk. */
  private onFrameBytes(chunk: Buffer, at: number): number {
    if (this.frame === undefined) {
      this.frameHeader ??= Buffer.allocUnsafe(5);
      while (at < chunk.length && this.frameHeaderBytes < 5) this.frameHeader[this.frameHeaderBytes++] = chunk[at++] as number;
      if (this.frameHeaderBytes < 5) return at;
      const length = this.frameHeader.readUInt32BE(1);
      this.frameHeaderBytes = 0;
      this.frame = { buffer: this.acquire(length), length, received: 0 };
    }
    const frame = this.frame;
    const take = Math.min(frame.length - frame.received, chunk.length - at);
    chunk.copy(frame.buffer, frame.received, at, at + take);
    frame.received += take;
    if (frame.received === frame.length) {
      this.frameDone = { buffer: frame.buffer, length: frame.length };
      this.frame = undefined;
    }
    return at + take;
  }

  private onData(chunk: Buffer): void {
    let start = 0;
    while (this.attachments && start < chunk.length && this.spilled === 0 && (this.frameHeaderBytes > 0 || this.frame !== undefined || chunk[start] === 0)) {
      start = this.onFrameBytes(chunk, start);
    }
    for (let nl = chunk.indexOf(10, start); nl !== -1; nl = chunk.indexOf(10, start)) {
      const piece = chunk.subarray(start, nl);
      let line = piece;
      if (this.spilled > 0) {
        this.keep(piece);
        line = this.spill.subarray(0, this.spilled);
        this.spilled = 0;
      }
      start = nl + 1;
      const response = this.parseResponse(line);
      const done = this.frameDone;
      if (done !== undefined && response.result !== undefined) {
        this.frameDone = undefined;
        Object.assign(response.result as object, { bytes: done.buffer.subarray(0, done.length), release: () => this.pool.push(done.buffer) });
      }
      while (this.attachments && start < chunk.length && (this.frameHeaderBytes > 0 || this.frame !== undefined || chunk[start] === 0)) {
        start = this.onFrameBytes(chunk, start);
      }
      const waiter = this.waiters.get(response.id);
      if (waiter === undefined) continue;
      this.waiters.delete(response.id);
      if (response.error) waiter.reject(new Error(`${response.error.message}: ${response.error.data?.detail ?? ''}`));
      else waiter.resolve(response.result);
    }
    if (start < chunk.length) this.keep(chunk.subarray(start));
  }
}

interface Response { id: number; result?: unknown; error?: { message: string; data?: { detail?: string } } }
