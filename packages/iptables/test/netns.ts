// Network namespaces for kernel tests: unique names, a ProcessRunner that runs every command
// inside one (`nsenter --net`), and removal that also runs when a test fails.
import { randomBytes } from 'node:crypto';
import type { ProcessResult, ProcessRunner } from '@dnsplane/core';
import { iptablesProcessRunner } from '../src/index.js';

/** Tools that exit without reading stdin must not fail the test with EPIPE. */
const toleratingRunner: ProcessRunner = iptablesProcessRunner;

export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

export async function sh(command: string, args: readonly string[], input?: string): Promise<ProcessResult> {
  const result = await toleratingRunner.run(command, args, input === undefined ? {} : { input });
  if (result.code !== 0) throw new Error(`${command} ${args.join(' ')} failed (${result.code}): ${result.stderr.trim()}`);
  return result;
}

export async function createNetns(prefix = 'dnsplane-ipt'): Promise<string> {
  const name = uniqueName(prefix);
  await sh('ip', ['netns', 'add', name]);
  await sh('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return name;
}

export async function deleteNetns(name: string): Promise<void> {
  await toleratingRunner.run('ip', ['netns', 'del', name]);
}

/**
 * The command prefix that enters `netns`. Not `ip netns exec`: it remounts /sys in a new mount
 * namespace, which hides /sys/fs/bpf, so `-m bpf --object-pinned` could not find its pins.
 * `nsenter --net` switches the network namespace only.
 */
export function enterNetns(netns: string): string[] {
  return ['nsenter', `--net=/run/netns/${netns}`];
}

/** Runs every command inside `netns`. */
export function netnsRunner(netns: string): ProcessRunner {
  const [enter, ...enterArgs] = enterNetns(netns);
  return {
    run: (command, args, options) => toleratingRunner.run(enter as string, [...enterArgs, command, ...args], options),
  };
}

/** Runs a command inside `netns` and fails the test when it fails. */
export async function inNetns(netns: string, command: string, args: readonly string[], input?: string): Promise<string> {
  const result = await netnsRunner(netns).run(command, args, input === undefined ? {} : { input });
  if (result.code !== 0) throw new Error(`${command} ${args.join(' ')} in ${netns} failed (${result.code}): ${result.stderr.trim()}`);
  return result.stdout;
}

