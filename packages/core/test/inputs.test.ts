import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseDomainPattern } from '../src/domain-pattern.js';
import { InvalidInputError, isInvalidInput } from '../src/errors.js';
import { loadInputs, parseDocuments, validateConfig, validateDocuments } from '../src/inputs.js';
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

const validConfig = fileURLToPath(new URL('./fixtures/inputs/valid/dnsplane.yaml', import.meta.url));

describe('loadInputs on the valid fixture (every feature written out)', () => {
  it('reads folders recursively and sorted, skips dot-files and other extensions, reads a file once', async () => {
    const inputs = await loadInputs(validConfig);
    const shown = inputs.files.map((file) => path.relative(path.dirname(validConfig), file));
    expect(shown).toEqual(['policies/endpoints.yaml', 'policies/team-b/defaults.yml', 'policies/web.yaml', 'extra.json']);
    expect(inputs.configFile).toBe(validConfig);
  });

  it('parses the config with every field', async () => {
    const { config } = await loadInputs(validConfig);
    expect(config.dataplane).toBe('iptables');
    expect(config.dns).toEqual({
      trustedServers: [
        { family: 4, address: '198.18.0.10', port: 53 },
        { family: 4, address: '198.18.0.11', port: 53 },
        { family: 6, address: 'fd00:0:0:1::10', port: 5353 },
        { family: 6, address: 'fd00:0:0:1::11', port: 53 },
        { family: 6, address: 'fd00:0:0:1::12', port: 53 },
      ],
      minTTL: 0,
      extraTTL: 5,
      maxAddressesPerName: 16,
      interfaces: ['eth0', 'dpweb0'],
    });
    expect(config.statePath).toBe(path.join(path.dirname(validConfig), 'state/learned.json'));
    expect(config.log.level).toBe('debug');
    expect(config.iptables.backend).toBe('legacy');
    expect(config.bpf.pinRoot).toBe('/sys/fs/bpf/dnsplane-valid');
    expect(config.nftables).toEqual({ table: 'dnsplane_valid', markMask: '0x0000f000', mirrorDrainIntervalMs: 1000, untrackDns: 'auto', answerMark: '0x04000000' });
  });

  it('parses endpoints: labels, host, interfaces, canonical addresses, names unique per kind', async () => {
    const { endpoints } = await loadInputs(validConfig);
    const byName = new Map(endpoints.map((e) => [e.metadata.name, e]));
    expect([...byName.keys()].sort()).toEqual(['json-a', 'node', 'web', 'web-egress']);
    const web = byName.get('web');
    expect(web?.metadata.labels).toEqual({
      app: 'web',
      tier: 'frontend',
      'app.kubernetes.io/name': 'shop',
      'example.test/owner': 'team-a',
      empty: '',
    });
    expect(web?.spec).toEqual({
      interface: 'dpweb0',
      host: false,
      addresses: [
        { family: 4, text: '198.18.1.2/32' },
        { family: 4, text: '198.18.2.0/24' },
        { family: 6, text: 'fd00:0:0:2::2/128' },
        { family: 6, text: 'fd00:0:0:3::/64' },
      ],
    });
    expect(byName.get('node')?.spec).toEqual({ host: true, addresses: [] });
    expect(byName.get('web-egress')?.spec.interface).toBe('veth.web-1_x');
  });

  it('parses policies: order, selector, types defaults, protocols, ports, nets, domains', async () => {
    const { policies } = await loadInputs(validConfig);
    const byName = new Map(policies.map((p) => [p.metadata.name, p]));
    const web = byName.get('web-egress');
    expect(web?.spec.order).toBe(10.5);
    expect(formatSelector(web?.spec.selector ?? { kind: 'all' })).toBe(
      'app == "web" && tier in {"edge", "frontend"} && !has(legacy) && (env != "dev" || all())',
    );
    expect(web?.spec.types).toEqual(['Ingress', 'Egress']);
    const [first, second, third] = web?.spec.ingress ?? [];
    expect(first).toEqual({
      action: 'Allow',
      protocol: 6,
      source: {
        nets: [
          { family: 4, text: '198.18.0.0/15' },
          { family: 6, text: 'fd00::/8' },
        ],
        notNets: [{ family: 4, text: '198.18.9.9/32' }],
        ports: [],
        notPorts: [{ first: 1, last: 1023 }],
      },
      destination: {
        nets: [],
        notNets: [],
        ports: [
          { first: 80, last: 80 },
          { first: 443, last: 443 },
          { first: 8000, last: 8080 },
        ],
        notPorts: [],
      },
    });
    expect([second?.action, second?.protocol, third?.action, third?.protocol]).toEqual(['Log', 1, 'Pass', 58]);
    const egress = web?.spec.egress ?? [];
    expect(egress.map((rule) => [rule.action, rule.protocol])).toEqual([
      ['Allow', 17],
      ['Allow', 6],
      ['Deny', undefined],
      ['Allow', 17],
      ['Deny', undefined],
    ]);
    expect(egress[1]?.destination.domains?.map((d) => d.text)).toEqual([
      'api.example.test',
      '*.cdn.example.test',
      'api.example.test',
      'api-*.example.test',
      'xn--bcher-kva.example.test',
      'exact.example.test',
      parseDomainPattern('*.one.example.test', 'cilium-pattern').text,
    ]);
    expect(egress[1]?.destination.notNets).toEqual([{ family: 4, text: '198.18.7.0/24' }]);
    expect(egress[2]?.destination.domains?.map((d) => d.text)).toEqual(['blocked.example.test']);
    // Host bits are cleared: "198.18.5.77/16" is the network 198.18.0.0/16.
    expect(egress[3]?.destination.nets).toEqual([{ family: 4, text: '198.18.0.0/16' }]);
    expect(egress[3]?.source.ports).toEqual([{ first: 5353, last: 5353 }]);
    expect(egress[3]?.destination.notPorts).toEqual([{ first: 9, last: 9 }]);

    expect(byName.get('default-deny')?.spec.selector).toEqual({ kind: 'all' });
    expect(byName.get('default-deny')?.spec.types).toEqual(['Ingress']);
    expect(byName.get('default-deny')?.spec.order).toBeUndefined();
    expect(byName.get('no-rules')?.spec).toEqual({ selector: { kind: 'all' }, types: ['Ingress'], ingress: [], egress: [] });
    expect(byName.get('egress-only')?.spec.types).toEqual(['Egress']);
    expect(byName.get('egress-only')?.spec.egress.map((r) => r.protocol)).toEqual([58, 132, 0]);
    expect(byName.get('json-policy')?.apiVersion).toBe('dnsplane/v1');
    expect(byName.get('json-policy')?.spec.egress[0]?.protocol).toBe(132);
  });
});

