/**
 * JSON-RPC 2.0 dispatch: parses a message, applies the per-connection
 * limits, and hands requests, batches and notifications to jayson's Server.
 * Around jayson it enforces what the specification says and jayson does
 * not: a request with `"id": null` is a request (not a notification), a
 * nested array inside a batch is one invalid entry, and error messages are
 * the specification's. Each method's params are validated against its
 * schema before the handler runs, and its result after.
 */
import { randomUUID } from 'node:crypto';
import jayson from 'jayson';
import type { Logger } from 'pino';
import { Fault } from '../core/faults.ts';
import { BASE64_FIELDS, InvalidParamsError } from '../methods/method-table.ts';
import type { PeerInfo, RequestContext } from './context.ts';
import { parseMessage } from './parse-message.ts';
import { ERROR_CATALOGUE, errorResponse, wireError, type ErrorName, type WireError } from './error-catalogue.ts';
import { violations, type SchemaRegistry } from './schema-registry.ts';

export type MethodHandler = (params: never, ctx: RequestContext) => Promise<unknown>;

export interface DispatchLimits {
  readonly maxBatchLength: number;
  readonly maxInFlightPerConnection: number;
}

type JsonRpcId = string | number | null;
type Callback = (error: WireError | null, result?: unknown) => void;

/** What jayson hands a method: our per-message context. */
interface CallContext {
  readonly peer: PeerInfo;
  readonly log: Logger;
}

export class Dispatcher {
  private readonly server: jayson.Server;
  private readonly limits: DispatchLimits;
  private readonly log: Logger;

  constructor(handlers: ReadonlyMap<string, MethodHandler>, schemas: SchemaRegistry, limits: DispatchLimits, log: Logger) {
    this.limits = limits;
    this.log = log;
    const methods = new Map<string, jayson.Method>();
    for (const [name, handler] of handlers) {
      const schema = schemas.method(name);
      if (schema === undefined) throw new Error(`method ${name} has no schema in schemas/methods/`);
      methods.set(name, new jayson.Method(this.wrap(name, handler, schema), { useContext: true }));
    }
    for (const name of schemas.methods.keys()) {
      if (!methods.has(name)) throw new Error(`schemas/methods/${name}.json has no handler`);
    }
    // The router also serves `rpc.*` names, which jayson's method() refuses.
    this.server = new jayson.Server({}, { useContext: true, router: (method: string) => methods.get(method) as jayson.Method });
    const messages = this.server as unknown as { errorMessages: Record<number, string> };
    for (const name of ['PARSE_ERROR', 'INVALID_REQUEST', 'METHOD_NOT_FOUND', 'INVALID_PARAMS', 'INTERNAL_ERROR'] as const) {
      messages.errorMessages[ERROR_CATALOGUE[name].code] = ERROR_CATALOGUE[name].message;
    }
  }

  /** State of one connection: its requests in flight. */
  openSession(peer: PeerInfo): DispatchSession {
    return new DispatchSession(this, peer, this.log.child({ conn: peer.connectionId }));
  }

  /**
   * Handles one message; resolves to the response, as text or as pieces of
   * text to be written in order, or to undefined when nothing is owed.
   */
  async handle(text: string, session: DispatchSession): Promise<string | string[] | undefined> {
    let message: unknown;
    try {
      message = parseMessage(text);
    } catch (error) {
      return errorResponse(null, 'PARSE_ERROR', error instanceof Error ? error.message : 'invalid JSON');
    }
    if (!Array.isArray(message) && !isRecord(message)) {
      // jayson would parse a JSON string a second time and run what is inside.
      return errorResponse(null, 'INVALID_REQUEST', 'a request is a JSON object, and a batch an array of them');
    }
    const entries = Array.isArray(message) ? message : [message];
    if (Array.isArray(message) && message.length > this.limits.maxBatchLength) {
      return errorResponse(null, 'BATCH_TOO_LARGE', `a batch may hold at most ${this.limits.maxBatchLength} requests; this one has ${message.length}`, { limit: this.limits.maxBatchLength });
    }
    if (session.inFlight + entries.length > this.limits.maxInFlightPerConnection) {
      return this.refuseAll(entries, Array.isArray(message), 'TOO_MANY_REQUESTS',
        `this connection already has ${session.inFlight} requests in flight (limit ${this.limits.maxInFlightPerConnection})`);
    }
    const ids = new Map<string, JsonRpcId>();
    const prepared = Array.isArray(message)
      ? message.map((entry) => (Array.isArray(entry) ? null : withSentinelId(entry, ids)))
      : withSentinelId(message, ids);
    session.inFlight += entries.length;
    try {
      const response = await this.call(prepared, { peer: session.peer, log: session.log });
      return response === undefined ? undefined : serialize(finishResponse(response, ids));
    } finally {
      session.inFlight -= entries.length;
    }
  }

  private call(request: unknown, context: CallContext): Promise<unknown> {
    return new Promise((resolve) => {
      this.server.call(request as jayson.JSONRPCRequestLike, context, (error: unknown, response?: unknown) => {
        resolve(error ?? response ?? undefined);
      });
    });
  }

  private refuseAll(entries: unknown[], isBatch: boolean, name: ErrorName, detail: string): string | undefined {
    const responses = entries
      .filter((e) => isRecord(e) && 'id' in e)
      .map((e) => ({ jsonrpc: '2.0', error: wireError(name, detail), id: validId((e as { id: unknown }).id) }));
    if (responses.length === 0) return undefined;
    return JSON.stringify(isBatch ? responses : responses[0]);
  }

