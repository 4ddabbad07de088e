export interface WireTensor {
  type: string;
  dims: number[];
  data: ArrayBufferView | ArrayLike<number> | ArrayLike<bigint>;
}
export interface HostOptions {
  ortPath?: string;
  executionProviders?: unknown[];
  threads?: number;
  graphOptimization?: 'disabled' | 'basic' | 'extended' | 'all';
  preload?: string[];
}
export declare function preload(paths: string[]): string[];
export interface RunOptions {
  fetch?: string[];
  /** State the run's inputs are taken from when not fed. */
  stateKey?: string;
  /** Read-only fallback state for inputs neither fed nor in `stateKey` (shared weights). */
  baseStateKey?: string;
  bind?: Record<string, string>;
  repeat?: number;
}
export declare class SessionHost {
  constructor(options?: HostOptions);
  readonly preloadErrors: string[];
  version(): string;
  load(hash: string, bytes: Uint8Array): Promise<{ inputNames: string[]; outputNames: string[] }>;
  has(hash: string): boolean;
  setState(key: string, values: Record<string, WireTensor>): void;
  getState(key: string, names?: string[]): Record<string, WireTensor>;
  dropState(key: string): void;
  run(
    hash: string,
    feeds: Record<string, WireTensor>,
    options?: RunOptions,
  ): Promise<{ outputs: Record<string, WireTensor>; ms: number }>;
  release(hash: string): Promise<void>;
}
