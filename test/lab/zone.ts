// The test zone `lab.test`, defined once and rendered for both DNS servers (dnsmasq and
// unbound), so both answer every name identically.

export const ZONE = 'lab.test';

export type ZoneRecord =
  | { readonly name: string; readonly type: 'A' | 'AAAA'; readonly address: string; readonly ttl: number }
  | { readonly name: string; readonly type: 'CNAME'; readonly target: string; readonly ttl: number };

/** One name of the "fresh" pool: its own address that no other name uses. */
export interface FreshName {
  readonly index: number;
  readonly name: string;
  readonly ipv4: string;
  readonly ipv6: string;
}

export interface ZoneContents {
  readonly records: readonly ZoneRecord[];
  /** `*.wild.lab.test` (any depth, and `wild.lab.test` itself) answers these. */
  readonly wildcard: { readonly domain: string; readonly ipv4: string; readonly ipv6: string; readonly ttl: number };
  readonly fresh: readonly FreshName[];
}

/** Well-known names and their addresses, for tests to assert against. */
export const NAMES = {
  ready: { name: 'ready.lab.test', ipv4: '198.19.0.1' },
  www: { name: 'www.lab.test', ipv4: '198.19.1.1', ipv6: 'fd00:19::1:1' },
  api: { name: 'api.lab.test', ipv4: '198.19.1.2', ipv6: 'fd00:19::1:2' },
  blocked: { name: 'blocked.lab.test', ipv4: '198.19.1.3', ipv6: 'fd00:19::1:3' },
  other: { name: 'other.lab.test', ipv4: '198.19.1.4', ipv6: 'fd00:19::1:4' },
  v4only: { name: 'v4only.lab.test', ipv4: '198.19.1.5' },
  v6only: { name: 'v6only.lab.test', ipv6: 'fd00:19::1:6' },
  /** chain3 → chain2 → chain1 → cname-target (three CNAMEs). */
  chain: {
    names: ['chain3.lab.test', 'chain2.lab.test', 'chain1.lab.test'],
    target: 'cname-target.lab.test',
    ipv4: '198.19.2.1',
    ipv6: 'fd00:19::2:1',
  },
  wildcard: { domain: 'wild.lab.test', ipv4: '198.19.3.1', ipv6: 'fd00:19::3:1' },
  /** ttl1 … ttl5: TTL of N seconds, address 198.19.4.N / fd00:19::4:N. */
  ttl: [1, 2, 3, 4, 5].map((seconds) => ({
    name: `ttl${seconds}.lab.test`,
    ttl: seconds,
    ipv4: `198.19.4.${seconds}`,
    ipv6: `fd00:19::4:${seconds}`,
  })),
  /** 40 A records: 198.19.5.1 … 198.19.5.40; too large for a 512-byte UDP answer. */
  many: {
    name: 'many.lab.test',
    ipv4: Array.from({ length: 40 }, (_, i) => `198.19.5.${i + 1}`),
  },
  /**
   * 64 AAAA records: fd00:19::7:1 … fd00:19::7:40; ~1,850 bytes, so a UDP answer with a large
   * EDNS buffer (dnsmasq here allows 4,096) arrives in two IP fragments on 1,500-byte links.
   */
  big: {
    name: 'big.lab.test',
    ipv6: Array.from({ length: 64 }, (_, i) => `fd00:19::7:${(i + 1).toString(16)}`),
  },
  /** The same size, fd00:19::8:1 … fd00:19::8:40: asked over TCP, the answer spans two segments. */
  bigTcp: {
    name: 'big-tcp.lab.test',
    ipv6: Array.from({ length: 64 }, (_, i) => `fd00:19::8:${(i + 1).toString(16)}`),
  },
} as const;

const DEFAULT_TTL = 300;
const FRESH_TTL = 60;

/** The address of fresh name `index` (1 … 16383): 198.19.64.0 + index, fd00:19::f:<hex index>. */
export function freshName(index: number): FreshName {
  if (!Number.isInteger(index) || index < 1 || index > 16383) throw new Error(`fresh index ${index} out of range 1…16383`);
  const offset = 64 * 256 + index;
  return {
    index,
    name: `t${String(index).padStart(4, '0')}.fresh.lab.test`,
    ipv4: `198.19.${offset >> 8}.${offset & 255}`,
    ipv6: `fd00:19::f:${index.toString(16)}`,
  };
}

