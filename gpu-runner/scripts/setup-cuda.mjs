#!/usr/bin/env node
// npm run setup:cuda [-- --route nuget|npm] [--from <folder with .tgz files>] [--check]
// ./cgrpo-runner setup-cuda [--route nuget|npm] [--from <folder>] [--check]   (the built runner)
//
// Installs the CUDA execution provider for the engine. Two routes:
//  nuget  (machines with internet): onnxruntime-node's own installer downloads the CUDA 12
//         provider of the installed onnxruntime-node (1.30) from NuGet into its bin folder.
//  npm    (air-gapped from NuGet; npm registry or a folder of tarballs): installs
//         onnxruntime-node@1.29.0 into .ort-cuda/ beside the engine (gpu-runner/.ort-cuda in a
//         checkout, <runner folder>/.ort-cuda in the built runner) and places
//         libonnxruntime_providers_{shared,cuda}.so from com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9
//         (ONNX Runtime 1.29.0 built for CUDA 13) next to its binary. The engine picks that copy
//         up for device 'cuda'/'auto'. Mixing those libraries with the 1.30 core is not supported.
// Default: nuget when api.nuget.org answers, else npm. Ends with the same detection the engine
// runs at start-up, naming any CUDA library still missing (the engine preloads the ones it finds,
// including the nvidia-* pip packages of a local python3, so no LD_LIBRARY_PATH is needed).
//
// `npm run build:runner` bundles this script with the engine's device detection into
// lib/runner/setup-cuda.mjs (esbuild defines CGRPO_RUNNER_BUNDLE there), so the built runner needs
// no TypeScript source: every path below comes from where device.ts finds onnxruntime-node and
// SETUP_CUDA_ORT, which is the same folder the bundled engine looks in.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  ortLocation,
  probeCuda,
  pythonCudaLibraryDirs,
  pythonSitePackages,
  SETUP_CUDA_ORT,
} from '../src/engine/device.ts';

/* global CGRPO_RUNNER_BUNDLE */
const COMMAND =
  typeof CGRPO_RUNNER_BUNDLE !== 'undefined' && CGRPO_RUNNER_BUNDLE
    ? './cgrpo-runner setup-cuda'
    : 'npm run setup:cuda --';
const USAGE = `usage: ${COMMAND} [--route nuget|npm] [--from <folder of .tgz files>] [--check]
  --route nuget  download the CUDA 12 provider of the installed onnxruntime-node from NuGet
  --route npm    install onnxruntime-node@1.29.0 and the CUDA 13 provider from npm (or --from a folder)
  --check        only detect: name what is missing, exit 1 while something is
  (no --route: nuget when api.nuget.org answers, else npm)`;
/** the folder the npm route installs into; the engine finds SETUP_CUDA_ORT by itself */
const cudaDir = path.resolve(SETUP_CUDA_ORT, '..', '..');
const arg = (name) => {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const v = process.argv[i + 1];
  if (v === undefined || v.startsWith('--'))
    throw new Error(`setup.cuda.args: --${name} needs a value\n${USAGE}`);
  return v;
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
  const installer = path.join(ortLocation().packageDir, 'script', 'install.js');
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
  if (from && !existsSync(from))
    throw new Error(`setup.cuda.from: ${from} does not exist; give a folder holding the two .tgz files`);
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
  if (r.error)
    throw new Error(
      `setup.cuda.npm: could not run npm (${r.error.message}); install npm (it comes with Node.js) or use --route nuget`,
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
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    console.log(USAGE);
    return 0;
  }
  let ortDir;
  if (!process.argv.includes('--check')) {
    const route = arg('route') ?? ((await nugetReachable()) ? 'nuget' : 'npm');
    if (route !== 'nuget' && route !== 'npm')
      throw new Error(`setup.cuda.route: --route must be nuget or npm, not ${route}\n${USAGE}`);
    ortDir = route === 'nuget' ? routeNuget() : routeNpm();
  } else if (existsSync(SETUP_CUDA_ORT)) {
    ortDir = SETUP_CUDA_ORT;
  }
  const libDirs = pythonSitePackages().flatMap(pythonCudaLibraryDirs);
  const probe = probeCuda({ ortPath: ortDir, libraryPaths: libDirs });
  console.log(probe.message.replaceAll('npm run setup:cuda', COMMAND.replace(/ --$/, '')));
  if (probe.ok)
    console.log(
      `the engine will preload: ${Object.values(probe.found)
        .filter((p) => /lib(cu|nvrtc)/.test(p))
        .join(', ')}`,
    );
  return probe.ok ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    console.error(String(e?.message ?? e));
    process.exitCode = 1;
  },
);
