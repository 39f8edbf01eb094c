// The conformance harness: one lab per dataplane, the REAL agent (`dnsplane run`, the compiled
// CLI) started in the lab's node namespace with a config written into a temporary folder, and
// the probes the scenarios use (TCP connects from workloads, policy edits, status).
//
// Nothing here sleeps to synchronise: every wait is a condition with a deadline (waitFor).
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { createLab, type Lab, type LabProcess } from '../lab/lab.js';
import { waitFor } from '../lab/wait.js';

const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = join(HERE, '..', '..');
export const DNSPLANE_BIN = join(REPO_ROOT, 'packages', 'agent', 'bin', 'dnsplane.js');
const COMPILED_CLI = join(REPO_ROOT, 'packages', 'agent', 'dist', 'cli.js');

/** One way of running the suite: a dataplane kind plus the settings that make it distinct. */
export interface DataplaneVariant {
  /** Name in test titles: nftables, iptables-legacy, iptables-nft, ebpf. */
  readonly name: string;
  readonly kind: 'nftables' | 'iptables' | 'ebpf';
  readonly iptablesBackend?: 'legacy' | 'nft';
  /** The kernel reports a removal of this dataplane's objects and the agent listens (its removal watch). */
  readonly removalsHeard: boolean;
}

export const VARIANTS: Readonly<Record<string, DataplaneVariant>> = {
  nftables: { name: 'nftables', kind: 'nftables', removalsHeard: true },
  'iptables-legacy': { name: 'iptables-legacy', kind: 'iptables', iptablesBackend: 'legacy', removalsHeard: false },
  'iptables-nft': { name: 'iptables-nft', kind: 'iptables', iptablesBackend: 'nft', removalsHeard: true },
  ebpf: { name: 'ebpf', kind: 'ebpf', removalsHeard: true },
};

/** A policy document (`kind: Policy`) as the resource files hold it. */
export type PolicyDocument = Record<string, unknown>;

export interface TcpTarget {
  readonly address: string;
  readonly port: number;
}

export interface TcpProbeResult extends TcpTarget {
  readonly connected: boolean;
  /** errno name or 'timeout' when not connected. */
  readonly error: string | null;
  readonly ms: number;
}

/** Settings every conformance run uses: short TTL floors so the expiry scenario takes seconds. */
export const SUITE_DNS = { minTTL: 1, extraTTL: 2, maxAddressesPerName: 256 } as const;
/** Where the agent serves Prometheus metrics: the lab's node namespace, its loopback. */
export const SUITE_METRICS_LISTEN = '127.0.0.1:9464';
/**
 * The agent's periodic drift check: every second where the kernel reports no removal (iptables
 * legacy), so the repair scenario takes seconds; an hour where it does, so a repair within the
 * scenario proves the agent heard the removal (the agent's removal watch).
 */
export function suiteDriftCheckSeconds(variant: DataplaneVariant): number {
  return variant.removalsHeard ? 3600 : 1;
}

export interface AgentStatusView {
  readonly dataplane: string;
  readonly counters: Record<string, number>;
  readonly learned: number;
  readonly lastApply?: { readonly at: string };
  readonly rejected: readonly string[];
}

