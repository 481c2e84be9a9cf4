/**
 * Listening sockets for every configured address, TCP or Unix, with a cap
 * on concurrent connections: a client over the cap gets a JSON-RPC error
 * and is closed, not reset.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { PeerInfo } from '../rpc/context.ts';
import { serveConnection, type MessageSession, type TransportRefusals } from './connection.ts';
import { formatListenAddress, type ListenAddress } from './listen-address.ts';
import { lockSocketPath, type SocketLock } from './unix-lock.ts';

export interface TransportLimits {
  readonly maxMessageBytes: number;
  readonly maxConnections: number;
}

export interface SessionFactory {
  openSession(peer: PeerInfo): MessageSession;
}

export interface BoundListener {
  /** The address as bound (with the real port when 0 was asked for). */
  readonly address: ListenAddress;
}

export class Listeners {
  private readonly servers: Server[] = [];
  private readonly locks: SocketLock[] = [];
  private readonly sockets = new Set<Socket>();
  private nextConnectionId = 1;
  readonly bound: BoundListener[] = [];
  private readonly sessions: SessionFactory;
  private readonly limits: TransportLimits;
  private readonly refusals: TransportRefusals;
  private readonly log: Logger;

  constructor(sessions: SessionFactory, limits: TransportLimits, refusals: TransportRefusals, log: Logger) {
    this.sessions = sessions;
    this.limits = limits;
    this.refusals = refusals;
    this.log = log;
  }

  async listen(address: ListenAddress): Promise<BoundListener> {
    if (address.kind === 'unix') this.locks.push(lockSocketPath(address.path));
    const server = createServer({ noDelay: true }, (socket) => this.accept(socket, address));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      const onListening = (): void => { server.off('error', reject); resolve(); };
      if (address.kind === 'unix') server.listen(address.path, onListening);
      else server.listen(address.port, address.host, onListening);
    });
    server.on('error', (error) => this.log.error({ err: error, listen: formatListenAddress(address) }, 'listener error'));
    this.servers.push(server);
    const info = server.address();
    const bound: BoundListener = {
      address: address.kind === 'tcp' && typeof info === 'object' && info !== null ? { ...address, port: info.port } : address,
    };
    this.bound.push(bound);
    return bound;
  }

  /** Stops accepting, closes every connection, removes Unix sockets and their locks. */
  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    for (const lock of this.locks) lock.release();
  }

  private accept(socket: Socket, address: ListenAddress): void {
    const connectionId = this.nextConnectionId++;
    const remote = address.kind === 'unix' ? address.path : `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
    const log = this.log.child({ conn: connectionId });
    if (this.sockets.size >= this.limits.maxConnections) {
      log.warn({ remote, limit: this.limits.maxConnections }, 'too many connections; refusing');
      socket.on('error', () => undefined);
      socket.end(`${this.refusals.tooManyConnections(this.limits.maxConnections)}\n`);
      return;
    }
    this.sockets.add(socket);
    socket.once('close', () => {
      this.sockets.delete(socket);
      log.debug('connection closed');
    });
    log.debug({ remote, transport: address.kind }, 'connection accepted');
    const session = this.sessions.openSession({ connectionId, transport: address.kind, remote });
    serveConnection(socket, session, this.limits.maxMessageBytes, this.refusals, log);
  }
}
