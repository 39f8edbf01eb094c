// The default ProcessRunner for iptables tools. core's systemProcessRunner always writes to
// the child's stdin; a tool that exits without reading it (every `-save`, or a `-restore`
// that fails early) then makes the write fail with an unhandled EPIPE. Here stdin is only
// opened when there is input, and a write error on it is ignored: the exit code and stderr
// are what report the tool's result.
import { spawn } from 'node:child_process';
import type { ProcessRunner } from '@dnsplane/core';

export const iptablesProcessRunner: ProcessRunner = {
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
      if (child.stdin) {
        child.stdin.on('error', () => undefined);
        child.stdin.end(input);
      }
    });
  },
};
