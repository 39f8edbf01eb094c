export {};
export * from './libbpf.js';
