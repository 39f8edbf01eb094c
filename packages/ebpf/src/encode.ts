// Byte layouts of the policy maps (bpf/policy_maps.h) and the encoders of one generation.
// A unit test compares the sizes with the object's BTF.
import { formatAddress, parseAddress, parseCidr, type Cidr } from '@dnsplane/core';
import type { HookTable, NetList, RuleTable } from './tables.js';

export const POLICY_MAP_NAMES = {
  active: 'dnsp_pol_active',
  hooks: 'dnsp_pol_hooks',
  rules: 'dnsp_pol_rules',
  nets4: 'dnsp_pol_nets4',
  nets6: 'dnsp_pol_nets6',
  ct: 'dnsp_pol_ct',
  counters: 'dnsp_pol_counters',
  frags: 'dnsp_pol_frags',
  fragCounters: 'dnsp_pol_frag_counters',
  log: 'dnsp_pol_log',
} as const;
export type PolicyMapRole = keyof typeof POLICY_MAP_NAMES;

export const POLICY_PROGRAM_NAMES = {
  ingress: 'dnsplane_policy_ingress',
  egress: 'dnsplane_policy_egress',
} as const;

export const POLICY_STRUCT_SIZES = {
  dnsplane_policy_active: 8,
  dnsplane_policy_hook_key: 8,
  dnsplane_policy_hook: 16,
  dnsplane_policy_rule: 168,
  dnsplane_policy_net4_key: 12,
  dnsplane_policy_net6_key: 24,
  dnsplane_ct_key: 44,
  dnsplane_ct_value: 24,
  dnsplane_policy_log_event: 64,
  dnsplane_frag_key: 40,
  dnsplane_frag_value: 16,
} as const;

export const POLICY_COUNTER_NAMES = ['allowed', 'denied', 'default_deny', 'established', 'logged', 'log_lost', 'unselected', 'neighbour_discovery'] as const;
/** dnsp_pol_frag_counters (enum dnsplane_fragment_counter): later fragments matched with their first one's ports, and without. */
export const FRAGMENT_COUNTER_NAMES = ['followed', 'without_first'] as const;

/** Rules per generation: generation g's rule i is at slot g * RULES_PER_GENERATION + i. */
export const RULES_PER_GENERATION = 16384;
const LIST_GENERATION_SHIFT = 24;

export const ACTION_CODES = { allow: 1, deny: 2, log: 3, pass: 4 } as const;
export const HOOK_FLAGS = { selected: 1, track: 2, host: 4, dnsUntracked: 8 } as const;
export const TC_DIRECTION_CODES = { ingress: 0, egress: 1 } as const;

export function encodeIndex(index: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(index);
  return b;
}

export function encodeActive(generation: number): Buffer {
  const b = Buffer.alloc(POLICY_STRUCT_SIZES.dnsplane_policy_active);
  b.writeUInt32LE(generation & 1);
  return b;
}

export function decodeActive(value: Buffer): number {
  return value.readUInt32LE(0) & 1;
}

export function encodeHookKey(ifindex: number, tcDirection: 'ingress' | 'egress', generation: number): Buffer {
  const b = Buffer.alloc(POLICY_STRUCT_SIZES.dnsplane_policy_hook_key);
  b.writeUInt32LE(ifindex, 0);
  b.writeUInt8(TC_DIRECTION_CODES[tcDirection], 4);
  b.writeUInt8(generation & 1, 5);
  return b;
}

export function hookKeyGeneration(key: Buffer): number {
  return key.readUInt8(5);
}

export function encodeHook(hook: HookTable, generation: number): Buffer {
  const b = Buffer.alloc(POLICY_STRUCT_SIZES.dnsplane_policy_hook);
  b.writeUInt32LE(generation * RULES_PER_GENERATION + hook.first, 0);
  b.writeUInt32LE(hook.count, 4);
  b.writeUInt32LE(
    (hook.selected ? HOOK_FLAGS.selected : 0) | (hook.track ? HOOK_FLAGS.track : 0) | (hook.host ? HOOK_FLAGS.host : 0) | (hook.dnsUntracked ? HOOK_FLAGS.dnsUntracked : 0),
    8,
  );
  b.writeUInt32LE(hook.endpointIndex, 12);
  return b;
}

/** The list id as the kernel sees it: the generation in the top bits, so generations never share entries. */
export function generationListId(id: number, generation: number): number {
  return id === 0 ? 0 : ((generation & 1) << LIST_GENERATION_SHIFT) | id;
}

