// The loaded parser on the real kernel: pins under a throw-away pin root and their reuse,
// verdicts (never drop, never change the packet), configuration and domain-table
// replacement, membership export/import, expiry, counters, and learned events delivered on
// the Node event loop.
import { execFileSync } from 'node:child_process';
import { appendFileSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildDnsPacket, isNotFound, parseDomainPattern, type DnsSettings, type DomainSet, type LearnedEntry } from '@dnsplane/core';
import { afterEach, describe, expect, it } from 'vitest';
import {
  BpfMap,
  BpfObjectSpec,
  DnsParserProgram,
  LearnedEventConsumer,
  buildDomainTable,
  encodeDomainTable,
  MAP_NAMES,
  PARSER_OBJECT_PATH,
  QUERY_WAYS,
  nameHash,
  querySetOf,
  ktimeNs,
  parserObjectHash,
  parserProgramPinName,
  type ParserProgramOptions,
} from '../src/index.js';
import { CLIENT4, SERVER4 } from './dns-generator.js';
import { ethernetFrame, tcRun, testPinRoot } from './kernel-harness.js';

const dns: DnsSettings = { trustedServers: [{ family: 4, address: SERVER4, port: 53 }], minTTL: 30, extraTTL: 10, maxAddressesPerName: 16 };
const sets: DomainSet[] = [{ id: 5, name: 'ds_5', patterns: [parseDomainPattern('*.example.com', 'calico')] }];

function exchange(id: number, name: string, answers: { address: string; ttl: number }[], client = CLIENT4): { query: Uint8Array; response: Uint8Array } {
  const labels = name.split('.');
  const q = Buffer.alloc(12);
  q.writeUInt16BE(id, 0);
  q.writeUInt16BE(0x0100, 2);
  q.writeUInt16BE(1, 4);
  const qname = Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0, 0, 1, 0, 1])]);
  const r = Buffer.from(q);
  r.writeUInt16BE(0x8180, 2);
  r.writeUInt16BE(answers.length, 6);
  const records = answers.map((a) => {
    const rec = Buffer.alloc(16);
    rec.writeUInt16BE(0xc00c, 0);
    rec.writeUInt16BE(1, 2);
    rec.writeUInt16BE(1, 4);
    rec.writeUInt32BE(a.ttl, 6);
    rec.writeUInt16BE(4, 10);
    Buffer.from(a.address.split('.').map(Number)).copy(rec, 12);
    return rec;
  });
  const packet = (fromServer: boolean, payload: Uint8Array): Uint8Array =>
    buildDnsPacket({ family: 4, src: fromServer ? SERVER4 : client, dst: fromServer ? client : SERVER4, sport: fromServer ? 53 : 40000, dport: fromServer ? 40000 : 53, transport: 'udp', payload });
  return { query: packet(false, Buffer.concat([q, qname])), response: packet(true, Buffer.concat([r, qname, ...records])) };
}

const opened: { program: DnsParserProgram; pinRoot: string }[] = [];
function open(pinRoot = testPinRoot(), options: Omit<ParserProgramOptions, 'pinRoot'> = {}): DnsParserProgram {
  const program = DnsParserProgram.load({ pinRoot, ...options });
  opened.push({ program, pinRoot });
  return program;
}

/** Pin roots a test made itself before any load. */
const madePinRoots: string[] = [];

afterEach(() => {
  for (const { program, pinRoot } of opened.splice(0)) {
    program.close();
    DnsParserProgram.removePins(pinRoot);
  }
  for (const pinRoot of madePinRoots.splice(0)) DnsParserProgram.removePins(pinRoot);
});

