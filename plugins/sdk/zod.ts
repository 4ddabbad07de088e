// zod for plugin config schemas, as a module to import with `import * as z from '@cgrpo/plugins/sdk/zod'`.
// A namespace import of this module lets esbuild keep only the zod functions a plugin calls; the SDK's
// own `z` export (a namespace re-exported through a module) cannot be tree-shaken and carries all of
// zod with its 40 locales into the bundle (~450 KB).
export * from 'zod';
