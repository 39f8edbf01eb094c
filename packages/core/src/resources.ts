// The resource documents users write: `kind: Policy` and `kind: Endpoint`, as zod schemas.
// Parsing canonicalises as it validates: selectors become ASTs, domains DomainPatterns,
// nets canonical CIDRs, ports ranges, protocols IANA numbers. JSON Schemas in
// packages/core/schema/ are generated from these schemas (their input side).
import { isIP } from 'node:net';
import { z } from 'zod';
import type { Cidr, PortRange } from './desired-state.js';
import type { DomainPattern } from './domain-pattern-model.js';
import { isInvalidDomainPattern, parseDomainPattern, type DomainPatternFlavor } from './domain-pattern.js';
import { customIssue, strictObject } from './input-issues.js';
import { parseCidr } from './net-address.js';
import { formatSelector, isSelectorSyntaxError, parseSelector, type Selector } from './selector.js';

export const API_VERSION = 'dnsplane/v1';

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const list = (value: unknown): readonly unknown[] => (Array.isArray(value) ? value : []);

/**
 * Lets an object's cross-field refinement run even when some of its fields failed, so that one
 * run reports every problem; the refinement must then read its value defensively (a failed
 * field holds the raw input or an aborted marker). It is skipped when the value is not a
 * mapping at all, or when one of `fields` (which the check relies on) failed.
 */
function evenWhenOthersFailed(...fields: string[]) {
  return {
    when: (payload: z.core.ParsePayload): boolean =>
      isMapping(payload.value) &&
      !payload.issues.some((issue) =>
        issue.path === undefined || issue.path.length === 0
          ? issue.code !== 'unrecognized_keys'
          : fields.includes(String(issue.path[0])),
      ),
  };
}

// ---------------------------------------------------------------------------------------------
// Names and labels (Kubernetes rules)

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

/** Why a resource name is invalid (a Kubernetes DNS subdomain name), or undefined. */
export function resourceNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'must not be empty';
  if (name.length > 253) return 'must be at most 253 characters long';
  if (!DNS_SUBDOMAIN.test(name)) {
    return `${JSON.stringify(name)} is not a valid name: use lower-case letters, digits, "-" and ".", starting and ending with a letter or digit`;
  }
  return undefined;
}

/** Why a label key is invalid ("[prefix/]name", Kubernetes rules), or undefined. */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.indexOf('/');
  const prefix = slash < 0 ? undefined : key.slice(0, slash);
  const name = slash < 0 ? key : key.slice(slash + 1);
  if (prefix !== undefined) {
    if (prefix.length === 0 || prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix)) {
      return `label key ${JSON.stringify(key)}: the prefix before "/" must be a lower-case DNS subdomain (at most 253 characters)`;
    }
  }
  if (name.length === 0 || name.length > 63 || !LABEL_NAME.test(name)) {
    return `label key ${JSON.stringify(key)}: the name must be 1-63 characters of letters, digits, "-", "_" and ".", starting and ending with a letter or digit`;
  }
  return undefined;
}

/** Why a label value is invalid (empty, or a Kubernetes label name), or undefined. */
export function labelValueProblem(value: string): string | undefined {
  if (value === '') return undefined;
  if (value.length > 63 || !LABEL_NAME.test(value)) {
    return `label value ${JSON.stringify(value)} must be at most 63 characters of letters, digits, "-", "_" and ".", starting and ending with a letter or digit`;
  }
  return undefined;
}

const ResourceNameSchema = z.string().superRefine((name, ctx) => {
  const problem = resourceNameProblem(name);
  if (problem !== undefined) ctx.addIssue(customIssue(problem, name));
});

export const LabelsSchema = z
  .record(
    z.string().superRefine((key, ctx) => {
      const problem = labelKeyProblem(key);
      if (problem !== undefined) ctx.addIssue(customIssue(problem, key));
    }),
    z.string().superRefine((value, ctx) => {
      const problem = labelValueProblem(value);
      if (problem !== undefined) ctx.addIssue(customIssue(problem, value));
    }),
  )
  .meta({ description: 'Labels: keys "[prefix/]name", string values (quote numbers and booleans).' });

