import { describe, expect, it } from 'vitest';
import { canonicalAddress, parseCidr } from '../src/net-address.js';

describe('canonical addresses and CIDRs', () => {
  it.each([
    ['198.18.0.1', '198.18.0.1'],
    ['FD00:0:0:0:0:0:0:1', 'fd00::1'],
    ['fd00:0:0:1:0:0:0:0', 'fd00:0:0:1::'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['fd00:1:2:3:4:5:6:7', 'fd00:1:2:3:4:5:6:7'],
    ['::ffff:198.18.0.1', '::ffff:c612:1'],
    ['fd00:0:1:1:1:1:1:1', 'fd00:0:1:1:1:1:1:1'],
  ])('%s → %s', (input, expected) => {
    expect(canonicalAddress(input)).toBe(expected);
  });

  it('rejects what is not an address', () => {
    expect(canonicalAddress('198.18.0.256')).toBeUndefined();
    expect(canonicalAddress('example.com')).toBeUndefined();
    // a dotted quad is returned as given, so only its canonical form may pass
    for (const text of ['198.018.0.1', '0198.18.0.1', ' 198.18.0.1', '198.18.0.1\n', '198.18.0']) {
      expect(canonicalAddress(text)).toBeUndefined();
    }
  });

  it.each([
    ['198.18.0.0/15', '198.18.0.0/15', 4],
    ['198.19.255.1/15', '198.18.0.0/15', 4],
    ['198.18.0.7', '198.18.0.7/32', 4],
    ['fd00::1:2/8', 'fd00::/8', 6],
    ['FD00::10', 'fd00::10/128', 6],
    ['0.0.0.0/0', '0.0.0.0/0', 4],
  ])('%s → %s', (input, text, family) => {
    expect(parseCidr(input)).toEqual({ text, family });
  });

  it('explains a bad CIDR', () => {
    expect(parseCidr('198.18.0.0/33')).toBe('prefix length "33" must be 0..32');
    expect(parseCidr('fd00::/x')).toBe('prefix length "x" must be 0..128');
    expect(parseCidr('nope/8')).toBe('"nope" is not an IPv4 or IPv6 address');
  });
});
