// Differential test of the kernel parser against the TypeScript reference (ReferenceParser in
// @dnsplane/core): every golden fixture and more than 10,000 generated and mutated exchanges
// go through BPF_PROG_TEST_RUN on both entry points and through the reference with the same
// domain table and settings. Membership writes (set, address, seconds to expiry, read back
// from the ring buffer) and counters must be identical; malformed responses write nothing.
//
// Replay: DNSPLANE_DIFF_SEED=<run seed> reruns a whole run; DNSPLANE_CASE_SEED=<case seed>
// runs one generated case (both printed on failure). DNSPLANE_DIFF_SEED=random picks a new run seed.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  PARSER_COUNTERS,
  ReferenceParser,
  buildDnsPacket,
  isWireProblem,
  parseDomainPattern,
  readQuestion,
  type DnsSettings,
  type DomainSet,
  type IpFamily,
  type ParseOutcome,
} from '@dnsplane/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CLIENT4,
  CLIENT6,
  SERVER4,
  SERVER6,
  TRUSTED_SERVERS,
  baseMessageLength,
  caseSeed,
  generateExchange,
  prng,
  truncatedExchange,
  type Exchange,
} from './dns-generator.js';
import { tcpSegments } from './big-exchange.js';
import { KernelParserHarness, type EntryPoint, type KernelRun, type KernelWrite } from './kernel-harness.js';

const dns: DnsSettings = {
  trustedServers: TRUSTED_SERVERS,
  minTTL: 30,
  extraTTL: 10,
  maxAddressesPerName: 20,
};

const set = (id: number, flavor: 'calico' | 'cilium-name' | 'cilium-pattern', ...patterns: string[]): DomainSet => ({
  id,
  name: `ds_${id.toString(16)}`,
  patterns: patterns.map((p) => parseDomainPattern(p, flavor)),
});

/** Exact names, both wildcard readings, middle wildcards, in-label globs, several '*' labels. */
const domainSets: DomainSet[] = [
  set(1, 'calico', 'www.example.com'),
  set(2, 'calico', '*.example.com'),
  set(3, 'cilium-pattern', '*.example.net'),
  set(4, 'calico', 'www.*.com'),
  set(5, 'cilium-pattern', 'api-*.example.com'),
  set(6, 'calico', '*.s3.amazonaws.com', 'mail.foo.org'),
  set(7, 'cilium-pattern', 'a.*.b.*.com', 'www.*.net'),
  set(8, 'calico', 'api.*.*.net', 'edge.*'),
  set(9, 'calico', 'x*1.*'),
  set(10, 'cilium-pattern', '**.github.com', '*-v1.example.com'),
  set(11, 'cilium-name', 'edge.test', 'www.example.com'),
  set(12, 'calico', '*.fx.test'),
  set(13, 'cilium-name', 'www.fx.test', 'xn--bcher-kva.fx.test'),
  set(14, 'cilium-pattern', '*.wild.fx.test', 'many*.fx.test'),
  set(15, 'calico', '*.*.a.a'),
  set(0xfffffff0, 'calico', 'bar.*.z*z'),
];

const NOW_MS = 1_800_000_000_000;
const clock = { now: () => NOW_MS };

interface Comparison {
  readonly entry: EntryPoint;
  readonly kernel: string[];
  readonly reference: string[];
  readonly kernelCounters: Record<string, number>;
  readonly referenceCounters: Record<string, number>;
}

function kernelKey(w: KernelWrite): string {
  return `${w.setId}|${w.family}|${w.address}|${Math.floor(w.secondsLeft + 1e-6)}`;
}

function referenceKeys(outcome: ParseOutcome): string[] {
  return outcome.writes.map((w) => `${w.setId}|${w.family}|${w.address}|${(w.expiresAt - NOW_MS) / 1000}`).sort();
}

let harness: KernelParserHarness;

function runReference(x: Exchange): { outcome: ParseOutcome; counters: Record<string, number> } {
  const reference = new ReferenceParser({ domainSets, dns, clock });
  for (const q of x.queries) reference.observe(q);
  const outcome = reference.observe(x.response);
  return { outcome, counters: { ...reference.counters } };
}

