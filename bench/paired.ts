// Statistics for benchmarks that compare two conditions measured in interleaved rounds on a
// shared machine: per-round paired differences or ratios, their median, and a percentile
// bootstrap interval of that median (rounds resampled with replacement, seeded, so a run's
// printout is reproducible from its samples).
import { prng } from '../packages/bpf-parser/test/dns-generator.js';

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

export interface Estimate {
  /** The statistic of all rounds (for bootstrapMedian: the median of the per-round values). */
  readonly median: number;
  /** Percentile-bootstrap interval of the statistic (default 95 %). */
  readonly low: number;
  readonly high: number;
  readonly rounds: number;
}

export interface BootstrapOptions {
  readonly level?: number;
  readonly resamples?: number;
  readonly seed?: number;
}

/**
 * The percentile interval (default 95 %) of `resamples` values of `resampled`, each computed
 * on a fresh resample drawn with the seeded `random` (non-finite values left out).
 */
function resampledInterval(resampled: (random: () => number) => number, options: BootstrapOptions): { low: number; high: number } {
  const level = options.level ?? 0.95;
  const resamples = options.resamples ?? 4000;
  const random = prng(options.seed ?? 0x5eed);
  const values: number[] = [];
  for (let i = 0; i < resamples; i += 1) values.push(resampled(random));
  const finite = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  const tail = (1 - level) / 2;
  return {
    low: finite[Math.floor(tail * (finite.length - 1))] ?? Number.NaN,
    high: finite[Math.ceil((1 - tail) * (finite.length - 1))] ?? Number.NaN,
  };
}

/** `values` drawn with replacement, as many as there are. */
const resample = <T>(values: readonly T[], random: () => number): T[] => values.map(() => values[Math.floor(random() * values.length)]!);

/**
 * `statistic` of the rounds, with a percentile-bootstrap interval: rounds resampled with
 * replacement `resamples` times, the statistic computed on each resample.
 */
export function bootstrap<T>(rounds: readonly T[], statistic: (sample: readonly T[]) => number, options: BootstrapOptions = {}): Estimate {
  if (rounds.length === 0) return { median: Number.NaN, low: Number.NaN, high: Number.NaN, rounds: 0 };
  const { low, high } = resampledInterval((random) => statistic(resample(rounds, random)), options);
  return { median: statistic(rounds), low, high, rounds: rounds.length };
}

/** Median of per-round values with its bootstrap interval (non-finite values left out). */
export function bootstrapMedian(values: readonly number[], options: BootstrapOptions = {}): Estimate {
  return bootstrap(
    values.filter((v) => Number.isFinite(v)),
    (sample) => median(sample),
    options,
  );
}

export const formatEstimate = (e: Estimate, digits = 1, unit = ''): string =>
  Number.isFinite(e.median) ? `${e.median.toFixed(digits)}${unit} [${e.low.toFixed(digits)}, ${e.high.toFixed(digits)}]` : '—';

/**
 * median(a) − median(b) for two independent samples (e.g. one condition's paired differences
 * from install rounds and another's from switched segments), with a percentile-bootstrap
 * interval: each sample resampled with replacement on its own.
 */
export function bootstrapMedianDifference(a: readonly number[], b: readonly number[], options: BootstrapOptions = {}): Estimate {
  const x = a.filter((v) => Number.isFinite(v));
  const y = b.filter((v) => Number.isFinite(v));
  if (x.length === 0 || y.length === 0) return { median: Number.NaN, low: Number.NaN, high: Number.NaN, rounds: 0 };
  const { low, high } = resampledInterval((random) => median(resample(x, random)) - median(resample(y, random)), options);
  return { median: median(x) - median(y), low, high, rounds: Math.min(x.length, y.length) };
}
