// The agent's config file (dnsplane.yaml): its zod schema with defaults, and the parsed type.
// The JSON Schema in packages/core/schema/config.schema.json is generated from this schema.
import { isIP } from 'node:net';
import { z } from 'zod';
import { DATAPLANE_KINDS, type DataplaneKind, type TrustedServer } from './desired-state.js';
import { customIssue, strictObject } from './input-issues.js';
import { canonicalAddress } from './net-address.js';

export const DEFAULT_DNS_PORT = 53;
export const DEFAULT_MIN_TTL = 30;
export const DEFAULT_EXTRA_TTL = 10;
export const DEFAULT_MAX_ADDRESSES_PER_NAME = 256;
export const DEFAULT_STATE_PATH = '/var/lib/dnsplane/state.json';
/** Seconds between the daemon's checks that the installed kernel objects are still there. */
export const DEFAULT_DRIFT_CHECK_SECONDS = 30;
export const DEFAULT_BPF_PIN_ROOT = '/sys/fs/bpf/dnsplane';
export const DEFAULT_NFT_MARK_MASK = '0x00ff0000';
/** Default of `nftables.mirrorDrainIntervalMs` (bpf-parser's LEARNED_EVENTS_DRAIN_INTERVAL_MS). */
export const DEFAULT_NFT_MIRROR_DRAIN_INTERVAL_MS = 1000;
export const DEFAULT_NFT_ANSWER_MARK = '0x04000000';
/** Largest TTL setting in seconds (about 68 years: expiries stay far from overflow in ns). */
export const MAX_TTL_SETTING = 2_147_483_647;
export const MAX_ADDRESSES_PER_NAME_LIMIT = 65_535;
/** Trusted servers the kernel parser holds (bpf-parser's dnsp_config; every dataplane runs it). */
export const MAX_TRUSTED_SERVERS = 16;

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const IPTABLES_BACKENDS = ['auto', 'legacy', 'nft'] as const;
export type IptablesBackend = (typeof IPTABLES_BACKENDS)[number];

/**
 * Parses an address and port: "198.18.0.10:53", "[fd00::10]:53"; without a port ("198.18.0.10",
 * "[fd00::10]", a bare "fd00::10" — an IPv6 address with a port needs the brackets) the
 * `defaultPort`, and with none the port is required. Returns the reason text when it is not one.
 */
export function parseSocketAddress(text: string, defaultPort?: number): TrustedServer | string {
  const trimmed = text.trim();
  if (trimmed.includes('%')) return 'IPv6 zone ids ("%eth0") are not supported';
  let host: string;
  let portText: string | undefined;
  if (trimmed.startsWith('[')) {
    const close = trimmed.indexOf(']');
    if (close < 0) return 'missing "]" after the IPv6 address';
    host = trimmed.slice(1, close);
    const rest = trimmed.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) return `unexpected ${JSON.stringify(rest)} after "]": expected ":port"`;
      portText = rest.slice(1);
    }
    if (isIP(host) !== 6) return `"${host}" is not an IPv6 address`;
  } else if (isIP(trimmed) === 6) {
    host = trimmed;
  } else {
    const colon = trimmed.lastIndexOf(':');
    host = colon < 0 ? trimmed : trimmed.slice(0, colon);
    portText = colon < 0 ? undefined : trimmed.slice(colon + 1);
    if (isIP(host) === 6 || host.includes(':')) return 'write an IPv6 server with a port as "[address]:port"';
    if (isIP(host) !== 4) return `"${host}" is not an IPv4 or IPv6 address (host names are not allowed)`;
  }
  let port: number;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText)) return `port ${JSON.stringify(portText)} is not a number`;
    port = Number(portText);
    if (port < 1 || port > 65535) return `port ${port} is outside 1-65535`;
  } else if (defaultPort !== undefined) {
    port = defaultPort;
  } else {
    return 'a port is required: "address:port" or "[ipv6]:port"';
  }
  const address = canonicalAddress(host);
  if (address === undefined) return `"${host}" is not an IP address`;
  return { family: isIP(host) === 6 ? 6 : 4, address, port };
}

