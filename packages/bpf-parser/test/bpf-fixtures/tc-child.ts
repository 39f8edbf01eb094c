// Child process of libbpf-tc.kernel.test.ts, run inside the test's network namespace with
// `ip netns exec <ns> node --import tsx tc-child.ts <object> <ifname> <peer-ns> <address>`:
// tc attach/detach act on the calling process's network namespace. Prints one JSON report.
import { execFileSync, spawnSync } from 'node:child_process';
import { isKernelError, isNotFound } from '@dnsplane/core';
import { BpfObjectSpec, attachTc, detachTc, queryTc } from '../../src/libbpf.js';

const [objectPath, ifname, peerNamespace, address] = process.argv.slice(2);
if (!objectPath || !ifname || !peerNamespace || !address) {
  throw new Error('usage: tc-child.ts <object> <ifname> <peer-ns> <address>');
}

function errorKind(run: () => unknown): string {
  try {
    run();
    return 'none';
  } catch (error) {
    if (isNotFound(error)) return 'NotFoundError';
    if (isKernelError(error)) return `KernelError:${error.errno ?? '?'}`;
    return `other:${String(error)}`;
  }
}

const tcFilters = (direction: string): string =>
  execFileSync('tc', ['filter', 'show', 'dev', ifname, direction], { encoding: 'utf8' });

const object = BpfObjectSpec.open(objectPath).load();
try {
  const program = object.program('tc_count');
  const hits = object.map('slots');
  const zero = Buffer.alloc(4);
  const ingress = { ifname, direction: 'ingress' as const, priority: 7, handle: 3 };

  const report: Record<string, unknown> = {};
  report['queryBefore'] = queryTc(ingress) ?? null;
  const attached = attachTc({ ...ingress, program });
  report['attached'] = attached;
  report['queryAttached'] = queryTc(ingress) ?? null;
  report['filtersAttached'] = tcFilters('ingress');
  report['attachAgain'] = errorKind(() => attachTc({ ...ingress, program }));
  report['replace'] = errorKind(() => attachTc({ ...ingress, program, replace: true }));

  // Real packets from the peer namespace cross the classifier: three TCP connection
  // attempts to a closed port. curl returns only after this side's RST came back, so each
  // SYN has passed the ingress hook by then.
  const curlExits: Array<number | null> = [];
  for (let i = 0; i < 3; i++) {
    const curl = spawnSync(
      'ip',
      ['netns', 'exec', peerNamespace, 'curl', '-s', '--max-time', '5', `http://${address}:9/`],
      { stdio: 'ignore' },
    );
    curlExits.push(curl.status);
  }
  report['curlExits'] = curlExits;
  report['hits'] = Number(hits.lookup(zero)?.readBigUInt64LE(0) ?? 0n);

  detachTc(ingress);
  report['queryDetached'] = queryTc(ingress) ?? null;
  report['filtersDetached'] = tcFilters('ingress');
  report['detachAgain'] = errorKind(() => detachTc(ingress));

  const egress = { ifname, direction: 'egress' as const };
  report['egressAttached'] = attachTc({ ...egress, program });
  report['egressQuery'] = queryTc(egress) ?? null;
  detachTc(egress);
  report['egressDetached'] = queryTc(egress) ?? null;

  process.stdout.write(`${JSON.stringify(report)}\n`);
} finally {
  object.close();
}
