import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadInputs } from '../src/inputs.js';
import { formatSelector, matchesSelector } from '../src/selector.js';

const examples = fileURLToPath(new URL('../../../examples/dnsplane.yaml', import.meta.url));

describe('examples/ (the embedded default of npm run demo)', () => {
  it('loads without a problem', async () => {
    const inputs = await loadInputs(examples);
    expect(inputs.config.dataplane).toBe('nftables');
    expect(inputs.config.dns.trustedServers).toEqual([
      { family: 4, address: '198.18.0.10', port: 53 },
      { family: 6, address: 'fd00:0:0:1::10', port: 53 },
    ]);
    expect(inputs.endpoints.map((e) => e.metadata.name).sort()).toEqual(['batch', 'web']);
    expect(inputs.policies.map((p) => p.metadata.name).sort()).toEqual(['batch-egress', 'web-egress']);
    expect(inputs.files).toHaveLength(3);
  });

  it('uses lab addresses only and selects each endpoint with one policy', async () => {
    const inputs = await loadInputs(examples);
    const lab = (text: string) => text.startsWith('198.18.') || text.startsWith('198.19.') || text.startsWith('fd');
    for (const server of inputs.config.dns.trustedServers) expect(lab(server.address)).toBe(true);
    for (const endpoint of inputs.endpoints) {
      for (const address of endpoint.spec.addresses) expect(lab(address.text)).toBe(true);
      const selecting = inputs.policies.filter((p) => matchesSelector(p.spec.selector, endpoint.metadata.labels ?? {}));
      expect(selecting.map((p) => p.metadata.name)).toEqual([`${endpoint.metadata.name}-egress`]);
    }
    for (const policy of inputs.policies) {
      for (const rule of policy.spec.egress) for (const net of rule.destination.nets) expect(lab(net.text)).toBe(true);
    }
    const web = inputs.policies.find((p) => p.metadata.name === 'web-egress');
    expect(formatSelector(web?.spec.selector ?? { kind: 'all' })).toBe('app == "web"');
    expect(web?.spec.egress[2]?.destination.domains?.map((d) => d.text)).toEqual(['api.example.test', '*.cdn.example.test']);
  });
});