const MetadataSchema = strictObject({
  name: ResourceNameSchema.meta({
    description: 'Unique among resources of the same kind (a DNS subdomain name).',
    pattern: DNS_SUBDOMAIN.source,
    maxLength: 253,
  }),
  labels: LabelsSchema.optional(),
  annotations: z.record(z.string(), z.string()).optional(),
});

// ---------------------------------------------------------------------------------------------
// Rule parts

export const PROTOCOL_NUMBERS = {
  TCP: 6,
  UDP: 17,
  ICMP: 1,
  ICMPv6: 58,
  SCTP: 132,
  UDPLite: 136,
} as const;
export type ProtocolName = keyof typeof PROTOCOL_NUMBERS;
const PROTOCOL_NAMES = Object.keys(PROTOCOL_NUMBERS) as ProtocolName[];
const PROTOCOL_SPELLINGS = [...PROTOCOL_NAMES, ...PROTOCOL_NAMES.map((name) => name.toLowerCase())] as [string, ...string[]];

export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ICMP = 1;
export const IPPROTO_ICMPV6 = 58;

/** Protocol by name (TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite; also lower-case) or number 0-255. */
export const ProtocolSchema = z
  .union([z.int().min(0).max(255), z.enum(PROTOCOL_SPELLINGS)])
  .meta({ description: 'TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or an IP protocol number 0-255.' })
  .transform((value): number => {
    if (typeof value === 'number') return value;
    const name = PROTOCOL_NAMES.find((candidate) => candidate.toLowerCase() === value.toLowerCase()) as ProtocolName;
    return PROTOCOL_NUMBERS[name];
  });

const PORT_TEXT = /^\s*(\d{1,5})\s*(?::\s*(\d{1,5})\s*)?$/;

/** A port (1-65535) or an inclusive range "first:last" with first ≤ last. */
export const PortSchema = z
  .union([z.int().min(1).max(65535), z.string().meta({ pattern: PORT_TEXT.source })])
  .meta({ description: 'A port 1-65535, or a range "first:last" such as "8000:8080".' })
  .transform((value, ctx): PortRange => {
    if (typeof value === 'number') return { first: value, last: value };
    const match = PORT_TEXT.exec(value);
    if (!match) {
      ctx.issues.push(
        customIssue(`${JSON.stringify(value)} is not a port or a "first:last" port range (named ports are not supported)`, value),
      );
      return z.NEVER;
    }
    const first = Number(match[1]);
    const last = match[2] === undefined ? first : Number(match[2]);
    for (const port of [first, last]) {
      if (port < 1 || port > 65535) {
        ctx.issues.push(customIssue(`port ${port} in ${JSON.stringify(value)} is outside 1-65535`, value));
        return z.NEVER;
      }
    }
    if (first > last) {
      ctx.issues.push(customIssue(`port range ${JSON.stringify(value)} is reversed: the first port must not be above the last`, value));
      return z.NEVER;
    }
    return { first, last };
  });

/** parseCidr, refusing IPv6 zone ids (which only make sense for link-local sockets). */
function parseNet(text: string): Cidr | string {
  if (text.includes('%')) return 'IPv6 zone ids ("%eth0") are not supported';
  return parseCidr(text.trim());
}

/** A network: CIDR or bare address (a host network); host bits are cleared ("10.1.2.3/8" → "10.0.0.0/8"). */
export const NetSchema = z
  .string()
  .meta({ description: 'An IPv4/IPv6 CIDR or address; host bits are cleared.' })
  .transform((text, ctx): Cidr => {
    const parsed = parseNet(text);
    if (typeof parsed === 'string') {
      ctx.issues.push(customIssue(`invalid network ${JSON.stringify(text)}: ${parsed}`, text));
      return z.NEVER;
    }
    return parsed;
  });

