// safetensors: an 8-byte little-endian header length, a JSON header, then raw tensor bytes.
// Reads go through a file descriptor: the header first, then each tensor's byte range, so a
// multi-GB checkpoint is never held as one buffer or string.
import { closeSync, existsSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I8' | 'U8' | 'BOOL';

export interface TensorEntry {
  dtype: SafetensorsDtype;
  shape: number[];
  /** absolute byte range in the file */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  path: string;
  tensors: Map<string, TensorEntry>;
  metadata: Record<string, string>;
}

export class SafetensorsError extends Error {
  constructor(
    readonly code: string,
    readonly path: string,
    message: string,
  ) {
    super(`${code}: ${path}: ${message}`);
  }
}

const BYTES: Record<SafetensorsDtype, number> = {
  F32: 4,
  F16: 2,
  BF16: 2,
  F64: 8,
  I64: 8,
  I32: 4,
  I8: 1,
  U8: 1,
  BOOL: 1,
};
const MAX_HEADER = 100 * 1024 * 1024;

export function readSafetensorsHeader(path: string): SafetensorsHeader {
  const fd = openSync(path, 'r');
  try {
    const lenBuf = Buffer.alloc(8);
    if (readSync(fd, lenBuf, 0, 8, 0) !== 8) {
      throw new SafetensorsError('safetensors_truncated', path, 'file shorter than the 8-byte header length');
    }
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen <= 0 || headerLen > MAX_HEADER) {
      throw new SafetensorsError(
        'safetensors_bad_header',
        path,
        `header length ${headerLen} is not plausible`,
      );
    }
    const hdr = Buffer.alloc(headerLen);
    if (readSync(fd, hdr, 0, headerLen, 8) !== headerLen) {
      throw new SafetensorsError('safetensors_truncated', path, 'file ends inside the JSON header');
    }
    const json = JSON.parse(hdr.toString('utf8')) as Record<string, unknown>;
    const base = 8 + headerLen;
    const tensors = new Map<string, TensorEntry>();
    let metadata: Record<string, string> = {};
    for (const [name, raw] of Object.entries(json)) {
      if (name === '__metadata__') {
        metadata = raw as Record<string, string>;
        continue;
      }
      const t = raw as { dtype: string; shape: number[]; data_offsets: [number, number] };
      if (!(t.dtype in BYTES)) {
        throw new SafetensorsError('safetensors_dtype', `${path}#${name}`, `unsupported dtype ${t.dtype}`);
      }
      const dtype = t.dtype as SafetensorsDtype;
      const numel = t.shape.reduce((a, b) => a * b, 1);
      const [b, e] = t.data_offsets;
      if (e - b !== numel * BYTES[dtype]) {
        throw new SafetensorsError(
          'safetensors_bad_offsets',
          `${path}#${name}`,
          `byte range ${b}..${e} does not match shape [${t.shape}] of ${dtype}`,
        );
      }
      tensors.set(name, { dtype, shape: t.shape, begin: base + b, end: base + e });
    }
    return { path, tensors, metadata };
  } finally {
    closeSync(fd);
  }
}

/** f16 bits → f32 value */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

