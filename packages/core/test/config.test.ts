import { describe, expect, it } from 'vitest';
import { DnsplaneConfigSchema, formatTrustedServer, parseTrustedServer } from '../src/config.js';
import { issuesToProblems } from '../src/input-issues.js';

describe('parseTrustedServer', () => {
  const valid: Array<[string, number, string, number]> = [
    ['198.18.0.10:53', 4, '198.18.0.10', 53],
    ['198.18.0.10', 4, '198.18.0.10', 53],
    ['198.18.0.10:5353', 4, '198.18.0.10', 5353],
    [' 198.18.0.10:53 ', 4, '198.18.0.10', 53],
    ['[fd00::10]:53', 6, 'fd00::10', 53],
    ['[fd00::10]', 6, 'fd00::10', 53],
    ['[FD00:0:0:1:0:0:0:10]:1053', 6, 'fd00:0:0:1::10', 1053],
    ['fd00::10', 6, 'fd00::10', 53],
    ['fd00:0:0:1::10', 6, 'fd00:0:0:1::10', 53],
    ['[::ffff:198.18.0.1]:53', 6, '::ffff:c612:1', 53],
    ['198.18.0.10:65535', 4, '198.18.0.10', 65535],
    ['198.18.0.10:1', 4, '198.18.0.10', 1],
  ];
  for (const [text, family, address, port] of valid) {
    it(`accepts ${JSON.stringify(text)}`, () => {
      expect(parseTrustedServer(text)).toEqual({ family, address, port });
    });
  }

  const invalid: Array<[string, RegExp]> = [
    ['', /is not an IPv4 or IPv6 address/],
    ['dns.example.test:53', /host names are not allowed/],
    ['198.18.0.256:53', /not an IPv4 or IPv6 address/],
    ['198.18.0.10:0', /port 0 is outside 1-65535/],
    ['198.18.0.10:65536', /port 65536 is outside/],
    ['198.18.0.10:', /port "" is not a number/],
    ['198.18.0.10:dns', /port "dns" is not a number/],
    ['198.18.0.10:53:53', /write an IPv6 server with a port as/],
    ['[fd00::10', /missing "]"/],
    ['[fd00::10]53', /expected ":port"/],
    ['[198.18.0.10]:53', /is not an IPv6 address/],
    ['fd00::10:53x', /write an IPv6 server with a port/],
    ['[fe80::1%eth0]:53', /zone ids/],
  ];
  for (const [text, reason] of invalid) {
    it(`rejects ${JSON.stringify(text)}`, () => {
      const result = parseTrustedServer(text);
      expect(typeof result).toBe('string');
      expect(result).toMatch(reason);
    });
  }

  it('formats servers canonically', () => {
    expect(formatTrustedServer({ family: 4, address: '198.18.0.10', port: 53 })).toBe('198.18.0.10:53');
    expect(formatTrustedServer({ family: 6, address: 'fd00::10', port: 53 })).toBe('[fd00::10]:53');
  });
});

