// Benchmark of the inline DNS parser: ns per packet in the kernel (BPF_PROG_TEST_RUN with
// repeat, tc entry point and socket filter) side by side with the TypeScript reference
// decoding the same packets in Node, and the ratio. Needs root.
//
//   npm run bench:parser                 print the table
//   npm run bench:parser -- --json FILE  also write one JSON object per case
//   npm run bench:parser -- --object F   measure another build of the parser object
//   npm run bench:parser -- --only TEXT  only the cases whose name contains TEXT
//   npm run bench:parser -- --kernel-only  skip the TypeScript reference (quick kernel-side
//                                          iterations; no ratio, so no verdict on the 10x target)
//   npm run bench:parser -- --runs N     kernel runs per case and entry point (default 20,000)
//   npm run bench:parser -- --cold       also single runs (repeat 1) after evicting the caches
//                                        (64 MiB touched in between): closer to real traffic, where
//                                        one DNS packet every few ms finds caches and TLB cold
//
// Targets on this machine: <= 1 us for the 8-A response, <= 100 ns for the early exit
// (untrusted source), and the kernel at least 10x faster than the userspace decode.
// The domain table holds 1,000 domain sets, so the figures include a realistic table.
// All kernel cases are measured first, then the TypeScript reference (same process, same
// packets), so the reference's garbage collection does not disturb the kernel figures.
import { writeFileSync } from 'node:fs';
import {
  ReferenceParser,
  buildDnsPacket,
  parseDomainPattern,
  type DnsSettings,
  type DomainSet,
} from '@dnsplane/core';
import { KernelParserHarness, type EntryPoint } from '../packages/bpf-parser/test/kernel-harness.js';

const SERVER = '198.18.0.53';
const ROGUE = '198.18.0.66';
const CLIENT = '198.18.1.10';
const CLIENT_PORT = 41000;

const dns: DnsSettings = {
  trustedServers: [{ family: 4, address: SERVER, port: 53 }],
  minTTL: 30,
  extraTTL: 10,
  maxAddressesPerName: 256,
};

function domainSets(): DomainSet[] {
  const sets: DomainSet[] = [
    { id: 1, name: 'ds_1', patterns: [parseDomainPattern('www.example.com', 'calico')] },
    { id: 2, name: 'ds_2', patterns: [parseDomainPattern('*.cdn.example.net', 'calico')] },
    { id: 3, name: 'ds_3', patterns: [parseDomainPattern('api-*.example.org', 'cilium-pattern')] },
  ];
  for (let i = 0; i < 997; i++) {
    const id = 100 + i;
    const pattern = i % 3 === 0 ? `svc${i}.internal.example` : i % 3 === 1 ? `*.tenant${i}.example` : `www.*.zone${i}.example`;
    sets.push({ id, name: `ds_${id.toString(16)}`, patterns: [parseDomainPattern(pattern, 'calico')] });
  }
  return sets;
}

// ---------------------------------------------------------------- messages, byte by byte

class Msg {
  readonly b: number[] = [];
  u8(v: number): this {
    this.b.push(v & 0xff);
    return this;
  }
  u16(v: number): this {
    return this.u8(v >> 8).u8(v);
  }
  u32(v: number): this {
    return this.u16(v >>> 16).u16(v & 0xffff);
  }
  name(text: string): number {
    const at = this.b.length;
    for (const label of text.split('.')) {
      this.u8(label.length);
      for (const ch of label) this.u8(ch.charCodeAt(0));
    }
    this.u8(0);
    return at;
  }
  pointer(to: number): this {
    return this.u16(0xc000 | to);
  }
  get length(): number {
    return this.b.length;
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.b);
  }
}

function header(m: Msg, id: number, response: boolean, an: number, ar: number): void {
  m.u16(id).u16(response ? 0x8180 : 0x0100).u16(1).u16(an).u16(0).u16(ar);
}

function query(id: number, qname: string, type = 1): Uint8Array {
  const m = new Msg();
  header(m, id, false, 0, 0);
  m.name(qname);
  m.u16(type).u16(1);
  return m.bytes();
}

interface AnswerPlan {
  qname: string;
  qtype?: number;
  cnames?: string[];
  a?: number;
  aaaa?: number;
  /** Pad with an EDNS OPT record (padding option) to exactly this many bytes. */
  ednsSize?: number;
}

