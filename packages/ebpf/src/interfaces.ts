// The network interfaces of this process's network namespace, by name → ifindex (sysfs).
import { readFileSync, readdirSync } from 'node:fs';

export type InterfaceIndex = ReadonlyMap<string, number>;

/** Reads /sys/class/net: the namespace's interfaces and their indexes. */
export function listInterfaces(sysClassNet = '/sys/class/net'): InterfaceIndex {
  const out = new Map<string, number>();
  for (const name of readdirSync(sysClassNet)) {
    try {
      out.set(name, Number(readFileSync(`${sysClassNet}/${name}/ifindex`, 'utf8').trim()));
    } catch {
      // Gone between the listing and the read: not an interface any more.
    }
  }
  return out;
}
