// Runs the nftables driver the way the agent does, for kernel tests inside a lab's node
// namespace: `tsx run-driver.ts install CONFIG` loads the config and resources, compiles the
// desired state, installs it (table, tc programs, pins) and keeps mirroring until SIGTERM,
// when it closes (enforcement stays); `tsx run-driver.ts remove CONFIG` removes everything.
// Progress goes to stdout as JSON lines ({"event":"installed"} …).
import { compile, loadInputs } from '@dnsplane/core';
import { createNftablesDataplane, type MirrorProbeBatch } from '../../src/index.js';

const [mode, configPath] = process.argv.slice(2);
if ((mode !== 'install' && mode !== 'remove') || configPath === undefined) {
  process.stderr.write('usage: run-driver.ts install|remove CONFIG\n');
  process.exit(2);
}
const say = (event: string, fields: Record<string, unknown> = {}): void => {
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
};
const logger = {
  debug: () => undefined,
  info: (obj: object, msg: string) => say('log', { level: 'info', msg, ...obj }),
  warn: (obj: object, msg: string) => say('log', { level: 'warn', msg, ...obj }),
  error: (obj: object, msg: string) => say('log', { level: 'error', msg, ...obj, err: String((obj as { err?: unknown }).err) }),
};

// DNSPLANE_MIRROR_PROBE=<lifetime s>: time every mirrored entry from the moment the kernel
// learned it (its expiry minus the lifetime, max(TTL, minTTL) + extraTTL, the same for every
// name the caller resolves) to the ring-buffer delivery and to the end of the nft write.
const probeLifetime = process.env['DNSPLANE_MIRROR_PROBE'];
const deliveredUs: number[] = [];
const writtenUs: number[] = [];
const batchSizes: number[] = [];
const mirrorProbe = (batch: MirrorProbeBatch): void => {
  const lifetimeNs = BigInt(Number(probeLifetime)) * 1_000_000_000n;
  batchSizes.push(batch.expiryNs.length);
  for (const expiry of batch.expiryNs) {
    const learnedAt = expiry - lifetimeNs;
    deliveredUs.push(Number(batch.deliveredAtNs - learnedAt) / 1000);
    writtenUs.push(Number(batch.writtenAtNs - learnedAt) / 1000);
  }
};

const inputs = await loadInputs(configPath);
const { config } = inputs;
const dataplane = createNftablesDataplane({
  tableName: config.nftables.table,
  markMask: config.nftables.markMask,
  mirrorDrainIntervalMs: config.nftables.mirrorDrainIntervalMs,
  untrackDns: config.nftables.untrackDns,
  answerMark: config.nftables.answerMark,
  pinRoot: config.bpf.pinRoot,
  logger,
  ...(probeLifetime === undefined ? {} : { mirrorProbe }),
});
if (mode === 'remove') {
  await dataplane.remove();
  await dataplane.close();
  say('removed');
} else {
  const state = compile({ config, policies: inputs.policies, endpoints: inputs.endpoints });
  await dataplane.install(state);
  say('installed', { counters: (await dataplane.status()).counters });
  const stop = (): void => {
    void dataplane.close().then(() => {
      if (probeLifetime !== undefined) say('probe', { deliveredUs, writtenUs, batchSizes });
      say('closed');
      process.exit(0);
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  setInterval(() => undefined, 1 << 30); // stay alive: the ring-buffer consumer is on the event loop
}
