// Types for scripts/start.mjs, so TypeScript callers (bench/api.ts, the demo) get checked.
export declare const root: string;
export declare const localConfigPath: string;
export declare function offlineEnv(extra?: Record<string, string>): NodeJS.ProcessEnv;
export declare function applyLocalMigrations(options?: { stateDir?: string; quiet?: boolean }): Promise<void>;
export interface LocalApi {
  url: string;
  port: number;
  stop(): Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  child: import('node:child_process').ChildProcess;
}
export declare function startLocalApi(options?: {
  port?: number;
  inspectorPort?: number;
  stateDir?: string;
  vars?: Record<string, string>;
  log?: (line: string) => void;
  timeoutMs?: number;
}): Promise<LocalApi>;
export declare function startCronTicker(url: string, everyMs?: number): () => void;
export interface LocalAccount {
  api_url: string;
  account_id: string;
  api_key: string;
  registration_key: string;
}
export declare function ensureLocalAccount(url: string): Promise<LocalAccount>;
export declare function main(argv?: string[]): Promise<void>;
