// policy.allowed / policy.denied / policy.default_deny from a table listing (pure).
import { describe, expect, it } from 'vitest';
import { policyCounters } from '../src/policy-counters.js';
import type { NftChainSnapshot, NftTableSnapshot } from '../src/snapshot.js';

const table = (chains: NftChainSnapshot[]): NftTableSnapshot => ({ table: { family: 'inet', name: 'dnsplane_t' }, chains, sets: [] });

describe('policyCounters', () => {
  it('sums the accept and drop rules of the policy chains, and the last rule of each endpoint chain', () => {
    const counters = policyCounters(
      table([
        { name: 'forward_egress', rules: [{ handle: 1, verdict: 'accept', packets: 1000 }, { handle: 2, verdict: 'jump' }] },
        {
          name: 'pol_web_egress',
          rules: [
            { handle: 3, verdict: 'accept', packets: 7 }, // an Allow on the mark
            { handle: 4, verdict: 'accept', packets: 2 }, // the same Allow on the nft set
            { handle: 5, packets: 40 }, // a Log rule: counted, decides nothing
            { handle: 6, verdict: 'return', packets: 3 }, // Pass
            { handle: 7, verdict: 'drop', packets: 5 }, // Deny
          ],
        },
        { name: 'pol_db_ingress', rules: [{ handle: 8, verdict: 'drop', packets: 1 }] },
        { name: 'ep_web_egress', rules: [{ handle: 9, verdict: 'jump' }, { handle: 10, verdict: 'drop', packets: 4 }] },
        { name: 'ep_db_ingress', rules: [{ handle: 11, verdict: 'jump' }, { handle: 12, verdict: 'drop', packets: 0 }] },
      ]),
    );
    expect(counters).toEqual({
      'policy.allowed': 9,
      'policy.denied': 6,
      'policy.default_deny': 4,
      'policy.default_deny.ep_web_egress': 4,
      'policy.default_deny.ep_db_ingress': 0,
    });
  });

  it('reads zeros from a table with no policy chains (rules without counters count nothing)', () => {
    expect(policyCounters(table([{ name: 'pol_x_egress', rules: [{ handle: 1, verdict: 'accept' }] }]))).toEqual({
      'policy.allowed': 0,
      'policy.denied': 0,
      'policy.default_deny': 0,
    });
  });
});
