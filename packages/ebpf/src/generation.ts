// One policy generation: written next to the one in force, then made current by one flip.
import { splitPerCpu, type BpfMap, type BpfObject } from '@dnsplane/bpf-parser';
import {
  POLICY_COUNTER_NAMES,
  POLICY_MAP_NAMES,
  RULES_PER_GENERATION,
  decodeActive,
  encodeActive,
  encodeHook,
  encodeHookKey,
  encodeIndex,
  encodeNetLists,
  encodeRule,
  hookKeyGeneration,
  listIdGeneration,
  netKeyList,
  type PolicyMapRole,
} from './encode.js';
import type { HookTable, PolicyTables } from './tables.js';

/**
 * Writes the generation not in force (after clearing what two installs ago left there), then
 * flips dnsp_pol_active: each packet sees either the old or the new policy, whole. Returns the
 * generation now in force.
 */
export function writeGeneration(policy: BpfObject, tables: PolicyTables, hooks: ReadonlyArray<{ hook: HookTable; ifindex: number }>): number {
  const map = (role: PolicyMapRole): BpfMap => policy.map(POLICY_MAP_NAMES[role]);
  const activeValue = map('active').lookup(encodeIndex(0));
  const active = activeValue === undefined ? 0 : decodeActive(activeValue);
  const next = 1 - active;

  const hookMap = map('hooks');
  for (const key of hookMap.keys()) if (hookKeyGeneration(key) === next) hookMap.delete(key);
  for (const role of ['nets4', 'nets6'] as const) {
    const nets = map(role);
    for (const key of nets.keys()) if (listIdGeneration(netKeyList(key)) === next) nets.delete(key);
  }
  const rules = map('rules');
  if (tables.rules.length > 0) {
    rules.updateBatch(
      tables.rules.map((r) => encodeIndex(next * RULES_PER_GENERATION + r.slot)),
      tables.rules.map((r) => encodeRule(r, next)),
    );
  }
  for (const net of encodeNetLists(tables.netLists, next)) map(net.family === 4 ? 'nets4' : 'nets6').update(net.key, Buffer.of(1));
  for (const { hook, ifindex } of hooks) hookMap.update(encodeHookKey(ifindex, hook.tcDirection, next), encodeHook(hook, next));
  map('active').update(encodeIndex(0), encodeActive(next));
  return next;
}

/** The policy counters (dnsp_pol_counters; `names` for another per-CPU counter array), summed over CPUs, by name. */
export function splitCounters(map: BpfMap, names: readonly string[] = POLICY_COUNTER_NAMES): Record<string, number> {
  const out: Record<string, number> = {};
  names.forEach((name, index) => {
    const value = map.lookup(encodeIndex(index));
    out[name] = value === undefined ? 0 : splitPerCpu(value, 8).reduce((sum, slot) => sum + Number(slot.readBigUInt64LE(0)), 0);
  });
  return out;
}