  /** The jayson handler for one method: validate, run, validate the result. */
  private wrap(name: string, handler: MethodHandler, schema: NonNullable<ReturnType<SchemaRegistry['method']>>) {
    return (params: jayson.RequestParamsLike, jaysonContext: object, callback: Callback): void => {
      const context = jaysonContext as CallContext;
      const given: unknown = params === undefined ? {} : params;
      if (Array.isArray(given)) {
        callback(wireError('INVALID_PARAMS', 'params must be an object of named parameters, not an array', { errors: [{ path: '/', message: 'must be object' }] }));
        return;
      }
      if (!schema.validateParams(given)) {
        const errors = violations(schema.validateParams.errors);
        const first = errors[0];
        callback(wireError('INVALID_PARAMS', first ? `params${first.path === '/' ? '' : first.path} ${first.message}` : 'params are invalid', { errors }));
        return;
      }
      const ctx = new CallRequestContext(context.peer, name, context.log);
      handler(given as never, ctx).then(
        (result) => {
          if (!schema.validateResult(result)) {
            ctx.log.error({ errors: violations(schema.validateResult.errors) }, 'result does not match its schema');
            callback(wireError('INTERNAL_ERROR', `the result of ${name} did not match its schema`));
            return;
          }
          callback(null, result);
        },
        (error: unknown) => callback(this.toWireError(error, ctx)),
      );
    };
  }

  private toWireError(error: unknown, ctx: RequestContext): WireError {
    if (error instanceof InvalidParamsError) {
      return wireError('INVALID_PARAMS', error.message, { errors: [{ path: error.path, message: error.message }] });
    }
    if (error instanceof Fault) {
      ctx.log.debug({ fault: error.fault, err: error.message }, 'call refused');
      return wireError(error.fault, error.message, error.details);
    }
    ctx.log.error({ err: error }, 'handler failed');
    return wireError('INTERNAL_ERROR', error instanceof Error ? error.message : String(error));
  }
}

/** A RequestContext whose child logger is made on first use: most calls never log. */
class CallRequestContext implements RequestContext {
  readonly peer: PeerInfo;
  readonly identity = null;
  readonly method: string;
  readonly #parentLog: Logger;
  #log: Logger | undefined;

  constructor(peer: PeerInfo, method: string, parentLog: Logger) {
    this.peer = peer;
    this.method = method;
    this.#parentLog = parentLog;
  }

  get log(): Logger {
    this.#log ??= this.#parentLog.child({ method: this.method });
    return this.#log;
  }
}

export class DispatchSession {
  readonly peer: PeerInfo;
  readonly log: Logger;
  inFlight = 0;
  private readonly dispatcher: Dispatcher;

  constructor(dispatcher: Dispatcher, peer: PeerInfo, log: Logger) {
    this.dispatcher = dispatcher;
    this.peer = peer;
    this.log = log;
  }

  handle(text: string): Promise<string | string[] | undefined> {
    return this.dispatcher.handle(text, this);
  }
}

/**
 * jayson treats `"id": null` as a notification. The specification says it
 * is a request whose response carries `"id": null`; swap in a unique
 * stand-in id for jayson and put null back in the response.
 */
function withSentinelId(entry: unknown, ids: Map<string, JsonRpcId>): unknown {
  if (!isRecord(entry) || entry.id !== null) return entry;
  const sentinel = `null:${randomUUID()}`;
  ids.set(sentinel, null);
  return { ...entry, id: sentinel };
}

/** Puts null ids back and gives jayson's own errors the `data.code` every error carries. */
function finishResponse(response: unknown, ids: Map<string, JsonRpcId>): unknown {
  const finish = (r: unknown): unknown => {
    if (!isRecord(r)) return r;
    let out = r;
    if (typeof r.id === 'string' && ids.has(r.id)) out = { ...out, id: ids.get(r.id) ?? null };
    if (isRecord(r.error) && !(isRecord(r.error.data) && typeof r.error.data.code === 'string')) {
      const name = NAME_BY_CODE.get(Number(r.error.code));
      if (name !== undefined) out = { ...out, error: wireError(name, ERROR_CATALOGUE[name].meaning) };
    }
    return out;
  };
  return Array.isArray(response) ? response.map(finish) : finish(response);
}

const NAME_BY_CODE = new Map(Object.entries(ERROR_CATALOGUE).map(([name, entry]) => [entry.code, name as ErrorName]));

/**
 * JSON text of a response. A result's base64 fields (see BASE64_FIELDS) are
 * left out of JSON.stringify, which would scan every character of them for
 * escapes, and written between the pieces as they are.
 */
/** Unguessable, so that no string a client sends (an id) can collide with it. */
const PLACEHOLDER_PREFIX = `\u0000${randomUUID()}:`;

function serialize(response: unknown): string | string[] {
  const result = isRecord(response) ? response.result : undefined;
  const fields = isRecord(result) ? (result as { [BASE64_FIELDS]?: readonly string[] })[BASE64_FIELDS] : undefined;
  if (fields === undefined || fields.length === 0 || !isRecord(result)) return JSON.stringify(response);
  const placeholders = new Map<string, string>();
  const copy: Record<string, unknown> = { ...result };
  for (const field of fields) {
    const value = result[field];
    if (typeof value !== 'string') continue;
    const placeholder = `${PLACEHOLDER_PREFIX}${field}`;
    placeholders.set(JSON.stringify(placeholder), value);
    copy[field] = placeholder;
  }
  const text = JSON.stringify({ ...(response as Record<string, unknown>), result: copy });
  const pieces: string[] = [];
  let rest = text;
  for (const [quoted, value] of placeholders) {
    const at = rest.indexOf(quoted);
    pieces.push(rest.slice(0, at), '"', value, '"');
    rest = rest.slice(at + quoted.length);
  }
  pieces.push(rest);
  return pieces;
}

function validId(id: unknown): JsonRpcId {
  return typeof id === 'string' || typeof id === 'number' ? id : null;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
