// Benchmark of enforcement as a workload sees it, in the network-namespace lab (test/lab).
// Needs root and the bootstrap (the agent runs from its compiled CLI).
//
//   npm run bench:enforce                  print the table
//   npm run bench:enforce -- --json FILE   also write the figures as JSON
//   npm run bench:enforce -- --trials N    trials per column (default 1000)
//   npm run bench:enforce -- --skip-scale  leave out (c)
//   npm run bench:enforce -- --skip-connect  leave out (a) and (b)
//
// (a) resolve → first successful connect: per trial the lab's Node client sends its own query,
//     and connects to the answered address (a fresh name and address every trial, so each
//     connect is the first packet the dataplane sees for that address); latency = DNS answer
//     time + connect time; lost first SYNs counted. Columns, in one run: no policy; dnsplane on
//     every registered dataplane (iptables with the host's backend); dnsmasq --nftset (Debian's
//     dnsmasq as a forwarder on the node that fills an nft set before it answers) and, as its
//     baseline, the same forwarder without --nftset.
// (b) DNS response latency added: p50 of the answer time minus the baseline's (no policy for
//     dnsplane, the plain forwarder for --nftset).
// (c) scale on nftables: 1,000 policies holding 10,000 domain patterns, 100,000 learned
//     addresses restored from the state file: time from start to applied, re-apply time after
//     an edit, agent RSS.
// Targets: zero lost first SYNs, added DNS latency < 5 µs, full apply < 2 s.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compile, loadInputs, LearnedStore, systemClock, type LearnedEntry } from '@dnsplane/core';
import { DRIVERS } from '../packages/agent/src/drivers.js';
import { createLab, type Lab, type LabProcess } from '../test/lab/lab.js';
import { waitFor } from '../test/lab/wait.js';

const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const DNSPLANE = join(REPO_ROOT, 'packages', 'agent', 'bin', 'dnsplane.js');
const TARGET_ADDED_DNS_US = 5;
const TARGET_APPLY_MS = 2000;

interface Options {
  readonly json: string | undefined;
  readonly trials: number;
  readonly skipScale: boolean;
  readonly skipConnect: boolean;
}

function parseOptions(argv: readonly string[]): Options {
  let json: string | undefined;
  let trials = 1000;
  let skipScale = false;
  let skipConnect = false;
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!;
    if (arg === '--json') json = argv[(i += 1)];
    else if (arg === '--trials') trials = Number(argv[(i += 1)]);
    else if (arg === '--skip-scale') skipScale = true;
    else if (arg === '--skip-connect') skipConnect = true;
    else throw new Error(`unknown option ${arg} (--json FILE, --trials N, --skip-scale, --skip-connect)`);
  }
  if (!Number.isInteger(trials) || trials < 1 || trials > 3000) throw new Error('--trials must be 1..3000');
  return { json, trials, skipScale, skipConnect };
}

interface ConnectColumn {
  readonly name: string;
  readonly trials: number;
  readonly connected: number;
  readonly lostFirstSyns: number;
  readonly synRetransmits: number;
  readonly resolveToConnectMs: { readonly p50: number; readonly p99: number };
  readonly dnsMs: { readonly p50: number; readonly p99: number };
  /** p50 DNS answer time minus the baseline's, µs. */
  addedDnsUs?: number;
  readonly baseline?: string;
  readonly error?: string;
}

interface ScaleFigures {
  readonly policies: number;
  readonly patterns: number;
  readonly learned: number;
  readonly startToAppliedMs: number;
  readonly reapplyMs: number;
  readonly rssMiB: number;
  readonly learnedInForce: number;
}

function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function cli(argv: readonly string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    execFile('node', [DNSPLANE, ...argv], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 15_000 }, (error, stdout) =>
      resolve({ code: error === null ? 0 : 1, stdout }),
    );
  });
}

interface StatusView {
  readonly pid: number;
  readonly startedAt: string;
  readonly learned: number;
  readonly lastApply?: { readonly at: string };
}

async function status(socket: string): Promise<StatusView | undefined> {
  const result = await cli(['status', '--socket', socket, '--json']);
  return result.code === 0 ? (JSON.parse(result.stdout) as StatusView) : undefined;
}

/** A running agent in a lab with a config written to a temp folder. */
class BenchAgent {
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
        const view = await status(this.socket);
        return view?.lastApply === undefined ? undefined : view;
      },
      { timeoutMs, stopOn: (error) => error instanceof Error && error.message.startsWith('agent exited') },
    );
  }

  async stop(): Promise<void> {
    await this.process?.stop(30_000);
    await this.lab.exec('node', ['node', DNSPLANE, 'uninstall', '-c', this.configPath, '--socket', this.socket], { timeoutMs: 30_000 }).catch(() => undefined);
    rmSync(this.pinRoot, { recursive: true, force: true });
    rmSync(this.directory, { recursive: true, force: true });
  }
}

