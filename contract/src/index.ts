export const CONTRACT_VERSION = '0.1.0';
export * from './errors';
export * from './plugins';
