import { isKernelError } from '@dnsplane/core';
import { describe, expect, it } from 'vitest';
import { parseBaseChainList, parseRulesetListing, parseTableList, parseTableListing, type NftTableRef } from '@dnsplane/nftables';

const table: NftTableRef = { family: 'inet', name: 'dnsplane_p' };

// The shape nft 1.0.6 prints for `nft -j list table` (abridged from a real listing).
const listing = JSON.stringify({
  nftables: [
    { metainfo: { version: '1.0.6', release_name: 'Lester Gooch #5', json_schema_version: 1 } },
    { table: { family: 'inet', name: 'dnsplane_p', handle: 2 } },
    {
      set: {
        family: 'inet',
        name: 'ds_1_v4',
        table: 'dnsplane_p',
        type: 'ipv4_addr',
        handle: 1,
        flags: ['timeout'],
        elem: [{ elem: { val: '198.18.0.5', timeout: 30, expires: 29 } }, '198.18.0.6', { prefix: { addr: '198.18.1.0', len: 24 } }],
      },
    },
    { set: { family: 'inet', name: 'ds_1_v6', table: 'dnsplane_p', type: 'ipv6_addr', handle: 3, flags: ['timeout'] } },
    { chain: { family: 'inet', table: 'dnsplane_p', name: 'forward_egress', handle: 4, type: 'filter', hook: 'forward', prio: 0, policy: 'accept' } },
    { chain: { family: 'inet', table: 'dnsplane_p', name: 'ep_web_egress', handle: 5 } },
    {
      rule: {
        family: 'inet',
        table: 'dnsplane_p',
        chain: 'forward_egress',
        handle: 6,
        comment: 'established,related #eec13aa63286',
        expr: [{ match: { op: 'in', left: { ct: { key: 'state' } }, right: ['established', 'related'] } }, { accept: null }],
      },
    },
    {
      rule: {
        family: 'inet',
        table: 'dnsplane_p',
        chain: 'ep_web_egress',
        handle: 7,
        comment: 'default deny',
        expr: [{ counter: { packets: 12, bytes: 720 } }, { drop: null }],
      },
    },
  ],
});

describe('parseTableListing', () => {
  it('reads chains with their base spec, rules with comments, counters and verdicts, sets with elements', () => {
    const snapshot = parseTableListing(listing, table);
    expect(snapshot.chains).toEqual([
      {
        name: 'forward_egress',
        base: { type: 'filter', hook: 'forward', priority: 0, policy: 'accept' },
        rules: [{ handle: 6, comment: 'established,related #eec13aa63286', verdict: 'accept' }],
      },
      { name: 'ep_web_egress', rules: [{ handle: 7, comment: 'default deny', packets: 12, verdict: 'drop' }] },
    ]);
    expect(snapshot.sets).toEqual([
      {
        name: 'ds_1_v4',
        type: 'ipv4_addr',
        flags: ['timeout'],
        // permanent elements are plain values; prefixes (never written by dnsplane) are skipped
        elements: [{ value: '198.18.0.5', timeout: 30, expires: 29 }, { value: '198.18.0.6' }],
      },
      { name: 'ds_1_v6', type: 'ipv6_addr', flags: ['timeout'], elements: [] },
    ]);
  });

  it('lists tables of the ip families only', () => {
    const tables = JSON.stringify({
      nftables: [
        { metainfo: {} },
        { table: { family: 'inet', name: 'dnsplane', handle: 1 } },
        { table: { family: 'bridge', name: 'b', handle: 2 } },
        { table: { family: 'ip', name: 'nat', handle: 3 } },
      ],
    });
    expect(parseTableList(tables)).toEqual([
      { family: 'inet', name: 'dnsplane' },
      { family: 'ip', name: 'nat' },
    ]);
  });

  it('rejects output that is not an nft JSON document with a KernelError', () => {
    for (const bad of ['not json', '{"x":1}', '{"nftables":[{"chain":{"name":3}}]}']) {
      let caught: unknown;
      try {
        parseTableListing(bad, table);
      } catch (error) {
        caught = error;
      }
      expect(isKernelError(caught)).toBe(true);
    }
  });
});

describe('parseRulesetListing', () => {
  const ours = JSON.parse(listing) as { nftables: Array<Record<string, Record<string, unknown>>> };
  // Another table with objects of the same names (what `list ruleset` prints next to ours).
  const other = ours.nftables.slice(1).map((item) =>
    Object.fromEntries(Object.entries(item).map(([kind, object]) => [kind, kind === 'table' ? { ...object, name: 'other' } : { ...object, table: 'other', handle: 99 }])),
  );
  const ruleset = (items: unknown[]) => JSON.stringify({ nftables: [ours.nftables[0], ...items] });

  it("reads the table's objects as parseTableListing does and skips every other table's", () => {
    expect(parseRulesetListing(ruleset([...other, ...ours.nftables.slice(1)]), table).table).toEqual(parseTableListing(listing, table));
    expect(parseRulesetListing(ruleset([...ours.nftables.slice(1), ...other]), table).table).toEqual(parseTableListing(listing, table));
    expect(parseRulesetListing(ruleset([...ours.nftables.slice(1), ...other]), { family: 'ip', name: 'dnsplane_p' }).table).toBeUndefined();
  });

  it('is undefined when the ruleset has no such table, empty when the table is', () => {
    expect(parseRulesetListing(ruleset(other), table).table).toBeUndefined();
    expect(parseRulesetListing(ruleset([ours.nftables[1]]), table).table).toEqual({ table, chains: [], sets: [] });
  });

  it("lists every table's base chains with their rule counts, also without the table", () => {
    const firewall = [
      { table: { family: 'ip', name: 'filter', handle: 1 } },
      { chain: { family: 'ip', table: 'filter', name: 'FORWARD', handle: 1, type: 'filter', hook: 'forward', prio: 0, policy: 'drop' } },
      { chain: { family: 'ip', table: 'filter', name: 'DOCKER', handle: 2 } },
      { rule: { family: 'ip', table: 'filter', chain: 'FORWARD', handle: 3, expr: [{ jump: { target: 'DOCKER' } }] } },
      { rule: { family: 'ip', table: 'filter', chain: 'FORWARD', handle: 4, expr: [{ accept: null }] } },
      { rule: { family: 'ip', table: 'filter', chain: 'DOCKER', handle: 5, expr: [{ accept: null }] } },
    ];
    const { baseChains } = parseRulesetListing(ruleset(firewall), table);
    expect(baseChains).toEqual([{ family: 'ip', table: 'filter', name: 'FORWARD', type: 'filter', hook: 'forward', policy: 'drop', rules: 2 }]);
    const withOurs = parseRulesetListing(ruleset([...ours.nftables.slice(1), ...firewall]), table).baseChains;
    expect(withOurs.filter((c) => c.table === table.name).length).toBe(parseTableListing(listing, table).chains.filter((c) => c.base !== undefined).length);
    expect(parseBaseChainList(ruleset(firewall))).toEqual([{ family: 'ip', table: 'filter', name: 'FORWARD', type: 'filter', hook: 'forward', policy: 'drop' }]);
  });
});
