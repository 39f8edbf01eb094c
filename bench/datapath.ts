// Datapath benchmark: TCP request/response between a lab workload (client1) and an echo
// server in the lab's web namespace, with no policy and with each registered dataplane
// enforcing a policy of 100 rules on the workload's egress while its domain set holds 1,000
// learned members. The real agent (`dnsplane run`) installs each dataplane in the lab's node
// namespace; `dnsplane uninstall` removes it before the next one. Needs root.
//
//   npm run bench:datapath                  print the table
//   npm run bench:datapath -- --json FILE   also write the figures as JSON
//   npm run bench:datapath -- --rounds N    interleaved rounds per mode and configuration (default 150)
//   npm run bench:datapath -- --round-ms MS length of one workload's run in a round (default 50)
//   npm run bench:datapath -- --only LIST   comma-separated dataplanes (default: all registered)
//   npm run bench:datapath -- --program-only  only the ebpf program's ns per packet (no lab)
//
// Modes: `rr` — one connection, one byte each way, back to back (netperf TCP_RR): the steady
// state of an admitted connection; `crr` — a new connection per request (TCP_CRR): every
// request pays the policy's first-packet path (100 rules, the domain-set lookup).
// Method (the machine is shared and noisy): each configuration is measured in many short
// rounds; a round runs client1 (the enforced workload) and client2 (a workload no policy
// applies to, same path to the server) back to back, alternating which goes first, from
// long-lived load generators (no process start between runs). Rate: the
// median over rounds of the paired ratio client1/client2, with a 95 % bootstrap interval.
// p99: every latency sample of the configuration pooled per workload (tens of thousands in
// rr; one round's few thousand make a p99 that swings), the ratio of the pooled p99s, with a
// 95 % interval from resampling whole rounds. The `no policy` rows
// (no dataplane installed at all, same run) are the noise floor: what the ratios are when
// nothing differs. With kernel.bpf_stats_enabled=1 for the run (restored afterwards), the
// kernel's run time of the agent's BPF programs per request is reported for each workload
// (from one extra second of each, after the rounds).
// Targets: ebpf within 5 % of no policy, every dataplane within 15 % (rate and p99), judged
// on the median paired ratios.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { BpfObjectSpec, DnsParserProgram, encodeExpiry, encodeMemberKey, ktimeNs } from '@dnsplane/bpf-parser';
import type { CompiledPeer, CompiledRule, DesiredState } from '@dnsplane/core';
import { POLICY_OBJECT_PATH, POLICY_PROGRAM_NAMES, compilePolicyTables, writeGeneration } from '@dnsplane/ebpf';
import { DRIVERS } from '../packages/agent/src/drivers.js';
import { frame } from '../packages/ebpf/test/packets.js';
import { createLab, type Lab } from '../test/lab/lab.js';
import { waitFor } from '../test/lab/wait.js';
import { enableBpfStats, pinnedMapIds, programStats } from './enforce-dns.js';
import { bootstrap, bootstrapMedian, formatEstimate, median, type Estimate } from './paired.js';

const AGENT = fileURLToPath(new URL('../packages/agent/bin/dnsplane.js', import.meta.url));
const PORT = 9000;
const MEMBERS = 1000;
const RULES = 100;

interface Args {
  readonly json?: string;
  readonly rounds: number;
  readonly roundMs: number;
  readonly only?: readonly string[];
  /** Only the program-alone figures (no lab). */
  readonly programOnly: boolean;
}

