// The npm registry this project's machines reach serves Linux builds only, so `npm install` cannot
// record the other platforms' optional binaries (biome, workerd) in package-lock.json, and `npm ci`
// then refuses the lock as out of sync ("Missing: @biomejs/cli-darwin-x64@ from lock file").
// This adds a platform-tagged entry for each optional dependency the lock lacks, so `npm ci` sees a
// complete lock and skips those entries on Linux as it does any foreign-platform optional package.
// Run it after any `npm install` that rewrites the lock: `node scripts/lock-platform-stubs.mjs`.
import { readFileSync, writeFileSync } from 'node:fs';

const file = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(file, 'utf8'));
const packages = lock.packages;

function platformOf(name) {
  const os = /android/.test(name)
    ? 'android'
    : /darwin/.test(name)
      ? 'darwin'
      : /win(32|dows)/.test(name)
        ? 'win32'
        : /linux/.test(name)
          ? 'linux'
          : null;
  const cpu = /arm64/.test(name) ? 'arm64' : /(x64|-64$)/.test(name) ? 'x64' : null;
  const libc = os === 'linux' ? (/musl/.test(name) ? 'musl' : 'glibc') : null;
  return { os, cpu, libc };
}

let added = 0;
for (const [path, entry] of Object.entries(packages)) {
  for (const [dep, version] of Object.entries(entry.optionalDependencies ?? {})) {
    const where = `${path ? `${path}/` : ''}node_modules/${dep}`;
    if (packages[where] || packages[`node_modules/${dep}`]) continue;
    const { os, cpu, libc } = platformOf(dep);
    if (!os || !cpu) continue; // not a platform binary: leave it for npm to report
    packages[`node_modules/${dep}`] = {
      version,
      ...(entry.dev ? { dev: true } : {}),
      optional: true,
      os: [os],
      cpu: [cpu],
      ...(libc ? { libc: [libc] } : {}),
    };
    added += 1;
  }
}
lock.packages = Object.fromEntries(
  Object.entries(packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : a > b ? 1 : 0)),
);
writeFileSync(file, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`lock-platform-stubs: added ${added} foreign-platform optional entries`);
