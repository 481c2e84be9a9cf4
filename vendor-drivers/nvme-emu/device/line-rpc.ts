/**
 * JSON-RPC 2.0 over a stream socket, one JSON text per line, both ends:
 * what the nvme-emu device process speaks, to the agent's driver (its
 * control link) and to guests (its host port). Each connection has state
 * of its own (the streams it opened), dropped when it closes, as a file
 * descriptor's are.
 *
 * Small on purpose: both ends are ours, on one machine; the agent's own
 * RPC stack (limits, authorization, schemas) is for the network.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';

/** The largest line either end accepts: a state slice in base64 and its envelope. */
export const MAX_LINE_BYTES = 16 * 1024 * 1024;

export interface RpcFailure {
  readonly code: number;
  readonly message: string;
  readonly data?: Record<string, unknown>;
}

/** Thrown by a method to answer with this JSON-RPC error. */
export class RpcFailureError extends Error {
  readonly failure: RpcFailure;
  constructor(failure: RpcFailure) {
    super(failure.message);
    this.failure = failure;
  }
}

/** Reads of a method's params; `invalid(name, what)` is the refusal each face of the device answers with. */
export function paramReader(invalid: (name: string, what: string) => RpcFailureError): {
  text(params: Record<string, unknown>, name: string): string;
  integer(params: Record<string, unknown>, name: string): number;
} {
  return {
    text(params, name) {
      const value = params[name];
      if (typeof value !== 'string') throw invalid(name, 'must be a string');
      return value;
    },
    integer(params, name) {
      const value = params[name];
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw invalid(name, 'must be a non-negative integer');
      return value;
    },
  };
}

export type LineMethod<Connection> = (params: Record<string, unknown>, connection: Connection) => Promise<unknown>;

export interface LineServerOptions<Connection> {
  readonly methods: Readonly<Record<string, LineMethod<Connection>>>;
  /** State of a new connection. */
  readonly open: () => Connection;
  /** The connection is gone: release what it held. */
  readonly close: (connection: Connection) => void;
  /** An error a method threw that is not an RpcFailureError, as the caller sees it. */
  readonly failureOf: (error: unknown) => RpcFailure;
}

/** Splits a byte stream into lines, refusing one longer than MAX_LINE_BYTES. */
function lines(socket: Socket, onLine: (line: string) => void): void {
  let held: Buffer[] = [];
  let heldBytes = 0;
  socket.on('data', (chunk: Buffer) => {
    let start = 0;
    for (let end = chunk.indexOf(0x0a); end !== -1; end = chunk.indexOf(0x0a, start)) {
      const tail = chunk.subarray(start, end);
      const line = heldBytes === 0 ? tail : Buffer.concat([...held, tail]);
      held = [];
      heldBytes = 0;
      start = end + 1;
      onLine(line.toString('utf8'));
    }
    if (start < chunk.length) {
      held.push(chunk.subarray(start));
      heldBytes += chunk.length - start;
      if (heldBytes > MAX_LINE_BYTES) socket.destroy(new Error(`a line longer than ${MAX_LINE_BYTES} bytes`));
    }
  });
}

export function lineRpcServer<Connection>(options: LineServerOptions<Connection>): Server {
  return createServer((socket) => {
    const connection = options.open();
    socket.on('error', () => socket.destroy());
    socket.once('close', () => options.close(connection));
    lines(socket, (line) => {
      void answer(line).then((reply) => {
        if (reply !== undefined && socket.writable) socket.write(`${JSON.stringify(reply)}\n`);
      });
    });
    async function answer(line: string): Promise<object | undefined> {
      let request: { id?: unknown; method?: unknown; params?: unknown };
      try {
        request = JSON.parse(line) as typeof request;
      } catch {
        return { jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } };
      }
      const id = request.id ?? null;
      const method = typeof request.method === 'string' && Object.hasOwn(options.methods, request.method) ? options.methods[request.method] : undefined;
      if (method === undefined) return { jsonrpc: '2.0', id, error: { code: -32601, message: 'Method not found' } };
      const params = typeof request.params === 'object' && request.params !== null && !Array.isArray(request.params) ? request.params as Record<string, unknown> : {};
      try {
        const result = await method(params, connection);
        return request.id === undefined ? undefined : { jsonrpc: '2.0', id, result: result ?? {} };
      } catch (error) {
        return { jsonrpc: '2.0', id, error: error instanceof RpcFailureError ? error.failure : options.failureOf(error) };
      }
    }
  });
}

/** An answer that did not come: the peer is gone, or did not answer in time. */
export class LinkDownError extends Error {}

/**
 * The client end: one connection, many calls in flight, each with its own
 * deadline. A call made while the connection is down tries to connect
 * first; a connection that fails fails every call in flight on it.
 */
export class LineRpcClient {
  readonly #path: string;
  #socket: Socket | undefined;
  #connecting: Promise<Socket> | undefined;
  #nextId = 1;
  readonly #waiting = new Map<number, { resolve: (result: unknown) => void; reject: (error: Error) => void; timer: NodeJS.Timeout }>();

  constructor(path: string) {
    this.#path = path;
  }

  get connected(): boolean {
    return this.#socket !== undefined;
  }

  async call(method: string, params: object, timeoutMs: number): Promise<unknown> {
    const socket = await this.#connect(timeoutMs);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        reject(new LinkDownError(`${method}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiting.set(id, { resolve, reject, timer });
      socket.write(`${JSON.stringify({ jsonrpc: '2.0', id, method, params })}\n`);
    });
  }

  close(): void {
    this.#socket?.destroy();
    this.#socket = undefined;
  }

  #connect(timeoutMs: number): Promise<Socket> {
    if (this.#socket !== undefined) return Promise.resolve(this.#socket);
    this.#connecting ??= new Promise<Socket>((resolve, reject) => {
      const socket = createConnection(this.#path);
      const timer = setTimeout(() => socket.destroy(new LinkDownError(`no connection to ${this.#path} within ${timeoutMs} ms`)), timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        this.#socket = socket;
        resolve(socket);
      });
      socket.on('error', (error) => {
        clearTimeout(timer);
        reject(new LinkDownError(`${this.#path}: ${error.message}`));
      });
      socket.once('close', () => this.#lost(socket));
      lines(socket, (line) => this.#reply(socket, line));
    }).finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  /** A reply; a line that is not one breaks the link (every call on it fails, the next call connects again). */
  #reply(socket: Socket, line: string): void {
    let reply: { id: number; result?: unknown; error?: RpcFailure };
    try {
      reply = JSON.parse(line) as typeof reply;
    } catch {
      socket.destroy();
      return;
    }
    const waiter = this.#waiting.get(reply.id);
    if (waiter === undefined) return;
    this.#waiting.delete(reply.id);
    clearTimeout(waiter.timer);
    if (reply.error !== undefined) waiter.reject(new RpcFailureError(reply.error));
    else waiter.resolve(reply.result);
  }

  #lost(socket: Socket): void {
    if (this.#socket === socket) this.#socket = undefined;
    for (const [id, waiter] of this.#waiting) {
      clearTimeout(waiter.timer);
      waiter.reject(new LinkDownError(`the connection to ${this.#path} closed`));
      this.#waiting.delete(id);
    }
  }
}
