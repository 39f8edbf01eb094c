// Child of libbpf.kernel.test.ts, run with --expose-gc: a program taken from an object that
// is then dropped must survive garbage collection (the object must not be closed under it).
// Prints the test-run return value.
import { BpfObjectSpec } from '../../src/libbpf.js';

const [objectPath] = process.argv.slice(2);
if (!objectPath) throw new Error('usage: gc-child.ts <object>');
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');

const spec = BpfObjectSpec.open(objectPath);
const magic = Buffer.alloc(4);
magic.writeUInt32LE(0x600d);
spec.setGlobal('magic', magic);
const program = spec.load().program('tc_magic');
for (let i = 0; i < 5; i++) {
  gc();
  await new Promise((resolve) => setImmediate(resolve));
}
const frame = Buffer.alloc(14 + 20);
frame.writeUInt16BE(0x0800, 12);
process.stdout.write(`${program.testRun({ data: frame }).retval}\n`);
