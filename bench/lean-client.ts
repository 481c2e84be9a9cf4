/**
 * A minimal JSON-RPC client for benchmarks: one connection, newline
 * framing on Buffer, any number of calls in flight. Unlike the tests'
 * client it checks nothing, so it measures the server, not itself.
 */
import { connect, type Socket } from 'node:net';

type Waiter = { resolve: (v: unknown) => void; reject: (e: Error) => void };

export class LeanClient {
  private readonly socket: Socket;
  private readonly waiters = new Map<number, Waiter>();
  private pending: Buffer[] = [];
  private nextId = 1;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('close', () => {
      for (const w of this.waiters.values()) w.reject(new Error('connection closed'));
      this.waiters.clear();
    });
    socket.on('error', () => undefined);
  }

  static connect(port: number, host = '127.0.0.1'): Promise<LeanClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, host);
      socket.once('connect', () => resolve(new LeanClient(socket)));
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
  callWithBase64<T = Record<string, unknown>>(method: string, params: object, field: string, base64: string): Promise<T> {
    const id = this.nextId++;
    const head = JSON.stringify({ jsonrpc: '2.0', method, id, params: { ...params, [field]: '' } });
    // Just after the opening quote of the empty placeholder string.
    const cut = head.lastIndexOf(`"${field}":""`) + field.length + 4;
    return new Promise<T>((resolve, reject) => {
      this.waiters.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.socket.cork();
      this.socket.write(head.slice(0, cut));
      this.socket.write(base64);
      this.socket.write(`${head.slice(cut)}\n`);
      this.socket.uncork();
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    let start = 0;
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
      const piece = chunk.subarray(start, nl);
      const line = this.pending.length === 0 ? piece : Buffer.concat([...this.pending, piece]);
      this.pending = [];
      start = nl + 1;
      const response = JSON.parse(line.toString('utf8')) as { id: number; result?: unknown; error?: { message: string; data?: { detail?: string } } };
      const waiter = this.waiters.get(response.id);
      if (waiter === undefined) continue;
      this.waiters.delete(response.id);
      if (response.error) waiter.reject(new Error(`${response.error.message}: ${response.error.data?.detail ?? ''}`));
      else waiter.resolve(response.result);
    }
    if (start < chunk.length) this.pending.push(chunk.subarray(start));
  }
}
