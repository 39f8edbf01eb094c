// The conformance scenarios (issue 4, "Conformance suite"), written once and run for every
// dataplane: `defineConformanceSuite(['nftables', …])` registers one `describe` per dataplane
// (describe.each), each with ONE lab and ONE agent shared by its scenarios, in order.
//
// Workloads and their policies (the agent's resources):
//   client1 (app=c1)   c1-egress: DNS to the lab servers (and the node resolver of 18, 19);
//                      TCP 80 to www, cname-target, v6only, ttl2, ttl3, ttl4, many, big,
//                      big-tcp and `*.fresh.lab.test` (Calico: one or more labels); TCP 443 to
//                      `*.wild.lab.test` (Calico, any depth); TCP 8080 to Cilium matchPattern
//                      `*.wild.lab.test` (exactly one label); TCP 80 to Cilium matchName v4only
//                      (edited to api in scenario 13); UDP 7000 to www's addresses (by net:
//                      scenario 22's fragments). Everything else denied.
//   client2 (app=c2)   c2-egress: DNS; Deny TCP to `blocked.lab.test`, then the broader Allow TCP
//                      80 to 198.19.1.3/32 (blocked's address) and 198.19.1.4/32 (other's);
//                      Allow TCP 80 to many.lab.test. Everything else denied.
//   client3 (app=free) selected by no policy.
// Domain sets are global (learning is by name, whoever asked), so every scenario checks the
// "before" state it relies on and uses names no earlier scenario taught to the sets involved.
import { beforeAll, afterAll, describe, expect, it, type TestContext } from 'vitest';
import { DRIVERS } from '../../packages/agent/src/drivers.js';
import type { Lab } from '../lab/lab.js';
import { NAMES } from '../lab/zone.js';
import { expectEveryFirstSynPasses } from '../lab/first-syn.js';
import { waitFor } from '../lab/wait.js';
import { ConformanceHarness, dnsResponse, SUITE_DNS, SUITE_METRICS_LISTEN, suiteDriftCheckSeconds, VARIANTS, type PolicyDocument, type TcpTarget } from './harness.js';

const WEB = {
  www: { v4: '198.19.1.1', v6: 'fd00:19::1:1' },
  api: { v4: '198.19.1.2' },
  blocked: { v4: '198.19.1.3' },
  other: { v4: '198.19.1.4' },
  v4only: { v4: '198.19.1.5' },
  v6only: { v6: 'fd00:19::1:6' },
  cnameTarget: { v4: '198.19.2.1', v6: 'fd00:19::2:1' },
  wild: { v4: '198.19.3.1' },
  ttl2: { v4: '198.19.4.2' },
  ttl3: { v4: '198.19.4.3' },
  ttl4: { v4: '198.19.4.4' },
} as const;
const MANY = Array.from({ length: 40 }, (_, i) => `198.19.5.${i + 1}`);
const FRESH_TRIALS = 200;

/** Scenario 22's UDP echo ports on www's addresses: client1's policy allows the first only. */
const ECHO_PORTS = { allowed: 7000, other: 7001 } as const;
/** Scenario 22's datagram: two fragments and more on the lab's 1,500-byte links. */
const FRAGMENTED_BYTES = 3000;

function dnsRules(lab: Lab): PolicyDocument[] {
  const nets = [...lab.dnsServerNets, `${lab.nodeResolver.ipv4}/32`];
  return ['UDP', 'TCP'].map((protocol) => ({ action: 'Allow', protocol, destination: { nets, ports: [53] } }));
}

function client1Policy(lab: Lab, edited: boolean): PolicyDocument {
  return {
    kind: 'Policy',
    metadata: { name: 'c1-egress' },
    spec: {
      order: 100,
      selector: 'app == "c1"',
      types: ['Egress'],
      egress: [
        ...dnsRules(lab),
        {
          action: 'Allow',
          protocol: 'TCP',
          destination: {
            domains: ['www.lab.test', 'cname-target.lab.test', 'v6only.lab.test', 'ttl2.lab.test', 'ttl3.lab.test', 'ttl4.lab.test', 'many.lab.test', 'big.lab.test', 'big-tcp.lab.test', '*.fresh.lab.test'],
            ports: [80],
          },
        },
        { action: 'Allow', protocol: 'TCP', destination: { domains: ['*.wild.lab.test'], ports: [443] } },
        { action: 'Allow', protocol: 'UDP', destination: { nets: [`${WEB.www.v4}/32`, `${WEB.www.v6}/128`], ports: [ECHO_PORTS.allowed] } },
        { action: 'Allow', protocol: 'TCP', destination: { domains: [{ matchPattern: '*.wild.lab.test' }], ports: [8080] } },
        {
          action: 'Allow',
          protocol: 'TCP',
          destination: { domains: [{ matchName: edited ? 'api.lab.test' : 'v4only.lab.test' }], ports: [80] },
        },
      ],
    },
  };
}

function client2Policy(lab: Lab): PolicyDocument {
  return {
    kind: 'Policy',
    metadata: { name: 'c2-egress' },
    spec: {
      order: 100,
      selector: 'app == "c2"',
      types: ['Egress'],
      egress: [
        ...dnsRules(lab),
        { action: 'Deny', protocol: 'TCP', destination: { domains: ['blocked.lab.test'] } },
        { action: 'Allow', protocol: 'TCP', destination: { nets: [`${WEB.blocked.v4}/32`, `${WEB.other.v4}/32`], ports: [80] } },
        { action: 'Allow', protocol: 'TCP', destination: { domains: ['many.lab.test'], ports: [80] } },
      ],
    },
  };
}

function endpoints(lab: Lab): Record<string, unknown>[] {
  const app: Record<string, string> = { client1: 'c1', client2: 'c2', client3: 'free' };
  return Object.values(lab.endpoints).map((endpoint) => ({
    kind: 'Endpoint',
    metadata: { name: endpoint.name, labels: { app: app[endpoint.name] ?? 'free' } },
    spec: { interface: endpoint.hostInterface, addresses: [endpoint.ipv4, endpoint.ipv6] },
  }));
}

