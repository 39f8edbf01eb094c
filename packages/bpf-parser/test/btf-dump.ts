// Reads `bpftool btf dump file X.o format raw` into types a test can query: struct sizes,
// member offsets and sizes, and the key/value types of the maps the object defines.
import { execFileSync } from 'node:child_process';

interface BtfType {
  readonly id: number;
  readonly kind: string;
  readonly name: string;
  readonly attrs: Readonly<Record<string, string>>;
  readonly members: readonly { name: string; typeId: number; bitsOffset: number }[];
}

export interface BtfMember {
  readonly offset: number;
  readonly size: number;
}

export class BtfDump {
  readonly #types = new Map<number, BtfType>();

  constructor(text: string) {
    let current: { id: number; kind: string; name: string; attrs: Record<string, string>; members: BtfType['members'][number][] } | undefined;
    for (const line of text.split('\n')) {
      const head = /^\[(\d+)\] (\w+) '([^']*)'(.*)$/.exec(line);
      if (head) {
        const attrs: Record<string, string> = {};
        for (const m of (head[4] ?? '').matchAll(/(\w+)=(\S+)/g)) attrs[m[1] ?? ''] = (m[2] ?? '').replace(/,$/, '');
        current = { id: Number(head[1]), kind: head[2] ?? '', name: head[3] ?? '', attrs, members: [] };
        this.#types.set(current.id, current);
        continue;
      }
      const member = /^\s+'([^']*)' type_id=(\d+) bits_offset=(\d+)/.exec(line);
      if (member && current) current.members.push({ name: member[1] ?? '', typeId: Number(member[2]), bitsOffset: Number(member[3]) });
    }
  }

  static ofObject(path: string): BtfDump {
    return new BtfDump(execFileSync('bpftool', ['btf', 'dump', 'file', path, 'format', 'raw'], { encoding: 'utf8' }));
  }

  #type(id: number): BtfType {
    const t = this.#types.get(id);
    if (t === undefined) throw new Error(`BTF has no type ${id}`);
    return t;
  }

  /** Size in bytes of a type (typedefs, qualifiers and arrays resolved). */
  sizeOf(id: number): number {
    const t = this.#type(id);
    switch (t.kind) {
      case 'INT':
      case 'STRUCT':
      case 'UNION':
      case 'ENUM':
        return Number(t.attrs.size);
      case 'TYPEDEF':
      case 'CONST':
      case 'VOLATILE':
        return this.sizeOf(Number(t.attrs.type_id));
      case 'ARRAY':
        return this.sizeOf(Number(t.attrs.type_id)) * Number(t.attrs.nr_elems);
      case 'PTR':
        return 8;
      default:
        throw new Error(`size of BTF kind ${t.kind}`);
    }
  }

  /** The struct named `name`: its size and members (byte offset, byte size). */
  struct(name: string): { size: number; members: Record<string, BtfMember> } | undefined {
    const t = [...this.#types.values()].find((x) => x.kind === 'STRUCT' && x.name === name);
    if (t === undefined) return undefined;
    const members: Record<string, BtfMember> = {};
    for (const m of t.members) members[m.name] = { offset: m.bitsOffset / 8, size: this.sizeOf(m.typeId) };
    return { size: Number(t.attrs.size), members };
  }

  #nameThrough(id: number): string {
    const t = this.#type(id);
    if (t.kind === 'TYPEDEF' || t.kind === 'CONST' || t.kind === 'VOLATILE' || t.kind === 'PTR') {
      return t.kind === 'TYPEDEF' ? t.name : this.#nameThrough(Number(t.attrs.type_id));
    }
    return t.name;
  }

  /** The key and value type names of the BTF-defined map `name` (typedef names kept, e.g. __u64). */
  mapTypes(name: string): { key?: string; value?: string; maxEntries?: number } {
    const v = [...this.#types.values()].find((x) => x.kind === 'VAR' && x.name === name);
    if (v === undefined) throw new Error(`BTF has no map ${name}`);
    const def = this.#type(Number(v.attrs.type_id));
    const out: { key?: string; value?: string; maxEntries?: number } = {};
    for (const m of def.members) {
      if (m.name === 'key') out.key = this.#nameThrough(m.typeId);
      if (m.name === 'value') out.value = this.#nameThrough(m.typeId);
      if (m.name === 'max_entries') {
        // __uint(max_entries, N) is int (*)[N]
        const arr = this.#type(Number(this.#type(m.typeId).attrs.type_id));
        out.maxEntries = Number(arr.attrs.nr_elems);
      }
    }
    return out;
  }
}