export function listIdGeneration(list: number): number {
  return (list >>> LIST_GENERATION_SHIFT) & 1;
}

export function encodeRule(rule: RuleTable, generation: number): Buffer {
  const b = Buffer.alloc(POLICY_STRUCT_SIZES.dnsplane_policy_rule);
  b.writeUInt8(ACTION_CODES[rule.action], 0);
  b.writeUInt8(rule.protocol ?? 0, 1);
  b.writeUInt8(rule.family ?? 0, 2);
  b.writeUInt8(rule.direction === 'egress' ? 1 : 0, 3);
  const lists = [rule.ports.source, rule.ports.sourceNot, rule.ports.destination, rule.ports.destinationNot];
  lists.forEach((ranges, list) => {
    b.writeUInt8(ranges.length, 4 + list);
    ranges.forEach((range, i) => {
      const at = 40 + list * 32 + i * 4;
      b.writeUInt16LE(range.first, at);
      b.writeUInt16LE(range.last, at + 2);
    });
  });
  b.writeUInt32LE(rule.passTarget, 8);
  b.writeUInt32LE(generationListId(rule.sourceNets, generation), 12);
  b.writeUInt32LE(generationListId(rule.sourceNotNets, generation), 16);
  b.writeUInt32LE(generationListId(rule.destinationNets, generation), 20);
  b.writeUInt32LE(generationListId(rule.destinationNotNets, generation), 24);
  b.writeUInt32LE(rule.destinationDomainSet, 28);
  b.writeUInt32LE(rule.policyIndex, 32);
  b.writeUInt32LE(rule.rule, 36);
  return b;
}

export interface NetKey {
  readonly family: 4 | 6;
  readonly key: Buffer;
}

export function encodeNetKey(list: number, cidr: Cidr | string, generation: number): NetKey {
  const parsed = typeof cidr === 'string' ? parseCidr(cidr) : cidr;
  if (typeof parsed === 'string') throw new RangeError(`not a CIDR: ${String(cidr)}: ${parsed}`);
  const [addressText, prefixText] = parsed.text.split('/') as [string, string];
  const address = parseAddress(addressText);
  if (!address) throw new RangeError(`not a CIDR: ${parsed.text}`);
  const size = address.family === 4 ? POLICY_STRUCT_SIZES.dnsplane_policy_net4_key : POLICY_STRUCT_SIZES.dnsplane_policy_net6_key;
  const b = Buffer.alloc(size);
  b.writeUInt32LE(32 + Number(prefixText), 0);
  b.writeUInt32LE(generationListId(list, generation), 4);
  Buffer.from(address.bytes).copy(b, 8);
  return { family: address.family, key: b };
}

export function netKeyList(key: Buffer): number {
  return key.readUInt32LE(4);
}

export function encodeNetLists(lists: readonly NetList[], generation: number): NetKey[] {
  return lists.flatMap((list) => list.cidrs.map((cidr) => encodeNetKey(list.id, cidr, generation)));
}

export interface PolicyLogEvent {
  readonly timeNs: bigint;
  readonly ifindex: number;
  readonly policyIndex: number;
  readonly rule: number;
  readonly endpointIndex: number;
  readonly direction: 'ingress' | 'egress';
  readonly family: 4 | 6;
  readonly protocol: number;
  readonly tcDirection: 'ingress' | 'egress';
  readonly sourcePort: number;
  readonly destinationPort: number;
  readonly source: string;
  readonly destination: string;
}

function addressText(bytes: Buffer, family: 4 | 6): string {
  return formatAddress({ family, bytes: Uint8Array.from(bytes.subarray(0, family === 4 ? 4 : 16)) });
}

export function decodeLogEvent(record: Buffer): PolicyLogEvent {
  const family = record.readUInt8(25) === 6 ? 6 : 4;
  return {
    timeNs: record.readBigUInt64LE(0),
    ifindex: record.readUInt32LE(8),
    policyIndex: record.readUInt32LE(12),
    rule: record.readUInt32LE(16),
    endpointIndex: record.readUInt32LE(20),
    direction: record.readUInt8(24) === 1 ? 'egress' : 'ingress',
    family,
    protocol: record.readUInt8(26),
    tcDirection: record.readUInt8(27) === 1 ? 'egress' : 'ingress',
    sourcePort: record.readUInt16LE(28),
    destinationPort: record.readUInt16LE(30),
    source: addressText(record.subarray(32, 48), family),
    destination: addressText(record.subarray(48, 64), family),
  };
}
