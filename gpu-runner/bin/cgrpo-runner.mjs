#!/usr/bin/env node
// The runner ships as TypeScript source inside the workspace; tsx compiles it on the fly.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli.ts');
process.exitCode = await main(process.argv.slice(2));
