/**
 * One connection to an agent: JSON-RPC 2.0, one JSON text per line each
 * way, any number of calls in flight. Every call's params are checked
 * against the method's schema before they are sent, and every result
 * against its result schema when it arrives, with the agent's own
 * SchemaRegistry: a value the schema refuses is the operator's mistake
 * (nothing is sent), an answer it refuses is a broken agent.
 *
 * State bytes travel in attachment frames once `enableAttachments` was
 * answered (README "Binary attachments"), in base64 otherwise; callers
 * hand over and get back plain Buffers either way. Incoming bytes are cut
 * into texts and frames by the agent's own framer.
 *
 * Notifications (after events.subscribe) are checked against their
 * schemas in schemas/events/ and handed to the one listener, in order.
 *
 * A call that times out, or that its signal abandons, closes the
 * connection: its answer may still come, and no later call should meet it.
 * The caller opens a new connection to go on (a migration's cancel does).
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { MethodTypes, StateBytes } from '../../schemas/types.ts';
import { violations, type MethodSchema, type SchemaRegistry } from '../rpc/schema-registry.ts';
import { attachmentFrameHeader, isAttached, JsonTextFramer, NOT_UTF8, type FramedMessage } from '../transport/json-text-framer.ts';
import type { AgentTarget } from './agent-address.ts';
import { AgentRefusal, UnreachableError, UsageError, type WireError } from './cli-errors.ts';

/** Replies can carry a 4 MiB slice in base64; rpc.discover is the largest text otherwise. */
const MAX_REPLY_BYTES = 64 * 1024 * 1024;

export type Method = keyof MethodTypes;
export type Params<M extends Method> = MethodTypes[M]['params'];
export type Result<M extends Method> = MethodTypes[M]['result'];

/** Methods whose params carry state bytes in `data`, and those whose results do. */
type BytesIn = { [M in Method]: Params<M> extends { data: StateBytes } ? M : never }[Method];
type BytesOut = { [M in Method]: Result<M> extends { data: StateBytes } ? M : never }[Method];

export interface CallOptions {
  /** Abandons the call (and so the connection) when aborted; the call rejects with the signal's reason. */
  readonly signal?: AbortSignal | undefined;
}

interface Pending {
  readonly method: Method;
  readonly schema: MethodSchema;
  resolve(reply: { result: unknown; attachment: Buffer | undefined }): void;
  reject(error: unknown): void;
}

export interface ConnectOptions {
  readonly schemas: SchemaRegistry;
  /** For the connection and the handshake, and then for each call's answer. */
  readonly timeoutMs: number;
}

export class AgentConnection {
  readonly agent: AgentTarget;
  private readonly socket: Socket;
  private readonly schemas: SchemaRegistry;
  private readonly timeoutMs: number;
  private readonly framer = new JsonTextFramer(MAX_REPLY_BYTES);
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private attachmentsOn = false;
  private answered = false;
  private failure: Error | undefined;
  private notificationListener: ((method: string, params: unknown) => void) | undefined;
  private endedWith: ((error: Error) => void) | undefined;
  /** Resolves, with why, once the connection is no good: closed by either side, failed, or broken. */
  readonly ended = new Promise<Error>((resolve) => { this.endedWith = resolve; });

