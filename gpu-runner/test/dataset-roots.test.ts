// `file:` datasets are read only inside the runner's data roots (its working directory and
// CGRPO_DATA_ROOTS), symlinks followed: a job cannot make a runner read /etc/passwd.
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { confinedPath, dataRoots } from '../src/job/dataset';

describe('file: datasets', () => {
  const root = mkdtempSync(join(tmpdir(), 'roots-'));
  mkdirSync(join(root, 'data'));
  writeFileSync(join(root, 'data', 'a.jsonl'), '{}\n');
  symlinkSync('/etc/passwd', join(root, 'data', 'escape.jsonl'));

  it('reads a file inside a root, by relative path or file:// URL', () => {
    expect(confinedPath(`file://${join(root, 'data', 'a.jsonl')}`, 'datasets.train', [root])).toBe(
      join(root, 'data', 'a.jsonl'),
    );
  });

  it('refuses paths that leave every root, through .. or a symlink, naming the field', () => {
    for (const uri of [
      'file:../../../../etc/passwd',
      'file:/etc/passwd',
      `file:${join(root, 'data', 'escape.jsonl')}`,
    ])
      expect(() => confinedPath(uri, 'datasets.train', [root])).toThrow(
        /datasets\.train\.uri: .* outside this runner's data roots/,
      );
  });

  it('takes extra roots from CGRPO_DATA_ROOTS', () => {
    expect(dataRoots({ CGRPO_DATA_ROOTS: `${root}:/srv/data` })).toEqual([process.cwd(), root, '/srv/data']);
  });
});
