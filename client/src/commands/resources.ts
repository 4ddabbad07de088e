// `cgrpo datasets upload`, `models upload`, `checkpoints list|download`, `webhooks ...`,
// `runners list`: the resources around a job.
import { createHash } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  existsSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
} from 'node:fs';
import { open, rm } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { SingleBar } from 'cli-progress';
import type { Artifact, CgrpoClient } from '../api';
import { CliError, fmt, printJson, table } from './common';

/** Files above this go up in parts (the API refuses single bodies over its upload limit). */
export const SINGLE_UPLOAD_MAX = 90 * 1024 * 1024;

function progressBar(total: number, label: string, quiet: boolean): { tick(n: number): void; stop(): void } {
  if (quiet || !process.stderr.isTTY) return { tick: () => {}, stop: () => {} };
  const bar = new SingleBar({
    format: ` ${label} {bar} {percentage}% | {value}/{total} bytes | ETA {eta_formatted}`,
    hideCursor: true,
  });
  bar.start(total, 0);
  let done = 0;
  return {
    tick: (n) => {
      done += n;
      bar.update(done);
    },
    stop: () => bar.stop(),
  };
}

/** Streams `bytes` (a file path or a buffer) up, single-request or multipart, with a progress bar. */
async function uploadBytes(
  api: CgrpoClient,
  source: { file: string } | { data: Uint8Array },
  meta: { name: string; kind: string; contentType: string; fields?: Record<string, string> },
  opts: { multipartOver?: number; quiet: boolean },
): Promise<Artifact> {
  const size = 'file' in source ? statSync(source.file).size : source.data.byteLength;
  const bar = progressBar(size, meta.kind, opts.quiet);
  try {
    if (size <= (opts.multipartOver ?? SINGLE_UPLOAD_MAX)) {
      const nodeStream =
        'file' in source ? createReadStream(source.file) : Readable.from([Buffer.from(source.data)]);
      nodeStream.on('data', (chunk: Buffer) => bar.tick(chunk.length));
      const body = Readable.toWeb(nodeStream) as ReadableStream<Uint8Array>;
      return await api.uploadArtifact(
        body,
        size,
        {
          name: meta.name,
          kind: meta.kind,
          prompt_field: meta.fields?.prompt,
          reference_field: meta.fields?.reference,
          solution_field: meta.fields?.solution,
        },
        meta.contentType,
      );
    }
    const up = await api.startMultipart({
      name: meta.name,
      kind: meta.kind,
      content_type: meta.contentType,
      ...(meta.fields ? { fields: meta.fields } : {}),
    });
    const partSize = Math.max(up.min_part_size, 8 * 1024 * 1024);
    const hash = createHash('sha256');
    const parts: { part_number: number; etag: string }[] = [];
    const handle = 'file' in source ? await open(source.file, 'r') : null;
    try {
      for (let offset = 0, n = 1; offset < size; offset += partSize, n++) {
        const len = Math.min(partSize, size - offset);
        let chunk: Uint8Array;
        if (handle) {
          const buf = Buffer.alloc(len);
          await handle.read(buf, 0, len, offset);
          chunk = buf;
        } else chunk = (source as { data: Uint8Array }).data.subarray(offset, offset + len);
        hash.update(chunk);
        parts.push(await api.uploadPart(up.artifact.id, n, chunk));
        bar.tick(len);
      }
    } finally {
      await handle?.close();
    }
    return await api.completeMultipart(up.artifact.id, parts, hash.digest('hex'));
  } finally {
    bar.stop();
  }
}

/** `--multipart-over BYTES`: a positive whole number of bytes (NaN would send every file in parts). */
function multipartOver(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new CliError(
      'usage',
      `--multipart-over must be a number of bytes, e.g. 1048576; got '${value}'`,
      2,
    );
  return n;
}

function contentTypeOf(file: string): string {
  if (/\.jsonl$/i.test(file)) return 'application/x-ndjson';
  if (/\.json$/i.test(file)) return 'application/json';
  if (/\.tar$/i.test(file)) return 'application/x-tar';
  return 'application/octet-stream';
}

/**
 * Prints the stored artifact and the job-spec fragment that uses it. With --json: the artifact
 * plus `job_spec` (that fragment as an object), so a script can splice it into a spec.
 */
function showArtifact(a: Artifact, json: boolean, jobSpec: Record<string, unknown>) {
  if (json) return printJson({ ...a, job_spec: jobSpec });
  console.log(
    table(
      ['id', 'name', 'kind', 'size', 'rows', 'sha256'],
      [[a.id, a.name, a.kind, a.size, a.rows, a.sha256?.slice(0, 16)]],
    ),
  );
  console.log(`use it in a job spec: ${JSON.stringify(jobSpec)}`);
}

