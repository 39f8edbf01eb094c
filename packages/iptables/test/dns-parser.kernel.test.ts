// Inline parsing through xt_bpf with the real parser: a router namespace runs the driver's
// rules with the bpf-parser's socket filter pinned; a client asks a dnsmasq in the server
// namespace; the answer's address is in the membership map before the client has it.
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { CompiledEndpoint, DesiredState, DomainSet } from '@dnsplane/core';
import { parseDomainPattern } from '@dnsplane/core';
import { existsSync, rmSync } from 'node:fs';
import { BpfDnsParserHook, createIptablesDataplane } from '../src/index.js';
import type { ResolvedBackend } from '../src/index.js';
import { createLab, SERVER, type Lab } from './lab.js';
import { deleteNetns, inNetns, netnsRunner } from './netns.js';

const NAME = 'api.dnsplane.test';
const SET: DomainSet = { id: 0x00d05e75, name: 'ds_00d05e75', patterns: [parseDomainPattern(NAME, 'calico')] };

const state: DesiredState = {
  domainSets: [SET],
  policies: [],
  endpoints: [],
  dns: { trustedServers: [{ family: 4, address: SERVER, port: 53 }], minTTL: 30, extraTTL: 10, maxAddressesPerName: 256 },
};

/** dnsmasq answering NAME with SERVER, in `netns`; resolves once it answers the client. */
async function startDnsmasq(netns: string, client: string): Promise<ChildProcess> {
  const child = spawn(
    'nsenter',
    [
      `--net=/run/netns/${netns}`,
      'dnsmasq',
      '--keep-in-foreground',
      '--conf-file=/dev/null',
      '--no-resolv',
      '--no-hosts',
      '--bind-interfaces',
      `--listen-address=${SERVER}`,
      `--address=/${NAME}/${SERVER}`,
      '--local-ttl=60',
      '--pid-file=',
      '--user=root',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`dnsmasq exited (${child.exitCode})`);
    if ((await dig(client)) === SERVER) return child;
  }
  child.kill();
  throw new Error('dnsmasq did not answer within 10 s');
}

async function dig(client: string): Promise<string> {
  const result = await netnsRunner(client).run('dig', [`@${SERVER}`, NAME, 'A', '+short', '+time=1', '+tries=1']);
  return result.stdout.trim();
}

type Router = ReturnType<typeof createIptablesDataplane>;

/** A lab (router between client and server), dnsmasq in the server, the driver with the real parser hook in the router; everything removed after `body`, also when it fails. */
async function withRouter(backend: ResolvedBackend, body: (lab: Lab, router: Router, hook: BpfDnsParserHook, pinRoot: string) => Promise<void>): Promise<void> {
  const names: string[] = [];
  let dnsmasq: ChildProcess | undefined;
  const pinRoot = `/sys/fs/bpf/dnsplane-test-${randomBytes(4).toString('hex')}`;
  const hook = new BpfDnsParserHook({ pinRoot });
  try {
    const lab = await createLab(names);
    const router = createIptablesDataplane({ backend, runner: netnsRunner(lab.router), dnsParser: hook });
    dnsmasq = await startDnsmasq(lab.server, lab.client);
    await body(lab, router, hook, pinRoot);
  } finally {
    if (dnsmasq?.exitCode === null) dnsmasq.kill();
    for (const name of names) await deleteNetns(name);
    await hook.close();
    rmSync(pinRoot, { recursive: true, force: true });
  }
}

