// The daemon's status API: a unix socket. A client connects, writes one JSON request line
// (`{"request":"status"}`, `{"request":"status","learned":true}` or
// `{"request":"migrate","to":"nftables"}`), reads one JSON document, and the daemon closes the
// connection. Errors come back as `{"error": "..."}`.
import { chmod, mkdir, rm, stat } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { z } from 'zod';
import { DATAPLANE_KINDS, DnsplaneError, STATUS_DETAILS, type DataplaneKind, type StatusDetail } from '@dnsplane/core';

export const DEFAULT_SOCKET_PATH = '/run/dnsplane/agent.sock';

const kindSchema = z.enum(DATAPLANE_KINDS as unknown as [DataplaneKind, ...DataplaneKind[]]);

export const learnedEntryReportSchema = z.object({
  setId: z.number(),
  family: z.union([z.literal(4), z.literal(6)]),
  address: z.string(),
  expiresAt: z.string(),
  name: z.string().optional(),
});
export type LearnedEntryReport = z.infer<typeof learnedEntryReportSchema>;

export const stateFileReportSchema = z.object({
  path: z.string(),
  /** Entries read at start. */
  loaded: z.number().optional(),
  /** Entries written by the last save, and when. */
  saved: z.number().optional(),
  savedAt: z.string().optional(),
  /** Why the file found at start was not used; it was renamed to setAside. */
  problem: z.string().optional(),
  setAside: z.string().optional(),
});
export type StateFileReport = z.infer<typeof stateFileReportSchema>;

export const migrationReportSchema = z.object({
  from: z.string(),
  to: z.string(),
  at: z.string(),
  imported: z.number(),
  removeFailed: z.string().optional(),
});

export const agentRequestSchema = z.discriminatedUnion('request', [
  z.object({
    request: z.literal('status'),
    learned: z.boolean().optional(),
    brief: z.boolean().optional(),
    /** 'counters': what a metrics scrape reads (Dataplane StatusOptions). */
    detail: z.enum(STATUS_DETAILS).optional(),
  }),
  z.object({ request: z.literal('migrate'), to: kindSchema }),
]);
export type AgentRequest = z.infer<typeof agentRequestSchema>;

const watchStateSchema = z.enum(['running', 'retrying', 'off']);

