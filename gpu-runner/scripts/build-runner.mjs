#!/usr/bin/env node
// npm run build:runner [-- --out DIR]
//
// A runner that installs without this repository: one folder (and a .tar.gz of it) with the
// runner bundled by esbuild into one ES module, the native packages it loads at run time
// (onnxruntime-node for this platform only, isolated-vm, the QuickJS wasm builds, esbuild for
// plugin import checks) with their dependencies, every bundled package's licence, the tiny demo
// models, a `cgrpo-runner` launcher and a short README. It needs only Node >= 20.
//
//   <out>/cgrpo-runner                launcher (node --no-node-snapshot lib/runner/cgrpo-runner.mjs)
//   <out>/lib/runner/*.mjs            the bundle, the engine's session-host worker and setup-cuda.mjs
//   <out>/.ort-cuda/                  made by `./cgrpo-runner setup-cuda --route npm` (not shipped)
//   <out>/lib/models/                 tiny demo checkpoints
//   <out>/node_modules/               native packages, not bundled
//   <out>/licenses/                   LICENSE of each bundled or shipped package
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';
import { create } from 'tar';

const here = path.dirname(new URL(import.meta.url).pathname);
const runnerDir = path.resolve(here, '..');
const root = path.resolve(runnerDir, '..');
const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const out = path.resolve(arg('out', path.join(root, 'dist', 'cgrpo-runner')));
const version = JSON.parse(readFileSync(path.join(runnerDir, 'package.json'), 'utf8')).version;

/** loaded from disk at run time (native code, wasm files, their own binaries) */
const EXTERNAL = ['onnxruntime-node', 'isolated-vm', 'quickjs-emscripten', 'esbuild'];

function du(p) {
  const s = statSync(p);
  if (!s.isDirectory()) return s.size;
  return readdirSync(p).reduce((n, f) => n + du(path.join(p, f)), 0);
}

function packageDir(name, from = root) {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const p = path.join(dir, 'node_modules', name);
    if (existsSync(path.join(p, 'package.json'))) return p;
    if (dir === path.dirname(dir)) return null;
  }
}

/** `name` and everything it depends on (optional dependencies that are installed included). */
function closure(names) {
  const seen = new Map();
  const visit = (name, from) => {
    if (seen.has(name)) return;
    const dir = packageDir(name, from);
    if (!dir) return;
    seen.set(name, dir);
    const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
    for (const d of Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies })) visit(d, dir);
  };
  for (const n of names) visit(n, root);
  return seen;
}

function licenseOf(dir) {
  const f = readdirSync(dir).find((n) => /^(licen[cs]e|copying)(\.|$)/i.test(n));
  return f ? path.join(dir, f) : null;
}

const t0 = performance.now();
rmSync(out, { recursive: true, force: true });
mkdirSync(path.join(out, 'lib', 'runner'), { recursive: true });

// 1. the runner, bundled
const entry = path.join(out, '.entry.ts');
writeFileSync(
  entry,
  `const major = Number(process.versions.node.split('.')[0]);
if (major < 20) {
  process.stderr.write('cgrpo-runner needs Node >= 20 (this is ' + process.version + ')\\n');
  process.exit(1);
}
const { main } = await import(${JSON.stringify(path.join(runnerDir, 'src', 'cli.ts'))});
process.exitCode = await main(process.argv.slice(2));
`,
);
const result = await build({
  entryPoints: [entry],
  outfile: path.join(out, 'lib', 'runner', 'cgrpo-runner.mjs'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: [...EXTERNAL, '@jitl/*', 'quickjs-emscripten-core'],
  // CommonJS packages inside an ES module bundle still call require() for node builtins
  banner: {
    js: "import { createRequire as __cgrpoRequire } from 'node:module'; const require = __cgrpoRequire(import.meta.url);",
  },
  metafile: true,
  logLevel: 'warning',
  legalComments: 'none',
});
rmSync(entry);
// `./cgrpo-runner setup-cuda`: the CUDA set-up script with the engine's device detection bundled
// in, so it needs no TypeScript source; it installs into <out>/.ort-cuda, where the bundled engine
// (lib/runner/../../.ort-cuda, device.ts's SETUP_CUDA_ORT) looks by itself.
await build({
  entryPoints: [path.join(runnerDir, 'scripts', 'setup-cuda.mjs')],
  outfile: path.join(out, 'lib', 'runner', 'setup-cuda.mjs'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  define: { CGRPO_RUNNER_BUNDLE: 'true' },
  logLevel: 'warning',
  legalComments: 'none',
});
cpSync(
  path.join(runnerDir, 'src', 'engine', 'session-host.mjs'),
  path.join(out, 'lib', 'runner', 'session-host.mjs'),
);

// 2. native packages (onnxruntime-node: this platform's binaries only)
const shipped = closure(EXTERNAL);
const platformDir = `${process.platform}`;
for (const [name, dir] of shipped) {
  const dest = path.join(out, 'node_modules', name);
  cpSync(dir, dest, {
    recursive: true,
    filter: (src) => {
      const rel = path.relative(dir, src);
      if (name === 'onnxruntime-node' && rel.startsWith(path.join('bin', 'napi-v6'))) {
        const parts = rel.split(path.sep);
        if (parts.length >= 3 && parts[2] !== platformDir) return false;
        if (parts.length >= 4 && parts[3] !== process.arch) return false;
      }
      if (name === 'isolated-vm' && (rel.endsWith('.tgz') || rel === 'src' || rel === 'vendor')) return false;
      if (name === 'isolated-vm' && rel.startsWith('prebuilds') && rel.split(path.sep).length >= 2) {
        return rel.split(path.sep)[1].startsWith(`${process.platform}-${process.arch}`);
      }
      return true;
    },
  });
}

// 3. licences of every package in the bundle or in node_modules
const bundled = new Set();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
  if (m) bundled.add(m[1]);
}
mkdirSync(path.join(out, 'licenses'));
const missingLicence = [];
for (const name of [...new Set([...bundled, ...shipped.keys()])].sort()) {
  const dir = shipped.get(name) ?? packageDir(name);
  const lic = dir && licenseOf(dir);
  if (lic) cpSync(lic, path.join(out, 'licenses', `${name.replace('/', '__')}.txt`));
  else missingLicence.push(name);
}
writeFileSync(
  path.join(out, 'licenses', 'PACKAGES.txt'),
  `cgrpo-runner ${version} (Apache-2.0) contains these packages; their licences are in this folder.\n` +
    [...new Set([...bundled, ...shipped.keys()])]
      .sort()
      .map((n) => {
        const dir = shipped.get(n) ?? packageDir(n);
        const pkg = dir ? JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) : {};
        return `${n}@${pkg.version ?? '?'}  ${pkg.license ?? '?'}${missingLicence.includes(n) ? '  (no LICENSE file in the package)' : ''}`;
      })
      .join('\n') +
    '\n',
);

