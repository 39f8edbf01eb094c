// The driver on the real kernel, inside fresh network namespaces, for both backends.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DesiredState, IpFamily } from '@dnsplane/core';
import { isKernelError } from '@dnsplane/core';
import { createIptablesDataplane, detectBackend, toolName } from '../src/index.js';
import type { ResolvedBackend } from '../src/index.js';
import { fullState, peer, port, rule, v6 } from './fixtures.js';
import { createNetns, deleteNetns, inNetns, netnsRunner } from './netns.js';

/** The full fixture without its domain rule: no xt_bpf program is pinned in these tests. */
const kernelState: DesiredState = {
  ...fullState,
  domainSets: [],
  policies: fullState.policies.map((p) => ({
    ...p,
    ...(p.egress ? { egress: p.egress.filter((r) => r.destination.domainSetId === undefined) } : {}),
  })),
};

/** A change: the long-named policy is gone, the web egress allows another port. */
const changedState: DesiredState = {
  ...kernelState,
  policies: kernelState.policies
    .filter((p) => p.name !== 'ports-and-exclusions-with-a-rather-long-name')
    .map((p) => (p.name === 'web-egress' ? { ...p, egress: [rule(0, 'allow', { protocol: 6, destination: peer({ ports: [port(8443)] }) }), ...(p.egress ?? [])] } : p)),
  endpoints: kernelState.endpoints.map((e) => ({
    ...e,
    ingressPolicies: e.ingressPolicies.filter((n) => n !== 'ports-and-exclusions-with-a-rather-long-name'),
    egressPolicies: e.egressPolicies.filter((n) => n !== 'ports-and-exclusions-with-a-rather-long-name'),
  })),
};

/** A domain rule whose match program is not pinned: iptables-restore rejects it. */
function withUnpinnedDomainRule(state: DesiredState, family?: IpFamily): DesiredState {
  return {
    ...state,
    policies: state.policies.map((p) =>
      p.name === 'web-egress'
        ? {
            ...p,
            egress: [
              rule(0, 'allow', {
                protocol: 6,
                ...(family === 6 ? { family: 6 as const } : {}),
                destination: peer({ domainSetId: 0xdead, ports: [port(443)], ...(family === 6 ? { nets: [v6('fd00:99::/64')] } : {}) }),
              }),
              ...(p.egress ?? []),
            ],
          }
        : p,
    ),
  };
}

/** `-A` lines of our chains, grouped by chain, from iptables-save output or restore input. */
function ownRules(text: string): Record<string, string[]> {
  const chains: Record<string, string[]> = {};
  for (const line of text.split('\n')) {
    const m = /^-A (DNSPLANE-\S+) /.exec(line);
    if (m?.[1]) (chains[m[1]] ??= []).push(line);
  }
  return chains;
}

/** Lines of iptables-save that are not ours: the other tenants' chains and rules. */
function foreignLines(text: string): string[] {
  return text.split('\n').filter((l) => l !== '' && !l.startsWith('#') && !l.includes('DNSPLANE'));
}

function section(render: string, family: IpFamily): string {
  const [v4, v6text] = render.split('# ip6tables-restore');
  return (family === 4 ? v4 : v6text) ?? '';
}

