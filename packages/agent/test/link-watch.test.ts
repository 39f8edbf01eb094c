import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { linkChanges, readSysfsLinks, sameLinks } from '../src/link-watch.js';
import { addsRuleElsewhere, changesForwardGate, deletesIptablesNftObject, deletesTable, deletesTcFilter, onPath } from '../src/removal-watch.js';
import { waitFor } from './helpers.js';

let root: string | undefined;
afterEach(() => {
  if (root !== undefined) rmSync(root, { recursive: true, force: true });
  root = undefined;
});

describe('interface snapshots', () => {
  it('reads name → ifindex from a sysfs-shaped folder, skipping entries without a readable index', () => {
    root = mkdtempSync(join(tmpdir(), 'dnsplane-links-'));
    for (const [name, index] of [['lo', '1\n'], ['web0', '7\n']] as const) {
      mkdirSync(join(root, name));
      writeFileSync(join(root, name, 'ifindex'), index);
    }
    mkdirSync(join(root, 'half-gone'));
    expect(readSysfsLinks(root)).toEqual(new Map([['lo', 1], ['web0', 7]]));
    expect(readSysfsLinks(join(root, 'missing'))).toEqual(new Map());
  });

  it('compares by name and index, and names what changed', () => {
    const before = new Map([['lo', 1], ['web0', 7], ['old0', 8]]);
    const after = new Map([['lo', 1], ['web0', 11], ['new0', 12]]);
    expect(sameLinks(before, new Map(before))).toBe(true);
    expect(sameLinks(before, after)).toBe(false);
    expect(sameLinks(new Map([['a', 1]]), new Map([['b', 1]]))).toBe(false);
    expect(linkChanges(before, after)).toEqual({ added: ['new0', 'web0'], removed: ['old0', 'web0'] });
  });
});