  private constructor(agent: AgentTarget, socket: Socket, options: ConnectOptions) {
    this.agent = agent;
    this.socket = socket;
    this.schemas = options.schemas;
    this.timeoutMs = options.timeoutMs;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (error: NodeJS.ErrnoException) => {
      this.fail(new UnreachableError(agent.name, 'closed', `connection failed: ${error.code ?? error.message}`));
    });
    socket.on('close', () => {
      // Under TLS 1.3 an agent that refuses our certificate does so after our handshake is done: the first call meets a closed connection.
      const why = this.answered ? 'the agent closed the connection' : 'the agent closed the connection before its first answer'
        + (agent.tls === undefined ? '' : ' (a tls:// agent does so when it refuses the client certificate; its audit log says why)');
      this.fail(new UnreachableError(agent.name, 'closed', why));
    });
  }

  static open(agent: AgentTarget, options: ConnectOptions): Promise<AgentConnection> {
    return new Promise((resolve, reject) => {
      const { address } = agent;
      const socket = address.kind === 'unix'
        ? netConnect(address.path)
        : address.kind === 'tls'
          ? tlsConnect({ host: address.host, port: address.port, ...agent.tls })
          : netConnect(address.port, address.host);
      const ready = address.kind === 'tls' ? 'secureConnect' : 'connect';
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new UnreachableError(agent.name, 'timeout', `no connection within ${options.timeoutMs} ms`));
      }, options.timeoutMs);
      socket.once('error', (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(connectError(agent, error));
      });
      socket.once(ready, () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new AgentConnection(agent, socket, options));
      });
    });
  }

  /** Where the notifications of this connection's subscription go, each once its params passed its schema. */
  onNotification(listener: (method: string, params: unknown) => void): void {
    this.notificationListener = listener;
  }

  /** Whether state bytes go in attachment frames on this connection. */
  get attachments(): boolean {
    return this.attachmentsOn;
  }

  /** Open, and no call was abandoned on it: a caller may go on with it. */
  get usable(): boolean {
    return this.failure === undefined && !this.socket.destroyed;
  }

  /**
   * Asks for attachment frames (rpc.enableAttachments); false from an
   * agent that does not know them (-32601), which keeps base64. Must be
   * answered before any frame is sent: the caller awaits it first.
   */
  async enableAttachments(options: CallOptions = {}): Promise<boolean> {
    try {
      await this.call('rpc.enableAttachments', {}, options);
    } catch (error) {
      if (error instanceof AgentRefusal && error.error.code === -32601) return false;
      throw error;
    }
    this.attachmentsOn = true;
    // The agent sends frames only in answers to calls made after this one: none is on the wire yet.
    this.framer.acceptAttachments();
    return true;
  }

  /** Calls `method`; resolves to its schema-checked result, rejects with AgentRefusal, UnreachableError or UsageError. */
  async call<M extends Method>(method: M, params: Params<M>, options: CallOptions = {}): Promise<Result<M>> {
    return (await this.send(method, params, undefined, options)).result as Result<M>;
  }

  /** A call whose params carry `bytes` as their `data`: in a frame, or in base64 without attachments. */
  async callWithBytes<M extends BytesIn>(method: M, params: Omit<Params<M>, 'data'>, bytes: Buffer, options: CallOptions = {}): Promise<Result<M>> {
    const data: StateBytes = this.attachmentsOn ? { attachment: bytes.length } : bytes.toString('base64');
    const frame = this.attachmentsOn ? bytes : undefined;
    return (await this.send(method, { ...params, data } as Params<M>, frame, options)).result as Result<M>;
  }

  /** A call whose result carries state bytes in `data`: resolves to the result and those bytes. */
  async callForBytes<M extends BytesOut>(method: M, params: Params<M>, options: CallOptions = {}): Promise<{ result: Result<M>; bytes: Buffer }> {
    const { result, attachment } = await this.send(method, params, undefined, options);
    const data = (result as { data: StateBytes }).data;
    const length = (result as { length?: number }).length;
    const bytes = typeof data === 'string' ? Buffer.from(data, 'base64') : attachment;
    if (bytes === undefined || (length !== undefined && bytes.length !== length)) {
      throw this.broken(`${method} answered ${length ?? '?'} bytes but carried ${bytes?.length ?? 'none'}`);
    }
    return { result: result as Result<M>, bytes };
  }

  close(): void {
    this.failure ??= new UnreachableError(this.agent.name, 'closed', 'connection closed by vfmigctl');
    this.endedWith?.(this.failure);
    this.socket.end();
  }

  private send(method: Method, params: unknown, frame: Buffer | undefined, options: CallOptions): Promise<{ result: unknown; attachment: Buffer | undefined }> {
    let schema: MethodSchema;
    try {
      schema = checkParams(this.schemas, method, params);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.failure !== undefined) return Promise.reject(this.failure);
    options.signal?.throwIfAborted();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(new UnreachableError(this.agent.name, 'timeout', `no answer to ${method} within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      const settle = (): void => {
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
      };
      const onAbort = (): void => {
        settle();
        this.pending.delete(id);
        reject(options.signal?.reason);
        this.fail(new UnreachableError(this.agent.name, 'closed', `${method} abandoned`));
      };
      options.signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.set(id, {
        method,
        schema,
        resolve: (reply) => { settle(); resolve(reply); },
        reject: (error) => { settle(); reject(error); },
      });
      const text = `${JSON.stringify({ jsonrpc: '2.0', id, method, params })}\n`;
      if (frame === undefined) {
        this.socket.write(text);
        return;
      }
      // The frame, then the text it belongs to, in one go.
      this.socket.cork();
      this.socket.write(attachmentFrameHeader(frame.length));
      this.socket.write(frame);
      this.socket.write(text);
      process.nextTick(() => this.socket.uncork());
    });
  }

  private onData(chunk: Buffer): void {
    let messages: FramedMessage[];
    try {
      messages = this.framer.push(chunk);
    } catch (error) {
      this.fail(this.broken(error instanceof Error ? error.message : String(error)));
      return;
    }
    for (const message of messages) {
      try {
        this.onMessage(message);
      } catch (error) {
        this.fail(error instanceof Error ? error : new Error(String(error)));
        return;
      }
    }
  }

  private onMessage(message: FramedMessage): void {
    const text = isAttached(message) ? message.text : message;
    const frames = isAttached(message) ? message.attachments : [];
    if (text === NOT_UTF8) throw this.broken('an answer is not UTF-8');
    if (frames.length > 1) throw this.broken('two attachment frames before one answer');
    const attachment = frames[0] === undefined ? undefined : Buffer.concat(frames[0].pieces, frames[0].length);
    let response: unknown;
    try {
      response = JSON.parse(text);
    } catch {
      throw this.broken(`an answer is not JSON: ${text.slice(0, 120)}`);
    }
    if (!isRecord(response) || response.jsonrpc !== '2.0') throw this.broken(`not a JSON-RPC 2.0 answer: ${text.slice(0, 120)}`);
    if (!('id' in response) && 'method' in response) {
      this.onNotificationMessage(String(response.method), response.params);
      return;
    }
    const pending = typeof response.id === 'number' ? this.pending.get(response.id) : undefined;
    if (pending === undefined) {
      // An answer nobody waits for: a call abandoned on this connection, or an agent that lost track.
      if (this.failure !== undefined) return;
      throw this.broken(`an answer to no call (id ${JSON.stringify(response.id)})`);
    }
    this.pending.delete(response.id as number);
    this.answered = true;
    if ('error' in response) {
      if (attachment !== undefined) throw this.broken(`an error answer to ${pending.method} came with an attachment frame`);
      pending.reject(new AgentRefusal(this.agent.name, pending.method, wireError(response.error)));
      return;
    }
    const { result } = response;
    if (!pending.schema.validateResult(result)) {
      const found = violations(pending.schema.validateResult.errors).map((v) => `${v.path} ${v.message}`).join('; ');
      throw this.broken(`the result of ${pending.method} breaks its schema: ${found}`);
    }
    const field = pending.schema.attachment.result;
    const named = field === undefined ? undefined : (result as Record<string, unknown>)[field];
    const expected = isRecord(named) && typeof named.attachment === 'number' ? named.attachment : undefined;
    if (expected !== (attachment === undefined ? undefined : attachment.length)) {
      throw this.broken(`${pending.method} names an attachment of ${expected ?? 'no'} bytes but ${attachment === undefined ? 'none' : `${attachment.length} bytes`} came`);
    }
    pending.resolve({ result, attachment });
  }

  private onNotificationMessage(method: string, params: unknown): void {
    const schema = this.schemas.notifications.get(method);
    if (schema === undefined) throw this.broken(`a notification of no event of this API: ${method.slice(0, 120)}`);
    if (!schema.validate(params)) {
      throw this.broken(`the ${method} notification breaks its schema: ${violations(schema.validate.errors).map((v) => `${v.path} ${v.message}`).join('; ')}`);
    }
    this.notificationListener?.(method, params);
  }

  private broken(why: string): UnreachableError {
    return new UnreachableError(this.agent.name, 'protocol', `broken answer: ${why}`);
  }

  /** The connection is no good from now on: every call waiting on it fails with `error`. */
  private fail(error: Error): void {
    this.failure ??= error;
    this.endedWith?.(this.failure);
    for (const pending of this.pending.values()) pending.reject(this.failure);
    this.pending.clear();
    this.socket.destroy();
  }
}

/** The method's schema, once `params` pass it; a UsageError naming each failing path otherwise. */
export function checkParams(schemas: SchemaRegistry, method: Method, params: unknown): MethodSchema {
  const schema = schemas.method(method);
  if (schema === undefined) throw new UsageError(`${method} is not a method of this API`);
  if (!schema.validateParams(params)) {
    const errors = schema.validateParams.errors ?? [];
    // An enum's allowed values tell the operator what to type instead.
    const found = violations(errors).map((v, i) => {
      const allowed = (errors[i]?.params as { allowedValues?: unknown[] } | undefined)?.allowedValues;
      return allowed === undefined ? v : { ...v, message: `${v.message}: ${allowed.join(', ')}` };
    });
    throw new UsageError(`${method} would be refused: ${found.map((v) => `${v.path} ${v.message}`).join('; ')}`, found);
  }
  return schema;
}

function connectError(agent: AgentTarget, error: NodeJS.ErrnoException): UnreachableError {
  const code = error.code ?? '';
  // Node's TLS verification errors carry OpenSSL's reason in `code` (e.g. UNABLE_TO_VERIFY_LEAF_SIGNATURE, ERR_TLS_CERT_ALTNAME_INVALID).
  const tls = agent.tls !== undefined && !['ECONNREFUSED', 'ENOENT', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'EACCES', 'ECONNRESET'].includes(code);
  return new UnreachableError(agent.name, tls ? 'tls' : 'connect', tls ? `TLS handshake failed: ${error.message}` : `cannot connect: ${code || error.message}`);
}

function wireError(value: unknown): WireError {
  if (!isRecord(value) || typeof value.code !== 'number' || typeof value.message !== 'string') {
    return { code: 0, message: 'malformed error', data: { detail: JSON.stringify(value).slice(0, 200) } };
  }
  return { code: value.code, message: value.message, ...(isRecord(value.data) ? { data: value.data as WireError['data'] } : {}) };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