describe('DnsParserProgram', () => {
  it('pins its maps under the pin root and a second load reuses them', () => {
    const pinRoot = testPinRoot();
    const first = open(pinRoot);
    for (const name of Object.values(MAP_NAMES)) expect(existsSync(`${pinRoot}/${name}`), name).toBe(true);
    first.configure(dns);
    first.setDomainSets(sets);
    const second = open(pinRoot);
    const x = exchange(1, 'www.example.com', [{ address: '198.18.9.1', ttl: 100 }]);
    first.socketFilter.testRun({ data: ethernetFrame(x.query) });
    second.tcClassifier.testRun({ data: ethernetFrame(x.response) });
    expect(first.membership().map((m) => `${m.setId} ${m.address}`)).toEqual(['5 198.18.9.1']);
    const paths = first.pinPrograms(pinRoot);
    expect(existsSync(paths.socketFilter) && existsSync(paths.tcClassifier)).toBe(true);
  });

  it('verifies each entry point within a budget of 215,000 processed instructions', () => {
    // The verifier's work is the load time, and the load decides the agent's cold start when
    // the machine is slow: ~111,000 since two loop shapes were changed (~598,000 before, 1.6-2.6 s
    // to load both entries); the tc entry 192,758 with IP fragments, 199,336 with TCP segments
    // (the socket filter 136,755). A change that defeats state pruning again fails here, not in a
    // benchmark.
    const program = open();
    for (const entry of [program.socketFilter, program.tcClassifier]) {
      expect(entry.verifiedInstructions, entry.name).toBeGreaterThan(1_000);
      expect(entry.verifiedInstructions, entry.name).toBeLessThan(215_000);
    }
  });

  it('never drops or changes a packet: the socket filter returns its length, tc TC_ACT_UNSPEC', () => {
    const program = open();
    program.configure(dns);
    program.setDomainSets(sets);
    const x = exchange(2, 'a.example.com', [{ address: '198.18.9.2', ttl: 5 }]);
    for (const packet of [x.query, x.response]) {
      const frame = ethernetFrame(packet);
      const sock = program.socketFilter.testRun({ data: frame });
      expect(sock.retval).toBe(packet.length);
      // (the socket-filter test run gives the Ethernet header back zeroed; the packet is from byte 14)
      expect(sock.data.subarray(14).toString('hex')).toBe(frame.subarray(14).toString('hex'));
      const tc = program.tcClassifier.testRun({ data: frame });
      expect(tc.retval | 0).toBe(-1);
      expect(tc.data.toString('hex')).toBe(frame.toString('hex'));
    }
  });

  it('learns with expiry max(ttl, minTTL) + extraTTL, refreshes to the later expiry, and counts', () => {
    const program = open();
    program.configure(dns);
    program.setDomainSets(sets);
    const long = exchange(3, 'b.example.com', [{ address: '198.18.9.3', ttl: 300 }]);
    const short = exchange(4, 'b.example.com', [{ address: '198.18.9.3', ttl: 1 }]);
    const before = ktimeNs();
    for (const x of [long, short]) {
      program.tcClassifier.testRun({ data: ethernetFrame(x.query) });
      program.tcClassifier.testRun({ data: ethernetFrame(x.response) });
    }
    const [entry] = program.membership();
    const left = Number((entry?.expiryNs ?? 0n) - before) / 1e9;
    expect(left).toBeGreaterThanOrEqual(310);
    expect(left).toBeLessThan(311);
    const counters = program.counters();
    expect(counters).toMatchObject({ queries: 2, parsed: 2, learned: 2 });
  });

  it('replaces the domain table: a set removed from the config teaches nothing any more', () => {
    const program = open();
    program.configure(dns);
    program.setDomainSets(sets);
    program.setDomainSets([{ id: 6, name: 'ds_6', patterns: [parseDomainPattern('other.test', 'calico')] }]);
    expect(program.liveDomainKeys()).toHaveLength(1);
    const x = exchange(5, 'c.example.com', [{ address: '198.18.9.4', ttl: 100 }]);
    program.socketFilter.testRun({ data: ethernetFrame(x.query) });
    program.socketFilter.testRun({ data: ethernetFrame(x.response) });
    expect(program.membership()).toEqual([]);
    expect(program.counters().parsed).toBe(1);
  });

  it('writes the domain table from encodings made ahead, for the generation it writes next', () => {
    const program = open();
    program.configure(dns);
    const table = buildDomainTable(sets);
    const next = program.nextTableGeneration();
    // Only the other generation's encoding: not used, the table is encoded for `next`.
    program.setDomainSets(sets, { table, encoded: [encodeDomainTable(table, next === 0 ? 1 : 0)] });
    expect(program.nextTableGeneration()).toBe(next === 0 ? 1 : 0);
    const x = exchange(7, 'b.example.com', [{ address: '198.18.9.7', ttl: 100 }]);
    program.tcClassifier.testRun({ data: ethernetFrame(x.query) });
    program.tcClassifier.testRun({ data: ethernetFrame(x.response) });
    expect(program.membership().map((m) => m.address)).toEqual(['198.18.9.7']);
    // Both made ahead: the table switches to the other generation and still teaches.
    const other = [{ id: 6, name: 'ds_6', patterns: [parseDomainPattern('other.test', 'calico')] }];
    const otherTable = buildDomainTable(other);
    program.setDomainSets(other, { table: otherTable, encoded: [0, 1].map((g) => encodeDomainTable(otherTable, g as 0 | 1)) });
    expect(program.nextTableGeneration()).toBe(next);
    expect(program.liveDomainKeys()).toHaveLength(1);
    const y = exchange(8, 'other.test', [{ address: '198.18.9.8', ttl: 100 }]);
    program.tcClassifier.testRun({ data: ethernetFrame(y.query) });
    program.tcClassifier.testRun({ data: ethernetFrame(y.response) });
    expect(program.membership().map((m) => m.address).sort()).toEqual(['198.18.9.7', '198.18.9.8']);
  });

  it('a preallocated dnsp_domains pinned by an older object is replaced on load, and the next table teaches', () => {
    const pinRoot = testPinRoot();
    mkdirSync(pinRoot, { recursive: true });
    madePinRoots.push(pinRoot); // removed also when the load fails
    const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'bpf-fixtures');
    execFileSync('make', ['-s', '-C', fixtures], { stdio: 'inherit' });
    const old = BpfObjectSpec.open(join(fixtures, 'old_domains.o'), { pinRoot: null });
    old.setMapPinPath('dnsp_domains', join(pinRoot, MAP_NAMES.domains));
    old.load().close();
    const flagsOf = (path: string): number => {
      const map = BpfMap.fromPinned(path);
      try {
        return map.flags;
      } finally {
        map.close();
      }
    };
    const NO_PREALLOC = 1;
    expect(flagsOf(join(pinRoot, MAP_NAMES.domains)) & NO_PREALLOC).toBe(0);

    const program = open(pinRoot); // libbpf would refuse to reuse the old pin: the load fails without the drop
    expect(program.map('domains').flags & NO_PREALLOC).toBe(NO_PREALLOC);
    expect(flagsOf(join(pinRoot, MAP_NAMES.domains)) & NO_PREALLOC).toBe(NO_PREALLOC);
    program.configure(dns);
    program.setDomainSets(sets);
    const x = exchange(13, 'after.example.com', [{ address: '198.18.9.40', ttl: 100 }]);
    program.tcClassifier.testRun({ data: ethernetFrame(x.query) });
    program.tcClassifier.testRun({ data: ethernetFrame(x.response) });
    expect(program.membership().map((m) => `${m.setId} ${m.address}`)).toEqual(['5 198.18.9.40']);
  });

  it('exports and imports learned entries in wall-clock time; expired entries are absent', () => {
    const program = open();
    const now = Date.now();
    const entries: LearnedEntry[] = [
      { setId: 5, family: 4, address: '198.18.9.5', expiresAt: now + 60_000 },
      { setId: 5, family: 6, address: 'fd00::9:5', expiresAt: now + 120_000 },
      { setId: 5, family: 4, address: '198.18.9.6', expiresAt: now - 1 },
    ];
    expect(program.importLearned(entries)).toBe(2);
    const exported = program.exportLearned();
    expect(exported.map((e) => e.address)).toEqual(['198.18.9.5', 'fd00::9:5']);
    for (const e of exported) {
      const original = entries.find((x) => x.address === e.address);
      expect(Math.abs(e.expiresAt - (original?.expiresAt ?? 0))).toBeLessThan(50);
    }
    // what a restart imports: its state file and its export, each read through both clocks at
    // other moments; the same expiries, so nothing is written — and a later one is
    const again = exported.map((e) => ({ ...e, expiresAt: e.expiresAt + 2 }));
    expect(program.importLearned([...exported, ...again])).toBe(0);
    expect(program.importLearned([{ ...exported[0]!, expiresAt: exported[0]!.expiresAt + 1_000 }])).toBe(1);
    // an entry whose expiry has passed is not in force
    program.map('members4').update(
      Buffer.from([5, 0, 0, 0, 198, 18, 9, 7]),
      (() => {
        const b = Buffer.alloc(8);
        b.writeBigUInt64LE(ktimeNs() - 1n);
        return b;
      })(),
    );
    expect(program.membership().map((m) => m.address)).not.toContain('198.18.9.7');
    // the count a status gives: the entries in force, the expired one not counted
    expect(program.learnedCount()).toBe(2);
    expect(program.learnedCount()).toBe(program.membership().length);
  });

  it('imports many entries against one batched read of the map: only what is new or later is written, whatever the address text', () => {
    const program = open();
    const now = Date.now();
    const many: LearnedEntry[] = Array.from({ length: 300 }, (_, k) => ({
      setId: 7 + (k % 3),
      family: k % 2 === 0 ? 4 : 6,
      address: k % 2 === 0 ? `198.18.${k >> 8}.${k & 255}` : `fd00::7:${k.toString(16)}`,
      expiresAt: now + 60_000 + k,
    }));
    expect(program.importLearned(many)).toBe(300);
    const exported = program.exportLearned();
    expect(exported).toHaveLength(300);
    // the same again (> 256 per family is the batched read), one v6 written in other text: nothing
    const shouty = many.map((e) => (e.family === 6 ? { ...e, address: e.address.toUpperCase().replace('FD00::', 'FD00:0::') } : e));
    expect(program.importLearned([...exported, ...shouty, ...shouty])).toBe(0);
    // two later expiries and one new entry: three writes, the rest untouched
    const later = [
      { ...many[0]!, expiresAt: many[0]!.expiresAt + 5_000 },
      { ...many[1]!, address: many[1]!.address.toUpperCase(), expiresAt: many[1]!.expiresAt + 5_000 },
      { setId: 7, family: 4 as const, address: '198.18.200.1', expiresAt: now + 60_000 },
    ];
    expect(program.importLearned([...exported, ...later])).toBe(3);
    const after = new Map(program.exportLearned().map((e) => [`${e.setId} ${e.address}`, e.expiresAt]));
    expect(after.size).toBe(301);
    expect(Math.abs((after.get(`${many[1]!.setId} ${many[1]!.address}`) ?? 0) - (many[1]!.expiresAt + 5_000))).toBeLessThan(50);
  });

  it('writes no learned events when the table says nobody reads them, and writes them again when it does', () => {
    const program = open();
    program.configure(dns);
    program.setDomainSets(sets, { events: false });
    const learned: string[] = [];
    const consumer = new LearnedEventConsumer(program.map('events'), (entry) => learned.push(`${entry.setId} ${entry.address}`), {
      drainIntervalMs: 3_600_000, // read here, by drain()
    });
    try {
      const quiet = exchange(9, 'quiet.example.com', [{ address: '198.18.9.20', ttl: 100 }]);
      program.tcClassifier.testRun({ data: ethernetFrame(quiet.query) });
      program.tcClassifier.testRun({ data: ethernetFrame(quiet.response) });
      expect(program.membership().map((m) => `${m.setId} ${m.address}`)).toEqual(['5 198.18.9.20']);
      consumer.drain();
      expect(learned).toEqual([]);
      expect(program.counters()).toMatchObject({ learned: 1, events_lost: 0 });

      program.setDomainSets(sets); // events on again (the default), with the next table
      const heard = exchange(10, 'heard.example.com', [{ address: '198.18.9.21', ttl: 100 }]);
      program.tcClassifier.testRun({ data: ethernetFrame(heard.query) });
      program.tcClassifier.testRun({ data: ethernetFrame(heard.response) });
      consumer.drain();
      expect(learned).toEqual(['5 198.18.9.21']);
    } finally {
      consumer.close();
    }
  });

  it('setLearnedEvents turns the events of the table in force on and off without writing the table again', () => {
    const program = open();
    program.configure(dns);
    program.setDomainSets(sets, { events: false });
    const keys = program.liveDomainKeys().map((k) => k.toString('hex')).sort();
    const generation = program.nextTableGeneration();
    const learned: string[] = [];
    const consumer = new LearnedEventConsumer(program.map('events'), (entry) => learned.push(`${entry.setId} ${entry.address}`), {
      drainIntervalMs: 3_600_000, // read here, by drain()
    });
    const learn = (id: number, name: string, address: string): void => {
      const x = exchange(id, name, [{ address, ttl: 100 }]);
      program.tcClassifier.testRun({ data: ethernetFrame(x.query) });
      program.tcClassifier.testRun({ data: ethernetFrame(x.response) });
    };
    try {
      expect(program.learnedEvents()).toBe(false);
      program.setLearnedEvents(true);
      expect(program.learnedEvents()).toBe(true);
      learn(11, 'kept.example.com', '198.18.9.30');
      consumer.drain();
      expect(learned).toEqual(['5 198.18.9.30']);

      program.setLearnedEvents(false);
      expect(program.learnedEvents()).toBe(false);
      learn(12, 'dropped.example.com', '198.18.9.31');
      consumer.drain();
      expect(learned).toEqual(['5 198.18.9.30']);
      // membership was written all along; the table is the same one, same generation
      expect(program.membership().map((m) => m.address).sort()).toEqual(['198.18.9.30', '198.18.9.31']);
      expect(program.liveDomainKeys().map((k) => k.toString('hex')).sort()).toEqual(keys);
      expect(program.nextTableGeneration()).toBe(generation);
      expect(program.counters()).toMatchObject({ learned: 2, events_lost: 0 });
    } finally {
      consumer.close();
    }
  });

  it('delivers learned events on the event loop', async () => {
    const program = open();
    program.configure(dns);
    program.setDomainSets(sets);
    const learned: LearnedEntry[] = [];
    const consumer = new LearnedEventConsumer(program.map('events'), (entry) => learned.push(entry));
    try {
      const x = exchange(6, 'WWW.Example.COM', [
        { address: '198.18.9.8', ttl: 100 },
        { address: '198.18.9.9', ttl: 100 },
      ]);
      program.tcClassifier.testRun({ data: ethernetFrame(x.query) });
      program.tcClassifier.testRun({ data: ethernetFrame(x.response) });
      const answeredAt = Date.now();
      // no wake sets: the consumer's timer reads them (LEARNED_EVENTS_DRAIN_INTERVAL_MS)
      const deadline = Date.now() + 5_000;
      while (learned.length < 2 && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
      expect(learned.map((e) => [e.setId, e.address, e.name])).toEqual([
        [5, '198.18.9.8', 'www.example.com'],
        [5, '198.18.9.9', 'www.example.com'],
      ]);
      // TTL 100 + extraTTL 10 from the answer, however late the timer read it
      expect(Math.abs((learned[0]?.expiresAt ?? 0) - (answeredAt + 110_000))).toBeLessThan(1_000);
    } finally {
      consumer.close();
    }
  });
});

