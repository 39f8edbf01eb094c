// The common shape of a Policy document validated and canonicalised by hand, to the very value
// PolicySchema would return (~4x cheaper than the schema walk: 1,000 policies cost ~0.15 s of
// zod at start-up). Anything it does not recognise at once — an unknown or misspelt field, a
// wrong type, a value a check refuses, a Cilium domain object — returns undefined, and the
// caller runs PolicySchema, which words every problem as before. Held equal to the schema by
// a differential test (quick-policy.test.ts).
import { isIP } from 'node:net';
import type { Cidr, PortRange } from './desired-state.js';
import type { DomainPattern } from './domain-pattern-model.js';
import { parseDomainPattern } from './domain-pattern.js';
import {
  ACTIONS,
  API_VERSION,
  POLICY_TYPES,
  PORT_TEXT,
  PROTOCOL_NAMES,
  PROTOCOL_NUMBERS,
  PROTOCOL_SPELLINGS,
  checkRule,
  labelKeyProblem,
  labelValueProblem,
  parseNet,
  resourceNameProblem,
  type PolicyResource,
  type PolicyType,
} from './resources.js';
import { parseSelector, type Selector } from './selector.js';

type Plain = Readonly<Record<string, unknown>>;

/** Not recognised: the schema decides. */
class Unrecognised extends Error {}
const no = (): never => {
  throw new Unrecognised();
};

/** A plain mapping whose keys are all in `allowed` (no __proto__). */
function mapping(value: unknown, allowed: readonly string[]): Plain {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || Object.getPrototypeOf(value) !== Object.prototype) no();
  for (const key of Object.keys(value as object)) if (!allowed.includes(key)) no();
  return value as Plain;
}

function stringRecord(value: unknown, check?: (key: string, item: string) => boolean): Record<string, string> {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || Object.getPrototypeOf(value) !== Object.prototype) no();
  const out: Record<string, string> = {};
  for (const key of Object.keys(value as object)) {
    const item = (value as Plain)[key];
    if (key === '__proto__' || typeof item !== 'string' || (check !== undefined && !check(key, item))) no();
    out[key] = item as string;
  }
  return out;
}

const list = (value: unknown): readonly unknown[] => (Array.isArray(value) ? value : no());
const text = (value: unknown): string => (typeof value === 'string' ? value : no());

function net(value: unknown): Cidr {
  const parsed = parseNet(text(value));
  return typeof parsed === 'string' ? no() : parsed;
}

function port(value: unknown): PortRange {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 1 && value <= 65535 ? { first: value, last: value } : no();
  const match = PORT_TEXT.exec(text(value));
  if (match === null) return no();
  const first = Number(match[1]);
  const last = match[2] === undefined ? first : Number(match[2]);
  return first >= 1 && last <= 65535 && first <= last ? { first, last } : no();
}

function domain(value: unknown): DomainPattern {
  const input = text(value); // {matchName}/{matchPattern}: the schema's
  if (isIP(input.trim().replace(/^\[(.*)\]$/, '$1')) !== 0) no();
  return parseDomainPattern(input, 'calico'); // an invalid pattern throws: the schema words it
}

const PEER_FIELDS = ['nets', 'notNets', 'ports', 'notPorts', 'domains'] as const;

function peer(value: unknown, domainsAllowed: boolean) {
  const raw = value === undefined ? {} : mapping(value, PEER_FIELDS);
  const out = {
    nets: raw['nets'] === undefined ? [] : list(raw['nets']).map(net),
    notNets: raw['notNets'] === undefined ? [] : list(raw['notNets']).map(net),
    ports: raw['ports'] === undefined ? [] : list(raw['ports']).map(port),
    notPorts: raw['notPorts'] === undefined ? [] : list(raw['notPorts']).map(port),
  };
  if (raw['domains'] === undefined) return out;
  if (!domainsAllowed) return no();
  const domains = list(raw['domains']);
  return domains.length === 0 ? no() : { ...out, domains: domains.map(domain) };
}

function protocol(value: unknown): number {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 && value <= 255 ? value : no();
  if (typeof value !== 'string' || !PROTOCOL_SPELLINGS.includes(value)) return no();
  const name = PROTOCOL_NAMES.find((candidate) => candidate.toLowerCase() === value.toLowerCase());
  return name === undefined ? no() : PROTOCOL_NUMBERS[name];
}

function rule(value: unknown, direction: 'ingress' | 'egress') {
  const raw = mapping(value, ['action', 'protocol', 'source', 'destination']);
  const action = raw['action'];
  if (!ACTIONS.includes(action as (typeof ACTIONS)[number])) no();
  const out = {
    action: action as (typeof ACTIONS)[number],
    ...(raw['protocol'] === undefined ? {} : { protocol: protocol(raw['protocol']) }),
    source: peer(raw['source'], false),
    destination: peer(raw['destination'], direction === 'egress'),
  };
  checkRule(out, { addIssue: no });
  return out;
}

/** PolicySchema's value for `value`, or undefined when the schema must decide. */
export function quickPolicy(value: unknown): PolicyResource | undefined {
  try {
    const raw = mapping(value, ['apiVersion', 'kind', 'metadata', 'spec']);
    if (raw['kind'] !== 'Policy' || (raw['apiVersion'] !== undefined && raw['apiVersion'] !== API_VERSION)) return undefined;
    const meta = mapping(raw['metadata'], ['name', 'labels', 'annotations']);
    const name = text(meta['name']);
    if (resourceNameProblem(name) !== undefined) return undefined;
    const labels =
      meta['labels'] === undefined
        ? undefined
        : stringRecord(meta['labels'], (key, item) => labelKeyProblem(key) === undefined && labelValueProblem(item) === undefined);
    const annotations = meta['annotations'] === undefined ? undefined : stringRecord(meta['annotations']);

    const spec = mapping(raw['spec'], ['order', 'selector', 'types', 'ingress', 'egress']);
    const order = spec['order'];
    if (order !== undefined && (typeof order !== 'number' || !Number.isFinite(order))) return undefined;
    const selector: Selector = spec['selector'] === undefined ? { kind: 'all' } : parseSelector(text(spec['selector']));
    const ingress = spec['ingress'] === undefined ? [] : list(spec['ingress']).map((r) => rule(r, 'ingress'));
    const egress = spec['egress'] === undefined ? [] : list(spec['egress']).map((r) => rule(r, 'egress'));
    let types: PolicyType[];
    if (spec['types'] !== undefined) {
      const written = list(spec['types']);
      if (written.length === 0 || written.some((t) => !POLICY_TYPES.includes(t as PolicyType))) return undefined;
      // rules of a direction the types leave out: the schema reports them
      if ((ingress.length > 0 && !written.includes('Ingress')) || (egress.length > 0 && !written.includes('Egress'))) return undefined;
      types = POLICY_TYPES.filter((type) => written.includes(type));
    } else {
      types = [...(ingress.length > 0 || egress.length === 0 ? (['Ingress'] as const) : []), ...(egress.length > 0 ? (['Egress'] as const) : [])];
    }
    return {
      ...(raw['apiVersion'] === undefined ? {} : { apiVersion: API_VERSION }),
      kind: 'Policy',
      metadata: {
        name,
        ...(labels === undefined ? {} : { labels }),
        ...(annotations === undefined ? {} : { annotations }),
      },
      spec: { ...(order === undefined ? {} : { order: order as number }), selector, types, ingress, egress },
    } as PolicyResource;
  } catch {
    return undefined; // Unrecognised, or a parser's own error: the schema reports (or throws) it
  }
}
