// Datapath benchmark: TCP request/response between a lab workload (client1) and an echo
// server in the lab's web namespace, with no policy and with each registered dataplane
// enforcing a policy of 100 rules on the workload's egress while its domain set holds 1,000
// learned members. The real agent (`dnsplane run`) installs each dataplane in the lab's node
// namespace; `dnsplane uninstall` removes it before the next one. Needs root.
//
//   npm run bench:datapath                  print the table
//   npm run bench:datapath -- --json FILE   also write the figures as JSON
//   npm run bench:datapath -- --seconds N   seconds per mode and configuration (default 3)
//   npm run bench:datapath -- --only LIST   comma-separated dataplanes (default: all registered)
//
// Modes: `rr` — one connection, one byte each way, back to back (netperf TCP_RR): the steady
// state of an admitted connection; `crr` — a new connection per request (TCP_CRR): every
// request pays the policy's first-packet path (100 rules, the domain-set lookup).
// Targets: ebpf within 5 % of no policy, every dataplane within 15 % (rate and p99).
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DRIVERS } from '../packages/agent/src/drivers.js';
import { createLab, type Lab } from '../test/lab/lab.js';

const AGENT = fileURLToPath(new URL('../packages/agent/bin/dnsplane.js', import.meta.url));
const PORT = 9000;
const MEMBERS = 1000;
const RULES = 100;

interface Args {
  readonly json?: string;
  readonly seconds: number;
  readonly only?: readonly string[];
}

function parseArgs(argv: readonly string[]): Args {
  let json: string | undefined;
  let seconds = 3;
  let only: string[] | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = argv[i + 1];
    if (arg === '--json' && value) (json = value), i++;
    else if (arg === '--seconds' && value) (seconds = Number(value)), i++;
    else if (arg === '--only' && value) (only = value.split(',')), i++;
    else throw new Error(`unknown argument ${arg ?? ''} (use --json FILE, --seconds N, --only LIST)`);
  }
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 30) throw new Error('--seconds must be in (0, 30]');
  return { ...(json !== undefined ? { json } : {}), seconds, ...(only !== undefined ? { only } : {}) };
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

// Load generator (workload namespace): prints {count, ms, p50Us, p99Us, errors}.
const CLIENT_JS = `
const net = require('net');
const [host, port, ms, mode] = process.argv.slice(1);
const lat = []; let errors = 0; const start = process.hrtime.bigint(); const stopAt = start + BigInt(Number(ms)) * 1000000n;
const done = () => {
  const total = Number(process.hrtime.bigint() - start) / 1e6;
  const us = Float64Array.from(lat).sort();
  const q = (p) => us.length ? us[Math.min(us.length - 1, Math.floor(p * us.length))] : 0;
  console.log(JSON.stringify({ count: lat.length, ms: total, p50Us: q(0.5), p99Us: q(0.99), errors }));
  process.exit(0);
};
if (mode === 'rr') {
  const s = net.connect(Number(port), host); s.setNoDelay(true); let t0;
  const send = () => { t0 = process.hrtime.bigint(); s.write('x'); };
  s.on('connect', send); s.on('error', () => { errors++; done(); });
  s.on('data', () => { const now = process.hrtime.bigint(); lat.push(Number(now - t0) / 1000); if (now < stopAt) send(); else done(); });
} else {
  const one = () => {
    const t0 = process.hrtime.bigint(); const s = net.connect(Number(port), host); s.setNoDelay(true);
    s.on('connect', () => s.write('x'));
    s.on('data', () => { const now = process.hrtime.bigint(); lat.push(Number(now - t0) / 1000); s.destroy(); if (now < stopAt) setImmediate(one); else done(); });
    s.on('error', () => { errors++; s.destroy(); if (process.hrtime.bigint() < stopAt) setImmediate(one); else done(); });
  };
  one();
}
`;

interface Measurement {
  readonly configuration: string;
  readonly mode: 'rr' | 'crr';
  readonly requests: number;
  readonly ratePerSecond: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly errors: number;
}

async function waitFor<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
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