function response(id: number, plan: AnswerPlan): Uint8Array {
  const m = new Msg();
  const cnames = plan.cnames ?? [];
  const a = plan.a ?? 0;
  const aaaa = plan.aaaa ?? 0;
  header(m, id, true, cnames.length + a + aaaa, plan.ednsSize === undefined ? 0 : 1);
  m.name(plan.qname);
  m.u16(plan.qtype ?? 1).u16(1);
  let owner = 12;
  for (const target of cnames) {
    m.pointer(owner).u16(5).u16(1).u32(300);
    const lengthAt = m.length;
    m.u16(0);
    const at = m.name(target);
    const rdlength = m.length - at;
    m.b[lengthAt] = rdlength >> 8;
    m.b[lengthAt + 1] = rdlength & 0xff;
    owner = at;
  }
  for (let i = 0; i < a; i++) m.pointer(owner).u16(1).u16(1).u32(300).u16(4).u8(198).u8(18).u8(7).u8(i + 1);
  for (let i = 0; i < aaaa; i++) {
    m.pointer(owner).u16(28).u16(1).u32(300).u16(16).u16(0xfd00);
    for (let j = 0; j < 6; j++) m.u16(0);
    m.u16(i + 1);
  }
  if (plan.ednsSize !== undefined) {
    const padding = plan.ednsSize - m.length - 11 - 4;
    if (padding < 0) throw new Error(`answer already ${m.length} bytes, more than ${plan.ednsSize}`);
    m.u8(0).u16(41).u16(1232).u32(0).u16(4 + padding).u16(12).u16(padding);
    for (let i = 0; i < padding; i++) m.u8(0);
  }
  return m.bytes();
}

function udp(src: string, dst: string, sport: number, dport: number, payload: Uint8Array): Uint8Array {
  return buildDnsPacket({ family: 4, src, dst, sport, dport, transport: 'udp', payload });
}

interface BenchCase {
  readonly name: string;
  readonly query: Uint8Array;
  readonly response: Uint8Array;
  /** Target ns per packet in the kernel, if any. */
  readonly targetNs?: number;
}

function cases(): BenchCase[] {
  const exchange = (name: string, id: number, plan: AnswerPlan, extra: { rogue?: boolean; targetNs?: number } = {}): BenchCase => ({
    name,
    query: udp(CLIENT, SERVER, CLIENT_PORT, 53, query(id, plan.qname, plan.qtype)),
    response: udp(extra.rogue ? ROGUE : SERVER, CLIENT, 53, CLIENT_PORT, response(id, plan)),
    ...(extra.targetNs === undefined ? {} : { targetNs: extra.targetNs }),
  });
  const eight = exchange('8 A', 2, { qname: 'www.example.com', a: 8 }, { targetNs: 1000 });
  const edns = exchange('1,232-byte EDNS answer', 5, { qname: 'img.cdn.example.net', qtype: 28, aaaa: 40, ednsSize: 1232 });
  if (edns.response.length - 28 !== 1232) throw new Error(`EDNS answer is ${edns.response.length - 28} bytes`);
  return [
    exchange('1 A', 1, { qname: 'www.example.com', a: 1 }),
    eight,
    exchange('3-CNAME chain, 4 A', 3, { qname: 'api-eu.example.org', cnames: ['edge1.cdn.example.net', 'edge2.lb.example.net', 'host.lb.example.net'], a: 4 }),
    exchange('32 AAAA', 4, { qname: 'www.example.com', qtype: 28, aaaa: 32 }),
    edns,
    exchange('untrusted source (early exit)', 6, { qname: 'www.example.com', a: 8 }, { rogue: true, targetNs: 100 }),
    exchange('non-matching name', 7, { qname: 'www.unrelated.test', a: 2 }),
  ];
}

// ---------------------------------------------------------------- measuring

const DEFAULT_KERNEL_RUNS = 20_000;
const TS_RUNS = 20_000;
/** Runs are split into rounds; the figure is the median round (the machine is shared and noisy). */
const ROUNDS = 15;
/** Ring-buffer entries per test run stay well under its capacity (1 MiB). */
const EVENTS_PER_BATCH = 4_000;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

function kernelNs(harness: KernelParserHarness, entry: EntryPoint, c: BenchCase, kernelRuns: number): { ns: number; writes: number } {
  harness.run(entry, c.query);
  const writes = harness.run(entry, c.response).writes.length;
  const perRound = Math.ceil(kernelRuns / ROUNDS);
  const batch = Math.max(1, Math.min(perRound, Math.floor(EVENTS_PER_BATCH / Math.max(1, writes))));
  const rounds: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    let total = 0;
    let runs = 0;
    while (runs < perRound) {
      harness.run(entry, c.query); // the query stays remembered (10 s lifetime)
      const n = Math.min(batch, perRound - runs);
      total += harness.time(entry, c.response, n) * n;
      runs += n;
    }
    rounds.push(total / runs);
  }
  return { ns: median(rounds), writes };
}

const COLD_RUNS = 200;
const EVICT = new Uint32Array((64 << 20) / 4);

/** Touches 64 MiB (one write per cache line): the parser's code, maps and scratch leave the caches. */
function evictCaches(): void {
  for (let i = 0; i < EVICT.length; i += 16) EVICT[i] = (EVICT[i] ?? 0) + 1;
}

/** Median ns of single runs of the response, each after its query and a cache eviction. */
function coldNs(harness: KernelParserHarness, entry: EntryPoint, c: BenchCase): number {
  const runs: number[] = [];
  for (let i = 0; i < COLD_RUNS; i++) {
    harness.run(entry, c.query);
    evictCaches();
    runs.push(harness.time(entry, c.response, 1));
  }
  return median(runs);
}