function parseArgs(argv: readonly string[]): Args {
  let json: string | undefined;
  let rounds = 150;
  let roundMs = 50;
  let only: string[] | undefined;
  let programOnly = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = argv[i + 1];
    if (arg === '--json' && value) (json = value), i++;
    else if (arg === '--rounds' && value) (rounds = Number(value)), i++;
    else if (arg === '--round-ms' && value) (roundMs = Number(value)), i++;
    else if (arg === '--only' && value) (only = value.split(',')), i++;
    else if (arg === '--program-only') programOnly = true;
    else throw new Error(`unknown argument ${arg ?? ''} (use --json FILE, --rounds N, --round-ms MS, --only LIST, --program-only)`);
  }
  if (!Number.isInteger(rounds) || rounds < 4 || rounds > 2000) throw new Error('--rounds must be 4..2000');
  if (!Number.isFinite(roundMs) || roundMs < 10 || roundMs > 5000) throw new Error('--round-ms must be 10..5000');
  return { ...(json !== undefined ? { json } : {}), rounds, roundMs, ...(only !== undefined ? { only } : {}), programOnly };
}

// Echo server (web namespace): exits when <flags>/done appears (checked every 100 ms) or after 15 min.
const SERVER_JS = `
const net = require('net'); const fs = require('fs'); const path = require('path');
const [port, dir] = process.argv.slice(1);
const server = net.createServer((s) => { s.setNoDelay(true); s.on('data', (d) => s.write(d)); s.on('error', () => {}); });
server.listen(Number(port), '::', () => fs.writeFileSync(path.join(dir, 'listening'), ''));
const end = Date.now() + 15 * 60 * 1000;
setInterval(() => { if (fs.existsSync(path.join(dir, 'done')) || Date.now() > end) process.exit(0); }, 100);
`;

// Load generator (workload namespace), long-lived: each stdin line "<rr|crr> <ms>" runs that
// mode for that long and prints {count, ms, errors, hist: [[µs, n], …]} (latencies rounded to
// whole µs, so runs can be pooled exactly). rr keeps one connection across runs.
const CLIENT_JS = `
const net = require('net'); const readline = require('readline');
const [host, port] = process.argv.slice(1);
let conn;
const queue = []; let busy = false;
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => { queue.push(line); pump(); });
rl.on('close', () => { if (!busy) process.exit(0); queue.push('exit'); });
function pump() {
  if (busy || queue.length === 0) return;
  const line = queue.shift();
  if (line === 'exit') process.exit(0);
  const [mode, ms] = line.split(' ');
  busy = true;
  runOnce(mode, Number(ms), (result) => { process.stdout.write(JSON.stringify(result) + '\\n'); busy = false; pump(); });
}
function runOnce(mode, ms, cb) {
  const hist = new Map(); let count = 0; let errors = 0; let finished = false;
  const start = process.hrtime.bigint(); const stopAt = start + BigInt(ms) * 1000000n;
  const record = (us) => { const k = Math.round(us); hist.set(k, (hist.get(k) || 0) + 1); count++; };
  const done = () => { if (finished) return; finished = true; cb({ count, ms: Number(process.hrtime.bigint() - start) / 1e6, errors, hist: [...hist.entries()] }); };
  if (mode === 'rr') {
    let t0;
    const send = () => { t0 = process.hrtime.bigint(); conn.write('x'); };
    const onData = () => { const now = process.hrtime.bigint(); record(Number(now - t0) / 1000); if (now < stopAt) send(); else { conn.off('data', onData); done(); } };
    const go = () => { conn.on('data', onData); send(); };
    if (conn === undefined) {
      conn = net.connect(Number(port), host); conn.setNoDelay(true);
      conn.on('error', () => { errors++; conn.destroy(); conn = undefined; done(); });
      conn.once('connect', go);
    } else go();
  } else {
    const one = () => {
      const t0 = process.hrtime.bigint(); const s = net.connect(Number(port), host); s.setNoDelay(true);
      s.on('connect', () => s.write('x'));
      s.on('data', () => { const now = process.hrtime.bigint(); record(Number(now - t0) / 1000); s.destroy(); if (now < stopAt) setImmediate(one); else done(); });
      s.on('error', () => { errors++; s.destroy(); if (process.hrtime.bigint() < stopAt) setImmediate(one); else done(); });
    };
    one();
  }
}
`;

