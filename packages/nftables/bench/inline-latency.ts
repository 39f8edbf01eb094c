// Measures the nftables dataplane's inline guarantee (needs root; ~1–2 min):
//  1. in a lab, the mirror alone: from the moment the tc parser learned an address (kernel
//     clock) to the ring-buffer delivery in the driver and to the end of the libnftables
//     write into the nft set, p50/p99 over N fresh names resolved then connected by client1;
//     plus the clients' first SYNs (none may be retransmitted: the mark path does not wait);
//  2. the cost per packet of the tc membership mark (BPF_PROG_TEST_RUN, 200,000 repeats).
// Usage: npx tsx packages/nftables/bench/inline-latency.ts [--trials N] [--no-mark] [--json FILE]
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DNSPLANE_TC_FILTERS, DnsParserProgram, MembershipMarker } from '@dnsplane/bpf-parser';
import { createLab } from '../../../test/lab/lab.js';
import { clientInterface, writeLabConfig } from '../test/scripts/lab-config.js';

const args = process.argv.slice(2);
const option = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const TRIALS = Number(option('--trials') ?? 1000);
const JSON_FILE = option('--json');
/** --no-mark: detach the membership marker after install, leaving the mirror alone (the comparison). */
const NO_MARK = args.includes('--no-mark');
const SCRIPT = fileURLToPath(new URL('../test/scripts/run-driver.ts', import.meta.url));
/** max(TTL 60, minTTL 30) + extraTTL 10 for the lab's fresh names. */
const LIFETIME_S = 70;

const quantile = (values: readonly number[], q: number): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
};
const summary = (values: readonly number[]) => ({
  n: values.length,
  p50: quantile(values, 0.5),
  p99: quantile(values, 0.99),
  max: Math.max(...values),
});

async function mirrorLatency() {
  const suffix = randomBytes(4).toString('hex');
  const table = `dnsplane_t${suffix}`;
  const pinRoot = `/sys/fs/bpf/dnsplane-t${suffix}`;
  const lab = await createLab({ clients: 1, freshNames: TRIALS + 10 });
  const dir = await mkdtemp(join(tmpdir(), 'dnsplane-nft-bench-'));
  try {
    const config = await writeLabConfig(lab, dir, { table, pinRoot });
    const driver = lab.startAgentProcess(['npx', 'tsx', SCRIPT, 'install', config], { env: { DNSPLANE_MIRROR_PROBE: String(LIFETIME_S) } });
    await driver.waitForOutput(/"event":"installed"/, 60_000);
    if (NO_MARK) {
      const slot = DNSPLANE_TC_FILTERS.membershipMark;
      const del = await lab.exec('node', ['tc', 'filter', 'del', 'dev', clientInterface(lab), 'ingress', 'pref', String(slot.priority), 'handle', `0x${slot.handle.toString(16)}`, 'bpf']);
      if (del.code !== 0) throw new Error(`tc filter del: ${del.stderr}`);
    }
    const trials = lab.allocateFresh(TRIALS).map((f) => ({ name: f.name, port: 80 }));
    const batch = await lab.connectAfterResolveBatch('client1', trials);
    // Every address is in the nft set once the driver has written it: wait for the last one.
    const last = trials.at(-1)?.name ?? '';
    const lastAddress = batch.trials.find((t) => t.name === last)?.address ?? '';
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const listing = await lab.exec('node', ['nft', 'list', 'table', 'inet', table]);
      if (listing.stdout.includes(`${lastAddress} `)) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await driver.stop();
    const line = driver.stdout().split('\n').find((l) => l.includes('"event":"probe"'));
    if (line === undefined) throw new Error(`driver printed no probe:\n${driver.stdout()}\n${driver.stderr()}`);
    const probe = JSON.parse(line) as { deliveredUs: number[]; writtenUs: number[]; batchSizes: number[] };
    const removal = lab.startAgentProcess(['npx', 'tsx', SCRIPT, 'remove', config], { name: 'remove' });
    await removal.waitForOutput(/"event":"removed"/, 30_000).finally(() => removal.stop());
    const answerToSyn = batch.trials.flatMap((t) => (t.answerToSynUs === null ? [] : [t.answerToSynUs]));
    return {
      membershipMark: !NO_MARK,
      trials: TRIALS,
      connected: batch.trials.filter((t) => t.connected).length,
      synRetransmits: batch.counters.synRetransmits,
      answerToSynUs: summary(answerToSyn),
      learnedToDeliveredUs: summary(probe.deliveredUs),
      learnedToNftWrittenUs: summary(probe.writtenUs),
      batches: probe.batchSizes.length,
      meanBatch: probe.batchSizes.reduce((a, b) => a + b, 0) / Math.max(1, probe.batchSizes.length),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
    await rm(pinRoot, { recursive: true, force: true });
    await lab.destroy();
  }
}

/** Ethernet + IPv4 + TCP SYN to `dst` (198.18.0.0/15 lab addresses only). */
function synFrame(dst: string): Buffer {
  const frame = Buffer.alloc(14 + 20 + 20);
  frame.writeUInt16BE(0x0800, 12);
  const ip = 14;
  frame[ip] = 0x45;
  frame.writeUInt16BE(40, ip + 2);
  frame[ip + 8] = 64;
  frame[ip + 9] = 6;
  Buffer.from([198, 18, 1, 2]).copy(frame, ip + 12);
  Buffer.from(dst.split('.').map(Number)).copy(frame, ip + 16);
  const tcp = ip + 20;
  frame.writeUInt16BE(40000, tcp);
  frame.writeUInt16BE(80, tcp + 2);
  frame[tcp + 12] = 0x50;
  frame[tcp + 13] = 0x02;
  return frame;
}

function markCost() {
  const pinRoot = `/sys/fs/bpf/dnsplane-t${randomBytes(4).toString('hex')}`;
  const parser = DnsParserProgram.load({ pinRoot });
  const marker = MembershipMarker.load({ pinRoot });
  try {
    const expiresAt = Date.now() + 600_000;
    const SKB_SIZE = 192;
    const run = (ifindex: number, dst: string): number => {
      const ctx = Buffer.alloc(SKB_SIZE);
      ctx.writeUInt32LE(ifindex, 40);
      const samples: number[] = [];
      for (let i = 0; i < 7; i++) samples.push(marker.program.testRun({ data: synFrame(dst), ctx, repeat: 200_000 }).durationNs);
      return quantile(samples, 0.5);
    };
    const results: Record<string, number> = {};
    results['interface not an endpoint'] = run(2, '198.19.0.1');
    for (const count of [1, 8, 32]) {
      const entries = Array.from({ length: count }, (_, i) => ({ setId: 100 + i, bit: 2 ** (i % 32) }));
      const mask = count === 32 ? 0xffffffff : entries.reduce((m, e) => (m | e.bit) >>> 0, 0);
      marker.setEndpointSets(1, mask, entries);
      parser.importLearned([{ setId: 100 + count - 1, family: 4, address: '198.19.0.1', expiresAt }]);
      results[`${count} set(s), destination a member of the last`] = run(1, '198.19.0.1');
      results[`${count} set(s), destination in none`] = run(1, '198.19.0.2');
    }
    return results;
  } finally {
    marker.close();
    parser.close();
    DnsParserProgram.removePins(pinRoot);
  }
}

const marks = NO_MARK ? {} : markCost();
const mirror = await mirrorLatency();
const report = { mirror, markNsPerPacket: marks };
process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
if (JSON_FILE !== undefined) await writeFile(JSON_FILE, JSON.stringify(report, null, 2));
