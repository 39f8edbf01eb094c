// Test doubles for the agent: an environment that captures output and logs, a fake driver
// registry, temporary config trees, a manual clock and condition waits with deadlines.
import { EventEmitter } from 'node:events';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { FakeDataplane, DATAPLANE_KINDS, loadConfig, loadInputs, systemProcessRunner, type Clock, type DataplaneKind } from '@dnsplane/core';
import type pino from 'pino';
import { createContainer, resolve } from '../src/container.js';
import { Daemon, type DaemonOptions } from '../src/daemon.js';
import { DRIVERS, type DriverRegistration } from '../src/drivers.js';
import { fsWatchFactory, type AgentEnvironment, type AgentSignal } from '../src/environment.js';

export interface ManualClock extends Clock {
  set(ms: number): void;
  advance(ms: number): void;
}

export function manualClock(start = Date.UTC(2026, 0, 1)): ManualClock {
  let now = start;
  return { now: () => now, set: (ms) => (now = ms), advance: (ms) => (now += ms) };
}

export interface TestEnvironment {
  readonly environment: AgentEnvironment;
  readonly stdout: () => string;
  readonly stderr: () => string;
  readonly logs: Array<Record<string, unknown>>;
  readonly signals: EventEmitter;
  /** Every fake dataplane the registry built, in order. */
  readonly dataplanes: FakeDataplane[];
  readonly clock: ManualClock;
}

/** Fake drivers for the given kinds; each build is recorded in `into`. */
export function fakeDrivers(kinds: readonly DataplaneKind[], clock: Clock, into: FakeDataplane[]): DriverRegistration[] {
  return kinds.map((kind) => ({
    kind,
    builtFrom: DRIVERS.find((d) => d.kind === kind)?.builtFrom ?? [],
    create: () => {
      const dataplane = new FakeDataplane({ kind, clock });
      into.push(dataplane);
      return dataplane;
    },
  }));
}

export function testEnvironment(
  overrides: Partial<AgentEnvironment> & { readonly kinds?: readonly DataplaneKind[] } = {},
): TestEnvironment {
  let out = '';
  let err = '';
  const logs: Array<Record<string, unknown>> = [];
  const signals = new EventEmitter();
  const dataplanes: FakeDataplane[] = [];
  const clock = manualClock();
  const { kinds, ...rest } = overrides;
  const environment: AgentEnvironment = {
    stdout: { write: (text) => void (out += text) },
    stderr: { write: (text) => void (err += text) },
    env: {},
    cwd: process.cwd(),
    clock,
    runner: systemProcessRunner,
    signals: {
      on: (signal: AgentSignal, handler) => void signals.on(signal, handler),
      off: (signal: AgentSignal, handler) => void signals.off(signal, handler),
    },
    logDestination: {
      write: (line: string) => {
        for (const part of line.split('\n')) if (part.trim() !== '') logs.push(JSON.parse(part) as Record<string, unknown>);
      },
    },
    drivers: fakeDrivers(kinds ?? DATAPLANE_KINDS.filter((k) => k === 'nftables'), clock, dataplanes),
    loadInputs,
    loadConfig,
    watch: fsWatchFactory,
    debounceMs: 20,
    persistIntervalMs: 60_000,
    ...rest,
  };
  return { environment, stdout: () => out, stderr: () => err, logs, signals, dataplanes, clock };
}

/** Waits until `condition` holds, checking on every event-loop turn; fails after the deadline. */
export async function waitFor(condition: () => boolean, what: string, deadlineMs = 5_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await new Promise<void>((resolve) => setTimeout(resolve, 5));
  }
}

export interface ConfigTree {
  readonly dir: string;
  readonly configPath: string;
  readonly statePath: string;
  readonly socketPath: string;
  write(relative: string, text: string): Promise<void>;
  cleanup(): Promise<void>;
}

export const WEB_POLICY = `kind: Policy
metadata: { name: web-egress }
spec:
  order: 100
  selector: app == "web"
  egress:
    - action: Allow
      protocol: TCP
      destination: { domains: ["api.example.test", "*.cdn.example.test"], ports: [443] }
    - action: Deny
`;

export const ENDPOINTS = `kind: Endpoint
metadata: { name: web, labels: { app: web } }
spec: { interface: veth-web, addresses: ["198.18.10.2"] }
---
kind: Endpoint
metadata: { name: batch, labels: { app: batch } }
spec: { interface: veth-batch, addresses: ["198.18.10.3", "fd00::10:3"] }
`;

/** A temporary config folder: dnsplane.yaml + policies/, state file and socket inside it. */
export async function configTree(options: { dataplane?: DataplaneKind } = {}): Promise<ConfigTree> {
  const dir = await mkdtemp(join(tmpdir(), 'dnsplane-agent-'));
  const statePath = join(dir, 'state', 'state.json');
  const write = async (relative: string, text: string): Promise<void> => {
    const path = join(dir, relative);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, text);
  };
  await write(
    'dnsplane.yaml',
    `dataplane: ${options.dataplane ?? 'nftables'}
dns: { trustedServers: ["198.18.0.10:53"] }
resources: ["./policies"]
statePath: ${statePath}
`,
  );
  await write('policies/web.yaml', WEB_POLICY);
  await write('policies/endpoints.yaml', ENDPOINTS);
  return {
    dir,
    configPath: join(dir, 'dnsplane.yaml'),
    statePath,
    socketPath: join(dir, 'agent.sock'),
    write,
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

/** A Daemon wired the way the CLI wires it (the container's logger and dataplane provider). */
export function createTestDaemon(
  t: TestEnvironment,
  configPath: string,
  extra: Pick<DaemonOptions, 'socketPath' | 'dataplaneOverride' | 'stateMaxEntries' | 'logLevelFromConfig'> = {},
): Daemon {
  const container = createContainer(t.environment, { logLevel: 'debug' });
  return new Daemon({
    configPath,
    environment: t.environment,
    logger: resolve(container, 'logger') as pino.Logger,
    dataplaneProvider: resolve(container, 'dataplaneProvider'),
    ...extra,
  });
}