function run(argv: readonly string[], timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(argv[0]!, argv.slice(1), { cwd: REPO_ROOT, timeout: timeoutMs, encoding: 'utf8' }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

// A TCP connect prober run inside a workload namespace: every target in parallel, one
// connect each with a deadline; prints one JSON line. Python because it is on every node
// and starts in ~30 ms.
const TCP_PROBE = `
import json, socket, sys, threading, time, errno
req = json.load(sys.stdin)
out = [None] * len(req["targets"])
def probe(i, t):
    fam = socket.AF_INET6 if ":" in t["address"] else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(req["timeoutMs"] / 1000.0)
    start = time.monotonic()
    try:
        s.connect((t["address"], t["port"]))
        out[i] = {"address": t["address"], "port": t["port"], "connected": True, "error": None, "ms": (time.monotonic() - start) * 1000}
    except socket.timeout:
        out[i] = {"address": t["address"], "port": t["port"], "connected": False, "error": "timeout", "ms": (time.monotonic() - start) * 1000}
    except OSError as e:
        out[i] = {"address": t["address"], "port": t["port"], "connected": False, "error": errno.errorcode.get(e.errno, str(e)), "ms": (time.monotonic() - start) * 1000}
    finally:
        s.close()
threads = [threading.Thread(target=probe, args=(i, t)) for i, t in enumerate(req["targets"])]
for th in threads: th.start()
for th in threads: th.join()
print(json.dumps(out))
`;

/**
 * One dataplane under test: its lab, config folder and agent. `start()` builds all of it;
 * `stop()` removes all of it, whatever state start() reached.
 */
export class ConformanceHarness {
  lab: Lab | undefined;
  agent: LabProcess | undefined;
  readonly directory: string;
  readonly policyDirectory: string;
  readonly configPath: string;
  readonly socketPath: string;
  readonly pinRoot: string;
  /** Why this dataplane cannot run here (driver not registered / reports NotSupported). */
  unsupported: string | undefined;
  /** The config as last written (start(), editDns()). */
  #config: Record<string, unknown> & { readonly dns: Record<string, unknown> } = { dns: {} };

  constructor(readonly variant: DataplaneVariant) {
    this.directory = mkdtempSync(join(tmpdir(), `dnsplane-conformance-${variant.name}-`));
    this.policyDirectory = join(this.directory, 'policies');
    this.configPath = join(this.directory, 'dnsplane.yaml');
    this.socketPath = join(this.directory, 'agent.sock');
    this.pinRoot = `/sys/fs/bpf/dnsplane-c${randomBytes(4).toString('hex')}`;
  }

  get live(): Lab {
    if (this.lab === undefined) throw new Error('the lab did not come up (see the beforeAll error)');
    return this.lab;
  }

  /**
   * Builds the lab, writes the config (trusted servers = the lab's DNS servers, Endpoint
   * resources for the lab clients, `policies`), starts the agent and waits until its status
   * socket reports the dataplane with an applied state.
   */
  async start(options: {
    readonly clients: number;
    readonly freshNames: number;
    readonly endpoints: (lab: Lab) => readonly Record<string, unknown>[];
    readonly policies: (lab: Lab) => Readonly<Record<string, PolicyDocument>>;
    readonly registered: readonly string[];
  }): Promise<void> {
    if (!options.registered.includes(this.variant.kind)) {
      this.unsupported = `dataplane ${this.variant.kind} is not registered in packages/agent/src/drivers.ts`;
      return;
    }
    if (!existsSync(COMPILED_CLI)) {
      throw new Error(`${COMPILED_CLI} is missing: run \`npm run bootstrap\` (or \`npx tsc -b\`) before the conformance suite`);
    }
    this.lab = await createLab({ clients: options.clients, freshNames: options.freshNames });
    const lab = this.lab;
    mkdirSync(this.policyDirectory, { recursive: true });
    const config = {
      dataplane: this.variant.kind,
      // The node resolver (scenario 18) is trusted from the start; its address comes to the node later.
      dns: { trustedServers: [...lab.trustedServers, `${lab.nodeResolver.ipv4}:${lab.nodeResolver.port}`], ...SUITE_DNS },
      resources: ['./policies'],
      statePath: join(this.directory, 'state.json'),
      driftCheckSeconds: suiteDriftCheckSeconds(this.variant),
      log: { level: 'info' },
      // Prometheus metrics on the node namespace's loopback (scenario 21).
      metrics: { listen: SUITE_METRICS_LISTEN },
      iptables: { backend: this.variant.iptablesBackend ?? 'auto' },
      bpf: { pinRoot: this.pinRoot },
    };
    this.#writeConfig(config);
    writeFileSync(
      join(this.policyDirectory, 'endpoints.yaml'),
      options
        .endpoints(lab)
        .map((document) => JSON.stringify(document))
        .join('\n---\n'),
    );
    for (const [file, policy] of Object.entries(options.policies(lab))) this.writePolicy(file, policy);

    this.agent = lab.startAgentProcess(['node', DNSPLANE_BIN, 'run', '-c', this.configPath, '--socket', this.socketPath], {
      name: 'dnsplane',
    });
    const agent = this.agent;
    try {
      await waitFor(
        `the ${this.variant.name} agent to report an applied state on ${this.socketPath}`,
        async () => {
          if (agent.exited) throw new AgentExitedError(agent.stderr());
          const status = await this.status();
          return status !== undefined && status.dataplane === this.variant.kind && status.lastApply !== undefined ? status : undefined;
        },
        { timeoutMs: 45_000, stopOn: (error) => error instanceof AgentExitedError },
      );
    } catch (error) {
      if (error instanceof AgentExitedError && /not (implemented|supported)/i.test(error.stderr)) {
        // The driver says it cannot run here: report the dataplane as skipped, with its reason.
        this.unsupported = lastLines(error.stderr, 3);
        return;
      }
      throw error;
    }
  }

  /** JSON is YAML: the loader reads these files as YAML documents. Write-then-rename. */
  #writeConfig(config: Record<string, unknown> & { readonly dns: Record<string, unknown> }): void {
    this.#config = config;
    const temporary = join(this.directory, `.${basename(this.configPath)}.tmp`);
    writeFileSync(temporary, `${JSON.stringify(config, null, 2)}\n`);
    renameSync(temporary, this.configPath);
  }

  /**
   * Changes the config's `dns` section (the daemon watches its config file) and waits until the
   * agent applied it. `undefined` values remove a field (back to its default).
   */
  async editDns(change: Readonly<Record<string, unknown>>): Promise<AgentStatusView> {
    const before = await this.lastApplyAt();
    const dns: Record<string, unknown> = { ...this.#config.dns };
    for (const [key, value] of Object.entries(change)) {
      if (value === undefined) delete dns[key];
      else dns[key] = value;
    }
    this.#writeConfig({ ...this.#config, dns });
    return this.appliedAfter(before, `the config's dns ${JSON.stringify(change)}`);
  }

  writePolicy(file: string, policy: PolicyDocument): void {
    // Write-then-rename, as editors do, so the agent never reads half a file.
    const path = join(this.policyDirectory, file);
    const temporary = join(this.policyDirectory, `.${file}.tmp`);
    writeFileSync(temporary, `${JSON.stringify(policy, null, 2)}\n`);
    renameSync(temporary, path);
  }

  /** `dnsplane status --json` against this agent's socket; undefined while it does not answer. */
  async status(): Promise<AgentStatusView | undefined> {
    const result = await run(['node', DNSPLANE_BIN, 'status', '--socket', this.socketPath, '--json'], 10_000);
    if (result.code !== 0) return undefined;
    return JSON.parse(result.stdout) as AgentStatusView;
  }

  /** Edits a policy file and waits until the agent applied a newer state (or rejected it: throws). */
  async editPolicy(file: string, policy: PolicyDocument): Promise<AgentStatusView> {
    const before = (await this.status())?.lastApply?.at;
    this.writePolicy(file, policy);
    return this.appliedAfter(before, `the edited ${file}`);
  }

  /** When the agent's last apply happened, as its status reports it (undefined: none yet / no answer). */
  async lastApplyAt(): Promise<string | undefined> {
    return (await this.status())?.lastApply?.at;
  }

  /** Waits until the agent applied again after `before` (a lastApplyAt() reading), or rejected a change (throws). */
  async appliedAfter(before: string | undefined, what: string): Promise<AgentStatusView> {
    return waitFor(
      `the agent to apply ${what}`,
      async () => {
        if (this.agent?.exited) throw new AgentExitedError(this.agent.stderr());
        const status = await this.status();
        if (status === undefined) return undefined;
        if (status.rejected.length > 0) throw new AgentExitedError(`change rejected: ${status.rejected.join('; ')}`);
        return status.lastApply !== undefined && status.lastApply.at !== before ? status : undefined;
      },
      { timeoutMs: 20_000, stopOn: (error) => error instanceof AgentExitedError },
    );
  }

  /** The agent's log lines (pino, on stderr) of one event, oldest first. */
  agentLog(event: string): string[] {
    return (this.agent?.stderr() ?? '').split('\n').filter((line) => line.includes(`"event":"${event}"`));
  }

  /** TCP connects from a workload namespace to every target in parallel. */
  async probeTcp(ns: string, targets: readonly TcpTarget[], timeoutMs = 1000): Promise<TcpProbeResult[]> {
    const result = await this.live.exec(ns, ['python3', '-c', TCP_PROBE], {
      input: JSON.stringify({ targets, timeoutMs }),
      timeoutMs: timeoutMs + 10_000,
    });
    if (result.code !== 0) throw new Error(`tcp probe in ${ns} failed (${result.code}): ${result.stderr}`);
    return JSON.parse(result.stdout) as TcpProbeResult[];
  }

  async connects(ns: string, address: string, port: number, timeoutMs = 1000): Promise<boolean> {
    const [result] = await this.probeTcp(ns, [{ address, port }], timeoutMs);
    return result!.connected;
  }

  /** Stops the agent, uninstalls what it can, removes the pin root and the lab. Never throws early. */
  async stop(): Promise<string[]> {
    const problems: string[] = [];
    const attempt = async (what: string, step: () => Promise<unknown>): Promise<void> => {
      try {
        await step();
      } catch (error) {
        problems.push(`${what}: ${error instanceof Error ? error.message : String(error)}`);
      }
    };
    await attempt('stop agent', async () => this.agent?.stop(5000));
    if (this.lab !== undefined && !this.lab.destroyed) {
      const lab = this.lab;
      // The CLI's removal path, in the node namespace so it sees the same tables, chains and
      // tc filters; it names this run's socket so another daemon on the machine is no obstacle.
      await attempt('dnsplane uninstall', async () => {
        const result = await lab.exec('node', ['node', DNSPLANE_BIN, 'uninstall', '-c', this.configPath, '--socket', this.socketPath], {
          timeoutMs: 30_000,
        });
        if (result.code !== 0) throw new Error(`exit ${result.code}: ${lastLines(`${result.stdout}\n${result.stderr}`, 6)}`);
      });
    }
    // Pins are global (bpffs): removing the folder unpins every program and map of this run.
    await attempt('remove pin root', async () => rmSync(this.pinRoot, { recursive: true, force: true }));
    await attempt('destroy lab', async () => {
      const report = await this.lab?.destroy();
      if (report !== undefined && report.problems.length > 0) throw new Error(report.problems.join('; '));
    });
    await attempt('remove config folder', async () => rmSync(this.directory, { recursive: true, force: true }));
    return problems;
  }
}

export class AgentExitedError extends Error {
  override readonly name = 'AgentExitedError';
  constructor(readonly stderr: string) {
    super(`the agent exited: ${lastLines(stderr, 8)}`);
  }
}

function lastLines(text: string, count: number): string {
  return text.trim().split('\n').slice(-count).join('\n');
}

// -- DNS messages for the forged-response scenario ---------------------------------------------

function encodeName(name: string): Buffer {
  const parts = name.split('.').filter((label) => label !== '');
  return Buffer.concat([...parts.map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label, 'ascii')])), Buffer.from([0])]);
}

