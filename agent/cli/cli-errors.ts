/**
 * The ways a vfmigctl command ends badly, each with its exit code and the
 * two forms it is shown in: one line on stderr, or `{error: {code,
 * message, data}}` on stdout under --json. An agent's own refusal keeps
 * the agent's error as it came (JSON-RPC code, message, data with the
 * catalogue name in data.code); the CLI's own errors take the same shape,
 * with the exit code as `code` and a stable name of their own in data.code.
 */
import { EXIT, type ExitCode } from './exit-codes.ts';

/** The `error` member of --json output. */
export interface JsonError {
  readonly code: number;
  readonly message: string;
  readonly data: { readonly code: string; readonly detail: string; readonly [key: string]: unknown };
}

export abstract class CliError extends Error {
  abstract readonly exitCode: ExitCode;
  abstract toJson(): JsonError;
  /** The line stderr shows (without the program name). */
  line(): string {
    return this.message;
  }
}

/** Bad command line, or a value the method's schema refuses: nothing was sent. */
export class UsageError extends CliError {
  readonly exitCode = EXIT.USAGE;
  readonly violations: readonly { path: string; message: string }[];
  constructor(message: string, violations: readonly { path: string; message: string }[] = []) {
    super(message);
    this.name = 'UsageError';
    this.violations = violations;
  }
  toJson(): JsonError {
    return { code: this.exitCode, message: 'Usage error', data: { code: 'USAGE', detail: this.message, ...(this.violations.length > 0 ? { errors: this.violations } : {}) } };
  }
}

/** The agent could not be reached, or its connection failed or broke the protocol. */
export class UnreachableError extends CliError {
  readonly exitCode = EXIT.UNREACHABLE;
  readonly agent: string;
  readonly reason: 'connect' | 'tls' | 'closed' | 'timeout' | 'protocol';
  constructor(agent: string, reason: UnreachableError['reason'], message: string) {
    super(`${agent}: ${message}`);
    this.name = 'UnreachableError';
    this.agent = agent;
    this.reason = reason;
  }
  toJson(): JsonError {
    return { code: this.exitCode, message: 'Agent unreachable', data: { code: 'AGENT_UNREACHABLE', detail: this.message, agent: this.agent, reason: this.reason } };
  }
}

/** What an agent puts in a JSON-RPC error. */
export interface WireError {
  readonly code: number;
  readonly message: string;
  readonly data?: { readonly code?: string; readonly detail?: string; readonly [key: string]: unknown };
}

/** The agent answered a call with a JSON-RPC error. */
export class AgentRefusal extends CliError {
  readonly exitCode = EXIT.REFUSED;
  readonly agent: string;
  readonly method: string;
  readonly error: WireError;
  constructor(agent: string, method: string, error: WireError) {
    super(`${agent} refused ${method}: ${describeWireError(error)}`);
    this.name = 'AgentRefusal';
    this.agent = agent;
    this.method = method;
    this.error = error;
  }
  /** The catalogue name, e.g. VF_UNKNOWN. */
  get errorName(): string | undefined {
    return this.error.data?.code;
  }
  toJson(): JsonError {
    const data = this.error.data ?? {};
    return { code: this.error.code, message: this.error.message, data: { ...data, code: data.code ?? 'UNKNOWN', detail: data.detail ?? '', agent: this.agent, method: this.method } };
  }
}

/** A refusal of the CLI's own: a VF that is not in a state the command can start from. */
export class NotReadyError extends CliError {
  readonly exitCode = EXIT.REFUSED;
  readonly extra: Record<string, unknown>;
  constructor(message: string, extra: Record<string, unknown> = {}) {
    super(message);
    this.name = 'NotReadyError';
    this.extra = extra;
  }
  toJson(): JsonError {
    return { code: this.exitCode, message: 'Not ready', data: { code: 'NOT_READY', detail: this.message, ...this.extra } };
  }
}

/** The destination cannot load the source's state. */
export class IncompatibleError extends CliError {
  readonly exitCode = EXIT.INCOMPATIBLE;
  readonly verdict: Record<string, unknown>;
  constructor(message: string, verdict: Record<string, unknown>) {
    super(message);
    this.name = 'IncompatibleError';
    this.verdict = verdict;
  }
  toJson(): JsonError {
    return { code: this.exitCode, message: 'Not compatible', data: { code: 'NOT_COMPATIBLE', detail: this.message, ...this.verdict } };
  }
}

/** `VF_UNKNOWN (Unknown VF): no VF has id or BDF "x"`. */
export function describeWireError(error: WireError): string {
  const name = error.data?.code;
  const head = name === undefined ? `${error.code} ${error.message}` : `${name} (${error.message})`;
  const detail = error.data?.detail;
  return detail === undefined || detail === '' ? head : `${head}: ${detail}`;
}

/** Any thrown value as a CliError: what is not one already is a bug, reported as such. */
export function asCliError(error: unknown): CliError {
  if (error instanceof CliError) return error;
  return new InternalError(error instanceof Error ? error.stack ?? error.message : String(error));
}

class InternalError extends CliError {
  readonly exitCode = EXIT.INTERNAL;
  toJson(): JsonError {
    return { code: this.exitCode, message: 'Internal error', data: { code: 'INTERNAL', detail: this.message } };
  }
}
