/**
 * A JSON-RPC 2.0 client for the tests, over TCP or a Unix socket, one JSON
 * text per line, with several requests in flight. Every response it sees is
 * checked against the method's result schema (or, for an error, against the
 * error-data schema and the catalogue), so any test that talks to the agent
 * also checks the contract.
 */
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { ERROR_CATALOGUE, type ErrorName } from '../../agent/rpc/error-catalogue.ts';
import { SchemaRegistry, violations } from '../../agent/rpc/schema-registry.ts';
import type { MethodTypes, StateBytes } from '../../schemas/types.ts';

let registry: SchemaRegistry | undefined;
/** One registry for the whole test process: compiling the schemas takes a while. */
export function schemas(): SchemaRegistry {
  registry ??= new SchemaRegistry();
  return registry;
}

export interface WireErrorShape {
  code: number;
  message: string;
  data?: { code: string; detail: string; [key: string]: unknown };
}

export class RpcError extends Error {
  readonly code: number;
  readonly data: WireErrorShape['data'];
  constructor(error: WireErrorShape) {
    super(`${error.code} ${error.message}: ${error.data?.detail ?? ''}`);
    this.code = error.code;
    this.data = error.data;
    this.name = error.data?.code ?? 'RpcError';
  }
}

/** A TCP or Unix address; with `tls`, a mutual-TLS connection (its options: ca, cert, key, servername, ...). */
export type RpcAddress = { host: string; port: number; tls?: ConnectionOptions } | { path: string };

type Pending = { method: string | undefined; resolve: (r: Record<string, unknown>) => void };

/** The attachment frame that stood before a response, by response object. */
const ATTACHMENTS = new WeakMap<object, Buffer>();

/** The bytes of the attachment frame that came before `response`, if one did. */
export function attachmentOf(response: object): Buffer | undefined {
  return ATTACHMENTS.get(response);
}

