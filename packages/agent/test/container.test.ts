import { describe, expect, it } from 'vitest';
import { isNotSupported, loadInputs } from '@dnsplane/core';
import { createContainer, resolve } from '../src/container.js';
import { DRIVERS, DriverRegistry } from '../src/drivers.js';
import { configTree, testEnvironment } from './helpers.js';

describe('dependency injection', () => {
  it('builds the driver the config names, through the registry bound in the container', async () => {
    const tree = await configTree({ dataplane: 'iptables' });
    try {
      const t = testEnvironment({ kinds: ['nftables', 'iptables'] });
      const container = createContainer(t.environment, { logLevel: 'silent' });
      const inputs = await loadInputs(tree.configPath);
      const dataplane = resolve(container, 'dataplaneProvider')(inputs.config.dataplane, inputs);
      expect(dataplane.kind).toBe('iptables');
      expect(t.dataplanes).toEqual([dataplane]);
      expect(resolve(container, 'drivers')).toBe(resolve(container, 'drivers'));
      expect(resolve(container, 'logger')).toBe(resolve(container, 'logger'));
      expect(resolve(container, 'clock')).toBe(t.environment.clock);

      let error: unknown;
      try {
        resolve(container, 'dataplaneProvider')('ebpf', inputs);
      } catch (caught) {
        error = caught;
      }
      expect(isNotSupported(error)).toBe(true);
      expect((error as Error).message).toBe('dataplane ebpf is not implemented yet');
    } finally {
      await tree.cleanup();
    }
  });

  it('registers every driver whose package exports a factory, once per kind', () => {
    const kinds = DRIVERS.map((d) => d.kind);
    expect(new Set(kinds).size).toBe(kinds.length);
    expect(new DriverRegistry(DRIVERS).implemented()).toEqual(kinds);
    expect(kinds).toContain('nftables');
  });
});
