import { type Job, type JobEvent, TEXT_SIMILARITY_METRICS } from '@cgrpo/contract';
import { type Context, Hono } from 'hono';
import type { AppEnv, Env } from '../env';

// An OpenAI-compatible fine-tuning surface under /openai/v1 (docs/openai-migration.md): the
// official clients reach it by changing `baseURL`. Each route translates the OpenAI request into
// a cgrpo one and forwards it to the /v1 API in-process (same API key, same checks), then
// translates the answer back. Graders map to built-in verifiers; those with no built-in
// counterpart are refused with 422 naming the grader type.

/** Calls the /v1 API in-process (index.ts passes `app.fetch`). */
export type Forward = (
  request: Request,
  env: Env,
  ctx: Context<AppEnv>['executionCtx'],
) => Response | Promise<Response>;

type OpenAiError = { status: 400 | 404 | 409 | 422; code: string; message: string; param?: string };

class OpenAiRefusal extends Error {
  constructor(readonly body: OpenAiError) {
    super(body.message);
  }
}
const refuse = (status: OpenAiError['status'], code: string, message: string, param?: string) =>
  new OpenAiRefusal({ status, code, message, ...(param ? { param } : {}) });

type Row = Record<string, unknown>;
type Msg = { role?: unknown; content?: unknown };

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content))
    return content
      .map((part) => (part && typeof part === 'object' && 'text' in part ? String(part.text) : ''))
      .join('');
  return '';
}

/**
 * One OpenAI JSONL row as a cgrpo dataset row. Chat rows `{messages: [...]}`: a row ending in an
 * assistant message is supervised (the user turns are the prompt, the last assistant message the
 * completion); otherwise it is a reinforcement row (the last user message is the prompt) and its
 * other top-level fields stay as they are, for graders' `{{item.<field>}}`.
 */
export function convertRow(row: Row, line: number): Row {
  const messages = row.messages;
  if (!Array.isArray(messages)) {
    if (typeof row.prompt === 'string') return row;
    throw refuse(
      400,
      'invalid_file',
      `line ${line}: expected {"messages": [...]} (chat format) or a "prompt" field`,
      'file',
    );
  }
  const msgs = messages as Msg[];
  const { messages: _dropped, ...rest } = row;
  const last = msgs.at(-1);
  if (last?.role === 'assistant') {
    const prompt = msgs
      .slice(0, -1)
      .filter((m) => m.role === 'user')
      .map((m) => textOf(m.content))
      .join('\n\n');
    return { ...rest, prompt, completion: textOf(last.content) };
  }
  const user = [...msgs].reverse().find((m) => m.role === 'user');
  if (!user) throw refuse(400, 'invalid_file', `line ${line}: the messages hold no user message`, 'file');
  return { ...rest, prompt: textOf(user.content) };
}

// ---- graders ------------------------------------------------------------------------------------

type Grader = { type?: unknown; [k: string]: unknown };
type VerifierUse = { plugin: string; config: Record<string, unknown> };
/** The judge endpoint a score_model grader calls: `cgrpo.llm` of the create request. */
export type JudgeEndpoint = { endpoint_url: string; model?: string; token_env?: string };
/** A grader as a cgrpo verifier and the dataset field holding its reference (null: it reads none). */
export type MappedGrader = { verifier: VerifierUse; referenceField: string | null };

const ITEM_REF = /^\{\{\s*item\.([A-Za-z0-9_]+)\s*\}\}$/;
const SAMPLE_TEXT = /^\{\{\s*sample\.output_text\s*\}\}$/;
const TEMPLATE_VAR = /\{\{\s*([A-Za-z0-9_.]+)\s*\}\}/g;
const SIMILARITY_METRICS = new Set<string>(TEXT_SIMILARITY_METRICS);
const SIMILARITY_REFUSED: Record<string, string> = {
  meteor: 'METEOR needs WordNet synonyms, which cgrpo does not ship',
  cosine: 'cosine compares OpenAI embeddings, which cgrpo does not compute',
};

