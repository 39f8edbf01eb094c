// bench:enforce (b): the DNS answer time a dataplane adds, measured two ways in one lab.
//
// End to end: rounds alternate "not installed" and "installed" (the real agent, `dnsplane run`
// until applied, then `dnsplane uninstall`) in ABBA order, so each round holds one block of
// each condition and a single install or uninstall. A block times Q fresh names the policy's
// domain set covers (each answer teaches an address: ring-buffer event, and on nftables the
// mirror's nft write) interleaved with Q answers of a name no domain set covers (parsed,
// nothing learned). Per round: median answer time installed minus not installed; reported:
// the median of those paired differences and its 95 % bootstrap interval over rounds. The
// "learning share" is the same for (covered − uncovered) within each block: what teaching an
// address costs the answer beyond parsing it, compared query by query.
//
// Reference: with `reference`, after the rounds the same lab measures a minimal stateful
// netfilter firewall in the node namespace and nothing else — one forward-hook chain whose only
// rule is `ct state established,related accept` (a table of the bench's own). That turns on
// connection tracking in the namespace, and every DNS query (a fresh source port) is a new flow:
// the cost any netfilter firewall that admits answers by state pays, dnsplane's nftables and
// iptables dataplanes and dnsmasq --nftset's table included. It is measured by switching the
// table on and off in ~0.2 s segments (see "Causes" below: ~100 pairs, a ±3–5 µs interval; a
// block in the install rounds gave ±50 µs), and reported beside the rounds' figure together with
// installed − reference (the two estimates' difference, each sample bootstrapped on its own).
//
// In path: with kernel.bpf_stats_enabled=1 for the run (restored afterwards), the kernel's
// run_time_ns / run_cnt of every BPF program of this agent (the programs that use a map pinned
// under its pin root), summed over the installed blocks, divided by the DNS exchanges: the
// time dnsplane's code is on the packets' path per query + answer. After each installed block
// the same mix of queries is sent once more while the DNS namespace drops the answers: the
// query's path alone; the difference is the answer's path, the time dnsplane adds to a DNS
// response on its way to the client.
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Lab } from '../test/lab/lab.js';
import { dnsCrossings, dnsSightings, startCapture, type Capture } from '../test/lab/capture.js';
import { waitFor } from '../test/lab/wait.js';
import { BenchAgent, endpointDoc } from './enforce-agent.js';
import { parseSavedTable, rollbackInput, type SavedTable } from '@dnsplane/iptables';
import { bootstrapMedian, bootstrapMedianDifference, median, type Estimate } from './paired.js';

const DNS_TIMING = join(dirname(fileURLToPath(import.meta.url)), '..', 'test', 'lab', 'scripts', 'dns-timing.ts');
const BPF_STATS = '/proc/sys/kernel/bpf_stats_enabled';

export interface AddedDnsOptions {
  readonly rounds: number;
  /** Covered names per block (and as many uncovered answers). */
  readonly queries: number;
  /** Pause between queries, ms. */
  readonly gapMs: number;
  /** Queries of the conntrack-only reference measured after the rounds (0 or absent: none). */
  readonly referenceQueries?: number;
  /** Queries timed while the installed agent's whole footprint is switched (0 or absent: not measured). */
  readonly switchedQueries?: number;
}

export interface ProgramTime {
  readonly name: string;
  readonly type: string;
  readonly runs: number;
  readonly runTimeNs: number;
}

export interface InPathFigures {
  /** DNS exchanges (query + answer) timed in the installed blocks. */
  readonly exchanges: number;
  /** Σ run_time_ns of the agent's programs / exchanges. */
  readonly nsPerExchange: number;
  readonly programs: readonly ProgramTime[];
  /** Queries sent while the DNS namespace dropped the answers: the query's path alone. */
  readonly queries: number;
  readonly nsPerQuery: number;
  readonly queryPrograms: readonly ProgramTime[];
  /** nsPerExchange − nsPerQuery: what the answer's path costs. */
  readonly nsPerAnswer: number;
}

export interface AddedDnsFigures {
  readonly name: string;
  readonly rounds: number;
  readonly queriesPerBlock: number;
  /** Medians over rounds of the block medians, covered names, µs. */
  readonly notInstalledUs: number;
  readonly installedUs: number;
  /** Installed − not installed, covered names (each answer teaches), µs. */
  readonly addedUs: Estimate;
  /** The per-round values behind addedUs. */
  readonly roundDifferencesUs: readonly number[];
  /** The same for the uncovered name (parsed, nothing learned), µs. */
  readonly addedUncoveredUs: Estimate;
  /** (covered − uncovered) installed minus the same not installed, µs. */
  readonly learningShareUs: Estimate;
  /** With a reference: the conntrack-only table − nothing (switched segments), and installed − that, covered names, µs. */
  readonly reference?: {
    readonly addedUs: Estimate;
    /** Its crossings (ToggleFigures' crossing). */
    readonly crossing?: ToggleFigures['crossing'];
    readonly installedOverUs: Estimate;
    /** The switched footprint minus the reference, both switched segments (absent without a switched figure). */
    readonly switchedOverUs?: Estimate;
    readonly error?: string;
  };
  /**
   * The installed agent's whole footprint (process, tc filters, netfilter objects) switched on
   * and off in segments, half covered fresh names, half the uncovered name: installed − not
   * installed, µs, with an interval a few µs wide where the rounds' is tens.
   */
  readonly switched?: {
    readonly addedUs: Estimate;
    /** The per-segment values behind addedUs. */
    readonly differences: readonly number[];
    readonly offUs: number;
    readonly medianQueriesPerSegment: number;
    /** The node's share, from packet captures at both edges (ToggleFigures' crossing). */
    readonly crossing?: ToggleFigures['crossing'];
    readonly error?: string;
  };
  readonly inPath?: InPathFigures;
  readonly unanswered: number;
  readonly error?: string;
}