describe('loadInputs file handling', () => {
  let folder: string;
  beforeEach(async () => {
    folder = await mkdtemp(path.join(tmpdir(), 'dnsplane-inputs-'));
  });
  afterEach(async () => {
    await rm(folder, { recursive: true, force: true });
  });

  const write = async (relative: string, text: string) => {
    const file = path.join(folder, relative);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, text);
    return file;
  };

  it('reports a missing config file', async () => {
    await expect(loadInputs(path.join(folder, 'nope.yaml'))).rejects.toThrow(/nope\.yaml: \(document\): config file not found/);
  });

  it('reports a config path that is a folder', async () => {
    await expect(loadInputs(folder)).rejects.toThrow(/is a folder: expected the config file/);
  });

  it('fills every default for an empty mapping', async () => {
    const config = await write('dnsplane.yaml', '{}\n');
    const inputs = await loadInputs(config);
    expect(inputs.config).toEqual({
      dataplane: 'nftables',
      dns: { trustedServers: [], minTTL: 30, extraTTL: 10, maxAddressesPerName: 256, interfaces: [] },
      resources: [],
      statePath: '/var/lib/dnsplane/state.json',
      driftCheckSeconds: 30,
      log: { level: 'info' },
      metrics: {},
      iptables: { backend: 'auto' },
      bpf: { pinRoot: '/sys/fs/bpf/dnsplane' },
      nftables: { table: 'dnsplane', markMask: '0x00ff0000', mirrorDrainIntervalMs: 1000, untrackDns: 'auto', answerMark: '0x04000000' },
    });
    expect(inputs.policies).toEqual([]);
    expect(inputs.files).toEqual([]);
  });

  it('reads a JSON config and an explicitly named file whatever its extension', async () => {
    await write('docs/policy.txt', 'kind: Policy\nmetadata: { name: p }\nspec: {}\n');
    const config = await write('conf.json', JSON.stringify({ resources: ['docs/policy.txt'] }));
    const inputs = await loadInputs(config);
    expect(inputs.policies.map((p) => p.metadata.name)).toEqual(['p']);
  });

  it('never reads the config file as a resource, even when its folder is listed', async () => {
    await write('web.yaml', 'kind: Policy\nmetadata: { name: web }\nspec: {}\n');
    const config = await write('dnsplane.yaml', 'resources: ["."]\n');
    const inputs = await loadInputs(config);
    expect(inputs.files.map((f) => path.basename(f))).toEqual(['web.yaml']);
    expect(inputs.policies.map((p) => p.metadata.name)).toEqual(['web']);
  });

  it('ignores a byte-order mark and CRLF line ends', async () => {
    await write('p/a.json', '\uFEFF{"kind": "Policy", "metadata": {"name": "a"}, "spec": {}}');
    await write('p/b.yaml', '\uFEFFkind: Policy\r\nmetadata: { name: b }\r\nspec: {}\r\n');
    const config = await write('dnsplane.yaml', 'resources: [./p]\r\n');
    expect((await loadInputs(config)).policies.map((p) => p.metadata.name)).toEqual(['a', 'b']);
  });

  it('a second load sees every change: an edited file, a file broken, one removed, one added (unchanged files are not parsed again)', async () => {
    await write('p/a.yaml', 'kind: Policy\nmetadata: { name: a }\nspec: { order: 1 }\n');
    await write('p/b.yaml', 'kind: Policy\nmetadata: { name: b }\nspec: {}\n');
    await write('p/c.yaml', 'kind: Policy\nmetadata: { name: c }\nspec: {}\n');
    const config = await write('dnsplane.yaml', 'resources: [./p]\n');
    const first = await loadInputs(config);
    expect(first.policies.map((p) => [p.metadata.name, p.spec.order])).toEqual([['a', 1], ['b', undefined], ['c', undefined]]);
    await write('p/a.yaml', 'kind: Policy\nmetadata: { name: a }\nspec: { order: 2 }\n');
    await rm(path.join(folder, 'p', 'c.yaml'));
    await write('p/d.yaml', 'kind: Policy\nmetadata: { name: d }\nspec: {}\n');
    const second = await loadInputs(config);
    expect(second.policies.map((p) => [p.metadata.name, p.spec.order])).toEqual([['a', 2], ['b', undefined], ['d', undefined]]);
    // the unchanged file's resource is the one validated before
    expect(second.policies[1]).toBe(first.policies[1]);
    await write('p/b.yaml', 'kind: Policy\nmetadata: { name: b }\nspec: { order: "x" }\n');
    await expect(loadInputs(config)).rejects.toThrow(/b\.yaml#0: spec\.order/);
    await write('p/b.yaml', 'kind: Policy\nmetadata: { name: b }\nspec: {}\n');
    expect((await loadInputs(config)).policies.map((p) => p.metadata.name)).toEqual(['a', 'b', 'd']);
  });

  it('does not loop on a symlink to a parent folder', async () => {
    await write('p/a.yaml', 'kind: Policy\nmetadata: { name: a }\nspec: {}\n');
    await symlink('..', path.join(folder, 'p', 'up'));
    const config = await write('dnsplane.yaml', 'resources: [./p]\n');
    const inputs = await loadInputs(config);
    expect(inputs.policies.map((p) => p.metadata.name)).toEqual(['a']);
  });

  it('accepts an empty resource folder', async () => {
    await mkdir(path.join(folder, 'empty'));
    const config = await write('dnsplane.yaml', 'resources: [./empty]\n');
    expect((await loadInputs(config)).files).toEqual([]);
  });

  it('collects problems from the config and from several files in one error', async () => {
    await write('p/a.yaml', 'kind: Policy\nmetadata: { name: a }\nspec: { order: x }\n');
    await write('p/b.yaml', 'kind: Endpoint\nmetadata: { name: b }\nspec: {}\n---\nkind: Thing\n');
    const config = await write('dnsplane.yaml', 'dataplane: foo\nresources: [./p]\n');
    let error: unknown;
    try {
      await loadInputs(config);
    } catch (e) {
      error = e;
    }
    expect(isInvalidInput(error)).toBe(true);
    const lines = (error as Error).message.split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/dnsplane\.yaml: dataplane: expected one of "nftables", "iptables", "ebpf", got the string "foo"$/);
    expect(lines[1]).toMatch(/p\/a\.yaml#0: spec\.order: expected a number, got the string "x"$/);
    expect(lines[2]).toMatch(/p\/b\.yaml#0: spec: an endpoint needs either interface/);
    expect(lines[3]).toMatch(/p\/b\.yaml#1: kind: unknown kind "Thing"/);
  });

  it('reports duplicates across files with where the first one is', async () => {
    await write('p/a.yaml', 'kind: Policy\nmetadata: { name: same }\nspec: {}\n');
    await write('p/b.yaml', 'kind: Policy\nmetadata: { name: same }\nspec: {}\n');
    const config = await write('dnsplane.yaml', 'resources: [./p]\n');
    await expect(loadInputs(config)).rejects.toThrow(/p\/b\.yaml#0: metadata\.name: duplicate Policy name "same": already defined in .*p\/a\.yaml#0/);
  });
});

describe('validateDocuments (no file system)', () => {
  it('returns typed resources for valid documents', () => {
    const { documents, problems } = parseDocuments(
      'mem.yaml',
      'kind: Endpoint\nmetadata: { name: e, labels: { app: web } }\nspec: { interface: dp0 }\n---\nkind: Policy\nmetadata: { name: p }\nspec: { selector: app == "web", egress: [{ action: Allow, destination: { domains: ["a.example.test"] } }] }\n',
    );
    expect(problems).toEqual([]);
    const { policies, endpoints } = validateDocuments(documents);
    expect(endpoints[0]?.spec.interface).toBe('dp0');
    expect(policies[0]?.spec.egress[0]?.destination.domains?.[0]?.text).toBe('a.example.test');
  });

  it('throws InvalidInputError listing every problem, one per line', () => {
    const documents = [
      { file: 'x.yaml', document: 0, value: { kind: 'Policy', metadata: { name: 'p' }, spec: { selector: 'a ==' } } },
      { file: 'x.yaml', document: 1, value: { kind: 'Endpoint', metadata: { name: 'e' }, spec: { interface: 'a/b' } } },
    ];
    expect(() => validateDocuments(documents)).toThrow(InvalidInputError);
    try {
      validateDocuments(documents);
    } catch (error) {
      expect((error as InvalidInputError).problems).toEqual([
        {
          file: 'x.yaml',
          document: 0,
          field: 'spec.selector',
          reason: 'invalid selector: expected a quoted string after "==", found end of selector',
          column: 5,
        },
        {
          file: 'x.yaml',
          document: 1,
          field: 'spec.interface',
          reason: 'interface name "a/b" must not contain "/", ":", whitespace or control characters',
        },
      ]);
      expect((error as Error).message).toBe(
        'x.yaml#0: spec.selector: invalid selector: expected a quoted string after "==", found end of selector (column 5)\n' +
          'x.yaml#1: spec.interface: interface name "a/b" must not contain "/", ":", whitespace or control characters',
      );
    }
  });

  it('supports YAML anchors, aliases and merge keys', () => {
    const { documents, problems } = parseDocuments(
      'anchors.yaml',
      [
        'kind: Policy',
        'metadata: { name: dns }',
        'spec:',
        '  egress:',
        '    - &dns { action: Allow, protocol: UDP, destination: { nets: ["198.18.0.10"], ports: [53] } }',
        '    - <<: *dns',
        '      protocol: TCP',
        '',
      ].join('\n'),
    );
    expect(problems).toEqual([]);
    const { policies } = validateDocuments(documents);
    expect(policies[0]?.spec.egress.map((rule) => [rule.protocol, rule.destination.ports])).toEqual([
      [17, [{ first: 53, last: 53 }]],
      [6, [{ first: 53, last: 53 }]],
    ]);
  });

  it('keeps document indexes across empty documents and reads JSON lists as documents', () => {
    const yamlDocs = parseDocuments('m.yaml', '---\n---\nkind: Policy\nmetadata: { name: p }\nspec: {}\n---\n');
    expect(yamlDocs.documents.map((d) => d.document)).toEqual([1]);
    const jsonDocs = parseDocuments('m.json', '[{"kind":"Policy"},{"kind":"Endpoint"}]');
    expect(jsonDocs.documents.map((d) => d.document)).toEqual([0, 1]);
  });

  it('refuses a YAML alias bomb instead of expanding it', () => {
    const lines = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]'];
    for (let i = 1; i < 8; i++) lines.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(10).fill(`*${String.fromCharCode(96 + i)}`).join(',')}]`);
    const parsed = parseDocuments('bomb.yaml', `${lines.join('\n')}\n`);
    expect(parsed.problems[0]?.reason).toMatch(/YAML error/);
  });
});

describe('the YAML examples in the docs are valid input', () => {
  const sources = ['../../../docs/config-and-policy.md', '../../../README.md'];
  for (const source of sources) {
    const file = fileURLToPath(new URL(source, import.meta.url));
    const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    const blocks = [...text.matchAll(/```yaml\n([\s\S]*?)```/g)].map((match) => match[1] ?? '');
    blocks.forEach((block, index) => {
      if (/^kind: /m.test(block)) {
        it(`${path.basename(file)} resource block ${index}`, () => {
          const parsed = parseDocuments(`${path.basename(file)}[${index}]`, block);
          expect(parsed.problems).toEqual([]);
          expect(() => validateDocuments(parsed.documents)).not.toThrow();
        });
      } else if (/^dataplane: /m.test(block)) {
        it(`${path.basename(file)} config block ${index}`, () => {
          const parsed = parseDocuments(`${path.basename(file)}[${index}]`, block);
          expect(parsed.problems).toEqual([]);
          expect(validateConfig('c', parsed.documents[0]?.value).problems).toEqual([]);
        });
      }
    });
  }
});
