import { describe, expect, it } from 'vitest';
import { assertTableName, endpointChainName, logPrefix, policyChainName, ruleComment, safeName, truncateUtf8 } from '@dnsplane/nftables';

describe('names', () => {
  it('keeps plain names readable and makes others safe and distinct', () => {
    expect(policyChainName('web-egress', 'egress')).toBe('pol_web-egress_egress');
    expect(endpointChainName('ns1.web', 'ingress')).toBe('ep_ns1.web_ingress');
    const a = safeName('team a/web');
    const b = safeName('team_a/web');
    expect(a).toMatch(/^team_a_web_[0-9a-f]{8}$/);
    expect(a).not.toBe(b);
    expect(safeName('x'.repeat(200)).length).toBeLessThanOrEqual(57);
  });

  it('accepts only table names with the dnsplane prefix', () => {
    expect(assertTableName('dnsplane_t1234')).toBe('dnsplane_t1234');
    expect(() => assertTableName('filter')).toThrow(RangeError);
    expect(() => assertTableName('dnsplane x')).toThrow(RangeError);
  });

  it('keeps log prefixes and rule comments within nft byte limits', () => {
    const long = 'ü'.repeat(100);
    const prefix = logPrefix(long, 'egress', 12);
    expect(Buffer.byteLength(prefix)).toBeLessThanOrEqual(127);
    expect(prefix.startsWith('dnsplane ü')).toBe(true);
    expect(prefix.endsWith(' egress 12: ')).toBe(true);
    const comment = ruleComment(long, [{ accept: null }]);
    expect(Buffer.byteLength(comment)).toBeLessThanOrEqual(127);
    expect(comment).toMatch(/ #[0-9a-f]{12}$/);
    expect(truncateUtf8('aé', 2)).toBe('a');
  });
});
