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
// In path: with kernel.bpf_stats_enabled=1 for the run (restored afterwards), the kernel's
// run_time_ns / run_cnt of every BPF program of this agent (the programs that use a map pinned
// under its pin root), summed over the installed blocks, divided by the DNS exchanges: the
// time dnsplane's code is on the packets' path per query + answer. After each installed block
// the same mix of queries is sent once more while the DNS namespace drops the answers: the
// query's path alone; the difference is the answer's path, the time dnsplane adds to a DNS
// response on its way to the client.
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Lab } from '../test/lab/lab.js';
import { waitFor } from '../test/lab/wait.js';
import { BenchAgent, endpointDoc } from './enforce-agent.js';
import { bootstrapMedian, median, type Estimate } from './paired.js';

const DNS_TIMING = join(dirname(fileURLToPath(import.meta.url)), '..', 'test', 'lab', 'scripts', 'dns-timing.ts');
const BPF_STATS = '/proc/sys/kernel/bpf_stats_enabled';

export interface AddedDnsOptions {
  readonly rounds: number;
  /** Covered names per block (and as many uncovered answers). */
  readonly queries: number;
  /** Pause between queries, ms. */
  readonly gapMs: number;
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
  /** The same for the uncovered name (parsed, nothing learned), µs. */
  readonly addedUncoveredUs: Estimate;
  /** (covered − uncovered) installed minus the same not installed, µs. */
  readonly learningShareUs: Estimate;
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

/** CPU ticks (user + system) a process has used. */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** Waits until the process used no CPU tick over `quietMs` (its start-up work is done), up to a deadline. */
async function waitQuiet(pid: number, quietMs: number, timeoutMs: number): Promise<boolean> {
  let last = cpuTicks(pid);
  let since = Date.now();
  try {
    await waitFor(
      'the agent to go quiet',
      () => {
        const now = cpuTicks(pid);
        if (now !== last) {
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
  const dropTable = `dnsplane_bench_${Math.random().toString(16).slice(2, 8)}`;
  let exchanges = 0;
  let queriesSent = 0;
  try {
    await timeBlock(lab, lab.allocateFresh(20).map((f) => f.name), uncovered, options.gapMs); // warm-up
    let installed = false;
    for (let round = 0; round < options.rounds; round += 1) {
      const order = round % 2 === 0 ? (['off', 'on'] as const) : (['on', 'off'] as const);
      for (const condition of order) {
        if (condition === 'on' && !installed) await install();
        if (condition === 'off' && installed) await uninstall();
        installed = condition === 'on';
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
    await uninstall().catch(() => undefined);
    return {
      ...figures(name, options, blocks, { totals, exchanges, queryTotals, queriesSent }),
      error: error instanceof Error ? error.message.split('\n')[0]! : String(error),
    };
  }
  await uninstall();
  return figures(name, options, blocks, { totals, exchanges, queryTotals, queriesSent });
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
