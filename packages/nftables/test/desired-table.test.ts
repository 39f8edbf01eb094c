import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  BASE_CHAINS,
  desiredTable,
  planInstall,
  renderRule,
  sortedOperationLines,
  type NftStatement,
  type NftTableRef,
} from '@dnsplane/nftables';
import { anyPeer, baseState, githubSet, rule, webEgress } from './fixtures.js';

const table: NftTableRef = { family: 'inet', name: 'dnsplane_golden' };
const golden = new URL('./golden/install.txt', import.meta.url);
const goldenUntracked = new URL('./golden/install-untracked-dns.txt', import.meta.url);
const trustedServers = [
  { family: 4 as const, address: '198.18.53.2', port: 53 },
  { family: 4 as const, address: '198.18.53.3', port: 53 },
  { family: 6 as const, address: 'fd00:18:53::2', port: 53 },
];
const untrackedState = (interfaces: readonly string[] = []) => baseState({ dns: { trustedServers, minTTL: 30, extraTTL: 10, maxAddressesPerName: 256, interfaces } });
const ANSWER_MARK = 0x04000000;

function chainRules(name: string): ReadonlyArray<readonly NftStatement[]> {
  const chain = desiredTable(baseState(), table).chains.find((c) => c.chain.name === name);
  if (chain === undefined) throw new Error(`no chain ${name}`);
  return chain.rules.map((r) => r.expr);
}

