// untrackDns auto's view of the other firewalls in the namespace (pure).
import { describe, expect, it } from 'vitest';
import { forwardGateView, forwardGates, type NftBaseChainRef } from '@dnsplane/nftables';

const own = { family: 'inet' as const, name: 'dnsplane' };
const chain = (over: Partial<NftBaseChainRef>): NftBaseChainRef => ({ family: 'ip', table: 'filter', name: 'FORWARD', hook: 'forward', policy: 'accept', rules: 0, ...over });

describe('forwardGates', () => {
  it('counts another table\'s forward chain with a drop policy or any rule, and a legacy filter table', () => {
    expect(forwardGates([chain({ policy: 'drop' })], own, [])).toEqual(['nft table ip filter: forward chain FORWARD (policy drop, 0 rules)']);
    expect(forwardGates([chain({ family: 'inet', table: 'firewalld', name: 'filter_FORWARD', rules: 9 })], own, [])).toEqual([
      'nft table inet firewalld: forward chain filter_FORWARD (policy accept, 9 rules)',
    ]);
    expect(forwardGates([], own, ['nat', 'filter'])).toEqual(['an iptables-legacy filter table']);
  });

  it('leaves out an empty accept chain, other hooks and families, and our own table', () => {
    const chains = [
      chain({}), // what `iptables -L` leaves on the nft backend
      chain({ hook: 'prerouting', policy: 'drop', rules: 3 }),
      chain({ family: 'bridge', policy: 'drop' }),
      chain({ family: 'inet', table: 'dnsplane', name: 'forward_egress', rules: 4 }),
    ];
    expect(forwardGates(chains, own, ['nat', 'mangle'])).toEqual([]);
  });

  it('the drift check\'s view: every other forward chain with its policy, rules left out (list chains has none)', () => {
    const listed = [chain({ rules: 5 }), chain({ table: 'docker', name: 'fw', policy: 'drop' })];
    const withoutRules = listed.map(({ rules: _rules, ...rest }) => rest);
    expect(forwardGateView(listed, own, ['filter'])).toEqual(forwardGateView(withoutRules, own, ['filter']));
    expect(forwardGateView(listed, own, [])).toEqual(['nft table ip docker: forward chain fw (policy drop)', 'nft table ip filter: forward chain FORWARD (policy accept)']);
  });
});