// 4. demo models, launcher, README
cpSync(path.join(runnerDir, 'models'), path.join(out, 'lib', 'models'), { recursive: true });
writeFileSync(
  path.join(out, 'cgrpo-runner'),
  `#!/bin/sh
# --no-node-snapshot: isolated-vm (the plugin sandbox's V8 engine) needs it on Node >= 20
DIR=$(cd "$(dirname "$0")" && pwd)
if [ "$1" = "setup-cuda" ]; then
  shift
  exec "\${NODE:-node}" "$DIR/lib/runner/setup-cuda.mjs" "$@"
fi
exec "\${NODE:-node}" --no-node-snapshot "$DIR/lib/runner/cgrpo-runner.mjs" "$@"
`,
);
chmodSync(path.join(out, 'cgrpo-runner'), 0o755);
writeFileSync(
  path.join(out, 'README.md'),
  `# cgrpo-runner ${version}

Runs cgrpo training jobs on this machine. Needs Node.js >= 20 and nothing else
(built for ${process.platform}-${process.arch}).

    ./cgrpo-runner register --api https://your-api --registration-key cgrpo_rk_...
    ./cgrpo-runner --api https://your-api --token cgrpo_rt_...
    ./cgrpo-runner models pull Qwen/Qwen2.5-0.5B-Instruct     # into the Hugging Face cache
    ./cgrpo-runner models list

Models named \`org/name\` come from the Hugging Face cache (HF_HOME / HF_HUB_CACHE, shared with
Python) and are downloaded from the Hub when missing (HF_TOKEN for gated models, HF_ENDPOINT for
a mirror, HF_HUB_OFFLINE=1 to never download). \`./cgrpo-runner --help\` lists every option.
GPU (CUDA): onnxruntime-node ships no CUDA provider. Install it once, then check:

    ./cgrpo-runner setup-cuda                 # nuget when api.nuget.org answers, else npm
    ./cgrpo-runner setup-cuda --route npm [--from <folder of .tgz files>]   # into .ort-cuda/
    ./cgrpo-runner setup-cuda --check         # names any missing library, exit 1 until none is

The runner then uses the GPU with \`--device cuda\` (or auto). Details: docs/engine.md in the cgrpo
repository. Licences: licenses/.
`,
);

// 5. the tarball
const tarball = `${out}.tar.gz`;
rmSync(tarball, { force: true });
await create({ gzip: true, file: tarball, cwd: path.dirname(out), portable: true }, [path.basename(out)]);

const mib = (n) => `${(n / 2 ** 20).toFixed(1)} MiB`;
console.log(
  `cgrpo-runner ${version}: ${out} (${mib(du(out))}, bundle ${mib(du(path.join(out, 'lib', 'runner', 'cgrpo-runner.mjs')))}, node_modules ${mib(du(path.join(out, 'node_modules')))}), ${tarball} (${mib(statSync(tarball).size)}) in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
);
if (missingLicence.length > 0)
  console.log(
    `packages without a LICENSE file (listed in licenses/PACKAGES.txt): ${missingLicence.join(', ')}`,
  );
