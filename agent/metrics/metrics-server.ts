/**
 * The metrics listener: plain HTTP, `GET /metrics` and nothing else. It
 * shares the agent's event loop, so what a scraper can make it do is kept
 * small: a few connections at once, each request bounded in time and
 * size, and concurrent scrapes served from one rendering of the registry.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';

export const METRICS_PATH = '/metrics';

/** A scraper needs one connection; a few allow a second scraper and a curl. */
const MAX_CONNECTIONS = 8;
/** The whole request (Prometheus sends a few hundred bytes of headers). */
const REQUEST_TIMEOUT_MS = 5000;
const HEADERS_TIMEOUT_MS = 3000;
/** A connection with nothing going on is closed after this; a scraper reconnects. */
const IDLE_TIMEOUT_MS = 15_000;
const MAX_HEADER_BYTES = 8192;

export interface MetricsServer {
  /** `http://HOST:PORT/metrics`, with the real port when 0 was asked for. */
  readonly url: string;
  close(): Promise<void>;
}

export async function serveMetrics(registry: Registry, address: { readonly host: string; readonly port: number }, log: Logger): Promise<MetricsServer> {
  let rendering: Promise<string> | undefined;
  // Scrapes that arrive while one renders get the same text: the registry is walked once.
  const render = (): Promise<string> => (rendering ??= registry.metrics().finally(() => { rendering = undefined; }));

  const server = createServer({
    requestTimeout: REQUEST_TIMEOUT_MS,
    headersTimeout: HEADERS_TIMEOUT_MS,
    keepAliveTimeout: IDLE_TIMEOUT_MS,
    maxHeaderSize: MAX_HEADER_BYTES,
    // How often the two timeouts above are checked (Node's default is 30 s).
    connectionsCheckingInterval: 1000,
  }, (request, response) => respond(request, response, render, registry.contentType, log));
  server.maxConnections = MAX_CONNECTIONS;
  server.timeout = IDLE_TIMEOUT_MS;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => { server.off('error', reject); resolve(); });
  }).catch((error: unknown) => {
    throw new Error(`metrics listener on ${hostPort(address.host, address.port)}: ${error instanceof Error ? error.message : String(error)}`);
  });
  server.on('error', (error) => log.error({ err: error }, 'metrics listener error'));
  const bound = server.address();
  const port = typeof bound === 'object' && bound !== null ? bound.port : address.port;
  return {
    url: `http://${hostPort(address.host, port)}${METRICS_PATH}`,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

function respond(request: IncomingMessage, response: ServerResponse, render: () => Promise<string>, contentType: string, log: Logger): void {
  // A body is never read; Node discards it.
  const path = (request.url ?? '').split('?', 1)[0];
  if (path !== METRICS_PATH) return plain(response, 404, `not found: the metrics are at GET ${METRICS_PATH}\n`);
  if (request.method !== 'GET') {
    response.setHeader('Allow', 'GET');
    return plain(response, 405, `method not allowed: the metrics are at GET ${METRICS_PATH}\n`);
  }
  render().then(
    (text) => {
      response.writeHead(200, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(text) });
      response.end(text);
    },
    (error: unknown) => {
      log.error({ err: error }, 'metrics could not be collected');
      plain(response, 500, 'the metrics could not be collected; the agent\'s log says why\n');
    },
  );
}

function plain(response: ServerResponse, status: number, text: string): void {
  response.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text), Connection: 'close' });
  response.end(text);
}

function hostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}