function runKernel(entry: EntryPoint, x: Exchange): { writes: KernelWrite[]; counters: Record<string, number> } {
  const before = harness.counters();
  let recorded = true;
  let run: KernelRun;
  try {
    for (const q of x.queries) {
      const queryRun = harness.run(entry, q);
      if (queryRun.writes.length) throw new Error('a query wrote membership');
    }
    recorded = harness.counters().queries !== before.queries;
    run = harness.run(entry, x.response);
  } finally {
    // the next exchange starts with no remembered query and no held message (as the reference does)
    if (recorded) harness.forgetQueries(x.queries);
    harness.forgetAssemblies();
  }
  const after = harness.counters();
  harness.forget(run.writes);
  const counters: Record<string, number> = {};
  for (const name of PARSER_COUNTERS) counters[name] = after[name] - before[name];
  return { writes: run.writes, counters };
}

/** A TCP exchange cut into segments: what both parsers are given, in this order. */
interface SegmentedExchange {
  readonly description: string;
  readonly packets: readonly Uint8Array[];
  readonly queries: readonly Uint8Array[];
}

const isTcp = (packet: Uint8Array): boolean => ((packet[0] ?? 0) >> 4 === 4 ? packet[9] : packet[6]) === 6;

/**
 * The exchange of `seed` (when it is TCP) with its response cut into 1–5 segments — sometimes
 * right after the length prefix or inside it — the first segment first and the others in any
 * order, one perhaps twice; the query sometimes cut after its prefix.
 */
function segmentedExchange(seed: number): SegmentedExchange | undefined {
  const x = generateExchange(seed);
  if (!isTcp(x.response)) return undefined;
  const r = prng(seed ^ 0x5e65);
  const int = (n: number): number => Math.floor(r() * n);
  const dataLength = x.response.length - ((x.response[0] ?? 0) >> 4 === 4 ? 40 : 60);
  const cuts = Array.from({ length: int(5) }, () => (r() < 0.2 ? 1 + int(2) : 1 + int(Math.max(1, dataLength - 1))));
  const [first, ...rest] = tcpSegments(x.response, cuts);
  for (let i = rest.length - 1; i > 0; i--) {
    const j = int(i + 1);
    [rest[i], rest[j]] = [rest[j]!, rest[i]!];
  }
  if (rest.length > 0 && r() < 0.3) rest.splice(int(rest.length + 1), 0, rest[int(rest.length)]!);
  const splitQuery = r() < 0.3;
  const queries = x.queries.flatMap((q) => (splitQuery && isTcp(q) ? tcpSegments(q, [2]) : [Buffer.from(q)]));
  return {
    description: `${x.description}; response cut at ${[...cuts].sort((a, b) => a - b).join(',') || '(nothing)'} into ${1 + rest.length} runs${splitQuery ? ', query after its prefix' : ''}`,
    packets: [...queries, first!, ...rest],
    queries: x.queries,
  };
}

/** Runs a segmented exchange everywhere: every run's writes together, and the counters it moved. */
function compareSegmented(x: SegmentedExchange): { mismatches: Comparison[]; taught: boolean } {
  const parser = new ReferenceParser({ domainSets, dns, clock });
  const referenceWrites = x.packets.flatMap((packet) => referenceKeys(parser.observe(packet))).sort();
  const mismatches: Comparison[] = [];
  for (const entry of ['socket', 'tc'] as const) {
    const before = harness.counters();
    const writes: KernelWrite[] = [];
    try {
      for (const packet of x.packets) writes.push(...harness.run(entry, packet).writes);
    } finally {
      harness.forgetQueries(x.queries);
      harness.forgetAssemblies();
    }
    const after = harness.counters();
    harness.forget(writes);
    const counters: Record<string, number> = {};
    for (const name of PARSER_COUNTERS) counters[name] = after[name] - before[name];
    const kernel = writes.map(kernelKey).sort();
    const sameCounters = PARSER_COUNTERS.every((name) => counters[name] === parser.counters[name]);
    if (JSON.stringify(kernel) !== JSON.stringify(referenceWrites) || !sameCounters) {
      mismatches.push({ entry, kernel, reference: referenceWrites, kernelCounters: counters, referenceCounters: { ...parser.counters } });
    }
  }
  return { mismatches, taught: referenceWrites.length > 0 };
}

