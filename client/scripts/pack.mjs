// Builds the two installable packages and packs them with `npm pack`:
//   @cgrpo/client  — the typed API client + webhook verification (dist/index.js + .d.ts) and the
//                    `cgrpo` CLI (dist/cli.js); workspace code is bundled, npm deps stay deps.
//   @cgrpo/plugins — the plugin SDK only (`@cgrpo/plugins/sdk`: dist/sdk/index.js + .d.ts).
// Inside the monorepo both packages keep exporting TypeScript source; the published package.json
// is written into a staging folder (client/dist/<name>/) whose `exports` point at the built JS.
//
//   node client/scripts/pack.mjs [outDir]    → prints the two tarball paths (JSON)
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const clientDir = path.join(root, 'client');
const lock = JSON.parse(readFileSync(path.join(root, 'package-lock.json'), 'utf8'));
const versionOf = (name) =>
  lock.packages[`client/node_modules/${name}`]?.version ?? lock.packages[`node_modules/${name}`]?.version;

/** Runtime deps of the published client: what its bundled code imports from npm. */
const CLIENT_DEPS = ['cli-progress', 'cli-table3', 'commander', 'yaml', 'zod'];
/** Imported only by the offline plugin commands (`cgrpo plugins|verify|critique`), loaded lazily. */
const PLUGIN_TOOL_DEPS = [
  'esbuild',
  'isolated-vm',
  'mathjs',
  'quickjs-emscripten',
  '@huggingface/inference',
  'tsx',
];

function tsc(args) {
  execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), ...args], {
    cwd: root,
    stdio: 'inherit',
  });
}

/** Adds `.js` to relative specifiers in emitted .d.ts files (ESM consumers need it). */
function fixDts(dir) {
  for (const name of readdirSync(dir)) {
    const file = path.join(dir, name);
    if (statSync(file).isDirectory()) fixDts(file);
    else if (name.endsWith('.d.ts')) {
      const text = readFileSync(file, 'utf8').replace(
        /(from\s+|import\()(['"])(\.{1,2}\/[^'"]+?)(?<!\.js)\2/g,
        (_, pre, q, spec) => `${pre}${q}${spec}.js${q}`,
      );
      writeFileSync(file, text);
    }
  }
}

function declarations(files, outDir, paths = {}) {
  const cfg = path.join(outDir, 'tsconfig.dts.json');
  writeFileSync(
    cfg,
    JSON.stringify({
      extends: path.join(root, 'tsconfig.base.json'),
      compilerOptions: {
        noEmit: false,
        declaration: true,
        emitDeclarationOnly: true,
        rootDir: root,
        outDir: path.join(outDir, 'types'),
        types: ['node'],
        typeRoots: [path.join(root, 'node_modules', '@types')],
        baseUrl: root,
        paths,
      },
      files: files.map((f) => path.join(root, f)),
    }),
  );
  tsc(['-p', cfg]);
  rmSync(cfg);
  fixDts(path.join(outDir, 'types'));
}

export async function buildClient(stage) {
  const common = {
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: [...CLIENT_DEPS, ...PLUGIN_TOOL_DEPS, 'standardwebhooks'],
    logLevel: 'warning',
  };
  await build({
    ...common,
    entryPoints: [path.join(clientDir, 'src', 'index.ts')],
    outfile: path.join(stage, 'dist', 'index.js'),
  });
  await build({
    ...common,
    entryPoints: { cli: path.join(clientDir, 'src', 'cli.ts') },
    outdir: path.join(stage, 'dist'),
    splitting: true,
    chunkNames: 'chunks/[name]-[hash]',
  });
  mkdirSync(path.join(stage, 'bin'), { recursive: true });
  writeFileSync(
    path.join(stage, 'bin', 'cgrpo.mjs'),
    "#!/usr/bin/env node\nimport { main } from '../dist/cli.js';\nprocess.exitCode = await main(process.argv.slice(2));\n",
    { mode: 0o755 },
  );
  declarations(['client/src/index.ts'], path.join(stage, 'dist'));
  const own = JSON.parse(readFileSync(path.join(clientDir, 'package.json'), 'utf8'));
  writeFileSync(
    path.join(stage, 'package.json'),
    `${JSON.stringify(
      {
        name: own.name,
        version: own.version,
        description: 'cgrpo client: typed API client, webhook verification and the `cgrpo` CLI',
        type: 'module',
        license: own.license,
        engines: { node: '>=20' },
        exports: {
          '.': { types: './dist/types/client/src/index.d.ts', default: './dist/index.js' },
        },
        types: './dist/types/client/src/index.d.ts',
        bin: { cgrpo: './bin/cgrpo.mjs' },
        files: ['dist', 'bin'],
        dependencies: Object.fromEntries(CLIENT_DEPS.map((d) => [d, versionOf(d)])),
      },
      null,
      2,
    )}\n`,
  );
}

export async function buildPluginSdk(stage) {
  await build({
    entryPoints: [path.join(root, 'plugins', 'sdk', 'index.ts')],
    outfile: path.join(stage, 'dist', 'sdk', 'index.js'),
    bundle: true,
    platform: 'neutral',
    format: 'esm',
    target: 'es2022',
    external: ['zod'],
    logLevel: 'warning',
  });
  // The contract's types come along as source-emitted .d.ts (the SDK imports types from it).
  declarations(['plugins/sdk/index.ts'], path.join(stage, 'dist'), {
    '@cgrpo/contract': ['contract/src/index.ts'],
  });
  const sdkDts = path.join(stage, 'dist', 'types', 'plugins', 'sdk', 'index.d.ts');
  writeFileSync(
    sdkDts,
    readFileSync(sdkDts, 'utf8').replaceAll("'@cgrpo/contract'", "'../../contract/src/index.js'"),
  );
  const own = JSON.parse(readFileSync(path.join(root, 'plugins', 'package.json'), 'utf8'));
  writeFileSync(
    path.join(stage, 'package.json'),
    `${JSON.stringify(
      {
        name: own.name,
        version: own.version,
        description: 'cgrpo plugin SDK: defineVerifier, defineCritic, defineShaping',
        type: 'module',
        license: own.license,
        engines: { node: '>=20' },
        exports: {
          './sdk': { types: './dist/types/plugins/sdk/index.d.ts', default: './dist/sdk/index.js' },
        },
        files: ['dist'],
        dependencies: { zod: versionOf('zod') },
      },
      null,
      2,
    )}\n`,
  );
}

export async function packAll(outDir = path.join(clientDir, 'dist', 'tarballs')) {
  mkdirSync(outDir, { recursive: true });
  const stages = {
    client: path.join(clientDir, 'dist', 'cgrpo-client'),
    sdk: path.join(clientDir, 'dist', 'cgrpo-plugins'),
  };
  for (const s of Object.values(stages)) rmSync(s, { recursive: true, force: true });
  await buildClient(stages.client);
  await buildPluginSdk(stages.sdk);
  const tarballs = {};
  for (const [k, dir] of Object.entries(stages)) {
    const out = execFileSync('npm', ['pack', '--json', '--pack-destination', outDir], {
      cwd: dir,
      encoding: 'utf8',
    });
    tarballs[k] = path.join(outDir, JSON.parse(out)[0].filename);
  }
  return tarballs;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.log(
    JSON.stringify(await packAll(process.argv[2] ? path.resolve(process.argv[2]) : undefined), null, 2),
  );
}
