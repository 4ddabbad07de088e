import { describe, expect, it } from 'vitest';
import { resolveAlgoConfig } from './config';
import { assembleGroup } from './group';
import { createRng } from './rng';

const cgrpo = resolveAlgoConfig('critique-grpo', { groupSize: 4 });
const expectAdvantages = (group: { sequences: { advantage: number }[] }, expected: number[]) => {
  expect(group.sequences).toHaveLength(expected.length);
  for (const [i, s] of group.sequences.entries()) expect(s.advantage).toBeCloseTo(expected[i], 12);
};
const missing = (reason: string) => ({ missing: true as const, reason });

describe('assembleGroup', () => {
  it('a non-triggered question keeps its n initial responses (TV1 row-free case)', () => {
    const group = assembleGroup({ initialRewards: [1, 0, 0, 0] }, cgrpo, createRng(1));
    expect(group.triggered).toBe(false);
    expect(group.sequences.map((s) => [s.kind, s.index, s.advantage])).toEqual([
      ['initial', 0, 0.75],
      ['initial', 1, -0.25],
      ['initial', 2, -0.25],
      ['initial', 3, -0.25],
    ]);
    expect(group.admittedRefinements).toEqual([]);
  });

  it('an all-wrong question admits one correct refinement and gets TV1 row 2 advantages', () => {
    const group = assembleGroup(
      { initialRewards: [0, 0, 0, 0], refinementRewards: [0, 0, 1, 0] },
      cgrpo,
      createRng(2),
    );
    expect(group.triggered).toBe(true);
    expect(group.admittedRefinements).toEqual([2]);
    expect(group.sequences.map((s) => s.kind)).toEqual([
      'initial',
      'initial',
      'initial',
      'initial',
      'refinement',
    ]);
    expectAdvantages(group, [-0.2, -0.2, -0.2, -0.2, 0.8]);
    expect(group.zeroSignal).toBe(false);
  });

  it('all-wrong refinements give a zero-signal group under allIncorrect (TV6)', () => {
    const group = assembleGroup(
      { initialRewards: [0, 0, 0, 0], refinementRewards: [0, 0, 0, 0] },
      cgrpo,
      createRng(3),
    );
    expect(group.sequences).toHaveLength(5);
    expect(group.zeroSignal).toBe(true);
  });

  it('trigger "always" refines a question with a correct answer (TV1 rows 1 and 3)', () => {
    const config = resolveAlgoConfig('critique-grpo', { refineTrigger: 'always' });
    const right = assembleGroup(
      { initialRewards: [1, 0, 0, 0], refinementRewards: [1, 0, 0, 0] },
      config,
      createRng(4),
    );
    expectAdvantages(right, [0.6, -0.4, -0.4, -0.4, 0.6]);
    const wrong = assembleGroup(
      { initialRewards: [1, 0, 0, 0], refinementRewards: [0, 0, 0, 0] },
      config,
      createRng(4),
    );
    expectAdvantages(wrong, [0.8, -0.2, -0.2, -0.2, -0.2]);
  });

  it('leaves failed verifier and critic values out of advantages, never NaN', () => {
    const group = assembleGroup(
      {
        initialRewards: [0, missing('verifier timeout after 10000 ms'), 0, 0],
        refinementRewards: [
          missing('critic: endpoint unreachable'),
          1,
          missing('critic: endpoint unreachable'),
          0,
        ],
      },
      cgrpo,
      createRng(5),
    );
    expect(group.excluded).toEqual([
      { kind: 'initial', index: 1, reason: 'verifier timeout after 10000 ms' },
      { kind: 'refinement', index: 0, reason: 'critic: endpoint unreachable' },
      { kind: 'refinement', index: 2, reason: 'critic: endpoint unreachable' },
    ]);
    expect(group.sequences.map((s) => [s.kind, s.index])).toEqual([
      ['initial', 0],
      ['initial', 2],
      ['initial', 3],
      ['refinement', 1],
    ]);
    for (const s of group.sequences) expect(Number.isFinite(s.advantage)).toBe(true);
    expectAdvantages(group, [-0.25, -0.25, -0.25, 0.75]);
  });

  it('a question whose every reward is missing is an empty group, not an error', () => {
    const group = assembleGroup({ initialRewards: [missing('a'), missing('b')] }, cgrpo, createRng(6));
    expect(group.sequences).toEqual([]);
    expect(group.triggered).toBe(false);
    expect(group.excluded).toHaveLength(2);
  });

  it('all refinements missing: the group is the initial responses alone', () => {
    const group = assembleGroup(
      { initialRewards: [0, 0], refinementRewards: [missing('x'), missing('y')] },
      cgrpo,
      createRng(7),
    );
    expect(group.admittedRefinements).toEqual([]);
    expect(group.sequences).toHaveLength(2);
  });

  it('grpo never refines, and rejects refinement input', () => {
    const grpo = resolveAlgoConfig('grpo', {}, 'dr-grpo');
    expect(assembleGroup({ initialRewards: [0, 0, 0] }, grpo, createRng(8)).triggered).toBe(false);
    expect(() =>
      assembleGroup({ initialRewards: [0, 0], refinementRewards: [1, 0] }, grpo, createRng(8)),
    ).toThrow(/refinements_unexpected/);
    expect(() => assembleGroup({ initialRewards: [0, 0] }, cgrpo, createRng(8))).toThrow(
      /refinements_expected/,
    );
  });

  it('applies the DAPO overlong penalty to the reward, not to the verifier score', () => {
    const dapo = resolveAlgoConfig('grpo', { maxResponseLength: 100, overlongBuffer: 20 }, 'dapo');
    const group = assembleGroup(
      { initialRewards: [1, 1, 0], initialLengths: [50, 90, 120] },
      dapo,
      createRng(9),
    );
    expect(group.sequences.map((s) => s.reward)).toEqual([1, 0.5, -1]);
    expect(group.sequences.map((s) => s.verifierReward)).toEqual([1, 1, 0]);
    expect(() => assembleGroup({ initialRewards: [1, 0] }, dapo, createRng(9))).toThrow(/missing_lengths/);
  });

  it('is reproducible for a given rng stream', () => {
    const input = { initialRewards: [0, 0, 0, 0], refinementRewards: [1, 1, 1, 1] };
    const picks = Array.from(
      { length: 20 },
      (_, q) => assembleGroup(input, cgrpo, createRng(99, 'step-1', q)).admittedRefinements[0],
    );
    const again = Array.from(
      { length: 20 },
      (_, q) => assembleGroup(input, cgrpo, createRng(99, 'step-1', q)).admittedRefinements[0],
    );
    expect(picks).toEqual(again);
    expect(new Set(picks).size).toBeGreaterThan(1);
  });
});

describe('trainingSequences', () => {
  it('attaches the runner samples by kind and index', async () => {
    const { trainingSequences } = await import('./group');
    const group = assembleGroup({ initialRewards: [0, 0], refinementRewards: [0, 1] }, cgrpo, createRng(1));
    const seqs = trainingSequences(group, 'q7', ['y0', 'y1'], ['z0', 'z1']);
    expect(seqs.map((s) => [s.kind, s.sample, s.question])).toEqual([
      ['initial', 'y0', 'q7'],
      ['initial', 'y1', 'q7'],
      ['refinement', 'z1', 'q7'],
    ]);
    expect(() => trainingSequences(group, 'q7', ['y0', 'y1'], [])).toThrow(/missing_sample/);
  });
});
