#!/usr/bin/env node
// npm run setup:cuda [-- --route nuget|npm] [--from <folder with .tgz files>] [--check]
//
// Installs the CUDA execution provider for the engine. Two routes:
//  nuget  (machines with internet): onnxruntime-node's own installer downloads the CUDA 12
//         provider of the installed onnxruntime-node (1.30) from NuGet into its bin folder.
//  npm    (air-gapped from NuGet; npm registry or a folder of tarballs): installs
//         onnxruntime-node@1.29.0 into gpu-runner/.ort-cuda beside the project's copy and places
//         libonnxruntime_providers_{shared,cuda}.so from com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9
//         (ONNX Runtime 1.29.0 built for CUDA 13) next to its binary. The engine picks that copy
//         up for device 'cuda'/'auto'. Mixing those libraries with the 1.30 core is not supported.
// Default: nuget when api.nuget.org answers, else npm. Ends with the same detection the engine
// runs at start-up, naming any CUDA library still missing (the engine preloads the ones it finds,
// including the nvidia-* pip packages of a local python3, so no LD_LIBRARY_PATH is needed).
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const here = path.dirname(new URL(import.meta.url).pathname);
const runnerDir = path.resolve(here, '..');
const cudaDir = path.join(runnerDir, '.ort-cuda');
const arg = (name) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const ASUS4 = 'com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9';
const ORT_FOR_ASUS4 = 'onnxruntime-node@1.29.0';

async function nugetReachable() {
  try {
    const res = await fetch('https://api.nuget.org/v3/index.json', { signal: AbortSignal.timeout(5000) });
    return res.ok;
  } catch {
    return false;
  }
}

function routeNuget() {
  const require = createRequire(path.join(runnerDir, 'package.json'));
  const installer = path.join(
    path.dirname(require.resolve('onnxruntime-node/package.json')),
    'script',
    'install.js',
  );
  console.log(`route nuget: ${installer} --onnxruntime-node-install=cuda12`);
  const r = spawnSync(process.execPath, [installer, '--onnxruntime-node-install=cuda12'], {
    stdio: 'inherit',
  });
  if (r.status !== 0)
    throw new Error('setup.cuda.nuget: the onnxruntime-node installer failed (see above); try --route npm');
  return undefined;
}

function routeNpm() {
  if (process.platform !== 'linux' || process.arch !== 'x64')
    throw new Error(
      `setup.cuda.npm: ${ASUS4} ships linux-x64 libraries only, this is ${process.platform}-${process.arch}`,
    );
  mkdirSync(cudaDir, { recursive: true });
  writeFileSync(path.join(cudaDir, '.gitignore'), '*\n');
  if (!existsSync(path.join(cudaDir, 'package.json')))
    writeFileSync(
      path.join(cudaDir, 'package.json'),
      JSON.stringify({ name: 'cgrpo-ort-cuda', private: true }, null, 2),
    );
  const from = arg('from');
  const specs = from
    ? readdirSync(from)
        .filter((f) => f.endsWith('.tgz'))
        .map((f) => path.resolve(from, f))
    : [ORT_FOR_ASUS4, ASUS4];
  console.log(`route npm: installing ${specs.join(', ')} into ${cudaDir}`);
  const r = spawnSync(
    'npm',
    ['install', '--no-save', '--ignore-scripts', '--no-audit', '--no-fund', ...specs],
    {
      cwd: cudaDir,
      stdio: 'inherit',
      env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' },
    },
  );
  if (r.status !== 0) throw new Error('setup.cuda.npm: npm install failed (see above)');
  const ortDir = path.join(cudaDir, 'node_modules', 'onnxruntime-node');
  const bin = path.join(ortDir, 'bin', 'napi-v6', 'linux', 'x64');
  const plugins = path.join(
    cudaDir,
    'node_modules',
    'com.github.asus4.onnxruntime.linux-x64-gpu',
    'Plugins',
    'Linux',
    'x64',
  );
  for (const lib of ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so']) {
    if (!existsSync(path.join(plugins, lib))) throw new Error(`setup.cuda.npm: ${lib} is not in ${plugins}`);
    copyFileSync(path.join(plugins, lib), path.join(bin, lib));
  }
  return ortDir;
}

async function main() {
  let ortDir;
  if (!process.argv.includes('--check')) {
    const route = arg('route') ?? ((await nugetReachable()) ? 'nuget' : 'npm');
    ortDir = route === 'nuget' ? routeNuget() : routeNpm();
  } else if (existsSync(path.join(cudaDir, 'node_modules', 'onnxruntime-node'))) {
    ortDir = path.join(cudaDir, 'node_modules', 'onnxruntime-node');
  }
  const device = await import(path.join(runnerDir, 'src', 'engine', 'device.ts'));
  const { probeCuda, pythonSitePackages, pythonCudaLibraryDirs } = device;
  const libDirs = pythonSitePackages().flatMap(pythonCudaLibraryDirs);
  const probe = probeCuda({ ortPath: ortDir, libraryPaths: libDirs });
  console.log(probe.message);
  if (probe.ok)
    console.log(
      `the engine will preload: ${Object.values(probe.found)
        .filter((p) => /lib(cu|nvrtc)/.test(p))
        .join(', ')}`,
    );
  process.exit(probe.ok ? 0 : 1);
}

main().catch((e) => {
  console.error(String(e?.message ?? e));
  process.exit(1);
});
