// Packet captures at the lab's edges, and when each DNS message passed them. A capture runs
// tcpdump on a namespace's eth0 (the far end of its veth into the node), writing a pcap file
// with nanosecond stamps. Two captures — a client's and the DNS namespace's — stamp a message as
// it leaves one edge and as it arrives at the other, so the difference is the time the node
// took to carry it: its tc programs, netfilter, routing and both veths, and nothing of either
// end's process scheduling.
import { readFileSync } from 'node:fs';
import type { Lab, LabNamespace } from './lab.js';
import { isLabTimeoutError, waitFor } from './wait.js';

/** One captured frame: when the capture saw it (ns since the epoch, CLOCK_REALTIME) and its bytes. */
export interface PcapRecord {
  readonly atNs: bigint;
  readonly frame: Uint8Array;
}

const PCAP_MICRO = 0xa1b2c3d4;
const PCAP_NANO = 0xa1b23c4d;
const LINKTYPE_ETHERNET = 1;

/** The records of a little-endian pcap file (what tcpdump writes on this machine). */
export function readPcap(bytes: Uint8Array): PcapRecord[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < 24) throw new Error(`pcap: ${bytes.byteLength} bytes, shorter than the 24-byte file header`);
  const magic = view.getUint32(0, true);
  if (magic !== PCAP_MICRO && magic !== PCAP_NANO) throw new Error(`pcap: magic 0x${magic.toString(16)} is not a little-endian pcap file`);
  const linkType = view.getUint32(20, true);
  if (linkType !== LINKTYPE_ETHERNET) throw new Error(`pcap: link type ${linkType}, only Ethernet (1) is read`);
  const scale = magic === PCAP_NANO ? 1n : 1000n;
  const records: PcapRecord[] = [];
  let offset = 24;
  // A record cut short (the file read while tcpdump writes) ends the list.
  while (offset + 16 <= bytes.byteLength) {
    const seconds = view.getUint32(offset, true);
    const fraction = view.getUint32(offset + 4, true);
    const length = view.getUint32(offset + 8, true);
    if (offset + 16 + length > bytes.byteLength) break;
    records.push({ atNs: BigInt(seconds) * 1_000_000_000n + BigInt(fraction) * scale, frame: bytes.subarray(offset + 16, offset + 16 + length) });
    offset += 16 + length;
  }
  return records;
}

/** A DNS message over UDP, as a capture saw it. */
export interface DnsSighting {
  readonly atNs: bigint;
  /** To port 53 (a query) or from it (an answer). */
  readonly query: boolean;
  /** `clientPort/transactionId`: the same for a query and its answer. */
  readonly key: string;
}

/** The UDP DNS messages among Ethernet frames (IPv4, or IPv6 without extension headers). */
export function dnsSightings(records: readonly PcapRecord[]): DnsSighting[] {
  const sightings: DnsSighting[] = [];
  for (const { atNs, frame } of records) {
    if (frame.byteLength < 14) continue;
    const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
    const etherType = view.getUint16(12);
    let udp: number;
    if (etherType === 0x0800) {
      if (frame[23] !== 17) continue;
      udp = 14 + (frame[14]! & 0x0f) * 4;
    } else if (etherType === 0x86dd) {
      if (frame[20] !== 17) continue;
      udp = 14 + 40;
    } else {
      continue;
    }
    if (udp + 10 > frame.byteLength) continue;
    const source = view.getUint16(udp);
    const destination = view.getUint16(udp + 2);
    const id = view.getUint16(udp + 8);
    if (destination === 53) sightings.push({ atNs, query: true, key: `${source}/${id}` });
    else if (source === 53) sightings.push({ atNs, query: false, key: `${destination}/${id}` });
  }
  return sightings;
}

/** µs from one edge to the other, per message; absent where either capture missed it. */
export interface DnsCrossing {
  /** The query: client edge → server edge. */
  readonly queryUs?: number;
  /** The answer: server edge → client edge. */
  readonly answerUs?: number;
}

/**
 * Pairs the sightings of the client's capture with the server's by key and direction. A key
 * seen more than once on one side (a retransmission, a reused port and id) is left out: its
 * pairing would be a guess.
 */
export function dnsCrossings(clientSide: readonly DnsSighting[], serverSide: readonly DnsSighting[]): Map<string, DnsCrossing> {
  const index = (sightings: readonly DnsSighting[]): Map<string, bigint | null> => {
    const seen = new Map<string, bigint | null>();
    for (const s of sightings) {
      const key = `${s.query ? 'q' : 'a'}${s.key}`;
      seen.set(key, seen.has(key) ? null : s.atNs);
    }
    return seen;
  };
  const client = index(clientSide);
  const server = index(serverSide);
  const crossings = new Map<string, DnsCrossing>();
  const between = (from: bigint | null | undefined, to: bigint | null | undefined): number | undefined =>
    from === null || from === undefined || to === null || to === undefined ? undefined : Number(to - from) / 1000;
  const keys = new Set([...clientSide, ...serverSide].map((s) => s.key));
  for (const key of keys) {
    const queryUs = between(client.get(`q${key}`), server.get(`q${key}`));
    const answerUs = between(server.get(`a${key}`), client.get(`a${key}`));
    crossings.set(key, { ...(queryUs === undefined ? {} : { queryUs }), ...(answerUs === undefined ? {} : { answerUs }) });
  }
  return crossings;
}

/** tcpdump's closing count of frames the kernel dropped before it read them. */
function droppedBy(stderr: string): number {
  const dropped = /(\d+) packets? dropped by kernel/.exec(stderr);
  return dropped === null ? 0 : Number(dropped[1]);
}

export interface Capture {
  readonly file: string;
  /**
   * Waits until the file holds at least `expected` frames (tcpdump hands over a block when it
   * is full or a second old) or `timeoutMs` passed, then stops tcpdump; returns what the file
   * holds and tcpdump's count of frames the kernel dropped. Once stopped, returns the same.
   */
  stop(expected: number, timeoutMs?: number): Promise<{ readonly records: PcapRecord[]; readonly dropped: number }>;
}

/**
 * tcpdump on `ns`'s eth0 into `file`: nanosecond stamps, written as each block is read (-U),
 * not in immediate mode (one wakeup per block, not per packet, so it competes less with what
 * it measures), as root (-Z root: the file lives in the lab's directory).
 */
export async function startCapture(lab: Pick<Lab, 'startTool'>, ns: LabNamespace, name: string, file: string, filter: string): Promise<Capture> {
  const tcpdump = lab.startTool(ns, name, ['tcpdump', '-i', 'eth0', '-n', '-U', '-B', '16384', '-Z', 'root', '--time-stamp-precision=nano', '-w', file, filter]);
  await tcpdump.waitForOutput(/listening on eth0/, 10_000);
  const held = (): PcapRecord[] => {
    try {
      return readPcap(readFileSync(file));
    } catch {
      return [];
    }
  };
  return {
    file,
    async stop(expected, timeoutMs = 5_000) {
      if (tcpdump.exited) return { records: held(), dropped: droppedBy(tcpdump.stderr()) };
      try {
        await waitFor(`${name} to hold ${expected} frames`, () => (held().length >= expected ? true : undefined), { timeoutMs });
      } catch (error) {
        if (!isLabTimeoutError(error)) throw error; // fewer: what was lost is left out
      } finally {
        // SIGTERM: tcpdump writes what it holds and its counts, then exits (SIGKILL after 5 s).
        await tcpdump.stop(5_000);
      }
      return { records: held(), dropped: droppedBy(tcpdump.stderr()) };
    },
  };
}