describe('DnsParserProgram: remembered queries (dnsp_queries, a set-associative table)', () => {
  it('a full set gives way to a new query by the earliest expiry; a repeated query keeps its own way', () => {
    const program = open();
    program.configure(dns);
    program.setDomainSets(sets);
    const name = 'q.example.com';
    const qnameHash = nameHash(name.split('.'));
    // five transaction ids whose keys (client port 40000, see exchange) share one set
    const bySet = new Map<number, number[]>();
    let ids: number[] = [];
    for (let txid = 1; txid < 0x10000 && ids.length < QUERY_WAYS + 1; txid++) {
      const set = querySetOf({ qnameHash, family: 4, address: CLIENT4, port: 40000, txid });
      const same = bySet.get(set) ?? [];
      same.push(txid);
      bySet.set(set, same);
      ids = same;
    }
    expect(ids).toHaveLength(QUERY_WAYS + 1);
    const xs = ids.map((id, i) => exchange(id, name, [{ address: `198.18.10.${i + 1}`, ttl: 100 }]));
    const run = (packet: Uint8Array): void => {
      program.tcClassifier.testRun({ data: ethernetFrame(packet) });
    };
    for (const x of xs.slice(0, QUERY_WAYS)) run(x.query);
    run(xs[1]!.query); // the same key again: refreshed in its way, now the latest
    run(xs[QUERY_WAYS]!.query); // the set is full: the way expiring first (query 0) gives way
    for (const x of xs) run(x.response);
    expect(program.counters()).toMatchObject({ queries: QUERY_WAYS + 2, unmatched_query: 1, parsed: QUERY_WAYS, learned: QUERY_WAYS });
    expect(program.membership().map((m) => m.address)).toEqual(xs.slice(1).map((_, i) => `198.18.10.${i + 2}`));
    // forgotten by clearQueries: the answers match nothing any more
    program.clearQueries();
    run(xs[2]!.response);
    expect(program.counters().unmatched_query).toBe(2);
  });
});

