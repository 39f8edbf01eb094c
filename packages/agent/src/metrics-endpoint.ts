// The HTTP listener behind `metrics.listen`: `GET /metrics` answers the page the daemon renders
// (renderMetrics of its status), anything else 404 (405 for another method on /metrics). One
// scrape at a time: a scrape that arrives while one runs shares its page.
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { METRICS_CONTENT_TYPE } from './metrics-text.js';

export interface MetricsServer {
  /** Stops listening and hangs up on open connections. */
  close(): Promise<void>;
}

/** Starts serving on `listen` ("address:port", "[ipv6]:port"); rejects when it cannot listen there. */
export type MetricsServerFactory = (listen: string, page: () => Promise<string>) => Promise<MetricsServer>;

export const httpMetricsServer: MetricsServerFactory = async (listen, page) => {
  const { host, port } = splitListen(listen);
  let running: Promise<string> | undefined;
  const scrape = (): Promise<string> => {
    running ??= page().finally(() => {
      running = undefined;
    });
    return running;
  };
  const connections = new Set<Socket>();
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0];
    if (path !== '/metrics') return reply(response, 404, 'not found: the metrics are at /metrics\n');
    if (request.method !== 'GET' && request.method !== 'HEAD') return reply(response, 405, 'method not allowed\n', { Allow: 'GET, HEAD' });
    scrape().then(
      (text) => reply(response, 200, request.method === 'HEAD' ? '' : text, { 'Content-Type': METRICS_CONTENT_TYPE }),
      (error: unknown) => reply(response, 500, `status failed: ${error instanceof Error ? error.message : String(error)}\n`),
    );
  });
  server.on('connection', (socket) => {
    connections.add(socket);
    socket.on('close', () => connections.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of connections) socket.destroy();
      }),
  };
};

function reply(response: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  response.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', ...headers });
  response.end(body);
}

/** "198.18.0.1:9464" → 198.18.0.1, 9464; "[fd00::1]:9464" → fd00::1, 9464 (config already checked the form). */
export function splitListen(listen: string): { host: string; port: number } {
  const colon = listen.lastIndexOf(':');
  const host = listen.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(listen.slice(colon + 1)) };
}
