import { Validator } from '@cfworker/json-schema';
import type { FieldError, PluginManifest } from '@cgrpo/contract';
import { checkJsonShape, MANIFEST_LIMITS } from './json-limits';

// Bounds on what one account may put into the shared plugin registry, checked at publish before
// anything is stored: plugin name and version lengths, semver numbers that fit an integer, and a
// config_schema that is small, shallow and compiles as a JSON Schema. A stored row is also read
// defensively (readStoredManifest), so one bad row can never fail another account's listing.

export const PLUGIN_NAME_LIMITS = {
  /** Characters of the owner and of the name part of `<owner>/<name>`. */
  maxPartChars: 64,
  /** Characters of the whole version string (`1.2.3-rc.1`). */
  maxVersionChars: 64,
  /** Largest major, minor or patch number. */
  maxVersionNumber: 999_999_999,
  /** Bytes of config_schema once serialised. */
  maxConfigSchemaBytes: 32 * 1024,
} as const;

const SEMVER = /^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?$/;

/** Problems with `<owner>/<name>` and a version, at `path` (e.g. `manifest.name`, `verifier.plugin`). */
export function pluginNameProblems(
  name: string,
  version: string,
  paths: { name: string; version: string },
): FieldError[] {
  const { maxPartChars, maxVersionChars, maxVersionNumber } = PLUGIN_NAME_LIMITS;
  const fields: FieldError[] = [];
  for (const part of name.split('/')) {
    if (part.length > maxPartChars) {
      fields.push({
        path: paths.name,
        message: `owner and name may be at most ${maxPartChars} characters each; got ${part.length}`,
      });
      break;
    }
  }
  if (version.length > maxVersionChars) {
    fields.push({
      path: paths.version,
      message: `a version may be at most ${maxVersionChars} characters; got ${version.length}`,
    });
  } else {
    const numbers = SEMVER.exec(version)?.slice(1, 4) ?? [];
    if (numbers.some((n) => n.length > 9 || Number(n) > maxVersionNumber)) {
      fields.push({
        path: paths.version,
        message: `major, minor and patch may be at most ${maxVersionNumber}; got ${version.slice(0, 40)}`,
      });
    }
  }
  return fields;
}

/** Bounds and compiles a manifest's config_schema; field paths start at `manifest.config_schema`. */
export function configSchemaProblems(schema: Record<string, unknown>): FieldError[] {
  const path = 'manifest.config_schema';
  const shape = checkJsonShape(schema, path, MANIFEST_LIMITS);
  if (shape) return [shape];
  const bytes = new TextEncoder().encode(JSON.stringify(schema)).byteLength;
  if (bytes > PLUGIN_NAME_LIMITS.maxConfigSchemaBytes) {
    return [
      {
        path,
        message: `${bytes} bytes; a config_schema may be at most ${PLUGIN_NAME_LIMITS.maxConfigSchemaBytes} bytes`,
      },
    ];
  }
  if (schema.type !== undefined && schema.type !== 'object') {
    return [
      { path: `${path}.type`, message: 'a config is a JSON object, so the schema type must be "object"' },
    ];
  }
  try {
    // Compiling and running it once on {} surfaces unresolvable $refs and malformed keywords now,
    // not when the first job is submitted.
    new Validator(schema as object, '2020-12', false).validate({});
  } catch (error) {
    const detail = error instanceof Error ? error.message.slice(0, 200) : String(error);
    return [{ path, message: `not a usable JSON Schema (draft 2020-12): ${detail}` }];
  }
  return [];
}

/**
 * A stored manifest, or null when the row cannot be served (unparseable or outside the publish
 * bounds, e.g. written before they existed): listings show the version without its manifest.
 */
export function readStoredManifest(text: string): PluginManifest | null {
  try {
    const manifest = JSON.parse(text) as unknown;
    if (typeof manifest !== 'object' || manifest === null || Array.isArray(manifest)) return null;
    if (checkJsonShape(manifest, 'manifest', MANIFEST_LIMITS)) return null;
    return manifest as PluginManifest;
  } catch {
    return null;
  }
}

export interface ConfigCheck {
  validate(config: Record<string, unknown>, path: string): FieldError[];
}

/**
 * A published plugin's config against its manifest's config_schema. Where the schema lists
 * `properties` and says nothing about other keys, keys outside them are refused as typos
 * (a misspelt field would otherwise train with the default).
 */
export function configValidator(schema: Record<string, unknown>): ConfigCheck {
  const strict =
    typeof schema.properties === 'object' &&
    schema.properties !== null &&
    schema.additionalProperties === undefined &&
    schema.patternProperties === undefined &&
    schema.unevaluatedProperties === undefined;
  const effective = strict ? { ...schema, additionalProperties: false } : schema;
  const validator = new Validator(effective as object, '2020-12', false);
  return {
    validate(config, path) {
      const result = validator.validate(config);
      if (result.valid) return [];
      const fields: FieldError[] = [];
      for (const error of result.errors) {
        // Leaf errors carry the location; the "properties"/"allOf" wrappers repeat them.
        if (WRAPPERS.has(error.keyword)) continue;
        const pointer = error.instanceLocation.replace(/^#\/?/, '');
        const segments = pointer === '' ? [] : pointer.split('/').map(decodePointer);
        let message = error.error;
        if (error.keyword === 'false') {
          message = 'unknown field (check the spelling)';
        }
        fields.push({ path: [path, ...segments].join('.'), message });
      }
      return fields.length > 0 ? fields : [{ path, message: 'does not match the plugin config_schema' }];
    },
  };
}

const WRAPPERS = new Set([
  'properties',
  'additionalProperties',
  'allOf',
  'anyOf',
  'oneOf',
  'items',
  'prefixItems',
  '$ref',
]);
const decodePointer = (s: string) => s.replace(/~1/g, '/').replace(/~0/g, '~');