export async function uploadDataset(
  api: CgrpoClient,
  file: string,
  opts: {
    name?: string;
    promptField: string;
    referenceField: string;
    solutionField?: string;
    contentType?: string;
    multipartOver?: string;
  },
  json: boolean,
) {
  if (!existsSync(file))
    throw new CliError('file_not_found', `${file} does not exist: pass the path of a JSONL file`);
  const fields = {
    prompt: opts.promptField,
    reference: opts.referenceField,
    ...(opts.solutionField ? { solution: opts.solutionField } : {}),
  };
  const a = await uploadBytes(
    api,
    { file },
    {
      name: opts.name ?? path.basename(file),
      kind: 'dataset',
      contentType: opts.contentType ?? contentTypeOf(file),
      fields,
    },
    { multipartOver: multipartOver(opts.multipartOver), quiet: json },
  );
  // A job naming no fields reads the dataset with the mapping stored at upload; the fragment still
  // names a renamed column, so the spec says what it reads.
  const mapping = {
    ...(fields.prompt !== 'prompt' ? { prompt: fields.prompt } : {}),
    ...(fields.reference !== 'answer' ? { reference: fields.reference } : {}),
    ...(fields.solution ? { solution: fields.solution } : {}),
  };
  showArtifact(a, json, {
    datasets: {
      train: { uri: `artifact://${a.id}`, ...(Object.keys(mapping).length ? { fields: mapping } : {}) },
    },
  });
}

/** A ustar archive of a folder's regular files (names relative to the folder, mtime 0). */
export function tarFolder(dir: string): Uint8Array {
  const files: { name: string; data: Buffer }[] = [];
  const walk = (rel: string) => {
    for (const entry of readdirSync(path.join(dir, rel), { withFileTypes: true }).sort((a, b) =>
      a.name.localeCompare(b.name),
    )) {
      const r = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        if (entry.name !== '.git') walk(r);
      } else if (entry.isFile()) files.push({ name: r, data: readFileSync(path.join(dir, r)) });
    }
  };
  walk('');
  const blocks = files.reduce((n, f) => n + 512 + Math.ceil(f.data.length / 512) * 512, 1024);
  const out = new Uint8Array(blocks);
  const enc = new TextEncoder();
  let at = 0;
  const str = (h: Uint8Array, off: number, len: number, s: string) =>
    h.set(enc.encode(s).subarray(0, len), off);
  const oct = (h: Uint8Array, off: number, len: number, v: number) =>
    str(h, off, len, `${v.toString(8).padStart(len - 1, '0')}\0`);
  for (const f of files) {
    let name = f.name;
    let prefix = '';
    if (enc.encode(name).length > 100) {
      const cut = name.lastIndexOf('/', name.length - 1);
      prefix = name.slice(0, cut);
      name = name.slice(cut + 1);
      if (enc.encode(name).length > 100 || enc.encode(prefix).length > 155)
        throw new CliError('path_too_long', `${f.name} is too long for a tar entry; shorten the path`);
    }
    const h = out.subarray(at, at + 512);
    str(h, 0, 100, name);
    oct(h, 100, 8, 0o644);
    oct(h, 108, 8, 0);
    oct(h, 116, 8, 0);
    oct(h, 124, 12, f.data.length);
    oct(h, 136, 12, 0);
    h.fill(0x20, 148, 156);
    h[156] = 0x30;
    str(h, 257, 6, 'ustar\0');
    str(h, 263, 2, '00');
    str(h, 345, 155, prefix);
    let sum = 0;
    for (const b of h) sum += b;
    str(h, 148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
    at += 512;
    out.set(f.data, at);
    at += Math.ceil(f.data.length / 512) * 512;
  }
  return out;
}

export async function uploadModel(
  api: CgrpoClient,
  dir: string,
  opts: { name?: string; multipartOver?: string },
  json: boolean,
) {
  if (!existsSync(path.join(dir, 'config.json')))
    throw new CliError(
      'not_a_model',
      `${dir}/config.json not found: pass a Hugging Face model folder (config.json, *.safetensors, tokenizer.json)`,
    );
  const data = tarFolder(dir);
  const a = await uploadBytes(
    api,
    { data },
    { name: opts.name ?? path.basename(path.resolve(dir)), kind: 'model', contentType: 'application/x-tar' },
    { multipartOver: multipartOver(opts.multipartOver), quiet: json },
  );
  showArtifact(a, json, { model: { id: `artifact://${a.id}` } });
}

export async function listCheckpoints(api: CgrpoClient, jobId: string, json: boolean) {
  const { data } = await api.checkpoints(jobId);
  if (json) return printJson({ data });
  console.log(
    table(
      ['id', 'step', 'kind', 'final', 'status', 'size', 'sha256'],
      data.map((c) => [c.id, c.step, c.kind, c.final ? 'yes' : '', c.status, c.size, c.sha256?.slice(0, 16)]),
    ),
  );
}

/**
 * Streams a checkpoint to disk (a .part file renamed at the end) and checks its sha256 against
 * the API's; a mismatch deletes the file and fails. Without a checkpoint id: the job's final (or
 * latest complete) checkpoint.
 */