const unsupported = (message: string, param: string) => refuse(422, 'grader_unsupported', message, param);

/** `{{sample.output_text}}` as input and `{{item.<field>}}` as reference, as string_check and text_similarity take them. */
function sampleAndReference(grader: Grader, at: string): string {
  const type = String(grader.type);
  if (typeof grader.input !== 'string' || !SAMPLE_TEXT.test(grader.input))
    throw unsupported(`${type} input must be "{{sample.output_text}}"`, `${at}.input`);
  const ref = typeof grader.reference === 'string' ? ITEM_REF.exec(grader.reference) : null;
  if (!ref)
    throw unsupported(
      `${type} reference must be "{{item.<field>}}" naming a field of the training rows`,
      `${at}.reference`,
    );
  return ref[1]!;
}

/** score_model's messages as builtin:score-model's: {{sample.output_text}} → {response}, {{item.<field>}} → {reference}. */
function judgeMessages(
  grader: Grader,
  at: string,
): { messages: { role: string; content: string }[]; field: string | null } {
  if (!Array.isArray(grader.input) || grader.input.length === 0)
    throw unsupported('score_model input must be a list of {role, content} messages', `${at}.input`);
  let field: string | null = null;
  const messages = (grader.input as Msg[]).map((m, i) => {
    const role = m.role === 'developer' ? 'system' : m.role;
    if (role !== 'system' && role !== 'user' && role !== 'assistant')
      throw unsupported(`role must be system, developer, user or assistant`, `${at}.input.${i}.role`);
    const content = textOf(m.content).replace(TEMPLATE_VAR, (whole, name: string) => {
      if (name === 'sample.output_text') return '{response}';
      const item = /^item\.([A-Za-z0-9_]+)$/.exec(name);
      if (!item)
        throw unsupported(
          `template variable ${whole} is not available here; use {{sample.output_text}} and one {{item.<field>}}`,
          `${at}.input.${i}.content`,
        );
      if (field !== null && field !== item[1])
        throw unsupported(
          `a cgrpo verifier reads one reference field per row; this grader uses item.${field} and item.${item[1]}`,
          `${at}.input.${i}.content`,
        );
      field = item[1]!;
      return '{reference}';
    });
    return { role, content };
  });
  if (!messages.some((m) => m.content.includes('{response}')))
    throw unsupported('score_model input must use {{sample.output_text}} in a message', `${at}.input`);
  return { messages, field };
}

