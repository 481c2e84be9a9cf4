/**
 * The JSON-RPC 2.0 envelope: parses a message, applies the batch limit,
 * admits requests under the connection's in-flight limit, and hands
 * requests, batches and notifications to jayson's Server, whose one method
 * for every name is the call pipeline. Around jayson it enforces what the
 * specification says and jayson does not: a request with `"id": null` is a
 * request (not a notification), a nested array inside a batch is one
 * invalid entry, ids come back exactly as sent or are refused, and error
 * messages are the specification's.
 */
import { randomUUID } from 'node:crypto';
import jayson from 'jayson';
import type { Logger } from 'pino';
import type { ConnectionLink, Reply } from '../transport/connection.ts';
import { isAttached, NOT_UTF8, type FramedMessage } from '../transport/json-text-framer.ts';
import type { PeerInfo } from '../transport/peer.ts';
import { BASE64_FIELDS } from './base64-fields.ts';
import { ERROR_CATALOGUE, errorResponse, wireError, type ErrorName, type WireError } from './error-catalogue.ts';
import { parseMessage } from './parse-message.ts';
import type { CallCarrier, CallPipeline } from './pipeline.ts';

export interface EnvelopeLimits {
  readonly maxBatchLength: number;
  readonly maxInFlightPerConnection: number;
}

type JsonRpcId = string | number | null;
type Callback = (error: WireError | null, result?: unknown) => void;

/** What jayson hands the method: the connection the message came on, and how its bytes travel. */
interface MessageContext {
  readonly peer: PeerInfo;
  readonly log: Logger;
  readonly carrier: CallCarrier;
}

export class Dispatcher {
  private readonly server: jayson.Server;
  readonly limits: EnvelopeLimits;
  private readonly log: Logger;

  constructor(pipeline: CallPipeline, limits: EnvelopeLimits, log: Logger) {
    if (limits.maxBatchLength > limits.maxInFlightPerConnection) {
      // A batch runs whole or not at all; one that can never be admitted would wait forever.
      throw new Error(`limits.maxBatchLength (${limits.maxBatchLength}) must not exceed limits.maxInFlightPerConnection (${limits.maxInFlightPerConnection})`);
    }
    this.limits = limits;
    this.log = log;
    const methodOf = (name: string): jayson.Method => {
      const handler = (params: jayson.RequestParamsLike, context: object, callback: Callback): void => {
        const { peer, log: connectionLog, carrier } = context as MessageContext;
        pipeline.invoke(name, params, peer, connectionLog, carrier).then(
          (outcome) => ('error' in outcome ? callback(outcome.error) : callback(null, outcome.result)),
          (error: unknown) => {
            connectionLog.error({ err: error, method: name }, 'pipeline failed');
            callback(wireError('INTERNAL_ERROR', 'the call failed inside the agent; the log has the details'));
          },
        );
      };
      return new jayson.Method(handler, { useContext: true });
    };
    const methods = new Map<string, jayson.Method>();
    for (const name of pipeline.names()) methods.set(name, methodOf(name));
    // The router also serves `rpc.*` names, which jayson's method() refuses.
    // A name no method has goes to the pipeline too, which answers METHOD_NOT_FOUND and lets observers count it.
    this.server = new jayson.Server({}, { useContext: true, router: (method: string) => methods.get(method) ?? methodOf(method) });
    const messages = this.server as unknown as { errorMessages: Record<number, string> };
    for (const name of ['PARSE_ERROR', 'INVALID_REQUEST', 'METHOD_NOT_FOUND', 'INVALID_PARAMS', 'INTERNAL_ERROR'] as const) {
      messages.errorMessages[ERROR_CATALOGUE[name].code] = ERROR_CATALOGUE[name].message;
    }
  }

  /** State of one connection: its requests in flight. */
  openSession(peer: PeerInfo): DispatchSession {
    return new DispatchSession(this, peer, this.log.child({ conn: peer.connectionId, principal: peer.principal }));
  }

  /**
   * Handles one message; resolves to the response, as text or as pieces of
   * text to be written in order, or to undefined when nothing is owed.
   */
  async handle(framed: FramedMessage, session: DispatchSession, link: ConnectionLink): Promise<Reply | undefined> {
    const attachments = isAttached(framed) ? framed.attachments : [];
    const text = isAttached(framed) ? framed.text : framed;
    if (text === NOT_UTF8) return errorResponse(null, 'PARSE_ERROR', 'the message is not valid UTF-8');
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
    if (attachments.length > 0) {
      // Answered with the request's id when it has a usable one, so the client can tell which call failed.
      const id = isRecord(message) && (typeof message.id === 'string' || Number.isSafeInteger(message.id)) ? (message.id as string | number) : null;
      if (Array.isArray(message)) return errorResponse(null, 'INVALID_REQUEST', 'an attachment cannot stand before a batch: send it before the one request it belongs to');
      if (attachments.length > 1) return errorResponse(id, 'INVALID_REQUEST', `one attachment per message; ${attachments.length} stood before this one`);
    }
    if (Array.isArray(message) && message.length > this.limits.maxBatchLength) {
      return errorResponse(null, 'BATCH_TOO_LARGE', `a batch may hold at most ${this.limits.maxBatchLength} requests; this one has ${message.length}`, { limit: this.limits.maxBatchLength });
    }
    const ids = new Map<string, JsonRpcId>();
    const refusals: unknown[] = [];
    const entries: unknown[] = Array.isArray(message) ? message : [message];
    // Source texts are read only for a fractional id: rare, and a second parse.
    const sources = entries.some((e) => isRecord(e) && typeof e.id === 'number' && !Number.isInteger(e.id)) ? idSourceTexts(text) : [];
    const prepared = entries.map((entry, index) => {
      if (Array.isArray(entry)) return null;
      const refusal = refuseId(entry, sources[index]);
      if (refusal === undefined) return withSentinelId(entry, ids);
      refusals.push(refusal);
      return undefined;
    }).filter((e) => e !== undefined);
    if (prepared.length === 0 && refusals.length > 0) return JSON.stringify(Array.isArray(message) ? refusals : refusals[0]);
    const count = Array.isArray(message) ? Math.max(1, message.length) : 1;
    await session.admit(count);
    try {
      const carrier: CallCarrier = { attachment: attachments[0], canAttach: link.attachments && !Array.isArray(message), outgoing: undefined, link };
      const response = await this.call(Array.isArray(message) ? prepared : prepared[0], { peer: session.peer, log: session.log, carrier });
      const outgoing = carrier.outgoing;
      if (response === undefined && refusals.length === 0) {
        // A notification: its bytes go nowhere.
        outgoing?.onSent();
        return undefined;
      }
      const finished = response === undefined ? [] : finishResponse(response, ids);
      const reply = serialize(Array.isArray(finished) ? [...finished, ...refusals] : finished);
      return outgoing === undefined ? reply : { text: reply, attachment: outgoing.bytes, onSent: outgoing.onSent };
    } finally {
      session.release(count);
    }
  }