describe('the ip monitor child', () => {
  it('ends when the process that started it is SIGKILLed (no monitor outlives the agent)', async () => {
    const source = new URL('../src/link-watch.ts', import.meta.url).pathname;
    // A stand-in agent: starts the watch, prints the monitor's pid, and idles until killed.
    const owner = spawn(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', `
        import { readdirSync, readFileSync } from 'node:fs';
        const { ipMonitorLinkWatch } = await import(${JSON.stringify(source)});
        ipMonitorLinkWatch(() => {}, (error) => { console.error(error.message); process.exit(3); });
        const child = () => readdirSync('/proc').filter((p) => /^\\d+$/.test(p)).find((p) => {
          try { return readFileSync('/proc/' + p + '/stat', 'utf8').split(') ')[1].split(' ')[1] === String(process.pid) && readFileSync('/proc/' + p + '/comm', 'utf8').trim() === 'ip'; } catch { return false; }
        });
        const poll = setInterval(() => { const pid = child(); if (pid) { clearInterval(poll); console.log(pid); } }, 20);
        setInterval(() => {}, 1000);
      `],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let monitorPid: number | undefined;
    try {
      monitorPid = await new Promise<number>((resolve, reject) => {
        let out = '';
        let err = '';
        owner.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
        owner.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString();
          if (out.includes('\n')) resolve(Number(out.trim()));
        });
        owner.on('exit', (code) => reject(new Error(`stand-in agent exited (${code}): ${err}`)));
        setTimeout(() => reject(new Error(`no ip monitor child within 10 s: ${err}`)), 10_000).unref();
      });
      expect(existsSync(`/proc/${monitorPid}`)).toBe(true);
      owner.kill('SIGKILL');
      const pid = monitorPid;
      await waitFor(() => !existsSync(`/proc/${pid}`) || isZombie(pid), 'the ip monitor child to end');
    } finally {
      owner.kill('SIGKILL');
      // On failure the orphaned monitor is still ours to end (by its pid, never by name).
      if (monitorPid !== undefined && existsSync(`/proc/${monitorPid}`)) process.kill(monitorPid, 'SIGTERM');
    }
  }, 20_000);
});

function isZombie(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.startsWith('Z');
  } catch {
    return true;
  }
}

describe('nft monitor lines', () => {
  it('reads a deletion of the table inet <ours> and nothing else', () => {
    expect(deletesTable('delete table inet dnsplane', 'dnsplane')).toBe(true);
    expect(deletesTable('delete table inet dnsplane\n', 'dnsplane')).toBe(true);
    expect(deletesTable('delete table inet dnsplane_other', 'dnsplane')).toBe(false);
    expect(deletesTable('delete table ip dnsplane', 'dnsplane')).toBe(false);
    expect(deletesTable('add table inet dnsplane', 'dnsplane')).toBe(false);
    expect(deletesTable('delete table inet other', 'dnsplane')).toBe(false);
  });

  it('reads another table\'s forward or nat chain coming or changing, and any chain of another table going (untrackDns auto)', () => {
    expect(changesForwardGate('add chain ip filter FORWARD { type filter hook forward priority filter; policy drop; }', 'dnsplane')).toBe(true);
    expect(changesForwardGate('delete chain ip filter FORWARD', 'dnsplane')).toBe(true);
    expect(changesForwardGate('add chain ip filter helper', 'dnsplane')).toBe(false);
    expect(changesForwardGate('add chain ip nat POSTROUTING { type nat hook postrouting priority srcnat; policy accept; }', 'dnsplane')).toBe(true);
    expect(changesForwardGate('add chain ip mangle PREROUTING { type filter hook prerouting priority mangle; policy accept; }', 'dnsplane')).toBe(false);
    expect(changesForwardGate('add chain inet dnsplane forward_egress { type filter hook forward priority filter; policy accept; }', 'dnsplane')).toBe(false);
    expect(changesForwardGate('delete chain inet dnsplane pol_web', 'dnsplane')).toBe(false);
    expect(changesForwardGate('add chain bridge filter forward { type filter hook forward priority filter; policy drop; }', 'dnsplane')).toBe(false);
  });

  it('reads a rule added to another table (an empty chain may have become a gate), not one of ours', () => {
    expect(addsRuleElsewhere('add rule ip filter FORWARD ct state related,established counter packets 0 bytes 0 accept', 'dnsplane')).toBe(true);
    expect(addsRuleElsewhere('add rule inet fw forward drop', 'dnsplane')).toBe(true);
    expect(addsRuleElsewhere('add rule inet dnsplane pol_web_egress ip daddr 198.18.53.2 udp dport 53 accept', 'dnsplane')).toBe(false);
    expect(addsRuleElsewhere('add rule bridge filter forward drop', 'dnsplane')).toBe(false);
    expect(addsRuleElsewhere('delete rule ip filter FORWARD handle 4', 'dnsplane')).toBe(false);
  });
});

describe('tc monitor lines', () => {
  // As `tc monitor` printed them on this kernel (iproute2 6.1).
  const ours = new Set([0xd4, 0xd5]);
  it('reads a deletion of a filter at one of our priorities, on either hook', () => {
    expect(deletesTcFilter('deleted filter dev wl1 ingress protocol all pref 213 bpf chain 0 ', ours)).toBe(true);
    expect(deletesTcFilter('deleted filter dev wl1 egress protocol all pref 212 bpf chain 0 ', ours)).toBe(true);
    expect(deletesTcFilter('deleted filter dev wl1 ingress protocol all pref 209 bpf chain 0 ', ours)).toBe(false);
    expect(deletesTcFilter('deleted filter dev wl1 ingress protocol all pref 2130 bpf chain 0 ', ours)).toBe(false);
    expect(deletesTcFilter("added filter dev wl1 ingress protocol all pref 213 bpf chain 0 handle 0xd15 not_in_hw", ours)).toBe(false);
  });
  it('reads a deleted clsact qdisc (it takes every filter on it), and not a chain or another qdisc', () => {
    expect(deletesTcFilter('deleted qdisc clsact ffff: dev wl1 parent ffff:fff1 refcnt 0 ', ours)).toBe(true);
    expect(deletesTcFilter('qdisc clsact ffff: dev wl1 parent ffff:fff1 ', ours)).toBe(false);
    expect(deletesTcFilter('deleted chain dev wl1 parent ffff: chain 0 ', ours)).toBe(false);
    expect(deletesTcFilter('deleted qdisc fq_codel 0: dev wl1 root refcnt 2 ', ours)).toBe(false);
  });
});

describe('nft monitor destroy lines for iptables-nft', () => {
  // As `nft monitor destroy` printed them for `iptables-nft -F FORWARD`, `-X` and `nft flush ruleset`.
  it('reads deletions of rules and chains that hold our jumps or rules, and of a filter table', () => {
    expect(deletesIptablesNftObject('delete rule ip filter FORWARD handle 3')).toBe(true);
    expect(deletesIptablesNftObject('delete rule ip6 filter OUTPUT handle 12')).toBe(true);
    expect(deletesIptablesNftObject('delete rule ip filter DNSPLANE-FORWARD handle 4')).toBe(true);
    expect(deletesIptablesNftObject('delete chain ip filter DNSPLANE-FORWARD')).toBe(true);
    expect(deletesIptablesNftObject('delete chain ip filter FORWARD')).toBe(true);
    expect(deletesIptablesNftObject('delete table ip filter')).toBe(true);
    expect(deletesIptablesNftObject('delete table ip6 filter')).toBe(true);
  });
  it('ignores other tables, other chains and additions', () => {
    expect(deletesIptablesNftObject('delete rule ip filter DOCKER-USER handle 3')).toBe(false);
    expect(deletesIptablesNftObject('delete rule ip nat POSTROUTING handle 3')).toBe(false);
    expect(deletesIptablesNftObject('delete table inet dnsplane')).toBe(false);
    expect(deletesIptablesNftObject('delete table ip filterx')).toBe(false);
    expect(deletesIptablesNftObject('add rule ip filter FORWARD counter packets 0 bytes 0 jump DNSPLANE-FORWARD')).toBe(false);
    expect(deletesIptablesNftObject('delete element inet dnsplane ds_1_v4 { 198.18.20.1 }')).toBe(false);
  });
});

describe('finding a tool on PATH', () => {
  it('finds an executable in one of the folders, and nothing in none', () => {
    root = mkdtempSync(join(tmpdir(), 'dnsplane-path-'));
    mkdirSync(join(root, 'bin'));
    writeFileSync(join(root, 'bin', 'nft'), '#!/bin/sh\n', { mode: 0o755 });
    writeFileSync(join(root, 'bin', 'tc'), 'not executable', { mode: 0o644 });
    expect(onPath('nft', `/nonexistent:${join(root, 'bin')}`)).toBe(true);
    expect(onPath('tc', join(root, 'bin'))).toBe(false);
    expect(onPath('nft', '/nonexistent')).toBe(false);
    expect(onPath('nft', undefined)).toBe(false);
    expect(onPath('nft', '')).toBe(false);
  });
});