export const agentStatusSchema = z.object({
  pid: z.number(),
  startedAt: z.string(),
  configFile: z.string(),
  dataplane: z.string(),
  objects: z.array(z.string()),
  counters: z.record(z.string(), z.number()),
  /** The config's `dataplane:` when it differs from the one in force (after `migrate --to`). */
  configuredDataplane: z.string().optional(),
  /** Learned entries in force (absent in a brief status, which does not read the kernel). */
  learned: z.number().optional(),
  /** A brief status: the daemon's own state only; objects, counters and learned were not read. */
  brief: z.boolean().optional(),
  /** With `status --learned`: every learned entry in force, expiry as ISO time. */
  learnedEntries: z.array(learnedEntryReportSchema).optional(),
  stateFile: stateFileReportSchema.optional(),
  migrations: z.array(migrationReportSchema).default([]),
  lastApply: z
    .object({ at: z.string(), policies: z.number(), endpoints: z.number(), domainSets: z.number() })
    .optional(),
  /** Problems of the last rejected change (empty when the last change applied). */
  rejected: z.array(z.string()),
  /**
   * Where this daemon's start went: milliseconds per phase (inputs = load + compile, install,
   * then the learned-state restore: state_file, export, import), and when the restore ended.
   */
  startup: z.object({ phasesMs: z.record(z.string(), z.number()), restoredAt: z.string().optional() }).optional(),
  /** The daemon process's memory in bytes: resident, V8's heap (live objects, and reserved), outside the heap. */
  memory: z.object({ rss: z.number(), heapUsed: z.number(), heapTotal: z.number(), external: z.number() }).optional(),
  /**
   * Kernel objects someone else removed and the daemon installed again (the drift check): how
   * many times, and the last time with what was missing (absent: never).
   */
  repairs: z.object({ count: z.number(), lastAt: z.string(), lastMissing: z.array(z.string()), lastFailed: z.boolean() }).optional(),
  /**
   * The kernel event watches (child processes): the interface watch and the removal watch —
   * running, retrying (it failed; started again after a delay) or off (none here). Absent
   * from an older daemon.
   */
  watches: z.object({ interfaces: watchStateSchema, removals: watchStateSchema }).optional(),
  /** The Prometheus metrics endpoint (`metrics.listen`), when one is configured: starting, serving, or it could not listen (failed). */
  metrics: z.object({ listen: z.string(), state: z.enum(['starting', 'serving', 'failed']) }).optional(),
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

/** How long a client may take to send its request line before the daemon hangs up. */
export const REQUEST_TIMEOUT_MS = 10_000;

export class StatusServer {
  #server: Server | undefined;
  /** Connections that have not sent a whole request yet: close() hangs up on them. */
  readonly #waiting = new Set<Socket>();

  constructor(
    private readonly socketPath: string,
    private readonly handle: (request: AgentRequest) => Promise<unknown>,
    private readonly requestTimeoutMs = REQUEST_TIMEOUT_MS,
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
      connection.setEncoding('utf8');
      // Until its request is in, a connection is one close() hangs up on (server.close() alone
      // waits for every connection to end: an idle client held a stopping daemon forever).
      this.#waiting.add(connection);
      connection.on('close', () => this.#waiting.delete(connection));
      connection.setTimeout(this.requestTimeoutMs, () => {
        if (this.#waiting.has(connection)) connection.end(`${JSON.stringify({ error: `no request within ${this.requestTimeoutMs} ms` })}\n`);
      });
      let buffered = '';
      const onData = (chunk: string): void => {
        buffered += chunk;
        const newline = buffered.indexOf('\n');
        if (newline < 0) {
          if (buffered.length > 4096) connection.end(`${JSON.stringify({ error: 'request too long' })}\n`);
          return;
        }
        connection.off('data', onData);
        this.#waiting.delete(connection);
        connection.setTimeout(0); // answering may take long (a migration): the client waits
        let json: unknown;
        try {
          json = JSON.parse(buffered.slice(0, newline));
        } catch {
          connection.end(`${JSON.stringify({ error: 'the request is not JSON' })}\n`);
          return;
        }
        const request = agentRequestSchema.safeParse(json);
        if (!request.success) {
          connection.end(`${JSON.stringify({ error: `bad request: ${request.error.issues[0]?.message ?? 'invalid'}` })}\n`);
          return;
        }
        this.handle(request.data).then(
          (answer) => connection.end(`${JSON.stringify(answer)}\n`),
          (error: unknown) => connection.end(`${JSON.stringify({ error: error instanceof Error ? error.message : String(error) })}\n`),
        );
      };
      connection.on('data', onData);
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
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const connection of this.#waiting) connection.destroy();
    await closed;
    await rm(this.socketPath, { force: true });
  }
}

/** Sends one request to the daemon at `socketPath`; resolves to its JSON answer. */
export async function requestAgent(socketPath: string, request: AgentRequest, timeoutMs = 5_000): Promise<unknown> {
  const text = await new Promise<string>((resolve, reject) => {
    const socket = createConnection(socketPath);
    let data = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new AgentUnreachableError(`no answer from the dnsplane daemon on ${socketPath} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.once('connect', () => socket.write(`${JSON.stringify(request)}\n`));
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
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new AgentUnreachableError(`${socketPath} did not answer with a dnsplane document`);
  }
}

/** The daemon answered a request with an error (e.g. a migration that failed). */
export class AgentRequestError extends DnsplaneError {
  override readonly name = 'AgentRequestError';
}
export const isAgentRequestError = (e: unknown): e is AgentRequestError => e instanceof AgentRequestError;

const errorAnswerSchema = z.object({ error: z.string() });

function throwIfError(answer: unknown): void {
  const error = errorAnswerSchema.safeParse(answer);
  if (error.success) throw new AgentRequestError(`the daemon answered: ${error.data.error}`);
}

/** Asks the daemon at `socketPath` for its status (with every learned entry when `learned`). */
export async function fetchStatus(
  socketPath: string,
  timeoutMs = 5_000,
  options: { learned?: boolean; brief?: boolean; detail?: StatusDetail } = {},
): Promise<AgentStatus> {
  const answer = await requestAgent(
    socketPath,
    {
      request: 'status',
      ...(options.learned ? { learned: true } : {}),
      ...(options.brief ? { brief: true } : {}),
      ...(options.detail === undefined ? {} : { detail: options.detail }),
    },
    timeoutMs,
  );
  throwIfError(answer);
  const parsed = agentStatusSchema.safeParse(answer);
  if (!parsed.success) throw new AgentUnreachableError(`${socketPath} did not answer with a dnsplane status`);
  return parsed.data;
}

export const migrateAnswerSchema = z.object({
  migrated: migrationReportSchema.nullable(),
  status: agentStatusSchema,
});
export type MigrateAnswer = z.infer<typeof migrateAnswerSchema>;

/** Asks the running daemon to migrate to `to` (make before break); resolves once done. */
export async function requestMigration(socketPath: string, to: DataplaneKind, timeoutMs = 120_000): Promise<MigrateAnswer> {
  const answer = await requestAgent(socketPath, { request: 'migrate', to }, timeoutMs);
  throwIfError(answer);
  const parsed = migrateAnswerSchema.safeParse(answer);
  if (!parsed.success) throw new AgentUnreachableError(`${socketPath} did not answer the migration with a dnsplane document`);
  return parsed.data;
}
