/**
 * The per-call pipeline. Every call, whatever its method, passes the same
 * steps in this order:
 *
 *   authorize → validate params → run → validate result → observe
 *
 * Authorization comes first so that a caller learns nothing about params it
 * may not send; observe runs for every call, refused or not, and is where
 * audit events (and later metrics and events) attach.
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { Attachment } from '../../schemas/types.ts';
import { Fault } from '../core/faults.ts';
import type { ConnectionLink, OutgoingAttachment } from '../transport/connection.ts';
import type { FramedAttachment } from '../transport/json-text-framer.ts';
import type { PeerInfo } from '../transport/peer.ts';
import { InvalidParamsError } from './call-errors.ts';
import type { NotificationChannel, RequestContext, VfNames } from './context.ts';
import { ERROR_CATALOGUE, wireError, type ErrorName, type WireError } from './error-catalogue.ts';
import type { Permission } from './permissions.ts';
import type { Policy } from './policy.ts';
import { violations, type MethodSchema, type SchemaRegistry, type SchemaViolation } from './schema-registry.ts';

export type MethodHandler = (params: never, ctx: RequestContext) => Promise<unknown>;

export type CallOutcome = { readonly result: unknown } | { readonly error: WireError };

/** One finished call, as observers see it. No params, no result: nothing a caller sent or got. */
export interface CallRecord {
  readonly peer: PeerInfo;
  /** As the caller sent it: any text when the method does not exist. */
  readonly method: string;
  /** Undefined when no method has that name (METHOD_NOT_FOUND). */
  readonly permission: Permission | undefined;
  /** The VF reference as the caller gave it, if the method takes one. */
  readonly vf: string | undefined;
  /** `refused`: by authorization or session ownership; `failed`: any other error. */
  readonly outcome: 'ok' | 'refused' | 'failed';
  readonly error: ErrorName | undefined;
  readonly durationMs: number;
}

export interface CallObserver {
  observe(record: CallRecord): void;
}

/** Refusals that are about who calls, not about what is asked. */
const REFUSALS: ReadonlySet<ErrorName> = new Set(['UNAUTHORIZED', 'NOT_SESSION_OWNER']);

export interface PipelineParts {
  readonly handlers: ReadonlyMap<string, MethodHandler>;
  readonly schemas: SchemaRegistry;
  readonly policy: Policy;
  /** The names of the VF a reference names, or undefined when it names none. */
  readonly resolveVf: (ref: string) => VfNames | undefined;
  readonly observers: readonly CallObserver[];
}

/**
 * How one call's bytes travel: made by the envelope per message. The
 * attachment that came with the request, whether the result's bytes may go
 * as one (the connection has attachments on, and the call is not in a
 * batch), and, once the call is done, the one it sends.
 */
export interface CallCarrier {
  readonly attachment: FramedAttachment | undefined;
  readonly canAttach: boolean;
  /** What the call sends, and what to call once its bytes are written or dropped. */
  outgoing: { readonly bytes: OutgoingAttachment; readonly onSent: () => void } | undefined;
  readonly link: ConnectionLink;
}

interface Method {
  readonly schema: MethodSchema;
  readonly handler: MethodHandler;
}

export class CallPipeline {
  private readonly methods = new Map<string, Method>();
  private readonly parts: PipelineParts;

  constructor(parts: PipelineParts) {
    this.parts = parts;
    for (const [name, handler] of parts.handlers) {
      const schema = parts.schemas.method(name);
      if (schema === undefined) throw new Error(`method ${name} has no schema in schemas/methods/`);
      this.methods.set(name, { schema, handler });
    }
    for (const name of parts.schemas.methods.keys()) {
      if (!this.methods.has(name)) throw new Error(`schemas/methods/${name}.json has no handler`);
    }
  }

  /** The names of every method it serves. */
  names(): Iterable<string> {
    return this.methods.keys();
  }

  async invoke(name: string, params: unknown, peer: PeerInfo, log: Logger, carrier: CallCarrier): Promise<CallOutcome> {
    const method = this.methods.get(name);
    if (method === undefined) return this.notFound(name, peer);
    const started = performance.now();
    const vf = isRecord(params) && typeof params.vf === 'string' ? params.vf : undefined;
    const outcome = await this.run(method, params, vf, peer, log, carrier);
    // A call that failed sends no bytes, whatever it attached first.
    if ('error' in outcome && carrier.outgoing !== undefined) {
      carrier.outgoing.onSent();
      carrier.outgoing = undefined;
    }
    const error = 'error' in outcome ? outcome.error.data.code : undefined;
    const record: CallRecord = {
      peer,
      method: name,
      permission: method.schema.permission,
      vf,
      outcome: error === undefined ? 'ok' : REFUSALS.has(error) ? 'refused' : 'failed',
      error,
      durationMs: performance.now() - started,
    };
    for (const observer of this.parts.observers) observer.observe(record);
    return outcome;
  }

  /** A call of a method that does not exist: observed too, so that probing for methods shows. */
  private notFound(name: string, peer: PeerInfo): CallOutcome {
    // The catalogue's words, not the name: a name can be as long as a message.
    const outcome = { error: wireError('METHOD_NOT_FOUND', ERROR_CATALOGUE.METHOD_NOT_FOUND.meaning) };
    const record: CallRecord = { peer, method: name, permission: undefined, vf: undefined, outcome: 'failed', error: 'METHOD_NOT_FOUND', durationMs: 0 };
    for (const observer of this.parts.observers) observer.observe(record);
    return outcome;
  }

