export * from './api';
export * from './webhooks';