/** Runs one exchange everywhere; returns the mismatches (empty when all agree). */
function compare(x: Exchange): { mismatches: Comparison[]; outcome: ParseOutcome } {
  const ref = runReference(x);
  const reference = referenceKeys(ref.outcome);
  const mismatches: Comparison[] = [];
  for (const entry of ['socket', 'tc'] as const) {
    const k = runKernel(entry, x);
    const kernel = k.writes.map(kernelKey).sort();
    const sameWrites = JSON.stringify(kernel) === JSON.stringify(reference);
    const sameCounters = PARSER_COUNTERS.every((name) => k.counters[name] === ref.counters[name]);
    if (!sameWrites || !sameCounters) {
      mismatches.push({ entry, kernel, reference, kernelCounters: k.counters, referenceCounters: ref.counters });
    }
  }
  return { mismatches, outcome: ref.outcome };
}

function describeFailure(label: string, x: { readonly description: string }, c: Comparison): string {
  const counters = (o: Record<string, number>): string =>
    Object.entries(o)
      .filter(([, v]) => v !== 0)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
  return [
    `${label} [${c.entry}] ${x.description}`,
    `  kernel:    ${c.kernel.join(', ') || '(nothing)'}  counters: ${counters(c.kernelCounters)}`,
    `  reference: ${c.reference.join(', ') || '(nothing)'}  counters: ${counters(c.referenceCounters)}`,
  ].join('\n');
}

function envSeed(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  if (v === 'random') return Math.floor(Math.random() * 0xffffffff);
  return Number(v) >>> 0;
}

