#!/usr/bin/env -S node --no-node-snapshot
// --no-node-snapshot: isolated-vm, the plugin sandbox's V8 engine, needs it on Node >= 20 (without
// it the sandbox falls back to QuickJS).
// The CLI ships as TypeScript source inside the workspace; tsx compiles it on the fly.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli.ts');
process.exitCode = await main(process.argv.slice(2));
