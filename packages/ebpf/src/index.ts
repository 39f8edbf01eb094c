export * from './tables.js';
export * from './encode.js';
export * from './render.js';
export * from './interfaces.js';
export * from './ebpf-dataplane.js';
export * from './generation.js';