interface Block {
  readonly covered: number[];
  readonly uncovered: number[];
  readonly unanswered: number;
}

export async function timeQueries(
  lab: Lab,
  servers: ReadonlyArray<{ readonly address: string; readonly port: number }>,
  queries: ReadonlyArray<{ readonly name: string; readonly server: number }>,
  gapMs: number,
  options: { readonly noWait?: boolean } = {},
): Promise<Array<number | null>> {
  const input = JSON.stringify({ servers, queries, gapMs, timeoutMs: 1000, noWait: options.noWait === true });
  const result = await lab.exec('client1', ['node', '--import', 'tsx', DNS_TIMING], { input, timeoutMs: 30_000 + queries.length * (gapMs + 1000) });
  if (result.code !== 0) throw new Error(`dns timing in client1 failed (code ${result.code}): ${result.stderr.trim().slice(-1000)}`);
  return (JSON.parse(result.stdout) as { us: Array<number | null> }).us;
}

function blockQueries(covered: readonly string[], uncoveredName: string): Array<{ name: string; server: number }> {
  // Pairs, alternating which goes first, so neither kind always follows the other.
  return covered.flatMap((name, i) =>
    i % 2 === 0 ? [{ name, server: 0 }, { name: uncoveredName, server: 0 }] : [{ name: uncoveredName, server: 0 }, { name, server: 0 }],
  );
}

async function timeBlock(lab: Lab, covered: readonly string[], uncoveredName: string, gapMs: number): Promise<Block> {
  const queries = blockQueries(covered, uncoveredName);
  const us = await timeQueries(lab, [{ address: lab.dnsServers.dnsmasq.ipv4, port: 53 }], queries, gapMs);
  const block: Block = { covered: [], uncovered: [], unanswered: 0 };
  us.forEach((value, i) => {
    if (value === null) (block as { unanswered: number }).unanswered += 1;
    else (queries[i]!.name === uncoveredName ? block.uncovered : block.covered).push(value);
  });
  return block;
}

function run(argv: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(argv[0]!, argv.slice(1), { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, timeout: 30_000 }, (error, stdout, stderr) =>
      error === null ? resolve(stdout) : reject(new Error(`${argv.join(' ')}: ${stderr.trim() || error.message}`)),
    );
  });
}

export interface ProgInfo {
  readonly id: number;
  readonly name?: string;
  readonly type: string;
  readonly run_time_ns?: number;
  readonly run_cnt?: number;
  readonly map_ids?: readonly number[];
}

/** Ids of the maps pinned under `pinRoot` (bpftool -f lists pinned paths). */
export async function pinnedMapIds(pinRoot: string): Promise<Set<number>> {
  const maps = JSON.parse(await run(['bpftool', '-j', '-f', 'map', 'show'])) as Array<{ id: number; pinned?: string[] }>;
  return new Set(maps.filter((m) => (m.pinned ?? []).some((p) => p === pinRoot || p.startsWith(`${pinRoot}/`))).map((m) => m.id));
}

/** The kernel's run statistics of every program using one of `mapIds`. */
export async function programStats(mapIds: ReadonlySet<number>): Promise<Map<number, ProgInfo>> {
  const progs = JSON.parse(await run(['bpftool', '-j', 'prog', 'show'])) as ProgInfo[];
  return new Map(progs.filter((p) => (p.map_ids ?? []).some((id) => mapIds.has(id))).map((p) => [p.id, p]));
}

function accumulate(totals: Map<string, ProgramTime>, before: ReadonlyMap<number, ProgInfo>, after: ReadonlyMap<number, ProgInfo>): void {
  // Each install loads programs anew (new ids): summed by name and type.
  for (const [id, prog] of after) {
    const was = before.get(id);
    const runs = (prog.run_cnt ?? 0) - (was?.run_cnt ?? 0);
    const runTimeNs = (prog.run_time_ns ?? 0) - (was?.run_time_ns ?? 0);
    const key = `${prog.name ?? '?'} ${prog.type}`;
    const sum = totals.get(key);
    totals.set(key, { name: prog.name ?? '?', type: prog.type, runs: (sum?.runs ?? 0) + runs, runTimeNs: (sum?.runTimeNs ?? 0) + runTimeNs });
  }
}

/**
 * Answers to client1 dropped in the DNS namespace's output (an nft table of the bench's own,
 * in the lab's DNS namespace), so a query travels its whole path and no answer comes back.
 */
async function dropAnswers(lab: Lab, table: string, drop: boolean): Promise<void> {
  const client = lab.endpoints.client1!;
  const input = drop
    ? `table inet ${table} {\n  chain output { type filter hook output priority 0; policy accept;\n    ip daddr ${client.ipv4} udp sport 53 drop\n  }\n}\n`
    : `delete table inet ${table}\n`;
  const result = await lab.exec('dns', ['nft', '-f', '-'], { input });
  if (result.code !== 0) throw new Error(`nft in the DNS namespace: ${result.stderr.trim()}`);
}

/** Sets kernel.bpf_stats_enabled to 1 until the returned function restores the previous value (also on exit). */
export function enableBpfStats(): () => void {
  const previous = readFileSync(BPF_STATS, 'utf8').trim();
  const restore = (): void => {
    try {
      writeFileSync(BPF_STATS, previous);
    } catch {
      // nothing more to do on the way out
    }
    process.off('exit', restore);
  };
  writeFileSync(BPF_STATS, '1');
  process.on('exit', restore);
  return restore;
}

/** Runs `body` with kernel.bpf_stats_enabled set to `value`, then restores what was there. */
export async function withBpfStats<T>(value: '0' | '1', body: () => Promise<T>): Promise<T> {
  const previous = readFileSync(BPF_STATS, 'utf8').trim();
  writeFileSync(BPF_STATS, value);
  try {
    return await body();
  } finally {
    writeFileSync(BPF_STATS, previous);
  }
}

