import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { POLICY_OBJECT_PATH, POLICY_STRUCT_SIZES } from '@dnsplane/ebpf';

describe('policy map layouts', () => {
  it('match the sizes in the object\'s BTF', () => {
    const dump = execFileSync('bpftool', ['btf', 'dump', 'file', POLICY_OBJECT_PATH, 'format', 'raw'], { encoding: 'utf8' });
    const sizes = new Map([...dump.matchAll(/STRUCT '(\w+)' size=(\d+)/g)].map((m) => [m[1], Number(m[2])]));
    for (const [name, size] of Object.entries(POLICY_STRUCT_SIZES)) {
      if (name === 'dnsplane_policy_log_event') continue; // only reached through bpf_ringbuf_reserve: no BTF of its own
      expect([name, sizes.get(name)]).toEqual([name, size]);
    }
  });
});