/** A trusted DNS server: parseSocketAddress with port 53 when none is given. */
export function parseTrustedServer(text: string): TrustedServer | string {
  return parseSocketAddress(text, DEFAULT_DNS_PORT);
}

/** Canonical text of a trusted server ("198.18.0.10:53", "[fd00::10]:53"). */
export function formatTrustedServer(server: TrustedServer): string {
  return server.family === 6 ? `[${server.address}]:${server.port}` : `${server.address}:${server.port}`;
}

/** A string read as parseSocketAddress reads it; a problem names `what` and the text. */
function socketAddressSchema(what: string, description: string, defaultPort?: number) {
  return z
    .string()
    .meta({ description })
    .transform((text, ctx): TrustedServer => {
      const parsed = parseSocketAddress(text, defaultPort);
      if (typeof parsed === 'string') {
        ctx.issues.push(customIssue(`invalid ${what} ${JSON.stringify(text)}: ${parsed}`, text));
        return z.NEVER;
      }
      return parsed;
    });
}

export const TrustedServerSchema = socketAddressSchema(
  'trusted server',
  'A trusted DNS server: "ip:port", "[ipv6]:port"; the port defaults to 53.',
  DEFAULT_DNS_PORT,
);

/** `metrics.listen`: where the daemon serves Prometheus metrics, an address and a port; canonical text. */
export const MetricsListenSchema = socketAddressSchema(
  'listen address',
  'Address and port the daemon serves Prometheus metrics on ("127.0.0.1:9464", "[::1]:9464"); absent: no metrics endpoint.',
).transform(formatTrustedServer);

const seconds = (what: string, fallback: number) =>
  z.int().min(0).max(MAX_TTL_SETTING).default(fallback).meta({ description: what });

export const DnsSettingsSchema = strictObject({
  trustedServers: z
    .array(TrustedServerSchema)
    .default([])
    .meta({ description: `DNS servers whose answers are learned from (at most ${MAX_TRUSTED_SERVERS}); all others teach nothing.` })
    .transform((servers) => {
      // The same server written twice (or in two spellings) is kept once.
      const seen = new Map<string, TrustedServer>();
      for (const server of servers) seen.set(formatTrustedServer(server), server);
      return [...seen.values()];
    })
    // Here, not at install: the kernel side of an install runs after its rules went in.
    .refine((servers) => servers.length <= MAX_TRUSTED_SERVERS, {
      message: `the kernel parser holds at most ${MAX_TRUSTED_SERVERS} trusted servers (each distinct address and port counts once)`,
    }),
  minTTL: seconds('Shortest lifetime in seconds given to a learned address (before extraTTL).', DEFAULT_MIN_TTL),
  extraTTL: seconds('Seconds added to every learned address lifetime.', DEFAULT_EXTRA_TTL),
  maxAddressesPerName: z
    .int()
    .min(1)
    .max(MAX_ADDRESSES_PER_NAME_LIMIT)
    .default(DEFAULT_MAX_ADDRESSES_PER_NAME)
    .meta({ description: 'At most this many addresses of one DNS response are learned.' }),
  interfaces: z
    .array(z.string().regex(/^[A-Za-z0-9_.:@-]{1,15}$/, 'not a Linux interface name'))
    .default([])
    .meta({
      description:
        'Interfaces whose DNS traffic the parser watches (every dataplane); empty = every interface except lo.',
    }),
});

/** `bpf.pinRoot`: one folder directly under /sys/fs/bpf (also what the agent's dataplane marker records). */
export const PinRootSchema = z.string().regex(/^\/sys\/fs\/bpf\/[A-Za-z0-9_.-]+$/, 'must be one folder directly under /sys/fs/bpf');
/** `nftables.table`: the inet table's name (also what the agent's dataplane marker records). */
export const NftTableNameSchema = z.string().regex(/^dnsplane[A-Za-z0-9_]*$/, 'must start with "dnsplane" and hold only letters, digits and _');

