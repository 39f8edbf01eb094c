// A kernel event monitor run as a child process that prints one line per event (`ip -o monitor
// link`, `nft monitor destroy tables`, `tc monitor`): no polling, no wakeup while nothing
// happens. The child is ours: close() ends it by its handle, and util-linux's setpriv asks the
// kernel to send it SIGTERM when the agent dies without closing it (SIGKILL, a crash), so no
// monitor outlives the agent.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

/**
 * Runs `argv` under `setpriv --pdeathsig TERM`; `onLine` gets each line of its output,
 * `onError` is called once if it cannot run or ends by itself (not after close()).
 */
export function monitorLines(argv: readonly string[], onLine: (line: string) => void, onError: (error: Error) => void): { close(): void } {
  let closed = false;
  const child = spawn('setpriv', ['--pdeathsig', 'TERM', '--', ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-2000);
  });
  createInterface({ input: child.stdout }).on('line', (line) => {
    if (!closed) onLine(line);
  });
  child.on('error', (error) => {
    if (!closed) onError(error);
  });
  child.on('exit', (code, signal) => {
    if (!closed) onError(new Error(`${argv.join(' ')} ended (${signal ?? `code ${code}`})${stderr === '' ? '' : `: ${stderr.trim()}`}`));
  });
  // A monitor alone does not keep the daemon alive (its persist timer does).
  child.unref();
  return {
    close: () => {
      if (closed) return;
      closed = true;
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    },
  };
}
