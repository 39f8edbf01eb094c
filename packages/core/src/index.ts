export * from './desired-state.js';
export * from './domain-pattern-model.js';
export * from './learned.js';
export * from './dataplane.js';
export * from './errors.js';
export * from './runtime.js';
export * from './domain-pattern.js';
export * from './selector.js';