/** CPU ticks (user + system) a process has used, its children that ended included. */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
}

/** The process's running children (every thread's). */
export function childrenOf(pid: number): Set<number> {
  const children = new Set<number>();
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    const listed = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
    for (const child of listed === '' ? [] : listed.split(' ')) children.add(Number(child));
  }
  return children;
}

/**
 * Waits until the process used no CPU tick over `quietMs` (its start-up work is done) and, with
 * `settledChildren`, runs no child but those (a check it started runs in tools it spawns), up to
 * a deadline.
 */
async function waitQuiet(pid: number, quietMs: number, timeoutMs: number, settledChildren?: ReadonlySet<number>): Promise<boolean> {
  let last = cpuTicks(pid);
  let since = Date.now();
  try {
    await waitFor(
      'the agent to go quiet',
      () => {
        const now = cpuTicks(pid);
        const busyChild = settledChildren !== undefined && [...childrenOf(pid)].some((child) => !settledChildren.has(child));
        if (now !== last || busyChild) {
          last = now;
          since = Date.now();
          return undefined;
        }
        return Date.now() - since >= quietMs ? true : undefined;
      },
      { timeoutMs },
    );
    return true;
  } catch {
    return false;
  }
}

export async function addedDnsLatency(
  lab: Lab,
  dataplane: string,
  policy: Record<string, unknown>,
  options: AddedDnsOptions,
  log: (message: string) => void,
): Promise<AddedDnsFigures> {
  const name = `dnsplane/${dataplane}`;
  const uncovered = lab.names.other.name;
  let agent: BenchAgent | undefined;
  let mapIds = new Set<number>();
  const install = async (): Promise<void> => {
    agent = new BenchAgent(lab, dataplane);
    agent.writeConfig();
    agent.writeResource('bench.yaml', [endpointDoc(lab), policy]);
    await agent.start(60_000);
    mapIds = await pinnedMapIds(agent.pinRoot);
    if (mapIds.size === 0) throw new Error(`no map pinned under ${agent.pinRoot}`);
    await waitQuiet(agent.process!.pid, 300, 10_000);
  };
  const uninstall = async (): Promise<void> => {
    const current = agent;
    agent = undefined;
    await current?.stop();
  };
  const blocks = { off: [] as Block[], on: [] as Block[] };
  const totals = new Map<string, ProgramTime>();
  const queryTotals = new Map<string, ProgramTime>();
  const suffix = Math.random().toString(16).slice(2, 8);
  const dropTable = `dnsplane_bench_${suffix}`;
  let exchanges = 0;
  let queriesSent = 0;
  let state: 'off' | 'on' = 'off';
  const enter = async (condition: 'off' | 'on'): Promise<void> => {
    if (condition === state) return;
    await (condition === 'on' ? install() : uninstall());
    state = condition;
  };
  const leave = async (): Promise<void> => {
    await uninstall().catch(() => undefined);
    state = 'off';
  };
  // After the rounds: installed once more, and its footprint switched as a whole (footprintToggle).
  const switchedFootprint = async (): Promise<NonNullable<AddedDnsFigures['switched']>> => {
    const pinPrefix = `/sys/fs/bpf/dnsplane-bswitch${suffix}`;
    let filters: TcFilter[] = [];
    try {
      log('    installed footprint, switched…');
      await enter('on');
      const agentProcess = agent!.process!;
      filters = await agentTcFilters(lab, mapIds, pinPrefix);
      const toggle = await footprintToggle(lab, dataplane, agentProcess, filters);
      await toggle.off();
      try {
        const covered = lab.allocateFresh(Math.ceil(options.switchedQueries! / 2)).map((f) => f.name);
        const names = blockQueries(covered, uncovered).map((q) => q.name);
        // 20 ms margins after each switch (its last packets in flight); bpf_stats off, as on a
        // node: its clock reads add to every program run.
        const measured = await withBpfStats('0', () => toggledAddedDns(lab, toggle, names, { segmentMs: 250, gapMs: options.gapMs, marginMs: 20, crossing: true }));
        return {
          addedUs: measured.addedUs,
          differences: measured.differences,
          offUs: measured.offUs,
          medianQueriesPerSegment: measured.medianQueriesPerSegment,
          ...(measured.crossing === undefined ? {} : { crossing: measured.crossing }),
        };
      } finally {
        await toggle.on();
      }
    } catch (error) {
      agent?.process?.kill('SIGCONT');
      return { addedUs: bootstrapMedian([]), differences: [], offUs: Number.NaN, medianQueriesPerSegment: 0, error: error instanceof Error ? error.message.split('\n')[0]! : String(error) };
    } finally {
      for (const filter of filters) rmSync(filter.pin, { force: true });
    }
  };
  try {
    await timeBlock(lab, lab.allocateFresh(20).map((f) => f.name), uncovered, options.gapMs); // warm-up
    for (let round = 0; round < options.rounds; round += 1) {
      const order = round % 2 === 0 ? (['off', 'on'] as const) : (['on', 'off'] as const);
      for (const condition of order) {
        await enter(condition);
        const installed = condition === 'on';
        const names = lab.allocateFresh(options.queries).map((f) => f.name);
        const before = installed ? await programStats(mapIds) : undefined;
        const block = await timeBlock(lab, names, uncovered, options.gapMs);
        if (before !== undefined) {
          accumulate(totals, before, await programStats(mapIds));
          exchanges += block.covered.length + block.uncovered.length;
          // The query's path alone: the same mix of queries, answers dropped in the DNS namespace.
          const queryNames = lab.allocateFresh(options.queries).map((f) => f.name);
          const queries = blockQueries(queryNames, uncovered);
          await dropAnswers(lab, dropTable, true);
          try {
            const beforeQueries = await programStats(mapIds);
            await timeQueries(lab, [{ address: lab.dnsServers.dnsmasq.ipv4, port: 53 }], queries, options.gapMs, { noWait: true });
            accumulate(queryTotals, beforeQueries, await programStats(mapIds));
            queriesSent += queries.length;
          } finally {
            await dropAnswers(lab, dropTable, false);
          }
        }
        blocks[condition].push(block);
      }
      log(`    round ${round + 1}/${options.rounds}`);
    }
  } catch (error) {
    await leave();
    return {
      ...figures(name, options, blocks, { totals, exchanges, queryTotals, queriesSent }),
      error: error instanceof Error ? error.message.split('\n')[0]! : String(error),
    };
  }
  const switched = (options.switchedQueries ?? 0) > 0 ? await switchedFootprint() : undefined;
  await leave();
  const result = { ...figures(name, options, blocks, { totals, exchanges, queryTotals, queriesSent }), ...(switched === undefined ? {} : { switched }) };
  if ((options.referenceQueries ?? 0) === 0) return result;
  log('    conntrack-only reference…');
  const toggle = nftToggle(lab, 'conntrack-only', `dnsplane_ref_${suffix}`, CONNTRACK_ONLY_BODY);
  try {
    // Nothing of dnsplane runs now: the name does not matter, the fresh source port does.
    const reference = await toggledAddedDns(lab, toggle, Array.from({ length: options.referenceQueries! }, () => uncovered), { segmentMs: 200, gapMs: options.gapMs, crossing: true });
    const switchedOverUs = switched !== undefined && switched.error === undefined ? bootstrapMedianDifference(switched.differences, reference.differences) : undefined;
    return {
      ...result,
      reference: {
        addedUs: reference.addedUs,
        ...(reference.crossing === undefined ? {} : { crossing: reference.crossing }),
        installedOverUs: bootstrapMedianDifference(result.roundDifferencesUs, reference.differences),
        ...(switchedOverUs === undefined ? {} : { switchedOverUs }),
      },
    };
  } catch (error) {
    await toggle.off().catch(() => undefined);
    const failed = bootstrapMedian([]);
    return { ...result, reference: { addedUs: failed, installedOverUs: failed, error: error instanceof Error ? error.message.split('\n')[0]! : String(error) } };
  }
}