/** An OpenAI grader as a cgrpo verifier; `judge` is the endpoint score_model graders call. */
export function graderToVerifier(
  grader: Grader,
  judge: JudgeEndpoint | null = null,
  at = 'method.reinforcement.grader',
): MappedGrader {
  switch (grader.type) {
    case 'string_check': {
      const referenceField = sampleAndReference(grader, at);
      switch (grader.operation) {
        case 'eq':
          return {
            verifier: {
              plugin: 'builtin:exact',
              config: { extract: 'whole', case_sensitive: true, strip_formatting: false },
            },
            referenceField,
          };
        case 'like':
        case 'ilike':
          return {
            verifier: {
              plugin: 'builtin:regex',
              config: {
                pattern: '{reference}',
                mode: 'match',
                flags: grader.operation === 'ilike' ? 'i' : '',
                case_sensitive: grader.operation === 'like',
              },
            },
            referenceField,
          };
        default:
          throw unsupported(
            `string_check operation '${String(grader.operation)}' has no built-in verifier here (eq, like and ilike do); write a TypeScript plugin (docs/plugins.md)`,
            `${at}.operation`,
          );
      }
    }
    case 'text_similarity': {
      const metric = String(grader.evaluation_metric);
      if (SIMILARITY_REFUSED[metric])
        throw unsupported(
          `text_similarity evaluation_metric '${metric}' is not supported: ${SIMILARITY_REFUSED[metric]}; use fuzzy_match, bleu, gleu, rouge_1..rouge_5 or rouge_l`,
          `${at}.evaluation_metric`,
        );
      if (!SIMILARITY_METRICS.has(metric))
        throw unsupported(
          `unknown text_similarity evaluation_metric '${metric}'; use fuzzy_match, bleu, gleu, rouge_1..rouge_5 or rouge_l`,
          `${at}.evaluation_metric`,
        );
      const referenceField = sampleAndReference(grader, at);
      const threshold = grader.pass_threshold;
      if (threshold !== undefined && (typeof threshold !== 'number' || threshold < 0 || threshold > 1))
        throw refuse(
          400,
          'invalid_request',
          'pass_threshold must be a number from 0 to 1',
          `${at}.pass_threshold`,
        );
      return {
        verifier: {
          plugin: 'builtin:text-similarity',
          config: { metric, ...(typeof threshold === 'number' ? { pass_threshold: threshold } : {}) },
        },
        referenceField,
      };
    }
    case 'score_model': {
      if (!judge)
        throw unsupported(
          'score_model graders need an LLM endpoint for the judge: add "cgrpo": {"llm": {"endpoint_url": "https://…/v1", "token_env": "JUDGE_TOKEN"}} to the request (the runner reads the token from that environment variable)',
          'cgrpo.llm',
        );
      const { messages, field } = judgeMessages(grader, at);
      const range = grader.range;
      if (
        range !== undefined &&
        !(Array.isArray(range) && range.length === 2 && range.every((x) => typeof x === 'number'))
      )
        throw refuse(400, 'invalid_request', 'range must be [low, high]', `${at}.range`);
      const sampling = (grader.sampling_params ?? {}) as Row;
      const model = judge.model ?? (typeof grader.model === 'string' ? grader.model : undefined);
      return {
        verifier: {
          plugin: 'builtin:score-model',
          config: {
            endpoint_url: judge.endpoint_url,
            ...(model ? { model } : {}),
            ...(judge.token_env ? { token_env: judge.token_env } : {}),
            messages,
            ...(range ? { range } : {}),
            ...(typeof grader.pass_threshold === 'number' ? { pass_threshold: grader.pass_threshold } : {}),
            ...(typeof sampling.temperature === 'number' ? { temperature: sampling.temperature } : {}),
            ...(typeof sampling.top_p === 'number' ? { top_p: sampling.top_p } : {}),
            ...(typeof sampling.max_completions_tokens === 'number'
              ? { max_tokens: sampling.max_completions_tokens }
              : {}),
          },
        },
        referenceField: field,
      };
    }
    case 'multi': {
      const graders = grader.graders;
      if (!graders || typeof graders !== 'object' || Array.isArray(graders))
        throw refuse(
          400,
          'invalid_request',
          'multi graders must be an object of named graders',
          `${at}.graders`,
        );
      if (typeof grader.calculate_output !== 'string')
        throw refuse(400, 'invalid_request', 'multi calculate_output is required', `${at}.calculate_output`);
      let referenceField: string | null = null;
      const subs: Record<string, VerifierUse> = {};
      for (const [name, sub] of Object.entries(graders as Record<string, Grader>)) {
        if (sub?.type === 'multi')
          throw unsupported('multi graders cannot nest', `${at}.graders.${name}.type`);
        const mapped = graderToVerifier(sub ?? {}, judge, `${at}.graders.${name}`);
        if (mapped.referenceField !== null) {
          if (referenceField !== null && referenceField !== mapped.referenceField)
            throw unsupported(
              `a cgrpo verifier reads one reference field per row; these graders use item.${referenceField} and item.${mapped.referenceField}`,
              `${at}.graders.${name}`,
            );
          referenceField = mapped.referenceField;
        }
        subs[name] = mapped.verifier;
      }
      return {
        verifier: {
          plugin: 'builtin:multi',
          config: { graders: subs, calculate_output: grader.calculate_output },
        },
        referenceField,
      };
    }
    case 'python':
      throw unsupported(
        'python graders do not run here: write the check as a TypeScript verifier plugin (docs/plugins.md) and name it in a cgrpo job, or use a string_check, text_similarity, score_model or multi grader',
        `${at}.type`,
      );
    case 'label_model':
      throw unsupported(
        'label_model graders have no built-in verifier; use a score_model grader, or write a TypeScript verifier plugin (docs/plugins.md)',
        `${at}.type`,
      );
    default:
      throw unsupported(`unknown grader type '${String(grader.type)}'`, `${at}.type`);
  }
}

