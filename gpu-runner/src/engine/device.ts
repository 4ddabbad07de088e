// Execution-provider detection at start-up: what the host can run, and if not, which library
// is missing and what to do about it. Never throws for 'auto'; explicit devices fail with an
// EngineError naming the missing piece.
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

export type Device = 'cpu' | 'cuda' | 'webgpu';
export type DeviceRequest = Device | 'auto';

export interface CudaProbe {
  ok: boolean;
  /** Directory of onnxruntime-node's native binary. */
  binaryDir: string;
  ortVersion: string;
  /** Libraries the CUDA provider needs that were found / not found. */
  found: Record<string, string>;
  missing: string[];
  message: string;
}

/** Locates onnxruntime-node (or the copy at `ortPath`) and its native binary folder. */
export function ortLocation(ortPath?: string): { packageDir: string; binaryDir: string; version: string } {
  const require = createRequire(import.meta.url);
  const pkgJson = require.resolve(`${ortPath ?? 'onnxruntime-node'}/package.json`);
  const packageDir = path.dirname(pkgJson);
  const version = (require(pkgJson) as { version: string }).version;
  const binaryDir = path.join(packageDir, 'bin', 'napi-v6', process.platform, process.arch);
  return { packageDir, binaryDir, version };
}

/** Directories the dynamic loader searches, in its order (LD_LIBRARY_PATH, ldconfig cache, defaults). */
export function librarySearchPath(extra: readonly string[] = []): {
  dirs: string[];
  cache: Map<string, string>;
} {
  const dirs = [...extra, ...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean)];
  const cache = new Map<string, string>();
  try {
    const out = execFileSync('ldconfig', ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    for (const line of out.split('\n')) {
      const m = /^\s*(\S+) .*=> (\S+)$/.exec(line);
      if (m && !cache.has(m[1])) cache.set(m[1], m[2]);
    }
  } catch {
    // no ldconfig (containers, macOS): directories alone
  }
  dirs.push('/usr/local/cuda/lib64', '/usr/lib/x86_64-linux-gnu', '/usr/lib64', '/lib/x86_64-linux-gnu');
  return { dirs, cache };
}

export function findLibrary(
  name: string,
  search: { dirs: string[]; cache: Map<string, string> },
): string | null {
  for (const dir of search.dirs) {
    const p = path.join(dir, name);
    if (existsSync(p)) return p;
  }
  return search.cache.get(name) ?? null;
}

/** The CUDA libraries a provider binary links against, read from its dynamic string table
 *  (DT_NEEDED names sit near the start of the file). */
export function neededCudaLibraries(providerPath: string): string[] {
  const fd = openSync(providerPath, 'r');
  try {
    const buf = Buffer.alloc(8 * 1024 * 1024);
    const n = readSync(fd, buf, 0, buf.length, 0);
    const text = buf.subarray(0, n).toString('latin1');
    const names = new Set<string>();
    for (const m of text.matchAll(/lib(?:cudart|cublasLt|cublas|cudnn|cufft|curand|nvrtc)\.so\.\d+/g))
      names.add(m[0]);
    return [...names].sort();
  } finally {
    closeSync(fd);
  }
}

/** The copy of onnxruntime-node that `npm run setup:cuda` (npm route) installs. */
export const SETUP_CUDA_ORT = path.resolve(
  path.dirname(new URL(import.meta.url).pathname),
  '..',
  '..',
  '.ort-cuda',
  'node_modules',
  'onnxruntime-node',
);