describe('DnsParserProgram: wake sets', () => {
  // Two sets matching different names: 5 (*.example.com) and 6 (*.example.org).
  const two: DomainSet[] = [...sets, { id: 6, name: 'ds_6', patterns: [parseDomainPattern('*.example.org', 'calico')] }];
  const answer = (program: DnsParserProgram, id: number, name: string, address: string): void => {
    const x = exchange(id, name, [{ address, ttl: 100 }]);
    program.tcClassifier.testRun({ data: ethernetFrame(x.query) });
    program.tcClassifier.testRun({ data: ethernetFrame(x.response) });
  };
  /** Event-loop turns, each with a poll phase: a reader the parser woke has its records by then. */
  const turns = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) await new Promise((resolve) => setTimeout(resolve, 0));
  };

  it('events of a wake set reach the reader at once; the others wait for its timer (here: a drain)', async () => {
    const program = open();
    program.configure(dns);
    program.setDomainSets(two, { wakeSets: [6] });
    expect(program.wakeSets()).toEqual([6]);
    const learned: string[] = [];
    // a timer that never fires during the test: only a wakeup delivers
    const consumer = new LearnedEventConsumer(program.map('events'), (entry) => learned.push(`${entry.setId} ${entry.address}`), {
      drainIntervalMs: 3_600_000,
    });
    try {
      answer(program, 11, 'a.example.com', '198.18.11.1');
      await turns(20);
      expect(learned).toEqual([]); // written without a wakeup: still in the ring buffer
      answer(program, 12, 'b.example.org', '198.18.12.1');
      const deadline = Date.now() + 5_000;
      while (learned.length < 2 && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
      // the wakeup delivers everything unread, the quiet record first
      expect(learned).toEqual(['5 198.18.11.1', '6 198.18.12.1']);
      // Let the readiness settle: epoll is level-triggered, so until a poll finds the ring
      // buffer empty once, a record written meanwhile is delivered with the woken ones.
      await turns(20);

      // a caller that lists no wake sets (another dataplane on these pins) turns them off
      program.setDomainSets(two);
      expect(program.wakeSets()).toEqual([]);
      expect(program.map('wakeSets').keys()).toEqual([]);
      answer(program, 13, 'c.example.org', '198.18.13.1');
      await turns(20);
      expect(learned).toHaveLength(2);
      expect(consumer.drain()).toBe(1);
      expect(learned.at(-1)).toBe('6 198.18.13.1');
    } finally {
      consumer.close();
    }
  });
});