/** A load generator process in a workload namespace, driven run by run over stdin. */
class LoadGenerator {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #lines: string[] = [];
  #waiter: ((line: string) => void) | undefined;
  #stderr = '';

  constructor(
    readonly namespace: string,
    target: string,
  ) {
    this.#child = spawn('ip', ['netns', 'exec', namespace, 'node', '-e', CLIENT_JS, target, String(PORT)], { stdio: ['pipe', 'pipe', 'pipe'] });
    createInterface({ input: this.#child.stdout }).on('line', (line) => {
      const waiter = this.#waiter;
      this.#waiter = undefined;
      if (waiter) waiter(line);
      else this.#lines.push(line);
    });
    this.#child.stderr.on('data', (chunk: Buffer) => (this.#stderr = (this.#stderr + chunk.toString()).slice(-2000)));
  }

  async run(mode: 'rr' | 'crr', ms: number): Promise<Run> {
    this.#child.stdin.write(`${mode} ${Math.round(ms)}\n`);
    const line =
      this.#lines.shift() ??
      (await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`load generator in ${this.namespace}: no answer in ${ms + 30_000} ms: ${this.#stderr}`)), ms + 30_000);
        this.#waiter = (l) => {
          clearTimeout(timer);
          resolve(l);
        };
      }));
    if (!line.startsWith('{')) throw new Error(`load generator in ${this.namespace}: ${line} ${this.#stderr}`);
    return JSON.parse(line) as Run;
  }

  async close(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.#child.once('exit', () => resolve()));
    this.#child.stdin.end();
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}

interface Run {
  readonly count: number;
  readonly ms: number;
  readonly errors: number;
  readonly hist: ReadonlyArray<readonly [number, number]>;
}

