// Critique-GRPO and GRPO as pure functions (docs/critique-grpo.md §6): no I/O, no model, no clock.
export * from './aggregate';
export * from './config';
export * from './dapo';
export * from './group';
export * from './loss';
export * from './prompt';
export * from './rewards';
export * from './rng';
export * from './shaping';
export * from './token-loss';
