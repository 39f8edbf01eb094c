export {};
export * from './model.js';
export * from './names.js';
export * from './domain-match.js';
export * from './compile.js';
export * from './render.js';
export * from './saved-table.js';
export * from './backend.js';
export * from './driver.js';