function endpointDoc(lab: Lab): Record<string, unknown> {
  const client = lab.endpoints.client1!;
  return { kind: 'Endpoint', metadata: { name: 'client1', labels: { app: 'bench' } }, spec: { interface: client.hostInterface, addresses: [client.ipv4, client.ipv6] } };
}

function benchPolicy(lab: Lab): Record<string, unknown> {
  const nets = [lab.dnsServers.dnsmasq, lab.dnsServers.unbound].flatMap((s) => [`${s.ipv4}/32`, `${s.ipv6}/128`]);
  return {
    kind: 'Policy',
    metadata: { name: 'bench' },
    spec: {
      order: 100,
      selector: 'app == "bench"',
      types: ['Egress'],
      egress: [
        { action: 'Allow', protocol: 'UDP', destination: { nets, ports: [53] } },
        { action: 'Allow', protocol: 'TCP', destination: { nets, ports: [53] } },
        { action: 'Allow', protocol: 'TCP', destination: { domains: ['*.fresh.lab.test'], ports: [80] } },
      ],
    },
  };
}

async function measure(lab: Lab, name: string, trials: number, server?: { readonly address: string; readonly port?: number }): Promise<ConnectColumn> {
  const names = lab.allocateFresh(trials);
  const batch = await lab.connectAfterResolveBatch(
    'client1',
    names.map((n) => ({ name: n.name, port: 80 })),
    server === undefined ? {} : { server },
  );
  const ok = batch.trials.filter((t) => t.connected && t.dnsMs !== null && t.connectMs !== null);
  return {
    name,
    trials,
    connected: batch.trials.filter((t) => t.connected).length,
    lostFirstSyns: batch.trials.filter((t) => t.synRetransmitted).length,
    synRetransmits: batch.counters.synRetransmits,
    resolveToConnectMs: {
      p50: quantile(ok.map((t) => t.dnsMs! + t.connectMs!), 0.5),
      p99: quantile(ok.map((t) => t.dnsMs! + t.connectMs!), 0.99),
    },
    dnsMs: { p50: quantile(batch.trials.flatMap((t) => (t.dnsMs === null ? [] : [t.dnsMs])), 0.5), p99: quantile(batch.trials.flatMap((t) => (t.dnsMs === null ? [] : [t.dnsMs])), 0.99) },
  };
}

const failedColumn = (name: string, trials: number, error: unknown): ConnectColumn => ({
  name,
  trials,
  connected: 0,
  lostFirstSyns: 0,
  synRetransmits: 0,
  resolveToConnectMs: { p50: Number.NaN, p99: Number.NaN },
  dnsMs: { p50: Number.NaN, p99: Number.NaN },
  error: error instanceof Error ? error.message.split('\n')[0]! : String(error),
});

async function withLab<T>(trials: number, body: (lab: Lab) => Promise<T>): Promise<T> {
  const lab = await createLab({ clients: 1, freshNames: Math.min(16_383, trials * 2 + 10) });
  try {
    return await body(lab);
  } finally {
    await lab.destroy();
  }
}

async function dnsplaneColumn(dataplane: string, trials: number): Promise<ConnectColumn> {
  const name = `dnsplane/${dataplane}`;
  try {
    return await withLab(trials, async (lab) => {
      const agent = new BenchAgent(lab, dataplane);
      try {
        agent.writeConfig();
        agent.writeResource('bench.yaml', [endpointDoc(lab), benchPolicy(lab)]);
        await agent.start(45_000);
        return { ...(await measure(lab, name, trials)), baseline: 'no policy' };
      } finally {
        await agent.stop();
      }
    });
  } catch (error) {
    return failedColumn(name, trials, error);
  }
}

