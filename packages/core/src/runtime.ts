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

export const systemProcessRunner: ProcessRunner = {
  run(command, args, options) {
    return new Promise((resolve, reject) => {
      const child = spawn(command, [...args], { stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
      child.on('error', reject);
      // A tool that exits without reading its input (every *-save) must not turn the pending
      // write into an uncaught EPIPE.
      child.stdin.on('error', () => {});
      child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
      child.stdin.end(options?.input ?? '');
    });
  },
};