export const DnsplaneConfigSchema = strictObject({
  dataplane: z
    .enum(DATAPLANE_KINDS as unknown as [DataplaneKind, ...DataplaneKind[]])
    .default('nftables')
    .meta({ description: 'Which dataplane enforces the policy.' }),
  dns: DnsSettingsSchema.prefault({}),
  resources: z
    .array(z.string().min(1))
    .default([])
    .meta({ description: 'Files or folders of Policy/Endpoint documents, relative to the config file.' }),
  statePath: z
    .string()
    .min(1)
    .default(DEFAULT_STATE_PATH)
    .meta({ description: 'Where learned state is saved; relative paths are relative to the config file.' }),
  driftCheckSeconds: z
    .int()
    .min(0)
    .max(3600)
    .default(DEFAULT_DRIFT_CHECK_SECONDS)
    .meta({
      description:
        "How often, in seconds, the daemon checks that the kernel objects of the installed state are still there (a `flush ruleset` by nftables.service, a firewall reload) and installs them again when not; 0: never.",
    }),
  log: strictObject({
    level: z.enum(LOG_LEVELS).default('info'),
  }).prefault({}),
  metrics: strictObject({
    listen: MetricsListenSchema.optional(),
  }).prefault({}),
  iptables: strictObject({
    backend: z
      .enum(IPTABLES_BACKENDS)
      .default('auto')
      .meta({ description: 'iptables flavour for the iptables dataplane; auto picks what the system uses.' }),
  }).prefault({}),
  bpf: strictObject({
    pinRoot: PinRootSchema
      .default(DEFAULT_BPF_PIN_ROOT)
      .meta({ description: 'The one bpffs folder where dnsplane pins its programs and maps.' }),
  }).prefault({}),
  nftables: strictObject({
    table: NftTableNameSchema
      .default('dnsplane')
      .meta({ description: 'Name of the one inet table the nftables dataplane owns.' }),
    markMask: z
      .string()
      .regex(/^0x[0-9a-fA-F]{1,8}$/, 'must be a hexadecimal 32-bit mask such as "0x00ff0000"')
      .refine((text) => Number.parseInt(text, 16) !== 0, 'must have at least one bit set')
      .default(DEFAULT_NFT_MARK_MASK)
      .meta({
        description:
          'Packet-mark bits the nftables dataplane may use to carry kernel domain-set membership to its rules.',
      }),
    mirrorDrainIntervalMs: z
      .number()
      .int()
      .min(10)
      .max(60_000)
      .default(DEFAULT_NFT_MIRROR_DRAIN_INTERVAL_MS)
      .meta({
        description:
          'How often, in ms, the nftables dataplane reads learned events that did not wake it: the most a domain set with a mark bit waits for its nft set copy. Sets that rely on the nft set alone wake it at once.',
      }),
    untrackDns: z
      .union([z.boolean(), z.literal('auto')])
      .default('auto')
      .meta({
        description:
          "Take enforced workloads' UDP DNS with trusted servers out of connection tracking; their answers are admitted by the parser's verification (answerMark). auto: only while no other firewall in the node's namespace could drop untracked answers or would NAT the queries (another nft table's forward chain with a drop policy or any rule, its nat chain with a rule, an iptables-legacy filter or nat table); true: always; false: every DNS exchange stays tracked.",
      }),
    answerMark: z
      .string()
      .regex(/^0x[0-9a-fA-F]{1,8}$/, 'must be a hexadecimal 32-bit value such as "0x04000000"')
      .refine((text) => {
        const value = Number.parseInt(text, 16);
        return value !== 0 && (value & (value - 1)) === 0;
      }, 'must be exactly one bit')
      .default(DEFAULT_NFT_ANSWER_MARK)
      .meta({
        description:
          'The packet-mark bit the DNS parser sets on a UDP answer it verified against a recorded query (untracked DNS); one bit outside markMask.',
      }),
  })
    .refine((nft) => (Number.parseInt(nft.answerMark, 16) & Number.parseInt(nft.markMask, 16)) === 0, {
      message: 'answerMark must not overlap markMask (the membership marker owns those bits)',
      path: ['answerMark'],
    })
    .prefault({}),
}).meta({ title: 'dnsplane config', description: 'The dnsplane agent configuration file (dnsplane.yaml).' });

/** The parsed config, defaults filled in, trusted servers parsed. */
export type DnsplaneConfig = z.infer<typeof DnsplaneConfigSchema>;
/** The config as written in the file (before defaults). */
export type DnsplaneConfigInput = z.input<typeof DnsplaneConfigSchema>;