/** Latency histogram (whole µs → count). */
class Histogram {
  readonly #counts = new Map<number, number>();
  #total = 0;
  add(entries: Run['hist']): void {
    for (const [us, n] of entries) {
      this.#counts.set(us, (this.#counts.get(us) ?? 0) + n);
      this.#total += n;
    }
  }
  get total(): number {
    return this.#total;
  }
  quantile(q: number): number {
    if (this.#total === 0) return Number.NaN;
    const rank = Math.min(this.#total - 1, Math.floor(q * this.#total));
    let seen = 0;
    // From the top: the tail quantiles this is asked for need few steps.
    if (q >= 0.5) {
      const rankFromTop = this.#total - 1 - rank;
      for (const us of [...this.#counts.keys()].sort((a, b) => b - a)) {
        seen += this.#counts.get(us)!;
        if (seen > rankFromTop) return us;
      }
      return Number.NaN;
    }
    for (const us of [...this.#counts.keys()].sort((a, b) => a - b)) {
      seen += this.#counts.get(us)!;
      if (seen > rank) return us;
    }
    return Number.NaN;
  }
}

const rate = (r: Run): number => (r.count / r.ms) * 1000;

/** p99 of client1's samples over p99 of client2's, every sample of the given rounds pooled. */
function pooledP99Ratio(rounds: ReadonlyArray<{ readonly client1: Run; readonly client2: Run }>): number {
  const one = new Histogram();
  const two = new Histogram();
  for (const round of rounds) {
    one.add(round.client1.hist);
    two.add(round.client2.hist);
  }
  return one.quantile(0.99) / two.quantile(0.99);
}

interface Measurement {
  readonly configuration: string;
  readonly mode: 'rr' | 'crr';
  readonly rounds: number;
  /** client1 (the enforced workload), all rounds pooled. */
  readonly ratePerSecond: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly samples: number;
  /** client2 (no policy applies to it), interleaved with client1, pooled. */
  readonly referenceRatePerSecond: number;
  readonly referenceP99Us: number;
  /** Rate: median over rounds of client1/client2; p99: pooled p99 over pooled p99; 95 % bootstrap intervals over rounds. */
  readonly rateRatio: Estimate;
  readonly p99Ratio: Estimate;
  readonly errors: number;
  /** Kernel run time of the agent's BPF programs per request (bpf_stats), per workload. */
  readonly bpfNsPerRequest?: { readonly client1: number; readonly client2: number };
}

function policyYaml(lab: Lab): string {
  const dnsmasq = lab.dnsServers.dnsmasq;
  const client = lab.endpoints['client1'];
  if (!client) throw new Error('lab has no client1');
  const rules: string[] = [
    '    - action: Allow',
    '      protocol: UDP',
    `      destination: { nets: ["${dnsmasq.ipv4}/32", "${dnsmasq.ipv6}/128"], ports: [53] }`,
  ];
  // 98 rules that the benchmark traffic walks past: nets/ports and domain rules of other sets.
  for (let i = 0; i < RULES - 2; i++) {
    rules.push('    - action: Allow', '      protocol: TCP');
    if (i % 2 === 0) rules.push(`      destination: { nets: ["198.18.${200 + (i % 50)}.${1 + i}/32"], ports: [${1000 + i}] }`);
    else rules.push(`      destination: { domains: ["svc${i}.other.lab.test"], ports: [${1000 + i}] }`);
  }
  // The rule the traffic matches: last, after 99 others.
  rules.push('    - action: Allow', '      protocol: TCP', `      destination: { domains: ["*.fresh.lab.test"], ports: [${PORT}] }`);
  return [
    'kind: Policy',
    'metadata: { name: bench-egress }',
    'spec:',
    '  selector: app == "bench"',
    '  types: [Egress]',
    '  egress:',
    ...rules,
    '---',
    'kind: Endpoint',
    'metadata: { name: client1, labels: { app: bench } }',
    `spec: { interface: ${client.hostInterface} }`,
  ].join('\n');
}

/** Σ run_time_ns of the agent's programs (bpf_stats). */
async function bpfRunTime(mapIds: ReadonlySet<number>): Promise<number> {
  let ns = 0;
  for (const prog of (await programStats(mapIds)).values()) ns += prog.run_time_ns ?? 0;
  return ns;
}

/**
 * Rounds alternate the enforced workload (client1) with client2, to which no policy applies,
 * in alternating order, each run a fraction of a second and the two back to back (long-lived
 * generators, no process start in between): load from the rest of the machine hits both
 * alike, and the per-round ratio is the dataplane's cost, not the machine's mood.
 */
async function measure(lab: Lab, configuration: string, target: string, args: Args, mapIds?: ReadonlySet<number>): Promise<Measurement[]> {
  const out: Measurement[] = [];
  const generators = { client1: new LoadGenerator(lab.namespace('client1'), target), client2: new LoadGenerator(lab.namespace('client2'), target) };
  try {
    for (const mode of ['rr', 'crr'] as const) {
      await generators.client1.run(mode, 300); // warm-up: caches, neighbours, connection tables
      await generators.client2.run(mode, 300);
      const pooled = { client1: new Histogram(), client2: new Histogram() };
      const rates = { client1: [] as number[], client2: [] as number[] };
      const rateRatios: number[] = [];
      const paired: Array<{ readonly client1: Run; readonly client2: Run }> = [];
      let errors = 0;
      for (let round = 0; round < args.rounds; round++) {
        const order = round % 2 === 0 ? (['client1', 'client2'] as const) : (['client2', 'client1'] as const);
        const runs: Partial<Record<'client1' | 'client2', Run>> = {};
        for (const ns of order) {
          const result = await generators[ns].run(mode, args.roundMs);
          runs[ns] = result;
          pooled[ns].add(result.hist);
          rates[ns].push(rate(result));
        }
        const c1 = runs.client1!;
        const c2 = runs.client2!;
        errors += c1.errors;
        rateRatios.push(rate(c1) / rate(c2));
        paired.push({ client1: c1, client2: c2 });
      }
      // The agent's BPF time per request, each workload alone for a second (outside the rounds:
      // bpftool between runs would disturb them).
      let bpfNsPerRequest: Measurement['bpfNsPerRequest'];
      if (mapIds !== undefined) {
        const perRequest = async (ns: 'client1' | 'client2'): Promise<number> => {
          const before = await bpfRunTime(mapIds);
          const result = await generators[ns].run(mode, 1000);
          return ((await bpfRunTime(mapIds)) - before) / Math.max(1, result.count);
        };
        bpfNsPerRequest = { client1: await perRequest('client1'), client2: await perRequest('client2') };
      }
      out.push({
        configuration,
        mode,
        rounds: args.rounds,
        ratePerSecond: Math.round(median(rates.client1)),
        p50Us: pooled.client1.quantile(0.5),
        p99Us: pooled.client1.quantile(0.99),
        samples: pooled.client1.total,
        referenceRatePerSecond: Math.round(median(rates.client2)),
        referenceP99Us: pooled.client2.quantile(0.99),
        rateRatio: bootstrapMedian(rateRatios),
        p99Ratio: bootstrap(paired, pooledP99Ratio, { resamples: 1000 }),
        errors,
        ...(bpfNsPerRequest === undefined ? {} : { bpfNsPerRequest }),
      });
    }
  } finally {
    await Promise.all([generators.client1.close(), generators.client2.close()]);
  }
  return out;
}

interface ProgramCost {
  readonly path: string;
  readonly nsPerPacket: number;
}

/**
 * The ebpf policy program alone, BPF_PROG_TEST_RUN with repeat (no lab, no noise from the
 * TCP stack): the same 100-rule policy and 1,000 members, per packet, for the paths a packet
 * can take. Hooks are written for the test run's device (lo, ifindex 1).
 */
function programCosts(): ProgramCost[] {
  const pinRoot = `/sys/fs/bpf/dnsplane-dpb${randomBytes(4).toString('hex')}`;
  const parser = DnsParserProgram.load({ pinRoot });
  try {
    const spec = BpfObjectSpec.open(POLICY_OBJECT_PATH);
    spec.reuseMaps(pinRoot);
    const policy = spec.load();
    try {
      const any: CompiledPeer = { nets: [], notNets: [], ports: [], notPorts: [] };
      const rules: CompiledRule[] = [{ index: 0, action: 'allow', protocol: 17, source: any, destination: { ...any, nets: [{ family: 4, text: '198.18.53.2/32' }], ports: [{ first: 53, last: 53 }] } }];
      for (let i = 0; i < RULES - 2; i++) {
        const destination: CompiledPeer = i % 2 === 0 ? { ...any, nets: [{ family: 4, text: `198.18.${200 + (i % 50)}.${1 + i}/32` }], ports: [{ first: 1000 + i, last: 1000 + i }] } : { ...any, ports: [{ first: 1000 + i, last: 1000 + i }], domainSetId: 1000 + i };
        rules.push({ index: rules.length, action: 'allow', protocol: 6, source: any, destination });
      }
      rules.push({ index: rules.length, action: 'allow', protocol: 6, source: any, destination: { ...any, ports: [{ first: PORT, last: PORT }], domainSetId: 7 } });
      const state: DesiredState = {
        domainSets: [],
        policies: [{ name: 'bench', order: 1, egress: rules }],
        endpoints: [{ name: 'w', labels: {}, interface: 'lo', host: false, addresses: [], ingressPolicies: [], egressPolicies: ['bench'] }],
        dns: { trustedServers: [], minTTL: 30, extraTTL: 10, maxAddressesPerName: 256 },
      };
      const tables = compilePolicyTables(state);
      writeGeneration(policy, tables, tables.hooks.map((hook) => ({ hook, ifindex: 1 })));
      const members = parser.map('members4');
      for (let i = 0; i < MEMBERS; i++) {
        const address = `198.19.${64 + (i >> 8)}.${i & 0xff}`;
        members.update(encodeMemberKey({ setId: 7, family: 4, address }), encodeExpiry(ktimeNs() + 600_000_000_000n));
      }
      const egress = policy.program(POLICY_PROGRAM_NAMES.ingress); // tc ingress = the workload's egress
      const other = policy.program(POLICY_PROGRAM_NAMES.egress);
      const time = (program: typeof egress, data: Buffer): number => {
        const repeat = 200_000;
        const runs = [0, 1, 2, 3, 4].map(() => program.testRun({ data, repeat }).durationNs);
        return Math.round(median(runs));
      };
      const member = '198.19.65.10';
      const denied = frame({ src: '198.18.1.2', dst: '198.19.90.1', protocol: 'tcp', sport: 40001, dport: PORT });
      const established = frame({ src: '198.18.1.2', dst: member, protocol: 'tcp', sport: 40002, dport: PORT });
      egress.testRun({ data: established }); // admitted once: the connection entry exists
      return [
        { path: 'established (connection table hit)', nsPerPacket: time(egress, established) },
        { path: 'first packet, all 100 rules walked (default deny)', nsPerPacket: time(egress, denied) },
        { path: 'unselected direction (track only)', nsPerPacket: time(other, frame({ src: member, dst: '198.18.1.2', protocol: 'tcp', sport: PORT, dport: 40002 })) },
      ];
    } finally {
      policy.close();
    }
  } finally {
    parser.close();
    DnsParserProgram.removePins(pinRoot);
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.programOnly) {
    for (const c of programCosts()) console.log(`${c.path.padEnd(52)} ${c.nsPerPacket} ns/packet`);
    return;
  }
  const kinds = DRIVERS.map((d) => d.kind).filter((k) => !args.only || args.only.includes(k));
  const lab = await createLab({ clients: 2, freshNames: 1000 + kinds.length * (MEMBERS + 10) });
  const dir = await mkdtemp(join(tmpdir(), 'dnsplane-bench-datapath-'));
  const flags = join(dir, 'flags');
  await writeFile(join(dir, 'policy.yaml'), policyYaml(lab));
  const results: Measurement[] = [];
  const notes: string[] = [];
  const restoreStats = enableBpfStats();
  try {
    await rm(flags, { recursive: true, force: true });
    await import('node:fs/promises').then((fs) => fs.mkdir(flags));
    const server = lab.exec('web', ['node', '-e', SERVER_JS, String(PORT), flags], { timeoutMs: 20 * 60 * 1000 });
    await waitFor('the echo server', () => (existsSync(join(flags, 'listening')) ? true : undefined), { timeoutMs: 20_000 });

    const [baseTarget] = lab.allocateFresh(1);
    if (!baseTarget) throw new Error('no fresh name');
    process.stderr.write('no policy…\n');
    results.push(...(await measure(lab, 'no policy', baseTarget.ipv4, args)));

    for (const kind of kinds) {
      process.stderr.write(`${kind}…\n`);
      const pinRoot = `/sys/fs/bpf/dnsplane-dpb${randomBytes(4).toString('hex')}`;
      const config = join(dir, `${kind}.yaml`);
      await writeFile(
        config,
        [
          `dataplane: ${kind}`,
          `dns: { trustedServers: ${JSON.stringify(lab.trustedServers)}, minTTL: 300, extraTTL: 60 }`,
          'resources: ["./policy.yaml"]',
          `statePath: ${join(dir, `${kind}-state.json`)}`,
          `bpf: { pinRoot: ${pinRoot} }`,
        ].join('\n'),
      );
      const socket = join(dir, `${kind}.sock`);
      const agent = lab.startAgentProcess(['node', AGENT, 'run', '-c', config, '--socket', socket], { name: `bench-${kind}` });
      try {
        await agent.waitForOutput(/"event":"applied"/, 120_000);
        // 1,000 members: the workload resolves 1,000 fresh names (the parser learns them inline).
        const fresh = lab.allocateFresh(MEMBERS);
        const batch = await lab.connectAfterResolveBatch('client1', fresh.map((f) => ({ name: f.name, port: PORT })), { concurrency: 8 });
        const target = fresh[fresh.length - 1];
        if (!target) throw new Error('no fresh name');
        notes.push(`${kind}: ${batch.cleanConnects} of ${MEMBERS} warm-up connects (first SYN to a fresh address) were clean`);
        const mapIds = await pinnedMapIds(pinRoot);
        results.push(...(await measure(lab, kind, target.ipv4, args, mapIds.size > 0 ? mapIds : undefined)));
      } catch (error) {
        notes.push(`${kind}: not measured: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`);
      } finally {
        await agent.stop();
        const removal = lab.startAgentProcess(['node', AGENT, 'uninstall', '-c', config, '--socket', socket], { name: `bench-${kind}-uninstall` });
        await removal.wait();
        await rm(pinRoot, { recursive: true, force: true });
      }
    }

    await writeFile(join(flags, 'done'), '');
    await server;
  } finally {
    restoreStats();
    await lab.destroy();
    await rm(dir, { recursive: true, force: true });
  }

  const report = summarise(results);
  let costs: ProgramCost[] = [];
  try {
    if (kinds.includes('ebpf')) costs = programCosts();
  } catch (error) {
    notes.push(`ebpf program alone: not measured: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`);
  }
  printTable(report, args);
  if (costs.length > 0) {
    console.log('\nebpf policy program alone (BPF_PROG_TEST_RUN, median of 5 × 200,000 runs):');
    for (const c of costs) console.log(`  ${c.path.padEnd(52)} ${c.nsPerPacket} ns/packet`);
  }
  for (const note of notes) console.log(`note: ${note}`);
  if (args.json) {
    await writeFile(args.json, `${JSON.stringify({ rounds: args.rounds, roundMs: args.roundMs, rules: RULES, members: MEMBERS, results: report, programCosts: costs, notes }, null, 2)}\n`);
    console.log(`wrote ${args.json}`);
  }
}

type Verdict = 'met' | 'met (floor-corrected)' | 'MISSED' | 'reference';

interface Row extends Measurement {
  /** The same mode's `no policy` ratios: what the method shows when nothing differs. */
  readonly noiseRate: Estimate | undefined;
  readonly noiseP99: Estimate | undefined;
  readonly limit: number | undefined;
  /** The ratios divided by the same mode's noise-floor ratios (the two workloads' own difference taken out). */
  readonly rateCorrected: number;
  readonly p99Corrected: number;
  readonly rateVerdict: Verdict;
  readonly p99Verdict: Verdict;
}

function summarise(results: readonly Measurement[]): Row[] {
  return results
    .map((r) => {
      const noise = results.find((x) => x.configuration === 'no policy' && x.mode === r.mode);
      const limit = r.configuration === 'ebpf' ? 0.05 : r.configuration === 'no policy' ? undefined : 0.15;
      const rateCorrected = r.rateRatio.median / (noise?.rateRatio.median ?? Number.NaN);
      const p99Corrected = r.p99Ratio.median / (noise?.p99Ratio.median ?? Number.NaN);
      const verdict = (raw: boolean, corrected: boolean): Verdict =>
        limit === undefined ? 'reference' : r.errors > 0 ? 'MISSED' : raw ? 'met' : corrected ? 'met (floor-corrected)' : 'MISSED';
      return {
        ...r,
        noiseRate: noise?.rateRatio,
        noiseP99: noise?.p99Ratio,
        limit,
        rateCorrected,
        p99Corrected,
        rateVerdict: verdict(limit !== undefined && r.rateRatio.median >= 1 - limit, limit !== undefined && rateCorrected >= 1 - limit),
        p99Verdict: verdict(limit !== undefined && r.p99Ratio.median <= 1 + limit, limit !== undefined && p99Corrected <= 1 + limit),
      };
    })
    .sort((a, b) => (a.mode === b.mode ? 0 : a.mode === 'rr' ? -1 : 1));
}

const pct = (e: Estimate): string =>
  Number.isFinite(e.median) ? formatEstimate({ ...e, median: (e.median - 1) * 100, low: (e.low - 1) * 100, high: (e.high - 1) * 100 }, 1, '%') : '—';

function printTable(rows: readonly Row[], args: Args): void {
  console.log(`TCP request/response to an echo server in the web namespace; policy: ${RULES} rules (matching rule last), domain set with ${MEMBERS} learned members`);
  console.log(`${args.rounds} rounds per mode and configuration; a round runs client1 (enforced) and client2 (no policy applies) ${args.roundMs} ms each, order alternating`);
  const header = ['mode', 'configuration', 'req/s', 'p50 µs', 'p99 µs', 'samples', 'ref req/s', 'ref p99 µs', 'rate vs ref [95% CI]', 'p99 vs ref [95% CI]', 'rate/floor', 'p99/floor', 'BPF ns/req', 'BPF share', 'errors', 'target', 'rate', 'p99'];
  const lines = rows.map((r) => [
    r.mode,
    r.configuration,
    String(r.ratePerSecond),
    String(r.p50Us),
    String(r.p99Us),
    String(r.samples),
    String(r.referenceRatePerSecond),
    String(r.referenceP99Us),
    pct(r.rateRatio),
    pct(r.p99Ratio),
    r.limit === undefined || !Number.isFinite(r.rateCorrected) ? '' : `${((r.rateCorrected - 1) * 100).toFixed(1)}%`,
    r.limit === undefined || !Number.isFinite(r.p99Corrected) ? '' : `${((r.p99Corrected - 1) * 100).toFixed(1)}%`,
    r.bpfNsPerRequest === undefined ? '—' : `${Math.round(r.bpfNsPerRequest.client1)} (ref ${Math.round(r.bpfNsPerRequest.client2)})`,
    r.bpfNsPerRequest === undefined ? '—' : `${((r.bpfNsPerRequest.client1 * r.ratePerSecond) / 1e7).toFixed(1)}%`,
    String(r.errors),
    r.limit === undefined ? 'noise floor' : `within ${r.limit * 100}%`,
    r.rateVerdict,
    r.p99Verdict,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? '').length)));
  const fmt = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  console.log(fmt(header));
  for (const line of lines) console.log(fmt(line));
  console.log('');
  console.log('rate vs ref: median over rounds of client1/client2 in the same round (−: slower); p99 vs ref: pooled p99 of client1 over pooled p99 of client2 (+: higher);');
  console.log('95 % bootstrap intervals from resampling rounds;');
  console.log('the `no policy` rows are the noise floor (nothing installed: the two workloads differ only by chance and path); rate/floor, p99/floor: the ratio divided by');
  console.log('the same mode\'s floor ratio. client2 pays the dataplane\'s shared hooks too (its BPF ns/req in parentheses), so the ratios understate the cost by about that share.');
  console.log('p50/p99 µs: every sample of the configuration pooled. BPF ns/req: kernel bpf_stats run time of the agent\'s programs per request (client1, and client2 in parentheses);');
  console.log('BPF share: client1\'s BPF ns per request × its rate — the part of each request\'s time the agent\'s programs run, against no dataplane at all.');
  console.log('verdict: the ratio against the limit ("met (floor-corrected)": only the floor-corrected ratio is within it); read it with the BPF share, the noise-free in-path part.');
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.stack ?? error.message : String(error));
  process.exitCode = 1;
});
