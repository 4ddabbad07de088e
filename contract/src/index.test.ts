import { expect, it } from 'vitest';
import { CONTRACT_VERSION } from './index';

it('exports a version', () => {
  expect(CONTRACT_VERSION).toMatch(/^\d+\.\d+\.\d+$/);
});