  private async run(method: Method, params: unknown, vf: string | undefined, peer: PeerInfo, log: Logger, carrier: CallCarrier): Promise<CallOutcome> {
    const { schema, handler } = method;
    // authorize
    const names = vf === undefined ? undefined : this.parts.resolveVf(vf);
    const subject = names ?? vf;
    const { policy } = this.parts;
    if (!policy.allows(peer.principal, schema.permission, subject)) {
      const on = vf === undefined ? '' : ` on VF "${vf}"`;
      return { error: wireError('UNAUTHORIZED', `principal "${peer.principal}" is not granted "${schema.permission}"${on}`, { permission: schema.permission }) };
    }
    // validate params
    const given: unknown = params === undefined ? {} : params;
    if (Array.isArray(given)) {
      return { error: wireError('INVALID_PARAMS', 'params must be an object of named parameters, not an array', { errors: [{ path: '/', message: 'must be object' }] }) };
    }
    if (!schema.validateParams(given)) return { error: invalidParams(violations(schema.validateParams.errors)) };
    const unmatched = attachmentMismatch(schema, given as Record<string, unknown>, carrier.attachment);
    if (unmatched !== undefined) return { error: invalidParams([unmatched]) };
    // run
    const ctx = new CallContext(peer, schema, subject, policy, log, carrier);
    let result: unknown;
    try {
      result = await handler(given as never, ctx);
    } catch (error) {
      return { error: toWireError(error, ctx) };
    }
    // validate result
    if (!schema.validateResult(result)) {
      ctx.log.error({ errors: violations(schema.validateResult.errors) }, 'result does not match its schema');
      return { error: wireError('INTERNAL_ERROR', `the result of ${schema.name} did not match its schema`) };
    }
    return { result };
  }
}

/** INVALID_PARAMS naming the first violation, with all of them in `data.errors`. */
function invalidParams(errors: readonly SchemaViolation[]): WireError {
  const first = errors[0];
  return wireError('INVALID_PARAMS', first ? `params${first.path === '/' ? '' : first.path} ${first.message}` : 'params are invalid', { errors });
}

/** Why the request's attachment and what its params name do not go together; undefined when they do. */
function attachmentMismatch(schema: MethodSchema, params: Record<string, unknown>, attachment: FramedAttachment | undefined): SchemaViolation | undefined {
  const field = schema.attachment.params;
  const named = field === undefined ? undefined : params[field];
  const ref = isRecord(named) ? (named as unknown as Attachment) : undefined;
  if (ref === undefined) {
    if (attachment === undefined) return undefined;
    return { path: '/', message: field === undefined ? `take no attachment, but one came with the request` : `name no attachment in "${field}", but one came with the request` };
  }
  if (attachment === undefined) return { path: `/${field}`, message: 'names an attachment, but none came before the request' };
  if (ref.attachment !== attachment.length) return { path: `/${field}/attachment`, message: `is ${ref.attachment}, but the attachment holds ${attachment.length} bytes` };
  return undefined;
}

function toWireError(error: unknown, ctx: RequestContext): WireError {
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

/** Each connection's notification channel, made on first use and gone with the connection. */
const CHANNELS = new WeakMap<ConnectionLink, NotificationChannel>();

function channelOf(link: ConnectionLink): NotificationChannel {
  let channel = CHANNELS.get(link);
  if (channel === undefined) {
    channel = {
      notify: (method, params, force) => link.notify(JSON.stringify({ jsonrpc: '2.0', method, params }), force),
      whenDrained: (listener) => link.whenDrained(listener),
      onClose: (listener) => link.onClose(listener),
      hold: () => link.hold(),
    };
    CHANNELS.set(link, channel);
  }
  return channel;
}

/** A RequestContext whose logger and admin check are made on first use: most calls need neither. */
class CallContext implements RequestContext {
  readonly peer: PeerInfo;
  readonly method: string;
  readonly #schema: MethodSchema;
  readonly #subject: VfNames | string | undefined;
  readonly #policy: Policy;
  readonly #parentLog: Logger;
  readonly #carrier: CallCarrier;
  #log: Logger | undefined;
  #admin: boolean | undefined;

  constructor(peer: PeerInfo, schema: MethodSchema, subject: VfNames | string | undefined, policy: Policy, parentLog: Logger, carrier: CallCarrier) {
    this.peer = peer;
    this.method = schema.name;
    this.#schema = schema;
    this.#subject = subject;
    this.#policy = policy;
    this.#parentLog = parentLog;
    this.#carrier = carrier;
  }

  attachment(ref: Attachment): readonly Buffer[] {
    const attached = this.#carrier.attachment;
    // The pipeline matched them before the call: anything else is a fault of the handler.
    if (attached === undefined || attached.length !== ref.attachment) throw new Error(`${this.method}: no attachment of ${ref.attachment} bytes came with the request`);
    return attached.pieces;
  }

  attach(pieces: readonly Uint8Array[], onSent: () => void = () => undefined): Attachment | undefined {
    if (!this.#carrier.canAttach || this.#schema.attachment.result === undefined) return undefined;
    this.#carrier.outgoing?.onSent();
    const bytes = { pieces, length: pieces.reduce((n, piece) => n + piece.length, 0) };
    this.#carrier.outgoing = { bytes, onSent };
    return { attachment: bytes.length };
  }

  enableAttachments(): void {
    this.#carrier.link.enableAttachments();
  }

  get channel(): NotificationChannel {
    return channelOf(this.#carrier.link);
  }

  get admin(): boolean {
    this.#admin ??= this.#policy.allows(this.peer.principal, 'admin', this.#subject);
    return this.#admin;
  }

  get principal(): string {
    return this.peer.principal;
  }

  may(permission: Permission, vf: VfNames): boolean {
    return this.#policy.allows(this.peer.principal, permission, vf);
  }

  get log(): Logger {
    this.#log ??= this.#parentLog.child({ method: this.method });
    return this.#log;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
