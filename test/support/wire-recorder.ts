/**
 * A proxy between the VMM plugin and an agent that reads the JSON-RPC
 * stream both ways (JSON texts one per line, each optionally preceded by
 * an attachment frame: 0x00, a 4-byte big-endian length, that many bytes)
 * and records, per connection, which call came with a frame and how each
 * `data` travelled. That is how a test knows which path the plugin took,
 * not only that the migration worked. For a mutual-TLS agent it ends the
 * plugin's TLS with the agent's own certificate and opens its own to the
 * agent with the plugin's (the agent sees the plugin's principal).
 *
 * It can also play a broken agent or a broken network, once: rewrite the
 * length in the header of the agent's Nth frame, or cut the connection
 * after part of that frame's bytes have gone to the plugin (end it, reset
 * it, or let it go silent both ways with both sockets left open: a black
 * hole); or an agent from before attachments, which does not know
 * rpc.enableAttachments. A cut is placed at a byte count, never at a time:
 * whatever else the plugin sends meanwhile (lease renewals), the fault
 * lands in the middle of that frame.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { PemFiles } from './pki.ts';

const LF = 0x0a;
const FRAME_MARKER = 0x00;
const HEADER_BYTES = 5;

/** How one `data` travelled: in a frame, as base64, or there was none. */
export type DataPath = 'attachment' | 'base64' | undefined;

export interface WireMessage {
  readonly method: string | undefined;
  readonly id: unknown;
  /** The length of the frame that came before this text, if one did. */
  readonly frame: number | undefined;
  /** vf.load's params.data or vf.save's result.data. */
  readonly data: DataPath;
  /** A response that is an error. */
  readonly error: boolean;
}

export interface WireConnection {
  readonly requests: WireMessage[];
  readonly responses: WireMessage[];
}

/**
 * How a cut ends a connection, once `cutAfterBytes` of the frame have gone
 * to the plugin: `end` closes both ways (FIN; the default), `reset` resets
 * both the plugin's and the agent's TCP connection (RST), `blackhole`
 * forwards nothing more in either direction and closes nothing (no FIN, no
 * RST), as a network that has started dropping every packet. New
 * connections are proxied as before in every case.
 */
export type CutHow = 'end' | 'reset' | 'blackhole';

/** What to do to the agent's frame number `frameIndex` (0 the first, counted over all connections). */
export type FrameFault =
  | { readonly frameIndex: number; readonly rewriteLength: number }
  | { readonly frameIndex: number; readonly cutAfterBytes: number; readonly how?: CutHow };

export interface TlsEnds {
  /** What the proxy shows the plugin: the agent's certificate and key; and the CA the plugin's certificate chains to. */
  readonly server: PemFiles;
  /** What the proxy shows the agent: the plugin's certificate and key. */
  readonly client: PemFiles;
  readonly ca: string;
}

export interface WireRecorder {
  /** Where it listens: a loopback TCP port, or `path` when it was asked to listen on a Unix socket. */
  readonly port: number;
  readonly path: string | undefined;
  readonly connections: WireConnection[];
  /** Whether the fault was played. */
  readonly faulted: boolean;
  /** When it was (performance.now() of this process): for a cut, once its bytes had been handed to the plugin's socket. */
  readonly faultedAt: number | undefined;
  /** Its connection's index in `connections`: those after it came later. */
  readonly faultedOn: number | undefined;
  close(): void;
}

function dataPath(data: unknown): DataPath {
  if (typeof data === 'string') return 'base64';
  if (typeof data === 'object' && data !== null && 'attachment' in data) return 'attachment';
  return undefined;
}

function field(value: unknown, key: string): unknown {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[key] : undefined;
}

/** What to do with a frame header: pass it on (undefined), send another length, or end after `cutAfterBytes` of its bytes. */
type HeaderVerdict = { rewriteLength?: number; cutAfterBytes?: number } | undefined;

/**
 * One direction of the stream, parsed as it passes. `feed` returns what to
 * forward (the same bytes, but for a fault) and whether to end the
 * connection after it.
 */
class StreamReader {
  private state: 'between' | 'header' | 'payload' | 'text' = 'between';
  private readonly header = Buffer.alloc(HEADER_BYTES);
  private have = 0;
  private left = 0;
  private cutLeft: number | undefined;
  private frame: number | undefined;
  private text: Buffer[] = [];
  private readonly onHeader: (length: number) => HeaderVerdict;
  private readonly onText: (text: string, frame: number | undefined) => 'drop' | undefined;

  constructor(onHeader: (length: number) => HeaderVerdict, onText: (text: string, frame: number | undefined) => 'drop' | undefined) {
    this.onHeader = onHeader;
    this.onText = onText;
  }

