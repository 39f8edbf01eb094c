import { describe, expect, it } from 'vitest';
import { isNotSupported, loadInputs, systemClock, systemProcessRunner, type DnsplaneConfig } from '@dnsplane/core';
import pino from 'pino';
import { createContainer, resolve } from '../src/container.js';
import { DRIVERS, DriverRegistry, type DriverContext } from '../src/drivers.js';
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

  it("names in builtFrom exactly the config fields each driver's factory reads (what a running daemon cannot change)", async () => {
    const tree = await configTree();
    try {
      const { config } = await loadInputs(tree.configPath);
      for (const registration of DRIVERS) {
        const read = new Set<string>();
        // Records the path of every value the factory takes that is not an object to look into.
        const recording = (value: object, prefix: string): object =>
          new Proxy(value, {
            get(target, key, receiver) {
              const found: unknown = Reflect.get(target, key, receiver);
              if (typeof key !== 'string') return found;
              const path = prefix === '' ? key : `${prefix}.${key}`;
              if (typeof found === 'object' && found !== null && !Array.isArray(found)) return recording(found, path);
              read.add(path);
              return found;
            },
          });
        const context: DriverContext = {
          config: recording(config, '') as DnsplaneConfig,
          configFile: tree.configPath,
          logger: pino({ level: 'silent' }),
          clock: systemClock,
          runner: systemProcessRunner,
        };
        registration.create(context);
        expect([...read].sort(), registration.kind).toEqual([...registration.builtFrom].sort());
      }
    } finally {
      await tree.cleanup();
    }
  });
});
