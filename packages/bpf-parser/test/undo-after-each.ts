// Undo steps a test registers (close a program, remove pins), run in reverse after each test —
// every one of them, also when an earlier one throws.
import { afterEach } from 'vitest';

export function undoAfterEach(): Array<() => void> {
  const steps: Array<() => void> = [];
  afterEach(() => {
    for (const undo of steps.splice(0).reverse()) {
      try {
        undo();
      } catch {
        // keep cleaning
      }
    }
  });
  return steps;
}
