// Test harness: the real parser loaded under a throw-away pin root, packets run through
// BPF_PROG_TEST_RUN on either entry point, and what each run wrote read back from the ring
// buffer. Used by the kernel tests and the benchmark.
import { randomBytes } from 'node:crypto';
import { parseTransport, type DnsSettings, type DomainSet, type IpFamily } from '@dnsplane/core';
import {
  DnsParserProgram,
  RingBufferConsumer,
  decodeEvents,
  encodeMemberKey,
  ktimeNs,
  nameHash,
  querySetOf,
  type LearnedEvent,
  type ParserCounterValues,
} from '../src/index.js';

export type EntryPoint = 'socket' | 'tc';

/** One membership write as the kernel reported it. */
export interface KernelWrite {
  readonly setId: number;
  readonly family: IpFamily;
  readonly address: string;
  /** Seconds from the start of the run to the expiry (fractional). */
  readonly secondsLeft: number;
  readonly name: string;
}

export interface KernelRun {
  readonly retval: number;
  readonly writes: KernelWrite[];
}

const ETH_SRC = Buffer.from('020000000001', 'hex');
const ETH_DST = Buffer.from('020000000002', 'hex');

/** An Ethernet frame around an L3 packet (the socket-filter test run strips it again). */
export function ethernetFrame(l3: Uint8Array): Buffer {
  const version = (l3[0] ?? 0) >> 4;
  const type = Buffer.alloc(2);
  type.writeUInt16BE(version === 6 ? 0x86dd : 0x0800);
  return Buffer.concat([ETH_DST, ETH_SRC, type, l3]);
}

/**
 * The dnsp_queries set the parser files a query packet (L3, UDP or TCP with its length prefix)
 * under: the key of its question name, source address and port, and transaction id, mixed as
 * query_set_of does. Undefined when the name is not plain labels (compressed, cut) or the
 * packet is not UDP/TCP: callers clear every set then.
 */
export function querySetOfPacket(l3: Uint8Array): number | undefined {
  const transport = parseTransport(l3);
  if (transport === undefined) return undefined;
  const dns = Buffer.from(transport.tcp ? transport.payload.subarray(2) : transport.payload); // after TCP's length prefix
  if (dns.length < 12) return undefined;
  const labels: string[] = [];
  for (let at = 12; ; ) {
    const len = dns[at];
    if (len === undefined || len & 0xc0 || at + 1 + len > dns.length) return undefined;
    if (len === 0) break;
    labels.push(dns.toString('latin1', at + 1, at + 1 + len));
    at += 1 + len;
  }
  return querySetOf({ qnameHash: nameHash(labels), family: transport.family, address: transport.src, port: transport.sport, txid: dns.readUInt16BE(0) });
}

// struct __sk_buff offsets of a tc test run's context
const SKB_SIZE = 192;
const SKB_MARK = 8;
const SKB_INGRESS_IFINDEX = 36;
const SKB_IFINDEX = 40;

/**
 * A tc run of the parser as on a hook: `ifindex` the interface, `ingressIfindex` where the packet
 * came in (0: this host sent it). Returns skb->mark after the run.
 */
export function tcRun(program: DnsParserProgram, packet: Uint8Array, ifindex: number, ingressIfindex: number): number {
  const ctx = Buffer.alloc(SKB_SIZE);
  ctx.writeUInt32LE(ingressIfindex, SKB_INGRESS_IFINDEX);
  ctx.writeUInt32LE(ifindex, SKB_IFINDEX);
  const result = program.tcClassifier.testRun({ data: ethernetFrame(packet), ctx });
  if (result.ctx === undefined) throw new Error('the test run returned no context');
  return Buffer.from(result.ctx).readUInt32LE(SKB_MARK);
}

export function testPinRoot(): string {
  return `/sys/fs/bpf/dnsplane-test-${randomBytes(6).toString('hex')}`;
}

export class KernelParserHarness {
  readonly program: DnsParserProgram;
  readonly #events: LearnedEvent[] = [];
  readonly #consumer: RingBufferConsumer;
  /** While timing, records are drained without decoding (no garbage for the GC to chase). */
  #discard = false;

  private constructor(
    program: DnsParserProgram,
    readonly pinRoot: string,
  ) {
    this.program = program;
    this.#consumer = new RingBufferConsumer(program.map('events'), (record) => {
      if (!this.#discard) this.#events.push(...decodeEvents(record));
    });
    this.#consumer.unref();
  }

  static open(dns: DnsSettings, domainSets: readonly DomainSet[], options: { objectPath?: string } = {}): KernelParserHarness {
    const pinRoot = testPinRoot();
    let program: DnsParserProgram | undefined;
    try {
      program = DnsParserProgram.load({ pinRoot, ...(options.objectPath === undefined ? {} : { objectPath: options.objectPath }) });
      program.configure(dns);
      program.setDomainSets(domainSets);
      return new KernelParserHarness(program, pinRoot);
    } catch (error) {
      program?.close();
      DnsParserProgram.removePins(pinRoot);
      throw error;
    }
  }

  /** Runs one L3 packet through an entry point; returns what it wrote. */
  run(entry: EntryPoint, l3Packet: Uint8Array, repeat = 1): KernelRun {
    this.#consumer.consume();
    this.#events.length = 0;
    const program = entry === 'socket' ? this.program.socketFilter : this.program.tcClassifier;
    const before = ktimeNs();
    const result = program.testRun({ data: ethernetFrame(l3Packet), repeat });
    this.#consumer.consume();
    const writes = this.#events.map((e) => ({
      setId: e.setId,
      family: e.family,
      address: e.address,
      secondsLeft: Number(e.expiryNs - before) / 1e9,
      name: e.name,
    }));
    this.#events.length = 0;
    return { retval: result.retval, writes };
  }

  /** Average ns per run of `repeat` runs. */
  time(entry: EntryPoint, l3Packet: Uint8Array, repeat: number): number {
    const program = entry === 'socket' ? this.program.socketFilter : this.program.tcClassifier;
    const result = program.testRun({ data: ethernetFrame(l3Packet), repeat });
    this.#discard = true;
    try {
      this.#consumer.consume();
    } finally {
      this.#discard = false;
    }
    this.#events.length = 0;
    return result.durationNs;
  }

  /**
   * Forgets what these query packets left in dnsp_queries: their sets, or every set when one
   * cannot be told (querySetOfPacket).
   */
  forgetQueries(queries: readonly Uint8Array[]): void {
    const sets = queries.map(querySetOfPacket);
    if (sets.every((set) => set !== undefined)) this.program.clearQuerySets(sets as number[]);
    else this.program.clearQueries();
  }

  /** Empties dnsp_assembly: a TCP message held for more segments (or a datagram for more
   * fragments) would otherwise meet the next exchange that happens to use the same flow. */
  forgetAssemblies(): void {
    this.program.clearAssemblies();
  }

  /** Removes the membership entries of these writes (so the next run starts fresh). */
  forget(writes: readonly KernelWrite[]): void {
    for (const w of writes) {
      this.program.map(w.family === 4 ? 'members4' : 'members6').delete(encodeMemberKey(w));
    }
  }

  counters(): ParserCounterValues {
    return this.program.counters();
  }

  close(): void {
    try {
      this.#consumer.close();
      this.program.close();
    } finally {
      DnsParserProgram.removePins(this.pinRoot);
    }
  }
}