  feed(chunk: Buffer): { out: Buffer[]; cut: boolean } {
    const out: Buffer[] = [];
    let i = 0;
    while (i < chunk.length) {
      if (this.state === 'between') {
        const byte = chunk[i] ?? 0;
        if (byte === FRAME_MARKER) {
          this.state = 'header';
          this.have = 0;
        } else if (byte === 0x20 || byte === 0x09 || byte === 0x0d || byte === LF) {
          out.push(chunk.subarray(i, i + 1));
          i += 1;
        } else {
          this.state = 'text';
        }
      } else if (this.state === 'header') {
        const take = Math.min(HEADER_BYTES - this.have, chunk.length - i);
        chunk.copy(this.header, this.have, i, i + take);
        this.have += take;
        i += take;
        if (this.have < HEADER_BYTES) continue;
        const length = this.header.readUInt32BE(1);
        const verdict = this.onHeader(length);
        const header = Buffer.from(this.header);
        if (verdict?.rewriteLength !== undefined) header.writeUInt32BE(verdict.rewriteLength, 1);
        out.push(header);
        this.frame = length;
        this.left = length;
        this.cutLeft = verdict?.cutAfterBytes;
        this.state = length > 0 ? 'payload' : 'between';
        if (this.cutLeft === 0) return { out, cut: true };
      } else if (this.state === 'payload') {
        let take = Math.min(this.left, chunk.length - i);
        if (this.cutLeft !== undefined) take = Math.min(take, this.cutLeft);
        out.push(chunk.subarray(i, i + take));
        i += take;
        this.left -= take;
        if (this.cutLeft !== undefined) {
          this.cutLeft -= take;
          if (this.cutLeft === 0) return { out, cut: true };
        }
        if (this.left === 0) this.state = 'between';
      } else {
        // A text is held until its newline, so that it can be answered here instead of passed on.
        const newline = chunk.indexOf(LF, i);
        const end = newline < 0 ? chunk.length : newline + 1;
        this.text.push(chunk.subarray(i, end));
        i = end;
        if (newline >= 0) {
          const text = Buffer.concat(this.text);
          if (this.onText(text.toString('utf8'), this.frame) !== 'drop') out.push(text);
          this.text = [];
          this.frame = undefined;
          this.state = 'between';
        }
      }
    }
    return { out, cut: false };
  }
}

export interface RecorderOptions {
  /** For a mutual-TLS agent: the ends the proxy plays. */
  readonly tls?: TlsEnds;
  /** Played once, on the agent's frame it names. */
  readonly fault?: FrameFault;
  /** Play an agent from before attachments: rpc.enableAttachments is answered -32601 here and never reaches the agent. */
  readonly olderAgent?: boolean;
  /** Listen on this Unix socket path instead of a loopback TCP port. */
  readonly listenPath?: string;
}

/** The agent's listener: TCP (or TLS, with `tls`) host and port, or a Unix socket path. */
export type RecorderTarget = { readonly host: string; readonly port: number } | { readonly path: string };

