// The default runner for the nft binary. core's systemProcessRunner always pipes stdin and
// writes to it; nft never reads stdin, exits first, and the write fails with an unhandled
// EPIPE. nft gets no stdin at all here (documents go through a temp file anyway).
import { spawn } from 'node:child_process';
import type { ProcessRunner } from '@dnsplane/core';

export const nftProcessRunner: ProcessRunner = {
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
        child.stdin.on('error', () => undefined); // the child may exit before reading
        child.stdin.end(input);
      }
    });
  },
};
