// Processes the lab starts inside its namespaces. Each runs in its own process group
// (spawned detached), so a timeout or teardown signals exactly the processes the lab started
// and their children — never anything found by name.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { waitFor } from './wait.js';

export interface ExecOptions {
  readonly input?: string | Uint8Array;
  readonly timeoutMs?: number;
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
}

export interface ExecResult {
  /** Exit code; -1 when the process was ended by a signal. */
  readonly code: number;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
  readonly durationMs: number;
}

export interface ProcessExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** A long-running process the lab started (a server, the agent). */
export interface LabProcess {
  readonly pid: number;
  readonly argv: readonly string[];
  readonly namespace: string;
  readonly logFiles: { readonly stdout: string; readonly stderr: string };
  /** Everything written so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves with the first output line (stdout or stderr) matching `pattern`; rejects if it exits first. */
  waitForOutput(pattern: RegExp, timeoutMs: number): Promise<string>;
  /** Signals the whole process group (default SIGTERM). No-op once exited. */
  kill(signal?: NodeJS.Signals): void;
  wait(): Promise<ProcessExit>;
  readonly exited: boolean;
  /** Signals SIGTERM, waits up to `graceMs`, then SIGKILL; resolves when it has exited. */
  stop(graceMs?: number): Promise<ProcessExit>;
}

/** Start time of a process (clock ticks since boot), to tell a live PID from a reused one. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (comm) may contain spaces and parentheses; fields after the last ')' are fixed.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19]; // field 22 overall
  } catch {
    return undefined;
  }
}

export interface ProcessGroupRecord {
  readonly pgid: number;
  readonly startTime: string;
}

/** Hooks for recording the process groups a lab owns (see registry.ts). */
export interface ProcessGroupListener {
  added(record: ProcessGroupRecord): void;
  removed(pgid: number): void;
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}

/**
 * How to run a command inside a network namespace: the argv prefix (default
 * `ip netns exec NAMESPACE`, which also bind-mounts /etc/netns/NAMESPACE/* over /etc).
 */
export interface NamespaceLauncher {
  readonly namespace: string;
  readonly prefix: readonly string[];
}

export function ipNetnsExec(namespace: string): NamespaceLauncher {
  return { namespace, prefix: ['ip', 'netns', 'exec', namespace] };
}

function spawnInNamespace(launcher: NamespaceLauncher, argv: readonly string[], options: ExecOptions): ChildProcess {
  if (argv.length === 0) throw new Error('argv must name a command');
  return spawn(launcher.prefix[0]!, [...launcher.prefix.slice(1), ...argv], {
    detached: true,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
  });
}

/** Runs `argv` inside `namespace` to completion (or until the timeout kills its group). */
export function execInNamespace(
  launcher: NamespaceLauncher,
  argv: readonly string[],
  options: ExecOptions,
  listener: ProcessGroupListener,
): Promise<ExecResult> {
  const started = Date.now();
  const timeoutMs = options.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const child = spawnInNamespace(launcher, argv, options);
    const pid = child.pid;
    if (pid === undefined) {
      child.once('error', reject);
      return;
    }
    listener.added({ pgid: pid, startTime: processStartTime(pid) ?? '' });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => {
      timedOut = true;
      signalGroup(pid, 'SIGKILL');
    }, timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      listener.removed(pid);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      // Children the command left behind in its group go with it.
      signalGroup(pid, 'SIGKILL');
      listener.removed(pid);
      resolve({ code: code ?? -1, signal, stdout, stderr, timedOut, durationMs: Date.now() - started });
    });
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(options.input ?? '');
  });
}

/**
 * Starts a long-running process inside `namespace`. Its stdout and stderr go to files (not
 * pipes), so it keeps running unharmed when the lab outlives the process that built it
 * (`cli.ts up`), and so its log can be read while it runs.
 */