function parseDomain(input: string, flavor: DomainPatternFlavor, ctx: z.RefinementCtx): DomainPattern {
  if (isIP(input.trim().replace(/^\[(.*)\]$/, '$1')) !== 0) {
    ctx.issues.push(customIssue(`${JSON.stringify(input)} is an IP address, not a domain: put it in nets`, input));
    return z.NEVER;
  }
  try {
    return parseDomainPattern(input, flavor);
  } catch (error) {
    if (isInvalidDomainPattern(error)) {
      ctx.issues.push(customIssue(`invalid domain ${JSON.stringify(input)}: ${error.reason}`, input));
      return z.NEVER;
    }
    throw error;
  }
}

const CiliumDomainSchema = strictObject({
  matchName: z.string().optional().meta({ description: 'Cilium matchName: one exact name.' }),
  matchPattern: z
    .string()
    .optional()
    .meta({ description: 'Cilium matchPattern: a whole-label "*" is exactly one label; "**." one or more.' }),
});

/**
 * A domain: a string with Calico semantics (a whole-label `*` is one or more labels), or
 * `{ matchName }` / `{ matchPattern }` with Cilium semantics.
 */
export const DomainSchema = z
  .union([z.string(), CiliumDomainSchema])
  .meta({ description: 'A domain name or wildcard pattern (Calico), or {matchName} / {matchPattern} (Cilium).' })
  .transform((value, ctx): DomainPattern => {
    if (typeof value === 'string') return parseDomain(value, 'calico', ctx);
    const { matchName, matchPattern } = value;
    if ((matchName === undefined) === (matchPattern === undefined)) {
      ctx.issues.push(customIssue('write exactly one of matchName or matchPattern', value));
      return z.NEVER;
    }
    if (matchName !== undefined) return parseDomain(matchName, 'cilium-name', ctx);
    return parseDomain(matchPattern as string, 'cilium-pattern', ctx);
  });

const DOMAINS_ONLY_ON_EGRESS = 'domains are only valid on egress destinations (spec.egress[].destination.domains)';

function peerSchema(domainsAllowed: boolean) {
  return strictObject({
    nets: z.array(NetSchema).default([]),
    notNets: z.array(NetSchema).default([]),
    ports: z.array(PortSchema).default([]),
    notPorts: z.array(PortSchema).default([]),
    domains: domainsAllowed
      ? z.array(DomainSchema).min(1).optional().meta({ description: 'Learned addresses of these domains.' })
      : z.never({ error: DOMAINS_ONLY_ON_EGRESS }).optional(),
  })
    .prefault({});
}

export const ACTIONS = ['Allow', 'Deny', 'Log', 'Pass'] as const;
export type PolicyAction = (typeof ACTIONS)[number];

function ruleSchema(direction: 'ingress' | 'egress') {
  return strictObject({
    action: z.enum(ACTIONS),
    protocol: ProtocolSchema.optional(),
    source: peerSchema(false),
    destination: peerSchema(direction === 'egress'),
  }).superRefine((rule, ctx) => checkRule(rule, ctx), evenWhenOthersFailed('protocol'));
}

/** Checks between the fields of a rule; written for partly invalid rules too (see evenWhenOthersFailed). */
function checkRule(rule: unknown, ctx: z.RefinementCtx): void {
  if (!isMapping(rule)) return;
  const protocol = typeof rule['protocol'] === 'number' ? rule['protocol'] : undefined;
  const peer = (side: 'source' | 'destination'): Record<string, unknown> => {
    const value = rule[side];
    return isMapping(value) ? value : {};
  };
  for (const side of ['source', 'destination'] as const) {
    const field = list(peer(side)['ports']).length > 0 ? 'ports' : list(peer(side)['notPorts']).length > 0 ? 'notPorts' : undefined;
    if (field !== undefined && protocol !== IPPROTO_TCP && protocol !== IPPROTO_UDP) {
      const reason =
        protocol === undefined
          ? 'ports need "protocol: TCP" or "protocol: UDP" in the rule'
          : `ports are only valid with protocol TCP or UDP, not protocol ${protocol}`;
      ctx.addIssue(customIssue(reason, peer(side)[field], { path: [side, field] }));
    }
  }
  // A rule that can never match is a mistake: say so rather than compile it.
  const families = (side: 'source' | 'destination'): Set<unknown> =>
    new Set(list(peer(side)['nets']).flatMap((net) => (isMapping(net) && typeof net['family'] === 'number' ? [net['family']] : [])));
  const source = families('source');
  const destination = families('destination');
  const only = (set: Set<unknown>, family: number) => set.size === 1 && set.has(family);
  if ((only(source, 4) && only(destination, 6)) || (only(source, 6) && only(destination, 4))) {
    ctx.addIssue(
      customIssue('source and destination nets are of different IP families: the rule can never match', rule, {
        path: ['destination', 'nets'],
      }),
    );
  }
  for (const side of ['source', 'destination'] as const) {
    const set = side === 'source' ? source : destination;
    if (protocol === IPPROTO_ICMP && only(set, 6)) {
      ctx.addIssue(customIssue('protocol ICMP is IPv4 only but these nets are IPv6: use ICMPv6', rule, { path: [side, 'nets'] }));
    }
    if (protocol === IPPROTO_ICMPV6 && only(set, 4)) {
      ctx.addIssue(customIssue('protocol ICMPv6 is IPv6 only but these nets are IPv4: use ICMP', rule, { path: [side, 'nets'] }));
    }
  }
}