describe('DnsplaneConfigSchema', () => {
  it('fills the documented defaults', () => {
    expect(DnsplaneConfigSchema.parse({})).toEqual({
      dataplane: 'nftables',
      dns: { trustedServers: [], minTTL: 30, extraTTL: 10, maxAddressesPerName: 256, interfaces: [] },
      resources: [],
      statePath: '/var/lib/dnsplane/state.json',
      driftCheckSeconds: 30,
      log: { level: 'info' },
      metrics: {},
      iptables: { backend: 'auto' },
      bpf: { pinRoot: '/sys/fs/bpf/dnsplane' },
      nftables: { table: 'dnsplane', markMask: '0x00ff0000', mirrorDrainIntervalMs: 1000, untrackDns: 'auto', answerMark: '0x04000000' },
    });
  });

  it('reads metrics.listen as an address and a port, canonical; a port is required', () => {
    expect(DnsplaneConfigSchema.parse({ metrics: { listen: '127.0.0.1:9464' } }).metrics.listen).toBe('127.0.0.1:9464');
    expect(DnsplaneConfigSchema.parse({ metrics: { listen: '[FD00:0::1]:9464' } }).metrics.listen).toBe('[fd00::1]:9464');
    expect(problems({ metrics: { listen: '127.0.0.1' } })).toEqual([
      'metrics.listen: invalid listen address "127.0.0.1": a port is required: "address:port" or "[ipv6]:port"',
    ]);
    expect(problems({ metrics: { listen: 'localhost:9464' } })).toEqual([
      'metrics.listen: invalid listen address "localhost:9464": "localhost" is not an IPv4 or IPv6 address (host names are not allowed)',
    ]);
    expect(problems({ metrics: { listen: '[::1]:70000' } })).toEqual(['metrics.listen: invalid listen address "[::1]:70000": port 70000 is outside 1-65535']);
  });

  it('fills defaults inside a partly written section', () => {
    const config = DnsplaneConfigSchema.parse({ dns: { trustedServers: ['198.18.0.10'] }, log: {} });
    expect(config.dns).toEqual({
      trustedServers: [{ family: 4, address: '198.18.0.10', port: 53 }],
      minTTL: 30,
      extraTTL: 10,
      maxAddressesPerName: 256,
      interfaces: [],
    });
    expect(config.log.level).toBe('info');
  });

  it('accepts every dataplane, log level and iptables backend', () => {
    for (const dataplane of ['nftables', 'iptables', 'ebpf']) {
      expect(DnsplaneConfigSchema.parse({ dataplane }).dataplane).toBe(dataplane);
    }
    for (const level of ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']) {
      expect(DnsplaneConfigSchema.parse({ log: { level } }).log.level).toBe(level);
    }
    for (const backend of ['auto', 'legacy', 'nft']) {
      expect(DnsplaneConfigSchema.parse({ iptables: { backend } }).iptables.backend).toBe(backend);
    }
  });

  it('keeps one entry for a server written twice in two spellings', () => {
    const config = DnsplaneConfigSchema.parse({ dns: { trustedServers: ['[fd00::10]:53', 'FD00:0::10', '198.18.0.10'] } });
    expect(config.dns.trustedServers).toEqual([
      { family: 6, address: 'fd00::10', port: 53 },
      { family: 4, address: '198.18.0.10', port: 53 },
    ]);
  });

  it('accepts the TTL bounds and rejects what is beyond them', () => {
    expect(DnsplaneConfigSchema.parse({ dns: { minTTL: 0, extraTTL: 0 } }).dns.minTTL).toBe(0);
    expect(DnsplaneConfigSchema.safeParse({ dns: { minTTL: 2 ** 31 } }).success).toBe(false);
    expect(DnsplaneConfigSchema.safeParse({ dns: { maxAddressesPerName: 65536 } }).success).toBe(false);
  });

  it('takes at most 16 distinct trusted servers, as the kernel parser holds', () => {
    const servers = (count: number) => Array.from({ length: count }, (_, i) => `198.18.0.${i + 1}`);
    expect(DnsplaneConfigSchema.parse({ dns: { trustedServers: servers(16) } }).dns.trustedServers).toHaveLength(16);
    // The same server twice counts once.
    expect(DnsplaneConfigSchema.parse({ dns: { trustedServers: [...servers(16), '198.18.0.1:53'] } }).dns.trustedServers).toHaveLength(16);
    expect(problems({ dns: { trustedServers: servers(17) } })).toEqual([
      'dns.trustedServers: the kernel parser holds at most 16 trusted servers (each distinct address and port counts once)',
    ]);
  });

  const problems = (value: unknown) => {
    const result = DnsplaneConfigSchema.safeParse(value, { reportInput: true });
    return result.success ? [] : issuesToProblems(result.error.issues, { file: 'c.yaml' }).map((p) => `${p.field}: ${p.reason}`);
  };

  it('names every problem with its field', () => {
    expect(
      problems({
        dataplane: 'nft',
        dns: { trustedServers: ['x'], minTTL: '30', typo: 1 },
        resources: 'policies',
        log: { level: 'loud' },
        iptables: { backend: 'nf' },
        extra: true,
      }),
    ).toEqual([
      'dataplane: expected one of "nftables", "iptables", "ebpf", got the string "nft"',
      'dns.trustedServers[0]: invalid trusted server "x": "x" is not an IPv4 or IPv6 address (host names are not allowed)',
      'dns.minTTL: expected a number, got the string "30"',
      'dns.typo: unknown field; allowed fields: trustedServers, minTTL, extraTTL, maxAddressesPerName, interfaces',
      'resources: expected a list, got the string "policies"',
      'log.level: expected one of "fatal", "error", "warn", "info", "debug", "trace", "silent", got the string "loud"',
      'iptables.backend: expected one of "auto", "legacy", "nft", got the string "nf"',
      'extra: unknown field; allowed fields: dataplane, dns, resources, statePath, driftCheckSeconds, log, metrics, iptables, bpf, nftables',
    ]);
  });

  it('rejects null sections with a type message', () => {
    expect(problems({ dns: null })).toEqual(['dns: expected a mapping, got an empty value (null)']);
  });
});
