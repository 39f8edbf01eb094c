import { describe, expect, it } from 'vitest';
import {
  InvalidDomainPatternError,
  isInvalidDomainPattern,
  matchesDomain,
  normalizeDomainName,
  parseDomainPattern,
  type DomainPatternFlavor,
} from '../src/domain-pattern.js';
import { DnsplaneError } from '../src/errors.js';

type MatchCase = readonly [pattern: string, flavor: DomainPatternFlavor, name: string, expected: boolean];

const matchCases: readonly MatchCase[] = [
  // Exact names: whole names only, any case, trailing dots ignored on both sides.
  ['example.com', 'calico', 'example.com', true],
  ['example.com', 'calico', 'EXAMPLE.com.', true],
  ['Example.COM.', 'calico', 'example.com', true],
  ['example.com', 'calico', 'www.example.com', false],
  ['ok.example', 'calico', 'evilok.example', false],
  ['ok.example', 'calico', 'x.ok.example', false],
  ['ok.example', 'calico', 'ok.example.evil', false],
  ['api.github.com', 'cilium-name', 'API.GitHub.com', true],
  ['api.github.com', 'cilium-name', 'x.api.github.com', false],
  ['_sip._tcp.example.com', 'calico', '_SIP._tcp.example.com', true],
  // Calico whole-label `*`: one or more labels at that position.
  ['*.example.com', 'calico', 'a.example.com', true],
  ['*.example.com', 'calico', 'a.b.example.com', true],
  ['*.example.com', 'calico', 'a.b.c.d.example.com', true],
  ['*.example.com', 'calico', 'example.com', false],
  ['*.example.com', 'calico', 'aexample.com', false],
  ['*.example.com', 'calico', 'a.example.org', false],
  ['www.*.com', 'calico', 'www.sun.com', true],
  ['www.*.com', 'calico', 'www.apple.com', true],
  ['www.*.com', 'calico', 'www.a.b.com', true],
  ['www.*.com', 'calico', 'www.com', false],
  ['www.*.com', 'calico', 'x.www.sun.com', false],
  ['update.*.mycompany.com', 'calico', 'update.tools.mycompany.com', true],
  ['update.*.mycompany.com', 'calico', 'update.a.b.mycompany.com', true],
  ['update.*.mycompany.com', 'calico', 'update.mycompany.com', false],
  ['example.*', 'calico', 'example.com', true],
  ['example.*', 'calico', 'example.co.uk', true],
  ['example.*', 'calico', 'example', false],
  ['*.*.example.com', 'calico', 'a.example.com', false],
  ['*.*.example.com', 'calico', 'a.b.example.com', true],
  ['*.*.example.com', 'calico', 'a.b.c.example.com', true],
  ['*', 'calico', 'anything.at.all', true],
  ['*', 'calico', 'com', true],
  // Calico in-label `*`: zero or more characters inside one label.
  ['api-*.example.com', 'calico', 'api-eu.example.com', true],
  ['api-*.example.com', 'calico', 'api-.example.com', true],
  ['api-*.example.com', 'calico', 'api.example.com', false],
  ['api-*.example.com', 'calico', 'api-eu.x.example.com', false],
  ['api-*.example.com', 'calico', 'x.api-eu.example.com', false],
  ['*-cdn.example.com', 'calico', 'eu-cdn.example.com', true],
  ['*-cdn.example.com', 'calico', 'eu-cdn2.example.com', false],
  ['a*b*c.example.com', 'calico', 'abc.example.com', true],
  ['a*b*c.example.com', 'calico', 'axxbyyc.example.com', true],
  ['a*b*c.example.com', 'calico', 'acb.example.com', false],
  ['a*a.example.com', 'calico', 'a.example.com', false],
  ['a*a.example.com', 'calico', 'aa.example.com', true],
  ['s3-*.amazonaws.com', 'calico', 'S3-EU-WEST-1.amazonaws.com', true],
  // Cilium matchPattern: a whole-label `*` is exactly one label.
  ['*.example.com', 'cilium-pattern', 'a.example.com', true],
  ['*.example.com', 'cilium-pattern', 'a.b.example.com', false],
  ['*.example.com', 'cilium-pattern', 'example.com', false],
  ['www.*.com', 'cilium-pattern', 'www.sun.com', true],
  ['www.*.com', 'cilium-pattern', 'www.a.b.com', false],
  ['**.example.com', 'cilium-pattern', 'a.example.com', true],
  ['**.example.com', 'cilium-pattern', 'a.b.example.com', true],
  ['**.example.com', 'cilium-pattern', 'example.com', false],
  ['*', 'cilium-pattern', 'a.b.c', true],
  ['**', 'cilium-pattern', 'a.b.c', true],
  ['sub*.cilium.io', 'cilium-pattern', 'sub.cilium.io', true],
  ['sub*.cilium.io', 'cilium-pattern', 'subdomain.cilium.io', true],
  ['sub*.cilium.io', 'cilium-pattern', 'a.sub.cilium.io', false],
  ['cilium.io', 'cilium-pattern', 'cilium.io', true],
  // IDN: Unicode and punycode forms are the same name.
  ['bücher.example', 'calico', 'xn--bcher-kva.example', true],
  ['xn--bcher-kva.example', 'calico', 'BÜCHER.example', true],
  ['*.bücher.example', 'calico', 'shop.xn--bcher-kva.example', true],
  ['bücher。example', 'calico', 'bücher.example', true],
  // A name that is not a valid name matches nothing.
  ['*', 'calico', 'a..b', false],
  ['*', 'calico', '', false],
];

