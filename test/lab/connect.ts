// Parent side of the resolve-then-connect client (scripts/connect-trials.ts): the trial
// description it takes and the validated shape of what it reports.
import { z } from 'zod';

export interface ConnectTrial {
  readonly name: string;
  /** Which record to ask for; the connect goes to the first address of that type. */
  readonly type?: 'A' | 'AAAA';
  readonly port: number;
}

export interface ConnectOptions {
  /** DNS server to ask (default: dnsmasq's IPv4 address). */
  readonly server?: { readonly address: string; readonly port?: number };
  readonly dnsTimeoutMs?: number;
  /**
   * Connect timeout per trial (default 2500 ms). Linux retransmits a lost SYN after the 1 s
   * initial RTO, so a connect that succeeds only after ≥ 1 s means its first SYN was lost.
   */
  readonly connectTimeoutMs?: number;
  /** Trials in flight at once (default 1: strictly one after the other). */
  readonly concurrency?: number;
  /** Whole-batch limit (default: generous, from the trial count and timeouts). */
  readonly timeoutMs?: number;
}

/** A connect established at or after this many ms must have had its first SYN retransmitted. */
export const SYN_RETRANSMIT_THRESHOLD_MS = 900;

const trialResultSchema = z.object({
  name: z.string(),
  type: z.enum(['A', 'AAAA']),
  port: z.number(),
  rcode: z.number().int().nullable(),
  addresses: z.array(z.string()),
  address: z.string().nullable(),
  dnsMs: z.number().nullable(),
  answerToConnectUs: z.number().nullable(),
  answerToSynUs: z.number().nullable(),
  connectMs: z.number().nullable(),
  connected: z.boolean(),
  error: z.string().nullable(),
});

export const connectBatchOutputSchema = z.object({
  durationMs: z.number(),
  /** Deltas of the client namespace's TCP counters over the batch (/proc/net/snmp, netstat). */
  counters: z.object({
    synRetransmits: z.number(),
    retransmittedSegments: z.number(),
    activeOpens: z.number(),
    attemptFails: z.number(),
  }),
  trials: z.array(trialResultSchema),
});

export type ConnectBatchOutput = z.infer<typeof connectBatchOutputSchema>;

export interface ConnectTrialResult extends z.infer<typeof trialResultSchema> {
  /** The attempt lasted ≥ SYN_RETRANSMIT_THRESHOLD_MS (connected late or timed out): the first SYN was lost. */
  readonly synRetransmitted: boolean;
}

export interface ConnectBatchResult {
  readonly durationMs: number;
  readonly counters: ConnectBatchOutput['counters'];
  readonly trials: readonly ConnectTrialResult[];
  /** Trials that connected without a retransmitted SYN. */
  readonly cleanConnects: number;
}

export function interpretBatch(output: ConnectBatchOutput): ConnectBatchResult {
  const trials = output.trials.map((trial) => ({
    ...trial,
    // Whatever the outcome, a connect attempt still unanswered after the initial RTO has
    // retransmitted its SYN; a quick refusal or a quick success has not.
    synRetransmitted: trial.connectMs !== null && trial.connectMs >= SYN_RETRANSMIT_THRESHOLD_MS,
  }));
  return {
    durationMs: output.durationMs,
    counters: output.counters,
    trials,
    cleanConnects: trials.filter((trial) => trial.connected && !trial.synRetransmitted).length,
  };
}
