// The lab agent used by bench:enforce and its scale part: a running dnsplane in a lab, with
// its config, resources and pins in temp places of its own, and the status socket it reports on.
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fetchStatus } from '@dnsplane/agent';
import type { StatusDetail } from '@dnsplane/core';
import { createLab, type Lab, type LabProcess } from '../test/lab/lab.js';
import { waitFor } from '../test/lab/wait.js';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const DNSPLANE = join(REPO_ROOT, 'packages', 'agent', 'bin', 'dnsplane.js');


export interface StatusView {
  readonly pid: number;
  readonly startedAt: string;
  /** Absent in a brief status. */
  readonly learned?: number;
  readonly lastApply?: { readonly at: string };
  /** Milliseconds per start phase, and when the learned-state restore ended. */
  readonly startup?: { readonly phasesMs: Readonly<Record<string, number>>; readonly restoredAt?: string };
  /** The daemon's own reading, bytes. */
  readonly memory?: { readonly rss: number; readonly heapUsed: number; readonly heapTotal: number; readonly external: number };
}

/**
 * `brief`: the daemon's own state only — no nft listing, so polling does not load the agent.
 * Asked over the status socket from this process (what `dnsplane status --json` prints), not
 * through a `dnsplane status` process per probe: each such process costs ~0.5 s of CPU (Node's
 * start and the CLI's modules), and probes every 5–100 ms kept one of the two CPUs busy while
 * the agent it timed was starting.
 */
export async function status(socket: string, options: { brief?: boolean; detail?: StatusDetail } = {}): Promise<StatusView | undefined> {
  try {
    // The same fields as the JSON the CLI prints (absent ones read as undefined either way).
    return (await fetchStatus(socket, 15_000, { brief: options.brief === true, ...(options.detail === undefined ? {} : { detail: options.detail }) })) as StatusView;
  } catch {
    return undefined;
  }
}

/** A running agent in a lab with a config written to a temp folder. */
export class BenchAgent {
  readonly directory = mkdtempSync(join(tmpdir(), 'dnsplane-bench-'));
  readonly socket = join(this.directory, 'agent.sock');
  readonly pinRoot = `/sys/fs/bpf/dnsplane-b${randomBytes(4).toString('hex')}`;
  readonly configPath = join(this.directory, 'dnsplane.yaml');
  process: LabProcess | undefined;

  constructor(
    readonly lab: Lab,
    readonly dataplane: string,
  ) {
    mkdirSync(join(this.directory, 'policies'));
  }

  writeConfig(extra: Record<string, unknown> = {}): void {
    const config = {
      dataplane: this.dataplane,
      dns: { trustedServers: [...this.lab.trustedServers], minTTL: 30, extraTTL: 10 },
      resources: ['./policies'],
      statePath: join(this.directory, 'state.json'),
      log: { level: 'warn' },
      bpf: { pinRoot: this.pinRoot },
      ...extra,
    };
    writeFileSync(this.configPath, JSON.stringify(config));
  }

  writeResource(file: string, documents: readonly unknown[]): void {
    writeFileSync(join(this.directory, 'policies', file), documents.map((d) => JSON.stringify(d)).join('\n---\n'));
  }

  async start(timeoutMs: number): Promise<StatusView> {
    this.process = this.lab.startAgentProcess(['node', DNSPLANE, 'run', '-c', this.configPath, '--socket', this.socket]);
    const agent = this.process;
    return waitFor(
      `the ${this.dataplane} agent to apply`,
      async () => {
        if (agent.exited) throw new Error(`agent exited: ${agent.stderr().trim().split('\n').slice(-3).join(' | ')}`);
        const view = await status(this.socket, { brief: true });
        return view?.lastApply === undefined ? undefined : view;
      },
      { timeoutMs, stopOn: (error) => error instanceof Error && error.message.startsWith('agent exited') },
    );
  }

  /** Stops the agent process only (SIGTERM; pins, table and state file stay); resolves to the milliseconds it took to exit. */
  async stopProcess(): Promise<number> {
    const started = performance.now();
    await this.process?.stop(30_000);
    return performance.now() - started;
  }

  async stop(): Promise<void> {
    await this.process?.stop(30_000);
    await this.lab.exec('node', ['node', DNSPLANE, 'uninstall', '-c', this.configPath, '--socket', this.socket], { timeoutMs: 30_000 }).catch(() => undefined);
    rmSync(this.pinRoot, { recursive: true, force: true });
    rmSync(this.directory, { recursive: true, force: true });
  }
}

export function endpointDoc(lab: Lab): Record<string, unknown> {
  const client = lab.endpoints.client1!;
  return { kind: 'Endpoint', metadata: { name: 'client1', labels: { app: 'bench' } }, spec: { interface: client.hostInterface, addresses: [client.ipv4, client.ipv6] } };
}

export async function withLab<T>(trials: number, body: (lab: Lab) => Promise<T>): Promise<T> {
  const lab = await createLab({ clients: 1, freshNames: Math.min(16_383, trials * 2 + 10) });
  try {
    return await body(lab);
  } finally {
    await lab.destroy();
  }
}


export const fmt = (value: number, digits = 2): string => (Number.isFinite(value) ? value.toFixed(digits) : '—');
