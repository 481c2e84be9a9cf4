/**
 * Listening sockets for every configured address (mutual TLS, TCP, Unix),
 * each connection's principal, and the limits no single client may
 * exceed: connections in all and per peer, and unsent replies in all.
 */
import { createServer as createTcpServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket, type Server as TlsServer } from 'node:tls';
import type { Logger } from 'pino';
import { principalOf } from './certificate-principal.ts';
import { serveConnection, type ConnectionLimits, type MessageSession, type TransportRefusals } from './connection.ts';
import { formatListenAddress, isLoopback, type ListenAddress } from './listen-address.ts';
import { ANONYMOUS_PRINCIPAL, LOCAL_PRINCIPAL, RESERVED_PRINCIPALS, type PeerInfo } from './peer.ts';
import type { TlsCredentials } from './tls-credentials.ts';
import { applyAccess, bindOwnerOnly, type UnixSocketAccess } from './unix-access.ts';
import { lockSocketPath, type SocketLock } from './unix-lock.ts';

/** How long a connection refused at the caps may stay to read why, before it is closed. */
const REFUSED_GRACE_MS = 2000;

export interface TransportLimits extends ConnectionLimits {
  readonly maxConnections: number;
  /** Connections from one IP address (TCP and TLS; Unix sockets are one local peer and not capped apart). */
  readonly maxConnectionsPerPeer: number;
  /** Replies written but not yet taken by their clients, over all connections. */
  readonly maxUnsentBytesTotal: number;
  readonly tlsHandshakeTimeoutMs: number;
}

export interface TransportOptions {
  readonly limits: TransportLimits;
  readonly tls: TlsCredentials | undefined;
  readonly unixSocket: UnixSocketAccess;
  /** Allow plain TCP beyond loopback. */
  readonly insecure: boolean;
}

export interface SessionFactory {
  openSession(peer: PeerInfo): MessageSession;
}

/** Why a connection is turned away: `authentication`, no valid client certificate (or no TLS handshake); `limit`, a connection cap. */
export const REFUSAL_KINDS = ['authentication', 'limit'] as const;

/** A connection turned away before it could send a request. */
export interface ConnectionRefusal {
  readonly listener: string;
  readonly remote: string;
  readonly kind: (typeof REFUSAL_KINDS)[number];
  readonly reason: string;
}

/** Connections being served (past the caps and, under TLS, the handshake), by transport. */
export type OpenConnections = Record<PeerInfo['transport'], number>;

export interface TransportHooks {
  readonly onRefusal: (refusal: ConnectionRefusal) => void;
}

export interface BoundListener {
  /** The address as bound (with the real port when 0 was asked for). */
  readonly address: ListenAddress;
}

export class Listeners {
  private readonly servers: Server[] = [];
  private readonly locks: SocketLock[] = [];
  /** Every accepted TCP connection (under TLS too), for the caps. */
  private readonly sockets = new Set<Socket>();
  /** The sockets replies are written to (the TLS socket over a TLS connection), for the unsent-bytes cap, and their transports. */
  private readonly writers = new Map<Socket, PeerInfo['transport']>();
  private readonly perPeer = new Map<string, number>();
  private nextConnectionId = 1;
  readonly bound: BoundListener[] = [];
  private readonly sessions: SessionFactory;
  private readonly options: TransportOptions;
  private readonly refusals: TransportRefusals;
  private readonly hooks: TransportHooks;
  private readonly log: Logger;

  constructor(sessions: SessionFactory, options: TransportOptions, refusals: TransportRefusals, hooks: TransportHooks, log: Logger) {
    this.sessions = sessions;
    this.options = options;
    this.refusals = refusals;
    this.hooks = hooks;
    this.log = log;
  }

