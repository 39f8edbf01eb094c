// DNS answer times as a client sees them, run inside a client namespace: one UDP query at a
// time (each from its own socket, so a fresh source port), in the order given, each to the
// server its entry names, with a pause between queries so every answer is its own event.
// stdin: { servers: [{address, port}], queries: [{name, server}], gapMs, timeoutMs, noWait? }.
// stdout: { us: (number | null)[] } — µs from send to the answer's callback, null on timeout
// or a non-NOERROR answer. With noWait, each query is sent and not waited for (all null): for
// measuring the query's path alone when the answers are dropped on purpose. With stamps, stdout
// also has t0ns: each query's send time (process.hrtime, CLOCK_MONOTONIC, as a decimal string),
// so a caller that changes the node's condition while the queries run can tell which queries
// fell wholly inside which condition, and keys: each query's `clientPort/transactionId` (what a
// packet capture sees of it; "" when it was never sent).
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import dnsPacket from 'dns-packet';
import { z } from 'zod';

const inputSchema = z.object({
  servers: z.array(z.object({ address: z.string().refine((value) => isIP(value) === 4), port: z.number().int().min(1).max(65535) })).min(1),
  queries: z.array(z.object({ name: z.string().min(1), server: z.number().int().min(0) })),
  gapMs: z.number().min(0).max(1000),
  timeoutMs: z.number().int().positive(),
  noWait: z.boolean().optional(),
  stamps: z.boolean().optional(),
});
type Input = z.infer<typeof inputSchema>;

function timeOne(server: Input['servers'][number], name: string, timeoutMs: number, noWait: boolean, sent: (t0: bigint, key: string) => void): Promise<number | null> {
  return new Promise((resolve) => {
    const id = Math.floor(Math.random() * 65536);
    const query = dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] });
    const socket = createSocket('udp4');
    let t0 = 0n;
    const finish = (value: number | null): void => {
      clearTimeout(timer);
      socket.close();
      resolve(value);
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    socket.on('message', (message) => {
      const now = process.hrtime.bigint();
      if (message.length < 4 || message.readUInt16BE(0) !== id) return;
      finish((message.readUInt16BE(2) & 0x000f) === 0 ? Number(now - t0) / 1000 : null);
    });
    socket.on('error', () => finish(null));
    socket.bind(0, () => {
      t0 = process.hrtime.bigint();
      sent(t0, `${socket.address().port}/${id}`);
      socket.send(query, server.port, server.address, () => {
        if (noWait) finish(null);
      });
    });
  });
}

async function main(): Promise<void> {
  const input = inputSchema.parse(JSON.parse(readFileSync(0, 'utf8')));
  const us: Array<number | null> = [];
  const t0ns: string[] = [];
  const keys: string[] = [];
  for (const query of input.queries) {
    const server = input.servers[query.server];
    if (server === undefined) throw new Error(`query ${query.name}: no server ${query.server}`);
    let sentAt = 0n;
    let key = '';
    us.push(
      await timeOne(server, query.name, input.timeoutMs, input.noWait === true, (t0, sentKey) => {
        sentAt = t0;
        key = sentKey;
      }),
    );
    t0ns.push(String(sentAt));
    keys.push(key);
    if (input.gapMs > 0) await new Promise((resolve) => setTimeout(resolve, input.gapMs));
  }
  process.stdout.write(`${JSON.stringify(input.stamps === true ? { us, t0ns, keys } : { us })}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exitCode = 1;
});
