// The lab for traffic tests: a router namespace between a client and a server namespace,
// each behind a veth pair (198.18.1.0/24 + fd00:1::/64 client side, 198.18.2.0/24 +
// fd00:2::/64 server side), TCP servers and connects. 198.18.0.0/15 and fd00::/8 only.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createNetns, inNetns, sh } from './netns.js';

export const SERVER = '198.18.2.2';

export interface Lab {
  readonly router: string;
  readonly client: string;
  readonly server: string;
}

async function link(lab: Lab, peerNs: string, routerIf: string, subnet: 1 | 2): Promise<void> {
  await sh('ip', ['link', 'add', routerIf, 'netns', lab.router, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', peerNs]);
  await inNetns(lab.router, 'ip', ['addr', 'add', `198.18.${subnet}.1/24`, 'dev', routerIf]);
  await inNetns(lab.router, 'ip', ['addr', 'add', `fd00:${subnet}::1/64`, 'dev', routerIf, 'nodad']);
  await inNetns(lab.router, 'ip', ['link', 'set', routerIf, 'up']);
  await inNetns(peerNs, 'ip', ['addr', 'add', `198.18.${subnet}.2/24`, 'dev', 'eth0']);
  await inNetns(peerNs, 'ip', ['addr', 'add', `fd00:${subnet}::2/64`, 'dev', 'eth0', 'nodad']);
  await inNetns(peerNs, 'ip', ['link', 'set', 'eth0', 'up']);
  await inNetns(peerNs, 'ip', ['route', 'add', 'default', 'via', `198.18.${subnet}.1`]);
  await inNetns(peerNs, 'ip', ['-6', 'route', 'add', 'default', 'via', `fd00:${subnet}::1`]);
}

/** Router between a client (198.18.1.2, fd00:1::2) and a server (198.18.2.2, fd00:2::2). */
export async function createLab(names: string[]): Promise<Lab> {
  const lab: Lab = { router: await createNetns('dnsplane-iptr'), client: await createNetns('dnsplane-iptc'), server: await createNetns('dnsplane-ipts') };
  names.push(lab.router, lab.client, lab.server);
  await link(lab, lab.client, 'dp-c', 1);
  await link(lab, lab.server, 'dp-s', 2);
  await inNetns(lab.router, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
  // Ready when the client reaches the server over both families (links up, neighbours
  // found): a connect to a closed port is refused by the server's kernel.
  for (const target of [SERVER, 'fd00:2::2']) await waitForReach(lab.client, target);
  return lab;
}

async function waitForReach(netns: string, host: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if ((await connect(netns, 9, host)) === 'refused') return;
  }
  throw new Error(`${host} unreachable from ${netns} within 15 s: the lab did not come up`);
}

/** A TCP server on the given ports in `netns`; resolves once every port listens. */
export function startServer(netns: string, ports: readonly number[], hosts: readonly string[] = [SERVER]): Promise<ChildProcess> {
  const script = `const net=require('net');let n=0;for(const h of ${JSON.stringify(hosts)})for(const p of ${JSON.stringify(ports)}){net.createServer(s=>{s.on('error',()=>{});s.end('ok')}).listen(p,h,()=>{if(++n===${ports.length * hosts.length})console.log('listening')})}`;
  const child = spawn('nsenter', [`--net=/run/netns/${netns}`, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    const deadline = setTimeout(() => reject(new Error('server did not listen within 10 s')), 10_000);
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      if (chunk.includes('listening')) {
        clearTimeout(deadline);
        resolve(child);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(deadline);
      reject(new Error(`server exited (${code})`));
    });
  });
}

export type Outcome = 'connected' | 'refused' | 'timeout';

/** One TCP connect from `netns`: connected, refused (RST) or timeout (dropped), within 3 s. */
export async function connect(netns: string, target: number, host: string = SERVER): Promise<Outcome> {
  const script = `const s=require('net').connect(${target},'${host}');const t=setTimeout(()=>{console.log('timeout');process.exit(0)},3000);s.on('connect',()=>{console.log('connected');process.exit(0)});s.on('error',e=>{console.log(e.code==='ECONNREFUSED'?'refused':'error:'+e.code);process.exit(0)})`;
  const out = (await inNetns(netns, process.execPath, ['-e', script])).trim();
  if (out !== 'connected' && out !== 'refused' && out !== 'timeout') throw new Error(`unexpected connect outcome ${out}`);
  return out;
}