describe.each(['legacy', 'nft'] as const)('iptables driver on the %s backend', (backend: ResolvedBackend) => {
  let netns = '';
  const save = (family: IpFamily): Promise<string> => inNetns(netns, toolName(backend, family, 'save'), ['-t', 'filter']);
  const driver = () => createIptablesDataplane({ backend, runner: netnsRunner(netns), pinRoot: '/sys/fs/bpf/dnsplane-test-none' });

  beforeEach(async () => {
    netns = await createNetns();
    // Someone else's chain and rules, which must survive everything the driver does.
    const tool = (family: IpFamily) => toolName(backend, family, 'restore');
    await inNetns(netns, tool(4), ['--noflush'], '*filter\n:FOREIGN-KEEP - [0:0]\n-A FOREIGN-KEEP -s 198.18.9.9/32 -j DROP\n-A FORWARD -j FOREIGN-KEEP\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n');
    await inNetns(netns, tool(6), ['--noflush'], '*filter\n:FOREIGN-KEEP - [0:0]\n-A FOREIGN-KEEP -s fd00:9::9/128 -j DROP\n-A FORWARD -j FOREIGN-KEEP\nCOMMIT\n');
  });

  afterEach(async () => {
    if (netns) await deleteNetns(netns);
    netns = '';
  });

  it('installs exactly the rendered rules in both families, leaving foreign rules alone', async () => {
    const dataplane = driver();
    const foreignBefore = [foreignLines(await save(4)), foreignLines(await save(6))];
    await dataplane.install(kernelState);
    const rendered = dataplane.render(kernelState);
    for (const family of [4, 6] as const) {
      const saved = await save(family);
      expect(ownRules(saved)).toEqual(ownRules(section(rendered, family)));
      expect(foreignLines(saved)).toEqual(foreignBefore[family === 4 ? 0 : 1]);
      // Our jump comes first in each built-in chain, ahead of the foreign jump.
      const forward = saved.split('\n').filter((l) => l.startsWith('-A FORWARD '));
      expect(forward).toEqual(['-A FORWARD -j DNSPLANE-FORWARD', '-A FORWARD -j FOREIGN-KEEP']);
    }
  });

  it('re-applies a change: rules replaced, chains no longer needed deleted, one jump each', async () => {
    const dataplane = driver();
    await dataplane.install(kernelState);
    expect(await save(4)).toContain('DNSPLANE-PI-ports-a_');
    await dataplane.install(changedState);
    const rendered = dataplane.render(changedState);
    for (const family of [4, 6] as const) {
      const saved = await save(family);
      expect(ownRules(saved)).toEqual(ownRules(section(rendered, family)));
      expect(saved).not.toContain('ports-a_');
      const ownChains = saved.split('\n').filter((l) => l.startsWith(':DNSPLANE-')).map((l) => l.split(' ')[0]?.slice(1));
      const renderedChains = section(rendered, family).split('\n').filter((l) => l.startsWith(':')).map((l) => l.split(' ')[0]?.slice(1));
      expect(new Set(ownChains)).toEqual(new Set(renderedChains));
    }
  });

  it('finds what a firewall reload took (jumps flushed, a chain emptied) and installing again puts it back', async () => {
    const dataplane = driver();
    expect(await dataplane.missingObjects()).toEqual([]); // nothing installed yet
    await dataplane.install(kernelState);
    expect(await dataplane.missingObjects()).toEqual([]);
    const ownBefore = [ownRules(await save(4)), ownRules(await save(6))];
    const tool = toolName(backend, 4, 'save').replace('-save', '');
    // what `iptables -F FORWARD` (a reload of someone's rules) and `iptables -F DNSPLANE-INPUT` do
    await inNetns(netns, tool, ['-F', 'FORWARD']);
    await inNetns(netns, tool, ['-F', 'DNSPLANE-INPUT']);
    const missing = await dataplane.missingObjects();
    expect(missing).toContain(`iptables-${backend} filter jump FORWARD -> DNSPLANE-FORWARD`);
    expect(missing.some((name) => name.startsWith(`iptables-${backend} filter rule -A DNSPLANE-INPUT `))).toBe(true);
    expect(missing.every((name) => name.startsWith('iptables-'))).toBe(true); // IPv6 untouched
    await dataplane.install(kernelState);
    expect(await dataplane.missingObjects()).toEqual([]);
    expect([ownRules(await save(4)), ownRules(await save(6))]).toEqual(ownBefore);
  });

  it('runs concurrent installs one after the other: the last state wins, one jump each', async () => {
    const dataplane = driver();
    await Promise.all([dataplane.install(kernelState), dataplane.install(changedState), dataplane.install(kernelState), dataplane.install(changedState)]);
    const rendered = dataplane.render(changedState);
    for (const family of [4, 6] as const) {
      const saved = await save(family);
      expect(ownRules(saved)).toEqual(ownRules(section(rendered, family)));
      expect(saved.split('\n').filter((l) => l === '-A FORWARD -j DNSPLANE-FORWARD')).toHaveLength(1);
    }
  });

  it('inserts each jump once however often it installs, and repairs a duplicated jump', async () => {
    await driver().install(kernelState);
    await driver().install(kernelState);
    const jumps = (text: string) => text.split('\n').filter((l) => /^-A (INPUT|FORWARD|OUTPUT) .*DNSPLANE/.test(l));
    expect(jumps(await save(4))).toEqual(['-A INPUT -j DNSPLANE-INPUT', '-A FORWARD -j DNSPLANE-FORWARD', '-A OUTPUT -j DNSPLANE-OUTPUT']);
    // A crash between two tools could leave a second copy: the next install removes it.
    await inNetns(netns, toolName(backend, 6, 'restore'), ['--noflush'], '*filter\n-A FORWARD -j DNSPLANE-FORWARD\nCOMMIT\n');
    expect(jumps(await save(6)).filter((l) => l.includes('FORWARD'))).toHaveLength(2);
    await driver().install(kernelState);
    expect(jumps(await save(6))).toEqual(['-A INPUT -j DNSPLANE-INPUT', '-A FORWARD -j DNSPLANE-FORWARD', '-A OUTPUT -j DNSPLANE-OUTPUT']);
  });

  it('applies nothing when a rule is rejected: the previous rules stay in force', async () => {
    const dataplane = driver();
    await dataplane.install(kernelState);
    const before = [await save(4), await save(6)];
    const error = await dataplane.install(withUnpinnedDomainRule(changedState)).catch((e: unknown) => e);
    expect(isKernelError(error)).toBe(true);
    // The error names the tool's complaint and our input line that caused it.
    expect(String(error)).toMatch(/failed to get bpf object; .*input line \d+: -A DNSPLANE-PE-web-egress .*xt_member_0000dead/);
    expect([await save(4), await save(6)].map(ownRules)).toEqual(before.map(ownRules));
    expect([await save(4), await save(6)].map(foreignLines)).toEqual(before.map(foreignLines));
  });

  it('rolls IPv4 back when IPv6 fails after IPv4 was applied', async () => {
    await driver().install(kernelState);
    const before = [await save(4), await save(6)];
    // A new driver instance: the rollback must not depend on memory of the previous install.
    const error = await driver().install(withUnpinnedDomainRule(changedState, 6)).catch((e: unknown) => e);
    expect(isKernelError(error)).toBe(true);
    expect(error instanceof Error && error.message).toMatch(/ip6tables-/);
    expect(ownRules(await save(4))).toEqual(ownRules(before[0] ?? ''));
    expect(ownRules(await save(6))).toEqual(ownRules(before[1] ?? ''));
    expect((await save(4)).split('\n').filter((l) => l.startsWith(':DNSPLANE-'))).toEqual(
      (before[0] ?? '').split('\n').filter((l) => l.startsWith(':DNSPLANE-')),
    );
  });

  it('a first install that fails on IPv6 leaves nothing of ours in IPv4', async () => {
    const error = await driver().install(withUnpinnedDomainRule(kernelState, 6)).catch((e: unknown) => e);
    expect(isKernelError(error)).toBe(true);
    expect(await save(4)).not.toContain('DNSPLANE');
    expect(await save(6)).not.toContain('DNSPLANE');
  });

  it('reports its chains and jumps in status', async () => {
    const dataplane = driver();
    await dataplane.install(kernelState);
    const status = await dataplane.status();
    expect(status.kind).toBe('iptables');
    expect(status.objects).toContain(`iptables-${backend} filter chain DNSPLANE-FORWARD`);
    expect(status.objects).toContain(`ip6tables-${backend} filter jump FORWARD -> DNSPLANE-FORWARD`);
    expect(status.counters['ipv4_jumps']).toBe(3);
    expect(status.objects.every((o) => o.includes('DNSPLANE-'))).toBe(true);
  });

  it('remove deletes our jumps and chains only', async () => {
    const dataplane = driver();
    const foreignBefore = [foreignLines(await save(4)), foreignLines(await save(6))];
    await dataplane.install(kernelState);
    await dataplane.remove();
    for (const family of [4, 6] as const) {
      const saved = await save(family);
      expect(saved).not.toContain('DNSPLANE');
      expect(foreignLines(saved)).toEqual(foreignBefore[family === 4 ? 0 : 1]);
    }
    await dataplane.remove(); // nothing left: a no-op
    expect((await dataplane.status()).objects).toEqual([]);
  });
});

describe('backend auto', () => {
  let netns = '';
  afterEach(async () => {
    if (netns) await deleteNetns(netns);
    netns = '';
  });

  it('picks nft on an empty host and legacy when only legacy tables hold rules', async () => {
    netns = await createNetns();
    expect(await detectBackend(netnsRunner(netns))).toBe('nft');
    await inNetns(netns, 'iptables-legacy-restore', ['--noflush'], '*filter\n-A INPUT -s 198.18.9.9/32 -j DROP\nCOMMIT\n');
    expect(await detectBackend(netnsRunner(netns))).toBe('legacy');
    const dataplane = createIptablesDataplane({ backend: 'auto', runner: netnsRunner(netns) });
    expect(await dataplane.resolvedBackend()).toBe('legacy');
    await dataplane.install(kernelState);
    expect(await inNetns(netns, 'iptables-legacy-save', ['-t', 'filter'])).toContain('DNSPLANE-FORWARD');
    expect(await inNetns(netns, 'iptables-nft-save', ['-t', 'filter'])).not.toContain('DNSPLANE');
  });
});