/** Whether the CUDA provider can load here, and if not, exactly what is missing. */
export function probeCuda(options: { ortPath?: string; libraryPaths?: readonly string[] } = {}): CudaProbe {
  const { binaryDir, version } = ortLocation(options.ortPath);
  const found: Record<string, string> = {};
  const missing: string[] = [];
  const provider = path.join(binaryDir, 'libonnxruntime_providers_cuda.so');
  const shared = path.join(binaryDir, 'libonnxruntime_providers_shared.so');
  for (const p of [shared, provider]) {
    if (existsSync(p)) found[path.basename(p)] = p;
    else missing.push(path.basename(p));
  }
  if (missing.length > 0) {
    return {
      ok: false,
      binaryDir,
      ortVersion: version,
      found,
      missing,
      message:
        `engine.device.cuda: ${missing.join(' and ')} not found beside onnxruntime-node ${version} (${binaryDir}). ` +
        'The npm package does not bundle the CUDA provider: run `npm run setup:cuda` (see docs/engine.md).',
    };
  }
  const search = librarySearchPath(options.libraryPaths);
  const needed = neededCudaLibraries(provider);
  if (!needed.some((n) => n.startsWith('libcudnn'))) needed.push('libcudnn.so.9');
  for (const name of needed) {
    const p = findLibrary(name, search);
    if (p) found[name] = p;
    else missing.push(name);
  }
  return {
    ok: missing.length === 0,
    binaryDir,
    ortVersion: version,
    found,
    missing,
    message:
      missing.length === 0
        ? `cuda provider and its libraries found (onnxruntime-node ${version})`
        : `engine.device.cuda: ${missing.join(', ')} not found (searched EngineOptions.cudaLibraryPaths, ` +
          "the local python3's nvidia-* packages, LD_LIBRARY_PATH, the ldconfig cache and /usr/local/cuda/lib64). " +
          `Install the CUDA user-space libraries this provider was built for (onnxruntime-node ${version}), ` +
          'or pass their folders as EngineOptions.cudaLibraryPaths; the engine preloads them by absolute path.',
  };
}

/** site-packages folders of the local python3 (where PyTorch's nvidia-* wheels put CUDA libraries). */
export function pythonSitePackages(): string[] {
  try {
    const out = execFileSync(
      'python3',
      ['-c', 'import site,json;print(json.dumps(site.getsitepackages()))'],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
        timeout: 10_000,
      },
    );
    return JSON.parse(out) as string[];
  } catch {
    return [];
  }
}

/** Libraries to load by absolute path before onnxruntime creates a CUDA session, dependencies
 *  first. Loaded with RTLD_GLOBAL|RTLD_NODELETE they satisfy the provider's DT_NEEDED entries by
 *  soname, so no LD_LIBRARY_PATH (which glibc reads only at process start) is needed. cuDNN's
 *  sub-libraries, which it opens by name at run time, come along. */
export function cudaPreloadOrder(found: Record<string, string>): string[] {
  const rank = (name: string) =>
    [
      'libcudart',
      'libnvrtc',
      'libcublasLt',
      'libcublas',
      'libcufft',
      'libcurand',
      'libcudnn_graph',
      'libcudnn_',
    ].findIndex((p) => name.startsWith(p));
  const paths = Object.entries(found)
    .filter(([name]) => /^lib(cu|nvrtc)/.test(name))
    .map(([, p]) => p);
  const cudnn = paths.find((p) => path.basename(p).startsWith('libcudnn.so'));
  if (cudnn) {
    const dir = path.dirname(cudnn);
    for (const f of readdirSync(dir)) if (/^libcudnn_.*\.so\.\d+$/.test(f)) paths.push(path.join(dir, f));
  }
  const order = (p: string) => {
    const r = rank(path.basename(p));
    return r < 0 ? 99 : r;
  };
  return [...new Set(paths)].sort((a, b) => order(a) - order(b));
}

/** Whether a Vulkan loader exists (WebGPU's Dawn backend needs it on Linux). */
export function hasVulkanLoader(libraryPaths: readonly string[] = []): boolean {
  return findLibrary('libvulkan.so.1', librarySearchPath(libraryPaths)) !== null;
}

/** Directories of the nvidia-* pip packages of a site-packages folder (CUDA 13 wheels etc.). */
export function pythonCudaLibraryDirs(sitePackages: string): string[] {
  const root = path.join(sitePackages, 'nvidia');
  if (!existsSync(root)) return [];
  const dirs: string[] = [];
  for (const pkg of readdirSync(root)) {
    for (const sub of ['lib', path.join('cu13', 'lib'), path.join('cu12', 'lib')]) {
      const d = path.join(root, pkg, sub);
      if (existsSync(d)) dirs.push(d);
    }
  }
  return dirs;
}
