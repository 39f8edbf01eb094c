// Vitest wiring: one lab per test file, destroyed in afterAll whatever happened in between
// (and, through createLab's handlers, on SIGINT/SIGTERM or process exit as well).
import { afterAll, beforeAll } from 'vitest';
import { createLab, type Lab, type LabOptions } from './lab.js';

/** Registers beforeAll/afterAll hooks; call the returned function inside tests to get the lab. */
export function useLab(options: LabOptions = {}): () => Lab {
  let lab: Lab | undefined;
  beforeAll(async () => {
    lab = await createLab(options);
  });
  afterAll(async () => {
    const report = await lab?.destroy();
    if (report !== undefined && report.problems.length > 0) {
      throw new Error(`lab ${report.id} teardown problems: ${report.problems.join('; ')}`);
    }
  });
  return () => {
    if (lab === undefined) throw new Error('the lab did not come up (see the beforeAll error)');
    return lab;
  };
}
