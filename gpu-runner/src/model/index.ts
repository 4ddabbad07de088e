// Models: Hugging Face checkpoint folders (Qwen2, Qwen3, Llama) as engine graphs. See docs/models.md.
export {
  type Completion,
  encodePrompt,
  type FinishReason,
  GenerateError,
  type GenerateOptions,
  type GenerateStats,
  generate,
  generateInGraph,
  type Prompt,
} from '../rollout/generate';
export { type DecoderConfig, type DecoderFamily, ModelConfigError, parseDecoderConfig } from './config';
export { LORA_TARGETS, type LoraTarget } from './decoder';
export { AdapterError, type LoraConfig, loadAdapter, saveAdapter } from './lora';
export {
  CausalLM,
  type LoadOptions,
  type LossContext,
  type LossHook,
  ModelError,
  ModelTrainer,
  type ScoredSequence,
  type TokenScores,
  type TrainerOptions,
  type TrainMode,
  type TrainStepResult,
} from './model';
export {
  openCheckpointTensors,
  readSafetensorsHeader,
  SafetensorsError,
  writeSafetensors,
} from './safetensors';
export { type ChatMessage, loadTokenizer, type ModelTokenizer, TokenizerError } from './tokenizer';
