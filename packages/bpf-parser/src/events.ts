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
}

/** Calls `onLearned` for every record the parser writes to the ring buffer. */
export class LearnedEventConsumer {
  readonly #consumer: RingBufferConsumer;

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
  }

  /** Drains what is in the ring buffer now (synchronously); returns the number of ring-buffer records. */
  drain(): number {
    return this.#consumer.consume();
  }

  close(): void {
    this.#consumer.close();
  }
}
