// Statistics for benchmarks that compare two conditions measured in interleaved rounds on a
// shared machine: per-round paired differences or ratios, their median, and a percentile
// bootstrap interval of that median (rounds resampled with replacement, seeded, so a run's
// printout is reproducible from its samples).

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Nearest-rank quantile (q in [0, 1]). */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** mulberry32: a small seeded PRNG, enough for resampling. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Estimate {
  /** Median of the per-round values. */
  readonly median: number;
  /** Percentile-bootstrap interval of the median (default 95 %). */
  readonly low: number;
  readonly high: number;
  readonly rounds: number;
}

export function bootstrapMedian(values: readonly number[], options: { readonly level?: number; readonly resamples?: number; readonly seed?: number } = {}): Estimate {
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length === 0) return { median: Number.NaN, low: Number.NaN, high: Number.NaN, rounds: 0 };
  const level = options.level ?? 0.95;
  const resamples = options.resamples ?? 4000;
  const random = prng(options.seed ?? 0x5eed);
  const medians: number[] = [];
  const sample = new Array<number>(finite.length);
  for (let i = 0; i < resamples; i += 1) {
    for (let j = 0; j < finite.length; j += 1) sample[j] = finite[Math.floor(random() * finite.length)]!;
    medians.push(median(sample));
  }
  medians.sort((a, b) => a - b);
  const tail = (1 - level) / 2;
  return {
    median: median(finite),
    low: medians[Math.floor(tail * (resamples - 1))]!,
    high: medians[Math.ceil((1 - tail) * (resamples - 1))]!,
    rounds: finite.length,
  };
}

export const formatEstimate = (e: Estimate, digits = 1, unit = ''): string =>
  Number.isFinite(e.median) ? `${e.median.toFixed(digits)}${unit} [${e.low.toFixed(digits)}, ${e.high.toFixed(digits)}]` : '—';