describe.each(['legacy', 'nft'] as const)('the DNS parser as an xt_bpf match on the %s backend', (backend: ResolvedBackend) => {
  it('learns the answer of a trusted server that the client asked, in the router', async () => {
    await withRouter(backend, async (lab, router, hook, pinRoot) => {
      await router.install(state);
      const rules = await inNetns(lab.router, `iptables-${backend}-save`, ['-t', 'filter']);
      expect(rules).toContain(`-A DNSPLANE-FORWARD -s ${SERVER}/32 -p udp -m multiport --sports 53 -m bpf --object-pinned ${hook.programPath}`);
      // The DNS exchange that readiness needed happened before the rules: nothing learned.
      expect((await router.exportLearned()).filter((m) => m.setId === SET.id)).toEqual([]);

      expect(await dig(lab.client)).toBe(SERVER);
      const learned = (await router.exportLearned()).filter((m) => m.setId === SET.id);
      expect(learned.map((m) => m.address)).toEqual([SERVER]);
      const status = await router.status();
      expect(status.learned).toBeGreaterThanOrEqual(1);
      expect(status.counters['parser.queries']).toBeGreaterThanOrEqual(1);
      expect(status.counters['parser.learned']).toBeGreaterThanOrEqual(1);
      // A second install (as after an agent restart) re-pins the program at the same path.
      await router.install(state);
      expect(existsSync(hook.programPath)).toBe(true);
      await router.remove();
      expect(existsSync(pinRoot)).toBe(false);
      expect(await inNetns(lab.router, `iptables-${backend}-save`, ['-t', 'filter'])).not.toContain('DNSPLANE');
    });
  });

  it('with dns.interfaces listed, parses only what crosses those interfaces, once per packet', async () => {
    await withRouter(backend, async (lab, router) => {
      const counter = async (name: string): Promise<number> => (await router.status()).counters[`parser.${name}`] ?? 0;

      // an interface the exchange does not cross: the parser sees nothing of it
      await router.install({ ...state, dns: { ...state.dns, interfaces: ['dp-elsewhere'] } });
      expect(await dig(lab.client)).toBe(SERVER);
      expect(await counter('queries')).toBe(0);
      expect(await counter('parsed')).toBe(0);
      expect((await router.exportLearned()).filter((m) => m.setId === SET.id)).toEqual([]);

      // both router interfaces: the query (in dp-c, out dp-s) and the answer are parsed once each
      await router.install({ ...state, dns: { ...state.dns, interfaces: ['dp-c', 'dp-s'] } });
      const rules = await inNetns(lab.router, `iptables-${backend}-save`, ['-t', 'filter']);
      expect(rules).toContain('-A DNSPLANE-DNS-FORWARD -i dp-c -g DNSPLANE-DNS');
      expect(await dig(lab.client)).toBe(SERVER);
      expect(await counter('queries')).toBe(1);
      expect(await counter('parsed')).toBe(1);
      expect((await router.exportLearned()).filter((m) => m.setId === SET.id).map((m) => m.address)).toEqual([SERVER]);

      // the client's side alone, not a workload's interface: the answer is taken as it goes out by it
      await router.install({ ...state, dns: { ...state.dns, interfaces: ['dp-c'] } });
      expect(await dig(lab.client)).toBe(SERVER);
      expect(await counter('queries')).toBe(2);
      expect(await counter('parsed')).toBe(2);

      // as a workload's interface, as tc would: its queries are taken, the answers only where they come in
      const workload: CompiledEndpoint = { name: 'client', labels: {}, interface: 'dp-c', host: false, addresses: [], ingressPolicies: [], egressPolicies: [] };
      await router.install({ ...state, endpoints: [workload], dns: { ...state.dns, interfaces: ['dp-c'] } });
      expect(await dig(lab.client)).toBe(SERVER);
      expect(await counter('queries')).toBe(3);
      expect(await counter('parsed')).toBe(2);
      await router.install({ ...state, endpoints: [workload], dns: { ...state.dns, interfaces: ['dp-c', 'dp-s'] } });
      expect(await dig(lab.client)).toBe(SERVER);
      expect(await counter('queries')).toBe(4);
      expect(await counter('parsed')).toBe(3);
      await router.remove();
      expect(await inNetns(lab.router, `iptables-${backend}-save`, ['-t', 'filter'])).not.toContain('DNSPLANE');
    });
  });
});