/** dnsmasq on the node as the clients' forwarder; with `nftset`, it fills an nft set the forward chain allows. */
async function dnsmasqColumns(trials: number): Promise<ConnectColumn[]> {
  return withLab(trials, async (lab) => {
    const client = lab.endpoints.client1!;
    const table = `dnsbench${randomBytes(3).toString('hex')}`;
    const ruleset = `table inet ${table} {
  set allowed4 { type ipv4_addr; flags timeout; }
  chain forward { type filter hook forward priority 0; policy accept;
    ct state established,related accept
    iifname "${client.hostInterface}" tcp dport 80 ip daddr @allowed4 accept
    iifname "${client.hostInterface}" drop
  }
}
`;
    const columns: ConnectColumn[] = [];
    const run = async (name: string, nftset: boolean, port: number): Promise<void> => {
      const argv = [
        'dnsmasq', '--keep-in-foreground', '--no-resolv', '--no-hosts', '--cache-size=0', '--user=root', '--pid-file',
        `--listen-address=${client.gateway.ipv4}`, '--bind-interfaces', `--port=${port}`,
        `--server=${lab.dnsServers.dnsmasq.ipv4}`,
        ...(nftset ? [`--nftset=/fresh.lab.test/4#inet#${table}#allowed4`] : []),
      ];
      const forwarder = lab.startAgentProcess(argv, { name: `dnsmasq-${nftset ? 'nftset' : 'plain'}` });
      try {
        await waitFor(
          `the ${name} forwarder to answer`,
          async () => {
            if (forwarder.exited) throw new Error(`dnsmasq exited: ${forwarder.stderr().trim()}`);
            const probe = await lab.exec('client1', ['dig', '+short', '+time=1', '+tries=1', '-p', String(port), `@${client.gateway.ipv4}`, lab.names.ready.name]);
            return probe.stdout.trim() === lab.names.ready.ipv4 ? true : undefined;
          },
          { timeoutMs: 15_000 },
        );
        columns.push(await measure(lab, name, trials, { address: client.gateway.ipv4, port }));
      } catch (error) {
        columns.push(failedColumn(name, trials, error));
      } finally {
        await forwarder.stop(3000);
      }
    };
    await run('dnsmasq forwarder (no policy)', false, 5353);
    const load = await lab.exec('node', ['nft', '-f', '-'], { input: ruleset });
    if (load.code !== 0) throw new Error(`nft -f failed: ${load.stderr}`);
    try {
      await run('dnsmasq --nftset', true, 5354);
    } finally {
      await lab.exec('node', ['nft', 'delete', 'table', 'inet', table]);
    }
    const [plain, nftset] = columns;
    if (plain !== undefined && nftset !== undefined) nftset.addedDnsUs = (nftset.dnsMs.p50 - plain.dnsMs.p50) * 1000;
    return columns.map((c) => (c === nftset ? { ...c, baseline: plain?.name ?? '' } : c));
  });
}

