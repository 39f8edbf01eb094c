// Explore the lab by hand:
//   npx tsx test/lab/cli.ts up      build a lab, leave it running, print how to enter it
//   npx tsx test/lab/cli.ts list    labs recorded on this machine
//   npx tsx test/lab/cli.ts down [ID…]   remove kept labs (all of them without IDs)
//   npx tsx test/lab/cli.ts sweep   remove labs whose owner process is gone
import { createLab } from './lab.js';
import { isProcessRunning } from './process.js';
import { readLabStates, sweepStaleLabs, teardownSync } from './registry.js';
import { NAMES } from './zone.js';

const [command, ...rest] = process.argv.slice(2);

async function up(): Promise<void> {
  const clients = Number.parseInt(rest.find((arg) => arg.startsWith('--clients='))?.split('=')[1] ?? '2', 10);
  const lab = await createLab({ clients, log: (message) => console.error(message) });
  lab.keep();
  const client = lab.endpoints.client1!;
  console.log(`lab ${lab.id} is up and kept (remove it with: npx tsx test/lab/cli.ts down ${lab.id})

namespaces:
  node       ${lab.namespaces.node}   (router; interfaces ${Object.values(lab.endpoints).map((e) => e.hostInterface).join(', ')}, ${lab.untrusted.hostInterface}, …)
  dns        ${lab.namespaces.dns}    (dnsmasq ${lab.dnsServers.dnsmasq.ipv4} / ${lab.dnsServers.dnsmasq.ipv6}, unbound ${lab.dnsServers.unbound.ipv4} / ${lab.dnsServers.unbound.ipv6})
  web        ${lab.namespaces.web}    (HTTP on ports ${lab.web.ports.join(', ')} for ${lab.web.prefixes.ipv4} and ${lab.web.prefixes.ipv6})
  untrusted  ${lab.namespaces.untrusted}
${Object.values(lab.endpoints).map((e) => `  ${e.name.padEnd(10)} ${e.namespace}   (${e.ipv4}, ${e.ipv6}; host side ${e.hostInterface})`).join('\n')}

try:
  ip netns exec ${client.namespace} getent ahosts ${NAMES.chain.names[0]}
  ip netns exec ${client.namespace} curl -s http://${NAMES.www.name}/
  ip netns exec ${client.namespace} dig @${lab.dnsServers.unbound.ipv4} ${NAMES.many.name}
  nsenter --net=/run/netns/${lab.namespaces.node} bash   # the node, where the agent runs (keeps /sys/fs/bpf)
logs and configs: ${lab.directory}`);
}

function list(): void {
  const { states, invalid } = readLabStates();
  for (const state of states) {
    const owner = isProcessRunning(state.owner.pid, state.owner.startTime) ? `owner ${state.owner.pid} running` : `owner ${state.owner.pid} gone`;
    console.log(`${state.id}  ${state.kept ? 'kept' : owner}  ${state.namespaces.join(' ')}`);
  }
  for (const problem of invalid) console.log(`unreadable: ${problem}`);
}

function down(): void {
  const ids = new Set(rest);
  const targets = readLabStates().states.filter((state) => (ids.size === 0 ? state.kept : ids.has(state.id)));
  for (const id of ids) if (!targets.some((state) => state.id === id)) console.error(`no lab ${id}`);
  for (const state of targets) {
    if (!state.kept && isProcessRunning(state.owner.pid, state.owner.startTime)) {
      console.error(`lab ${state.id} belongs to running process ${state.owner.pid}; not touching it`);
      continue;
    }
    const report = teardownSync(state);
    console.log(`removed lab ${state.id}${report.problems.length > 0 ? `: ${report.problems.join('; ')}` : ''}`);
  }
}

switch (command) {
  case 'up':
    await up();
    break;
  case 'list':
    list();
    break;
  case 'down':
    down();
    break;
  case 'sweep':
    for (const report of sweepStaleLabs()) console.log(`swept ${report.id}`);
    break;
  default:
    console.error('usage: npx tsx test/lab/cli.ts up [--clients=N] | list | down [ID…] | sweep');
    process.exitCode = 2;
}
