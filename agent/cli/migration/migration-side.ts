/**
 * One side of a migration as the CLI drives it: an agent, a VF on it, the
 * connection the calls go on, and how state bytes travel there. Its
 * connection can be replaced: after a call was abandoned (Ctrl-C, a
 * timeout) the old one is closed, and a cancel goes on a new one under the
 * same principal, which still owns the migration.
 */
import type { AgentTarget } from '../agent-address.ts';
import type { AgentConnection } from '../agent-connection.ts';
import { UnreachableError } from '../cli-errors.ts';
import type { CommandContext } from '../command-context.ts';

/** The API major version this CLI speaks (agent.info's apiVersion). */
const API_MAJOR = '1';

export type Role = 'source' | 'destination';
export type Transport = 'attachments' | 'base64';

export class MigrationSide {
  readonly role: Role;
  readonly target: AgentTarget;
  readonly vf: string;
  private readonly ctx: CommandContext;
  private current: AgentConnection;

  private constructor(ctx: CommandContext, role: Role, target: AgentTarget, vf: string, connection: AgentConnection) {
    this.ctx = ctx;
    this.role = role;
    this.target = target;
    this.vf = vf;
    this.current = connection;
  }

  static async open(ctx: CommandContext, role: Role, target: AgentTarget, vf: string, signal?: AbortSignal): Promise<MigrationSide> {
    return new MigrationSide(ctx, role, target, vf, await openConnection(ctx, target, signal));
  }

  get connection(): AgentConnection {
    return this.current;
  }

  get transport(): Transport {
    return this.current.attachments ? 'attachments' : 'base64';
  }

  /** `source nvme0 on tcp://10.0.0.7:7700` */
  get label(): string {
    return `${this.role} ${this.vf} on ${this.target.name}`;
  }

  /** The connection if it can still be used, else a new one. */
  async usable(): Promise<AgentConnection> {
    if (this.current.usable) return this.current;
    this.current.close();
    this.current = await openConnection(this.ctx, this.target);
    return this.current;
  }

  close(): void {
    this.current.close();
  }
}

/** Connects, asks for attachments (base64 where the agent has none), and checks that the agent speaks this API. */
async function openConnection(ctx: CommandContext, target: AgentTarget, signal?: AbortSignal): Promise<AgentConnection> {
  const connection = await ctx.connect(target);
  try {
    await connection.enableAttachments({ signal });
    const info = await connection.call('agent.info', {}, { signal });
    if (info.apiVersion.split('.')[0] !== API_MAJOR) {
      throw new UnreachableError(target.name, 'protocol', `the agent speaks API ${info.apiVersion}; vfmigctl speaks ${API_MAJOR}.x`);
    }
    return connection;
  } catch (error) {
    connection.close();
    throw error;
  }
}
