export {};
export * from './libbpf.js';
export * from './name-hash.js';
export * from './maps.js';
export * from './domain-table.js';
export * from './counters.js';
export * from './events.js';
export * from './parser-program.js';
export * from './membership-match.js';