export const IngressRuleSchema = ruleSchema('ingress');
export const EgressRuleSchema = ruleSchema('egress');

/** Calico selector text, parsed into a Selector; errors carry the 1-based column. */
export const SelectorSchema = z
  .string()
  .meta({ description: 'Calico selector: ==, !=, in {…}, not in {…}, has(k), !, &&, ||, ( ), all(). Empty = all().' })
  .transform((text, ctx): Selector => {
    try {
      return parseSelector(text);
    } catch (error) {
      if (isSelectorSyntaxError(error)) {
        ctx.issues.push(customIssue(`invalid selector: ${error.reason}`, text, { column: error.column }));
        return z.NEVER;
      }
      throw error;
    }
  });

export const POLICY_TYPES = ['Ingress', 'Egress'] as const;
export type PolicyType = (typeof POLICY_TYPES)[number];

const PolicySpecSchema = strictObject({
  order: z
    .number()
    .refine(Number.isFinite, { error: 'must be a finite number' })
    .optional()
    .meta({ description: 'Lower orders are evaluated first; policies without an order come last.' }),
  selector: SelectorSchema.optional(),
  types: z
    .array(z.enum(POLICY_TYPES))
    .min(1)
    .optional()
    .meta({ description: 'Directions the policy applies to; default from the rules present (as in Calico).' }),
  ingress: z.array(IngressRuleSchema).optional(),
  egress: z.array(EgressRuleSchema).optional(),
})
  .superRefine((spec, ctx) => {
    const types = list(spec.types);
    if (spec.types === undefined) return;
    for (const [type, rules, field] of [
      ['Ingress', spec.ingress, 'ingress'],
      ['Egress', spec.egress, 'egress'],
    ] as const) {
      if (list(rules).length > 0 && !types.includes(type)) {
        ctx.addIssue(customIssue(`${field} rules are given but spec.types does not include "${type}": they would be ignored`, rules, { path: [field] }));
      }
    }
  }, evenWhenOthersFailed('types'))
  .transform((spec) => {
    const ingress = spec.ingress ?? [];
    const egress = spec.egress ?? [];
    // Calico's default: Ingress unless the policy has only egress rules; Egress when it has egress rules.
    const types: PolicyType[] =
      spec.types !== undefined
        ? POLICY_TYPES.filter((type) => spec.types?.includes(type))
        : [...(ingress.length > 0 || egress.length === 0 ? (['Ingress'] as const) : []), ...(egress.length > 0 ? (['Egress'] as const) : [])];
    return {
      ...(spec.order === undefined ? {} : { order: spec.order }),
      selector: spec.selector ?? ({ kind: 'all' } as Selector),
      types,
      ingress,
      egress,
    };
  });

const apiVersion = z.literal(API_VERSION).optional().meta({ description: `Optional; "${API_VERSION}" when given.` });

