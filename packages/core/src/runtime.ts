// Injected effects: the clock and process execution, so tests control them.
import { spawn } from 'node:child_process';

export interface Clock {
  /** Wall clock, milliseconds since the Unix epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

export interface ProcessResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface ProcessRunner {
  run(command: string, args: readonly string[], options?: { readonly input?: string }): Promise<ProcessResult>;
}

/**
 * Runs a tool and collects its output. stdin is only piped when there is input, and a write
 * error on it is ignored: a tool that exits without reading it (every `*-save`, `nft`, a
 * `*-restore` that fails early) would otherwise raise an unhandled EPIPE. The exit code and
 * stderr are what report the tool's result.
 */
export const systemProcessRunner: ProcessRunner = {
  run(command, args, options) {
    return new Promise((resolve, reject) => {
      const input = options?.input;
      const child = spawn(command, [...args], { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
      child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
      if (child.stdin !== null) {
        child.stdin.on('error', () => undefined);
        child.stdin.end(input);
      }
    });
  },
};
