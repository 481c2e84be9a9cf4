/**
 * Baseline servers for the benchmarks, each run as its own process (as the
 * agent is), printing `listening PORT` when ready:
 *   raw-source BYTES [CERT KEY]  streams BYTES to each client, then closes
 *   raw-sink BYTES [CERT KEY]    reads BYTES from each client, then answers "ok\n"
 *                                (with CERT and KEY files: over TLS, as the agent's listener)
 *   jayson            a bare jayson TCP server with vf.getState and vf.load
 *                     doing the same work as the agent's (no schemas, no
 *                     state machine)
 */
import { readFileSync } from 'node:fs';
import { createServer as createTcpServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import jayson from 'jayson';

const [mode, arg, certFile, keyFile] = process.argv.slice(2);

/** A TCP server, or a TLS one (TLS 1.3, as the agent's) when a certificate was given. */
function createServer(onConnection: (socket: Socket) => void): Server {
  if (certFile === undefined || keyFile === undefined) return createTcpServer(onConnection);
  return createTlsServer({ cert: readFileSync(certFile), key: readFileSync(keyFile), minVersion: 'TLSv1.3' }, onConnection);
}
const CHUNK = Buffer.alloc(1024 * 1024, 0x5a);

function announce(server: { address(): unknown }): void {
  const address = server.address() as { port: number };
  process.stdout.write(`listening ${address.port}\n`);
}

if (mode === 'raw-source') {
  const total = Number(arg);
  const server = createServer((socket) => {
    let sent = 0;
    const pump = (): void => {
      while (sent < total) {
        const n = Math.min(CHUNK.length, total - sent);
        sent += n;
        if (!socket.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
          socket.once('drain', pump);
          return;
        }
      }
      socket.end();
    };
    pump();
  });
  server.listen(0, '127.0.0.1', () => announce(server));
} else if (mode === 'raw-sink') {
  const total = Number(arg);
  const server = createServer((socket) => {
    let received = 0;
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received >= total) socket.end('ok\n');
    });
  });
  server.listen(0, '127.0.0.1', () => announce(server));
} else if (mode === 'jayson') {
  let loaded = Buffer.alloc(0);
  const server = new jayson.Server({
    'vf.getState': (params: { vf: string }, callback: (e: null, r: unknown) => void) => {
      callback(null, { vf: params.vf, state: 'RUNNING', value: 2 });
    },
    'vf.load': (params: { vf: string; offset: number; data: string }, callback: (e: null, r: unknown) => void) => {
      const bytes = Buffer.from(params.data, 'base64');
      const end = params.offset + bytes.length;
      if (loaded.length < end) {
        const grown = Buffer.allocUnsafe(Math.max(end, loaded.length * 2));
        loaded.copy(grown);
        loaded = grown;
      }
      bytes.copy(loaded, params.offset);
      callback(null, { state: 'RESUMING', received: end, totalBytes: null, complete: false });
    },
  });
  const tcp = server.tcp();
  tcp.listen(0, '127.0.0.1', () => announce(tcp));
} else {
  process.stderr.write(`usage: peers.js raw-source BYTES | raw-sink BYTES | jayson\n`);
  process.exit(2);
}