export const PolicySchema = strictObject({
  apiVersion,
  kind: z.literal('Policy'),
  metadata: MetadataSchema,
  spec: PolicySpecSchema,
}).meta({ title: 'dnsplane Policy', description: 'Rules for the endpoints its selector selects.' });

// ---------------------------------------------------------------------------------------------
// Endpoints

const IFNAMSIZ = 16;

/** Why a Linux interface name is invalid (dev_valid_name rules), or undefined. */
export function interfaceNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'interface name must not be empty';
  if (Buffer.byteLength(name) >= IFNAMSIZ) return `interface name ${JSON.stringify(name)} is longer than ${IFNAMSIZ - 1} bytes`;
  if (name === '.' || name === '..') return `interface name ${JSON.stringify(name)} is not allowed`;
  if (/[\s/:]/.test(name) || /[\x00-\x1f\x7f]/.test(name)) {
    return `interface name ${JSON.stringify(name)} must not contain "/", ":", whitespace or control characters`;
  }
  return undefined;
}

/** An endpoint address: an address, or a CIDR without host bits. */
export const EndpointAddressSchema = z.string().transform((text, ctx): Cidr => {
  const parsed = parseNet(text);
  if (typeof parsed === 'string') {
    ctx.issues.push(customIssue(`invalid address ${JSON.stringify(text)}: ${parsed}`, text));
    return z.NEVER;
  }
  const slash = text.indexOf('/');
  if (slash >= 0) {
    const written = parseCidr(text.trim().slice(0, slash).trim());
    const host = typeof written === 'string' ? undefined : written.text.split('/')[0];
    if (host !== undefined && host !== parsed.text.split('/')[0]) {
      ctx.issues.push(
        customIssue(
          `address ${JSON.stringify(text)} has host bits set: write the address alone or the network ${parsed.text}`,
          text,
        ),
      );
      return z.NEVER;
    }
  }
  return parsed;
});

const EndpointSpecSchema = strictObject({
  interface: z
    .string()
    .superRefine((name, ctx) => {
      const problem = interfaceNameProblem(name);
      if (problem !== undefined) ctx.addIssue(customIssue(problem, name));
    })
    .meta({ pattern: '^[^\\s/:]{1,15}$' })
    .optional()
    .meta({ description: 'Host-side interface of the workload (at most 15 bytes).' }),
  host: z.boolean().optional().meta({ description: 'true: the node itself (instead of interface).' }),
  addresses: z.array(EndpointAddressSchema).default([]).meta({ description: 'The workload addresses (IPs or CIDRs).' }),
})
  .superRefine((spec, ctx) => {
    const isHost = spec.host === true;
    if (isHost && spec.interface !== undefined) {
      ctx.addIssue(customIssue('write either interface or host: true, not both', spec, { path: ['host'] }));
    } else if (!isHost && spec.interface === undefined) {
      ctx.addIssue(customIssue('an endpoint needs either interface (a workload) or host: true (the node itself)', spec));
    }
  }, evenWhenOthersFailed('host', 'interface'))
  .transform((spec) => ({
    ...(spec.interface === undefined ? {} : { interface: spec.interface }),
    host: spec.host === true,
    addresses: spec.addresses,
  }));

export const EndpointSchema = strictObject({
  apiVersion,
  kind: z.literal('Endpoint'),
  metadata: MetadataSchema,
  spec: EndpointSpecSchema,
}).meta({ title: 'dnsplane Endpoint', description: 'A workload behind a host-side interface, or the host itself.' });

export type PolicyResource = z.infer<typeof PolicySchema>;
export type EndpointResource = z.infer<typeof EndpointSchema>;
/** A rule of either direction (an ingress rule is an egress rule without domains). */
export type PolicyRule = PolicyResource['spec']['egress'][number];
/** A source or destination (only egress destinations can hold domains). */
export type RulePeer = PolicyRule['destination'];

export const RESOURCE_KINDS = ['Policy', 'Endpoint'] as const;
export type ResourceKind = (typeof RESOURCE_KINDS)[number];

/** Canonical selector text of a policy (for printing). */
export function policySelectorText(policy: PolicyResource): string {
  return formatSelector(policy.spec.selector);
}
