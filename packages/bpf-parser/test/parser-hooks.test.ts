// Where the tc dataplanes attach the parser (pure): the one rule nftables and ebpf both follow.
import { describe, expect, it } from 'vitest';
import { parserHooks, type ParserHook } from '../src/parser-hooks.js';

const server = (address: string, family: 4 | 6 = 4) => ({ family, address, port: 53 });
const upstream = server('198.18.53.2');
const interfaces = ['lo', 'uplink0', 'veth-web', 'veth-batch'];
const endpointInterfaces = new Set(['veth-web', 'veth-batch']);
const node = new Set(['127.0.0.1', '198.18.0.1', '198.18.254.53']);

function hooksOf(trusted: Array<ReturnType<typeof server>>, listed?: string[]): string[] {
  const plan = parserHooks({
    dns: { trustedServers: trusted, ...(listed !== undefined ? { interfaces: listed } : {}) },
    interfaces,
    endpointInterfaces,
    addresses: node,
  });
  return plan.hooks.map((h: ParserHook) => `${h.direction} ${h.ifname}`).sort();
}

describe('parserHooks', () => {
  it('watches every interface but lo by default: ingress everywhere, egress only where the node sends DNS', () => {
    expect(hooksOf([upstream])).toEqual(['egress uplink0', 'ingress uplink0', 'ingress veth-batch', 'ingress veth-web']);
  });

  it("adds the endpoints' egress and lo's ingress for a resolver on one of the node's addresses", () => {
    expect(hooksOf([upstream, server('198.18.254.53')])).toEqual([
      'egress uplink0',
      'egress veth-batch',
      'egress veth-web',
      'ingress lo',
      'ingress uplink0',
      'ingress veth-batch',
      'ingress veth-web',
    ]);
  });

  it("adds only lo's ingress for a loopback resolver (it answers no workload)", () => {
    expect(hooksOf([server('127.0.0.53')])).toEqual(['egress uplink0', 'ingress lo', 'ingress uplink0', 'ingress veth-batch', 'ingress veth-web']);
  });

  it('keeps to an explicit list, and still watches lo for a resolver on the node (its answers travel nowhere else)', () => {
    expect(hooksOf([upstream], ['veth-web'])).toEqual(['ingress veth-web']);
    expect(hooksOf([server('127.0.0.53')], ['veth-web'])).toEqual(['ingress lo', 'ingress veth-web']);
    expect(hooksOf([server('198.18.254.53')], ['veth-web'])).toEqual(['egress veth-web', 'ingress lo', 'ingress veth-web']);
  });

  it("puts lo, when listed, on ingress only: every packet on lo passes its egress and then its ingress, one parse", () => {
    expect(hooksOf([upstream], ['lo', 'uplink0'])).toEqual(['egress uplink0', 'ingress lo', 'ingress uplink0']);
    expect(hooksOf([server('127.0.0.53')], ['lo'])).toEqual(['ingress lo']);
  });

  it('reports listed interfaces that are not there, attaches nothing for them, and counts the servers on the node', () => {
    const plan = parserHooks({
      dns: { trustedServers: [upstream, server('127.0.0.53'), server('198.18.254.53')], interfaces: ['veth-gone', 'uplink0', 'uplink0'] },
      interfaces,
      endpointInterfaces,
      addresses: node,
    });
    expect(plan.missing).toEqual(['veth-gone']);
    expect(plan.localResolvers).toBe(2);
    expect(plan.hooks.map((h) => `${h.direction} ${h.ifname}`)).toEqual(['ingress uplink0', 'egress uplink0', 'ingress lo']);
  });

  it('attaches nothing on lo when the namespace has none', () => {
    const plan = parserHooks({ dns: { trustedServers: [server('127.0.0.53')] }, interfaces: ['uplink0'], endpointInterfaces, addresses: node });
    expect(plan.hooks).toEqual([{ ifname: 'uplink0', direction: 'ingress' }, { ifname: 'uplink0', direction: 'egress' }]);
  });
});