export async function wireRecorder(target: RecorderTarget, options: RecorderOptions = {}): Promise<WireRecorder> {
  const connections: WireConnection[] = [];
  const sockets = new Set<Socket>();
  /** The TCP connection under each TLS socket the server accepted, by the plugin's port (only a TCP socket can be reset). */
  const rawPluginSockets = new Map<number, Socket>();
  let agentFrames = 0;
  let faulted = false;
  let faultedAt: number | undefined;
  let faultedOn: number | undefined;
  const { tls, fault, olderAgent = false } = options;

  const handle = (plugin: Socket): void => {
    const connection: WireConnection = { requests: [], responses: [] };
    connections.push(connection);
    const methods = new Map<string, string>();
    const rawPlugin = tls === undefined ? plugin : rawPluginSockets.get(plugin.remotePort ?? -1) ?? plugin;
    rawPluginSockets.delete(plugin.remotePort ?? -1);
    const rawAgent: Socket = 'path' in target ? connect(target.path) : connect(target.port, target.host);
    const agent: Socket = tls === undefined || 'path' in target
      ? rawAgent
      : tlsConnect({ socket: rawAgent, host: target.host, ca: readFileSync(tls.ca), cert: readFileSync(tls.client.cert), key: readFileSync(tls.client.key) });
    for (const s of new Set([plugin, agent, rawPlugin, rawAgent])) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => { sockets.delete(s); plugin.destroy(); agent.destroy(); });
    }
    /** A black hole: nothing more is read or written on this connection, and nothing is closed. */
    let silent = false;
    /** Ends the connection as `how` says; `written` runs its callback once what went out before the cut has been written. */
    const cut = (how: CutHow, from: Socket, to: Socket, written: (then: () => void) => void): void => {
      faulted = true;
      faultedOn = connections.indexOf(connection);
      if (how === 'blackhole') {
        silent = true;
        plugin.pause();
        agent.pause();
        faultedAt = performance.now();
      } else if (how === 'reset') {
        // Once what went out is in the plugin's socket, an RST on both TCP connections (under the TLS layer, if any).
        written(() => {
          faultedAt = performance.now();
          for (const raw of [rawPlugin, rawAgent]) raw.resetAndDestroy();
        });
      } else {
        // What went out reaches the plugin, then the stream ends: a frame cut short.
        faultedAt = performance.now();
        from.destroy();
        to.end();
      }
    };
    const toAgent = new StreamReader(() => undefined, (text, frame) => {
      const message = JSON.parse(text) as unknown;
      const method = field(message, 'method');
      const id = field(message, 'id');
      if (typeof method === 'string') methods.set(JSON.stringify(id), method);
      connection.requests.push({ method: typeof method === 'string' ? method : undefined, id, frame, data: dataPath(field(field(message, 'params'), 'data')), error: false });
      if (olderAgent && method === 'rpc.enableAttachments') {
        // What an agent from before attachments answers, without the agent ever seeing the call.
        const reply = { jsonrpc: '2.0', id, error: { code: -32601, message: 'Method not found' } };
        connection.responses.push({ method, id, frame: undefined, data: undefined, error: true });
        plugin.write(`${JSON.stringify(reply)}\n`);
        return 'drop';
      }
      return undefined;
    });
    const toPlugin = new StreamReader(() => {
      const index = agentFrames++;
      if (fault === undefined || fault.frameIndex !== index || faulted) return undefined;
      if ('rewriteLength' in fault) {
        faulted = true;
        faultedAt = performance.now();
        faultedOn = connections.indexOf(connection);
        return { rewriteLength: fault.rewriteLength };
      }
      return { cutAfterBytes: fault.cutAfterBytes };
    }, (text, frame) => {
      const message = JSON.parse(text) as unknown;
      const id = field(message, 'id');
      connection.responses.push({ method: methods.get(JSON.stringify(id)), id, frame, data: dataPath(field(field(message, 'result'), 'data')), error: field(message, 'error') !== undefined });
      return undefined;
    });
    const pump = (from: Socket, to: Socket, reader: StreamReader): void => {
      from.on('data', (chunk: Buffer) => {
        if (silent) return;
        const { out, cut: cutNow } = reader.feed(chunk);
        if (!cutNow) {
          for (const piece of out) to.write(piece);
          return;
        }
        let written = out.length === 0;
        let onWritten = (): void => undefined;
        out.forEach((piece, i) => to.write(piece, i < out.length - 1 ? undefined : () => { written = true; onWritten(); }));
        cut(fault !== undefined && 'how' in fault ? fault.how ?? 'end' : 'end', from, to, (then) => {
          if (written) then();
          else onWritten = then;
        });
      });
    };
    pump(plugin, agent, toAgent);
    pump(agent, plugin, toPlugin);
  };

  const server: Server = tls === undefined
    ? createServer(handle)
    : createTlsServer({ cert: readFileSync(tls.server.cert), key: readFileSync(tls.server.key), ca: readFileSync(tls.ca), requestCert: true, rejectUnauthorized: true }, (socket: TLSSocket) => handle(socket));
  if (tls !== undefined) {
    // A TCP connection arrives before the TLS socket made on it; the two share the plugin's port.
    server.prependListener('connection', (raw: Socket) => {
      const port = raw.remotePort ?? -1;
      rawPluginSockets.set(port, raw);
      raw.once('close', () => { if (rawPluginSockets.get(port) === raw) rawPluginSockets.delete(port); });
    });
  }
  const { listenPath } = options;
  await new Promise<void>((resolve) => { if (listenPath === undefined) server.listen(0, '127.0.0.1', resolve); else server.listen(listenPath, resolve); });
  return {
    port: listenPath === undefined ? (server.address() as { port: number }).port : 0,
    path: listenPath,
    connections,
    get faulted() { return faulted; },
    get faultedAt() { return faultedAt; },
    get faultedOn() { return faultedOn; },
    close: () => { server.close(); for (const s of sockets) s.destroy(); for (const s of rawPluginSockets.values()) s.destroy(); },
  };
}

/**
 * Which path the recorded calls took: connections that agreed to
 * attachments with their first call, vf.save results and vf.load requests
 * in frames or in base64, and frames anywhere else (there should be none).
 */
export function pathsTaken(connections: readonly WireConnection[]): { connections: number; agreed: number; framedSaves: number; base64Saves: number; framedLoads: number; base64Loads: number; strayFrames: number } {
  let agreed = 0;
  let framedSaves = 0;
  let base64Saves = 0;
  let framedLoads = 0;
  let base64Loads = 0;
  let strayFrames = 0;
  for (const c of connections) {
    if (c.requests[0]?.method === 'rpc.enableAttachments' && c.responses.some((r) => r.method === 'rpc.enableAttachments' && !r.error)) agreed += 1;
    for (const r of c.responses) {
      if (r.method === 'vf.save' && !r.error) {
        if (r.frame !== undefined && r.data === 'attachment') framedSaves += 1;
        if (r.frame === undefined && r.data === 'base64') base64Saves += 1;
      } else if (r.frame !== undefined) {
        strayFrames += 1;
      }
    }
    for (const r of c.requests) {
      if (r.method === 'vf.load') {
        if (r.frame !== undefined && r.data === 'attachment') framedLoads += 1;
        if (r.frame === undefined && r.data === 'base64') base64Loads += 1;
      } else if (r.frame !== undefined) {
        strayFrames += 1;
      }
    }
  }
  return { connections: connections.length, agreed, framedSaves, base64Saves, framedLoads, base64Loads, strayFrames };
}