/** `cgrpo.llm` of a create request: where score_model graders' judge lives. */
function judgeEndpoint(cgrpo: Row): JudgeEndpoint | null {
  const llm = cgrpo.llm;
  if (llm === undefined) return null;
  if (!llm || typeof llm !== 'object' || typeof (llm as Row).endpoint_url !== 'string')
    throw refuse(
      400,
      'invalid_request',
      'cgrpo.llm must be {"endpoint_url": "...", "model"?, "token_env"?}',
      'cgrpo.llm',
    );
  const { endpoint_url, model, token_env } = llm as Row;
  return {
    endpoint_url: endpoint_url as string,
    ...(typeof model === 'string' ? { model } : {}),
    ...(typeof token_env === 'string' ? { token_env } : {}),
  };
}

// ---- job objects --------------------------------------------------------------------------------

const unix = (iso: string | null) => (iso ? Math.floor(Date.parse(iso) / 1000) : null);

const STATUS: Record<Job['status'], string> = {
  queued: 'queued',
  running: 'running',
  paused: 'paused',
  cancelling: 'running',
  succeeded: 'succeeded',
  failed: 'failed',
  cancelled: 'cancelled',
};

type JobLike = Omit<Job, 'spec'> & { spec?: Job['spec'] };

function toFineTuningJob(job: JobLike) {
  const meta = job.spec?.metadata ?? {};
  const method = meta['openai.method'] ?? (job.algorithm === 'sft' ? 'supervised' : 'reinforcement');
  const grader = meta['openai.grader'] ? (JSON.parse(meta['openai.grader']) as unknown) : undefined;
  return {
    id: job.id,
    object: 'fine_tuning.job',
    created_at: unix(job.created_at),
    finished_at: unix(job.finished_at),
    model: job.spec?.model.id ?? null,
    fine_tuned_model: null,
    organization_id: 'cgrpo',
    status: STATUS[job.status],
    training_file: meta['openai.training_file'] ?? null,
    validation_file: meta['openai.validation_file'] ?? null,
    hyperparameters: {
      n_epochs: 'auto',
      batch_size: job.spec?.hyperparameters.prompts_per_step ?? 'auto',
      learning_rate_multiplier: 'auto',
    },
    method: {
      type: method,
      ...(method === 'reinforcement' ? { reinforcement: { grader: grader ?? null } } : { supervised: {} }),
    },
    result_files: [],
    trained_tokens: null,
    error: job.error ? { code: job.error.code, message: job.error.message, param: null } : null,
    seed: job.spec?.seed ?? 0,
    estimated_finish: null,
    integrations: [],
    metadata: null,
    user_provided_suffix: meta['openai.suffix'] ?? null,
    current_step: job.current_step,
    total_steps: job.total_steps,
  };
}

function toEventObject(e: JobEvent) {
  const level =
    e.type === 'job.failed' || e.type === 'job.alarm' || e.type === 'job.budget_reached' ? 'warn' : 'info';
  const message =
    typeof e.data.message === 'string' ? `${e.type}: ${e.data.message}` : e.type.replace(/^job\./, 'job ');
  return {
    object: 'fine_tuning.job.event',
    id: `ftevent-${e.job_id}-${e.id}`,
    created_at: unix(e.created_at),
    level: e.type === 'job.failed' ? 'error' : level,
    message,
    data: e.data,
    type: 'message',
  };
}