function referenceNs(sets: readonly DomainSet[], c: BenchCase): number {
  const reference = new ReferenceParser({ domainSets: sets, dns, clock: { now: () => Date.now() } });
  reference.observe(c.query);
  for (let i = 0; i < 2_000; i++) reference.observe(c.response); // warm-up (JIT)
  const perRound = Math.ceil(TS_RUNS / ROUNDS);
  const rounds: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < perRound; i++) reference.observe(c.response);
    rounds.push(Number(process.hrtime.bigint() - start) / perRound);
  }
  return median(rounds);
}

interface Row {
  case: string;
  bpfNsPerPacket: number;
  tsNsPerPacket: number;
  ratio: number;
}

function main(): void {
  const option = (name: string): string | undefined => {
    const at = process.argv.indexOf(name);
    if (at < 0) return undefined;
    const value = process.argv[at + 1];
    if (value === undefined) throw new Error(`${name} needs a value`);
    return value;
  };
  const jsonFile = option('--json');
  const objectPath = option('--object');
  const only = option('--only');
  const kernelOnly = process.argv.includes('--kernel-only');
  const cold = process.argv.includes('--cold');
  const runsOption = option('--runs');
  const kernelRuns = runsOption === undefined ? DEFAULT_KERNEL_RUNS : Number(runsOption);
  if (!Number.isInteger(kernelRuns) || kernelRuns < ROUNDS) throw new Error(`--runs needs an integer >= ${ROUNDS}, not ${runsOption}`);
  const sets = domainSets();
  const harness = KernelParserHarness.open(dns, sets, objectPath === undefined ? {} : { objectPath });
  const rows: Row[] = [];
  const lines: string[][] = [];
  let failed = 0;
  try {
    const selected = cases().filter((x) => only === undefined || x.name.includes(only));
    // Every kernel case first, then the TypeScript reference: the reference's garbage
    // collection (V8's concurrent GC threads) keeps running after it returns and would
    // otherwise land in the next case's kernel figures on this 2-core machine.
    const kernel = selected.map((c) => ({ tc: kernelNs(harness, 'tc', c, kernelRuns), socket: kernelNs(harness, 'socket', c, kernelRuns) }));
    const coldTc = cold ? selected.map((c) => coldNs(harness, 'tc', c)) : [];
    for (const [i, c] of selected.entries()) {
      const { tc, socket } = kernel[i] ?? { tc: { ns: Number.NaN, writes: 0 }, socket: { ns: Number.NaN, writes: 0 } };
      const ts = kernelOnly ? Number.NaN : referenceNs(sets, c);
      const ratio = ts / tc.ns;
      rows.push({ case: c.name, bpfNsPerPacket: round(tc.ns), tsNsPerPacket: round(ts), ratio: round(ratio) });
      const targets: string[] = [];
      let ok = kernelOnly || ratio >= 10;
      if (c.targetNs !== undefined) {
        targets.push(`<= ${c.targetNs} ns`);
        ok &&= tc.ns <= c.targetNs;
      }
      if (!kernelOnly) targets.push('>= 10x');
      if (!ok) failed++;
      lines.push([
        c.name,
        String(c.response.length),
        String(tc.writes),
        tc.ns.toFixed(0),
        socket.ns.toFixed(0),
        ...(cold ? [(coldTc[i] ?? Number.NaN).toFixed(0)] : []),
        kernelOnly ? '-' : ts.toFixed(0),
        kernelOnly ? '-' : `${ratio.toFixed(1)}x`,
        targets.join(', '),
        ok ? 'ok' : 'MISSED',
      ]);
    }
  } finally {
    harness.close();
  }
  const head = ['case', 'bytes', 'writes', 'bpf tc ns', 'bpf socket ns', ...(cold ? ['tc cold ns'] : []), 'ts ns', 'ts/bpf', 'target', ''];
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? '').length)));
  const fmt = (cells: string[]): string => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ');
  console.log(
    `DNS parser: ns per packet, median of ${ROUNDS} rounds (kernel: BPF_PROG_TEST_RUN, ${kernelRuns} runs; ${
      kernelOnly ? 'TypeScript reference skipped (--kernel-only): the 10x target is not checked' : `TypeScript reference: ${TS_RUNS} runs`
    }), 1,000 domain sets`,
  );
  console.log(fmt(head));
  for (const l of lines) console.log(fmt(l));
  if (cold) console.log(`tc cold: median of ${COLD_RUNS} single runs (repeat 1), each after the case's query and 64 MiB touched (no target; the hot loop's targets are judged on the columns before)`);
  console.log(failed === 0 ? 'all targets met' : `${failed} case(s) missed a target`);
  if (jsonFile !== undefined) writeFileSync(jsonFile, `${JSON.stringify(rows, null, 2)}\n`);
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}

main();