export function startInNamespace(
  launcher: NamespaceLauncher,
  argv: readonly string[],
  listener: ProcessGroupListener,
  options: { readonly logPrefix: string; readonly env?: Readonly<Record<string, string>>; readonly cwd?: string },
): LabProcess {
  if (argv.length === 0) throw new Error('argv must name a command');
  const stdoutFile = `${options.logPrefix}.stdout`;
  const stderrFile = `${options.logPrefix}.stderr`;
  const stdoutFd = openSync(stdoutFile, 'w');
  const stderrFd = openSync(stderrFile, 'w');
  let child: ChildProcess;
  try {
    child = spawn(launcher.prefix[0]!, [...launcher.prefix.slice(1), ...argv], {
      detached: true,
      stdio: ['ignore', stdoutFd, stderrFd],
      env: { ...process.env, ...options.env },
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    });
  } finally {
    closeSync(stdoutFd);
    closeSync(stderrFd);
  }
  const pid = child.pid;
  const namespace = launcher.namespace;
  if (pid === undefined) throw new Error(`could not start ${argv.join(' ')} in ${namespace}`);
  listener.added({ pgid: pid, startTime: processStartTime(pid) ?? '' });
  const read = (file: string): string => {
    try {
      return readFileSync(file, 'utf8');
    } catch {
      return '';
    }
  };
  let exit: ProcessExit | undefined;
  const exited = new Promise<ProcessExit>((resolve) => {
    child.once('error', () => {
      exit = { code: -1, signal: null };
      listener.removed(pid);
      resolve(exit);
    });
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      // The leader is gone; anything it left in its group goes too.
      signalGroup(pid, 'SIGKILL');
      listener.removed(pid);
      resolve(exit);
    });
  });
  // Do not keep the builder's event loop alive just for this child.
  child.unref();
  const describe = (): string => `${argv.join(' ').slice(0, 120)} in ${namespace}`;
  const handle: LabProcess = {
    pid,
    argv,
    namespace,
    logFiles: { stdout: stdoutFile, stderr: stderrFile },
    stdout: () => read(stdoutFile),
    stderr: () => read(stderrFile),
    get exited() {
      return exit !== undefined;
    },
    waitForOutput(pattern, timeoutMs) {
      return waitFor(
        `${describe()} to print ${pattern}`,
        () => {
          const line = `${read(stdoutFile)}\n${read(stderrFile)}`.split('\n').find((candidate) => pattern.test(candidate));
          if (line !== undefined) return line;
          if (exit !== undefined) {
            throw new ProcessExitedError(describe(), exit, read(stderrFile).slice(-2000));
          }
          return undefined;
        },
        { timeoutMs, stopOn: isProcessExitedError },
      );
    },
    kill(signal = 'SIGTERM') {
      if (exit === undefined) signalGroup(pid, signal);
    },
    wait: () => exited,
    async stop(graceMs = 3000) {
      if (exit !== undefined) return exit;
      // Whoever stops a process waits for it: the unref'd child must keep the loop alive now,
      // or a caller with nothing else pending exits before the child's exit event arrives.
      child.ref();
      signalGroup(pid, 'SIGTERM');
      const timer = setTimeout(() => signalGroup(pid, 'SIGKILL'), graceMs);
      const result = await exited;
      clearTimeout(timer);
      return result;
    },
  };
  return handle;
}

export class ProcessExitedError extends Error {
  override readonly name = 'ProcessExitedError';
  constructor(
    readonly command: string,
    readonly exit: ProcessExit,
    readonly stderrTail: string,
  ) {
    super(`${command} exited (code ${exit.code}, signal ${exit.signal}); stderr: ${stderrTail}`);
  }
}

export function isProcessExitedError(error: unknown): error is ProcessExitedError {
  return error instanceof ProcessExitedError;
}

/**
 * True while `pid` runs and is the process that had `startTime` (not a reused PID, not a
 * zombie waiting to be reaped).
 */
export function isProcessRunning(pid: number, startTime: string): boolean {
  if (startTime === '') return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[0] !== 'Z' && fields[0] !== 'X' && fields[19] === startTime;
  } catch {
    return false;
  }
}

/** SIGKILLs a recorded process group if its leader is still the process we started. */
export function killRecordedGroup(record: ProcessGroupRecord): boolean {
  if (!isProcessRunning(record.pgid, record.startTime)) return false;
  signalGroup(record.pgid, 'SIGKILL');
  return true;
}
