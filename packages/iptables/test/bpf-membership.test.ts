// MembershipDomainMatches over a fake pinner: the provider builds the pinner lazily (so a
// driver for `apply --dry-run` touches nothing), insists that pins are where the rules say,
// and forwards prune/unpinAll/close.
import { describe, expect, it } from 'vitest';
import { isKernelError } from '@dnsplane/core';
import type { DomainSet } from '@dnsplane/core';
import { createIptablesDataplane, domainMatchPinPath, inlineParsing, MembershipDomainMatches } from '../src/index.js';
import type { MembershipMatchPinner } from '../src/index.js';
import { fullState } from './fixtures.js';

const ROOT = '/sys/fs/bpf/dnsplane-unit';
const set = (id: number): DomainSet => ({ id, name: `ds_${id}`, patterns: [] });

function fakePinner(pathOf: (id: number) => string = (id) => domainMatchPinPath(ROOT, id)) {
  const calls: string[] = [];
  let opened = 0;
  const open = (): MembershipMatchPinner => {
    opened++;
    return {
      ensure: (ids) => {
        calls.push(`ensure ${ids.join(',')}`);
        return new Map(ids.map((id) => [id, pathOf(id)]));
      },
      prune: (keep) => void calls.push(`prune ${keep.join(',')}`),
      close: () => void calls.push('close'),
    };
  };
  return { calls, open, opened: () => opened };
}

describe('MembershipDomainMatches', () => {
  it('opens the pinner on first use only and names <pinRoot>/xt_member_<8 hex>', async () => {
    const fake = fakePinner();
    const matches = new MembershipDomainMatches(`${ROOT}/`, fake.open);
    expect(matches.matchProgramPath(0xab)).toBe(`${ROOT}/xt_member_000000ab`);
    await matches.prepare([]);
    expect(fake.opened()).toBe(0);
    await matches.prepare([set(1), set(2)]);
    await matches.prune([1]);
    await matches.unpinAll();
    await matches.close();
    expect(fake.calls).toEqual(['ensure 1,2', 'prune 1', 'prune ', 'close']);
    expect(fake.opened()).toBe(1);
    // After close, the next use opens a new pinner.
    await matches.prepare([set(3)]);
    expect(fake.opened()).toBe(2);
  });

  it('refuses a pin somewhere the rules do not name', async () => {
    const fake = fakePinner((id) => `/elsewhere/${id}`);
    const matches = new MembershipDomainMatches(ROOT, fake.open);
    const error = await matches.prepare([set(7)]).catch((e: unknown) => e);
    expect(isKernelError(error)).toBe(true);
    expect(String((error as Error).message)).toContain('/elsewhere/7');
  });
});

describe('inlineParsing', () => {
  it('renders parser and member paths under the pin root without touching the kernel', () => {
    const dataplane = createIptablesDataplane({ ...inlineParsing({ pinRoot: ROOT }) });
    const state = { ...fullState, dns: { ...fullState.dns, trustedServers: [{ family: 4 as const, address: '198.18.0.10', port: 53 }] } };
    const text = dataplane.render(state);
    expect(text).toContain(`-s 198.18.0.10/32 -p udp -m multiport --sports 53 -m bpf --object-pinned ${ROOT}/dnsplane_parse_socket`);
    expect(text).toContain(`-m bpf --object-pinned ${ROOT}/xt_member_1234abcd`);
  });
});
