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
//   npm run bench:datapath -- --program-only  only the ebpf program's ns per packet (no lab)
//
// Modes: `rr` — one connection, one byte each way, back to back (netperf TCP_RR): the steady
// state of an admitted connection; `crr` — a new connection per request (TCP_CRR): every
// request pays the policy's first-packet path (100 rules, the domain-set lookup).
// Reference: the machine is shared, so each configuration is measured in rounds that
// alternate client1 (enforced) with client2 (a workload no policy applies to, same path
// to the server); medians of each, and the ratio of the two. The `no policy` rows (no
// dataplane installed at all) show what the ratio is when nothing differs: the noise.
// Targets: ebpf within 5 % of no policy, every dataplane within 15 % (rate and p99).
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BpfObjectSpec, DnsParserProgram, encodeExpiry, encodeMemberKey, ktimeNs } from '@dnsplane/bpf-parser';
import type { CompiledPeer, CompiledRule, DesiredState } from '@dnsplane/core';
import { POLICY_OBJECT_PATH, POLICY_PROGRAM_NAMES, compilePolicyTables, writeGeneration } from '@dnsplane/ebpf';
import { DRIVERS } from '../packages/agent/src/drivers.js';
import { frame } from '../packages/ebpf/test/packets.js';
import { createLab, type Lab } from '../test/lab/lab.js';
import { waitFor } from '../test/lab/wait.js';

const AGENT = fileURLToPath(new URL('../packages/agent/bin/dnsplane.js', import.meta.url));
const PORT = 9000;
const MEMBERS = 1000;
const RULES = 100;

interface Args {
  readonly json?: string;
  readonly seconds: number;
  readonly only?: readonly string[];
  /** Only the program-alone figures (no lab). */
  readonly programOnly: boolean;
}

function parseArgs(argv: readonly string[]): Args {
  let json: string | undefined;
  let seconds = 3;
  let only: string[] | undefined;
  let programOnly = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = argv[i + 1];
    if (arg === '--json' && value) (json = value), i++;
    else if (arg === '--seconds' && value) (seconds = Number(value)), i++;
    else if (arg === '--only' && value) (only = value.split(',')), i++;
    else if (arg === '--program-only') programOnly = true;
    else throw new Error(`unknown argument ${arg ?? ''} (use --json FILE, --seconds N, --only LIST, --program-only)`);
  }
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 30) throw new Error('--seconds must be in (0, 30]');
  return { ...(json !== undefined ? { json } : {}), seconds, ...(only !== undefined ? { only } : {}), programOnly };
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

interface Run {
  readonly count: number;
  readonly ms: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly errors: number;
}

interface Measurement {
  readonly configuration: string;
  readonly mode: 'rr' | 'crr';
  /** client1 (the enforced workload): medians over the rounds. */
  readonly ratePerSecond: number;
  readonly p50Us: number;
  readonly p99Us: number;
  /** client2 (no policy applies to it) in the rounds interleaved with client1's. */
  readonly referenceRatePerSecond: number;
  readonly referenceP99Us: number;
  readonly errors: number;
  readonly rounds: number;
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
};


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

async function run(lab: Lab, ns: string, target: string, ms: number, mode: 'rr' | 'crr'): Promise<Run> {
  const result = await lab.exec(ns, ['node', '-e', CLIENT_JS, target, String(PORT), String(ms), mode], { timeoutMs: 30_000 + ms * 2 });
  const line = result.stdout.trim().split('\n').pop() ?? '';
  if (!line.startsWith('{')) throw new Error(`load generator in ${ns}: ${result.stderr.slice(-500)}`);
  return JSON.parse(line) as Run;
}

/**
 * Rounds alternate the enforced workload (client1) with client2, to which no policy applies,
 * in alternating order: load from the rest of the machine hits both alike, and the ratio of
 * the medians is the dataplane's cost, not the machine's mood.
 */
