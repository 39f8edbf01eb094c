// Resolve-then-connect trials, run inside a client namespace: each trial sends its own DNS
// query (UDP, fresh source port) straight to the given server and, in the very callback that
// receives the answer, starts a TCP connect to the first answered address. One process runs
// a whole batch; stdout is one JSON document (see ConnectBatchOutput in ../connect.ts).
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { isIP } from 'node:net';
import dnsPacket from 'dns-packet';
import { z } from 'zod';

const inputSchema = z.object({
  server: z.object({ address: z.string().refine((value) => isIP(value) !== 0), port: z.number().int() }),
  trials: z.array(z.object({ name: z.string().min(1), type: z.enum(['A', 'AAAA']), port: z.number().int().min(1).max(65535) })),
  dnsTimeoutMs: z.number().int().positive(),
  connectTimeoutMs: z.number().int().positive(),
  concurrency: z.number().int().positive(),
});
type Input = z.infer<typeof inputSchema>;
type Trial = Input['trials'][number];

interface TrialResult {
  name: string;
  type: 'A' | 'AAAA';
  port: number;
  /** DNS response code (0 NOERROR, 3 NXDOMAIN, …). */
  rcode: number | null;
  addresses: string[];
  address: string | null;
  /** Query sent → answer received. */
  dnsMs: number | null;
  /** Answer received → connect() called (the client's reaction time). */
  answerToConnectUs: number | null;
  /** Answer received → connect() returned (the SYN has been handed to the kernel). */
  answerToSynUs: number | null;
  /** connect() called → connection established (or failure/timeout). */
  connectMs: number | null;
  connected: boolean;
  error: string | null;
}

function netCounters(): Record<string, number> {
  const counters: Record<string, number> = {};
  for (const file of ['/proc/net/snmp', '/proc/net/netstat']) {
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    for (let i = 0; i + 1 < lines.length; i += 2) {
      const names = lines[i]!.split(/\s+/);
      const values = lines[i + 1]!.split(/\s+/);
      const prefix = names[0]!.replace(/:$/, '');
      for (let j = 1; j < names.length; j += 1) counters[`${prefix}.${names[j]}`] = Number(values[j]);
    }
  }
  return counters;
}

const elapsedMs = (from: bigint, to: bigint): number => Number(to - from) / 1e6;

function runTrial(input: Input, trial: Trial): Promise<TrialResult> {
  const result: TrialResult = {
    name: trial.name,
    type: trial.type,
    port: trial.port,
    rcode: null,
    addresses: [],
    address: null,
    dnsMs: null,
    answerToConnectUs: null,
    answerToSynUs: null,
    connectMs: null,
    connected: false,
    error: null,
  };
  return new Promise((resolve) => {
    const socket = createSocket(isIP(input.server.address) === 6 ? 'udp6' : 'udp4');
    const id = Math.floor(Math.random() * 65536);
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      resolve(result);
    };
    const dnsTimer = setTimeout(() => {
      result.error = 'dns timeout';
      socket.close();
      finish();
    }, input.dnsTimeoutMs);
    const sent = process.hrtime.bigint();
    socket.on('message', (message) => {
      const received = process.hrtime.bigint();
      let decoded: dnsPacket.DecodedPacket;
      try {
        decoded = dnsPacket.decode(message);
      } catch {
        return; // not a DNS message: keep waiting for the real answer
      }
      if (decoded.id !== id || decoded.type !== 'response') return;
      clearTimeout(dnsTimer);
      socket.close();
      result.dnsMs = elapsedMs(sent, received);
      result.rcode = (decoded.flags ?? 0) & 0x0f;
      for (const answer of decoded.answers ?? []) {
        if ((answer.type === 'A' || answer.type === 'AAAA') && answer.type === trial.type) result.addresses.push(answer.data);
      }
      const address = result.addresses[0];
      if (address === undefined) {
        result.error = decoded.flag_tc ? 'truncated answer without addresses' : 'no address in answer';
        finish();
        return;
      }
      result.address = address;
      const connectCalled = process.hrtime.bigint();
      const tcp = connect({ host: address, port: trial.port, family: trial.type === 'A' ? 4 : 6 });
      // connect() returns once the kernel has the connect(2) call, i.e. the SYN is on its way.
      result.answerToConnectUs = Number(connectCalled - received) / 1e3;
      result.answerToSynUs = Number(process.hrtime.bigint() - received) / 1e3;
      const connectTimer = setTimeout(() => {
        result.connectMs = elapsedMs(connectCalled, process.hrtime.bigint());
        result.error = 'connect timeout';
        tcp.destroy();
        finish();
      }, input.connectTimeoutMs);
      tcp.once('connect', () => {
        clearTimeout(connectTimer);
        result.connectMs = elapsedMs(connectCalled, process.hrtime.bigint());
        result.connected = true;
        tcp.destroy();
        finish();
      });
      tcp.once('error', (error: NodeJS.ErrnoException) => {
        clearTimeout(connectTimer);
        result.connectMs = elapsedMs(connectCalled, process.hrtime.bigint());
        result.error = error.code ?? error.message;
        finish();
      });
    });
    socket.on('error', (error) => {
      clearTimeout(dnsTimer);
      result.error = `dns socket: ${error.message}`;
      socket.close();
      finish();
    });
    const query = dnsPacket.encode({
      type: 'query',
      id,
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ type: trial.type, name: trial.name, class: 'IN' }],
    });
    socket.send(query, input.server.port, input.server.address);
  });
}

const input = inputSchema.parse(JSON.parse(readFileSync(0, 'utf8')));
const before = netCounters();
const started = process.hrtime.bigint();
const results: TrialResult[] = new Array(input.trials.length);
let next = 0;
async function worker(): Promise<void> {
  while (next < input.trials.length) {
    const index = next;
    next += 1;
    results[index] = await runTrial(input, input.trials[index]!);
  }
}
await Promise.all(Array.from({ length: Math.min(input.concurrency, input.trials.length) }, () => worker()));
const after = netCounters();
const delta = (key: string): number => (after[key] ?? 0) - (before[key] ?? 0);
process.stdout.write(
  `${JSON.stringify({
    durationMs: elapsedMs(started, process.hrtime.bigint()),
    counters: {
      synRetransmits: delta('TcpExt.TCPSynRetrans'),
      retransmittedSegments: delta('Tcp.RetransSegs'),
      activeOpens: delta('Tcp.ActiveOpens'),
      attemptFails: delta('Tcp.AttemptFails'),
    },
    trials: results,
  })}\n`,
);