function figures(
  name: string,
  options: AddedDnsOptions,
  blocks: { readonly off: readonly Block[]; readonly on: readonly Block[] },
  stats: {
    readonly totals: ReadonlyMap<string, ProgramTime>;
    readonly exchanges: number;
    readonly queryTotals: ReadonlyMap<string, ProgramTime>;
    readonly queriesSent: number;
  },
): AddedDnsFigures {
  const { totals, exchanges, queryTotals, queriesSent } = stats;
  const rounds = Math.min(blocks.off.length, blocks.on.length);
  const pairs = Array.from({ length: rounds }, (_, i) => ({ off: blocks.off[i]!, on: blocks.on[i]! }));
  const programs = [...totals.values()].filter((p) => p.runs > 0).sort((a, b) => b.runTimeNs - a.runTimeNs);
  const runTime = programs.reduce((sum, p) => sum + p.runTimeNs, 0);
  const queryPrograms = [...queryTotals.values()].filter((p) => p.runs > 0).sort((a, b) => b.runTimeNs - a.runTimeNs);
  const queryRunTime = queryPrograms.reduce((sum, p) => sum + p.runTimeNs, 0);
  const nsPerQuery = queryRunTime / Math.max(1, queriesSent);
  return {
    name,
    rounds,
    queriesPerBlock: options.queries,
    notInstalledUs: median(pairs.map((p) => median(p.off.covered))),
    installedUs: median(pairs.map((p) => median(p.on.covered))),
    addedUs: bootstrapMedian(pairs.map((p) => median(p.on.covered) - median(p.off.covered))),
    roundDifferencesUs: pairs.map((p) => median(p.on.covered) - median(p.off.covered)),
    addedUncoveredUs: bootstrapMedian(pairs.map((p) => median(p.on.uncovered) - median(p.off.uncovered))),
    learningShareUs: bootstrapMedian(
      pairs.map((p) => median(p.on.covered) - median(p.on.uncovered) - (median(p.off.covered) - median(p.off.uncovered))),
    ),
    ...(exchanges > 0
      ? {
          inPath: {
            exchanges,
            nsPerExchange: runTime / exchanges,
            programs,
            queries: queriesSent,
            nsPerQuery,
            queryPrograms,
            nsPerAnswer: runTime / exchanges - nsPerQuery,
          },
        }
      : {}),
    unanswered: [...blocks.off, ...blocks.on].reduce((n, b) => n + b.unanswered, 0),
  };
}

// ---------------------------------------------------------------------------------------------
// Causes (`--causes`): what a condition that can be switched in milliseconds adds to the DNS
// answer time. One timing process in client1 sends N queries back to back (the same gap as the
// blocks) and stamps each send; meanwhile the condition is switched on and off every
// `segmentMs`. A query counts for a segment when it was sent ≥ 2 ms after the switch into it
// completed and answered before the switch out of it began. Per "on" segment: its median minus
// the mean of the two neighbouring "off" segments' medians; reported: the median of those
// differences and its bootstrap interval. Segments of ~0.2 s give ~100 pairs in a minute,
// against 12 pairs of the install/uninstall rounds: drift between the conditions is nearly gone,
// which is what makes a 5–10 µs effect visible on this machine.

export interface Toggle {
  readonly name: string;
  /** Switch the condition on / off; resolves when the switch is complete. */
  on(): Promise<void>;
  off(): Promise<void>;
}