async function measure(lab: Lab, configuration: string, target: string, seconds: number): Promise<Measurement[]> {
  const out: Measurement[] = [];
  for (const mode of ['rr', 'crr'] as const) {
    // Warm-up (caches, neighbours, conntrack), then the measured run.
    await lab.exec('client1', ['node', '-e', CLIENT_JS, target, String(PORT), '300', mode], { timeoutMs: 30_000 });
    const result = await lab.exec('client1', ['node', '-e', CLIENT_JS, target, String(PORT), String(seconds * 1000), mode], { timeoutMs: 30_000 + seconds * 2000 });
    const parsed = JSON.parse(result.stdout.trim().split('\n').pop() ?? '{}') as { count: number; ms: number; p50Us: number; p99Us: number; errors: number };
    out.push({
      configuration,
      mode,
      requests: parsed.count,
      ratePerSecond: Math.round((parsed.count / parsed.ms) * 1000),
      p50Us: Math.round(parsed.p50Us),
      p99Us: Math.round(parsed.p99Us),
      errors: parsed.errors,
    });
  }
  return out;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const kinds = DRIVERS.map((d) => d.kind).filter((k) => !args.only || args.only.includes(k));
  const lab = await createLab({ clients: 1, freshNames: 1000 + kinds.length * (MEMBERS + 10) });
  const dir = await mkdtemp(join(tmpdir(), 'dnsplane-bench-datapath-'));
  const flags = join(dir, 'flags');
  await writeFile(join(dir, 'policy.yaml'), policyYaml(lab));
  const results: Measurement[] = [];
  const notes: string[] = [];
  try {
    await rm(flags, { recursive: true, force: true });
    await import('node:fs/promises').then((fs) => fs.mkdir(flags));
    const server = lab.exec('web', ['node', '-e', SERVER_JS, String(PORT), flags], { timeoutMs: 20 * 60 * 1000 });
    await waitFor('the echo server', () => (existsSync(join(flags, 'listening')) ? true : undefined), 20_000);

    const [baseTarget] = lab.allocateFresh(1);
    if (!baseTarget) throw new Error('no fresh name');
    results.push(...(await measure(lab, 'no policy', baseTarget.ipv4, args.seconds)));

    for (const kind of kinds) {
      const pinRoot = `/sys/fs/bpf/dnsplane-b${randomBytes(4).toString('hex')}`;
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
        if (batch.cleanConnects < MEMBERS) notes.push(`${kind}: ${MEMBERS - batch.cleanConnects} of ${MEMBERS} warm-up connects were not clean`);
        results.push(...(await measure(lab, kind, target.ipv4, args.seconds)));
      } catch (error) {
        notes.push(`${kind}: not measured: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`);
      } finally {
        await agent.stop();
        const removal = lab.startAgentProcess(['node', AGENT, 'uninstall', '-c', config, '--socket', socket], { name: `bench-${kind}-uninstall` });
        await removal.wait();
        await rm(pinRoot, { recursive: true, force: true });
      }
    }

    // The baseline once more: the better of the two runs is the reference (shared machine).
    const [again] = lab.allocateFresh(1);
    if (again) results.push(...(await measure(lab, 'no policy', again.ipv4, args.seconds)));
    await writeFile(join(flags, 'done'), '');
    await server;
  } finally {
    await lab.destroy();
    await rm(dir, { recursive: true, force: true });
  }

  const report = summarise(results);
  printTable(report, args.seconds);
  for (const note of notes) console.log(`note: ${note}`);
  if (args.json) {
    await writeFile(args.json, `${JSON.stringify({ seconds: args.seconds, rules: RULES, members: MEMBERS, results: report, notes }, null, 2)}\n`);
    console.log(`wrote ${args.json}`);
  }
}

interface Row extends Measurement {
  /** Rate relative to no policy (1 = equal). */
  readonly rateRatio: number;
  readonly p99Ratio: number;
  readonly target: string;
  readonly met: boolean;
}

function summarise(results: readonly Measurement[]): Row[] {
  const rows: Row[] = [];
  for (const mode of ['rr', 'crr'] as const) {
    const base = results.filter((r) => r.configuration === 'no policy' && r.mode === mode);
    if (base.length === 0) continue;
    const best: Measurement = {
      configuration: 'no policy',
      mode,
      requests: Math.max(...base.map((b) => b.requests)),
      ratePerSecond: Math.max(...base.map((b) => b.ratePerSecond)),
      p50Us: Math.min(...base.map((b) => b.p50Us)),
      p99Us: Math.min(...base.map((b) => b.p99Us)),
      errors: base.reduce((n, b) => n + b.errors, 0),
    };
    rows.push({ ...best, rateRatio: 1, p99Ratio: 1, target: 'reference (best of 2 runs)', met: true });
    for (const r of results.filter((x) => x.configuration !== 'no policy' && x.mode === mode)) {
      const limit = r.configuration === 'ebpf' ? 0.05 : 0.15;
      const rateRatio = r.ratePerSecond / best.ratePerSecond;
      const p99Ratio = r.p99Us / best.p99Us;
      rows.push({
        ...r,
        rateRatio,
        p99Ratio,
        target: `within ${limit * 100}%`,
        met: r.errors === 0 && rateRatio >= 1 - limit && p99Ratio <= 1 + limit,
      });
    }
  }
  return rows;
}

function printTable(rows: readonly Row[], seconds: number): void {
  console.log(`TCP request/response, client1 → web echo server, ${seconds} s per mode; policy: ${RULES} rules (matching rule last), domain set with ${MEMBERS} learned members`);
  const header = ['mode', 'configuration', 'req/s', 'p50 µs', 'p99 µs', 'rate vs none', 'p99 vs none', 'errors', 'target', 'met'];
  const lines = rows.map((r) => [
    r.mode,
    r.configuration,
    String(r.ratePerSecond),
    String(r.p50Us),
    String(r.p99Us),
    `${((r.rateRatio - 1) * 100).toFixed(1)}%`,
    `${((r.p99Ratio - 1) * 100).toFixed(1)}%`,
    String(r.errors),
    r.target,
    r.met ? 'yes' : 'NO',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? '').length)));
  const fmt = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ');
  console.log(fmt(header));
  for (const line of lines) console.log(fmt(line));
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.stack ?? error.message : String(error));
  process.exitCode = 1;
});