describe('DnsParserProgram: the verified-answer mark (dnsp_answer_marks)', () => {
  const lo = 1;
  const other = readdirSync('/sys/class/net').map((n) => Number(readFileSync(`/sys/class/net/${n}/ifindex`, 'utf8'))).find((i) => i > 1);
  const BIT = 0x04000000;

  it.skipIf(other === undefined)('marks an answer only when it answers a UDP query recorded from a listed interface', () => {
    const program = open();
    program.configure(dns);
    program.setDomainSets(sets);
    program.setAnswerMarks(new Map([[lo, BIT]]));
    expect([...program.answerMarks()]).toEqual([[lo, BIT]]);
    const x = exchange(31, 'm.example.com', [{ address: '198.18.9.31', ttl: 300 }]);
    expect(tcRun(program, x.query, lo, lo)).toBe(0); // the query itself is not marked
    expect(tcRun(program, x.response, lo, lo)).toBe(BIT);
    expect(program.counters()).toMatchObject({ parsed: 1, learned: 1, answers_marked: 1 });
    // the same answer again: still answers the recorded query (as conntrack admits a repeat)
    expect(tcRun(program, x.response, lo, lo)).toBe(BIT);
    expect(program.counters().answers_marked).toBe(2);
    // a response answering no query (another id), from the trusted server's address and port
    const forged = exchange(32, 'm.example.com', [{ address: '198.18.9.32', ttl: 300 }]);
    expect(tcRun(program, forged.response, lo, lo)).toBe(0);
    expect(program.counters()).toMatchObject({ unmatched_query: 1, answers_marked: 2 });
    // an error answer (NXDOMAIN) to a recorded query: marked (the client needs it), teaches nothing
    const nx = exchange(33, 'n.example.com', []);
    tcRun(program, nx.query, lo, lo);
    const nxdomain = Buffer.from(nx.response);
    nxdomain.writeUInt16BE(0x8183, 28 + 2); // IPv4 (20) + UDP (8) headers, then the DNS flags: rcode 3
    nxdomain.writeUInt16BE(0, 26); // no UDP checksum
    const rejectedBefore = program.counters().rejected;
    expect(tcRun(program, nxdomain, lo, lo)).toBe(BIT);
    expect(program.counters().rejected).toBe(rejectedBefore + 1);
  });

  it.skipIf(other === undefined)('marks nothing for queries from other interfaces, host-sent queries, or once the interface is pruned', () => {
    const program = open();
    program.configure(dns);
    program.setDomainSets(sets);
    program.setAnswerMarks(new Map([[lo, BIT]]));
    const fromOther = exchange(41, 'o.example.com', [{ address: '198.18.9.41', ttl: 300 }]);
    tcRun(program, fromOther.query, other ?? 0, other ?? 0);
    expect(tcRun(program, fromOther.response, lo, lo)).toBe(0);
    const hostSent = exchange(42, 'p.example.com', [{ address: '198.18.9.42', ttl: 300 }]);
    tcRun(program, hostSent.query, other ?? 0, 0);
    expect(tcRun(program, hostSent.response, lo, lo)).toBe(0);
    expect(program.counters().answers_marked).toBe(0); // verified, but nothing to mark
    // forwarded from the listed interface: the egress run of the same query keeps the mark
    const forwarded = exchange(43, 'q.example.com', [{ address: '198.18.9.43', ttl: 300 }]);
    tcRun(program, forwarded.query, other ?? 0, lo);
    expect(tcRun(program, forwarded.response, other ?? 0, other ?? 0)).toBe(BIT);
    program.setAnswerMarks(new Map(), { prune: true });
    expect(program.answerMarks().size).toBe(0);
    const after = exchange(44, 'r.example.com', [{ address: '198.18.9.44', ttl: 300 }]);
    tcRun(program, after.query, lo, lo);
    expect(tcRun(program, after.response, lo, lo)).toBe(0);
    // clearAnswerMarks (the nftables driver's remove()) empties the pinned map itself
    program.setAnswerMarks(new Map([[lo, BIT]]));
    expect(DnsParserProgram.clearAnswerMarks(program.pinRoot)).toBe(true);
    expect(program.answerMarks().size).toBe(0);
  });
});

