// Where an install's time goes: named steps, each the milliseconds it took, collected during
// one install and logged with it ("nftables: installed", field timingsMs).
export class StepTimer {
  #steps = new Map<string, number>();

  /** Runs `work`, adding its duration to step `name`. */
  time<T>(name: string, work: () => T): T {
    const start = performance.now();
    try {
      return work();
    } finally {
      this.add(name, performance.now() - start);
    }
  }

  async timeAsync<T>(name: string, work: () => Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      return await work();
    } finally {
      this.add(name, performance.now() - start);
    }
  }

  add(name: string, ms: number): void {
    this.#steps.set(name, (this.#steps.get(name) ?? 0) + ms);
  }

  /** The steps so far, rounded to whole milliseconds, and starts over. */
  take(): Record<string, number> {
    const out = Object.fromEntries([...this.#steps].map(([name, ms]) => [name, Math.round(ms)]));
    this.#steps = new Map();
    return out;
  }
}
