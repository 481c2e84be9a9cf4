/**
 * What every command gets from the global options: where the agent is and
 * how to reach it, the schemas its calls are checked against, and where
 * its words go.
 */
import { SchemaRegistry } from '../rpc/schema-registry.ts';
import { agentTarget, DEFAULT_AGENT, type AgentTarget, type TlsFiles } from './agent-address.ts';
import { AgentConnection } from './agent-connection.ts';
import { UsageError } from './cli-errors.ts';
import { Output } from './output.ts';

/** The global options as commander hands them over. */
export interface GlobalOptions {
  readonly agent?: string;
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
  readonly serverName?: string;
  readonly timeoutMs?: string;
  readonly json?: boolean;
  readonly quiet?: boolean;
  readonly color?: boolean;
}

export const DEFAULT_TIMEOUT_MS = 15_000;

export class CommandContext {
  readonly out: Output;
  readonly timeoutMs: number;
  private readonly options: GlobalOptions;
  private registry: SchemaRegistry | undefined;

  constructor(options: GlobalOptions) {
    this.options = options;
    this.out = new Output({ json: options.json === true, quiet: options.quiet === true, color: options.color !== false });
    this.timeoutMs = options.timeoutMs === undefined ? DEFAULT_TIMEOUT_MS : positiveInteger('--timeout-ms', options.timeoutMs);
  }

  /** Loaded on first use (a usage error needs none of it), each validator compiled on its first call. */
  get schemas(): SchemaRegistry {
    this.registry ??= new SchemaRegistry(undefined, { lazy: true });
    return this.registry;
  }

  /** `text`, else --agent, else VFMIGD_AGENT, else the Quick start's agent. */
  target(text?: string): AgentTarget {
    return agentTarget(text ?? this.options.agent ?? process.env.VFMIGD_AGENT ?? DEFAULT_AGENT, this.tlsFiles());
  }

  connect(target: AgentTarget = this.target()): Promise<AgentConnection> {
    return AgentConnection.open(target, { schemas: this.schemas, timeoutMs: this.timeoutMs });
  }

  /** Runs `work` on a connection to the agent, closed afterwards whatever happens. */
  async withAgent<T>(work: (agent: AgentConnection) => Promise<T>, target?: AgentTarget): Promise<T> {
    const connection = await this.connect(target);
    try {
      return await work(connection);
    } finally {
      connection.close();
    }
  }

  private tlsFiles(): TlsFiles {
    const { ca, cert, key, serverName } = this.options;
    return { ca, cert, key, serverName };
  }
}

/** An option's value as a whole number above zero, or a usage error naming the option. */
export function positiveInteger(option: string, text: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < 1) throw new UsageError(`${option} ${text}: a whole number above 0 is needed`);
  return value;
}

/** Like positiveInteger, 0 allowed. */
export function countOption(option: string, text: string): number {
  return text === '0' ? 0 : positiveInteger(option, text);
}