describe('DnsParserProgram: a forwarded query is parsed once', () => {
  // tc ingress of lo (ifindex 1 = ingress ifindex), then tc egress of another interface of
  // this namespace with ingress ifindex 1: the forwarded packet's two parser runs.
  const lo = 1;
  const other = readdirSync('/sys/class/net').map((n) => Number(readFileSync(`/sys/class/net/${n}/ifindex`, 'utf8'))).find((i) => i > 1);

  it.skipIf(other === undefined)('skips the egress run of the query the ingress run remembered, once; the answer still teaches', () => {
    const program = open();
    program.configure(dns);
    program.setDomainSets(sets);
    const x = exchange(21, 'f.example.com', [{ address: '198.18.9.21', ttl: 300 }]);
    tcRun(program, x.query, lo, lo);
    expect(program.counters().queries).toBe(1);
    tcRun(program, x.query, other ?? 0, lo); // the same packet on egress: already remembered
    expect(program.counters().queries).toBe(1);
    tcRun(program, x.query, other ?? 0, lo); // a second egress run of it is not the memo's: parsed
    expect(program.counters().queries).toBe(2);
    tcRun(program, x.response, lo, lo);
    expect(program.counters()).toMatchObject({ parsed: 1, learned: 1 });
    expect(program.membership().map((m) => m.address)).toEqual(['198.18.9.21']);
  });

  it.skipIf(other === undefined)('parses the egress run of a changed packet (SNAT: another source), whose answer then teaches', () => {
    const program = open();
    program.configure(dns);
    program.setDomainSets(sets);
    const client = exchange(22, 'g.example.com', [{ address: '198.18.9.22', ttl: 300 }]);
    const natted = exchange(22, 'g.example.com', [{ address: '198.18.9.22', ttl: 300 }], '198.18.3.3');
    tcRun(program, client.query, lo, lo);
    tcRun(program, natted.query, other ?? 0, lo);
    expect(program.counters().queries).toBe(2);
    // the answer arrives addressed to the SNAT address (tc ingress runs before conntrack)
    tcRun(program, natted.response, lo, lo);
    expect(program.counters()).toMatchObject({ parsed: 1, learned: 1 });
  });

  it.skipIf(other === undefined)('parses host-sent queries (no ingress interface) and queries from an interface without a memo', () => {
    const program = open();
    program.configure(dns);
    program.setDomainSets(sets);
    const x = exchange(23, 'h.example.com', [{ address: '198.18.9.23', ttl: 300 }]);
    tcRun(program, x.query, other ?? 0, 0);
    expect(program.counters().queries).toBe(1);
    tcRun(program, x.query, lo, lo);
    tcRun(program, x.query, other ?? 0, 7); // forwarded from another interface than the memo's
    expect(program.counters().queries).toBe(3);
  });
});

