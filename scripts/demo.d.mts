// Types of scripts/demo.mjs (the `npm start` demo) for the TypeScript tests that drive it.
import type { ChildProcess } from 'node:child_process';

export declare const DEMO_JOB: Record<string, unknown>;
export declare function evaluationJob(model: string, label: string): Record<string, unknown>;
export declare function wilson(k: number, n: number, z?: number): [number, number];
/** McNemar verdict over the same problems evaluated before and after (one line). */
export declare function verdict(
  before: { row: number; correct: boolean }[],
  after: { row: number; correct: boolean }[],
): string;
export declare function startRunner(opts: {
  url: string;
  registrationKey: string;
  log?: (line: string) => void;
}): Promise<{ child: ChildProcess; stop: () => void }>;
export declare function runDemo(opts: {
  url: string;
  apiKey: string;
  registrationKey: string;
  out?: (line: string) => void;
}): Promise<{ child: ChildProcess; stop: () => void }>;