export async function downloadCheckpoint(
  api: CgrpoClient,
  jobId: string,
  opts: { checkpoint?: string; output?: string },
  json: boolean,
) {
  const { data } = await api.checkpoints(jobId);
  const complete = data.filter((c) => c.status === 'complete');
  const cp = opts.checkpoint
    ? data.find((c) => c.id === opts.checkpoint)
    : (complete.find((c) => c.final) ?? complete.sort((a, b) => b.step - a.step)[0]);
  if (!cp)
    throw new CliError(
      'no_checkpoint',
      opts.checkpoint
        ? `${jobId} has no checkpoint ${opts.checkpoint}: \`cgrpo checkpoints list ${jobId}\` shows them`
        : `${jobId} has no complete checkpoint yet: wait for one (\`cgrpo jobs follow ${jobId}\`)`,
    );
  const out = opts.output ?? `${jobId}-step${cp.step}.tar`;
  const res = await api.checkpointContent(jobId, cp.id);
  const expected = res.headers.get('x-sha256') ?? cp.sha256;
  const total = Number(res.headers.get('content-length') ?? cp.size ?? 0);
  const bar = progressBar(total, 'checkpoint', json);
  const hash = createHash('sha256');
  const tmp = `${out}.part`;
  const file = createWriteStream(tmp);
  let bytes = 0;
  try {
    if (!res.body) throw new CliError('empty_body', 'the API sent no bytes; retry the download');
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      bytes += chunk.length;
      bar.tick(chunk.length);
      if (!file.write(chunk)) await new Promise<void>((r) => file.once('drain', () => r()));
    }
    await new Promise<void>((r, j) => file.end((e?: Error | null) => (e ? j(e) : r())));
  } catch (error) {
    file.destroy();
    await rm(tmp, { force: true });
    throw error;
  } finally {
    bar.stop();
  }
  const sha256 = hash.digest('hex');
  if (expected && expected !== sha256) {
    await rm(tmp, { force: true });
    throw new CliError(
      'sha256_mismatch',
      `downloaded ${bytes} bytes hash to ${sha256} but the API says ${expected}; the file was deleted, run the download again`,
    );
  }
  renameSync(tmp, out);
  const result = {
    checkpoint_id: cp.id,
    step: cp.step,
    path: out,
    bytes,
    sha256,
    verified: Boolean(expected),
  };
  if (json) return printJson(result);
  console.log(
    `saved ${out} (${bytes} bytes, step ${cp.step}, sha256 ${expected ? 'verified' : 'not published by the API'})\nunpack: tar xf ${out}`,
  );
}

export async function webhooksList(api: CgrpoClient, json: boolean) {
  const page = await api.webhookEndpoints();
  if (json) return printJson(page);
  if (!page.data.length) return console.log('no webhook endpoints: cgrpo webhooks create --url https://...');
  console.log(
    table(
      ['id', 'url', 'events', 'enabled'],
      page.data.map((e) => [String(e.id), String(e.url), JSON.stringify(e.event_types), String(e.enabled)]),
    ),
  );
}

export async function webhooksCreate(
  api: CgrpoClient,
  opts: { url: string; events?: string; description?: string },
  json: boolean,
) {
  const ep = await api.createWebhookEndpoint({
    url: opts.url,
    ...(opts.events ? { event_types: opts.events.split(',') } : {}),
    ...(opts.description ? { description: opts.description } : {}),
  });
  if (json) return printJson(ep);
  console.log(`created ${ep.id}\nsigning secret (shown once, keep it): ${ep.secret}`);
}

export async function webhooksDeliveries(api: CgrpoClient, endpointId: string, json: boolean) {
  const page = await api.deliveries(endpointId);
  if (json) return printJson(page);
  console.log(
    table(
      ['id', 'event', 'status', 'attempts', 'last status', 'created'],
      page.data.map((d) => [
        String(d.id),
        String(d.event_type ?? d.type ?? ''),
        String(d.status ?? ''),
        String(d.attempts ?? ''),
        String(d.last_status_code ?? d.response_status ?? ''),
        String(d.created_at ?? ''),
      ]),
    ),
  );
}

export async function webhooksRedeliver(api: CgrpoClient, deliveryId: string, json: boolean) {
  const r = await api.redeliver(deliveryId);
  if (json) return printJson(r);
  console.log(`redelivery queued: ${String(r.id ?? deliveryId)}`);
}

export async function webhooksTest(api: CgrpoClient, endpointId: string, json: boolean) {
  const r = await api.testWebhook(endpointId);
  if (json) return printJson(r);
  console.log(`test event sent: ${JSON.stringify(r)}`);
}

export async function runnersList(api: CgrpoClient, json: boolean) {
  const r = await api.runners();
  if (json) return printJson(r);
  if (!r.data.length)
    return console.log('no runners: start one with `cgrpo-runner register` (docs/runner.md)');
  console.log(
    table(
      ['id', 'name', 'status', 'labels', 'last seen'],
      r.data.map((x) => [
        String(x.id),
        String(x.name),
        String(x.status ?? ''),
        JSON.stringify(x.labels ?? []),
        String(x.last_seen_at ?? ''),
      ]),
    ),
  );
}

export { fmt };