export class RpcClient {
  private readonly socket: Socket;
  /** Bytes of a response still waiting for its newline. */
  private partial: Buffer[] = [];
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  /** Responses nobody waits for by id (batches, id:null). */
  private readonly unmatched: unknown[] = [];
  private readonly waiters: ((r: unknown) => void)[] = [];
  private closedWith: Error | undefined;
  /** Attachment frames, once `enableAttachments` was answered: the frame being read, and the one read whole. */
  private attachmentsOn = false;
  private frameHeader: number[] | undefined;
  private frameBody: { length: number; pieces: Buffer[]; received: number } | undefined;
  private frameDone: Buffer | undefined;
  /** Notifications (the agent's events), schema-checked, in the order they came. */
  private readonly received: Notification[] = [];
  private readonly notificationWatchers = new Set<(n: Notification) => void>();

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (error) => { this.closedWith = error; });
    socket.on('close', () => {
      this.closedWith ??= new Error('connection closed');
      for (const p of this.pending.values()) p.resolve({ closed: true });
      this.pending.clear();
      for (const w of this.waiters.splice(0)) w(undefined);
    });
  }

  static connect(address: RpcAddress): Promise<RpcClient> {
    return new Promise((resolve, reject) => {
      if ('host' in address && address.tls !== undefined) {
        const socket = tlsConnect({ host: address.host, port: address.port, ...address.tls });
        socket.once('secureConnect', () => { socket.off('error', reject); resolve(new RpcClient(socket)); });
        socket.once('error', reject);
        return;
      }
      const socket = 'path' in address ? connect(address.path) : connect(address.port, address.host);
      socket.once('connect', () => { socket.off('error', reject); resolve(new RpcClient(socket)); });
      socket.once('error', reject);
    });
  }

  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /** Every notification received so far. */
  get notifications(): readonly Notification[] {
    return this.received;
  }

  /** The first notification, received already or later, that `match` accepts; rejects after `timeoutMs` or when the connection closes. */
  nextNotification(match: (n: Notification) => boolean, timeoutMs = 10_000): Promise<Notification> {
    const seen = this.received.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.notificationWatchers.delete(watcher); reject(new Error(`no such notification within ${timeoutMs} ms; got ${this.received.map((n) => n.method).join(', ')}`)); }, timeoutMs);
      const watcher = (n: Notification): void => {
        if (!match(n)) return;
        clearTimeout(timer);
        this.notificationWatchers.delete(watcher);
        resolve(n);
      };
      this.notificationWatchers.add(watcher);
    });
  }

  /** Calls a method with named params; resolves to its schema-checked result, rejects with RpcError. */
  async call<M extends keyof MethodTypes>(method: M, params: MethodTypes[M]['params']): Promise<MethodTypes[M]['result']> {
    const response = await this.request({ jsonrpc: '2.0', method, params, id: this.nextId++ });
    if ('error' in response) throw new RpcError(response.error as WireErrorShape);
    return response.result as MethodTypes[M]['result'];
  }

  /** `call` for a method named at run time (e.g. by the guest's host port); still schema-checked. */
  async callAny(method: string, params: object): Promise<unknown> {
    const response = await this.request({ jsonrpc: '2.0', method, params, id: this.nextId++ });
    if ('error' in response) throw new RpcError(response.error as WireErrorShape);
    return response.result;
  }

  /** Like `call` but resolves to the RpcError, for tests of refusals; fails if the call succeeds. */
  async callError(method: string, params: unknown): Promise<RpcError> {
    const response = await this.request({ jsonrpc: '2.0', method, params, id: this.nextId++ });
    if (!('error' in response)) throw new Error(`${method} succeeded but an error was expected: ${JSON.stringify(response.result).slice(0, 200)}`);
    return new RpcError(response.error as WireErrorShape);
  }

  /** Sends one request object (its id must be a string or number) and resolves to the checked response. */
  request(message: { id: string | number; method?: unknown; [key: string]: unknown }): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      if (this.closedWith) {
        reject(this.closedWith);
        return;
      }
      this.pending.set(JSON.stringify(message.id), {
        method: typeof message.method === 'string' ? message.method : undefined,
        resolve: (r) => ('closed' in r ? reject(this.closedWith ?? new Error('connection closed')) : resolve(r)),
      });
      this.socket.write(`${JSON.stringify(message)}\n`);
    });
  }

  /** Turns attachment frames on for this connection (rpc.enableAttachments); resolves to the agent's answer. */
  async enableAttachments(): Promise<MethodTypes['rpc.enableAttachments']['result']> {
    const result = await this.call('rpc.enableAttachments', {});
    this.attachmentsOn = true;
    return result;
  }

  /**
   * Sends a request with `attachment` in a frame before it (or none), and
   * resolves to the checked response and the attachment that came with it.
   */
  async requestAttached(method: string, params: object, attachment?: Buffer): Promise<{ response: Record<string, unknown>; attachment: Buffer | undefined }> {
    const message = { jsonrpc: '2.0', method, params, id: this.nextId++ };
    if (attachment !== undefined) {
      const header = Buffer.alloc(5);
      header.writeUInt32BE(attachment.length, 1);
      this.socket.write(Buffer.concat([header, attachment]));
    }
    const response = await this.request(message);
    return { response, attachment: attachmentOf(response) };
  }

  /** Writes raw text (a newline is not added). */
  sendRaw(text: string | Buffer): void {
    this.socket.write(text);
  }

  /** The next response not matched to a pending request (or undefined when the connection closes). */
  nextUnmatched(timeoutMs = 5000): Promise<unknown> {
    const ready = this.unmatched.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const waiter = (r: unknown): void => { clearTimeout(timer); resolve(r); };
      const timer = setTimeout(() => {
        // Leave no stale waiter behind to swallow a later message.
        const index = this.waiters.indexOf(waiter);
        if (index !== -1) this.waiters.splice(index, 1);
        reject(new Error(`no response within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  close(): void {
    this.socket.end();
  }

  /** Stops reading from the socket (a client that does not keep up); `resume` reads again. */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Scans each byte once: responses can be megabytes long. Attachment frames stand right before a line. */
  private onData(chunk: Buffer): void {
    let start = 0;
    while (start < chunk.length) {
      if (this.frameHeader !== undefined || this.frameBody !== undefined || (this.attachmentsOn && this.partial.length === 0 && chunk[start] === 0)) {
        start = this.onFrameBytes(chunk, start);
        continue;
      }
      const newline = chunk.indexOf(10, start);
      if (newline === -1) break;
      const line = Buffer.concat([...this.partial, chunk.subarray(start, newline)]);
      this.partial = [];
      start = newline + 1;
      const message = JSON.parse(line.toString('utf8')) as unknown;
      if (this.frameDone !== undefined && isRecord(message)) ATTACHMENTS.set(message, this.frameDone);
      this.frameDone = undefined;
      this.onMessage(message);
    }
    if (start < chunk.length) this.partial.push(chunk.subarray(start));
  }

  /** Reads frame bytes from `at`; returns where the frame's bytes end in the chunk. */
  private onFrameBytes(chunk: Buffer, at: number): number {
    if (this.frameBody === undefined) {
      this.frameHeader ??= [];
      while (at < chunk.length && this.frameHeader.length < 5) this.frameHeader.push(chunk[at++] as number);
      if (this.frameHeader.length < 5) return at;
      const length = Buffer.from(this.frameHeader).readUInt32BE(1);
      this.frameHeader = undefined;
      this.frameBody = { length, pieces: [], received: 0 };
    }
    const body = this.frameBody;
    const take = Math.min(body.length - body.received, chunk.length - at);
    body.pieces.push(chunk.subarray(at, at + take));
    body.received += take;
    if (body.received === body.length) {
      if (this.frameDone !== undefined) throw new Error('two attachment frames before one response');
      this.frameDone = Buffer.concat(body.pieces, body.length);
      this.frameBody = undefined;
    }
    return at + take;
  }

  private onMessage(message: unknown): void {
    if (isRecord(message) && !('id' in message) && typeof message.method === 'string') {
      checkNotificationShape(message);
      const notification = { method: message.method, params: message.params as Record<string, unknown> };
      this.received.push(notification);
      for (const watcher of [...this.notificationWatchers]) watcher(notification);
      return;
    }
    const responses = Array.isArray(message) ? message : [message];
    for (const r of responses) checkResponseShape(r, undefined);
    if (!Array.isArray(message) && isRecord(message) && message.id !== null && message.id !== undefined) {
      const key = JSON.stringify(message.id);
      const pending = this.pending.get(key);
      if (pending) {
        this.pending.delete(key);
        checkResponseShape(message, pending.method);
        pending.resolve(message);
        return;
      }
    }
    const waiter = this.waiters.shift();
    if (waiter) waiter(message);
    else this.unmatched.push(message);
  }
}

export interface Notification {
  readonly method: string;
  readonly params: Record<string, unknown>;
}

/** Throws unless `message` is a notification of schemas/events/ whose params match its schema. */
export function checkNotificationShape(message: Record<string, unknown>): void {
  if (message.jsonrpc !== '2.0' || Object.keys(message).some((k) => !['jsonrpc', 'method', 'params'].includes(k))) {
    throw new Error(`not a JSON-RPC 2.0 notification: ${JSON.stringify(message).slice(0, 300)}`);
  }
  const schema = schemas().notifications.get(String(message.method));
  if (schema === undefined) throw new Error(`a notification of unknown method ${String(message.method)}`);
  if (!schema.validate(message.params)) throw new Error(`${String(message.method)} params do not match its schema: ${JSON.stringify(violations(schema.validate.errors))}`);
}

/**
 * Throws unless `response` is a well-formed JSON-RPC 2.0 response whose
 * result matches `method`'s result schema, or whose error is in the
 * catalogue with schema-valid data.
 */
export function checkResponseShape(response: unknown, method: string | undefined): void {
  if (!isRecord(response) || response.jsonrpc !== '2.0' || !('id' in response)) {
    throw new Error(`not a JSON-RPC 2.0 response: ${JSON.stringify(response).slice(0, 300)}`);
  }
  if ('error' in response === 'result' in response) throw new Error(`a response has exactly one of result and error: ${JSON.stringify(response).slice(0, 300)}`);
  const registry = schemas();
  if ('error' in response) {
    const error = response.error as WireErrorShape;
    const name = error.data?.code as ErrorName | undefined;
    const entry = name === undefined ? undefined : ERROR_CATALOGUE[name];
    if (entry === undefined || entry.code !== error.code || entry.message !== error.message) {
      throw new Error(`error not in the catalogue: ${JSON.stringify(error).slice(0, 300)}`);
    }
    const validate = registry.ajv.getSchema('https://vfmigd.dev/schemas/common.json#/$defs/errorData');
    if (validate === undefined || !validate(error.data)) throw new Error(`error.data does not match its schema: ${JSON.stringify(violations(validate?.errors))}`);
    return;
  }
  if (method === undefined) return;
  const schema = registry.method(method);
  if (schema === undefined) throw new Error(`a result came back for unknown method ${method}`);
  if (!schema.validateResult(response.result)) {
    throw new Error(`${method} result does not match its schema: ${JSON.stringify(violations(schema.validateResult.errors))}`);
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A slice's bytes as the base64 a connection without attachments carries them in. */
export function base64Of(data: StateBytes): string {
  if (typeof data !== 'string') throw new Error(`expected base64 data, got an attachment of ${data.attachment} bytes`);
  return data;
}