describe('DnsParserProgram: a response at tc egress (a resolver on the node)', () => {
  // tc egress of lo (ifindex 1): a response the node sent has ingress ifindex 0; a forwarded
  // one carries the interface it came in on, where the ingress run parsed it.
  const lo = 1;

  it('parses a response the node itself sends, verified against the query the workload sent', () => {
    const program = open();
    program.configure(dns);
    program.setDomainSets(sets);
    const x = exchange(51, 'local.example.com', [{ address: '198.18.9.51', ttl: 300 }]);
    tcRun(program, x.query, lo, lo); // the workload's query at tc ingress of its interface
    tcRun(program, x.response, lo, 0); // the node's resolver answers through tc egress
    expect(program.counters()).toMatchObject({ queries: 1, parsed: 1, learned: 1 });
    expect(program.membership().map((m) => m.address)).toEqual(['198.18.9.51']);
  });

  it('leaves a forwarded response to the run where it came in: no second parse, no second credit', () => {
    const program = open();
    program.configure(dns);
    program.setDomainSets(sets);
    const x = exchange(52, 'fwd.example.com', [{ address: '198.18.9.52', ttl: 300 }]);
    tcRun(program, x.query, lo, lo);
    tcRun(program, x.response, lo, 7); // forwarded from interface 7 (parsed at its tc ingress)
    expect(program.counters()).toMatchObject({ queries: 1, parsed: 0, learned: 0 });
    expect(program.membership()).toEqual([]);
    tcRun(program, x.response, lo, lo); // its tc ingress run
    expect(program.counters()).toMatchObject({ parsed: 1, learned: 1 });
  });
});

