// Child process of attach.kernel.test.ts, run inside the test's network namespace with
// `nsenter --net=/run/netns/<ns> node --import tsx attach-child.ts <json args>` (nsenter keeps
// the host's bpffs visible). tc acts on the calling process's namespace, so everything that
// attaches runs here: the parser on ingress and egress, the membership mark on ingress, real
// TCP SYNs from the peer namespace counted by an nft table by mark, replace on re-attach, and
// uninstall. Prints one JSON report.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import {
  DNSPLANE_TC_FILTERS,
  DnsParserProgram,
  MembershipMarker,
  MembershipMatchPrograms,
  interfaceIndex,
  uninstallBpf,
} from '../../src/index.js';
import { MembershipWriter } from '../membership-fixtures.js';

interface Args {
  pinRoot: string;
  ifname: string;
  peerNamespace: string;
  member: string;
  other: string;
  table: string;
  setId: number;
  bit: number;
  mask: number;
}
const args = JSON.parse(process.argv[2] ?? '{}') as Args;

const nft = (script: string): void => {
  execFileSync('nft', ['-f', '-'], { input: script });
};
/** Packets counted by the rule with this comment. */
const counted = (comment: string): number => {
  const out = execFileSync('nft', ['-j', 'list', 'table', 'inet', args.table], { encoding: 'utf8' });
  const items = (JSON.parse(out) as { nftables: Array<Record<string, unknown>> }).nftables;
  for (const item of items) {
    const rule = item['rule'] as { comment?: string; expr: Array<Record<string, unknown>> } | undefined;
    if (rule?.comment !== comment) continue;
    for (const e of rule.expr) {
      const c = e['counter'] as { packets: number } | undefined;
      if (c) return c.packets;
    }
  }
  throw new Error(`no rule ${comment}`);
};
/** Two TCP connection attempts to a closed port from the peer: two SYNs cross the hook (curl exits 7 after the RST). */
const connectTwice = (address: string): Array<number | null> =>
  [0, 1].map(
    () =>
      spawnSync('ip', ['netns', 'exec', args.peerNamespace, 'curl', '-s', '--max-time', '5', `http://${address}:9/`], { stdio: 'ignore' })
        .status,
  );
const tcFilters = (direction: string): string => execFileSync('tc', ['filter', 'show', 'dev', args.ifname, direction], { encoding: 'utf8' });

const report: Record<string, unknown> = {};
const parser = DnsParserProgram.load({ pinRoot: args.pinRoot });
const marker = MembershipMarker.load({ pinRoot: args.pinRoot });
const writer = new MembershipWriter(args.pinRoot);
try {
  nft(`table inet ${args.table} {
    chain pre {
      type filter hook prerouting priority -150;
      meta mark & ${args.mask} == ${args.bit} counter comment "marked"
      ip daddr ${args.member} counter comment "to-member"
      ip daddr ${args.other} counter comment "to-other"
    }
  }`);
  const ifindex = interfaceIndex(args.ifname);
  report['ifindex'] = ifindex;
  report['parserIngress'] = parser.attachTc(args.ifname, 'ingress');
  report['parserEgress'] = parser.attachTc(args.ifname, 'egress');
  report['parserReattach'] = parser.attachTc(args.ifname, 'ingress'); // replace, no EEXIST
  report['markAttach'] = marker.attach(args.ifname);
  marker.setEndpointSets(ifindex, args.mask, [{ setId: args.setId, bit: args.bit }]);
  writer.write(args.setId, args.member, 120);
  report['filtersIngress'] = tcFilters('ingress');

  report['connectMember'] = connectTwice(args.member);
  report['connectOther'] = connectTwice(args.other);
  report['afterConnects'] = { marked: counted('marked'), toMember: counted('to-member'), toOther: counted('to-other') };

  // a second load (an agent restart) re-attaches in place: another program id, one filter
  const second = MembershipMarker.load({ pinRoot: args.pinRoot });
  try {
    report['markReattach'] = second.attach(args.ifname);
    report['markQuery'] = second.attached(args.ifname) ?? null;
  } finally {
    second.close();
  }
  report['filtersAfterReattach'] = tcFilters('ingress');
  report['connectMemberAgain'] = connectTwice(args.member);
  report['afterReattach'] = { marked: counted('marked'), toMember: counted('to-member') };
  report['socketPin'] = parser.pinSocketFilter();
  report['socketPinAgain'] = parser.pinSocketFilter();

  // xt_bpf: the per-set match and the parser's socket filter in real iptables rules (this
  // namespace's INPUT chain, counting only): SYNs to the member match the set, to the other
  // address not; the parser's filter always matches.
  const matches = new MembershipMatchPrograms({ pinRoot: args.pinRoot });
  const xtPath = matches.ensure([args.setId]).get(args.setId) ?? '';
  const iptables = (...a: string[]): string => execFileSync('iptables', ['-w', ...a], { encoding: 'utf8' });
  iptables('-A', 'INPUT', '-p', 'tcp', '--dport', '9', '-m', 'bpf', '--object-pinned', xtPath, '-m', 'comment', '--comment', 'dnsplane-xt-member');
  iptables('-A', 'INPUT', '-p', 'tcp', '--dport', '9', '-m', 'bpf', '--object-pinned', String(report['socketPin']), '-m', 'comment', '--comment', 'dnsplane-parse');
  report['connectXt'] = [...connectTwice(args.member), ...connectTwice(args.other)];
  const iptablesCount = (comment: string): number => {
    const line = iptables('-L', 'INPUT', '-v', '-x', '-n').split('\n').find((l) => l.includes(comment));
    return Number(line?.trim().split(/\s+/)[0] ?? -1);
  };
  report['xtCounts'] = { member: iptablesCount('dnsplane-xt-member'), parse: iptablesCount('dnsplane-parse') };
  iptables('-F', 'INPUT');
  matches.close();

  report['uninstall'] = uninstallBpf({ pinRoot: args.pinRoot, interfaces: [args.ifname, 'dpnone0'] });
  report['pinRootAfter'] = existsSync(args.pinRoot);
  report['queriesAfter'] = {
    parserIngress: parser.attachedTc(args.ifname, 'ingress') ?? null,
    parserEgress: parser.attachedTc(args.ifname, 'egress') ?? null,
    mark: marker.attached(args.ifname) ?? null,
  };
  report['filtersAfterUninstall'] = tcFilters('ingress') + tcFilters('egress');
  report['connectAfterUninstall'] = connectTwice(args.member);
  report['afterUninstall'] = { marked: counted('marked'), toMember: counted('to-member') };
  report['detachAgain'] = marker.detach(args.ifname);
  report['slots'] = DNSPLANE_TC_FILTERS;
  process.stdout.write(`${JSON.stringify(report)}\n`);
} finally {
  writer.close();
  marker.close();
  parser.close();
}
