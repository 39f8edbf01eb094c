// What the policies decided, from the rules' counters in a listing of the table: the same
// three figures every dataplane reports in status (ebpf counts them in its policy program,
// iptables from `-save -c`). Only packets a policy decides reach these rules: established and
// related ones are accepted before them.
import { POLICY_COUNTERS, policyDecisionCounters } from '@dnsplane/core';
import { ENDPOINT_CHAIN_PREFIX, POLICY_CHAIN_PREFIX } from './names.js';
import type { NftTableSnapshot } from './snapshot.js';

/**
 * `policy.allowed`: packets the Allow rules accepted; `policy.denied`: packets the Deny rules
 * dropped; `policy.default_deny`: packets no rule decided for a selected endpoint (the last
 * rule of its chain), also per endpoint chain as `policy.default_deny.<chain>`. A chain that
 * is refilled starts its counts again.
 */
export function policyCounters(snapshot: NftTableSnapshot): Record<string, number> {
  let allowed = 0;
  let denied = 0;
  let defaultDeny = 0;
  const perChain: Record<string, number> = {};
  for (const chain of snapshot.chains) {
    if (chain.name.startsWith(POLICY_CHAIN_PREFIX)) {
      for (const rule of chain.rules) {
        if (rule.verdict === 'accept') allowed += rule.packets ?? 0;
        else if (rule.verdict === 'drop') denied += rule.packets ?? 0;
      }
    } else if (chain.name.startsWith(ENDPOINT_CHAIN_PREFIX)) {
      const last = chain.rules.at(-1);
      if (last?.verdict !== 'drop' || last.packets === undefined) continue;
      perChain[`${POLICY_COUNTERS.defaultDeny}.${chain.name}`] = last.packets;
      defaultDeny += last.packets;
    }
  }
  return { ...policyDecisionCounters({ allowed, denied, defaultDeny }), ...perChain };
}
