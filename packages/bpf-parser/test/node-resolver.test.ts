// Which trusted servers are on the node (pure), and the node's own addresses as the OS lists them.
import { describe, expect, it } from 'vitest';
import { isLoopbackAddress, nodeAddresses, trustedServersOnNode } from '../src/node-resolver.js';

const server = (address: string, family: 4 | 6 = 4) => ({ family, address, port: 53 });

describe('trustedServersOnNode', () => {
  it('keeps the servers whose address is the node\'s, and loopback ones; not the others', () => {
    const servers = [server('198.18.53.2'), server('198.18.254.53'), server('127.0.0.53'), server('::1', 6), server('fd00:18::53', 6)];
    const on = trustedServersOnNode(servers, new Set(['198.18.254.53', 'fd00:18::53']));
    expect(on.map((s) => s.address)).toEqual(['198.18.254.53', '127.0.0.53', '::1', 'fd00:18::53']);
    expect(trustedServersOnNode([server('198.18.53.2')], new Set(['198.18.0.1']))).toEqual([]);
  });

  it('tells loopback servers (only the node asks them) from the others', () => {
    expect(['127.0.0.53', '::1', '0:0:0:0:0:0:0:1', '198.18.254.53', 'fd00::1'].map(isLoopbackAddress)).toEqual([true, true, true, false, false]);
  });

  it("compares IPv6 in canonical text, however the server was written", () => {
    expect(trustedServersOnNode([server('FD00:18:0:0::53', 6)], new Set(['fd00:18::53']))).toHaveLength(1);
  });
});

describe('nodeAddresses', () => {
  it('lists this namespace\'s addresses in canonical text, loopback included, without zone ids', () => {
    const addresses = nodeAddresses();
    expect(addresses.has('127.0.0.1')).toBe(true);
    for (const address of addresses) expect(address).not.toContain('%');
  });
});