async function measure(lab: Lab, configuration: string, target: string, seconds: number): Promise<Measurement[]> {
  const out: Measurement[] = [];
  const rounds = 8;
  const ms = Math.max(200, Math.round((seconds * 1000) / rounds));
  for (const mode of ['rr', 'crr'] as const) {
    await run(lab, 'client1', target, 300, mode); // warm-up: caches, neighbours, connection tables
    await run(lab, 'client2', target, 300, mode);
    const enforced: Run[] = [];
    const reference: Run[] = [];
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? (['client1', 'client2'] as const) : (['client2', 'client1'] as const);
      for (const ns of order) (ns === 'client1' ? enforced : reference).push(await run(lab, ns, target, ms, mode));
    }
    const rate = (r: Run): number => (r.count / r.ms) * 1000;
    out.push({
      configuration,
      mode,
      ratePerSecond: Math.round(median(enforced.map(rate))),
      p50Us: Math.round(median(enforced.map((r) => r.p50Us))),
      p99Us: Math.round(median(enforced.map((r) => r.p99Us))),
      referenceRatePerSecond: Math.round(median(reference.map(rate))),
      referenceP99Us: Math.round(median(reference.map((r) => r.p99Us))),
      errors: enforced.reduce((n, r) => n + r.errors, 0),
      rounds,
    });
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
  try {
    await rm(flags, { recursive: true, force: true });
    await import('node:fs/promises').then((fs) => fs.mkdir(flags));
    const server = lab.exec('web', ['node', '-e', SERVER_JS, String(PORT), flags], { timeoutMs: 20 * 60 * 1000 });
    await waitFor('the echo server', () => (existsSync(join(flags, 'listening')) ? true : undefined), { timeoutMs: 20_000 });

    const [baseTarget] = lab.allocateFresh(1);
    if (!baseTarget) throw new Error('no fresh name');
    results.push(...(await measure(lab, 'no policy', baseTarget.ipv4, args.seconds)));

    for (const kind of kinds) {
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

    await writeFile(join(flags, 'done'), '');
    await server;
  } finally {
    await lab.destroy();
    await rm(dir, { recursive: true, force: true });
  }

  const report = summarise(results);
  const costs = kinds.includes('ebpf') ? programCosts() : [];
  printTable(report, args.seconds);
  if (costs.length > 0) {
    console.log('\nebpf policy program alone (BPF_PROG_TEST_RUN, median of 5 × 200,000 runs):');
    for (const c of costs) console.log(`  ${c.path.padEnd(52)} ${c.nsPerPacket} ns/packet`);
  }
  for (const note of notes) console.log(`note: ${note}`);
  if (args.json) {
    await writeFile(args.json, `${JSON.stringify({ seconds: args.seconds, rules: RULES, members: MEMBERS, results: report, programCosts: costs, notes }, null, 2)}\n`);
    console.log(`wrote ${args.json}`);
  }
}

interface Row extends Measurement {
  /** client1's rate over client2's in the same rounds (1 = no cost). */
  readonly rateRatio: number;
  readonly p99Ratio: number;
  readonly target: string;
  readonly met: boolean;
}

function summarise(results: readonly Measurement[]): Row[] {
  return results.map((r) => {
    const limit = r.configuration === 'ebpf' ? 0.05 : r.configuration === 'no policy' ? undefined : 0.15;
    const rateRatio = r.ratePerSecond / r.referenceRatePerSecond;
    const p99Ratio = r.p99Us / r.referenceP99Us;
    return {
      ...r,
      rateRatio,
      p99Ratio,
      target: limit === undefined ? 'reference (noise)' : `within ${limit * 100}%`,
      met: limit === undefined ? true : r.errors === 0 && rateRatio >= 1 - limit && p99Ratio <= 1 + limit,
    };
  }).sort((a, b) => (a.mode === b.mode ? 0 : a.mode === 'rr' ? -1 : 1));
}

function printTable(rows: readonly Row[], seconds: number): void {
  console.log(`TCP request/response to an echo server in the web namespace, ${seconds} s per mode and workload; policy: ${RULES} rules (matching rule last), domain set with ${MEMBERS} learned members`);
  console.log('client1 is the enforced workload; client2 (no policy applies) runs in interleaved rounds as the reference');
  const header = ['mode', 'configuration', 'req/s', 'p50 µs', 'p99 µs', 'ref req/s', 'ref p99 µs', 'rate vs ref', 'p99 vs ref', 'errors', 'target', 'met'];
  const lines = rows.map((r) => [
    r.mode,
    r.configuration,
    String(r.ratePerSecond),
    String(r.p50Us),
    String(r.p99Us),
    String(r.referenceRatePerSecond),
    String(r.referenceP99Us),
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