export interface ToggleFigures {
  readonly name: string;
  readonly queries: number;
  /** Median over segments of the "off" segments' medians, µs. */
  readonly offUs: number;
  /** on − mean(neighbouring off), µs. */
  readonly addedUs: Estimate;
  /** The per-segment values behind addedUs. */
  readonly differences: readonly number[];
  readonly medianQueriesPerSegment: number;
  /**
   * With `crossing`: the same per segment for the time the node took to carry each message,
   * from two packet captures (test/lab/capture.ts) — the query from the client's edge to the
   * DNS namespace's, the answer back. Nothing of either end's scheduling is in it.
   */
  readonly crossing?: {
    readonly query: CrossingFigures;
    readonly answer: CrossingFigures;
    /** Query + answer, per exchange. */
    readonly both: CrossingFigures;
    /** Queries whose both crossings were seen; frames the kernel dropped before tcpdump read them. */
    readonly paired: number;
    readonly dropped: number;
  };
  readonly error?: string;
}

export interface CrossingFigures {
  readonly offUs: number;
  readonly addedUs: Estimate;
  readonly differences: readonly number[];
}

interface Segment {
  readonly on: boolean;
  readonly start: bigint;
  readonly end: bigint;
}

/**
 * Segment medians of stamped answer times (NaN for a segment with fewer than 10 answers): of
 * the answer times themselves, or of `values` (one per query, undefined where missing) of the
 * queries whose whole exchange fell inside the segment.
 */
export function segmentMedians(
  segments: readonly Segment[],
  us: ReadonlyArray<number | null>,
  t0ns: readonly string[],
  marginNs = 2_000_000n,
  values: ReadonlyArray<number | null | undefined> = us,
): Array<{ on: boolean; median: number; count: number }> {
  return segments.map((segment) => {
    const inside: number[] = [];
    us.forEach((answerUs, i) => {
      const value = values[i];
      if (answerUs === null || value === null || value === undefined || t0ns[i] === undefined) return;
      const t0 = BigInt(t0ns[i]!);
      if (t0 >= segment.start + marginNs && t0 + BigInt(Math.round(answerUs * 1000)) <= segment.end) inside.push(value);
    });
    return { on: segment.on, median: inside.length >= 10 ? median(inside) : Number.NaN, count: inside.length };
  });
}

/** Per "on" segment between two "off" segments: on − mean(off before, off after). */
export function segmentDifferences(medians: ReadonlyArray<{ on: boolean; median: number }>): number[] {
  const differences: number[] = [];
  for (let i = 1; i + 1 < medians.length; i += 1) {
    const [before, here, after] = [medians[i - 1]!, medians[i]!, medians[i + 1]!];
    if (here.on && !before.on && !after.on) differences.push(here.median - (before.median + after.median) / 2);
  }
  return differences.filter((d) => Number.isFinite(d));
}

/**
 * Switched segments (bench/README.md, Method): `names` timed from client1 while `toggle` is
 * switched every `segmentMs`; with `crossing`, also the node's share from packet captures at
 * both edges. The captures are stopped and their files removed whatever happens.
 */
export async function toggledAddedDns(
  lab: Lab,
  toggle: Toggle,
  names: readonly string[],
  options: { readonly segmentMs: number; readonly gapMs: number; readonly marginMs?: number; readonly crossing?: boolean },
): Promise<ToggleFigures> {
  const captures = options.crossing === true ? await startCrossingCaptures(lab) : undefined;
  try {
    return await timeToggled(lab, toggle, names, options, captures);
  } finally {
    // Stopped already when the run got that far; the files' records were read.
    for (const capture of captures === undefined ? [] : [captures.client, captures.server]) {
      await capture.stop(0, 0).catch(() => undefined);
      rmSync(capture.file, { force: true });
    }
  }
}

/** toggledAddedDns' run, with the captures it started (if any). */
async function timeToggled(
  lab: Lab,
  toggle: Toggle,
  names: readonly string[],
  options: { readonly segmentMs: number; readonly gapMs: number; readonly marginMs?: number },
  captures: { readonly client: Capture; readonly server: Capture } | undefined,
): Promise<ToggleFigures> {
  const input = JSON.stringify({
    servers: [{ address: lab.dnsServers.dnsmasq.ipv4, port: 53 }],
    queries: names.map((name) => ({ name, server: 0 })),
    gapMs: options.gapMs,
    timeoutMs: 1000,
    stamps: true,
  });
  let finished = false;
  const timing = lab
    .exec('client1', ['node', '--import', 'tsx', DNS_TIMING], { input, timeoutMs: 60_000 + names.length * (options.gapMs + 1000) })
    .finally(() => (finished = true));
  const segments: Segment[] = [];
  let on = false;
  try {
    let start = process.hrtime.bigint();
    while (!finished) {
      // The segment's length is what is being measured over, not a synchronisation.
      await new Promise((resolve) => setTimeout(resolve, options.segmentMs));
      segments.push({ on, start, end: process.hrtime.bigint() });
      on = !on;
      await (on ? toggle.on() : toggle.off());
      start = process.hrtime.bigint();
    }
  } finally {
    if (on) await toggle.off();
  }
  const result = await timing;
  if (result.code !== 0) throw new Error(`dns timing in client1 failed (code ${result.code}): ${result.stderr.trim().slice(-1000)}`);
  const out = JSON.parse(result.stdout) as { us: Array<number | null>; t0ns: string[]; keys: string[] };
  const marginNs = BigInt(Math.round((options.marginMs ?? 2) * 1_000_000));
  const summary = (values: ReadonlyArray<number | null | undefined>): CrossingFigures & { medians: ReturnType<typeof segmentMedians> } => {
    const medians = segmentMedians(segments, out.us, out.t0ns, marginNs, values);
    const differences = segmentDifferences(medians);
    return { medians, differences, offUs: median(medians.filter((m) => !m.on && Number.isFinite(m.median)).map((m) => m.median)), addedUs: bootstrapMedian(differences) };
  };
  const answers = summary(out.us);
  let crossing: ToggleFigures['crossing'];
  if (captures !== undefined) {
    // Each side holds every query sent and every answer that came.
    const expected = out.keys.filter((key) => key !== '').length + out.us.filter((us) => us !== null).length;
    const client = await captures.client.stop(expected);
    const server = await captures.server.stop(expected);
    const crossings = dnsCrossings(dnsSightings(client.records), dnsSightings(server.records));
    const of = (key: string): { queryUs?: number; answerUs?: number } => crossings.get(key) ?? {};
    const query = summary(out.keys.map((key) => of(key).queryUs));
    const answer = summary(out.keys.map((key) => of(key).answerUs));
    const both = summary(out.keys.map((key) => {
      const { queryUs, answerUs } = of(key);
      return queryUs === undefined || answerUs === undefined ? undefined : queryUs + answerUs;
    }));
    const figures = (f: typeof query): CrossingFigures => ({ offUs: f.offUs, addedUs: f.addedUs, differences: f.differences });
    crossing = {
      query: figures(query),
      answer: figures(answer),
      both: figures(both),
      paired: out.keys.filter((key) => of(key).queryUs !== undefined && of(key).answerUs !== undefined).length,
      dropped: client.dropped + server.dropped,
    };
  }
  return {
    name: toggle.name,
    queries: names.length,
    differences: answers.differences,
    offUs: answers.offUs,
    addedUs: answers.addedUs,
    medianQueriesPerSegment: median(answers.medians.map((m) => m.count)),
    ...(crossing === undefined ? {} : { crossing }),
  };
}

