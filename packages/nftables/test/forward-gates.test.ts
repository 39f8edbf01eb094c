// untrackDns auto's view of the other firewalls in the namespace (pure).
import { describe, expect, it } from 'vitest';
import { forwardGateView, forwardGates, quietGateChains, type NftBaseChainRef } from '@dnsplane/nftables';

const own = { family: 'inet' as const, name: 'dnsplane' };
const chain = (over: Partial<NftBaseChainRef>): NftBaseChainRef => ({ family: 'ip', table: 'filter', name: 'FORWARD', type: 'filter', hook: 'forward', policy: 'accept', rules: 0, ...over });
const nat = (over: Partial<NftBaseChainRef>): NftBaseChainRef => chain({ table: 'nat', name: 'POSTROUTING', type: 'nat', hook: 'postrouting', ...over });

describe('forwardGates', () => {
  it("counts another table's forward chain with a drop policy or any rule, a nat chain with a rule, and legacy filter and nat tables", () => {
    expect(forwardGates([chain({ policy: 'drop' })], own, [])).toEqual(['nft table ip filter: filter chain FORWARD (forward, policy drop, 0 rules)']);
    expect(forwardGates([chain({ family: 'inet', table: 'firewalld', name: 'filter_FORWARD', rules: 9 })], own, [])).toEqual([
      'nft table inet firewalld: filter chain filter_FORWARD (forward, policy accept, 9 rules)',
    ]);
    // a masquerade: an untracked query would leave untranslated
    expect(forwardGates([nat({ rules: 1 })], own, [])).toEqual(['nft table ip nat: nat chain POSTROUTING (postrouting, policy accept, 1 rules)']);
    expect(forwardGates([], own, ['nat', 'filter', 'mangle'])).toEqual(['an iptables-legacy filter table', 'an iptables-legacy nat table']);
  });

  it('leaves out an empty accept chain, an empty nat chain, other hooks and families, and our own table', () => {
    const chains = [
      chain({}), // what `iptables -L` leaves on the nft backend
      nat({}),
      chain({ hook: 'prerouting', policy: 'drop', rules: 3 }),
      chain({ family: 'bridge', policy: 'drop' }),
      chain({ family: 'inet', table: 'dnsplane', name: 'forward_egress', rules: 4 }),
    ];
    expect(forwardGates(chains, own, ['mangle', 'raw'])).toEqual([]);
  });

  it('the quiet chains: empty accept forward or nat chains of other tables, whose rules the drift check counts', () => {
    const chains = [chain({}), nat({}), chain({ table: 'docker', policy: 'drop' }), chain({ table: 'fw', rules: 2 }), chain({ family: 'inet', table: 'dnsplane' })];
    expect(quietGateChains(chains, own).map((c) => `${c.table} ${c.name}`)).toEqual(['filter FORWARD', 'nat POSTROUTING']);
  });

  it("the drift check's view: every other forward or nat chain with its policy, rules left out (list chains has none)", () => {
    const listed = [chain({ rules: 5 }), chain({ table: 'docker', name: 'fw', policy: 'drop' }), nat({ rules: 2 })];
    const withoutRules = listed.map(({ rules: _rules, ...rest }) => rest);
    expect(forwardGateView(listed, own, ['filter'])).toEqual(forwardGateView(withoutRules, own, ['filter']));
    expect(forwardGateView(listed, own, [])).toEqual([
      'nft table ip docker: filter chain fw (forward, policy drop)',
      'nft table ip filter: filter chain FORWARD (forward, policy accept)',
      'nft table ip nat: nat chain POSTROUTING (postrouting, policy accept)',
    ]);
  });
});
