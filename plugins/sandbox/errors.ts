import type { ErrorBody, FieldError } from '@cgrpo/contract';

/** Why a plugin failed; the first word of every message a user sees. */
export type PluginFailureReason =
  | 'integrity' // bundle does not match the manifest's sha256
  | 'load' // the bundle did not evaluate or its default export is not a plugin
  | 'manifest' // the bundle disagrees with its manifest (kind, schema)
  | 'capability' // a capability was used or requested but not granted
  | 'config' // the job's config failed the plugin's schema
  | 'timeout' // a call ran past limits.timeout_ms
  | 'memory' // a call ran past limits.memory_mb
  | 'stack' // a call recursed too deep
  | 'threw' // the plugin threw (an Error or any other value)
  | 'invalid_result' // the plugin returned something that is not a valid result
  | 'never_settled' // the plugin awaited something that can never resolve
  | 'llm' // the host's llm.chat call failed
  | 'crashed'; // the sandbox instance died and the call could not be retried

/**
 * The one error a sandboxed plugin produces. `code` is always `plugin_error` (the job fails with it
 * when too many calls fail); plugin, version and reason say what to fix.
 */
export class PluginError extends Error {
  readonly code = 'plugin_error';
  constructor(
    readonly plugin: string,
    readonly version: string,
    readonly reason: PluginFailureReason,
    readonly detail: string,
    readonly fields: FieldError[] = [],
  ) {
    super(`plugin ${plugin}@${version}: ${reason}: ${detail}`);
    this.name = 'PluginError';
  }

  toErrorBody(): ErrorBody {
    return { error: { code: this.code, message: this.message, fields: this.fields } };
  }
}
