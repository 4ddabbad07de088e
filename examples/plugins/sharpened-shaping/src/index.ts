import { defineShaping } from '@cgrpo/plugins/sdk';

// A shaping function is an expression, not code: the runner compiles it into the training graph
// and differentiates it there. alpha < 1 lifts the weight of unlikely (surprising) refinement
// tokens compared with the default p / (p + gamma). A job may override the params with
// "config": { "params": { "gamma": 0.2 } }.
export default defineShaping({
  expression: 'p ^ alpha / (p ^ alpha + gamma)',
  params: { alpha: 0.5, gamma: 0.1 },
});