async function scaleFigures(): Promise<ScaleFigures> {
  const POLICIES = 1000;
  const PER_POLICY = 10;
  const LEARNED = 100_000;
  return withLab(1, async (lab) => {
    const agent = new BenchAgent(lab, 'nftables');
    try {
      agent.writeConfig();
      const policy = (i: number, suffix: string): Record<string, unknown> => ({
        kind: 'Policy',
        metadata: { name: `p${i}` },
        spec: {
          order: i,
          selector: 'app == "bench"',
          types: ['Egress'],
          egress: [
            {
              action: 'Allow',
              protocol: 'TCP',
              destination: { domains: Array.from({ length: PER_POLICY }, (_, j) => `s${j}.p${i}${suffix}.scale.test`), ports: [443] },
            },
          ],
        },
      });
      agent.writeResource('endpoints.yaml', [endpointDoc(lab)]);
      for (let i = 0; i < POLICIES; i += 1) agent.writeResource(`p${i}.yaml`, [policy(i, '')]);
      // 100,000 learned addresses spread over the 1,000 domain sets, restored at start.
      process.stderr.write('  compiling for the state file…\n');
      const state = compile(await loadInputs(agent.configPath));
      process.stderr.write(`  ${state.domainSets.length} domain sets; writing ${LEARNED} learned entries…\n`);
      const store = new LearnedStore(systemClock);
      const expiresAt = Date.now() + 3_600_000;
      const entries: LearnedEntry[] = [];
      for (let k = 0; k < LEARNED; k += 1) {
        const set = state.domainSets[k % state.domainSets.length]!;
        entries.push({ setId: set.id, family: 4, address: `198.${18 + ((k >> 16) & 1)}.${(k >> 8) & 255}.${k & 255}`, expiresAt });
      }
      store.recordAll(entries);
      writeFileSync(join(agent.directory, 'state.json'), store.serialize());
      process.stderr.write('  starting the agent…\n');
      const first = await agent.start(180_000);
      process.stderr.write(`  applied; waiting for the learned entries (${first.learned} so far)…\n`);
      const startToAppliedMs = Date.parse(first.lastApply!.at) - Date.parse(first.startedAt);
      const restored = await waitFor('learned entries to be restored', async () => {
        const view = await status(agent.socket);
        return view !== undefined && view.learned >= LEARNED * 0.99 ? view : undefined;
      }, { timeoutMs: 180_000 });
      process.stderr.write('  restored; editing one policy…\n');
      // Re-apply: one policy edited.
      const before = restored.lastApply!.at;
      const editedAt = Date.now();
      agent.writeResource('p0.yaml', [policy(0, 'x')]);
      const reapplied = await waitFor('the edit to apply', async () => {
        const view = await status(agent.socket);
        return view?.lastApply !== undefined && view.lastApply.at !== before ? view : undefined;
      }, { timeoutMs: 120_000 });
      process.stderr.write('  re-applied\n');
      const reapplyMs = Date.parse(reapplied.lastApply!.at) - editedAt;
      const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${reapplied.pid}/status`, 'utf8'))?.[1] ?? Number.NaN);
      return {
        policies: POLICIES,
        patterns: POLICIES * PER_POLICY,
        learned: LEARNED,
        startToAppliedMs,
        reapplyMs,
        rssMiB: rssKiB / 1024,
        learnedInForce: reapplied.learned,
      };
    } finally {
      await agent.stop();
    }
  });
}

const fmt = (value: number, digits = 2): string => (Number.isFinite(value) ? value.toFixed(digits) : '—');

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  if (process.getuid?.() !== 0) throw new Error('bench:enforce needs root (network namespaces, nft, tc, bpf)');
  const dataplanes = DRIVERS.map((d) => d.kind);
  const columns: ConnectColumn[] = [];
  if (!options.skipConnect) {
    process.stderr.write(`(a,b) ${options.trials} resolve→connect trials per column; dataplanes: ${dataplanes.join(', ')}\n`);
    columns.push(await withLab(options.trials, (lab) => measure(lab, 'no policy', options.trials)).catch((e: unknown) => failedColumn('no policy', options.trials, e)));
    for (const dataplane of dataplanes) {
      process.stderr.write(`  dnsplane/${dataplane}…\n`);
      columns.push(await dnsplaneColumn(dataplane, options.trials));
    }
    process.stderr.write('  dnsmasq --nftset…\n');
    columns.push(...(await dnsmasqColumns(options.trials).catch((e: unknown) => [failedColumn('dnsmasq --nftset', options.trials, e)])));
    const none = columns[0]!;
    for (const column of columns) {
      if (column.name.startsWith('dnsplane/')) column.addedDnsUs = (column.dnsMs.p50 - none.dnsMs.p50) * 1000;
    }
  }
  let scale: ScaleFigures | { error: string } | undefined;
  if (!options.skipScale) {
    process.stderr.write('(c) scale: 1,000 policies, 10,000 patterns, 100,000 learned (nftables)…\n');
    scale = await scaleFigures().catch((e: unknown) => ({ error: e instanceof Error ? e.message : String(e) }));
  }

  const lines = columns.length === 0 ? [] : [
    `resolve → first connect, ${options.trials} trials per column (fresh name and address each trial)`,
    `${'column'.padEnd(30)} ${'connected'.padStart(9)} ${'lost SYN'.padStart(8)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'DNS p50'.padStart(8)} ${'DNS p99'.padStart(8)} ${'added DNS µs'.padStart(13)}`,
    ...columns.map(
      (c) =>
        `${c.name.padEnd(30)} ${String(c.connected).padStart(9)} ${String(c.lostFirstSyns).padStart(8)} ${fmt(c.resolveToConnectMs.p50).padStart(8)} ${fmt(c.resolveToConnectMs.p99).padStart(8)} ${fmt(c.dnsMs.p50).padStart(8)} ${fmt(c.dnsMs.p99).padStart(8)} ${(c.addedDnsUs === undefined ? '' : fmt(c.addedDnsUs, 0)).padStart(13)}${c.error ? `  ERROR: ${c.error}` : ''}`,
    ),
    '',
    `targets: zero lost first SYNs (dnsplane: ${columns.filter((c) => c.name.startsWith('dnsplane/')).map((c) => `${c.name} ${c.lostFirstSyns === 0 && c.connected === c.trials ? 'met' : 'MISSED'}`).join(', ')}); added DNS latency < ${TARGET_ADDED_DNS_US} µs (p50 differences of client-measured answer times; on a busy 2-core machine run-to-run noise is hundreds of µs — compare columns of one run)`,
  ];
  if (scale !== undefined) {
    lines.push('');
    if ('error' in scale) lines.push(`scale: ERROR ${scale.error}`);
    else
      lines.push(
        `scale (nftables): ${scale.policies} policies, ${scale.patterns} patterns, ${scale.learned} learned restored (${scale.learnedInForce} in force)`,
        `  start → applied ${fmt(scale.startToAppliedMs, 0)} ms (target < ${TARGET_APPLY_MS} ms: ${scale.startToAppliedMs < TARGET_APPLY_MS ? 'met' : 'MISSED'}); re-apply after one edit ${fmt(scale.reapplyMs, 0)} ms (incl. 200 ms debounce); agent RSS ${fmt(scale.rssMiB, 1)} MiB`,
      );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  if (options.json !== undefined) writeFileSync(options.json, `${JSON.stringify({ trials: options.trials, columns, scale }, null, 2)}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exitCode = 1;
});