type TextCase = readonly [pattern: string, flavor: DomainPatternFlavor, text: string, exact: boolean];

const textCases: readonly TextCase[] = [
  ['Example.COM.', 'calico', 'example.com', true],
  ['example.com', 'cilium-name', 'example.com', true],
  ['example.com', 'cilium-pattern', 'example.com', true],
  ['*.Example.com', 'calico', '*.example.com', false],
  ['*.example.com', 'cilium-pattern', 'cilium:*.example.com', false],
  ['**.example.com', 'cilium-pattern', '*.example.com', false],
  ['**.*.example.com', 'cilium-pattern', 'cilium:**.*.example.com', false],
  ['API-*.example.com', 'cilium-pattern', 'api-*.example.com', false],
  ['api-*.example.com', 'calico', 'api-*.example.com', false],
  ['*', 'cilium-pattern', '*', false],
  ['*.', 'cilium-pattern', '*', false],
  ['*', 'calico', '*', false],
  ['bücher.example', 'cilium-name', 'xn--bcher-kva.example', true],
];

type RejectCase = readonly [pattern: string, flavor: DomainPatternFlavor, reason: RegExp];

const longLabel = 'a'.repeat(64);
const rejectCases: readonly RejectCase[] = [
  ['', 'calico', /empty/],
  ['.', 'calico', /root/],
  ['a..b', 'calico', /empty label/],
  ['.example.com', 'calico', /empty label/],
  ['example.com..', 'calico', /empty label/],
  [`${longLabel}.com`, 'calico', /longer than 63/],
  [`${'a'.repeat(64)}*.com`, 'calico', /more than 63/],
  [`${'a'.repeat(40)}*${'b'.repeat(30)}.com`, 'calico', /more than 63/],
  [Array.from({ length: 64 }, () => 'abc').join('.'), 'calico', /longer than 253/],
  [Array.from({ length: 128 }, () => '*').join('.'), 'calico', /longer than 253/],
  ['exa mple.com', 'calico', /white space/],
  [' example.com', 'calico', /white space/],
  ['exam!ple.com', 'calico', /character/],
  ['example.com/path', 'calico', /character/],
  ['**.example.com', 'calico', /\*\*/],
  ['a**b.example.com', 'calico', /\*\*/],
  ['a**b.example.com', 'cilium-pattern', /\*\*/],
  ['www.**.example.com', 'cilium-pattern', /first label/],
  ['*.example.com', 'cilium-name', /matchName/],
  ['api-*.example.com', 'cilium-name', /matchName/],
  ['*', 'cilium-name', /matchName/],
  ['xn--zz.example', 'calico', /punycode/],
  ['bü*.example', 'calico', /non-ASCII/],
  ['a.b\u0000.c', 'calico', /character/],
];

describe('domain patterns', () => {
  it('has at least 60 table cases', () => {
    expect(matchCases.length + textCases.length + rejectCases.length).toBeGreaterThanOrEqual(60);
  });

  it.each(matchCases)('%s (%s) vs %s → %s', (pattern, flavor, name, expected) => {
    expect(matchesDomain(parseDomainPattern(pattern, flavor), name)).toBe(expected);
  });

  it.each(textCases)('%s (%s) has canonical text %s', (pattern, flavor, text, exact) => {
    const parsed = parseDomainPattern(pattern, flavor);
    expect(parsed.text).toBe(text);
    expect(parsed.exact).toBe(exact);
  });

  it.each(rejectCases)('rejects %j (%s)', (pattern, flavor, reason) => {
    let caught: unknown;
    try {
      parseDomainPattern(pattern, flavor);
    } catch (e) {
      caught = e;
    }
    expect(isInvalidDomainPattern(caught)).toBe(true);
    expect(caught).toBeInstanceOf(DnsplaneError);
    expect((caught as InvalidDomainPatternError).reason).toMatch(reason);
  });

  it('models the wildcard kinds structurally', () => {
    expect(parseDomainPattern('www.*.com', 'calico').labels).toEqual([
      { kind: 'literal', text: 'www' },
      { kind: 'anyMany' },
      { kind: 'literal', text: 'com' },
    ]);
    expect(parseDomainPattern('*.api-*.com', 'cilium-pattern').labels).toEqual([
      { kind: 'anyOne' },
      { kind: 'glob', parts: ['api-', ''] },
      { kind: 'literal', text: 'com' },
    ]);
  });

  it('accepts a name of exactly 253 characters and labels of 63', () => {
    const name = [`${'a'.repeat(63)}`, 'b'.repeat(63), 'c'.repeat(63), 'd'.repeat(61)].join('.');
    expect(name.length).toBe(253);
    expect(parseDomainPattern(name, 'calico').exact).toBe(true);
    expect(() => parseDomainPattern(`x${name}`, 'calico')).toThrow(InvalidDomainPatternError);
  });

  it('normalises names', () => {
    expect(normalizeDomainName('WWW.Example.COM.')).toBe('www.example.com');
    expect(normalizeDomainName('München.de')).toBe('xn--mnchen-3ya.de');
    expect(() => normalizeDomainName('*.example.com')).toThrow(InvalidDomainPatternError);
    expect(() => normalizeDomainName('a..b')).toThrow(InvalidDomainPatternError);
  });
});