/** A well-formed response (QR=1, RD, RA, NOERROR) with one question and one A/AAAA answer. */
export function dnsResponse(options: { id: number; name: string; type: 'A' | 'AAAA'; address: string; ttl: number }): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(options.id, 0);
  header.writeUInt16BE(0x8180, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(1, 6);
  const type = options.type === 'A' ? 1 : 28;
  const question = Buffer.concat([encodeName(options.name), Buffer.from([0, type, 0, 1])]);
  const rdata =
    options.type === 'A'
      ? Buffer.from(options.address.split('.').map(Number))
      : ipv6Bytes(options.address);
  const answer = Buffer.alloc(12);
  answer.writeUInt16BE(0xc00c, 0);
  answer.writeUInt16BE(type, 2);
  answer.writeUInt16BE(1, 4);
  answer.writeUInt32BE(options.ttl, 6);
  answer.writeUInt16BE(rdata.length, 10);
  return Buffer.concat([header, question, answer, rdata]);
}

function ipv6Bytes(address: string): Buffer {
  const [head, tail] = address.split('::') as [string, string | undefined];
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = [...headGroups, ...new Array<string>(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups];
  const bytes = Buffer.alloc(16);
  groups.forEach((group, i) => bytes.writeUInt16BE(Number.parseInt(group, 16), i * 2));
  return bytes;
}