let captureCount = 0;

/** Captures of DNS at client1's edge and the DNS namespace's (test/lab/capture.ts). */
async function startCrossingCaptures(lab: Lab): Promise<{ readonly client: Capture; readonly server: Capture }> {
  captureCount += 1;
  const file = (side: string): string => join(lab.directory, `crossing-${captureCount}-${side}.pcap`);
  const client = await startCapture(lab, 'client1', `capture-${captureCount}-client`, file('client'), 'udp port 53');
  try {
    const server = await startCapture(lab, 'dns', `capture-${captureCount}-dns`, file('dns'), 'udp port 53');
    return { client, server };
  } catch (error) {
    await client.stop(0, 0).catch(() => undefined);
    throw error;
  }
}

/** Runs an nft script (`nft -f -`) in the lab's node namespace; throws with nft's message. */
async function nftScript(lab: Lab, input: string): Promise<void> {
  const result = await lab.exec('node', ['nft', '-f', '-'], { input });
  if (result.code !== 0) throw new Error(`nft in the node namespace: ${result.stderr.trim()}`);
}

/** An nft table of the bench's own in the node namespace, present while on. */
export function nftToggle(lab: Lab, name: string, table: string, body: string): Toggle {
  const apply = (input: string): Promise<void> => nftScript(lab, input);
  return {
    name,
    on: () => apply(`table inet ${table} {\n${body}}\n`),
    off: () => apply(`table inet ${table}\ndelete table inet ${table}\n`),
  };
}

/**
 * The nftables dataplane's untracked-DNS rules (its `prerouting_untrack` chain), present while
 * on; off, the workload's DNS is tracked again and its answers pass as `established` — the same
 * agent, table and BPF either way. Undefined when the table has no such rules.
 */
export async function untrackToggle(lab: Lab, table: string): Promise<Toggle | undefined> {
  const chain = 'prerouting_untrack';
  const listing = await lab.exec('node', ['nft', 'list', 'chain', 'inet', table, chain]);
  if (listing.code !== 0) return undefined;
  const rules = listing.stdout
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.endsWith('notrack') || /notrack comment /.test(line));
  if (rules.length === 0) return undefined;
  const apply = (input: string): Promise<void> => nftScript(lab, input);
  return {
    name: 'untracked DNS (its notrack rules, vs tracked)',
    on: () => apply(rules.map((rule) => `add rule inet ${table} ${chain} ${rule}\n`).join('')),
    off: () => apply(`flush chain inet ${table} ${chain}\n`),
  };
}

export interface TcFilter {
  readonly dev: string;
  readonly direction: 'ingress' | 'egress';
  readonly pref: number;
  readonly handle: string;
  readonly pin: string;
}

/**
 * The agent's classic tc filters in the node namespace (those whose program uses one of its
 * maps), each program pinned under `pinPrefix` so it can be attached again after a delete.
 */
export async function agentTcFilters(lab: Lab, mapIds: ReadonlySet<number>, pinPrefix: string): Promise<TcFilter[]> {
  const programs = await programStats(mapIds);
  const links = JSON.parse((await lab.exec('node', ['ip', '-j', 'link', 'show'])).stdout) as Array<{ ifname: string }>;
  const filters: TcFilter[] = [];
  for (const { ifname } of links) {
    for (const direction of ['ingress', 'egress'] as const) {
      const listing = await lab.exec('node', ['tc', '-j', 'filter', 'show', 'dev', ifname, direction]);
      if (listing.code !== 0 || listing.stdout.trim() === '') continue;
      for (const filter of JSON.parse(listing.stdout) as Array<{ pref?: number; options?: { handle?: string; prog?: { id?: number } } }>) {
        const id = filter.options?.prog?.id;
        if (id === undefined || filter.pref === undefined || !programs.has(id)) continue;
        const pin = `${pinPrefix}-${id}`;
        // One program may sit on several hooks (the parser): pinned once.
        if (!filters.some((f) => f.pin === pin)) await run(['bpftool', 'prog', 'pin', 'id', String(id), pin]);
        filters.push({ dev: ifname, direction, pref: filter.pref, handle: filter.options?.handle ?? '0x1', pin });
      }
    }
  }
  return filters;
}

