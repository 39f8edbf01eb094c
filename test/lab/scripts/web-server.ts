// The lab's web server, run inside the web namespace: HTTP on every given port, on all IPv4
// and IPv6 addresses. The namespace routes the zone's whole address ranges to its loopback
// ("local" routes), so one wildcard listener per family answers on every address the zone
// hands out. The body names the address and port the client reached.
import { createServer, type Server } from 'node:http';

const ports = process.argv.slice(2).map((value) => {
  const port = Number.parseInt(value, 10);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`bad port ${value}`);
  return port;
});
if (ports.length === 0) throw new Error('usage: web-server.ts PORT…');

function listen(host: string, port: number): Promise<Server> {
  const server = createServer((request, response) => {
    const body = `lab-web ${request.socket.localAddress ?? '?'} ${request.socket.localPort ?? 0}\n`;
    response.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), connection: 'close' });
    response.end(body);
  });
  // Connections that only test reachability (connect, then close) are normal here.
  server.on('clientError', (_error, socket) => socket.destroy());
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, ipv6Only: host === '::', backlog: 4096 }, () => resolve(server));
  });
}

const servers = await Promise.all(ports.flatMap((port) => [listen('0.0.0.0', port), listen('::', port)]));
process.stdout.write(`${JSON.stringify({ event: 'listening', ports })}\n`);
const close = (): void => {
  for (const server of servers) server.close();
  process.exit(0);
};
process.on('SIGTERM', close);
process.on('SIGINT', close);