describe('DnsParserProgram: only the entry points asked for, and reuse of pinned programs', () => {
  const learnsThroughTc = (program: DnsParserProgram, id: number, address: string): void => {
    const x = exchange(id, 'www.example.com', [{ address, ttl: 100 }]);
    program.tcClassifier.testRun({ data: ethernetFrame(x.query) });
    program.tcClassifier.testRun({ data: ethernetFrame(x.response) });
  };
  const tcOnly = { entries: ['tc'], reusePrograms: true } as const;

  it('loads only the tc entry point when asked: the socket filter is not loaded', () => {
    const program = open(testPinRoot(), { entries: ['tc'] });
    program.configure(dns);
    program.setDomainSets(sets);
    learnsThroughTc(program, 10, '198.18.9.10');
    expect(program.membership().map((m) => m.address)).toEqual(['198.18.9.10']);
    let caught: unknown;
    try {
      void program.socketFilter;
    } catch (error) {
      caught = error;
    }
    expect(isNotFound(caught)).toBe(true);
    expect(program.reused).toBe(false);
  });

  it('pins the loaded entry point by object hash and reuses it on the next load: the same kernel program, the same maps', () => {
    const pinRoot = testPinRoot();
    const first = open(pinRoot, tcOnly);
    expect(first.reused).toBe(false);
    const pin = parserProgramPinName('tc', parserObjectHash());
    expect(existsSync(join(pinRoot, pin))).toBe(true);
    first.configure(dns);
    first.setDomainSets(sets);
    const id = first.tcClassifier.id;
    first.close();
    const second = open(pinRoot, tcOnly);
    expect(second.reused).toBe(true);
    expect(second.tcClassifier.id).toBe(id);
    // Configuration and table written by the first load are in force for the reused program.
    learnsThroughTc(second, 11, '198.18.9.11');
    expect(second.membership().map((m) => m.address)).toEqual(['198.18.9.11']);
    expect(second.counters()).toMatchObject({ queries: 1, learned: 1 });
    // Another entry point of the same object is not pinned yet: loaded afresh.
    const both = open(pinRoot, { entries: ['tc', 'socket'], reusePrograms: true });
    expect(both.reused).toBe(false);
    expect(both.tcClassifier.id).not.toBe(id);
  });

  it('loads a new object version afresh and removes the older version\'s program pin', () => {
    const pinRoot = testPinRoot();
    const dir = mkdtempSync(join(tmpdir(), 'dnsplane-parser-'));
    try {
      const first = open(pinRoot, tcOnly);
      const firstId = first.tcClassifier.id;
      const oldPin = parserProgramPinName('tc', parserObjectHash());
      // The same programs in a file with other bytes: another version as far as the hash goes.
      const copy = join(dir, 'dnsplane.bpf.o');
      copyFileSync(PARSER_OBJECT_PATH, copy);
      appendFileSync(copy, Buffer.from('another build'));
      const second = open(pinRoot, { ...tcOnly, objectPath: copy });
      expect(second.reused).toBe(false);
      expect(second.tcClassifier.id).not.toBe(firstId);
      const pins = readdirSync(pinRoot).filter((name) => name.startsWith('dnsplane_parse_tc_'));
      expect(pins).toEqual([parserProgramPinName('tc', parserObjectHash(copy))]);
      expect(pins).not.toContain(oldPin);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('does not reuse a pinned program whose maps were replaced since', () => {
    const pinRoot = testPinRoot();
    const first = open(pinRoot, tcOnly);
    const firstId = first.tcClassifier.id;
    first.close();
    // dnsp_config re-created by a load that does not reuse programs: the pinned program still
    // uses the old one.
    unlinkSync(join(pinRoot, MAP_NAMES.config));
    open(pinRoot, { entries: ['tc'] });
    const second = open(pinRoot, tcOnly);
    expect(second.reused).toBe(false);
    expect(second.tcClassifier.id).not.toBe(firstId);
    second.configure(dns);
    second.setDomainSets(sets);
    learnsThroughTc(second, 12, '198.18.9.12');
    expect(second.membership().map((m) => m.address)).toEqual(['198.18.9.12']);
  });
});

describe('DnsParserProgram.load failures', () => {
  it('a missing object surfaces as a typed error and leaves no pin folder behind', () => {
    const pinRoot = testPinRoot();
    expect(() => DnsParserProgram.load({ pinRoot, objectPath: '/nonexistent/dnsplane.bpf.o' })).toThrow(/nonexistent/);
    expect(existsSync(pinRoot)).toBe(false);
  });
});