// ---- the router ---------------------------------------------------------------------------------

const CreateJobBody = (b: unknown) => (b && typeof b === 'object' ? (b as Row) : {});

export function openaiRouter(forward: Forward): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  /** Calls /v1 with the caller's credentials; a cgrpo error becomes an OpenAI-shaped one. */
  async function v1<T>(
    c: Context<AppEnv>,
    method: string,
    path: string,
    body?: { json: unknown } | { raw: string; type: string },
  ): Promise<T> {
    const headers: Record<string, string> = { authorization: c.req.header('authorization') ?? '' };
    let payload: string | undefined;
    if (body && 'json' in body) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body.json);
    } else if (body) {
      headers['content-type'] = body.type;
      payload = body.raw;
      headers['content-length'] = String(new TextEncoder().encode(body.raw).byteLength);
    }
    const res = await forward(
      new Request(`http://internal${path}`, { method, headers, body: payload }),
      c.env,
      c.executionCtx,
    );
    const text = await res.text();
    const parsed = text ? (JSON.parse(text) as unknown) : null;
    if (!res.ok) throw new ForwardedError(res.status, parsed);
    return parsed as T;
  }

  app.onError((err, c) => {
    if (err instanceof OpenAiRefusal) {
      const { status, code, message, param } = err.body;
      return c.json(
        { error: { message, type: 'invalid_request_error', code, param: param ?? null } },
        status,
      );
    }
    if (err instanceof ForwardedError) {
      const inner = (
        err.body as {
          error?: { code?: string; message?: string; fields?: { path: string; message: string }[] };
        }
      )?.error;
      const fields = inner?.fields ?? [];
      const detail = fields.length ? ` (${fields.map((f) => `${f.path}: ${f.message}`).join('; ')})` : '';
      return c.json(
        {
          error: {
            message: `${inner?.message ?? 'request failed'}${detail}`,
            type: err.status === 401 ? 'authentication_error' : 'invalid_request_error',
            code: inner?.code ?? null,
            param: fields[0]?.path ?? null,
          },
        },
        err.status as 400,
      );
    }
    console.error('openai route failed', err);
    return c.json(
      { error: { message: 'internal error; retry', type: 'server_error', code: 'internal', param: null } },
      500,
    );
  });

  app.post('/files', async (c) => {
    const form = await c.req.formData().catch(() => null);
    const file = form?.get('file');
    const purpose = form?.get('purpose');
    if (!form || !file || typeof file === 'string')
      throw refuse(
        400,
        'invalid_request',
        'send multipart/form-data with a "file" part and "purpose"',
        'file',
      );
    if (purpose !== 'fine-tune')
      throw refuse(
        400,
        'invalid_request',
        `purpose must be "fine-tune", got ${JSON.stringify(purpose)}`,
        'purpose',
      );
    const text = await file.text();
    const rows: Row[] = [];
    for (const [i, line] of text.split('\n').entries()) {
      if (!line.trim()) continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        throw refuse(400, 'invalid_file', `line ${i + 1} is not JSON`, 'file');
      }
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed))
        throw refuse(400, 'invalid_file', `line ${i + 1} is not a JSON object`, 'file');
      rows.push(convertRow(parsed as Row, i + 1));
    }
    if (rows.length === 0) throw refuse(400, 'invalid_file', 'the file holds no rows', 'file');
    // the reference field: the completion for supervised rows, else the first extra field
    const first = rows[0]!;
    const reference =
      'completion' in first ? 'completion' : (Object.keys(first).find((k) => k !== 'prompt') ?? 'prompt');
    const name = file.name || 'training.jsonl';
    const q = new URLSearchParams({
      name,
      kind: 'dataset',
      prompt_field: 'prompt',
      reference_field: reference,
    });
    const art = await v1<{ id: string; size: number; created_at: string }>(c, 'POST', `/v1/artifacts?${q}`, {
      raw: `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`,
      type: 'application/jsonl',
    });
    return c.json(
      {
        id: art.id,
        object: 'file',
        bytes: art.size,
        created_at: unix(art.created_at),
        filename: name,
        purpose: 'fine-tune',
        status: 'processed',
        status_details: null,
      },
      200,
    );
  });

  app.post('/fine_tuning/jobs', async (c) => {
    const body = CreateJobBody(await c.req.json().catch(() => null));
    if (typeof body.model !== 'string' || !body.model)
      throw refuse(
        400,
        'invalid_request',
        'model is required: a cgrpo model id such as "tiny-qwen3"',
        'model',
      );
    if (typeof body.training_file !== 'string')
      throw refuse(
        400,
        'invalid_request',
        'training_file is required (an id from POST /openai/v1/files)',
        'training_file',
      );
    const method = (body.method ?? { type: 'supervised' }) as Row;
    const type = method.type;
    const cgrpo = (body.cgrpo ?? {}) as Row;
    const extraHp = (cgrpo.hyperparameters ?? {}) as Row;
    const art = await v1<{ rows: number | null; fields: { reference?: string } | null }>(
      c,
      'GET',
      `/v1/artifacts/${encodeURIComponent(body.training_file)}`,
    );
    const rows = art.rows ?? 1;
    const spec: Row = {
      name: typeof body.suffix === 'string' ? body.suffix : '',
      model: { id: body.model },
      seed: typeof body.seed === 'number' ? body.seed : 0,
      metadata: {
        'openai.training_file': body.training_file,
        'openai.method': String(type),
        ...(typeof body.validation_file === 'string'
          ? { 'openai.validation_file': body.validation_file }
          : {}),
        ...(typeof body.suffix === 'string' ? { 'openai.suffix': body.suffix } : {}),
      },
    };
    let hp: Row;
    let reference = art.fields?.reference ?? 'answer';
    if (type === 'supervised') {
      hp = ((method.supervised as Row | undefined)?.hyperparameters ?? body.hyperparameters ?? {}) as Row;
      spec.algorithm = 'sft';
      reference = 'completion';
    } else if (type === 'reinforcement') {
      const rl = (method.reinforcement ?? {}) as Row;
      if (!rl.grader || typeof rl.grader !== 'object')
        throw refuse(
          400,
          'invalid_request',
          'method.reinforcement.grader is required',
          'method.reinforcement.grader',
        );
      const mapped = graderToVerifier(rl.grader as Grader, judgeEndpoint(cgrpo));
      hp = (rl.hyperparameters ?? {}) as Row;
      spec.algorithm = 'grpo';
      spec.verifier = mapped.verifier;
      reference = mapped.referenceField ?? reference;
      const graderJson = JSON.stringify(rl.grader);
      if (graderJson.length <= 1000) (spec.metadata as Row)['openai.grader'] = graderJson;
    } else {
      throw refuse(
        400,
        'invalid_request',
        `method.type must be "supervised" or "reinforcement", got ${JSON.stringify(type)}`,
        'method.type',
      );
    }
    const batch = typeof hp.batch_size === 'number' ? hp.batch_size : Math.min(16, rows);
    const epochs = typeof hp.n_epochs === 'number' ? hp.n_epochs : 1;
    const hyperparameters: Row = {
      prompts_per_step: Math.min(batch, rows),
      total_steps: Math.max(1, Math.ceil((rows * epochs) / Math.min(batch, rows))),
      ...(typeof hp.learning_rate_multiplier === 'number'
        ? { learning_rate: (type === 'supervised' ? 1e-4 : 1e-6) * hp.learning_rate_multiplier }
        : {}),
      ...extraHp,
    };
    spec.hyperparameters = hyperparameters;
    spec.datasets = {
      train: {
        uri: `artifact://${body.training_file}`,
        fields: {
          prompt: 'prompt',
          reference,
          ...(type === 'supervised' ? { completion: 'completion' } : {}),
        },
      },
      ...(typeof body.validation_file === 'string'
        ? {
            validation: {
              uri: `artifact://${body.validation_file}`,
              fields: { prompt: 'prompt', reference },
            },
          }
        : {}),
    };
    for (const key of ['budgets', 'alarms', 'runner_labels', 'evaluation', 'checkpoint_every'] as const)
      if (cgrpo[key] !== undefined) spec[key] = cgrpo[key];
    const job = await v1<Job>(c, 'POST', '/v1/jobs', { json: spec });
    return c.json(toFineTuningJob(job), 200);
  });

  app.get('/fine_tuning/jobs', async (c) => {
    const limit = Math.min(200, Math.max(1, Number(c.req.query('limit') ?? 20) || 20));
    const page = await v1<{ data: JobLike[]; next_cursor: string | null }>(
      c,
      'GET',
      `/v1/jobs?limit=${limit}`,
    );
    // list rows carry no spec: read each job for its model and files
    const full = await Promise.all(page.data.map((j) => v1<Job>(c, 'GET', `/v1/jobs/${j.id}`)));
    return c.json(
      { object: 'list', data: full.map(toFineTuningJob), has_more: page.next_cursor !== null },
      200,
    );
  });

  app.get('/fine_tuning/jobs/:id', async (c) =>
    c.json(
      toFineTuningJob(await v1<Job>(c, 'GET', `/v1/jobs/${encodeURIComponent(c.req.param('id'))}`)),
      200,
    ),
  );

  for (const action of ['cancel', 'pause', 'resume'] as const) {
    app.post(`/fine_tuning/jobs/:id/${action}`, async (c) =>
      c.json(
        toFineTuningJob(
          await v1<Job>(c, 'POST', `/v1/jobs/${encodeURIComponent(c.req.param('id'))}/${action}`),
        ),
        200,
      ),
    );
  }

  app.get('/fine_tuning/jobs/:id/events', async (c) => {
    const limit = Math.min(1000, Math.max(1, Number(c.req.query('limit') ?? 20) || 20));
    const id = encodeURIComponent(c.req.param('id'));
    const page = await v1<{ data: JobEvent[]; next_cursor: string | null }>(
      c,
      'GET',
      `/v1/jobs/${id}/events?limit=1000`,
    );
    // OpenAI lists events newest first
    const data = page.data.reverse().slice(0, limit).map(toEventObject);
    return c.json({ object: 'list', data, has_more: page.data.length > limit }, 200);
  });

  app.get('/fine_tuning/jobs/:id/checkpoints', async (c) => {
    const id = encodeURIComponent(c.req.param('id'));
    const page = await v1<{
      data: { id: string; step: number; created_at: string; status: string; metadata: Row }[];
    }>(c, 'GET', `/v1/jobs/${id}/checkpoints`);
    const data = page.data
      .filter((k) => k.status === 'complete')
      .map((k) => ({
        object: 'fine_tuning.job.checkpoint',
        id: k.id,
        created_at: unix(k.created_at),
        fine_tuned_model_checkpoint: `checkpoint:${k.id}`,
        fine_tuning_job_id: c.req.param('id'),
        step_number: k.step,
        metrics: { step: k.step },
      }));
    return c.json(
      {
        object: 'list',
        data,
        has_more: false,
        first_id: data[0]?.id ?? null,
        last_id: data.at(-1)?.id ?? null,
      },
      200,
    );
  });

  return app;
}

class ForwardedError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {
    super(`forwarded request failed with ${status}`);
  }
}