describe('desiredTable', () => {
  it('renders the whole first-install transaction as in the golden file (sorted lines)', () => {
    const lines = sortedOperationLines(planInstall(desiredTable(baseState(), table), undefined).transaction);
    const text = `${lines.join('\n')}\n`;
    if (process.env['UPDATE_GOLDEN'] === '1' || !existsSync(golden)) writeFileSync(golden, text);
    expect(text).toBe(readFileSync(golden, 'utf8'));
  });

  it('with an answer mark: renders the untracked-DNS transaction as in its golden file (sorted lines)', () => {
    const lines = sortedOperationLines(planInstall(desiredTable(untrackedState(), table, { answerMark: ANSWER_MARK }), undefined).transaction);
    const text = `${lines.join('\n')}\n`;
    if (process.env['UPDATE_GOLDEN'] === '1' || !existsSync(goldenUntracked)) writeFileSync(goldenUntracked, text);
    expect(text).toBe(readFileSync(goldenUntracked, 'utf8'));
  });

  it('untracks UDP DNS of egress-enforced workloads only: raw prerouting chain, verified answers accepted in forward', () => {
    const desired = desiredTable(untrackedState(), table, { answerMark: ANSWER_MARK });
    expect(desired.untracked).toEqual({ answerMark: ANSWER_MARK, interfaces: ['veth-web'] });
    const raw = desired.chains.find((c) => c.chain.name === BASE_CHAINS.preroutingUntrack);
    expect(raw?.chain.base).toEqual({ type: 'filter', hook: 'prerouting', priority: -300, policy: 'accept' });
    const mark = { match: { op: '==', left: { '&': [{ meta: { key: 'mark' } }, ANSWER_MARK] }, right: ANSWER_MARK } };
    const udp = { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: 'udp' } };
    expect(raw?.rules.map((r) => r.expr)).toEqual([
      [
        udp,
        { match: { op: '==', left: { payload: { protocol: 'udp', field: 'dport' } }, right: 53 } },
        { match: { op: '==', left: { meta: { key: 'iifname' } }, right: 'veth-web' } },
        { match: { op: '==', left: { meta: { key: 'nfproto' } }, right: 'ipv4' } },
        { match: { op: '==', left: { payload: { protocol: 'ip', field: 'daddr' } }, right: { set: ['198.18.53.2', '198.18.53.3'] } } },
        { match: { op: '!=', left: { fib: { result: 'type', flags: ['daddr'] } }, right: 'local' } },
        { notrack: null },
      ],
      [
        mark,
        udp,
        { match: { op: '==', left: { payload: { protocol: 'udp', field: 'sport' } }, right: 53 } },
        { match: { op: '==', left: { meta: { key: 'nfproto' } }, right: 'ipv4' } },
        { match: { op: '==', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: { set: ['198.18.53.2', '198.18.53.3'] } } },
        { notrack: null },
      ],
      expect.arrayContaining([{ match: { op: '==', left: { payload: { protocol: 'ip6', field: 'daddr' } }, right: 'fd00:18:53::2' } }]),
      expect.arrayContaining([mark, { match: { op: '==', left: { payload: { protocol: 'ip6', field: 'saddr' } }, right: 'fd00:18:53::2' } }]),
    ]);
    const verified = [mark, udp, { match: { op: 'in', left: { ct: { key: 'state' } }, right: ['untracked'] } }, { accept: null }];
    for (const name of [BASE_CHAINS.forwardEgress, BASE_CHAINS.forwardIngress]) {
      const rules = desired.chains.find((c) => c.chain.name === name)?.rules.map((r) => r.expr);
      expect(rules?.[1], name).toEqual(verified); // right after established,related, before any dispatch
    }
    // host endpoints (input/output) keep conntrack for their DNS
    for (const name of [BASE_CHAINS.inputEgress, BASE_CHAINS.inputIngress, BASE_CHAINS.outputEgress, BASE_CHAINS.outputIngress]) {
      expect(JSON.stringify(desired.chains.find((c) => c.chain.name === name)?.rules ?? []), name).not.toContain('untracked');
    }
  });

  it('where the install knows the servers on the node: leaves them out of the untrack rules and asks no fib of each query', () => {
    const rawRules = (serversOnNode: readonly string[]) =>
      desiredTable(untrackedState(), table, { answerMark: ANSWER_MARK, serversOnNode }).chains.find((c) => c.chain.name === BASE_CHAINS.preroutingUntrack)?.rules.map((r) => r.expr);
    const daddr = (expr: readonly unknown[] | undefined) => JSON.stringify(expr?.find((e) => JSON.stringify(e).includes('"daddr"') && !JSON.stringify(e).includes('fib')));
    const none = rawRules([]);
    expect(JSON.stringify(none)).not.toContain('fib');
    expect(daddr(none?.[0])).toContain('"set":["198.18.53.2","198.18.53.3"]');
    // 198.18.53.3 is the node's own: its queries stay tracked (its answers leave through output)
    const one = rawRules(['198.18.53.3']);
    expect(JSON.stringify(one)).not.toContain('fib');
    expect(daddr(one?.[0])).toContain('"right":"198.18.53.2"');
    expect(JSON.stringify(one?.[1])).toContain('"right":"198.18.53.2"');
    expect(JSON.stringify(one)).not.toContain('198.18.53.3');
    expect(JSON.stringify(one?.[2])).toContain('fd00:18:53::2');
    // every server on the node: nothing to untrack, no verified-answer accept either
    const all = desiredTable(untrackedState(), table, { answerMark: ANSWER_MARK, serversOnNode: ['198.18.53.2', '198.18.53.3', 'fd00:18:53::2'] });
    expect(all.chains.map((c) => c.chain.name)).not.toContain(BASE_CHAINS.preroutingUntrack);
    expect(JSON.stringify(all.chains)).not.toContain('untracked');
  });

  it('untracks nothing without an answer mark, without trusted servers, or where the parser does not watch', () => {
    const none = (state: ReturnType<typeof baseState>, options: Parameters<typeof desiredTable>[2]) => {
      const desired = desiredTable(state, table, options);
      expect(desired.untracked.interfaces).toEqual([]);
      expect(desired.chains.map((c) => c.chain.name)).not.toContain(BASE_CHAINS.preroutingUntrack);
      expect(JSON.stringify(desired.chains)).not.toContain('untracked');
    };
    none(untrackedState(), {});
    none(baseState(), { answerMark: ANSWER_MARK });
    none(untrackedState(['eth0']), { answerMark: ANSWER_MARK });
    expect(desiredTable(untrackedState(['eth0', 'veth-web']), table, { answerMark: ANSWER_MARK }).untracked.interfaces).toEqual(['veth-web']);
  });

  it('with dns.interfaces listed, untracks a query only if the route to its server leaves by a listed interface (where its answer gets the mark)', () => {
    const listed = desiredTable(untrackedState(['veth-web', 'eth0']), table, { answerMark: ANSWER_MARK });
    expect(listed.untracked).toEqual({ answerMark: ANSWER_MARK, interfaces: ['veth-web'], answersWatchedOn: ['eth0', 'veth-web'] });
    const raw = listed.chains.find((c) => c.chain.name === BASE_CHAINS.preroutingUntrack);
    const query = raw?.rules.find((r) => r.comment?.startsWith('untrack dns query ipv4'))?.expr;
    expect(query).toContainEqual({ match: { op: '==', left: { fib: { result: 'oifname', flags: ['daddr'] } }, right: { set: ['eth0', 'veth-web'] } } });
    // the answers' rule is unchanged: the mark says the parser checked it
    expect(JSON.stringify(raw?.rules.find((r) => r.comment?.startsWith('untrack verified dns answer ipv4'))?.expr)).not.toContain('fib');
    // every interface watched (the default): no route condition
    expect(JSON.stringify(desiredTable(untrackedState(), table, { answerMark: ANSWER_MARK }).chains)).not.toContain('"result":"oifname"');
  });

  it('creates a pair of timeout sets per domain set', () => {
    const sets = desiredTable(baseState(), table).sets;
    expect(sets.map((s) => [s.name, s.type, s.flags])).toEqual([
      ['ds_1a2b_v4', 'ipv4_addr', ['timeout']],
      ['ds_1a2b_v6', 'ipv6_addr', ['timeout']],
      ['ds_3c4d_v4', 'ipv4_addr', ['timeout']],
      ['ds_3c4d_v6', 'ipv6_addr', ['timeout']],
    ]);
  });

  it('accepts established/related first in every base chain', () => {
    const baseChains = desiredTable(baseState(), table).chains.filter((c) => c.chain.base !== undefined);
    expect(baseChains.length).toBeGreaterThan(0);
    for (const { chain } of baseChains) {
      expect(chainRules(chain.name)[0]).toEqual([
        { match: { op: 'in', left: { ct: { key: 'state' } }, right: ['established', 'related'] } },
        { accept: null },
      ]);
    }
  });

  it('dispatches workloads on iifname (egress) / oifname (ingress) and host endpoints on input/output', () => {
    expect(chainRules(BASE_CHAINS.forwardEgress)[1]).toEqual([
      { match: { op: '==', left: { meta: { key: 'iifname' } }, right: 'veth-web' } },
      { jump: { target: 'ep_web_egress' } },
    ]);
    expect(chainRules(BASE_CHAINS.forwardIngress)[1]).toEqual([
      { match: { op: '==', left: { meta: { key: 'oifname' } }, right: 'veth-web' } },
      { jump: { target: 'ep_web_ingress' } },
    ]);
    expect(chainRules(BASE_CHAINS.inputIngress).at(-1)).toEqual([{ jump: { target: 'ep_node_ingress' } }]);
  });

  it('hooks only the base chains that dispatch an endpoint: one that would only accept costs every packet on its hook and decides nothing', () => {
    const hooked = (state: ReturnType<typeof baseState>) =>
      desiredTable(state, table)
        .chains.filter((c) => c.chain.base !== undefined)
        .map((c) => c.chain.name)
        .sort();
    // web is selected both ways, the node (a host endpoint) in ingress only: no output_egress
    expect(hooked(baseState())).toEqual([BASE_CHAINS.forwardEgress, BASE_CHAINS.forwardIngress, BASE_CHAINS.inputEgress, BASE_CHAINS.inputIngress, BASE_CHAINS.outputIngress].sort());
    // nothing selected: nothing hooked
    const idle = baseState();
    expect(hooked({ ...idle, endpoints: idle.endpoints.map((e) => ({ ...e, ingressPolicies: [], egressPolicies: [] })) })).toEqual([]);
  });

  it('leaves an endpoint that no policy selects untouched', () => {
    const desired = desiredTable(baseState(), table);
    expect(desired.chains.map((c) => c.chain.name).filter((n) => n.includes('idle'))).toEqual([]);
    expect(JSON.stringify(desired.chains)).not.toContain('veth-idle');
  });

  it('jumps into policy chains in order and ends with the default deny', () => {
    expect(chainRules('ep_web_egress')).toEqual([
      [
        { match: { op: '==', left: { payload: { protocol: 'icmpv6', field: 'type' } }, right: { set: [133, 134, 135, 136] } } },
        { accept: null },
      ],
      [{ match: { op: 'in', left: { ct: { key: 'state' } }, right: ['invalid'] } }, { drop: null }],
      [{ jump: { target: 'pol_web-egress_egress' } }],
      [{ counter: null }, { drop: null }],
    ]);
  });

  it('maps Allow/Deny/Log/Pass to accept/drop/log-and-continue/return', () => {
    const rules = chainRules('pol_web-egress_egress');
    expect(rules.at(-2)).toEqual([{ counter: null }, { log: { prefix: 'dnsplane web-egress egress 2: ' } }]);
    expect(rules.at(-1)).toEqual([{ counter: null }, { drop: null }]);
    expect(chainRules('pol_base-ingress_ingress')[2]).toEqual([
      { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: 17 } },
      { match: { op: '!=', left: { payload: { protocol: 'th', field: 'dport' } }, right: 53 } },
      { counter: null },
      { return: null },
    ]);
  });

  it('matches a domain set as a pair of rules, ip daddr @<set>_v4 and ip6 daddr @<set>_v6', () => {
    const rules = renderRule(webEgress.egress![0]!, {
      policy: 'web-egress',
      direction: 'egress',
      domainSets: new Map([[githubSet.id, githubSet]]),
    });
    expect(rules).toEqual([
      [
        { match: { op: '==', left: { meta: { key: 'nfproto' } }, right: 'ipv4' } },
        { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: 6 } },
        { match: { op: '==', left: { payload: { protocol: 'ip', field: 'daddr' } }, right: '@ds_1a2b_v4' } },
        { match: { op: '==', left: { payload: { protocol: 'th', field: 'dport' } }, right: 443 } },
        { counter: null },
        { accept: null },
      ],
      [
        { match: { op: '==', left: { meta: { key: 'nfproto' } }, right: 'ipv6' } },
        { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: 6 } },
        { match: { op: '==', left: { payload: { protocol: 'ip6', field: 'daddr' } }, right: '@ds_1a2b_v6' } },
        { match: { op: '==', left: { payload: { protocol: 'th', field: 'dport' } }, right: 443 } },
        { counter: null },
        { accept: null },
      ],
    ]);
  });

  it('splits nets/notNets by family, with port sets and ranges', () => {
    const rules = chainRules('pol_base-ingress_ingress');
    expect(rules[0]).toEqual([
      { match: { op: '==', left: { meta: { key: 'nfproto' } }, right: 'ipv4' } },
      { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: 6 } },
      { match: { op: '==', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: { prefix: { addr: '198.18.0.0', len: 15 } } } },
      { match: { op: '!=', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: { prefix: { addr: '198.18.5.0', len: 24 } } } },
      { match: { op: '==', left: { payload: { protocol: 'th', field: 'dport' } }, right: { set: [22, { range: [8000, 8080] }] } } },
      { counter: null },
      { accept: null },
    ]);
    expect(rules[1]).toEqual([
      { match: { op: '==', left: { meta: { key: 'nfproto' } }, right: 'ipv6' } },
      { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: 6 } },
      { match: { op: '==', left: { payload: { protocol: 'ip6', field: 'saddr' } }, right: { prefix: { addr: 'fd00::', len: 8 } } } },
      { match: { op: '==', left: { payload: { protocol: 'th', field: 'dport' } }, right: { set: [22, { range: [8000, 8080] }] } } },
      { counter: null },
      { accept: null },
    ]);
  });

  it('restricts a rule to one family when its nets or protocol say so, and drops impossible rules', () => {
    const context = { policy: 'p', direction: 'egress' as const, domainSets: new Map() };
    const icmp = renderRule(rule(0, { action: 'allow', protocol: 1 }), context);
    expect(icmp).toHaveLength(1);
    expect(icmp[0]?.[0]).toEqual({ match: { op: '==', left: { meta: { key: 'nfproto' } }, right: 'ipv4' } });
    const impossible = renderRule(
      rule(0, {
        action: 'allow',
        source: { ...anyPeer, nets: [{ family: 4, text: '198.18.0.0/15' }] },
        destination: { ...anyPeer, nets: [{ family: 6, text: 'fd00::/8' }] },
      }),
      context,
    );
    expect(impossible).toEqual([]);
    const portsOnly = renderRule(rule(0, { action: 'deny', destination: { ...anyPeer, ports: [{ first: 80, last: 80 }] } }), context);
    expect(portsOnly).toEqual([
      [
        { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: { set: [6, 17, 132, 136, 33] } } },
        { match: { op: '==', left: { payload: { protocol: 'th', field: 'dport' } }, right: 80 } },
        { counter: null },
        { drop: null },
      ],
    ]);
  });

  it('gives every rule a comment that fingerprints its statements', () => {
    const a = desiredTable(baseState(), table);
    const b = desiredTable(baseState(), table);
    const comments = (d: typeof a) => d.chains.flatMap((c) => c.rules.map((r) => r.comment));
    expect(comments(a)).toEqual(comments(b));
    for (const comment of comments(a)) expect(comment).toMatch(/ #[0-9a-f]{12}$/);
  });
});
