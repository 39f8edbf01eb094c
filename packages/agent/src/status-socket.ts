// The daemon's status API: a unix socket; a client connects and reads one JSON document
// (the daemon's status), then the daemon closes the connection.
import { chmod, mkdir, rm, stat } from 'node:fs/promises';
import { createConnection, createServer, type Server } from 'node:net';
import { dirname } from 'node:path';
import { z } from 'zod';
import { DnsplaneError } from '@dnsplane/core';

export const DEFAULT_SOCKET_PATH = '/run/dnsplane/agent.sock';

export const agentStatusSchema = z.object({
  pid: z.number(),
  startedAt: z.string(),
  configFile: z.string(),
  dataplane: z.string(),
  objects: z.array(z.string()),
  counters: z.record(z.string(), z.number()),
  learned: z.number(),
  lastApply: z
    .object({ at: z.string(), policies: z.number(), endpoints: z.number(), domainSets: z.number() })
    .optional(),
  /** Problems of the last rejected change (empty when the last change applied). */
  rejected: z.array(z.string()),
});
export type AgentStatus = z.infer<typeof agentStatusSchema>;

/** The daemon is not running, or the socket is not a dnsplane status socket. */
export class AgentUnreachableError extends DnsplaneError {
  override readonly name = 'AgentUnreachableError';
}
export const isAgentUnreachable = (e: unknown): e is AgentUnreachableError => e instanceof AgentUnreachableError;

/** Another daemon already answers on the status socket. */
export class AgentAlreadyRunningError extends DnsplaneError {
  override readonly name = 'AgentAlreadyRunningError';
}
export const isAgentAlreadyRunning = (e: unknown): e is AgentAlreadyRunningError => e instanceof AgentAlreadyRunningError;

/** True when something accepts connections on the unix socket at `path`. */
function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export class StatusServer {
  #server: Server | undefined;

  constructor(
    private readonly socketPath: string,
    private readonly status: () => Promise<AgentStatus>,
  ) {}

  async listen(): Promise<void> {
    await mkdir(dirname(this.socketPath), { recursive: true });
    // A live socket means another daemon runs: refuse. A dead one was left by a crash: replace it.
    const existing = await stat(this.socketPath).catch(() => undefined);
    if (existing?.isSocket()) {
      if (await socketAnswers(this.socketPath)) {
        throw new AgentAlreadyRunningError(`another dnsplane daemon is running (it answers on ${this.socketPath})`);
      }
      await rm(this.socketPath, { force: true });
    }
    const server = createServer((connection) => {
      connection.on('error', () => connection.destroy());
      this.status().then(
        (status) => connection.end(`${JSON.stringify(status)}\n`),
        (error: unknown) => connection.end(`${JSON.stringify({ error: String(error) })}\n`),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.#server = server;
    // Owner and group only: the status shows the policy layout and learned counts.
    await chmod(this.socketPath, 0o660);
  }

  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (!server) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(this.socketPath, { force: true });
  }
}

/** Asks the daemon at `socketPath` for its status. */
export async function fetchStatus(socketPath: string, timeoutMs = 5_000): Promise<AgentStatus> {
  const text = await new Promise<string>((resolve, reject) => {
    const socket = createConnection(socketPath);
    let data = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new AgentUnreachableError(`no answer from the dnsplane daemon on ${socketPath} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (data += chunk));
    socket.on('end', () => {
      clearTimeout(timer);
      resolve(data);
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        new AgentUnreachableError(
          `cannot reach the dnsplane daemon on ${socketPath} (${error.code ?? error.message}); is \`dnsplane run\` running?`,
        ),
      );
    });
  });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new AgentUnreachableError(`${socketPath} did not answer with a dnsplane status`);
  }
  const parsed = agentStatusSchema.safeParse(json);
  if (!parsed.success) throw new AgentUnreachableError(`${socketPath} did not answer with a dnsplane status`);
  return parsed.data;
}
