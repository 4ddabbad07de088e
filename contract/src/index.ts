export const CONTRACT_VERSION = '0.1.0';
export * from './errors';
export * from './job-spec';
export * from './jobs';
export * from './plugin-run';
export * from './plugins';
export * from './resources';
export * from './runner';
export { int, num, oneOf } from './zod-helpers';