  private call(request: unknown, context: MessageContext): Promise<unknown> {
    return new Promise((resolve) => {
      this.server.call(request as jayson.JSONRPCRequestLike, context, (error: unknown, response?: unknown) => {
        resolve(error ?? response ?? undefined);
      });
    });
  }
}

/**
 * One connection's dispatch state. Requests beyond the in-flight limit wait
 * (in order) rather than being refused; the transport stops reading while
 * the session is saturated, so waiting never piles up.
 */
export class DispatchSession {
  readonly peer: PeerInfo;
  readonly log: Logger;
  private inFlight = 0;
  private readonly waiting: { count: number; resolve: () => void }[] = [];
  private readonly dispatcher: Dispatcher;
  private readonly onCapacity = new Set<() => void>();

  constructor(dispatcher: Dispatcher, peer: PeerInfo, log: Logger) {
    this.dispatcher = dispatcher;
    this.peer = peer;
    this.log = log;
  }

  handle(message: FramedMessage, link: ConnectionLink): Promise<Reply | undefined> {
    return this.dispatcher.handle(message, this, link);
  }

  /** True while a new message would have to wait for requests in flight to finish. */
  get saturated(): boolean {
    return this.waiting.length > 0 || this.inFlight >= this.dispatcher.limits.maxInFlightPerConnection;
  }

  /** Calls `listener` whenever capacity frees up. */
  whenCapacity(listener: () => void): void {
    this.onCapacity.add(listener);
  }

  admit(count: number): Promise<void> {
    if (this.waiting.length === 0 && this.inFlight + count <= this.dispatcher.limits.maxInFlightPerConnection) {
      this.inFlight += count;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push({ count, resolve }));
  }

  release(count: number): void {
    this.inFlight -= count;
    const max = this.dispatcher.limits.maxInFlightPerConnection;
    for (let next = this.waiting[0]; next !== undefined && this.inFlight + next.count <= max; next = this.waiting[0]) {
      this.waiting.shift();
      this.inFlight += next.count;
      next.resolve();
    }
    if (!this.saturated) for (const listener of this.onCapacity) listener();
  }
}

/**
 * An id must come back exactly as sent. A number id that a double cannot
 * carry back unchanged (1e400 becomes Infinity, then null; 2^64+1 loses its
 * last digits; 0.10000000000000000001 becomes 0.1) is refused instead, with
 * id null, as an invalid request. Integers are exact up to 2^53-1; a
 * fractional id is compared with its own source text, which is looked up
 * only when a message has one (rare: ids SHOULD NOT be fractional).
 */
function refuseId(entry: unknown, source: string | undefined): unknown {
  if (!isRecord(entry) || typeof entry.id !== 'number' || Number.isSafeInteger(entry.id)) return undefined;
  if (Number.isFinite(entry.id) && !Number.isInteger(entry.id) && source === JSON.stringify(entry.id)) return undefined;
  const detail = Number.isInteger(entry.id) || !Number.isFinite(entry.id)
    ? 'a number id must be an integer of at most 2^53-1 in magnitude to come back unchanged; use a string id'
    : 'this fractional id would not come back exactly as written; use an integer or a string id';
  return { jsonrpc: '2.0', error: wireError('INVALID_REQUEST', detail), id: null };
}

/** The source text of the number id of the request, or of each batch entry, by position. */
function idSourceTexts(text: string): (string | undefined)[] {
  const byHolder = new Map<unknown, string>();
  type Reviver = (this: unknown, key: string, value: unknown, context?: { source?: string }) => unknown;
  // The holder (`this`) of an "id" key is the object that key belongs to, so an id nested in params is not mistaken for the request's.
  const reviver: Reviver = function reviver(key, value, context) {
    if (key === 'id' && typeof value === 'number' && context?.source !== undefined) byHolder.set(this, context.source);
    return value;
  };
  const parsed: unknown = JSON.parse(text, reviver as Parameters<typeof JSON.parse>[1]);
  return (Array.isArray(parsed) ? parsed : [parsed]).map((entry) => byHolder.get(entry));
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

/** Unguessable, so that no string a client sends (an id) can collide with it. */
const PLACEHOLDER_PREFIX = `\u0000${randomUUID()}:`;

/**
 * JSON text of a response. A result's base64 fields (see BASE64_FIELDS) are
 * left out of JSON.stringify, which would scan every character of them for
 * escapes, and written between the pieces as they are.
 */
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

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
