// The sandbox host: how the runner (and `cgrpo plugins test`) runs an uploaded plugin bundle.
export { PluginError, type PluginFailureReason } from './errors';
export {
  DEFAULT_SANDBOX_LIMITS,
  describeBundle,
  ivmUnavailableReason,
  type PluginDescription,
  type PluginLogEntry,
  type PluginOutcome,
  resolveEngine,
  SandboxedPlugin,
  type SandboxLimits,
  type SandboxOptions,
  sha256Hex,
} from './host';
export type { SandboxEngine } from './instance';
export {
  type ChatRequest,
  ChatRequestSchema,
  type ChatResult,
  ChatResultSchema,
  type InferenceEndpoint,
  inferenceChat,
  type LlmChat,
} from './llm';
