// The iptables dataplane end to end, inline: the real agent (`dnsplane run`, built with
// `tsc -b`) runs in the lab's node namespace with `dataplane: iptables`; a workload resolves
// and connects to fresh names at once. Shared by one test file per backend (each < 90 s).
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import dnsPacket from 'dns-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BpfMap, decodeMemberKey, MAP_NAMES, readCounters } from '@dnsplane/bpf-parser';
import type { LabProcess } from '../../../test/lab/lab.js';
import { useLab } from '../../../test/lab/vitest-lab.js';
import { expectEveryFirstSynPasses } from '../../../test/lab/first-syn.js';
import { waitFor } from '../../../test/lab/wait.js';
import { pendingLearnedEventRecords } from '../../../test/lab/learned-events.js';
import { createIptablesDataplane, inlineParsing } from '../src/index.js';
import type { ResolvedBackend } from '../src/index.js';
import { inNetns, netnsRunner } from './netns.js';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const AGENT_BIN = join(REPO_ROOT, 'packages/agent/bin/dnsplane.js');
const ALLOWED = '*.fresh.lab.test';
const PORT = 80;
/** 40 A records: over UDP the answer is truncated (TC), glibc asks again over TCP. */
const MANY = 'many.lab.test';

/** Addresses in the kernel membership maps under `pinRoot` (any set, unexpired or not). */
function members(pinRoot: string): string[] {
  const out: string[] = [];
  for (const [family, role] of [[4, 'members4'], [6, 'members6']] as const) {
    const map = BpfMap.fromPinned(join(pinRoot, MAP_NAMES[role]));
    try {
      for (const key of map.keys()) out.push(decodeMemberKey(family, key).address);
    } finally {
      map.close();
    }
  }
  return out;
}

function parserCounters(pinRoot: string): Record<string, number> {
  const map = BpfMap.fromPinned(join(pinRoot, MAP_NAMES.counters));
  try {
    return readCounters(map);
  } finally {
    map.close();
  }
}

