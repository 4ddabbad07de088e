// Tokenizer + chat template of a checkpoint folder: tokenizer.json / tokenizer_config.json through
// @huggingface/tokenizers, the chat template through @huggingface/jinja.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool';
  content: string;
}

export interface ModelTokenizer {
  encode(text: string): number[];
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
  /** renders the checkpoint's chat template; `extra` is passed to the template (e.g. enable_thinking) */
  applyChatTemplate(
    messages: ChatMessage[],
    opts?: { addGenerationPrompt?: boolean; extra?: Record<string, unknown> },
  ): string;
  readonly vocabSize: number;
  readonly padTokenId: number;
  readonly eosTokenIds: number[];
  readonly bosTokenId: number | null;
  tokenId(token: string): number | undefined;
}

export class TokenizerError extends Error {
  constructor(
    readonly code: string,
    readonly path: string,
    message: string,
  ) {
    super(`${code}: ${path}: ${message}`);
  }
}

function tokenString(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') {
    return (v as { content: string }).content;
  }
  return null;
}

export function loadTokenizer(dir: string, generationEos: number[] = []): ModelTokenizer {
  const tjPath = join(dir, 'tokenizer.json');
  const tcPath = join(dir, 'tokenizer_config.json');
  if (!existsSync(tjPath)) {
    throw new TokenizerError(
      'tokenizer_missing',
      tjPath,
      'the checkpoint needs a tokenizer.json (fast tokenizer)',
    );
  }
  const tokenizerJson = JSON.parse(readFileSync(tjPath, 'utf8')) as Record<string, unknown>;
  const tokenizerConfig = existsSync(tcPath)
    ? (JSON.parse(readFileSync(tcPath, 'utf8')) as Record<string, unknown>)
    : {};
  const tok = new Tokenizer(tokenizerJson, tokenizerConfig);
  const vocab = new Map<string, number>();
  const model = tokenizerJson.model as { vocab: Record<string, number> };
  let maxId = -1;
  for (const [t, id] of Object.entries(model.vocab)) {
    vocab.set(t, id);
    if (id > maxId) maxId = id;
  }
  for (const a of (tokenizerJson.added_tokens ?? []) as { id: number; content: string }[]) {
    vocab.set(a.content, a.id);
    if (a.id > maxId) maxId = a.id;
  }
  const idOf = (v: unknown): number | null => {
    const s = tokenString(v);
    if (s === null) return null;
    return vocab.get(s) ?? null;
  };
  const eosFromConfig = idOf(tokenizerConfig.eos_token);
  const eosTokenIds = [...new Set([...generationEos, ...(eosFromConfig === null ? [] : [eosFromConfig])])];
  const padTokenId = idOf(tokenizerConfig.pad_token) ?? eosTokenIds[0] ?? 0;
  const bosTokenId = idOf(tokenizerConfig.bos_token);
  const addBos = tokenizerConfig.add_bos_token === true;
  let chatTemplate = tokenizerConfig.chat_template;
  const jinjaPath = join(dir, 'chat_template.jinja');
  if (typeof chatTemplate !== 'string' && existsSync(jinjaPath))
    chatTemplate = readFileSync(jinjaPath, 'utf8');
  let template: Template | null = null;
  const bosString = tokenString(tokenizerConfig.bos_token) ?? '';
  const eosString = tokenString(tokenizerConfig.eos_token) ?? '';
  return {
    vocabSize: maxId + 1,
    padTokenId,
    eosTokenIds,
    bosTokenId,
    tokenId: (t) => vocab.get(t),
    encode(text) {
      // special tokens written in the text (from a rendered chat template) are matched as added tokens;
      // post-processors (e.g. Llama's BOS) are not applied: templates already include the BOS text
      const ids = tok.encode(text, { add_special_tokens: false }).ids;
      if (addBos && bosTokenId !== null && !text.startsWith(bosString)) return [bosTokenId, ...ids];
      return ids;
    },
    decode(ids, opts) {
      return tok.decode(ids, { skip_special_tokens: opts?.skipSpecialTokens ?? false });
    },
    applyChatTemplate(messages, opts) {
      if (typeof chatTemplate !== 'string') {
        throw new TokenizerError(
          'chat_template_missing',
          tcPath,
          'tokenizer_config.json has no chat_template',
        );
      }
      template ??= new Template(chatTemplate);
      return template.render({
        messages,
        add_generation_prompt: opts?.addGenerationPrompt ?? true,
        bos_token: bosString,
        eos_token: eosString,
        ...opts?.extra,
      });
    },
  };
}