const f32scratch = new Float32Array(1);
const u32scratch = new Uint32Array(f32scratch.buffer);
/** f32 → f16 bits, round to nearest even */
export function floatToHalf(v: number): number {
  f32scratch[0] = v;
  const x = u32scratch[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}

/** f32 → bf16 bits, round to nearest even */
export function floatToBf16(v: number): number {
  f32scratch[0] = v;
  const x = u32scratch[0];
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return 0x7fc0;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

function readRange(fd: number, begin: number, len: number, where: string): Uint8Array {
  // an ArrayBuffer of its own, so typed views below are aligned
  const bytes = new Uint8Array(new ArrayBuffer(len + ((8 - (len % 8)) % 8)), 0, len);
  let got = 0;
  while (got < len) {
    const r = readSync(fd, bytes, got, len - got, begin + got);
    if (r <= 0) throw new SafetensorsError('safetensors_truncated', where, 'file ends early');
    got += r;
  }
  return bytes;
}

// little-endian host assumed (x86_64, arm64)
function toFloat32(bytes: Uint8Array, dtype: SafetensorsDtype, where: string): Float32Array {
  const n = bytes.length / BYTES[dtype];
  switch (dtype) {
    case 'F32':
      return new Float32Array(bytes.buffer, 0, n);
    case 'F64':
      return Float32Array.from(new Float64Array(bytes.buffer, 0, n));
    case 'F16': {
      const h = new Uint16Array(bytes.buffer, 0, n);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = halfToFloat(h[i]);
      return out;
    }
    case 'BF16': {
      const h = new Uint16Array(bytes.buffer, 0, n);
      const out = new Float32Array(n);
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u[i] = h[i] << 16;
      return out;
    }
    default:
      throw new SafetensorsError('safetensors_dtype', where, `cannot convert ${dtype} to float32`);
  }
}

/** Reads one tensor's byte range and converts it to float32. */
export function readTensorF32(header: SafetensorsHeader, name: string, fd?: number): Float32Array {
  const entry = header.tensors.get(name);
  if (!entry)
    throw new SafetensorsError('safetensors_missing_tensor', `${header.path}#${name}`, 'not in file');
  const own = fd === undefined;
  const f = own ? openSync(header.path, 'r') : fd;
  try {
    const where = `${header.path}#${name}`;
    return toFloat32(readRange(f, entry.begin, entry.end - entry.begin, where), entry.dtype, where);
  } finally {
    if (own) closeSync(f);
  }
}

/** Largest finite fp16 value; a bf16 tensor with a larger magnitude stays float32. */
export const HALF_MAX = 65504;

/**
 * bf16 bits → fp16 bits, in place. bf16 (8-bit exponent, 7-bit mantissa) values in fp16's normal
 * range [2^-14, 65504] convert exactly (mantissa shifted by 3, exponent rebased 127 → 15);
 * smaller ones round to fp16 subnormals (below 2^-24 they become ±0, counted in `flushed`).
 * Returns false and leaves the data untouched when a value is beyond fp16 (|x| > 65504, inf, NaN):
 * such a tensor must stay float32.
 */
export function bf16ToHalfInPlace(h: Uint16Array): { ok: boolean; flushed: number } {
  for (let i = 0; i < h.length; i++) {
    // biased exponent 143 is 2^16 and up (255: inf/NaN); the largest bf16 below it is 65280
    if ((h[i] & 0x7f80) >>> 7 >= 143) return { ok: false, flushed: 0 };
  }
  let flushed = 0;
  for (let i = 0; i < h.length; i++) {
    const x = h[i];
    const sign = x & 0x8000;
    const e = (x >>> 7) & 0xff;
    if (e >= 113) h[i] = sign | ((e - 112) << 10) | ((x & 0x7f) << 3);
    else if ((x & 0x7fff) === 0) h[i] = sign;
    else {
      u32scratch[0] = x << 16;
      const y = floatToHalf(f32scratch[0]);
      if ((y & 0x7fff) === 0) flushed++;
      h[i] = y;
    }
  }
  return { ok: true, flushed };
}

/** fp16 bits → float32 values (a new array). */
export function halfToFloat32(h: Uint16Array): Float32Array {
  const out = new Float32Array(h.length);
  // table of all 65536 values: one lookup per element
  const table = halfTable();
  for (let i = 0; i < h.length; i++) out[i] = table[h[i]];
  return out;
}
let table16: Float32Array | null = null;
function halfTable(): Float32Array {
  if (!table16) {
    table16 = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) table16[i] = halfToFloat(i);
  }
  return table16;
}

/** float32 → fp16 bits, or null when a value is beyond fp16's range (the tensor stays float32). */
export function float32ToHalf(f: Float32Array): Uint16Array | null {
  const out = new Uint16Array(f.length);
  for (let i = 0; i < f.length; i++) {
    if (!(Math.abs(f[i]) <= HALF_MAX)) return null;
    out[i] = floatToHalf(f[i]);
  }
  return out;
}

/** A tensor as kept in memory: float32, or fp16 bits (`float16`) for half-precision checkpoints. */
export type StoredTensor =
  | { shape: number[]; dtype: 'float32'; data: Float32Array }
  | { shape: number[]; dtype: 'float16'; data: Uint16Array };

/** Reads one tensor in its checkpoint precision: F16 as is, BF16 converted to fp16 in place
 *  (float32 where a value is beyond fp16), F32 as float32 (F64 narrowed). Never widens halves. */
export function readTensorStored(header: SafetensorsHeader, name: string): StoredTensor {
  const entry = header.tensors.get(name);
  if (!entry)
    throw new SafetensorsError('safetensors_missing_tensor', `${header.path}#${name}`, 'not in file');
  const where = `${header.path}#${name}`;
  const f = openSync(header.path, 'r');
  try {
    const bytes = readRange(f, entry.begin, entry.end - entry.begin, where);
    if (entry.dtype === 'F16' || entry.dtype === 'BF16') {
      const h = new Uint16Array(bytes.buffer, 0, bytes.length / 2);
      if (entry.dtype === 'F16' || bf16ToHalfInPlace(h).ok)
        return { shape: entry.shape, dtype: 'float16', data: h };
    }
    return { shape: entry.shape, dtype: 'float32', data: toFloat32(bytes, entry.dtype, where) };
  } finally {
    closeSync(f);
  }
}

export interface F32Tensor {
  shape: number[];
  data: Float32Array;
}

/**
 * The tensors of a checkpoint folder: `model.safetensors`, or the shards listed in
 * `model.safetensors.index.json`. Returns a lazy reader (name → header entry + loader).
 */
export interface CheckpointTensors {
  names(): string[];
  shape(name: string): number[] | undefined;
  dtype(name: string): SafetensorsDtype | undefined;
  has(name: string): boolean;
  read(name: string): F32Tensor;
  /** the tensor in its checkpoint precision (see readTensorStored) */
  readStored(name: string): StoredTensor;
}

export function openCheckpointTensors(dir: string, stem = 'model'): CheckpointTensors {
  const single = join(dir, `${stem}.safetensors`);
  const index = join(dir, `${stem}.safetensors.index.json`);
  const headers = new Map<string, SafetensorsHeader>();
  const byName = new Map<string, SafetensorsHeader>();
  const headerOf = (file: string): SafetensorsHeader => {
    let h = headers.get(file);
    if (!h) {
      h = readSafetensorsHeader(join(dir, file));
      headers.set(file, h);
    }
    return h;
  };
  if (existsSync(index)) {
    const map = (JSON.parse(readFileSync(index, 'utf8')) as { weight_map: Record<string, string> })
      .weight_map;
    for (const [name, file] of Object.entries(map)) byName.set(name, headerOf(file));
  } else if (existsSync(single)) {
    const h = headerOf(`${stem}.safetensors`);
    for (const name of h.tensors.keys()) byName.set(name, h);
  } else {
    throw new SafetensorsError(
      'checkpoint_no_weights',
      dir,
      `neither ${stem}.safetensors nor ${stem}.safetensors.index.json found; convert .bin checkpoints to safetensors first`,
    );
  }
  return {
    names: () => [...byName.keys()],
    has: (n) => byName.has(n),
    shape: (n) => byName.get(n)?.tensors.get(n)?.shape,
    dtype: (n) => byName.get(n)?.tensors.get(n)?.dtype,
    read(name) {
      const h = locate(name);
      return { shape: h.tensors.get(name)!.shape, data: readTensorF32(h, name) };
    },
    readStored(name) {
      return readTensorStored(locate(name), name);
    },
  };
  function locate(name: string): SafetensorsHeader {
    const h = byName.get(name);
    if (!h)
      throw new SafetensorsError('checkpoint_missing_tensor', `${dir}#${name}`, 'tensor not in checkpoint');
    const entry = h.tensors.get(name);
    if (!entry)
      throw new SafetensorsError(
        'checkpoint_missing_tensor',
        `${h.path}#${name}`,
        'index names a tensor the shard lacks',
      );
    return h;
  }
}

export interface TensorToWrite {
  shape: number[];
  data: Float32Array;
  dtype?: 'F32' | 'F16' | 'BF16';
}

/** Writes tensors (sorted by name, as the reference implementation does) to a safetensors file. */
export function writeSafetensors(
  path: string,
  tensors: Record<string, TensorToWrite>,
  metadata: Record<string, string> = { format: 'pt' },
): void {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const name of names) {
    const t = tensors[name];
    const dtype = t.dtype ?? 'F32';
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (numel !== t.data.length) {
      throw new SafetensorsError(
        'safetensors_shape',
        name,
        `shape [${t.shape}] has ${numel} elements, data ${t.data.length}`,
      );
    }
    const size = numel * BYTES[dtype];
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = JSON.stringify(header);
  // pad the header with spaces so the data section starts 8-byte aligned
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' ';
  const jsonBuf = Buffer.from(json, 'utf8');
  const lenBuf = Buffer.alloc(8);
  lenBuf.writeBigUInt64LE(BigInt(jsonBuf.length));
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, lenBuf);
    writeSync(fd, jsonBuf);
    for (const name of names) {
      const t = tensors[name];
      const dtype = t.dtype ?? 'F32';
      let buf: Buffer;
      if (dtype === 'F32') {
        buf = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
        if (t.data.byteOffset % 4 !== 0) buf = Buffer.from(new Float32Array(t.data).buffer);
      } else {
        buf = Buffer.alloc(t.data.length * 2);
        const conv = dtype === 'F16' ? floatToHalf : floatToBf16;
        for (let i = 0; i < t.data.length; i++) buf.writeUInt16LE(conv(t.data[i]), i * 2);
      }
      writeSync(fd, buf);
    }
  } finally {
    closeSync(fd);
  }
}