const registeredKinds = (): string[] => DRIVERS.map((driver) => driver.kind);

/** Registers the suite for the given dataplane variants (keys of VARIANTS). */
export function defineConformanceSuite(variantNames: readonly string[]): void {
  const variants = variantNames.map((name) => {
    const variant = VARIANTS[name];
    if (variant === undefined) throw new Error(`unknown dataplane variant ${name} (known: ${Object.keys(VARIANTS).join(', ')})`);
    return variant;
  });

  describe.each(variants)('conformance on $name', (variant) => {
    const h = new ConformanceHarness(variant);

    beforeAll(async () => {
      await h.start({
        clients: 3,
        freshNames: FRESH_TRIALS + 60,
        endpoints,
        policies: (lab) => ({ 'c1-egress.yaml': client1Policy(lab, false), 'c2-egress.yaml': client2Policy(lab) }),
        registered: registeredKinds(),
      });
    }, 150_000);

    afterAll(async () => {
      const problems = await h.stop();
      if (problems.length > 0) throw new Error(`cleanup problems: ${problems.join('; ')}`);
    }, 60_000);

    /** Skips (with the reason) when this dataplane cannot run here; returns the lab otherwise. */
    const ready = (ctx: TestContext): Lab => {
      if (h.unsupported !== undefined) ctx.skip(`${variant.name}: ${h.unsupported}`);
      return h.live;
    };
    const expectDenied = async (ns: string, targets: readonly TcpTarget[]): Promise<void> => {
      const results = await h.probeTcp(ns, targets);
      expect(results.filter((r) => r.connected).map((r) => `${r.address}:${r.port}`), `${ns} must not connect`).toEqual([]);
    };
    const expectAllowed = async (ns: string, targets: readonly TcpTarget[]): Promise<void> => {
      const results = await h.probeTcp(ns, targets, 2000);
      expect(results.filter((r) => !r.connected).map((r) => `${r.address}:${r.port} (${r.error})`), `${ns} must connect`).toEqual([]);
    };

    /** Counters of `dnsplane status` every dataplane reports under the same names; a missing one fails. */
    const statusCounters = async <K extends string>(names: Readonly<Record<K, string>>): Promise<Record<K, number>> => {
      const counters = (await h.status())?.counters ?? {};
      const out = {} as Record<K, number>;
      for (const [key, name] of Object.entries(names) as Array<[K, string]>) {
        const value = counters[name];
        if (value === undefined) throw new Error(`${variant.name}: dnsplane status has no counter ${name}`);
        out[key] = value;
      }
      return out;
    };
    /** What the policies decided so far. */
    const decided = (): Promise<{ allowed: number; denied: number; defaultDeny: number }> =>
      statusCounters({ allowed: 'policy.allowed', denied: 'policy.denied', defaultDeny: 'policy.default_deny' });

    it('1. an exact allowed name connects, and 200 resolve-then-connect trials to fresh addresses lose no SYN', async (ctx) => {
      const lab = ready(ctx);
      await expectDenied('client1', [{ address: WEB.www.v4, port: 80 }]);
      const curl = await lab.curl('client1', 'http://www.lab.test/');
      expect(curl.httpStatus, curl.stderr).toBe(200);
      expect(curl.body).toContain('lab-web');

      const fresh = lab.allocateFresh(FRESH_TRIALS);
      const batch = await expectEveryFirstSynPasses(lab, 'client1', fresh.map((name) => ({ name: name.name, port: 80 })));
      // Every trial went to an address no earlier trial used.
      expect(new Set(batch.trials.map((t) => t.address)).size).toBe(FRESH_TRIALS);
    });

    it('2. a name not in the policy is denied (its resolution works)', async (ctx) => {
      const lab = ready(ctx);
      const resolved = await lab.resolve('client1', 'api.lab.test');
      expect(resolved.ipv4).toContain(WEB.api.v4);
      const before = await decided();
      const curl = await lab.curl('client1', 'http://api.lab.test/', { timeoutMs: 1500 });
      expect(curl.httpStatus).toBeNull();
      await expectDenied('client1', [{ address: WEB.api.v4, port: 80 }]);
      // No rule of client1's policy decided: its default deny dropped them, and status says so.
      const after = await decided();
      expect(after.defaultDeny).toBeGreaterThan(before.defaultDeny);
    });

    it('3. `*.` wildcards: Calico (one or more labels) and Cilium matchPattern (exactly one label)', async (ctx) => {
      const lab = ready(ctx);
      const calico = { address: WEB.wild.v4, port: 443 };
      const cilium = { address: WEB.wild.v4, port: 8080 };
      await expectDenied('client1', [calico, cilium]);
      // The apex matches neither form.
      expect((await lab.resolve('client1', 'wild.lab.test')).ipv4).toContain(WEB.wild.v4);
      await expectDenied('client1', [calico, cilium]);
      // Two labels: Calico's `*` matches, Cilium's does not.
      expect((await lab.resolve('client1', 'a.b.wild.lab.test')).ipv4).toContain(WEB.wild.v4);
      await expectAllowed('client1', [calico]);
      await expectDenied('client1', [cilium]);
      // One label: both match.
      expect((await lab.resolve('client1', 'x.wild.lab.test')).ipv4).toContain(WEB.wild.v4);
      await expectAllowed('client1', [calico, cilium]);
    });

    it('4. a CNAME chain to an allowed name learns the target', async (ctx) => {
      const lab = ready(ctx);
      const targets = [{ address: WEB.cnameTarget.v4, port: 80 }, { address: WEB.cnameTarget.v6, port: 80 }];
      await expectDenied('client1', targets);
      const curl = await lab.curl('client1', 'http://chain3.lab.test/');
      expect(curl.httpStatus, curl.stderr).toBe(200);
      expect([WEB.cnameTarget.v4, WEB.cnameTarget.v6]).toContain(curl.remoteIp);
      // glibc asked for A and AAAA: both families of the target were learned.
      const resolved = await lab.resolve('client1', 'CHAIN3.lab.test');
      expect(resolved.addresses).toEqual(expect.arrayContaining([WEB.cnameTarget.v4, WEB.cnameTarget.v6]));
      await expectAllowed('client1', targets);
    });

    it('5. IPv6: AAAA answers teach IPv6 addresses', async (ctx) => {
      const lab = ready(ctx);
      await expectDenied('client1', [{ address: WEB.v6only.v6, port: 80 }]);
      const curl = await lab.curl('client1', 'http://v6only.lab.test/', { args: ['-6'] });
      expect(curl.httpStatus, curl.stderr).toBe(200);
      expect(curl.remoteIp).toBe(WEB.v6only.v6);
      const [fresh] = lab.allocateFresh(1);
      await expectDenied('client1', [{ address: fresh!.ipv6, port: 80 }]);
      const trial = await lab.connectAfterResolve('client1', fresh!.name, 80, { type: 'AAAA' });
      expect(trial.address).toBe(fresh!.ipv6);
      expect(trial.connected, trial.error ?? '').toBe(true);
      expect(trial.synRetransmitted).toBe(false);
    });

    it('6. an answer that needs TCP (40 A; unbound answers UDP truncated and empty) is learned', async (ctx) => {
      const lab = ready(ctx);
      const sample = [MANY[0]!, MANY[20]!, MANY[39]!].map((address) => ({ address, port: 80 }));
      await expectDenied('client2', sample);
      const dnsTcpBefore = (await lab.netCounters('dns'))['Tcp.PassiveOpens'] ?? 0;
      const resolved = await lab.resolve('client2', 'many.lab.test', { server: lab.dnsServers.unbound.ipv4 });
      expect(resolved.ipv4).toHaveLength(40);
      expect((await lab.netCounters('dns'))['Tcp.PassiveOpens'] ?? 0).toBeGreaterThan(dnsTcpBefore);
      await expectAllowed('client2', MANY.map((address) => ({ address, port: 80 })));
    });

    it('7. expiry: after max(TTL, minTTL) + extraTTL the address is denied; re-resolving restores it', async (ctx) => {
      const lab = ready(ctx);
      const target = { address: WEB.ttl2.v4, port: 80 };
      await expectDenied('client1', [target]);
      const lifetimeMs = (Math.max(2, SUITE_DNS.minTTL) + SUITE_DNS.extraTTL) * 1000;
      const learnedAt = Date.now();
      const trial = await lab.connectAfterResolve('client1', 'ttl2.lab.test', 80);
      expect(trial.connected, trial.error ?? '').toBe(true);
      // Poll with short connects until denied; it must not happen before the lifetime (1 s
      // slack for whole-second timeouts) and must happen within it plus 2.5 s.
      const deniedAt = await waitFor(
        'ttl2.lab.test to expire',
        async () => ((await h.connects('client1', target.address, target.port, 300)) ? undefined : Date.now()),
        { timeoutMs: lifetimeMs + 2500 },
      );
      expect(deniedAt - learnedAt).toBeGreaterThanOrEqual(lifetimeMs - 1000);
      const again = await lab.connectAfterResolve('client1', 'ttl2.lab.test', 80);
      expect(again.connected, again.error ?? '').toBe(true);
      expect(again.synRetransmitted).toBe(false);
    });

    it('8. a forged response from an untrusted source, and one answering no query, teach nothing', async (ctx) => {
      const lab = ready(ctx);
      const client = lab.endpoints.client1!;
      const [fresh] = lab.allocateFresh(1);
      const forgedV4 = '198.19.200.7';
      const forgedV6 = 'fd00:19::200:7';
      const targets = [{ address: forgedV4, port: 80 }, { address: forgedV6, port: 80 }];
      await expectDenied('client1', targets);
      const dnsmasq = lab.dnsServers.dnsmasq;
      const forged = [
        // From the untrusted namespace's own address: not a trusted server.
        { to: { address: client.ipv4, port: 40_001 }, fromAddress: lab.untrusted.ipv4, payload: dnsResponse({ id: 0x1234, name: fresh!.name, type: 'A', address: forgedV4, ttl: 300 }) },
        { to: { address: client.ipv6, port: 40_001 }, fromAddress: lab.untrusted.ipv6, payload: dnsResponse({ id: 0x1235, name: fresh!.name, type: 'AAAA', address: forgedV6, ttl: 300 }) },
        // With a trusted server's source, but answering no query.
        { to: { address: client.ipv4, port: 40_002 }, fromAddress: dnsmasq.ipv4, payload: dnsResponse({ id: 0x2234, name: fresh!.name, type: 'A', address: forgedV4, ttl: 300 }) },
        { to: { address: client.ipv6, port: 40_002 }, fromAddress: dnsmasq.ipv6, payload: dnsResponse({ id: 0x2235, name: fresh!.name, type: 'AAAA', address: forgedV6, ttl: 300 }) },
      ];
      await Promise.all(forged.map((request) => lab.forgeResponse(request)));
      await expectDenied('client1', targets);
      // The real answer for the same name still teaches (the name is allowed): the forged
      // ones were refused for what they are, not because learning is broken.
      expect((await lab.resolve('client1', fresh!.name)).ipv4).toEqual([fresh!.ipv4]);
      await expectAllowed('client1', [{ address: fresh!.ipv4, port: 80 }]);
      await expectDenied('client1', targets);
    });

    it('9. many answers: all 40 A records are allowed', async (ctx) => {
      const lab = ready(ctx);
      const resolved = await lab.resolve('client1', 'many.lab.test');
      expect(resolved.ipv4).toHaveLength(40);
      await expectAllowed('client1', MANY.map((address) => ({ address, port: 80 })));
    });

    it('10. upper- and mixed-case queries are learned', async (ctx) => {
      const lab = ready(ctx);
      const [viaGlibc, viaNode] = lab.allocateFresh(2);
      await expectDenied('client1', [{ address: viaGlibc!.ipv4, port: 80 }, { address: viaNode!.ipv4, port: 80 }]);
      const mixed = viaGlibc!.name.split('.').map((label, i) => (i % 2 === 0 ? label.toUpperCase() : label)).join('.');
      expect((await lab.resolve('client1', mixed)).ipv4).toContain(viaGlibc!.ipv4);
      await expectAllowed('client1', [{ address: viaGlibc!.ipv4, port: 80 }]);
      const trial = await lab.connectAfterResolve('client1', viaNode!.name.toUpperCase(), 80);
      expect(trial.connected, trial.error ?? '').toBe(true);
      expect(trial.synRetransmitted).toBe(false);
    });

    it('11. the allowed name on a port the policy does not allow is denied', async (ctx) => {
      const lab = ready(ctx);
      expect((await lab.curl('client1', 'http://www.lab.test/')).httpStatus).toBe(200);
      const curl = await lab.curl('client1', 'http://www.lab.test:8080/', { timeoutMs: 1500 });
      expect(curl.httpStatus).toBeNull();
      await expectDenied('client1', [{ address: WEB.www.v4, port: 8080 }, { address: WEB.www.v4, port: 443 }]);
    });

    it('12. Deny on a domain before a broader Allow wins once the name is learned', async (ctx) => {
      const lab = ready(ctx);
      const blocked = { address: WEB.blocked.v4, port: 80 };
      const other = { address: WEB.other.v4, port: 80 };
      // Before anyone resolved blocked.lab.test, the broader net Allow admits its address.
      await expectAllowed('client2', [blocked, other]);
      expect((await lab.resolve('client2', 'blocked.lab.test')).ipv4).toContain(WEB.blocked.v4);
      const before = await decided();
      await expectDenied('client2', [blocked]);
      const afterDeny = await decided();
      // The Deny rule dropped it (not the default deny); status counts it as denied.
      expect(afterDeny.denied).toBeGreaterThan(before.denied);
      await expectAllowed('client2', [other]);
      expect((await decided()).allowed).toBeGreaterThan(afterDeny.allowed);
    });

    it('13. a policy edited while running: the new domain works, the removed one stops, other sets keep their members', async (ctx) => {
      const lab = ready(ctx);
      const v4only = { address: WEB.v4only.v4, port: 80 };
      const api = { address: WEB.api.v4, port: 80 };
      expect((await lab.curl('client1', 'http://v4only.lab.test/')).httpStatus).toBe(200);
      expect((await lab.curl('client1', 'http://www.lab.test/')).httpStatus).toBe(200);
      await expectDenied('client1', [api]);

      await h.editPolicy('c1-egress.yaml', client1Policy(lab, true));
      await waitFor(
        'api.lab.test to be allowed after the edit',
        async () => {
          await lab.resolve('client1', 'api.lab.test');
          return (await h.connects('client1', api.address, api.port, 300)) ? true : undefined;
        },
        { timeoutMs: 15_000 },
      );
      await expectDenied('client1', [v4only]);
      // Learned earlier, not re-resolved: members of untouched sets survived the re-apply.
      await expectAllowed('client1', [{ address: WEB.www.v4, port: 80 }, { address: WEB.cnameTarget.v4, port: 80 }, { address: WEB.wild.v4, port: 443 }]);
    });

    it('14. two endpoints with different policies: learning for one does not open the other', async (ctx) => {
      const lab = ready(ctx);
      const [fresh] = lab.allocateFresh(1);
      const trial = await lab.connectAfterResolve('client1', fresh!.name, 80);
      expect(trial.connected, trial.error ?? '').toBe(true);
      await expectDenied('client2', [
        { address: fresh!.ipv4, port: 80 },
        { address: WEB.www.v4, port: 80 },
        { address: WEB.cnameTarget.v4, port: 80 },
      ]);
      // And client2's learning (blocked, many) opens nothing for client1 beyond its own policy.
      await expectDenied('client1', [{ address: WEB.other.v4, port: 80 }]);
    });

    it('15. a workload selected by no policy is untouched', async (ctx) => {
      const lab = ready(ctx);
      expect((await lab.curl('client3', 'http://api.lab.test:8080/')).httpStatus).toBe(200);
      expect((await lab.curl('client3', 'http://blocked.lab.test/')).httpStatus).toBe(200);
      await expectAllowed('client3', [
        { address: WEB.www.v4, port: 443 },
        { address: WEB.other.v4, port: 8080 },
        { address: 'fd00:19::1:2', port: 80 },
      ]);
    });

    it('16. a workload whose interface is re-created while the agent runs (a pod restart) is enforced again and loses no first SYN', async (ctx) => {
      const lab = ready(ctx);
      const before = await h.lastApplyAt();
      await lab.replug('client1');
      // The agent sees the new interface (same name, new index) and installs again.
      await h.appliedAfter(before, "client1's re-created interface");
      await expectDenied('client1', [{ address: WEB.api.v4, port: 8080 }, { address: WEB.other.v4, port: 80 }]);
      const fresh = lab.allocateFresh(20);
      await expectEveryFirstSynPasses(lab, 'client1', fresh.map((name) => ({ name: name.name, port: 80 })));
      // Learned before the restart, not re-resolved: still allowed.
      await expectAllowed('client1', [{ address: WEB.www.v4, port: 80 }]);
    });

    it('17. what someone else removes (a flushed ruleset, a firewall reload, a deleted tc filter) is put back: enforcement and learning resume', async (ctx) => {
      const lab = ready(ctx);
      const lines = (event: string): string[] => h.agentLog(event);
      const repairs = (): number => lines('repaired').length;
      const device = lab.endpoints['client1']?.hostInterface ?? '';
      const succeeds = async (command: string[]): Promise<boolean> => (await lab.exec('node', command)).code === 0;
      const filters = async (): Promise<string> => (await lab.exec('node', ['tc', 'filter', 'show', 'dev', device, 'ingress'])).stdout;
      // What each dataplane's objects meet in real life, done in the lab's node namespace, and
      // how to see them back; one round at a time, so each removal alone must be noticed.
      const rounds: Array<{ readonly sabotage: string[][]; readonly restored: () => Promise<boolean> }> =
        variant.kind === 'nftables'
          ? [
              // a CNI re-creating the clsact qdisc takes the parser's and the marker's filters
              { sabotage: [['tc', 'qdisc', 'del', 'dev', device, 'clsact']], restored: async () => /pref 209 bpf[\s\S]*pref 210 bpf/.test(await filters()) },
              // what `nft flush ruleset` (nftables.service start or reload) does to the table
              { sabotage: [['nft', 'delete', 'table', 'inet', 'dnsplane']], restored: () => succeeds(['nft', 'list', 'table', 'inet', 'dnsplane']) },
            ]
          : variant.kind === 'iptables'
            ? [
                {
                  // a firewall reload flushing the built-in chains takes the jumps
                  sabotage: [4, 6].map((family) => [`${family === 4 ? 'iptables' : 'ip6tables'}-${variant.iptablesBackend}`, '-F', 'FORWARD']),
                  restored: async () => {
                    const saved = await Promise.all(['iptables', 'ip6tables'].map((tool) => lab.exec('node', [`${tool}-${variant.iptablesBackend}-save`, '-t', 'filter'])));
                    return saved.every((r) => r.stdout.includes('-A FORWARD -j DNSPLANE-FORWARD'));
                  },
                },
              ]
            : [{ sabotage: [['tc', 'filter', 'del', 'dev', device, 'ingress', 'pref', '213', 'handle', '0xd15', 'bpf']], restored: async () => /pref 213 bpf/.test(await filters()) }];
      for (const { sabotage, restored } of rounds) {
        const before = repairs();
        for (const command of sabotage) {
          const result = await lab.exec('node', command);
          expect(result.code, `${command.join(' ')}: ${result.stderr}`).toBe(0);
        }
        // Where the kernel reports the removal, the periodic check is an hour away: only the
        // agent's removal watch can bring the repair in time.
        await waitFor(`the agent to put back what ${sabotage.map((c) => c.join(' ')).join('; ')} removed`, async () => (repairs() > before && (await restored()) ? true : undefined), {
          timeoutMs: (variant.removalsHeard ? 0 : suiteDriftCheckSeconds(variant) * 1000) + 15_000,
        });
        const drift = lines('drift').at(-1) ?? '';
        expect(drift).toContain(`"trigger":"${variant.removalsHeard ? 'kernel_event' : 'periodic'}"`);
      }
      await expectDenied('client1', [{ address: WEB.api.v4, port: 8080 }, { address: WEB.other.v4, port: 80 }]);
      // Learned before, not re-resolved: allowed again (a recreated nft table gets its sets back).
      await expectAllowed('client1', [{ address: WEB.www.v4, port: 80 }]);
      const fresh = lab.allocateFresh(20);
      await expectEveryFirstSynPasses(lab, 'client1', fresh.map((name) => ({ name: name.name, port: 80 })));
    });

    /** A policy selecting `selector` in ingress with nothing allowed in (scenarios 18, 25). */
    const ingressOnly = (selector: string): PolicyDocument => ({
      kind: 'Policy',
      metadata: { name: 'c1-ingress' },
      spec: { order: 100, selector, types: ['Ingress'], ingress: [] },
    });
    /**
     * Starts the node resolver (scenarios 18, 19): its address, trusted from the start, comes up
     * on the node, and the agent must hear it and install again (the tc dataplanes then put the
     * parser on the endpoints' egress and lo's ingress).
     */
    const nodeResolver = async (lab: Lab): Promise<{ address: string; port: number }> => {
      const server = { address: lab.nodeResolver.ipv4, port: lab.nodeResolver.port };
      if (lab.processes.has('node-resolver')) return server;
      const before = await h.lastApplyAt();
      await lab.startNodeResolver({ minCacheTtl: 60 });
      await h.appliedAfter(before, 'the install for the resolver address on the node');
      expect(h.agentLog('local_resolvers_changed').at(-1) ?? '').toContain(`"now":["${server.address}:${server.port}"]`);
      return server;
    };
    /** Waits until client1 no longer reaches `target`: the member of a name with `ttl` seconds expired. */
    const waitExpired = (target: TcpTarget, ttl: number): Promise<true> =>
      waitFor(`${target.address} to expire`, async () => ((await h.connects('client1', target.address, target.port, 300)) ? undefined : true), {
        timeoutMs: (Math.max(ttl, SUITE_DNS.minTTL) + SUITE_DNS.extraTTL) * 1000 + 2500,
      });
    /** How often the node resolver's query log says `what` (`forwarded`, `cached`) for `name`. */
    const resolverLog = (lab: Lab, what: string, name: string): number =>
      (lab.processes.get('node-resolver')?.stderr() ?? '').split('\n').filter((line) => line.includes(`${what} ${name}`)).length;

    it('18. a resolver on the node (a node-local cache): its answers teach, also from its cache after the member expired', async (ctx) => {
      const lab = ready(ctx);
      const target = { address: WEB.ttl3.v4, port: 80 };
      await expectDenied('client1', [target]);
      const server = await nodeResolver(lab);

      const first = await lab.connectAfterResolve('client1', 'ttl3.lab.test', 80, { server });
      expect(first.address).toBe(target.address);
      expect(first.connected, first.error ?? '').toBe(true);
      expect(first.synRetransmitted).toBe(false);
      await waitExpired(target, 3);
      // The resolver still has it (kept 60 s): it answers from its cache, with no upstream
      // exchange the parser could learn from (its query log: "cached", no new "forwarded").
      const forwarded = resolverLog(lab, 'forwarded', 'ttl3.lab.test');
      expect(forwarded).toBeGreaterThan(0);
      const again = await lab.connectAfterResolve('client1', 'ttl3.lab.test', 80, { server });
      expect(again.connected, again.error ?? '').toBe(true);
      expect(again.synRetransmitted).toBe(false);
      expect(resolverLog(lab, 'forwarded', 'ttl3.lab.test')).toBe(forwarded);
      expect(resolverLog(lab, 'cached', 'ttl3.lab.test')).toBeGreaterThan(0);
      // client1 selected in ingress too (nothing allowed in): the resolver's answers, which leave
      // the node through output, pass only as replies to queries that opened a connection —
      // queries to a server on the node stay tracked (on nftables the untrack rule leaves its
      // address out).
      const [fresh] = lab.allocateFresh(1);
      if (fresh === undefined) throw new Error('no fresh names left');
      await h.editPolicy('c1-ingress.yaml', ingressOnly('app == "c1"'));
      try {
        const fenced = await lab.connectAfterResolve('client1', fresh.name, 80, { server });
        expect(fenced.address).toBe(fresh.ipv4);
        expect(fenced.connected, fenced.error ?? '').toBe(true);
      } finally {
        await h.editPolicy('c1-ingress.yaml', ingressOnly('app == "nobody"'));
      }
    });

    it("19. the node's own lookup through that resolver (over lo) teaches too, also from its cache", async (ctx) => {
      const lab = ready(ctx);
      const target = { address: WEB.ttl4.v4, port: 80 };
      await expectDenied('client1', [target]);
      const server = await nodeResolver(lab);
      // client1 fills the resolver's cache, then the member expires.
      const first = await lab.connectAfterResolve('client1', 'ttl4.lab.test', 80, { server });
      expect(first.connected, first.error ?? '').toBe(true);
      await waitExpired(target, 4);
      // The node looks the name up itself (dig in the node namespace: query and answer over lo),
      // answered from the cache. Domain sets are global: client1 connects without resolving.
      const forwarded = resolverLog(lab, 'forwarded', 'ttl4.lab.test');
      const dig = await lab.exec('node', ['dig', '+short', '+time=1', '+tries=1', `@${server.address}`, 'ttl4.lab.test', 'A']);
      expect(dig.stdout.trim()).toBe(target.address);
      expect(resolverLog(lab, 'forwarded', 'ttl4.lab.test')).toBe(forwarded);
      await expectAllowed('client1', [target]);
    });

    it('20. an explicit dns.interfaces list: the node\'s lookups through its resolver still teach (over lo), and lo listed parses each once', async (ctx) => {
      const lab = ready(ctx);
      const server = await nodeResolver(lab);
      const endpointInterfaces = ['client1', 'client2'].map((name) => lab.endpoints[name]?.hostInterface ?? `missing-${name}`);
      const [unlisted, listed] = lab.allocateFresh(2);
      if (unlisted === undefined || listed === undefined) throw new Error('no fresh names left');
      const dig = async (name: string): Promise<string> =>
        (await lab.exec('node', ['dig', '+short', '+time=1', '+tries=1', `@${server.address}`, name, 'A'])).stdout.trim();
      const parserCounters = (): Promise<{ queries: number; parsed: number }> =>
        statusCounters({ queries: 'parser.queries', parsed: 'parser.parsed' });
      try {
        // Only the endpoints' interfaces listed (not the DNS side, not lo): the resolver's
        // answers to the node's own lookups travel over lo and nowhere else, so lo is watched.
        await h.editDns({ interfaces: endpointInterfaces });
        await expectDenied('client1', [{ address: unlisted.ipv4, port: 80 }]);
        expect(await dig(unlisted.name)).toBe(unlisted.ipv4);
        await expectAllowed('client1', [{ address: unlisted.ipv4, port: 80 }]);

        // lo listed too. A packet on lo passes its egress and then its ingress: one lookup
        // answered from the resolver's cache (no upstream exchange) is one query and one parse.
        await h.editDns({ interfaces: [...endpointInterfaces, 'lo'] });
        expect(await dig(listed.name)).toBe(listed.ipv4); // fills the cache
        await expectAllowed('client1', [{ address: listed.ipv4, port: 80 }]);
        const before = await parserCounters();
        expect(await dig(listed.name)).toBe(listed.ipv4);
        const after = await parserCounters();
        expect(resolverLog(lab, 'cached', listed.name)).toBeGreaterThan(0);
        expect({ queries: after.queries - before.queries, parsed: after.parsed - before.parsed }).toEqual({ queries: 1, parsed: 1 });
      } finally {
        await h.editDns({ interfaces: undefined });
      }
    });

    it('21. the Prometheus endpoint (metrics.listen) reports what status reports: the dataplane, the policies\' decisions, the parser', async (ctx) => {
      const lab = ready(ctx);
      const scrape = async (path = '/metrics'): Promise<{ code: string; body: string }> => {
        const result = await lab.exec('node', ['curl', '-s', '-m', '5', '-w', '\n%{http_code}', `http://${SUITE_METRICS_LISTEN}${path}`]);
        const cut = result.stdout.lastIndexOf('\n');
        return { code: result.stdout.slice(cut + 1), body: result.stdout.slice(0, cut) };
      };
      const sample = (body: string, series: string): number => {
        const line = body.split('\n').find((l) => l.startsWith(`${series} `));
        if (line === undefined) throw new Error(`no sample ${series} in:\n${body}`);
        return Number(line.slice(series.length + 1));
      };
      const first = await scrape();
      expect(first.code).toBe('200');
      expect(sample(first.body, `dnsplane_info{dataplane="${variant.kind}"}`)).toBe(1);
      expect(first.body).toContain('# TYPE dnsplane_policy_packets_total counter');
      expect(sample(first.body, 'dnsplane_learned_entries')).toBeGreaterThanOrEqual(0);
      const parsed = 'dnsplane_parser_total{counter="parsed"}';
      const defaultDeny = 'dnsplane_policy_packets_total{decision="default_deny"}';
      // A lookup (parsed) and a denied connection (no rule of client1's decides) show on the next scrape.
      expect((await lab.resolve('client1', 'www.lab.test')).ipv4).toContain(WEB.www.v4);
      await expectDenied('client1', [{ address: WEB.other.v4, port: 80 }]);
      // The same counter status shows (read around the scrape: nothing else may move it between).
      const before = (await decided()).defaultDeny;
      const second = await scrape();
      const after = (await decided()).defaultDeny;
      expect(sample(second.body, parsed)).toBeGreaterThan(sample(first.body, parsed));
      expect(sample(second.body, defaultDeny)).toBeGreaterThan(sample(first.body, defaultDeny));
      expect(sample(second.body, defaultDeny)).toBeGreaterThanOrEqual(before);
      expect(sample(second.body, defaultDeny)).toBeLessThanOrEqual(after);
      expect((await scrape('/')).code).toBe('404');
    });

    it('22. a fragmented UDP datagram (IPv4 and IPv6, 3,000 bytes on 1,500-byte links) to an allowed port arrives whole, and so does its fragmented reply; to a port the policy does not allow, no fragment gets through', async (ctx) => {
      const lab = ready(ctx);
      const echo =
        lab.processes.get('udp-echo') ??
        (await lab.startUdpEcho([WEB.www.v4, WEB.www.v6].flatMap((address) => [ECHO_PORTS.allowed, ECHO_PORTS.other].map((port) => ({ address, port })))));
      const received = (port: number): number => echo.stdout().split('\n').filter((line) => line.endsWith(` to port ${port}`)).length;
      for (const [address, fragmentsMade] of [[WEB.www.v4, 'Ip.FragCreates'], [WEB.www.v6, 'Ip6.FragCreates']] as const) {
        const before = await lab.netCounters('client1');
        // UDP: an exchange lost on the way would be sent again by any client; the policy's
        // answer does not change between tries, so three tries cannot hide a drop by rule.
        const reply = await waitFor(
          `client1 → ${address}:${ECHO_PORTS.allowed}, ${FRAGMENTED_BYTES} bytes echoed`,
          async () => ((await lab.udpExchange('client1', address, ECHO_PORTS.allowed, FRAGMENTED_BYTES, 2000)) === FRAGMENTED_BYTES ? true : undefined),
          { timeoutMs: 8000 },
        ).catch((error: unknown) => error);
        expect(reply, `${address}: the allowed datagram and its reply`).toBe(true);
        const after = await lab.netCounters('client1');
        expect((after[fragmentsMade] ?? 0) - (before[fragmentsMade] ?? 0), `${fragmentsMade} in client1`).toBeGreaterThanOrEqual(2);

        const otherBefore = received(ECHO_PORTS.other);
        expect(await lab.udpExchange('client1', address, ECHO_PORTS.other, FRAGMENTED_BYTES, 1000), `${address}:${ECHO_PORTS.other}, fragmented`).toBeUndefined();
        expect(await lab.udpExchange('client1', address, ECHO_PORTS.other, 100, 1000), `${address}:${ECHO_PORTS.other}, one packet`).toBeUndefined();
        expect(received(ECHO_PORTS.other) - otherBefore, 'datagrams the echo server received on the port the policy does not allow').toBe(0);
      }
    });

    it('23. an answer in IP fragments (64 AAAA, ~1,850 bytes over UDP with a 4,096-byte EDNS buffer) teaches every address, those of its last fragment too', async (ctx) => {
      const lab = ready(ctx);
      const big = NAMES.big;
      const last = big.ipv6.at(-1)!;
      await expectDenied('client1', [{ address: last, port: 80 }]);
      const before = await lab.netCounters('client1');
      const dig = await lab.exec('client1', ['dig', '+bufsize=4096', '+notcp', '+ignore', '+time=2', '+tries=1', `@${lab.dnsServers.dnsmasq.ipv4}`, big.name, 'AAAA']);
      const after = await lab.netCounters('client1');
      // the whole answer, over UDP, put together from fragments by client1's kernel
      expect(dig.stdout).not.toMatch(/flags: [a-z ]*\btc\b/);
      const answered = [...dig.stdout.matchAll(/\sAAAA\s+(\S+)$/gm)].map((m) => m[1]);
      expect(new Set(answered)).toEqual(new Set(big.ipv6));
      expect((after['Ip.ReasmOKs'] ?? 0) - (before['Ip.ReasmOKs'] ?? 0), 'answers client1 reassembled').toBeGreaterThanOrEqual(1);
      // the last record's address travelled in the answer's second fragment
      await expectAllowed('client1', [{ address: last, port: 80 }, { address: big.ipv6[0]!, port: 80 }]);
    });

    it('24. an answer over TCP in several segments (64 AAAA, ~1,850 bytes; the DNS server sends one segment per packet) teaches every address, those of its last segment too', async (ctx) => {
      const lab = ready(ctx);
      const big = NAMES.bigTcp;
      const last = big.ipv6.at(-1)!;
      await expectDenied('client1', [{ address: last, port: 80 }]);
      // veth would hand the answer on as one GSO packet; one segment per packet is what a
      // link without segmentation offload (or a path with a smaller MTU) delivers
      const link = await lab.exec('dns', ['ip', '-d', 'link', 'show', 'eth0']);
      const gsoMaxSegs = /gso_max_segs (\d+)/.exec(link.stdout)?.[1];
      expect(gsoMaxSegs, 'the DNS server link shows gso_max_segs').toBeDefined();
      expect((await lab.exec('dns', ['ip', 'link', 'set', 'eth0', 'gso_max_segs', '1'])).code).toBe(0);
      try {
        const dig = await lab.exec('client1', ['dig', '+tcp', '+ignore', '+time=2', '+tries=1', `@${lab.dnsServers.dnsmasq.ipv4}`, big.name, 'AAAA']);
        const answered = [...dig.stdout.matchAll(/\sAAAA\s+(\S+)$/gm)].map((m) => m[1]);
        expect(new Set(answered)).toEqual(new Set(big.ipv6));
        expect(dig.stdout).toMatch(/MSG SIZE +rcvd: (1[5-9]\d\d|[2-9]\d\d\d)/); // more than one 1,460-byte segment
      } finally {
        await lab.exec('dns', ['ip', 'link', 'set', 'eth0', 'gso_max_segs', gsoMaxSegs ?? '65535']);
      }
      // the last record's address travelled in the answer's second segment
      await expectAllowed('client1', [{ address: last, port: 80 }, { address: big.ipv6[0]!, port: 80 }]);
    });

    it('25. dns.interfaces decides where answers are taken: with only the workloads\' interfaces listed a lookup still resolves (an ingress policy on the client too) but teaches nothing; with the DNS side listed it teaches', async (ctx) => {
      const lab = ready(ctx);
      const workloads = ['client1', 'client2'].map((name) => lab.endpoints[name]?.hostInterface ?? `missing-${name}`);
      const dnsSide = lab.topology.dnsLink.hostInterface;
      const [untaught, taught, both] = lab.allocateFresh(3);
      if (untaught === undefined || taught === undefined || both === undefined) throw new Error('no fresh names left');
      // client1 also selected in ingress (nothing allowed in): its DNS answers then pass only as
      // the answers of its own queries — by conntrack, or by the parser's mark where it checked them
      await h.editPolicy('c1-ingress.yaml', ingressOnly('app == "c1"'));
      try {
        // The queries are seen as they come in by client1's interface, but the answers come in by
        // the DNS side, which is not watched: resolution works, nothing is learned.
        await h.editDns({ interfaces: workloads });
        expect((await lab.resolve('client1', untaught.name)).ipv4).toEqual([untaught.ipv4]);
        await expectDenied('client1', [{ address: untaught.ipv4, port: 80 }]);
        // The DNS side alone: the query is recorded as the node forwards it out by it, the
        // answer as it comes in by it.
        await h.editDns({ interfaces: [dnsSide] });
        expect((await lab.resolve('client1', taught.name)).ipv4).toEqual([taught.ipv4]);
        await expectAllowed('client1', [{ address: taught.ipv4, port: 80 }]);
        // Both: the query is taken where it comes in, the answer where it comes in.
        await h.editDns({ interfaces: [...workloads, dnsSide] });
        expect((await lab.resolve('client1', both.name)).ipv4).toEqual([both.ipv4]);
        await expectAllowed('client1', [{ address: both.ipv4, port: 80 }]);
      } finally {
        await h.editDns({ interfaces: undefined });
        await h.editPolicy('c1-ingress.yaml', ingressOnly('app == "nobody"'));
      }
    });

    it('26. another stateful firewall comes up on the node while the agent runs (its own nft table: forward policy drop, replies by state, the workloads\' traffic accepted), whole or an empty chain first and its rules after: names keep resolving and allowed connections connect, also once it is gone', async (ctx) => {
      const lab = ready(ctx);
      const [during, after, empty, ruled] = lab.allocateFresh(4);
      if (during === undefined || after === undefined || empty === undefined || ruled === undefined) throw new Error('no fresh names left');
      const table = `dplfw${lab.id}`;
      const workloads = ['client1', 'client2', 'client3'].map((name) => `"${lab.endpoints[name]?.hostInterface ?? `missing-${name}`}"`).join(', ');
      const nft = async (script: string): Promise<void> => {
        const result = await lab.exec('node', ['nft', '-f', '-'], { input: script });
        expect(result.code, result.stderr).toBe(0);
      };
      const remove = `table inet ${table}\ndelete table inet ${table}\n`;
      /**
       * client1 resolves `name` and connects to it. On nftables (untrackDns auto) first, when
       * `tracked` is given: the agent heard the change (nft monitor) and installed again with DNS
       * kept tracked (`untrack_dns_gates` > 0: an untracked answer would not be `established` to
       * that table) or untracked again (0).
       */
      const works = async (name: { readonly name: string; readonly ipv4: string }, tracked?: boolean): Promise<void> => {
        if (variant.kind === 'nftables' && tracked !== undefined) {
          const gates = async (): Promise<number> => (await h.status())?.counters['untrack_dns_gates'] ?? -1;
          await waitFor(`the agent to ${tracked ? 'keep DNS tracked' : 'untrack DNS again'}`, async () => (((await gates()) > 0) === tracked ? true : undefined), { timeoutMs: 20_000 });
        }
        expect((await lab.resolve('client1', name.name)).ipv4).toEqual([name.ipv4]);
        await expectAllowed('client1', [{ address: name.ipv4, port: 80 }]);
      };
      // What Docker's or ufw's FORWARD amounts to, in one piece.
      await nft(`table inet ${table} {\n  chain forward { type filter hook forward priority 10; policy drop;\n    ct state established,related accept\n    iifname { ${workloads} } accept\n  }\n}\n`);
      try {
        await works(during, true);
      } finally {
        await nft(remove);
      }
      await works(after, false);
      // The same built the way `iptables -L` then Docker would: first an empty chain that passes
      // everything (no gate), then its rules, the last one a drop (heard by nft monitor new rules).
      await nft(`table inet ${table} {\n  chain forward { type filter hook forward priority 10; policy accept; }\n}\n`);
      try {
        await works(empty);
        await nft(`add rule inet ${table} forward ct state established,related accept\nadd rule inet ${table} forward iifname { ${workloads} } accept\nadd rule inet ${table} forward drop\n`);
        await works(ruled, true);
      } finally {
        await nft(remove);
      }
    });
  });
}
