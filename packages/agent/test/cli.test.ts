import { afterEach, describe, expect, it } from 'vitest';
import { compile, loadInputs } from '@dnsplane/core';
import { createNftablesDataplane } from '@dnsplane/nftables';
import { COMMANDS, main } from '../src/cli.js';
import { DRIVERS } from '../src/drivers.js';
import { configTree, testEnvironment, type ConfigTree } from './helpers.js';

let tree: ConfigTree | undefined;
afterEach(async () => {
  await tree?.cleanup();
  tree = undefined;
});

describe('dnsplane (command line)', () => {
  it('prints help for every command and exits 0', async () => {
    for (const command of COMMANDS) {
      const t = testEnvironment();
      expect(await main([command.name, '--help'], t.environment)).toBe(0);
      expect(t.stdout()).toContain(`Usage: dnsplane ${command.name}`);
    }
    const t = testEnvironment();
    expect(await main(['--help'], t.environment)).toBe(0);
    for (const command of COMMANDS) expect(t.stdout()).toContain(`  ${command.name}`);
  });

  it('rejects unknown commands and flags with exit code 2, naming them', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['frobnicate'], /unknown command 'frobnicate'/],
      [['--verbose'], /unknown option '--verbose'/],
      [['validate', '--bogus'], /dnsplane validate: Unknown option '--bogus'/],
      [['apply', '--dry-run', '--dataplane', 'pf'], /--dataplane: must be one of nftables, iptables, ebpf/],
      [['status', '--jsn'], /Unknown option '--jsn'/],
      [['validate', 'stray'], /unexpected argument: stray/],
      [['run', '--log-level', 'loud'], /--log-level: must be one of fatal, error/],
      [['validate', '-c'], /Option '-c, --config <value>' argument missing/],
    ];
    for (const [argv, message] of cases) {
      const t = testEnvironment();
      expect(await main(argv, t.environment), argv.join(' ')).toBe(2);
      expect(t.stderr()).toMatch(message);
    }
    const none = testEnvironment();
    expect(await main([], none.environment)).toBe(2);
    expect(none.stderr()).toContain('Usage: dnsplane <command>');
  });

  it('validate: exit 0 with a summary for good input', async () => {
    tree = await configTree();
    const t = testEnvironment();
    expect(await main(['validate', '-c', tree.configPath], t.environment)).toBe(0);
    expect(t.stdout()).toBe(
      `ok: ${tree.configPath}: 1 policy, 2 endpoints, 1 domain set from 2 resource files; dataplane nftables\n`,
    );
  });

  it('validate: exit 1 and one line per problem (file#document: field: reason) for bad input', async () => {
    tree = await configTree();
    await tree.write(
      'policies/web.yaml',
      `kind: Policy
metadata: { name: web-egress }
spec:
  selector: app == "web" &&
  egress:
    - action: Allow
      protocol: TCP
      destination: { domains: ["api.example.test"], ports: ["443:80"] }
`,
    );
    const t = testEnvironment();
    expect(await main(['validate', '-c', tree.configPath], t.environment)).toBe(1);
    const lines = t.stderr().trim().split('\n');
    expect(lines[0]).toMatch(/^invalid input \(2 problems\); nothing was applied:$/);
    const file = `${tree.dir}/policies/web.yaml#0`;
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^${escape(file)}: spec\\.selector: invalid selector: .*\\(column \\d+\\)$`)));
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^${escape(file)}: spec\\.egress\\[0\\]\\.destination\\.ports\\[0\\]: .*reversed`)));
    expect(t.stdout()).toBe('');
  });

  it('validate: uses $DNSPLANE_CONFIG when -c is absent', async () => {
    tree = await configTree();
    const t = testEnvironment({ env: { DNSPLANE_CONFIG: tree.configPath } });
    expect(await main(['validate'], t.environment)).toBe(0);
    expect(t.stdout()).toContain(tree.configPath);
  });

  it('apply --dry-run prints the desired state and each driver\'s exact render()', async () => {
    tree = await configTree();
    const t = testEnvironment({ kinds: ['nftables', 'iptables'] });
    expect(await main(['apply', '--dry-run', '-c', tree.configPath], t.environment)).toBe(0);
    const inputs = await loadInputs(tree.configPath);
    const state = compile(inputs);
    const output = t.stdout();
    expect(output).toContain(`## desired state\n${JSON.stringify(state, null, 2)}\n`);
    const [nft, ipt] = t.dataplanes;
    expect(output).toContain(`## nftables (selected): render()\n${nft?.render(state)}`);
    expect(output).toContain(`## iptables: render()\n${ipt?.render(state)}`);
    expect(output).toContain('## ebpf: not implemented yet');
    // Nothing was installed: a dry run only renders.
    expect(t.dataplanes.every((d) => d.events.every((e) => e.type === 'close'))).toBe(true);
  });

  it('apply --dry-run includes the real nftables driver rendering, without root or kernel', async () => {
    tree = await configTree();
    const t = testEnvironment({ drivers: DRIVERS });
    expect(await main(['apply', '--dry-run', '-c', tree.configPath], t.environment)).toBe(0);
    const state = compile(await loadInputs(tree.configPath));
    // As the agent builds it (default pin root: the parser verifies answers, DNS is untracked); render() touches no kernel.
    const nft = createNftablesDataplane({ pinRoot: '/sys/fs/bpf/dnsplane' });
    try {
      expect(t.stdout()).toContain(`## nftables (selected): render()\n${nft.render(state).replace(/\n$/, '')}\n`);
      // the untracked-DNS rules and the parser's answer mark are part of what a dry run shows
      expect(t.stdout()).toContain('"prerouting_untrack"');
      expect(t.stdout()).toContain('"answerMark": "0x04000000"');
    } finally {
      await nft.close();
    }
  });

  it('apply --dry-run --dataplane X renders only X, and a missing driver is NotSupported (exit 1)', async () => {
    tree = await configTree();
    const t = testEnvironment({ kinds: ['nftables', 'iptables'] });
    expect(await main(['apply', '--dry-run', '-c', tree.configPath, '--dataplane', 'iptables'], t.environment)).toBe(0);
    expect(t.stdout()).toContain('# dataplane: iptables\n');
    expect(t.stdout()).toContain('## iptables (selected): render()');
    expect(t.stdout()).not.toContain('## nftables');

    const missing = testEnvironment({ kinds: ['nftables'] });
    expect(await main(['apply', '--dry-run', '-c', tree.configPath, '--dataplane', 'ebpf'], missing.environment)).toBe(1);
    expect(missing.stderr()).toBe('dnsplane: dataplane ebpf is not implemented yet\n');
    expect(missing.stdout()).toBe('');
  });

  it('apply (not dry) installs once through the configured driver and leaves it in force', async () => {
    tree = await configTree();
    const t = testEnvironment();
    expect(await main(['apply', '-c', tree.configPath], t.environment)).toBe(0);
    const [dataplane] = t.dataplanes;
    expect(dataplane?.installs).toHaveLength(1);
    expect(dataplane?.removed).toBe(false);
    expect(dataplane?.closed).toBe(true);
    expect(t.stdout()).toBe('applied to nftables: 1 policy, 2 endpoints, 1 domain set\n');
  });

  it('run with a dataplane that has no driver fails with NotSupported and installs nothing', async () => {
    tree = await configTree({ dataplane: 'ebpf' });
    const t = testEnvironment({ kinds: ['nftables'] });
    expect(await main(['run', '-c', tree.configPath, '--socket', tree.socketPath], t.environment)).toBe(1);
    expect(t.stderr()).toBe('dnsplane: dataplane ebpf is not implemented yet\n');
  });

  it('schema prints the JSON Schemas, one or all', async () => {
    const all = testEnvironment();
    expect(await main(['schema'], all.environment)).toBe(0);
    const schemas = JSON.parse(all.stdout()) as Record<string, { title?: string }>;
    expect(Object.keys(schemas).sort()).toEqual(['config.schema.json', 'endpoint.schema.json', 'policy.schema.json']);
    const one = testEnvironment();
    expect(await main(['schema', '--name', 'policy.schema.json'], one.environment)).toBe(0);
    expect(JSON.parse(one.stdout())).toEqual(schemas['policy.schema.json']);
    const bad = testEnvironment();
    expect(await main(['schema', '--name', 'nope.json'], bad.environment)).toBe(2);
    expect(bad.stderr()).toMatch(/--name: must be one of config\.schema\.json/);
  });

  it('demo --dry-run is the dry run of examples/dnsplane.yaml', async () => {
    const t = testEnvironment();
    expect(await main(['demo', '--dry-run'], t.environment)).toBe(0);
    expect(t.stdout()).toMatch(/^# dnsplane apply --dry-run: .*examples\/dnsplane\.yaml\n/);
    expect(t.stdout()).toContain('## desired state');
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