export function buildZone(freshCount: number): ZoneContents {
  const records: ZoneRecord[] = [];
  const a = (name: string, address: string, ttl = DEFAULT_TTL): void => {
    records.push({ name, type: 'A', address, ttl });
  };
  const aaaa = (name: string, address: string, ttl = DEFAULT_TTL): void => {
    records.push({ name, type: 'AAAA', address, ttl });
  };
  a(NAMES.ready.name, NAMES.ready.ipv4);
  for (const entry of [NAMES.www, NAMES.api, NAMES.blocked, NAMES.other]) {
    a(entry.name, entry.ipv4);
    aaaa(entry.name, entry.ipv6);
  }
  a(NAMES.v4only.name, NAMES.v4only.ipv4);
  aaaa(NAMES.v6only.name, NAMES.v6only.ipv6);
  const [chain3, chain2, chain1] = NAMES.chain.names;
  records.push({ name: chain3, type: 'CNAME', target: chain2, ttl: DEFAULT_TTL });
  records.push({ name: chain2, type: 'CNAME', target: chain1, ttl: DEFAULT_TTL });
  records.push({ name: chain1, type: 'CNAME', target: NAMES.chain.target, ttl: DEFAULT_TTL });
  a(NAMES.chain.target, NAMES.chain.ipv4);
  aaaa(NAMES.chain.target, NAMES.chain.ipv6);
  for (const entry of NAMES.ttl) {
    a(entry.name, entry.ipv4, entry.ttl);
    aaaa(entry.name, entry.ipv6, entry.ttl);
  }
  for (const address of NAMES.many.ipv4) a(NAMES.many.name, address);
  for (const address of NAMES.big.ipv6) aaaa(NAMES.big.name, address);
  for (const address of NAMES.bigTcp.ipv6) aaaa(NAMES.bigTcp.name, address);
  const fresh = Array.from({ length: freshCount }, (_, i) => freshName(i + 1));
  for (const entry of fresh) {
    a(entry.name, entry.ipv4, FRESH_TTL);
    aaaa(entry.name, entry.ipv6, FRESH_TTL);
  }
  return {
    records,
    wildcard: { domain: NAMES.wildcard.domain, ipv4: NAMES.wildcard.ipv4, ipv6: NAMES.wildcard.ipv6, ttl: DEFAULT_TTL },
    fresh,
  };
}

/** dnsmasq configuration (for `--conf-file`), answering only from local data. */
export function renderDnsmasqConfig(
  zone: ZoneContents,
  listen: { readonly ipv4: string; readonly ipv6: string },
): string {
  const lines = [
    'no-resolv',
    'no-hosts',
    'no-poll',
    'bind-interfaces',
    `listen-address=${listen.ipv4}`,
    `listen-address=${listen.ipv6}`,
    'port=53',
    // Names under lab.test that are not defined get NXDOMAIN instead of being forwarded.
    `local=/${ZONE}/`,
    `local-ttl=${DEFAULT_TTL}`,
    // Answers up to 4,096 bytes over UDP to a client asking for it (dnsmasq's default is
    // 1,232): big.lab.test then comes in IP fragments.
    'edns-packet-max=4096',
    'log-facility=-',
    'log-queries=extra',
    `address=/${zone.wildcard.domain}/${zone.wildcard.ipv4}`,
    `address=/${zone.wildcard.domain}/${zone.wildcard.ipv6}`,
  ];
  // dnsmasq wants a CNAME's target defined before the CNAME, so list addresses first.
  for (const record of zone.records) {
    if (record.type !== 'CNAME') lines.push(`host-record=${record.name},${record.address},${record.ttl}`);
  }
  for (const record of [...zone.records].reverse()) {
    if (record.type === 'CNAME') lines.push(`cname=${record.name},${record.target},${record.ttl}`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * The zone as an RFC 1035 master file, for unbound's auth-zone (which, unlike unbound's
 * local-data, follows CNAME chains inside the zone and implements real wildcards).
 */
export function renderZoneFile(zone: ZoneContents, nameServer: string): string {
  const lines = [
    `$ORIGIN ${ZONE}.`,
    `$TTL ${DEFAULT_TTL}`,
    `@ IN SOA ns.${ZONE}. hostmaster.${ZONE}. 1 3600 600 86400 1`,
    `@ IN NS ns.${ZONE}.`,
    `ns.${ZONE}. IN A ${nameServer}`,
    // Like dnsmasq's --address, the wildcard domain itself answers too.
    `${zone.wildcard.domain}. ${zone.wildcard.ttl} IN A ${zone.wildcard.ipv4}`,
    `${zone.wildcard.domain}. ${zone.wildcard.ttl} IN AAAA ${zone.wildcard.ipv6}`,
    `*.${zone.wildcard.domain}. ${zone.wildcard.ttl} IN A ${zone.wildcard.ipv4}`,
    `*.${zone.wildcard.domain}. ${zone.wildcard.ttl} IN AAAA ${zone.wildcard.ipv6}`,
  ];
  for (const record of zone.records) {
    const value = record.type === 'CNAME' ? `${record.target}.` : record.address;
    lines.push(`${record.name}. ${record.ttl} IN ${record.type} ${value}`);
  }
  return `${lines.join('\n')}\n`;
}

/** unbound configuration: answers `lab.test` authoritatively from `zoneFile`, nothing else. */
export function renderUnboundConfig(
  listen: { readonly ipv4: string; readonly ipv6: string },
  directory: string,
  zoneFile: string,
): string {
  return `${[
    'server:',
    '  verbosity: 1',
    '  log-queries: yes',
    '  use-syslog: no',
    '  logfile: ""',
    '  do-daemonize: no',
    '  chroot: ""',
    '  username: ""',
    `  directory: "${directory}"`,
    '  pidfile: ""',
    '  num-threads: 1',
    '  interface-automatic: no',
    `  interface: ${listen.ipv4}`,
    `  interface: ${listen.ipv6}`,
    '  port: 53',
    '  do-ip4: yes',
    '  do-ip6: yes',
    '  do-udp: yes',
    '  do-tcp: yes',
    '  access-control: 0.0.0.0/0 allow',
    '  access-control: ::/0 allow',
    '  module-config: "iterator"',
    // unbound answers the whole `test.` TLD with NXDOMAIN by default (RFC 6761); not here.
    '  local-zone: "test." nodefault',
    'auth-zone:',
    `  name: "${ZONE}."`,
    `  zonefile: "${zoneFile}"`,
    '  for-downstream: yes',
    '  for-upstream: no',
    '  fallback-enabled: no',
    'remote-control:',
    '  control-enable: no',
  ].join('\n')}\n`;
}