export function inlineAgentSuite(backend: ResolvedBackend): void {
  describe(`the agent with dataplane: iptables (${backend}), inline in the lab's node`, () => {
    const lab = useLab({ clients: 1, freshNames: 400 });
    const pinRoot = `/sys/fs/bpf/dnsplane-t${randomBytes(4).toString('hex')}`;
    const dir = mkdtempSync(join(tmpdir(), 'dnsplane-ipt-inline-'));
    let agent: LabProcess | undefined;

    beforeAll(() => {
      // The agent runs from dist: build it (incremental) so it is this tree's code.
      const build = spawnSync('npx', ['tsc', '-b', 'packages/agent'], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 120_000 });
      if (build.status !== 0) throw new Error(`npx tsc -b packages/agent failed:\n${build.stdout}${build.stderr}`);
    });

    afterAll(async () => {
      try {
        await agent?.stop(5000);
      } finally {
        rmSync(dir, { recursive: true, force: true });
        rmSync(pinRoot, { recursive: true, force: true });
      }
    });

    function writeConfig(): string {
      const client = lab().endpoints['client1']!;
      const dns = lab().dnsServers.dnsmasq;
      const config = {
        dataplane: 'iptables',
        iptables: { backend },
        bpf: { pinRoot },
        dns: { trustedServers: lab().trustedServers, minTTL: 30, extraTTL: 10 },
        resources: ['./resources.yaml'],
        statePath: './state.json',
        log: { level: 'info' },
      };
      const endpoint = {
        kind: 'Endpoint',
        metadata: { name: 'client1', labels: { app: 'client' } },
        spec: { interface: client.hostInterface, addresses: [client.ipv4, client.ipv6] },
      };
      const dnsNets = [`${dns.ipv4}/32`, `${dns.ipv6}/128`];
      const policy = {
        kind: 'Policy',
        metadata: { name: 'client-egress' },
        spec: {
          order: 10,
          selector: 'app == "client"',
          egress: [
            { action: 'Allow', protocol: 'UDP', destination: { nets: dnsNets, ports: [53] } },
            { action: 'Allow', protocol: 'TCP', destination: { nets: dnsNets, ports: [53] } },
            { action: 'Allow', protocol: 'TCP', destination: { domains: [ALLOWED, MANY], ports: [PORT] } },
            { action: 'Deny' },
          ],
        },
      };
      writeFileSync(join(dir, 'resources.yaml'), `${JSON.stringify(endpoint)}\n---\n${JSON.stringify(policy)}\n`);
      const path = join(dir, 'dnsplane.yaml');
      writeFileSync(path, `${JSON.stringify(config, null, 2)}\n`);
      return path;
    }

    async function startAgent(): Promise<LabProcess> {
      const process = lab().startAgentProcess(
        ['node', AGENT_BIN, 'run', '-c', writeConfig(), '--socket', join(dir, 'status.sock')],
        { name: `agent-${randomBytes(3).toString('hex')}` },
      );
      await process.waitForOutput(/"event":"applied"/, 30_000);
      return process;
    }

    it('installs the inline rules: parser on DNS in FORWARD/INPUT/OUTPUT, xt_member pins for domain rules', async () => {
      agent = await startAgent();
      const saved = await inNetns(lab().namespaces.node, `iptables-${backend}-save`, ['-t', 'filter']);
      const parser = join(pinRoot, 'dnsplane_parse_socket');
      const dns = lab().dnsServers.dnsmasq.ipv4;
      expect(saved).toContain(`-A DNSPLANE-FORWARD -s ${dns}/32 -p udp -m multiport --sports 53 -m bpf --object-pinned ${parser}`);
      expect(saved).toContain(`-A DNSPLANE-FORWARD -d ${dns}/32 -p udp -m multiport --dports 53 -m bpf --object-pinned ${parser}`);
      expect(saved).toContain(`-A DNSPLANE-INPUT -s ${dns}/32 -p udp -m multiport --sports 53 -m bpf --object-pinned ${parser}`);
      expect(saved).toMatch(new RegExp(`-m bpf --object-pinned ${pinRoot}/xt_member_[0-9a-f]{8}`));
      expect(existsSync(parser)).toBe(true);
    });

    it('an allowed name resolves and connects at once: 200 fresh names, zero SYN retransmits', async () => {
      const trials = lab().allocateFresh(200).map((f) => ({ name: f.name, port: PORT, type: 'A' as const }));
      const batch = await expectEveryFirstSynPasses(lab(), 'client1', trials, { connectTimeoutMs: 2500 });
      const learned = new Set(members(pinRoot));
      for (const trial of batch.trials) expect(learned.has(trial.address ?? '')).toBe(true);
      // xt_member reads the membership maps and nobody reads learned events here: the parser
      // wrote none (a ring buffer nobody drains would fill and count every later one lost).
      expect(pendingLearnedEventRecords(pinRoot)).toBe(0);
      expect(parserCounters(pinRoot)['events_lost']).toBe(0);
      const median = (values: number[]): number => values.sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;
      console.info(
        `iptables-${backend} inline: ${batch.cleanConnects}/200 clean connects, SYN retransmits ${batch.counters.synRetransmits}, ` +
          `median dns ${median(batch.trials.map((t) => t.dnsMs ?? NaN)).toFixed(2)} ms, ` +
          `median answer->SYN ${median(batch.trials.map((t) => t.answerToSynUs ?? NaN)).toFixed(0)} us, ` +
          `median connect ${median(batch.trials.map((t) => t.connectMs ?? NaN)).toFixed(2)} ms`,
      );
    });

    it('IPv6 addresses, answers over TCP and the host\'s own queries are learned inline too', async () => {
      const trials = lab().allocateFresh(40).map((f) => ({ name: f.name, port: PORT, type: 'AAAA' as const }));
      const batch = await lab().connectAfterResolveBatch('client1', trials, { connectTimeoutMs: 2500 });
      expect(batch.trials.filter((t) => !t.connected || t.synRetransmitted).slice(0, 5)).toEqual([]);
      expect(batch.counters.synRetransmits).toBe(0);

      const dnsTcpBefore = (await lab().netCounters('dns'))['Tcp.PassiveOpens'] ?? 0;
      const many = await lab().resolve('client1', MANY);
      expect(many.ipv4.length).toBe(40);
      expect((await lab().netCounters('dns'))['Tcp.PassiveOpens']).toBeGreaterThan(dnsTcpBefore);
      const learned = new Set(members(pinRoot));
      // The truncated UDP answer holds 30 of them: all 40 means the TCP answer taught the rest.
      expect(many.ipv4.filter((a) => !learned.has(a))).toEqual([]);

      // The node's own query: OUTPUT on the way out, INPUT on the way back.
      const [own] = lab().allocateFresh(1);
      const dig = await lab().exec('node', ['dig', `@${lab().dnsServers.dnsmasq.ipv4}`, own!.name, 'A', '+short', '+time=2', '+tries=1']);
      expect(dig.stdout.trim()).toBe(own!.ipv4);
      expect(members(pinRoot)).toContain(own!.ipv4);
    });

    it('a name not allowed resolves but its connect is dropped', async () => {
      // One client process for both: the blocked name, and an allowed name on a port the rule
      // does not allow.
      const [fresh] = lab().allocateFresh(1);
      const batch = await lab().connectAfterResolveBatch(
        'client1',
        [
          { name: lab().names.blocked.name, port: PORT, type: 'A' },
          { name: fresh!.name, port: 8080, type: 'A' },
        ],
        { connectTimeoutMs: 1200, concurrency: 2 },
      );
      const [blocked, otherPort] = batch.trials;
      expect(blocked!.addresses).toEqual([lab().names.blocked.ipv4]);
      expect(blocked!.connected).toBe(false);
      expect(otherPort!.addresses).toEqual([fresh!.ipv4]);
      expect(otherPort!.connected).toBe(false);
    });

    it('a forged response from the untrusted namespace teaches nothing', async () => {
      const [victim] = lab().allocateFresh(1);
      const client = lab().endpoints['client1']!;
      const before = parserCounters(pinRoot);
      const forged = dnsPacket.encode({
        type: 'response',
        id: 4242,
        flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
        questions: [{ type: 'A', name: victim!.name }],
        answers: [{ type: 'A', name: victim!.name, ttl: 300, data: victim!.ipv4 }],
      });
      await lab().forgeResponse({ to: { address: client.ipv4, port: 33333 }, fromAddress: lab().dnsServers.dnsmasq.ipv4, payload: forged });
      // The parser saw it (it passed the rule) and refused it: no query of the client matches.
      await waitFor('the parser to count the forged response', async () =>
        parserCounters(pinRoot)['unmatched_query']! > before['unmatched_query']! ? true : undefined, { timeoutMs: 5000 });
      expect(members(pinRoot)).not.toContain(victim!.ipv4);
      const curl = await lab().curl('client1', `http://${victim!.ipv4}:${PORT}/`, { args: ['--connect-timeout', '1'], timeoutMs: 5000 });
      expect(curl.httpStatus).toBeNull();
    });

    it('learning and enforcement go on with the agent stopped', async () => {
      await agent!.stop(5000);
      // The agent saved what the kernel learned (exportLearned) on its way out.
      const saved = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as { entries: Array<{ address: string }> };
      expect(saved.entries.length).toBeGreaterThanOrEqual(200);
      const trials = lab().allocateFresh(30).map((f) => ({ name: f.name, port: PORT, type: 'A' as const }));
      const batch = await lab().connectAfterResolveBatch('client1', [...trials, { name: lab().names.blocked.name, port: PORT, type: 'A' }], {
        connectTimeoutMs: 1200,
      });
      expect(batch.trials.slice(0, 30).filter((t) => !t.connected || t.synRetransmitted)).toEqual([]);
      expect(batch.trials[30]!.connected).toBe(false);
    });

    it('a restarted agent takes over: what was learned still connects, new names too', async () => {
      const [earlier] = lab().allocateFresh(1);
      const first = await lab().connectAfterResolve('client1', earlier!.name, PORT, { type: 'A' });
      expect(first.connected).toBe(true);
      agent = await startAgent();
      const trials = lab().allocateFresh(20).map((f) => ({ name: f.name, port: PORT, type: 'A' as const }));
      const batch = await lab().connectAfterResolveBatch('client1', trials, { connectTimeoutMs: 2500 });
      expect(batch.trials.filter((t) => !t.connected || t.synRetransmitted)).toEqual([]);
      // Learned before the restart, reached by address alone (no DNS now).
      const curl = await lab().curl('client1', `http://${earlier!.ipv4}:${PORT}/`, { args: ['--connect-timeout', '2'], timeoutMs: 5000 });
      expect(curl.httpStatus).toBe(200);
      await agent.stop(5000);
    });

    it('remove() takes rules and pins away', async () => {
      const dataplane = createIptablesDataplane({ backend, runner: netnsRunner(lab().namespaces.node), ...inlineParsing({ pinRoot }) });
      expect((await dataplane.exportLearned()).length).toBeGreaterThanOrEqual(250);
      await dataplane.remove();
      await dataplane.close();
      expect(existsSync(pinRoot)).toBe(false);
      expect(await inNetns(lab().namespaces.node, `iptables-${backend}-save`, ['-t', 'filter'])).not.toContain('DNSPLANE');
    });
  });
}