  async listen(requested: ListenAddress): Promise<BoundListener> {
    // Connections name their listener; its port is known once bound.
    const name = { current: formatListenAddress(requested) };
    const server = this.createServer(requested, () => name.current);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      const onListening = (): void => { server.off('error', reject); resolve(); };
      if (requested.kind === 'unix') {
        this.locks.push(lockSocketPath(requested.path));
        bindOwnerOnly(() => server.listen(requested.path, onListening));
      } else {
        server.listen(requested.port, requested.host, onListening);
      }
    });
    if (requested.kind === 'unix') applyAccess(requested.path, this.options.unixSocket);
    const info = server.address();
    const address: ListenAddress = requested.kind !== 'unix' && typeof info === 'object' && info !== null ? { ...requested, port: info.port } : requested;
    name.current = formatListenAddress(address);
    server.on('error', (error) => this.log.error({ err: error, listen: name.current }, 'listener error'));
    this.servers.push(server);
    const bound: BoundListener = { address };
    this.bound.push(bound);
    return bound;
  }

  /** Stops accepting, closes every connection, removes Unix sockets and their locks. */
  async close(): Promise<void> {
    for (const socket of [...this.writers.keys(), ...this.sockets]) socket.destroy();
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    for (const lock of this.locks) lock.release();
  }

  /** Bytes of replies written and not yet taken, over all connections. */
  unsentBytes(): number {
    let total = 0;
    for (const socket of this.writers.keys()) total += socket.writableLength;
    return total;
  }

  /** Connections being served now: counted when asked, so always true. */
  openConnections(): OpenConnections {
    const open: OpenConnections = { tcp: 0, tls: 0, unix: 0 };
    for (const transport of this.writers.values()) open[transport] += 1;
    return open;
  }

  private createServer(address: ListenAddress, listener: () => string): Server {
    if (address.kind === 'tls') return this.createTlsListener(address, listener);
    if (address.kind === 'tcp' && !isLoopback(address)) {
      if (!this.options.insecure) {
        throw new Error(`refusing to listen on ${formatListenAddress(address)}: plain TCP beyond loopback authenticates nobody; use tls://, or set "insecure": true to allow it`);
      }
      this.log.warn({ listen: formatListenAddress(address) }, 'INSECURE: plain TCP beyond loopback; every caller there is the principal "anonymous", unauthenticated and unencrypted');
    }
    const local = isLoopback(address);
    // Half-open: a client that half-closes after its requests still gets the replies.
    return createTcpServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
      if (!this.admit(socket, listener(), address.kind !== 'unix')) return;
      this.open(socket, address.kind === 'unix' ? 'unix' : 'tcp', listener(), local ? LOCAL_PRINCIPAL : ANONYMOUS_PRINCIPAL, local ? 'local' : 'none');
    });
  }

  private createTlsListener(address: ListenAddress, listener: () => string): TlsServer {
    const credentials = this.options.tls;
    if (credentials === undefined) throw new Error(`${formatListenAddress(address)} needs the "tls" section of the config (certificate, key, CA)`);
    const server = createTlsServer({
      ...credentials.options,
      requestCert: true,
      // Verification is OpenSSL's; the verdict is checked below, before any
      // byte is read, so that a refusal can say why (expired, revoked, ...).
      rejectUnauthorized: false,
      handshakeTimeout: this.options.limits.tlsHandshakeTimeoutMs,
      noDelay: true,
      allowHalfOpen: true,
    });
    credentials.onReload((options) => server.setSecureContext(options));
    // Caps apply to the TCP connection, before a handshake costs anything.
    server.on('connection', (socket: Socket) => { this.admit(socket, listener(), true); });
    server.on('tlsClientError', (error: Error & { code?: string }, socket: TLSSocket) => {
      this.refuse(listener(), socket, 'authentication', `TLS handshake failed: ${error.code ?? error.message}`);
      // Node reports a handshake timeout but leaves the connection open.
      socket.destroy();
    });
    server.on('secureConnection', (socket: TLSSocket) => {
      const peerCert = socket.getPeerCertificate();
      if (!socket.authorized) {
        const reason = peerCert === null || Object.keys(peerCert).length === 0 ? 'no client certificate' : `client certificate refused: ${String(socket.authorizationError)}`;
        this.refuse(listener(), socket, 'authentication', reason);
        socket.destroy();
        return;
      }
      const principal = principalOf(peerCert);
      if (principal === undefined || RESERVED_PRINCIPALS.has(principal)) {
        this.refuse(listener(), socket, 'authentication', principal === undefined ? 'client certificate names no principal (no URI SAN, no CN)' : `client certificate claims the reserved principal "${principal}"`);
        socket.destroy();
        return;
      }
      this.open(socket, 'tls', listener(), principal, 'mtls');
    });
    return server;
  }

  /** Counts a new connection against the caps; refuses it (and says so) when over. */
  private admit(socket: Socket, listener: string, countPeer: boolean): boolean {
    const ip = socket.remoteAddress ?? '?';
    const { maxConnections, maxConnectionsPerPeer } = this.options.limits;
    const fromPeer = countPeer ? (this.perPeer.get(ip) ?? 0) : 0;
    const scope = this.sockets.size >= maxConnections ? 'agent' : countPeer && fromPeer >= maxConnectionsPerPeer ? 'peer' : undefined;
    if (scope !== undefined) {
      const limit = scope === 'agent' ? maxConnections : maxConnectionsPerPeer;
      this.refuse(listener, socket, 'limit', scope === 'agent' ? `the agent serves at most ${limit} connections` : `at most ${limit} connections from one peer`);
      socket.on('error', () => undefined);
      // A TLS client cannot read plain text; it is only closed.
      if (listener.startsWith('tls:')) socket.destroy();
      else {
        socket.end(`${this.refusals.tooManyConnections(limit, scope)}\n`);
        // A refused connection is not counted, so it must not linger: the
        // client has a moment to read the refusal, then it is gone.
        setTimeout(() => socket.destroy(), REFUSED_GRACE_MS).unref();
      }
      return false;
    }
    this.sockets.add(socket);
    if (countPeer) this.perPeer.set(ip, fromPeer + 1);
    socket.once('close', () => {
      this.sockets.delete(socket);
      if (!countPeer) return;
      const left = (this.perPeer.get(ip) ?? 1) - 1;
      if (left === 0) this.perPeer.delete(ip);
      else this.perPeer.set(ip, left);
    });
    return true;
  }

  private refuse(listener: string, socket: Socket, kind: ConnectionRefusal['kind'], reason: string): void {
    this.hooks.onRefusal({ listener, remote: remoteOf(socket, listener), kind, reason });
  }

  private open(socket: Socket, transport: PeerInfo['transport'], listener: string, principal: string, authentication: PeerInfo['authentication']): void {
    const connectionId = this.nextConnectionId++;
    const remote = remoteOf(socket, listener);
    const log = this.log.child({ conn: connectionId });
    this.writers.set(socket, transport);
    socket.once('close', () => {
      this.writers.delete(socket);
      log.debug('connection closed');
    });
    log.debug({ remote, listener, principal }, 'connection accepted');
    const session = this.sessions.openSession({ connectionId, transport, listener, remote, principal, authentication });
    serveConnection(socket, session, this.options.limits, this.refusals, { onBacklog: () => this.holdDownBacklog() }, log);
  }

  /**
   * Past the total cap on unsent replies, the connection holding the most
   * is closed: its client is the one not reading.
   */
  private holdDownBacklog(): void {
    while (this.unsentBytes() > this.options.limits.maxUnsentBytesTotal) {
      let worst: Socket | undefined;
      for (const socket of this.writers.keys()) if (worst === undefined || socket.writableLength > worst.writableLength) worst = socket;
      if (worst === undefined || worst.writableLength === 0) return;
      this.log.warn({ remote: worst.remoteAddress, unsentBytes: worst.writableLength, limit: this.options.limits.maxUnsentBytesTotal }, 'replies unsent over all connections past the limit; closing the connection that holds most');
      worst.destroy();
      this.writers.delete(worst);
    }
  }
}

function remoteOf(socket: Socket, listener: string): string {
  if (listener.startsWith('unix:')) return listener.slice('unix:'.length);
  const host = socket.remoteAddress ?? '?';
  return `${host.includes(':') ? `[${host}]` : host}:${socket.remotePort ?? 0}`;
}