/** Runs tc commands (without the leading `tc`) in the node namespace in one process (`tc -batch -`). */
async function tcBatch(lab: Lab, commands: readonly string[]): Promise<void> {
  const result = await lab.exec('node', ['tc', '-batch', '-'], { input: commands.map((c) => `${c}\n`).join('') });
  if (result.code !== 0) throw new Error(`tc -batch in the node namespace: ${result.stderr.trim()}`);
}

function tcToggle(lab: Lab, filters: readonly TcFilter[]): Toggle {
  return {
    name: `the agent's tc programs (${filters.length} filters)`,
    on: () => tcBatch(lab, filters.map((f) => `filter add dev ${f.dev} ${f.direction} pref ${f.pref} handle ${f.handle} bpf da object-pinned ${f.pin}`)),
    off: () => tcBatch(lab, filters.map((f) => `filter del dev ${f.dev} ${f.direction} pref ${f.pref}`)),
  };
}

/**
 * An nft table of the agent's, emptied while off (its chains and sets deleted, the table left:
 * the agent's removal watch hears only a table's deletion) and filled again from its listing
 * while on (the elements' remaining lifetimes left out: each comes back with its full timeout).
 */
async function nftTableToggle(lab: Lab, table: string): Promise<Toggle> {
  const listing = await lab.exec('node', ['nft', 'list', 'table', 'inet', table]);
  if (listing.code !== 0) throw new Error(`nft list table inet ${table}: ${listing.stderr.trim()}`);
  const text = listing.stdout.replace(/ expires [0-9dhms]+/g, '');
  const chains = [...text.matchAll(/^\tchain (\S+) \{/gm)].map((m) => m[1]!);
  const sets = [...text.matchAll(/^\t(set|map) (\S+) \{/gm)].map((m) => ({ kind: m[1]!, name: m[2]! }));
  const empty = [`flush table inet ${table}`, ...chains.map((c) => `delete chain inet ${table} ${c}`), ...sets.map((set) => `delete ${set.kind} inet ${table} ${set.name}`)];
  return {
    name: `its nft table inet ${table}`,
    on: () => nftScript(lab, text),
    off: () => nftScript(lab, `${empty.join('\n')}\n`),
  };
}

const NOTHING_SAVED: SavedTable = { name: 'filter', chains: [], rules: [], jumps: [], foreignRules: 0 };

/**
 * The iptables dataplane's filter-table objects (whichever backend holds them, both families):
 * removed while off — chains, rules and the built-in chains' jumps, so connection tracking
 * goes too — and restored as saved while on (iptables' own rollback input, both ways).
 */
async function iptablesToggle(lab: Lab): Promise<Toggle> {
  const held: Array<{ restore: string; saved: SavedTable }> = [];
  for (const backend of ['legacy', 'nft'] as const) {
    for (const tool of ['iptables', 'ip6tables'] as const) {
      const saved = await lab.exec('node', [`${tool}-${backend}-save`, '-t', 'filter']);
      if (saved.code !== 0) continue;
      const table = parseSavedTable(saved.stdout, 'filter');
      if (table.chains.length > 0) held.push({ restore: `${tool}-${backend}-restore`, saved: table });
    }
  }
  if (held.length === 0) throw new Error('no DNSPLANE chain in either iptables backend');
  const apply = async (input: (saved: SavedTable) => string): Promise<void> => {
    for (const { restore, saved } of held) {
      const result = await lab.exec('node', [restore, '--noflush'], { input: input(saved) });
      if (result.code !== 0) throw new Error(`${restore}: ${result.stderr.trim()}`);
    }
  };
  return {
    name: `its iptables chains (${held.map((h) => h.restore.replace(/-restore$/, '')).join(', ')})`,
    on: () => apply((saved) => rollbackInput(saved, NOTHING_SAVED)),
    off: () => apply((saved) => rollbackInput(NOTHING_SAVED, saved)),
  };
}

/**
 * Everything an installed agent puts on the node, switched as one: off = the agent's process
 * SIGSTOPped (its drift check would repair what follows), its tc filters deleted (the clsact
 * qdiscs stay), its netfilter objects removed; on = the same restored in reverse order — the
 * filters attached again from their pinned programs — and the process continued. The BPF maps
 * stay pinned either way (off the packets' path). What the install rounds compare — installed
 * against not — with a switch that takes milliseconds instead of seconds. The agent hears the
 * filters go and come (its tc watch) and iptables-nft rule deletions (iptables-legacy has no
 * watch) only once continued, with everything back: its check finds nothing to repair, and
 * each "on" starts once the continued agent is quiet. (Until 2026-12-04 night the filters
 * stayed with a classic `return 0` swapped in, so the agent heard nothing; but their dispatch,
 * 0.7–1.1 µs of an exchange by the crossing captures, then counted as "not installed".)
 */
export async function footprintToggle(
  lab: Lab,
  dataplane: string,
  agentProcess: { readonly pid: number; kill(signal: NodeJS.Signals): unknown },
  filters: readonly TcFilter[],
): Promise<Toggle> {
  const netfilter = dataplane === 'nftables' ? await nftTableToggle(lab, 'dnsplane') : dataplane === 'iptables' ? await iptablesToggle(lab) : undefined;
  const tc = tcToggle(lab, filters);
  // Its long-lived children (the watches' monitors): any other is a check at work.
  const monitors = childrenOf(agentProcess.pid);
  return {
    name: `dnsplane/${dataplane} installed (process, ${filters.length} tc filters${netfilter === undefined ? '' : `, ${netfilter.name}`}) vs none of it`,
    on: async () => {
      await netfilter?.on();
      if (filters.length > 0) await tc.on();
      agentProcess.kill('SIGCONT');
      // What the continued agent does first (timers that fell due while it was stopped, the
      // check its tc watch and, on iptables-nft, its rule watch start for what they heard go)
      // belongs to the switch: the segment starts once it is quiet again.
      await waitQuiet(agentProcess.pid, 50, 2_000, monitors);
    },
    off: async () => {
      agentProcess.kill('SIGSTOP');
      if (filters.length > 0) await tc.off();
      await netfilter?.off();
    },
  };
}

export const CONNTRACK_ONLY_BODY = '  chain forward { type filter hook forward priority filter; policy accept;\n    ct state established,related accept\n  }\n';
export const HOOK_ONLY_BODY = '  chain forward { type filter hook forward priority filter; policy accept;\n    udp dport 53 counter accept\n  }\n';

/**
 * The causes of one dataplane's end-to-end figure, each switched in segments while everything
 * else stays: (without the agent) a conntrack-only table and a forward hook without conntrack;
 * (with the agent installed) its process's CPU (SIGSTOP / SIGCONT of its process group) and its
 * classic tc filters (deleted / attached again from pins, the agent SIGSTOPped meanwhile: its drift
 * check would attach them again).
 */
export async function dnsCauses(
  lab: Lab,
  dataplane: string,
  policy: Record<string, unknown>,
  options: {
    readonly queries: number;
    readonly segmentMs: number;
    readonly gapMs: number;
    readonly netfilter: boolean;
    /** Merged into the agent's config (e.g. nftables.mirrorDrainIntervalMs). */
    readonly agentConfig?: Record<string, unknown>;
  },
  log: (message: string) => void,
): Promise<ToggleFigures[]> {
  const pool = lab.allocateFresh(Math.min(options.queries, 8000)).map((f) => f.name);
  let next = 0;
  const names = (): string[] => Array.from({ length: options.queries }, () => pool[next++ % pool.length]!);
  const figures: ToggleFigures[] = [];
  const measure = async (
    toggle: Toggle,
    how: { readonly names?: readonly string[]; readonly segmentMs?: number; readonly marginMs?: number } = {},
  ): Promise<void> => {
    log(`    ${toggle.name}…`);
    try {
      const { names: chosen = names(), ...segments } = how;
      figures.push(await toggledAddedDns(lab, toggle, chosen, { ...options, ...segments, crossing: true }));
    } catch (error) {
      figures.push({ name: toggle.name, queries: 0, differences: [], offUs: Number.NaN, addedUs: bootstrapMedian([]), medianQueriesPerSegment: 0, error: error instanceof Error ? error.message.split('\n')[0]! : String(error) });
    }
  };
  const suffix = Math.random().toString(16).slice(2, 8);
  if (options.netfilter) {
    await measure(nftToggle(lab, 'conntrack-only nft table (ct state established,related accept)', `dnsplane_ref_${suffix}`, CONNTRACK_ONLY_BODY));
    await measure(nftToggle(lab, 'forward hook, no conntrack (udp dport 53 counter accept)', `dnsplane_hook_${suffix}`, HOOK_ONLY_BODY));
  }
  const agent = new BenchAgent(lab, dataplane);
  const pinPrefix = `/sys/fs/bpf/dnsplane-bcause${suffix}`;
  let filters: TcFilter[] = [];
  try {
    agent.writeConfig(options.agentConfig);
    agent.writeResource('bench.yaml', [endpointDoc(lab), policy]);
    await agent.start(60_000);
    const mapIds = await pinnedMapIds(agent.pinRoot);
    await waitQuiet(agent.process!.pid, 300, 10_000);
    const agentProcess = agent.process!;
    agentProcess.kill('SIGSTOP');
    try {
      await measure({ name: `dnsplane/${dataplane} agent process running (vs SIGSTOPped)`, on: async () => agentProcess.kill('SIGCONT'), off: async () => agentProcess.kill('SIGSTOP') });
    } finally {
      agentProcess.kill('SIGCONT');
    }
    const untrack = dataplane === 'nftables' ? await untrackToggle(lab, 'dnsplane') : undefined;
    if (untrack !== undefined) {
      await untrack.off();
      try {
        await measure({ ...untrack, name: `dnsplane/${dataplane} ${untrack.name}` });
      } finally {
        await untrack.on().catch(() => undefined);
      }
    }
    filters = await agentTcFilters(lab, mapIds, pinPrefix).catch((error: unknown) => {
      figures.push({ name: `dnsplane/${dataplane} tc programs`, queries: 0, differences: [], offUs: Number.NaN, addedUs: bootstrapMedian([]), medianQueriesPerSegment: 0, error: error instanceof Error ? error.message.split('\n')[0]! : String(error) });
      return [];
    });
    if (filters.length > 0) {
      // The agent repairs a missing tc filter (its drift check): stopped while they switch.
      const toggle = tcToggle(lab, filters);
      agentProcess.kill('SIGSTOP');
      try {
        await toggle.off();
        try {
          await measure({ ...toggle, name: `dnsplane/${dataplane} ${toggle.name} (agent SIGSTOPped)` });
        } finally {
          await toggle.on().catch(() => undefined);
        }
      } finally {
        agentProcess.kill('SIGCONT');
      }
    }
    // Last: all of it at once, as the rounds' "switched" column measures it.
    const footprint = await footprintToggle(lab, dataplane, agentProcess, filters);
    await footprint.off();
    try {
      const covered = pool.slice(0, Math.ceil(options.queries / 2));
      await measure(footprint, { names: covered.flatMap((name) => [name, lab.names.other.name]), segmentMs: 250, marginMs: 20 });
    } finally {
      await footprint.on().catch(() => undefined);
    }
  } finally {
    await agent.stop();
    for (const filter of filters) rmSync(filter.pin, { force: true });
    for (const entry of readdirSync('/sys/fs/bpf')) if (`/sys/fs/bpf/${entry}`.startsWith(`${pinPrefix}-`)) rmSync(`/sys/fs/bpf/${entry}`, { force: true });
  }
  return figures;
}
