// Learned events from the parser's ring buffer (dnsp_events), decoded and turned into wall-clock
// LearnedEntry values. Consumption runs on the Node event loop (RingBufferConsumer).
import type { Clock, LearnedEntry } from '@dnsplane/core';
import { systemClock } from '@dnsplane/core';
import { RingBufferConsumer, ktimeNs, type BpfMap } from './libbpf.js';
import { decodeEvents, type LearnedEvent } from './maps.js';

/** Converts CLOCK_MONOTONIC ns (bpf_ktime_get_ns) to wall-clock ms, given one reading of each clock. */
export function monotonicToWallMs(monotonicNs: bigint, nowMonotonicNs: bigint, nowWallMs: number): number {
  return nowWallMs + Number(monotonicNs - nowMonotonicNs) / 1e6;
}

/** Converts wall-clock ms to CLOCK_MONOTONIC ns, given one reading of each clock. */
export function wallMsToMonotonic(wallMs: number, nowMonotonicNs: bigint, nowWallMs: number): bigint {
  return nowMonotonicNs + BigInt(Math.round((wallMs - nowWallMs) * 1e6));
}

/** A learned event as a LearnedEntry (wall-clock expiry). */
export function eventToLearnedEntry(event: LearnedEvent, nowMonotonicNs: bigint, nowWallMs: number): LearnedEntry {
  return {
    setId: event.setId,
    family: event.family,
    address: event.address,
    expiresAt: Math.round(monotonicToWallMs(event.expiryNs, nowMonotonicNs, nowWallMs)),
    ...(event.name === '' ? {} : { name: event.name }),
  };
}

export interface LearnedEventConsumerOptions {
  readonly clock?: Clock;
  readonly onError?: (error: unknown) => void;
  /**
   * How often the ring buffer is read without a wakeup, ms (default
   * LEARNED_EVENTS_DRAIN_INTERVAL_MS): the longest an event of a set not in the parser's wake
   * sets waits.
   */
  readonly drainIntervalMs?: number;
}

/**
 * The parser writes learned events without waking the reader (BPF_RB_NO_WAKEUP): a wakeup is
 * an irq_work IPI inside the parser's run on the answer's path and a reader scheduled while the
 * answer is delivered (bench:enforce (b): ~11 µs more per teaching answer in the parser, ~40–55 µs
 * end to end on a 2-core VM), and a reader woken often (it was every 10 ms) competes with the
 * answers for the CPUs. Only events of the wake sets (DnsParserProgram.setDomainSets' `wakeSets`:
 * sets a reader needs at once) wake it — the ring buffer's poll handle delivers them on the
 * event loop at once; everything else is read on this slow timer. One second: the nft sets'
 * timeouts are whole seconds anyway, and a reader that only keeps a visible copy of what the
 * kernel already enforces gains nothing from reading sooner (bench/README.md, (b)).
 */
export const LEARNED_EVENTS_DRAIN_INTERVAL_MS = 1000;

/**
 * Calls `onLearned` for every record the parser writes to the ring buffer: at once when the
 * parser wakes the reader (the ring buffer's poll handle, on the event loop), else on a timer.
 */
export class LearnedEventConsumer {
  readonly #consumer: RingBufferConsumer;
  readonly #timer: ReturnType<typeof setInterval>;

  constructor(map: BpfMap, onLearned: (entry: LearnedEntry, event: LearnedEvent) => void, options: LearnedEventConsumerOptions = {}) {
    const clock = options.clock ?? systemClock;
    this.#consumer = new RingBufferConsumer(
      map,
      (record) => {
        const nowNs = ktimeNs();
        const nowMs = clock.now();
        for (const event of decodeEvents(record)) onLearned(eventToLearnedEntry(event, nowNs, nowMs), event);
      },
      options.onError === undefined ? {} : { onError: options.onError },
    );
    const onError = options.onError;
    this.#timer = setInterval(() => {
      try {
        this.#consumer.consume();
      } catch (error) {
        if (onError === undefined) throw error;
        onError(error);
      }
    }, options.drainIntervalMs ?? LEARNED_EVENTS_DRAIN_INTERVAL_MS);
    // The ring buffer's poll handle keeps the process alive as before; the timer adds no reference.
    this.#timer.unref();
  }

  /** Drains what is in the ring buffer now (synchronously); returns the number of ring-buffer records. */
  drain(): number {
    return this.#consumer.consume();
  }

  close(): void {
    clearInterval(this.#timer);
    this.#consumer.close();
  }
}