describe('kernel parser vs reference parser (BPF_PROG_TEST_RUN, both entry points)', () => {
  beforeAll(() => {
    // DNSPLANE_PARSER_OBJECT=<path.o> checks another build of the parser (e.g. a variant being tried)
    const objectPath = process.env['DNSPLANE_PARSER_OBJECT'];
    harness = KernelParserHarness.open(dns, domainSets, objectPath ? { objectPath } : {});
  });
  afterAll(() => {
    harness?.close();
  });

  it('every golden fixture in test/fixtures/dns (UDP and TCP, IPv4 and IPv6)', () => {
    const dir = fileURLToPath(new URL('../../../test/fixtures/dns/', import.meta.url));
    const manifest = JSON.parse(readFileSync(`${dir}manifest.json`, 'utf8')) as { file: string; expect: string }[] | { fixtures: { file: string; expect: string }[] };
    const entries = Array.isArray(manifest) ? manifest : manifest.fixtures;
    expect(entries.length).toBeGreaterThan(20);
    const failures: string[] = [];
    let learned = 0;
    for (const fixture of entries) {
      const msg = new Uint8Array(readFileSync(`${dir}${fixture.file}`));
      const question = readQuestion(msg);
      const id = ((msg[0] ?? 0) << 8) | (msg[1] ?? 0);
      for (const [family, transport] of [
        [4, 'udp'],
        [6, 'tcp'],
      ] as const) {
        const ends = { family: family as IpFamily, client: family === 4 ? CLIENT4 : CLIENT6, server: family === 4 ? SERVER4 : SERVER6 };
        const queries: Uint8Array[] = [];
        if (!isWireProblem(question)) {
          const q = new Uint8Array(msg.subarray(0, question.end));
          q[2] = 0x01; // QR=0, opcode 0, RD
          q[3] = 0;
          q.set([0, 1, 0, 0, 0, 0, 0, 0], 4);
          queries.push(
            buildDnsPacket({ family, src: ends.client, dst: ends.server, sport: 33333, dport: 53, transport, payload: q }),
          );
        }
        const x: Exchange = {
          description: `fixture ${fixture.file} (id ${id}, expect ${fixture.expect}) over IPv${family}/${transport}`,
          queries,
          response: buildDnsPacket({ family, src: ends.server, dst: ends.client, sport: 53, dport: 33333, transport, payload: msg }),
        };
        const { mismatches, outcome } = compare(x);
        learned += outcome.writes.length;
        if (fixture.expect === 'malformed') expect(outcome.writes, fixture.file).toEqual([]);
        for (const m of mismatches) failures.push(describeFailure(fixture.file, x, m));
      }
    }
    expect(failures, failures.join('\n')).toEqual([]);
    expect(learned, 'the fixtures teach something').toBeGreaterThan(50);
  });

  it('generated TCP exchanges with the response cut into segments, in any order after the first', () => {
    const only = envSeed('DNSPLANE_CASE_SEED');
    const runSeed = envSeed('DNSPLANE_DIFF_SEED') ?? 0x5eed_d15c;
    const failures: string[] = [];
    let cases = 0;
    let learnedFrom = 0;
    for (let i = 0; cases < (only === undefined ? 400 : 1) && i < 10_000; i++) {
      const seed = only ?? caseSeed(runSeed ^ 0x7c9, i);
      const x = segmentedExchange(seed);
      if (x === undefined) {
        if (only !== undefined) break;
        continue;
      }
      cases++;
      const { mismatches, taught } = compareSegmented(x);
      if (taught) learnedFrom++;
      if (failures.length < 20) for (const m of mismatches) failures.push(describeFailure(`case seed ${seed} (DNSPLANE_CASE_SEED=${seed}; run seed ${runSeed})`, x, m));
    }
    console.log(`differential (TCP segments): ${cases} exchanges, ${learnedFrom} taught something`);
    expect(failures, failures.join('\n')).toEqual([]);
    if (only === undefined) expect(learnedFrom, 'segmented answers that taught').toBeGreaterThan(40);
  });

  it('more than 10,000 generated and mutated exchanges', () => {
    const only = envSeed('DNSPLANE_CASE_SEED');
    const runSeed = envSeed('DNSPLANE_DIFF_SEED') ?? 0x5eed_d15c;
    const randomCases = only === undefined ? 7000 : 0;
    const failures: string[] = [];
    const outcomes = new Map<string, number>();
    const bySet = new Map<number, number>();
    let withWrites = 0;
    let cases = 0;
    const check = (label: string, x: Exchange): void => {
      const { mismatches, outcome } = compare(x);
      cases++;
      outcomes.set(outcome.outcome, (outcomes.get(outcome.outcome) ?? 0) + 1);
      if (outcome.writes.length) withWrites++;
      for (const w of outcome.writes) bySet.set(w.setId, (bySet.get(w.setId) ?? 0) + 1);
      if (outcome.outcome === 'malformed') expect(outcome.writes).toEqual([]);
      if (failures.length < 20) for (const m of mismatches) failures.push(describeFailure(label, x, m));
    };

    if (only !== undefined) {
      check(`case seed ${only}`, generateExchange(only));
    } else {
      for (let i = 0; i < randomCases; i++) {
        const seed = caseSeed(runSeed, i);
        check(`case seed ${seed} (DNSPLANE_CASE_SEED=${seed}; run seed ${runSeed})`, generateExchange(seed));
      }
      // Truncation at every byte of a few responses.
      const r = prng(runSeed ^ 0x7a7a7a7a);
      let truncations = 0;
      for (let b = 0; truncations < 5000; b++) {
        const baseSeed = Math.floor(r() * 0xffffffff) >>> 0;
        const length = baseMessageLength(baseSeed);
        for (let cut = 0; cut < length; cut++, truncations++) {
          check(`base seed ${baseSeed} cut at ${cut} (run seed ${runSeed})`, truncatedExchange(baseSeed, cut));
        }
      }
    }
    const summary = [...outcomes].map(([k, v]) => `${k}=${v}`).join(' ');
    const sets = [...bySet].sort((a, b) => a[0] - b[0]).map(([k, v]) => `${k}:${v}`).join(' ');
    console.log(`differential: ${cases} exchanges, run seed ${runSeed}, ${withWrites} with writes; outcomes ${summary}; writes by set ${sets}`);
    expect(failures, failures.join('\n')).toEqual([]);
    if (only === undefined) {
      expect(cases).toBeGreaterThanOrEqual(10_000);
      // The generator exercises every path: learning, malformed, truncated, untrusted, unmatched.
      expect(withWrites).toBeGreaterThan(500);
      for (const kind of ['parsed', 'malformed', 'truncated', 'untrusted', 'unmatched_query', 'not_response', 'rejected']) {
        expect(outcomes.get(kind) ?? 0, kind).toBeGreaterThan(20);
      }
      // ... and every kind of pattern the generated names can reach learns something.
      for (const id of [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 15, 0xfffffff0]) {
        expect(bySet.get(id) ?? 0, `writes to domain set ${id}`).toBeGreaterThan(0);
      }
    }
  });
});
